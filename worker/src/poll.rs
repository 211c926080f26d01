//! The SQS loop: tasks from the local-stack state machine and upload notifications, each task
//! kept invisible to other workers while it runs, answered with SendTaskSuccess/SendTaskFailure.

use crate::dispatch;
use crate::faults::{FaultAction, Faults, THROTTLED_ERROR};
use crate::invocations::{handle_upload, invoke_async};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;
use treemux_core::names::Function;
use treemux_core::state::{JobStore, StateStore};
use treemux_functions::error::HandlerError;
use treemux_functions::handlers::{self, Services};
use treemux_functions::ports::{ExecutionStarter, ObjectStore};
use treemux_functions::upload::MultipartStore;

/// Where the worker takes work from.
#[derive(Debug)]
pub struct WorkerOptions {
    pub task_queue_url: String,
    /// S3 event notifications for analyze; `None` to take tasks only.
    pub upload_queue_url: Option<String>,
    /// Tasks run at once.
    pub concurrency: usize,
    /// How long a received message stays hidden from other workers, in seconds, renewed while
    /// its task runs: the longest a dead worker's task waits before another worker takes it.
    pub visibility_seconds: u32,
    /// Seconds before the first retry of a failed asynchronous invocation (doubling after;
    /// Lambda waits about a minute, then two).
    pub async_retry_seconds: f64,
    pub faults: Faults,
}

/// [`WorkerOptions::visibility_seconds`] by default.
pub const DEFAULT_VISIBILITY_SECONDS: u32 = 60;

/// Polls until interrupted (Ctrl-C or SIGTERM).
pub async fn run<S, O, X>(
    services: Arc<Services<S, O, X>>,
    sqs: aws_sdk_sqs::Client,
    sfn: aws_sdk_sfn::Client,
    options: WorkerOptions,
) -> anyhow::Result<()>
where
    S: StateStore + JobStore + 'static,
    O: ObjectStore + MultipartStore + Clone + 'static,
    X: ExecutionStarter + 'static,
{
    let visibility = i32::try_from(options.visibility_seconds.clamp(3, 43_200)).unwrap_or(60);
    let options = Arc::new(options);
    let in_flight = Arc::new(InFlight::default());
    let permits = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
    tracing::info!(
        task_queue = %options.task_queue_url,
        upload_queue = options.upload_queue_url.as_deref().unwrap_or(""),
        concurrency = options.concurrency.max(1),
        "worker: taking tasks"
    );
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        let queues = std::iter::once((options.task_queue_url.clone(), true))
            .chain(options.upload_queue_url.clone().map(|url| (url, false)));
        for (queue, is_task) in queues {
            let available = permits.available_permits().clamp(1, 10) as i32;
            let received = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                received = sqs.receive_message().queue_url(&queue).max_number_of_messages(available).wait_time_seconds(1).visibility_timeout(visibility).send() => received,
            };
            let messages = match received {
                Ok(output) => output.messages.unwrap_or_default(),
                Err(error) => {
                    tracing::warn!(
                        queue = %queue,
                        error = %aws_sdk_sqs::error::DisplayErrorContext(error),
                        "worker: receiving messages failed"
                    );
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            for message in messages {
                let permit = permits.clone().acquire_owned().await?;
                let (services, sqs, sfn, options, queue, in_flight) = (
                    services.clone(),
                    sqs.clone(),
                    sfn.clone(),
                    options.clone(),
                    queue.clone(),
                    in_flight.clone(),
                );
                tokio::spawn(async move {
                    let body = message.body().unwrap_or_default().to_owned();
                    let receipt = message.receipt_handle().unwrap_or_default().to_owned();
                    let keep_hidden = tokio::spawn(keep_invisible(
                        sqs.clone(),
                        queue.clone(),
                        receipt,
                        visibility,
                    ));
                    if is_task {
                        // The same task delivered again while it still runs waits for it, then
                        // finds its work done, instead of redoing it alongside.
                        let _same_task = in_flight.lock(&task_key(&body)).await;
                        let answered = handle_task(
                            &services,
                            &sfn,
                            &options.faults,
                            &body,
                            options.async_retry_seconds,
                        )
                        .await;
                        if !answered {
                            // Step Functions never heard the answer: the message comes back
                            // after its visibility timeout and the task (which finds its work
                            // done) answers again, instead of the execution waiting forever.
                            keep_hidden.abort();
                            return;
                        }
                    } else {
                        handle_upload(
                            &services,
                            &options.faults,
                            &body,
                            options.async_retry_seconds,
                        )
                        .await;
                    }
                    keep_hidden.abort();
                    if let Some(receipt) = message.receipt_handle() {
                        if let Err(error) = sqs
                            .delete_message()
                            .queue_url(&queue)
                            .receipt_handle(receipt)
                            .send()
                            .await
                        {
                            tracing::warn!(
                                queue = %queue,
                                error = %aws_sdk_sqs::error::DisplayErrorContext(error),
                                "worker: deleting a message failed"
                            );
                        }
                    }
                    drop(permit);
                });
            }
        }
    }
}

