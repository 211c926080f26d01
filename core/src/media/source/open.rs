//! Opening the source for FFmpeg: the custom I/O over a [`Cursor`] with the ffmpeg CLI's
//! demuxer options, the typed cause of a failed read ([`ReadFailure`]), and the bytes opening
//! it takes ([`opening_reads`]).

use super::reader::{Cursor, AVIO_BUFFER};
use super::{RecordingSource, SavedRanges, Source, SourceError};
use crate::media::MediaError;
use ffmpeg_next as ffmpeg;
use std::sync::{Arc, Mutex};

/// The typed cause of the last failed read of one opened reader, kept because FFmpeg reduces
/// it to an error code.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadFailure(Arc<Mutex<Option<SourceError>>>);

impl ReadFailure {
    pub(super) fn set(&self, error: SourceError) {
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
    crate::media::util::init();
    let recorder = Arc::new(RecordingSource::new(source.bytes.clone(), cap));
    let (input, _) = open(&source.over(recorder.clone()))?;
    drop(input);
    Ok(recorder.recorded())
}
