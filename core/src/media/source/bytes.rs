//! The source's bytes as a narrow port: [`ByteSource`] (a length and blocking reads at an
//! offset), its typed errors, and [`FileSource`], a local file behind it.

use std::path::{Path, PathBuf};

/// What kind of failure a [`ByteSource`] met, for the caller's retry decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceErrorKind {
    /// The store did not answer (network, throttling): worth retrying.
    Unavailable,
    /// The object holds other bytes now (replaced by a newer upload).
    Changed,
    /// The object is gone.
    Gone,
    /// A local read failed.
    Io,
}

/// A read of the source failed; the message names the object or file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub kind: SourceErrorKind,
    pub message: String,
}

/// The source's bytes: an immutable sequence of [`ByteSource::size_bytes`] bytes.
///
/// Implementations block (callers run media work on blocking threads) and may be read from
/// several threads at once.
pub trait ByteSource: Send + Sync + std::fmt::Debug {
    /// The length in bytes.
    fn size_bytes(&self) -> u64;

    /// Reads up to `buf.len()` bytes starting at byte `offset` into `buf` and returns how many:
    /// fewer is allowed (callers ask again), 0 only when `offset` is at or past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError>;
}

/// A local file as a [`ByteSource`] (positional reads, so readers share one descriptor).
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
}

impl FileSource {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
        })
    }
}

impl ByteSource for FileSource {
    fn size_bytes(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        use std::os::unix::fs::FileExt as _;
        loop {
            match self.file.read_at(buf, offset) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(SourceError {
                        kind: SourceErrorKind::Io,
                        message: format!("{}: {e}", self.path.display()),
                    })
                }
            }
        }
    }
}