/// Renews a message's invisibility every third of `visibility` seconds until aborted, so the
/// message reappears only if this worker dies.
async fn keep_invisible(sqs: aws_sdk_sqs::Client, queue: String, receipt: String, visibility: i32) {
    let period = Duration::from_secs_f64(f64::from(visibility) / 3.0);
    loop {
        tokio::time::sleep(period).await;
        if let Err(error) = sqs
            .change_message_visibility()
            .queue_url(&queue)
            .receipt_handle(&receipt)
            .visibility_timeout(visibility)
            .send()
            .await
        {
            tracing::warn!(
                queue = %queue,
                error = %aws_sdk_sqs::error::DisplayErrorContext(error),
                "worker: extending a message's visibility failed"
            );
        }
    }
}

/// Locks keyed by task (function and input), for tasks that run now.
#[derive(Debug, Default)]
struct InFlight {
    locks: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl InFlight {
    async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}

/// What makes two task messages the same task: the function and its input (not the token).
fn task_key(body: &str) -> String {
    serde_json::from_str::<Value>(body).map_or_else(
        |_| body.to_owned(),
        |message| format!("{}:{}", message["function"], message["input"]),
    )
}

/// Runs one state-machine task and answers Step Functions; false when the answer could not be
/// sent (after a few tries: moto's Step Functions answers 500 now and then under load), so the
/// message is left to come back. Every other outcome (answered, or a task that must not be
/// answered) is true.
async fn handle_task<S, O, X>(
    services: &Services<S, O, X>,
    sfn: &aws_sdk_sfn::Client,
    faults: &Faults,
    body: &str,
    retry_seconds: f64,
) -> bool
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
    X: ExecutionStarter,
{
    let message: Value = match serde_json::from_str(body) {
        Ok(message) => message,
        Err(error) => {
            tracing::error!(error = %error, "worker: dropping a message that is not JSON");
            return true;
        }
    };
    let Some(name) = message["function"].as_str() else {
        tracing::error!("worker: dropping a message without a function");
        return true;
    };
    let function = match crate::function_named(name) {
        Ok(function) => function,
        Err(error) => {
            tracing::error!(
                function = name,
                message = %error.message,
                "worker: a task of no known function"
            );
            // Answered as the task's failure (it cannot run); without a token nobody waits.
            if let Some(token) = message["token"].as_str() {
                let answer = sfn
                    .send_task_failure()
                    .task_token(token)
                    .error(error.name())
                    .cause(error.message.clone())
                    .send()
                    .await;
                if let Err(failed) = answer {
                    tracing::warn!(
                        function = name,
                        error = %aws_sdk_sfn::error::DisplayErrorContext(failed),
                        "worker: answering Step Functions failed"
                    );
                }
            }
            return true;
        }
    };
    let input = message["input"].clone();
    // No token: an asynchronous invocation (what EventBridge makes of job-failed), nobody to answer.
    let Some(token) = message["token"].as_str() else {
        invoke_async(services, faults, function, input, retry_seconds).await;
        return true;
    };
    let job = message["input"]["job_id"].as_str().unwrap_or("-");
    let started = Instant::now();
    let result = match faults.decide(function, &input) {
        FaultAction::Lose => {
            tracing::warn!(
                function = function.name(),
                job_id = job,
                "worker: injected fault: lost, never answered"
            );
            return true;
        }
        FaultAction::Throttle => {
            tracing::warn!(
                function = function.name(),
                job_id = job,
                "worker: injected fault: throttled ({THROTTLED_ERROR})"
            );
            let answer = sfn
                .send_task_failure()
                .task_token(token)
                .error(THROTTLED_ERROR)
                .cause("Rate Exceeded. (injected by TREEMUX_WORKER_FAULTS)")
                .send()
                .await;
            if let Err(error) = answer {
                tracing::warn!(
                    function = function.name(),
                    job_id = job,
                    error = %aws_sdk_sfn::error::DisplayErrorContext(error),
                    "worker: answering Step Functions failed"
                );
            }
            return true;
        }
        action => run_action(services, function, input, action).await,
    };
    match &result {
        Ok(_) => tracing::info!(
            function = function.name(),
            job_id = job,
            seconds = started.elapsed().as_secs_f64(),
            outcome = "ok",
            "worker: task answered"
        ),
        Err(error) => tracing::warn!(
            function = function.name(),
            job_id = job,
            seconds = started.elapsed().as_secs_f64(),
            outcome = "failed",
            error = error.name(),
            message = %error.message,
            "worker: task answered"
        ),
    }
    for attempt in 1..=ANSWER_ATTEMPTS {
        let answer = match &result {
            Ok(output) => sfn
                .send_task_success()
                .task_token(token)
                .output(output.to_string())
                .send()
                .await
                .map(|_| ())
                .map_err(answer_failure),
            Err(error) => {
                let cause: String = error.message.chars().take(30_000).collect();
                sfn.send_task_failure()
                    .task_token(token)
                    .error(error.name())
                    .cause(cause)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(answer_failure)
            }
        };
        match answer {
            Ok(()) => return true,
            Err((error, retryable)) => {
                tracing::warn!(
                    function = function.name(),
                    job_id = job,
                    attempt,
                    error = %error,
                    "worker: answering Step Functions failed"
                );
                if !retryable {
                    // Refused (the token answered or timed out already): the same again.
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
        }
    }
    false
}

/// Why an answer was not taken, and whether sending it again can help: not when Step Functions
/// answered with a client error (an unknown or expired token), yes for a server error or no
/// answer at all.
fn answer_failure<E>(error: aws_sdk_sfn::error::SdkError<E>) -> (String, bool)
where
    E: std::error::Error + Send + Sync + 'static,
{
    let retryable = error
        .raw_response()
        .is_none_or(|response| response.status().is_server_error());
    (
        aws_sdk_sfn::error::DisplayErrorContext(error).to_string(),
        retryable,
    )
}

/// Tries at sending a task's answer (each after the SDK's own retries) before the message is
/// left to come back.
const ANSWER_ATTEMPTS: u32 = 4;

/// Runs a task the way `action` says ([`FaultAction::Run`], [`FaultAction::RunTwice`] or
/// [`FaultAction::Fail`]).
pub(crate) async fn run_action<S, O, X>(
    services: &Services<S, O, X>,
    function: Function,
    input: Value,
    action: FaultAction,
) -> Result<Value, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
    X: ExecutionStarter,
{
    match action {
        FaultAction::Fail(error) => {
            // As the handler itself would: a permanent failure is recorded on the job.
            if let Some(job_id) = input["job_id"].as_str() {
                handlers::record_failure(&services.store, job_id, &error).await;
            }
            Err(error)
        }
        FaultAction::RunTwice => {
            // Step Functions takes a task's result from its last invocation (a retry follows only
            // a failure), so answer with the second run's: a claim it won must not be dropped.
            let first = dispatch(services, function, input.clone()).await;
            let second = dispatch(services, function, input).await;
            let outcome = if first.is_ok() { "succeeded" } else { "failed" };
            tracing::info!(
                function = function.name(),
                first_run = outcome,
                "worker: injected fault: delivered twice"
            );
            second
        }
        FaultAction::Throttle => Err(HandlerError::transient(format!(
            "{THROTTLED_ERROR}: Rate Exceeded. (injected by TREEMUX_WORKER_FAULTS)"
        ))),
        FaultAction::Run | FaultAction::Lose => dispatch(services, function, input).await,
    }
}
