//! The one error type every handler returns, and its stable name.
//!
//! The name becomes the Lambda error type (and the worker's SendTaskFailure error), which the
//! state machine's Retry and Catch match: `TreemuxTransient` is retried with backoff;
//! `TreemuxInvalidInput` and `TreemuxMediaFailure` go straight to the job-failed step, and so
//! does `TreemuxSuperseded` (a newer upload replaced the job's input; the job record says
//! SUPERSEDED, not FAILED).

use treemux::ErrorKind;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    pub kind: ErrorKind,
    pub message: String,
}

impl HandlerError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    pub fn media(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::MediaFailure, message)
    }

    /// The job's input was replaced by a newer upload: stop, without retrying.
    pub fn superseded(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Superseded, message)
    }

    /// The stable error name.
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}

/// The message of an error and all its causes, on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

impl From<treemux::Error> for HandlerError {
    fn from(error: treemux::Error) -> Self {
        Self::new(error.kind(), chain(&error))
    }
}

impl From<treemux::state::StateError> for HandlerError {
    fn from(error: treemux::state::StateError) -> Self {
        treemux::Error::from(error).into()
    }
}

impl From<treemux::media::MediaError> for HandlerError {
    fn from(error: treemux::media::MediaError) -> Self {
        treemux::Error::from(error).into()
    }
}

impl From<treemux::media::probe::ProbeError> for HandlerError {
    fn from(error: treemux::media::probe::ProbeError) -> Self {
        treemux::Error::from(error).into()
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.name().to_owned(),
            error_message: error.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_carry_the_stable_name() {
        let diagnostic: lambda_runtime::Diagnostic = HandlerError::transient("throttled").into();
        assert_eq!(diagnostic.error_type, "TreemuxTransient");
        assert_eq!(diagnostic.error_message, "throttled");
        let probe = treemux::media::probe::ProbeError::Empty {
            path: "x.mp4".into(),
        };
        let error = HandlerError::from(probe);
        assert_eq!(
            (error.name(), error.message.as_str()),
            ("TreemuxInvalidInput", "x.mp4: is empty (0 bytes)")
        );
    }
}
