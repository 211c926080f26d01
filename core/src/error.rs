//! The library's top-level error and its stable classification.
//!
//! [`ErrorKind::name`] is the contract with the outside: the Lambda handlers report it as the
//! error type and the state machine's Retry/Catch match on it, so names never change.

use crate::media::probe::ProbeError;
use crate::media::source::SourceErrorKind;
use crate::media::verify::VerifyError;
use crate::media::MediaError;
use crate::output_plan::PartPlanError;
use crate::plan::PlanError;
use crate::state::StateError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("{path}: cannot plan segments: {source}")]
    Plan {
        path: PathBuf,
        #[source]
        source: PlanError,
    },
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A request that cannot be carried out as asked (paths, options).
    #[error("{path}: {reason}")]
    Request { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The job's output, as estimated before any work, cannot be one S3 multipart upload.
    #[error("{path}: {source}")]
    OutputTooLarge {
        path: PathBuf,
        #[source]
        source: PartPlanError,
    },
    /// The run was told to stop ([`crate::local::TranscodeOptions::interrupt`]).
    #[error("{path}: interrupted before it finished")]
    Interrupted { path: PathBuf },
    /// A segment file could not be kept ([`crate::engine::SegmentKeeper`]): storage that
    /// failed (`retryable`) or refused the request as made (a deployment problem).
    #[error("{path}: {reason}")]
    Keep {
        path: PathBuf,
        reason: String,
        retryable: bool,
    },
}

/// How a failure should be treated by whoever retries work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input or the request is wrong: retrying cannot help.
    InvalidInput,
    /// FFmpeg failed on media that looked valid: retrying is unlikely to help.
    MediaFailure,
    /// A dependency was unavailable (state store, storage): retry with backoff.
    Transient,
    /// The work is no longer wanted: a newer upload replaced the input (AWS). Not retried, and
    /// not a failure of the job's input.
    Superseded,
    /// treemux's own state or deployment is broken: a job record or manifest that cannot be
    /// read, a request the state store or Step Functions refuses as made, a payload that does
    /// not serialize. Retrying reads or sends the same thing again, so it is never retried; it
    /// is not the upload's fault either.
    Internal,
}

impl From<crate::atomic_file::AtomicFileError> for Error {
    fn from(error: crate::atomic_file::AtomicFileError) -> Self {
        Self::Io {
            path: error.path,
            source: error.source,
        }
    }
}

impl ErrorKind {
    /// The stable name used as the Lambda error type.
    pub fn name(self) -> &'static str {
        match self {
            Self::InvalidInput => "TreemuxInvalidInput",
            Self::MediaFailure => "TreemuxMediaFailure",
            Self::Transient => "TreemuxTransient",
            Self::Superseded => "TreemuxSuperseded",
            Self::Internal => "TreemuxInternal",
        }
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Media(MediaError::Source { source, .. })
            | Self::Probe(ProbeError::Source { source, .. }) => match source.kind {
                SourceErrorKind::Unavailable | SourceErrorKind::Io => ErrorKind::Transient,
                SourceErrorKind::Changed => ErrorKind::Superseded,
                SourceErrorKind::Gone => ErrorKind::InvalidInput,
            },
            Self::Probe(ProbeError::Io { .. })
            | Self::Io { .. }
            | Self::State(StateError::Unavailable(_)) => ErrorKind::Transient,
            Self::Probe(_)
            | Self::Plan { .. }
            | Self::Request { .. }
            | Self::OutputTooLarge { .. } => ErrorKind::InvalidInput,
            Self::Media(MediaError::Io { .. } | MediaError::Interrupted { .. })
            | Self::Interrupted { .. } => ErrorKind::Transient,
            Self::Keep { retryable, .. } => {
                if *retryable {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Internal
                }
            }
            Self::Media(MediaError::Unsupported { .. }) => ErrorKind::InvalidInput,
            Self::Media(MediaError::Layout { .. }) => ErrorKind::Internal,
            Self::Media(_) | Self::Verify(_) => ErrorKind::MediaFailure,
            // A missing record or pair, a claim held by another: the store and the protocol
            // disagree, which no retry and no other input fixes.
            Self::State(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn request(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Request {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
