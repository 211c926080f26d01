//! The source as every reader sees it: bytes behind a narrow port ([`ByteSource`]: a length and
//! blocking reads at an offset), opened for FFmpeg through a custom I/O with adaptive
//! read-ahead. Locally the bytes are a file; on AWS they are ranged GETs of the upload's exact
//! version, overlaid with the index bytes analyze saved. Probe, convert, audio and verify's
//! source side all open the source with [`open`], so both runners read it the same way.
//!
//! Read-ahead: a fetch after a seek asks for [`MIN_AHEAD`] bytes; each fetch that continues the
//! previous one doubles it, up to [`MAX_AHEAD`], so a reader of one segment or of interleaved
//! audio chunks fetches little it never uses, while a long sequential read makes few requests.
//! A [`Source::with_hint`] range (a segment's bytes, from the probe's packet positions) bounds
//! read-ahead at its end. A reader keeps [`WINDOWS`] windows (a demuxer alternating between two
//! places of the file finds both). Memory per open reader: at most `WINDOWS` × `MAX_AHEAD` and
//! FFmpeg's [`AVIO_BUFFER`].

use super::MediaError;
use ffmpeg_next as ffmpeg;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The size of FFmpeg's own buffer over the custom I/O, in bytes (libavformat's default).
pub const AVIO_BUFFER: usize = 32 * 1024;
/// Bytes fetched by the first read after a seek.
pub const MIN_AHEAD: usize = 32 * 1024;
/// The most bytes one fetch asks for (and the read-ahead window holds).
pub const MAX_AHEAD: usize = 4 * 1024 * 1024;

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

/// Byte ranges of a source with their bytes, e.g. what FFmpeg read while opening it (an MP4's
/// `moov`), saved once and served to every later reader by [`OverlaySource`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedRanges {
    /// Sorted by offset, not overlapping, not adjacent.
    ranges: Vec<(u64, Vec<u8>)>,
}

