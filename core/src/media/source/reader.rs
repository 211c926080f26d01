//! A reader's position over the source with adaptive read-ahead ([`Cursor`], `Read + Seek`
//! for FFmpeg's custom I/O): [`MIN_AHEAD`] after a seek, doubling while sequential up to
//! [`MAX_AHEAD`], [`WINDOWS`] windows, bounded by the source's hint.

use super::handle::FetchCounter;
use super::open::ReadFailure;
use super::{ByteSource, Source, SourceError};
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The size of FFmpeg's own buffer over the custom I/O, in bytes (libavformat's default).
pub const AVIO_BUFFER: usize = 32 * 1024;
/// Bytes fetched by the first read after a seek.
pub const MIN_AHEAD: usize = 32 * 1024;
/// The most bytes one fetch asks for (and the read-ahead window holds).
pub const MAX_AHEAD: usize = 4 * 1024 * 1024;

/// How many read-ahead windows one reader keeps: a demuxer reading two interleaved places of
/// the file (an MP4's audio and video chunks, badly interleaved) keeps a window at each.
pub const WINDOWS: usize = 4;

/// Fetched bytes at `start`, and the size of the next fetch that continues them.
#[derive(Debug, Default)]
pub(super) struct Window {
    start: u64,
    pub(super) data: Vec<u8>,
    /// The end of the fetch that made it (`start + data.len()`, or past it after a direct read).
    end: u64,
    ahead: usize,
}

/// A reader's position over a [`ByteSource`] with its read-ahead windows (`Read + Seek` for
/// FFmpeg's custom I/O). Memory: at most [`WINDOWS`] × [`MAX_AHEAD`].
pub(super) struct Cursor {
    bytes: Arc<dyn ByteSource>,
    size: u64,
    position: u64,
    /// Most recently used last.
    pub(super) windows: Vec<Window>,
    hint: Option<Range<u64>>,
    fetched: Arc<FetchCounter>,
    failure: ReadFailure,
}

impl Cursor {
    pub(super) fn new(source: &Source, failure: ReadFailure) -> Self {
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
