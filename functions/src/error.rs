//! The one error type every handler returns, and its stable name.
//!
//! The name becomes the Lambda error type (and the worker's SendTaskFailure error), which the
//! state machine's Retry and Catch match: `TreemuxTransient` is retried with backoff;
//! `TreemuxInvalidInput`, `TreemuxMediaFailure` and `TreemuxInternal` go straight to the
//! job-failed step; `TreemuxSuperseded` (a newer upload replaced the job's input; the job record
//! says SUPERSEDED, not FAILED) is caught into a Succeed state. [`RetryClass`] states that
//! contract; `functions/tests/error_names.rs` checks the definition keeps it.

use treemux_core::ErrorKind;

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

    /// treemux's own state or deployment is broken (see [`ErrorKind::Internal`]): not retried.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// How the state machine treats this error ([`RetryClass::of`] its kind).
    pub fn retry_class(&self) -> RetryClass {
        RetryClass::of(self.kind)
    }

    /// The stable error name.
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}

/// What the state machine does with a task that failed with an error of some kind: the contract
/// `statemachine/treemux.asl.json` must keep (the error-name table test checks it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryClass {
    /// Retried with backoff (a `Retry` of every task names it), then caught as a failure.
    Retried,
    /// Never retried: caught at once, and the job ends FAILED with the cause.
    Fatal,
    /// Never retried: caught at once by its own `Catch` into a `Succeed` state (a superseded
    /// job: nothing failed).
    Stops,
}

impl RetryClass {
    pub fn of(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Transient => Self::Retried,
            ErrorKind::InvalidInput | ErrorKind::MediaFailure | ErrorKind::Internal => Self::Fatal,
            ErrorKind::Superseded => Self::Stops,
        }
    }
}

/// Every error kind, for tables over them.
pub const ERROR_KINDS: [ErrorKind; 5] = [
    ErrorKind::InvalidInput,
    ErrorKind::MediaFailure,
    ErrorKind::Transient,
    ErrorKind::Superseded,
    ErrorKind::Internal,
];

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

impl From<treemux_core::Error> for HandlerError {
    fn from(error: treemux_core::Error) -> Self {
        Self::new(error.kind(), chain(&error))
    }
}

impl From<treemux_core::state::StateError> for HandlerError {
    fn from(error: treemux_core::state::StateError) -> Self {
        treemux_core::Error::from(error).into()
    }
}

impl From<treemux_core::media::MediaError> for HandlerError {
    fn from(error: treemux_core::media::MediaError) -> Self {
        treemux_core::Error::from(error).into()
    }
}

impl From<treemux_core::media::probe::ProbeError> for HandlerError {
    fn from(error: treemux_core::media::probe::ProbeError) -> Self {
        treemux_core::Error::from(error).into()
    }
}

impl From<crate::ports::ObjectError> for HandlerError {
    fn from(error: crate::ports::ObjectError) -> Self {
        use crate::ports::ObjectError;
        match error {
            ObjectError::NotFound { .. } => HandlerError::invalid(error.to_string()),
            ObjectError::Changed { .. } => HandlerError::superseded(error.to_string()),
            ObjectError::Refused { .. } => HandlerError::internal(error.to_string()),
            ObjectError::Failed { .. } | ObjectError::Local { .. } => {
                HandlerError::transient(error.to_string())
            }
        }
    }
}

impl From<crate::ports::StartError> for HandlerError {
    fn from(error: crate::ports::StartError) -> Self {
        use crate::ports::StartError;
        match error {
            StartError::Unavailable { .. } => HandlerError::transient(error.to_string()),
            StartError::Refused { .. } => HandlerError::internal(error.to_string()),
        }
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
        let probe = treemux_core::media::probe::ProbeError::Empty {
            path: "x.mp4".into(),
        };
        let error = HandlerError::from(probe);
        assert_eq!(
            (error.name(), error.message.as_str()),
            ("TreemuxInvalidInput", "x.mp4: is empty (0 bytes)")
        );
    }
}
