//! `treemux worker`: runs the Lambda handlers from SQS instead of Lambda.
//!
//! The local-stack state machine sends each task as an SQS message `{function, token, input}`;
//! the worker runs the handler of that name and answers Step Functions with SendTaskSuccess
//! (the handler's output) or SendTaskFailure (the handler's error name and message), exactly
//! what a Lambda task would produce. It also takes S3 event notifications from an upload queue
//! and runs analyze on them. Usable on any machine that reaches the queues.
//!
//! An upload notification, and a task message without a token, is an asynchronous invocation
//! (on AWS, S3 invoking analyze; EventBridge invoking job-failed when an execution timed out or
//! was stopped): nobody is answered, and it runs as Lambda runs one, up to [`ASYNC_ATTEMPTS`]
//! attempts (`TREEMUX_WORKER_ASYNC_RETRY_SECONDS` apart, doubling), after which analyze's
//! invocation record goes to job-failed, its `OnFailure` destination in the template.
//!
//! A message stays invisible to other workers while its task runs: the worker extends its
//! visibility every third of [`WorkerOptions::visibility_seconds`], so a dead worker's tasks
//! return after at most that long, and a long encode is never handed to a second worker.
//!
//! - [`faults`]: the injected faults (`TREEMUX_WORKER_FAULTS`) and the object store that fails reads.
//! - [`poll`]: the SQS loop: tasks and upload notifications, visibility kept while a task runs,
//!   answers to Step Functions.
//! - [`invocations`]: asynchronous invocations as Lambda runs them (attempts, retries, the
//!   failure destination).

pub mod faults;
pub mod invocations;
pub mod poll;

pub use faults::{FaultAction, Faults, FaultyObjects, FAILED_READ, THROTTLED_ERROR};
pub use invocations::{on_failure_destination, ASYNC_ATTEMPTS};
pub use poll::{run, WorkerOptions, DEFAULT_VISIBILITY_SECONDS};

use serde_json::Value;
use treemux_core::names::Function;
use treemux_core::state::{JobStore, StateStore};
use treemux_functions::error::HandlerError;
use treemux_functions::handlers::{self, Services};
use treemux_functions::ports::{ExecutionStarter, ObjectStore};
use treemux_functions::upload::MultipartStore;

/// Runs `function`'s handler on `input`.
pub async fn dispatch<S, O, X>(
    services: &Services<S, O, X>,
    function: Function,
    input: Value,
) -> Result<Value, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
    X: ExecutionStarter,
{
    fn parse<T: serde::de::DeserializeOwned>(
        function: Function,
        input: Value,
    ) -> Result<T, HandlerError> {
        serde_json::from_value(input)
            .map_err(|e| HandlerError::invalid(format!("{function}: unexpected input: {e}")))
    }
    fn output<T: serde::Serialize>(value: T) -> Result<Value, HandlerError> {
        serde_json::to_value(value).map_err(|e| HandlerError::internal(e.to_string()))
    }
    match function {
        Function::Analyze => output(handlers::analyze(services, parse(function, input)?).await?),
        Function::SplitAudio => {
            output(handlers::split_audio(services, parse(function, input)?).await?)
        }
        Function::SplitAndConvert => {
            output(handlers::split_and_convert(services, parse(function, input)?).await?)
        }
        Function::MergeVideo => {
            output(handlers::merge_video(services, parse(function, input)?).await?)
        }
        Function::MergeAudio => {
            output(handlers::merge_audio(services, parse(function, input)?).await?)
        }
        Function::UploadParts => {
            output(handlers::upload_parts(services, parse(function, input)?).await?)
        }
        Function::JobFailed => {
            output(handlers::job_failed(services, parse(function, input)?).await?)
        }
    }
}

/// The function a task message names, or the error its task fails with (as Lambda would
/// answer a request for a function that does not exist).
pub fn function_named(name: &str) -> Result<Function, HandlerError> {
    Function::parse(name)
        .ok_or_else(|| HandlerError::invalid(format!("no function named {name:?}")))
}
