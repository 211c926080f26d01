//! Byte sources over other byte sources: ranges saved once and served to later readers
//! ([`SavedRanges`], [`OverlaySource`]), a recorder of what a reader read
//! ([`RecordingSource`]), and zeros for bytes a probe never looks inside ([`ZeroedSource`]).

use super::{ByteSource, SourceError};
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Byte ranges of a source with their bytes, e.g. what FFmpeg read while opening it (an MP4's
/// `moov`), saved once and served to every later reader by [`OverlaySource`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedRanges {
    /// Sorted by offset, not overlapping, not adjacent.
    pub(super) ranges: Vec<(u64, Vec<u8>)>,
}

const SAVED_MAGIC: &[u8; 8] = b"TMXRNG01";
/// [`SavedRanges::to_compressed_bytes`]: this magic, then the plain form deflated (zlib).
const COMPRESSED_MAGIC: &[u8; 8] = b"TMXRNZ01";

impl SavedRanges {
    /// Adds `bytes` at `offset`, merging with the ranges it touches.
    pub fn insert(&mut self, offset: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let end = offset + bytes.len() as u64;
        let mut start = offset;
        let mut merged_end = end;
        // Ranges that overlap or touch [offset, end) are merged into one.
        let first = self
            .ranges
            .partition_point(|(o, b)| (o + b.len() as u64) < offset);
        let mut last = first;
        while last < self.ranges.len() && self.ranges[last].0 <= end {
            let (o, b) = &self.ranges[last];
            start = start.min(*o);
            merged_end = merged_end.max(o + b.len() as u64);
            last += 1;
        }
        let mut merged = vec![0u8; (merged_end - start) as usize];
        for (o, b) in &self.ranges[first..last] {
            let at = (o - start) as usize;
            merged[at..at + b.len()].copy_from_slice(b);
        }
        let at = (offset - start) as usize;
        merged[at..at + bytes.len()].copy_from_slice(bytes);
        self.ranges.splice(first..last, [(start, merged)]);
    }

    /// The saved bytes from `offset` to the end of the range holding it.
    pub(super) fn at(&self, offset: u64) -> Option<&[u8]> {
        let index = self.ranges.partition_point(|(o, _)| *o <= offset);
        let (start, bytes) = self.ranges.get(index.checked_sub(1)?)?;
        let skip = usize::try_from(offset - start).ok()?;
        bytes.get(skip..).filter(|rest| !rest.is_empty())
    }

    /// The start of the first saved range after `offset`.
    fn next_after(&self, offset: u64) -> Option<u64> {
        let index = self.ranges.partition_point(|(o, _)| *o <= offset);
        self.ranges.get(index).map(|(o, _)| *o)
    }

    /// Total saved bytes.
    pub fn total_bytes(&self) -> u64 {
        self.ranges.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// The ranges as `[start, end)` byte offsets.
    pub fn spans(&self) -> Vec<Range<u64>> {
        self.ranges
            .iter()
            .map(|(o, b)| *o..o + b.len() as u64)
            .collect()
    }

    /// A self-describing binary form: magic, count, then (offset, length, bytes) per range,
    /// integers little-endian u64.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.total_bytes() as usize);
        out.extend_from_slice(SAVED_MAGIC);
        out.extend_from_slice(&(self.ranges.len() as u64).to_le_bytes());
        for (offset, bytes) in &self.ranges {
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }

    /// [`SavedRanges::to_bytes`] compressed (zlib, `flate2`): an MP4's sample tables shrink to
    /// about 40% (sizes and offsets of similar magnitude, repeated composition offsets), and every
    /// segment worker reads the saved `moov` from EFS, which charges per byte read.
    pub fn to_compressed_bytes(&self) -> Vec<u8> {
        use std::io::Write;
        let mut out = COMPRESSED_MAGIC.to_vec();
        let mut encoder = flate2::write::ZlibEncoder::new(&mut out, flate2::Compression::new(6));
        encoder
            .write_all(&self.to_bytes())
            .and_then(|()| encoder.finish().map(|_| ()))
            .expect("writing to memory cannot fail");
        out
    }

    /// Parses [`SavedRanges::to_bytes`] or [`SavedRanges::to_compressed_bytes`]; `None` for
    /// anything else. A truncated or corrupt file is refused by the plain form's parse (counts
    /// and lengths must match exactly), since zlib may inflate a cut stream without an error.
    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        match data.strip_prefix(COMPRESSED_MAGIC) {
            Some(deflated) => {
                use std::io::Read;
                let mut plain = Vec::new();
                flate2::read::ZlibDecoder::new(deflated)
                    .read_to_end(&mut plain)
                    .ok()?;
                Self::from_plain_bytes(&plain)
            }
            None => Self::from_plain_bytes(data),
        }
    }

