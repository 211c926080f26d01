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

mod bytes;
mod handle;
mod open;
mod ranges;
mod reader;
mod saved;

pub use bytes::{ByteSource, FileSource, SourceError, SourceErrorKind};
pub use handle::{Fetched, Source};
pub use open::opening_reads;
pub(crate) use open::{open, open_raw, ReadFailure};
pub use ranges::segment_byte_range;
pub use reader::{AVIO_BUFFER, MAX_AHEAD, MIN_AHEAD, WINDOWS};
pub(crate) use saved::ZeroedSource;
pub use saved::{OverlaySource, RecordingSource, SavedRanges};

#[cfg(test)]
mod demux_tests;
#[cfg(test)]
mod tests;
