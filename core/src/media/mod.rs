//! Media work over ffmpeg-next, one module per step of the pipeline.
//!
//! Every function here is blocking (FFmpeg calls block): async callers run them on a blocking
//! thread. Files are always written under a temporary name beside the target and renamed when
//! complete, so a crash never leaves a file that looks finished.

pub mod audio;
pub mod clock;
pub mod convert;
pub mod keyframes;
pub mod merge;
pub mod package;
pub mod picture;
pub mod probe;
pub mod remux;
pub(crate) mod segment_index;
pub mod source;
pub mod streams;
pub mod thumbnail;
pub mod verify;

pub(crate) mod util;

use std::path::PathBuf;

pub use util::init;

/// The libavcodec this process loaded: `(version, configure line)`. The configure line tells a
/// slim layer build (`--disable-everything …`) from a distribution's full one.
pub fn codec_library() -> (String, String) {
    init();
    let version = ffmpeg_next::codec::version();
    (
        format!(
            "{}.{}.{}",
            version >> 16,
            (version >> 8) & 0xff,
            version & 0xff
        ),
        ffmpeg_next::codec::configuration().to_owned(),
    )
}

/// What can go wrong while reading, encoding or writing media.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: ffmpeg_next::Error,
    },
    /// Reading the source's bytes failed (a local read, or the object store: unavailable,
    /// replaced, gone); the kind says which.
    #[error("{path}: read failed: {source}")]
    Source {
        path: PathBuf,
        #[source]
        source: source::SourceError,
    },
    #[error("{path}: read failed: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: ffmpeg_next::Error,
    },
    #[error("{path}: decoding {codec} failed: {source}")]
    Decode {
        path: PathBuf,
        codec: String,
        #[source]
        source: ffmpeg_next::Error,
    },
    #[error("encoder {encoder} is not in this FFmpeg build")]
    EncoderMissing { encoder: String },
    #[error("encoder {encoder} cannot start with {settings}: {source}")]
    EncoderOpen {
        encoder: String,
        settings: String,
        #[source]
        source: ffmpeg_next::Error,
    },
    #[error("encoder {encoder} failed: {source}")]
    Encode {
        encoder: String,
        #[source]
        source: ffmpeg_next::Error,
    },
    #[error("{path}: writing failed: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: ffmpeg_next::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stretch of the source decodes to another number of frames than its packets list.
    /// Seconds from the first frame; `segment` only for logs (the message speaks of the file).
    #[error("{path}: damaged video from {from_seconds:.2} s to {to_seconds:.2} s: it decodes to {got} frames where the file lists {expected}")]
    FrameCount {
        path: PathBuf,
        segment: u32,
        from_seconds: f64,
        to_seconds: f64,
        expected: u64,
        got: u64,
    },
    #[error("cannot concatenate {left} and {right}: {reason}")]
    Incompatible {
        left: PathBuf,
        right: PathBuf,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    /// The scratch files disagree with the output's layout (a segment changed after it was
    /// described): treemux's own state is wrong, and nothing of the part is written.
    #[error("{path}: {reason}; the output's layout does not match it")]
    Layout { path: PathBuf, reason: String },
    /// The caller asked the work to stop (an interrupted run); nothing was written.
    #[error("{path}: interrupted")]
    Interrupted { path: PathBuf },
}

impl From<crate::atomic_file::AtomicFileError> for MediaError {
    fn from(error: crate::atomic_file::AtomicFileError) -> Self {
        Self::Io {
            path: error.path,
            source: error.source,
        }
    }
}

impl MediaError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