const SAVED_MAGIC: &[u8; 8] = b"TMXRNG01";

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
    fn at(&self, offset: u64) -> Option<&[u8]> {
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

    /// Parses [`SavedRanges::to_bytes`]; `None` for anything else.
    pub fn from_bytes(mut data: &[u8]) -> Option<Self> {
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

/// Bytes fetched from a source's [`ByteSource`] by all readers of one [`Source`].
#[derive(Debug, Default)]
struct FetchCounter {
    bytes: AtomicU64,
    requests: AtomicU64,
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
    name: PathBuf,
    bytes: Arc<dyn ByteSource>,
    hint: Option<Range<u64>>,
    fetched: Arc<FetchCounter>,
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

/// The typed cause of the last failed read of one opened reader, kept because FFmpeg reduces
/// it to an error code.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadFailure(Arc<Mutex<Option<SourceError>>>);

impl ReadFailure {
    fn set(&self, error: SourceError) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    pub(crate) fn take(&self) -> Option<SourceError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The error for a failed FFmpeg read of `source`: the source's own failure when there was
    /// one, else FFmpeg's.
    pub(crate) fn read_error(&self, source: &Source, error: ffmpeg::Error) -> MediaError {
        match self.take() {
            Some(failure) => MediaError::Source {
                path: source.name.clone(),
                source: failure,
            },
            None => MediaError::Read {
                path: source.name.clone(),
                source: error,
            },
        }
    }
}

/// How many read-ahead windows one reader keeps: a demuxer reading two interleaved places of
/// the file (an MP4's audio and video chunks, badly interleaved) keeps a window at each.
pub const WINDOWS: usize = 4;

/// Fetched bytes at `start`, and the size of the next fetch that continues them.
#[derive(Debug, Default)]
struct Window {
    start: u64,
    data: Vec<u8>,
    /// The end of the fetch that made it (`start + data.len()`, or past it after a direct read).
    end: u64,
    ahead: usize,
}

/// A reader's position over a [`ByteSource`] with its read-ahead windows (`Read + Seek` for
/// FFmpeg's custom I/O). Memory: at most [`WINDOWS`] × [`MAX_AHEAD`].
struct Cursor {
    bytes: Arc<dyn ByteSource>,
    size: u64,
    position: u64,
    /// Most recently used last.
    windows: Vec<Window>,
    hint: Option<Range<u64>>,
    fetched: Arc<FetchCounter>,
    failure: ReadFailure,
}

impl Cursor {
    fn new(source: &Source, failure: ReadFailure) -> Self {
        Self {
            bytes: source.bytes.clone(),
            size: source.bytes.size_bytes(),
            position: 0,
            windows: Vec::new(),
            hint: source.hint.clone(),
            fetched: source.fetched.clone(),
            failure,
        }
    }

    /// Reads from `offset` until `out` holds at least `need` bytes (or the end), at most
    /// `out.len()`.
    fn fetch(&self, offset: u64, out: &mut [u8], need: usize) -> Result<usize, SourceError> {
        let mut got = 0;
        while got < need.min(out.len()) {
            let n = self.bytes.read_at(offset + got as u64, &mut out[got..])?;
            self.fetched.requests.fetch_add(1, Ordering::Relaxed);
            self.fetched.bytes.fetch_add(n as u64, Ordering::Relaxed);
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok(got)
    }

    fn read_inner(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
        if buf.is_empty() || self.position >= self.size {
            return Ok(0);
        }
        let position = self.position;
        if let Some(index) = self
            .windows
            .iter()
            .position(|w| w.start <= position && position < w.start + w.data.len() as u64)
        {
            let window = self.windows.remove(index);
            let at = (position - window.start) as usize;
            let n = buf.len().min(window.data.len() - at);
            buf[..n].copy_from_slice(&window.data[at..at + n]);
            self.windows.push(window);
            self.position += n as u64;
            return Ok(n);
        }
        // A fetch continuing a window grows its read-ahead; any other starts small, and so does
        // the first one past the hint's end (what lies beyond is read only in small amounts,
        // e.g. a segment's last audio packets).
        let at_hint_end = self.hint.as_ref().is_some_and(|hint| hint.end == position);
        let mut window = match self.windows.iter().position(|w| w.end == position) {
            Some(index) => {
                let mut window = self.windows.remove(index);
                window.ahead = if at_hint_end {
                    MIN_AHEAD
                } else {
                    (window.ahead * 2).min(MAX_AHEAD)
                };
                window
            }
            None => {
                let mut window = if self.windows.len() >= WINDOWS {
                    self.windows.remove(0)
                } else {
                    Window::default()
                };
                window.ahead = MIN_AHEAD;
                window
            }
        };
        let left = self.size - position;
        let mut want = (window.ahead as u64).min(left);
        if let Some(hint) = &self.hint {
            if hint.contains(&position) {
                want = want.min(hint.end - position);
            }
        }
        let need = buf.len().min(left as usize);
        let want = (want as usize).max(need);
        window.start = position;
        let served = if need >= want {
            // A read at least as large as the read-ahead: straight into FFmpeg's buffer.
            let n = self.fetch(position, &mut buf[..need], need);
            window.data.clear();
            let n = n?;
            window.end = position + n as u64;
            n
        } else {
            window.data.clear();
            window.data.resize(want, 0);
            let n = self.fetch(position, &mut window.data, need);
            let n = n.inspect_err(|_| window.data.clear())?;
            window.data.truncate(n);
            window.end = position + n as u64;
            let served = n.min(buf.len());
            buf[..served].copy_from_slice(&window.data[..served]);
            served
        };
        self.windows.push(window);
        self.position += served as u64;
        Ok(served)
    }
}

impl Read for Cursor {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.read_inner(buf).map_err(|error| {
            let message = error.message.clone();
            self.failure.set(error);
            std::io::Error::other(message)
        })
    }
}

impl Seek for Cursor {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
        };
        let target = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        self.position = target;
        Ok(target)
    }
}

/// Opens `source` for demuxing, with the demuxer options the ffmpeg CLI (and ffprobe) set by
/// default, so that treemux reads the packets, and the timestamps FFmpeg fills in, as they do:
/// `scan_all_pmts` makes the MPEG-TS demuxer read every programme table before it starts, which
/// also changes the decode times it derives for packets that carry only a pts. The name is given
/// to FFmpeg too (format detection weighs the extension). A failed read of the source is kept in
/// `failure`, which explains FFmpeg's error code.
pub(crate) fn open_raw(
    source: &Source,
    failure: &ReadFailure,
) -> Result<ffmpeg::format::context::Input, ffmpeg::Error> {
    let cursor = Cursor::new(source, failure.clone());
    let io = ffmpeg::format::context::StreamIo::from_read_seek_with_capacity(cursor, AVIO_BUFFER)?;
    let mut options = ffmpeg::Dictionary::new();
    options.set("scan_all_pmts", "1");
    let name = source.name.to_string_lossy();
    ffmpeg::format::input_from_stream(io, Some(&name), Some(options))
}

/// Opens `source` for every reader of it (see [`open_raw`]); errors name the source, and its own
/// failure when a read of it failed. The [`ReadFailure`] explains later failed reads.
pub(crate) fn open(
    source: &Source,
) -> Result<(ffmpeg::format::context::Input, ReadFailure), MediaError> {
    let failure = ReadFailure::default();
    match open_raw(source, &failure) {
        Ok(input) => Ok((input, failure)),
        Err(error) => Err(match failure.take() {
            Some(cause) => MediaError::Source {
                path: source.name.clone(),
                source: cause,
            },
            None => MediaError::Open {
                path: source.name.clone(),
                source: error,
            },
        }),
    }
}

/// Opens `source` as every reader does and returns the bytes that took (what the demuxer reads
/// before the first packet: an MP4's `moov` wherever it is, a Matroska header, its cues), at
/// most `cap` bytes: saved once, they spare every later reader those fetches
/// ([`OverlaySource`]).
pub fn opening_reads(source: &Source, cap: u64) -> Result<SavedRanges, MediaError> {
    super::util::init();
    let recorder = Arc::new(RecordingSource::new(source.bytes.clone(), cap));
    let (input, _) = open(&source.over(recorder.clone()))?;
    drop(input);
    Ok(recorder.recorded())
}

/// The bytes of the source a worker converting `segment` reads: from its first packet (the
/// lead-in's keyframe included; the start of the file for a segment decoded from the start) to
/// the end of its last, in file order. `None` when the probe knows no packet positions. Audio
/// and other packets interleaved between are inside it.
pub fn segment_byte_range(
    info: &super::probe::MediaInfo,
    segment: &crate::plan::Segment,
) -> Option<Range<u64>> {
    let packets = &info.video_packets_at;
    if packets.is_empty() {
        return None;
    }
    let from = segment
        .decode_from
        .map(|point| point.pts.min(segment.start_pts.unwrap_or(point.pts)));
    let inside = |pts: i64| {
        from.is_none_or(|from| pts >= from) && segment.end_pts.is_none_or(|end| pts < end)
    };
    let mut range: Option<Range<u64>> = None;
    for packet in packets.iter().filter(|packet| inside(packet.pts)) {
        let end = packet.position + packet.size;
        range = Some(match range {
            Some(r) => r.start.min(packet.position)..r.end.max(end),
            None => packet.position..end,
        });
    }
    let range = range?;
    let start = if from.is_none() { 0 } else { range.start };
    let end = if segment.end_pts.is_none() {
        info.size_bytes
    } else {
        range.end
    };
    Some(start..end.max(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes whose value is their offset (mod 251), and every read counted.
    #[derive(Debug)]
    struct Pattern {
        size: u64,
        reads: Mutex<Vec<Range<u64>>>,
    }

    fn byte(offset: u64) -> u8 {
        (offset % 251) as u8
    }

    impl ByteSource for Pattern {
        fn size_bytes(&self) -> u64 {
            self.size
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
            let n = buf.len().min(self.size.saturating_sub(offset) as usize);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = byte(offset + i as u64);
            }
            self.reads
                .lock()
                .expect("lock")
                .push(offset..offset + n as u64);
            Ok(n)
        }
    }

    fn cursor(bytes: Arc<dyn ByteSource>, hint: Option<Range<u64>>) -> Cursor {
        Cursor::new(
            &Source::new("test", bytes).with_hint(hint),
            ReadFailure::default(),
        )
    }

    #[test]
    fn read_ahead_grows_while_sequential_and_restarts_small_after_a_seek() {
        let pattern = Arc::new(Pattern {
            size: 64 * 1024 * 1024,
            reads: Mutex::default(),
        });
        let mut reader = cursor(pattern.clone(), None);
        let mut buf = vec![0u8; AVIO_BUFFER];
        let mut total = 0u64;
        while total < 20 * 1024 * 1024 {
            let n = reader.read(&mut buf).expect("read");
            assert!(buf[..n]
                .iter()
                .enumerate()
                .all(|(i, b)| *b == byte(total + i as u64)));
            total += n as u64;
        }
        let sizes: Vec<u64> = pattern
            .reads
            .lock()
            .expect("lock")
            .iter()
            .map(|r| r.end - r.start)
            .collect();
        assert_eq!(sizes[0], MIN_AHEAD as u64);
        assert!(sizes
            .windows(2)
            .all(|w| w[1] == (w[0] * 2).min(MAX_AHEAD as u64)));
        assert!(
            sizes.iter().all(|&s| s <= MAX_AHEAD as u64),
            "bounded: {sizes:?}"
        );
        assert!(
            reader.windows.len() <= WINDOWS
                && reader
                    .windows
                    .iter()
                    .all(|w| w.data.capacity() <= MAX_AHEAD),
            "the windows stay bounded"
        );
        // A seek far away starts small again.
        pattern.reads.lock().expect("lock").clear();
        reader
            .seek(SeekFrom::Start(50 * 1024 * 1024))
            .expect("seek");
        let n = reader.read(&mut buf).expect("read");
        assert_eq!(n, buf.len());
        let reads = pattern.reads.lock().expect("lock").clone();
        assert_eq!(
            reads,
            vec![50 * 1024 * 1024..50 * 1024 * 1024 + MIN_AHEAD as u64]
        );
    }

    #[test]
    fn read_ahead_stops_at_the_hint() {
        let pattern = Arc::new(Pattern {
            size: 8 * 1024 * 1024,
            reads: Mutex::default(),
        });
        let hint = 1_000_000..1_300_000;
        let mut reader = cursor(pattern.clone(), Some(hint.clone()));
        reader.seek(SeekFrom::Start(hint.start)).expect("seek");
        let mut buf = vec![0u8; AVIO_BUFFER];
        let mut at = hint.start;
        while at < hint.end {
            at += reader.read(&mut buf).expect("read") as u64;
        }
        let fetched: u64 = pattern
            .reads
            .lock()
            .expect("lock")
            .iter()
            .map(|r| r.end - r.start)
            .sum();
        assert!(
            fetched <= hint.end - hint.start + AVIO_BUFFER as u64,
            "fetched {fetched} bytes for a {} byte hint",
            hint.end - hint.start
        );
    }

    #[test]
    fn saved_ranges_merge_serve_and_round_trip() {
        let mut saved = SavedRanges::default();
        saved.insert(100, &[1; 10]);
        saved.insert(200, &[2; 10]);
        saved.insert(105, &[3; 20]);
        saved.insert(125, &[4; 5]);
        assert_eq!(saved.spans(), vec![100..130, 200..210]);
        assert_eq!(
            saved.at(104),
            Some(&[1u8; 1][..]).map(|_| &saved.ranges[0].1[4..])
        );
        assert_eq!(saved.at(130), None);
        assert_eq!(
            SavedRanges::from_bytes(&saved.to_bytes()),
            Some(saved.clone())
        );
        assert_eq!(SavedRanges::from_bytes(b"not ranges"), None);
        let pattern = Arc::new(Pattern {
            size: 1000,
            reads: Mutex::default(),
        });
        let overlay = OverlaySource {
            saved,
            inner: pattern.clone(),
        };
        let mut buf = [0u8; 50];
        // From 90: the store up to the saved range at 100, then the saved bytes.
        assert_eq!(overlay.read_at(90, &mut buf).expect("read"), 10);
        assert_eq!(overlay.read_at(100, &mut buf).expect("read"), 30);
        assert_eq!(buf[0], 1);
        assert_eq!(*pattern.reads.lock().expect("lock"), vec![90..100]);
    }

    /// Fails every read from `fail_from` on.
    #[derive(Debug)]
    struct FailsMidway {
        inner: FileSource,
        fail_from: u64,
    }

    impl ByteSource for FailsMidway {
        fn size_bytes(&self) -> u64 {
            self.inner.size_bytes()
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
            if offset + buf.len() as u64 > self.fail_from {
                return Err(SourceError {
                    kind: SourceErrorKind::Unavailable,
                    message: "s3://bucket/clip.mp4: connection reset".into(),
                });
            }
            self.inner.read_at(offset, buf)
        }
    }

    fn sample(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("samples")
            .join(name)
    }

    #[test]
    fn a_source_that_fails_midway_is_a_typed_error() {
        let path = sample("10_bbb_rotated90_h264_aac51_1080p.mp4");
        let inner = FileSource::open(&path).expect("sample");
        let fail_from = inner.size_bytes() / 2;
        let source = Source::new(
            "s3://bucket/clip.mp4",
            Arc::new(FailsMidway { inner, fail_from }),
        );
        let error =
            super::super::probe::probe_source(&source, super::super::probe::PacketReads::All)
                .expect_err("half a file cannot be probed");
        match &error {
            super::super::probe::ProbeError::Source { source, .. } => {
                assert_eq!(source.kind, SourceErrorKind::Unavailable)
            }
            other => panic!("not a source error: {other}"),
        }
        assert!(error.to_string().contains("connection reset"), "{error}");
        assert_eq!(
            crate::Error::from(error).kind(),
            crate::ErrorKind::Transient,
            "a store that stopped answering is retried"
        );
    }

    /// Counts the bytes `inner` really delivered.
    #[derive(Debug)]
    struct Counting {
        inner: FileSource,
        bytes: AtomicU64,
    }

    impl ByteSource for Counting {
        fn size_bytes(&self) -> u64 {
            self.inner.size_bytes()
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
            let n = self.inner.read_at(offset, buf)?;
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
    }

    /// (stream, pts, dts, size, flags, position) of every packet, in file order.
    fn packets(
        input: &mut ffmpeg::format::context::Input,
    ) -> Vec<(usize, i64, i64, usize, i32, i64)> {
        let mut list = Vec::new();
        loop {
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => return list,
                Err(ffmpeg::Error::InvalidData) => continue,
                Err(error) => panic!("read: {error}"),
            }
            // SAFETY: a packet just filled by av_read_frame.
            let flags = unsafe { (*ffmpeg::packet::Ref::as_ptr(&packet)).flags };
            list.push((
                packet.stream(),
                packet.pts().unwrap_or(i64::MIN),
                packet.dts().unwrap_or(i64::MIN),
                packet.size(),
                flags,
                packet.position() as i64,
            ));
        }
    }

    fn generate(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
        let path = dir.join(name);
        let status = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25:duration=3",
            ])
            .args([
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=300:sample_rate=44100:duration=3",
            ])
            .args(args)
            .arg(&path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg could not write {name}");
        path
    }

    #[test]
    fn the_custom_io_demuxes_the_same_packets_as_the_file() {
        super::super::util::init();
        let dir = tempfile::tempdir().expect("temp dir");
        let clips = [
            // MP4 as most encoders write it: the index (moov) after the media.
            generate(
                dir.path(),
                "moov_at_end.mp4",
                &["-c:v", "libx264", "-bf", "2", "-g", "25", "-c:a", "aac"],
            ),
            generate(
                dir.path(),
                "clip.mkv",
                &["-c:v", "libx264", "-g", "25", "-c:a", "libopus"],
            ),
            generate(
                dir.path(),
                "clip.ts",
                &["-c:v", "libx264", "-g", "25", "-c:a", "aac"],
            ),
            generate(
                dir.path(),
                "clip.avi",
                &["-c:v", "mpeg4", "-bf", "2", "-c:a", "libmp3lame"],
            ),
        ];
        for clip in &clips {
            let mut by_path = super::super::util::demux(clip).expect("open by path");
            let expected = packets(&mut by_path);
            let source = Source::file(clip).expect("source");
            let (mut by_source, _) = open(&source).expect("open through the custom I/O");
            assert_eq!(
                by_source.format().name(),
                by_path.format().name(),
                "{}: another demuxer",
                clip.display()
            );
            let got = packets(&mut by_source);
            assert!(expected.len() > 50, "{}: too few packets", clip.display());
            assert_eq!(got, expected, "{}: other packets", clip.display());
            assert!(
                source.fetched().bytes >= source.size_bytes(),
                "{}: the counter counts",
                clip.display()
            );
        }
    }

    /// Every MP4/MOV in samples/ and ../shared/samples.
    fn mp4_samples() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found: Vec<PathBuf> = [root.join("samples"), root.join("../shared/samples")]
            .iter()
            .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(e.to_ascii_lowercase().as_str(), "mp4" | "mov" | "m4v")
                })
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn the_index_probe_of_mp4_and_mov_equals_the_packet_probe() {
        use super::super::probe::{probe_source, PacketReads};
        let samples = mp4_samples();
        assert!(samples.len() >= 4, "samples missing: {samples:?}");
        for path in samples {
            let counted = || {
                Arc::new(Counting {
                    inner: FileSource::open(&path).expect("sample"),
                    bytes: AtomicU64::new(0),
                })
            };
            let (all, indexed) = (counted(), counted());
            let by_packets = probe_source(&Source::new(&path, all.clone()), PacketReads::All)
                .expect("packet probe");
            let by_index = probe_source(
                &Source::new(&path, indexed.clone()),
                PacketReads::IndexWherePossible,
            )
            .expect("index probe");
            assert_eq!(
                serde_json::to_value(&by_index).expect("json"),
                serde_json::to_value(&by_packets).expect("json"),
                "{}: another probe result",
                path.display()
            );
            assert_eq!(by_index.frames, by_packets.frames, "{}", path.display());
            assert_eq!(
                by_index.video_packets_at,
                by_packets.video_packets_at,
                "{}",
                path.display()
            );
            let (read_all, read_indexed) = (
                all.bytes.load(Ordering::Relaxed),
                indexed.bytes.load(Ordering::Relaxed),
            );
            println!(
                "{}: {read_indexed} bytes read, {read_all} by packets",
                path.display()
            );
            assert!(read_indexed <= read_all, "{}", path.display());
            if by_packets.audio.iter().any(|track| track.codec == "aac") {
                assert!(
                    read_indexed < read_all,
                    "{}: the AAC packets were read",
                    path.display()
                );
            }
            // H.264 with a sync-sample table, in a file larger than what opening it reads (the
            // index, the first packets): its video packets are not fetched either.
            let video = &by_packets.video;
            if video.codec == "h264"
                && video.keyframe_count < video.frame_count
                && by_packets.size_bytes > 2 * 1024 * 1024
            {
                assert!(
                    read_indexed * 10 < by_packets.size_bytes,
                    "{}: {read_indexed} bytes read to list it",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn segment_ranges_cover_their_packets() {
        let path = sample("10_bbb_rotated90_h264_aac51_1080p.mp4");
        let info = super::super::probe::probe(&path).expect("probe");
        let plan = crate::plan::plan_segments(
            &info.frames,
            info.video.time_base,
            info.video.duration_seconds(),
            &crate::plan::PlanOptions {
                max_segments: 4,
                min_segment_seconds: 0.5,
                ..Default::default()
            },
        )
        .expect("plan");
        assert!(plan.segments.len() > 1);
        for segment in &plan.segments {
            let range = segment_byte_range(&info, segment).expect("positions known");
            for packet in info
                .video_packets_at
                .iter()
                .filter(|p| segment.contains(p.pts))
            {
                assert!(
                    range.start <= packet.position && packet.position + packet.size <= range.end
                );
            }
            assert!(range.end <= info.size_bytes);
        }
    }

    /// Prints what each reader of `TREEMUX_IO_CLIP` fetches (diagnosis; not run by default).
    #[test]
    #[ignore = "diagnosis: TREEMUX_IO_CLIP=clip.mp4"]
    fn fetched_per_reader() {
        use super::super::probe::{probe_source, PacketReads};
        let path = PathBuf::from(std::env::var("TREEMUX_IO_CLIP").expect("TREEMUX_IO_CLIP"));
        let counted = || {
            Arc::new(Counting {
                inner: FileSource::open(&path).expect("clip"),
                bytes: AtomicU64::new(0),
            })
        };
        let size = FileSource::open(&path).expect("clip").size_bytes();
        let c = counted();
        let opening = opening_reads(&Source::new(&path, c.clone()), 1 << 26).expect("opening");
        println!(
            "opening: {} fetched, {} saved",
            c.bytes.load(Ordering::Relaxed),
            opening.total_bytes()
        );
        let c = counted();
        let overlay = |c: Arc<Counting>| {
            Source::new(
                &path,
                Arc::new(OverlaySource {
                    saved: opening.clone(),
                    inner: c,
                }),
            )
        };
        let mut info =
            probe_source(&overlay(c.clone()), PacketReads::IndexWherePossible).expect("probe");
        println!("probe: {} of {size}", c.bytes.load(Ordering::Relaxed));
        let c = counted();
        let options = crate::plan::PlanOptions {
            max_segments: 32,
            min_segment_seconds: 2.0,
            ..Default::default()
        };
        let plan =
            crate::engine::plan_at_real_keyframes(&overlay(c.clone()), &mut info, &path, &options)
                .expect("plan");
        println!(
            "keyframe check of {} segments: {}",
            plan.segments.len(),
            c.bytes.load(Ordering::Relaxed)
        );
        let dir = tempfile::tempdir().expect("dir");
        let actions = super::super::audio::plan_audio(
            &info,
            crate::settings::Container::Mp4,
            &dir.path().join("o.mp4"),
        )
        .expect("plan");
        let c = counted();
        super::super::audio::extract_audio_from(
            &overlay(c.clone()),
            &info,
            &actions,
            &dir.path().join("a.nut"),
        )
        .expect("audio");
        println!("audio in one pass: {}", c.bytes.load(Ordering::Relaxed));
        let mut settings = crate::settings::EncodeSettings::new(crate::settings::VideoCodec::H264);
        settings.preset = "ultrafast".into();
        let mut total = 0;
        let mut pieces = Vec::new();
        for segment in &plan.segments {
            let c = counted();
            let range = segment_byte_range(&info, segment);
            let audio = (!info.audio.is_empty()).then(|| {
                super::super::audio::SegmentAudio::of_segment(
                    &info,
                    &plan,
                    segment.index,
                    dir.path().join(format!("a{}.nut", segment.index)),
                )
            });
            pieces.extend(audio.as_ref().map(|audio| audio.path.clone()));
            super::super::convert::convert_segment_from(
                &overlay(c.clone()).with_hint(range.clone()),
                &info,
                segment,
                &settings,
                &dir.path().join(format!("s{}.nut", segment.index)),
                audio.as_ref(),
                &|_| std::ops::ControlFlow::Continue(()),
            )
            .expect("convert");
            let got = c.bytes.load(Ordering::Relaxed);
            total += got;
            println!(
                "segment {}: {got} for range {:?} ({} bytes)",
                segment.index,
                range,
                range.as_ref().map_or(0, |r| r.end - r.start)
            );
        }
        if !pieces.is_empty() {
            let joined = super::super::audio::join_audio_pieces(
                &info,
                &actions,
                &pieces,
                &dir.path().join("joined.nut"),
            )
            .expect("join");
            println!("audio joined from the segments' pieces: {joined:?}");
        }
        println!("segments: {total} of {size}");
    }
}
