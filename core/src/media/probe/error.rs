//! [`ProbeError`]: why a source cannot be transcoded, each variant naming the file.

use ffmpeg_next as ffmpeg;
use std::path::PathBuf;
/// Why a source cannot be transcoded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{path}: no such file")]
    NotFound { path: PathBuf },
    #[error("{path}: is a directory, not a video file")]
    IsDirectory { path: PathBuf },
    #[error("{path}: is empty (0 bytes)")]
    Empty { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `reason`: what FFmpeg logged when it refused the file, followed by the text of `code`, the
    /// error it returned (not a `#[source]`: the reason already says it).
    #[error("{path}: FFmpeg cannot open it as media: {reason}")]
    NotMedia {
        path: PathBuf,
        reason: String,
        code: ffmpeg::Error,
    },
    #[error("{path}: has no video stream (streams found: {found})")]
    NoVideo { path: PathBuf, found: String },
    #[error("{path}: video codec {codec} cannot be decoded by this FFmpeg build")]
    Undecodable { path: PathBuf, codec: String },
    #[error("{path}: the video stream has no frames")]
    NoFrames { path: PathBuf },
    #[error("{path}: none of its {packets} video packets has a timestamp (a raw elementary stream?); put it in a container first, e.g. `ffmpeg -r 25 -i INPUT -c copy OUTPUT.mkv` with its real frame rate")]
    NoTimestamps { path: PathBuf, packets: u64 },
    /// The container declares a longer stream (or file) than its packets hold: a cut download or
    /// an interrupted recording. Seconds, first readable timestamp to the end of the last packet.
    #[error("{path}: truncated or damaged: the container declares {declared_seconds:.2} s of {what} but only {read_seconds:.2} s can be read")]
    Truncated {
        path: PathBuf,
        /// `video` or `media` (the whole file, when the video track declares no length).
        what: &'static str,
        declared_seconds: f64,
        read_seconds: f64,
    },
    /// Reading the source's bytes failed (see [`super::source::SourceErrorKind`]).
    #[error("{path}: read failed: {source}")]
    Source {
        path: PathBuf,
        #[source]
        source: super::source::SourceError,
    },
    #[error("{path}: read error after {read} video frames: {source}")]
    Read {
        path: PathBuf,
        read: u64,
        #[source]
        source: ffmpeg::Error,
    },
    #[error("{path}: the first video frame cannot be decoded ({reason})")]
    FirstFrame { path: PathBuf, reason: String },
}