    fn from_plain_bytes(mut data: &[u8]) -> Option<Self> {
        fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = data.split_at_checked(n)?;
            *data = rest;
            Some(head)
        }
        let word = |data: &mut &[u8]| {
            take(data, 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        };
        if take(&mut data, 8)? != SAVED_MAGIC {
            return None;
        }
        let count = word(&mut data)?;
        let mut saved = Self::default();
        for _ in 0..count {
            let offset = word(&mut data)?;
            let len = usize::try_from(word(&mut data)?).ok()?;
            saved.insert(offset, take(&mut data, len)?);
        }
        data.is_empty().then_some(saved)
    }
}

/// Serves reads from saved ranges where they hold the bytes, from `inner` elsewhere (never
/// reading `inner` across the start of a saved range).
#[derive(Debug)]
pub struct OverlaySource {
    pub saved: SavedRanges,
    pub inner: Arc<dyn ByteSource>,
}

impl ByteSource for OverlaySource {
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        if let Some(saved) = self.saved.at(offset) {
            let n = saved.len().min(buf.len());
            buf[..n].copy_from_slice(&saved[..n]);
            return Ok(n);
        }
        let limit = self
            .saved
            .next_after(offset)
            .map_or(buf.len(), |next| buf.len().min((next - offset) as usize));
        self.inner.read_at(offset, &mut buf[..limit])
    }
}

/// Passes reads to `inner` and keeps a copy of every byte read (up to `cap` bytes in all), so
/// what a reader needed can be saved and served to others ([`OverlaySource`]).
#[derive(Debug)]
pub struct RecordingSource {
    inner: Arc<dyn ByteSource>,
    cap: u64,
    recorded: Mutex<SavedRanges>,
}

impl RecordingSource {
    pub fn new(inner: Arc<dyn ByteSource>, cap: u64) -> Self {
        Self {
            inner,
            cap,
            recorded: Mutex::default(),
        }
    }

    /// Everything read so far.
    pub fn recorded(&self) -> SavedRanges {
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ByteSource for RecordingSource {
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        let n = self.inner.read_at(offset, buf)?;
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        if recorded.total_bytes() + n as u64 <= self.cap {
            recorded.insert(offset, &buf[..n]);
        }
        Ok(n)
    }
}

/// Answers reads inside `zeroed` ranges with zeros instead of fetching them: for a probe that
/// needs packet sizes and timestamps but not the bytes of packets whose demuxer and stream
/// never look inside them (see `probe`). Elsewhere reads go to `inner`.
#[derive(Debug)]
pub(crate) struct ZeroedSource {
    pub(crate) inner: Arc<dyn ByteSource>,
    /// Sorted, not overlapping; set once the demuxer's index is known.
    pub(crate) zeroed: Mutex<Vec<Range<u64>>>,
}

impl ByteSource for ZeroedSource {
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        let zeroed = self.zeroed.lock().unwrap_or_else(|p| p.into_inner());
        let index = zeroed.partition_point(|range| range.end <= offset);
        match zeroed.get(index) {
            Some(range) if range.start <= offset => {
                let n = buf.len().min((range.end - offset) as usize);
                buf[..n].fill(0);
                Ok(n)
            }
            next => {
                let limit = next.map_or(buf.len(), |range| {
                    buf.len().min((range.start - offset) as usize)
                });
                drop(zeroed);
                self.inner.read_at(offset, &mut buf[..limit])
            }
        }
    }
}
