//! [`Source`]: one job's source as its readers share it (name, bytes, byte-range hint) and
//! what they fetched from it ([`Fetched`]).

use super::{ByteSource, FileSource};
use crate::media::MediaError;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes fetched from a source's [`ByteSource`] by all readers of one [`Source`].
#[derive(Debug, Default)]
pub(super) struct FetchCounter {
    pub(super) bytes: AtomicU64,
    pub(super) requests: AtomicU64,
}

/// What the readers of a [`Source`] fetched: bytes and read calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    pub bytes: u64,
    pub requests: u64,
}

/// The source of a job: its name (for messages: a path, or `s3://bucket/key`), its bytes, and
/// optionally the byte range one reader is expected to need.
#[derive(Clone, Debug)]
pub struct Source {
    pub(super) name: PathBuf,
    pub(super) bytes: Arc<dyn ByteSource>,
    pub(super) hint: Option<Range<u64>>,
    pub(super) fetched: Arc<FetchCounter>,
}

impl Source {
    /// The file at `path`.
    pub fn file(path: &Path) -> Result<Self, MediaError> {
        let file = FileSource::open(path).map_err(MediaError::io(path))?;
        Ok(Self::new(path, Arc::new(file)))
    }

    /// `bytes`, named `name` in messages.
    pub fn new(name: impl Into<PathBuf>, bytes: Arc<dyn ByteSource>) -> Self {
        Self {
            name: name.into(),
            bytes,
            hint: None,
            fetched: Arc::default(),
        }
    }

    /// The same source for a reader expected to need `range` (byte offsets, end exclusive):
    /// read-ahead stops at its end. Reads outside it still work.
    pub fn with_hint(mut self, range: Option<Range<u64>>) -> Self {
        self.hint = range;
        self
    }

    pub fn name(&self) -> &Path {
        &self.name
    }

    /// The range given by [`Source::with_hint`].
    pub fn hint(&self) -> Option<Range<u64>> {
        self.hint.clone()
    }

    pub fn size_bytes(&self) -> u64 {
        self.bytes.size_bytes()
    }

    pub fn bytes(&self) -> &Arc<dyn ByteSource> {
        &self.bytes
    }

    /// What every reader opened from this source (and its clones) fetched so far.
    pub fn fetched(&self) -> Fetched {
        Fetched {
            bytes: self.fetched.bytes.load(Ordering::Relaxed),
            requests: self.fetched.requests.load(Ordering::Relaxed),
        }
    }

    /// The same source over other bytes (a wrapper of these), keeping name, hint and counter.
    pub(crate) fn over(&self, bytes: Arc<dyn ByteSource>) -> Self {
        Self {
            bytes,
            ..self.clone()
        }
    }
}
