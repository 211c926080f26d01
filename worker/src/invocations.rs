//! Asynchronous invocations as Lambda runs them: up to [`ASYNC_ATTEMPTS`] attempts, retried
//! with a doubling wait, then the invocation record to the function's failure destination.

use crate::faults::{FaultAction, Faults};
use crate::poll::run_action;
use serde_json::Value;
use std::time::Duration;
use treemux_core::names::Function;
use treemux_core::state::{JobStore, StateStore};
use treemux_functions::error::HandlerError;
use treemux_functions::events::S3Event;
use treemux_functions::handlers::Services;
use treemux_functions::ports::{ExecutionStarter, ObjectStore};
use treemux_functions::upload::MultipartStore;

/// Attempts Lambda makes of an asynchronous invocation (an S3 event for analyze, an EventBridge
/// rule's invocation of job-failed): the first and the template's `MaximumRetryAttempts` (2).
pub const ASYNC_ATTEMPTS: u32 = 3;

/// Where a function's asynchronous invocation goes after its last failed attempt, as the
/// template's `EventInvokeConfig` `OnFailure` destinations of type Lambda say: analyze's to
/// job-failed. (job-failed's own failures go to an SQS queue on AWS; the worker logs them.)
pub fn on_failure_destination(function: Function) -> Option<Function> {
    match function {
        Function::Analyze => Some(Function::JobFailed),
        _ => None,
    }
}

/// Lambda's record of an asynchronous invocation whose last attempt failed, as its `OnFailure`
/// destination receives it (see [`treemux_functions::events::AsyncInvocationRecord`]).
fn invocation_record(
    function: Function,
    input: Value,
    attempts: u32,
    error: &HandlerError,
) -> Value {
    let timestamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    serde_json::json!({
        "version": "1.0",
        "timestamp": timestamp,
        "requestContext": {
            "requestId": format!("treemux-worker-{}", std::process::id()),
            "functionArn": format!("arn:aws:lambda:local:000000000000:function:{function}:$LATEST"),
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": input,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {
            "errorType": error.name(),
            "errorMessage": error.message,
        },
    })
}

/// An asynchronous invocation, as Lambda runs one: up to [`ASYNC_ATTEMPTS`] attempts (any error
/// is retried, after `retry_seconds`, then twice that), nobody answered; after the last failed
/// attempt the invocation record goes to the function's [`on_failure_destination`] (analyze's
/// to job-failed), which runs as an asynchronous invocation of its own.
pub(crate) async fn invoke_async<S, O, X>(
    services: &Services<S, O, X>,
    faults: &Faults,
    function: Function,
    input: Value,
    retry_seconds: f64,
) where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
    X: ExecutionStarter,
{
    let mut delay = Duration::from_secs_f64(retry_seconds.max(0.0));
    let mut last_error = None;
    for attempt in 1..=ASYNC_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        let action = faults.decide(function, &input);
        if action == FaultAction::Lose {
            return tracing::warn!(
                function = function.name(),
                "worker: injected fault: asynchronous invocation lost"
            );
        }
        match run_action(services, function, input.clone(), action).await {
            Ok(_) => {
                // The handler logged its own outcome (job ids, keys).
                return tracing::info!(
                    function = function.name(),
                    attempt,
                    outcome = "ok",
                    "worker: asynchronous invocation"
                );
            }
            Err(error) => {
                tracing::warn!(
                    function = function.name(),
                    attempt,
                    attempts = ASYNC_ATTEMPTS,
                    outcome = "failed",
                    error = error.name(),
                    message = %error.message,
                    "worker: asynchronous invocation"
                );
                last_error = Some(error);
            }
        }
    }
    let Some(error) = last_error else { return };
    match on_failure_destination(function) {
        Some(destination) => {
            let record = invocation_record(function, input, ASYNC_ATTEMPTS, &error);
            // The destination's own invocation is asynchronous too: retried, never re-routed.
            Box::pin(invoke_async(
                services,
                faults,
                destination,
                record,
                retry_seconds,
            ))
            .await;
        }
        None => tracing::error!(
            function = function.name(),
            attempts = ASYNC_ATTEMPTS,
            outcome = "dropped",
            error = error.name(),
            message = %error.message,
            "worker: asynchronous invocation failed on every attempt; no destination (on AWS, job-failed's go to UnrecordedFailures)"
        ),
    }
}

/// Runs analyze on an S3 event notification, as Lambda runs an S3 event: an asynchronous
/// invocation ([`invoke_async`]).
pub(crate) async fn handle_upload<S, O, X>(
    services: &Services<S, O, X>,
    faults: &Faults,
    body: &str,
    retry_seconds: f64,
) where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
    X: ExecutionStarter,
{
    let event: S3Event = match serde_json::from_str(body) {
        Ok(event) => event,
        Err(error) => {
            return tracing::error!(
                error = %error,
                "worker: dropping an upload notification that is not an S3 event"
            )
        }
    };
    if event.records.is_empty() && event.submit.is_none() {
        return; // s3:TestEvent, sent once when the notification is configured.
    }
    let Ok(input) = serde_json::to_value(&event) else {
        return;
    };
    invoke_async(services, faults, Function::Analyze, input, retry_seconds).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// as an invocation record with the event and the last error.
    #[test]
    fn the_invocation_record_is_what_job_failed_reads() {
        let event = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "in"}, "object": {"key": "uploads/a.mp4"}}}]});
        let error = HandlerError::transient("s3://in/uploads/a.mp4: 503");
        let record = invocation_record(Function::Analyze, event, ASYNC_ATTEMPTS, &error);
        let input: treemux_functions::events::JobFailedInput =
            serde_json::from_value(record).expect("job-failed's input");
        let treemux_functions::events::JobFailedInput::Invocation(record) = input else {
            panic!("not an invocation record: {input:?}");
        };
        assert_eq!(record.request_payload.records.len(), 1);
        assert_eq!(
            record.describe(),
            "TreemuxTransient: s3://in/uploads/a.mp4: 503 (analyze gave up after 3 attempts: RetriesExhausted)"
        );
        assert_eq!(
            on_failure_destination(Function::Analyze),
            Some(Function::JobFailed)
        );
        assert_eq!(on_failure_destination(Function::JobFailed), None);
    }
}
