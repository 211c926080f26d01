//! `treemux worker`: runs the Lambda handlers from SQS instead of Lambda.
//!
//! The local-stack state machine sends each task as an SQS message `{function, token, input}`;
//! the worker runs the handler of that name and answers Step Functions with SendTaskSuccess
//! (the handler's output) or SendTaskFailure (the handler's error name and message), exactly
//! what a Lambda task would produce. It also takes S3 event notifications from an upload queue
//! and runs analyze on them. Usable on any machine that reaches the queues.
//!
//! Fault injection, for tests and soak runs (`TREEMUX_WORKER_FAULTS`, comma-separated):
//! `fail-once:FUNCTION[:SEGMENT]` answers the first matching task with `TreemuxTransient`
//! without running it; `fail-always:FUNCTION[:SEGMENT]` answers every matching task with
//! `TreemuxMediaFailure`; `duplicate:FUNCTION` runs every matching task twice, as a duplicated
//! delivery would, and answers with the second result (Step Functions keeps a task's last
//! invocation's result; the claim protocol relies on that); `crash:POINT` kills the whole worker
//! process with `abort` at a [`CrashPoint`] inside a handler (e.g. `crash:after-segment:1`,
//! `crash:mid-encode:2:5`, `crash:after-merge:0`), as a Lambda sandbox that vanishes would. The
//! task's message is not deleted, so it comes back after the visibility timeout to whichever
//! worker polls next, carrying the same task token. `lose:FUNCTION` takes every matching task and
//! never answers it, as an invocation lost on the way: the execution stops making progress and
//! waits for its `TimeoutSeconds` or a StopExecution. `throttle:FUNCTION:TIMES` answers the
//! first TIMES attempts of each task of FUNCTION (each segment's, for split-and-convert) with `Lambda.TooManyRequestsException` without running them, as
//! Lambda does when the account's concurrency is used up: the state machine's throttling retrier
//! must outlast them.
//!
//! `fail-reads` makes every object read fail as S3 answering 503 would (transient): analyze then
//! fails after it created the job record, on every attempt.
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

use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;
use treemux_core::fault::{CrashPlan, CrashPoint};
use treemux_core::state::{JobStore, StateStore};
use treemux_functions::error::HandlerError;
use treemux_functions::events::S3Event;
use treemux_functions::handlers::{self, Services};
use treemux_functions::ports::{ExecutionStarter, ObjectError, ObjectStore, ObjectVersion};
use treemux_functions::upload::MultipartStore;

/// Runs the handler called `function` on `input`.
pub async fn dispatch<S, O, X>(
    services: &Services<S, O, X>,
    function: &str,
    input: Value,
) -> Result<Value, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
    X: ExecutionStarter,
{
    fn parse<T: serde::de::DeserializeOwned>(
        function: &str,
        input: Value,
    ) -> Result<T, HandlerError> {
        serde_json::from_value(input)
            .map_err(|e| HandlerError::invalid(format!("{function}: unexpected input: {e}")))
    }
    fn output<T: serde::Serialize>(value: T) -> Result<Value, HandlerError> {
        serde_json::to_value(value).map_err(|e| HandlerError::internal(e.to_string()))
    }
    match function {
        "analyze" => output(handlers::analyze(services, parse(function, input)?).await?),
        "split-audio" => output(handlers::split_audio(services, parse(function, input)?).await?),
        "split-and-convert" => {
            output(handlers::split_and_convert(services, parse(function, input)?).await?)
        }
        "merge-video" => output(handlers::merge_video(services, parse(function, input)?).await?),
        "merge-audio" => output(handlers::merge_audio(services, parse(function, input)?).await?),
        "job-failed" => output(handlers::job_failed(services, parse(function, input)?).await?),
        other => Err(HandlerError::invalid(format!(
            "no function named {other:?}"
        ))),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum FaultRule {
    FailOnce {
        function: String,
        segment: Option<u32>,
    },
    FailAlways {
        function: String,
        segment: Option<u32>,
    },
    Duplicate {
        function: String,
    },
    /// The task is never answered, as an invocation lost on the way: the execution waits until
    /// its `TimeoutSeconds` (or a StopExecution).
    Lose {
        function: String,
    },
    /// The first `times` attempts of each task are refused as Lambda refuses an invocation over
    /// the account's concurrency.
    Throttle {
        function: String,
        times: u32,
    },
}

/// The error a `fail-reads` fault answers every object read with.
pub const FAILED_READ: &str = "injected fault: S3 answered 503 Slow Down";

/// The error Lambda's service answers a throttled invocation with (the state machine's
/// throttling retrier matches it).
pub const THROTTLED_ERROR: &str = "Lambda.TooManyRequestsException";

/// Injected faults (see the module docs).
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
    fired: Mutex<HashSet<(String, Option<u32>)>>,
    /// Times each task (function, segment) was throttled so far.
    throttled: Mutex<std::collections::HashMap<(String, Option<u32>), u32>>,
    crash_points: Vec<CrashPoint>,
    /// `fail-reads`: every object read fails with a transient error ([`FaultyObjects`]).
    fail_reads: bool,
}

/// What to do with one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    Run,
    RunTwice,
    Fail(HandlerError),
    /// Leave the task unanswered.
    Lose,
    /// Answer with [`THROTTLED_ERROR`] without running the task.
    Throttle,
}

impl Faults {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        let mut crash_points = Vec::new();
        let mut fail_reads = false;
        for rule in spec.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            if rule == "fail-reads" {
                fail_reads = true;
                continue;
            }
            if let Some(point) = rule.strip_prefix("crash:") {
                crash_points.push(CrashPoint::parse(point).ok_or_else(|| {
                    format!(
                        "fault {rule:?}: expected crash:POINT, POINT one of {}",
                        CrashPoint::SYNTAX
                    )
                })?);
                continue;
            }
            let parts: Vec<&str> = rule.split(':').collect();
            if let ["throttle", function, times] = parts.as_slice() {
                rules.push(FaultRule::Throttle {
                    function: (*function).to_owned(),
                    times: times
                        .parse()
                        .map_err(|_| format!("fault {rule:?}: TIMES must be a number"))?,
                });
                continue;
            }
            let segment = match parts.get(2) {
                Some(text) => Some(
                    text.parse()
                        .map_err(|_| format!("fault {rule:?}: segment must be a number"))?,
                ),
                None => None,
            };
            let function = parts
                .get(1)
                .map(|f| (*f).to_owned())
                .ok_or_else(|| format!("fault {rule:?}: expected KIND:FUNCTION[:SEGMENT]"))?;
            rules.push(match parts[0] {
                "fail-once" => FaultRule::FailOnce { function, segment },
                "fail-always" => FaultRule::FailAlways { function, segment },
                "duplicate" => FaultRule::Duplicate { function },
                "lose" => FaultRule::Lose { function },
                kind => {
                    return Err(format!(
                        "fault {rule:?}: unknown kind {kind:?} (fail-once, fail-always, duplicate, lose, throttle, crash, fail-reads)"
                    ))
                }
            });
        }
        Ok(Self {
            rules,
            fired: Mutex::new(HashSet::new()),
            throttled: Mutex::new(std::collections::HashMap::new()),
            crash_points,
            fail_reads,
        })
    }

    /// `objects` with the `fail-reads` fault applied (unchanged without it).
    pub fn objects<O: ObjectStore>(&self, objects: O) -> FaultyObjects<O> {
        FaultyObjects {
            inner: objects,
            fail_reads: self.fail_reads,
        }
    }

    /// The `crash:` points, for the handlers' [`treemux_functions::handlers::Config::crashes`].
    pub fn crash_plan(&self) -> CrashPlan {
        CrashPlan::new(self.crash_points.clone())
    }

    /// Decides what happens to a task of `function` with `input`.
    pub fn decide(&self, function: &str, input: &Value) -> FaultAction {
        let segment = input
            .get("segment")
            .and_then(Value::as_u64)
            .map(|s| s as u32);
        let matches = |name: &str, wanted: &Option<u32>| {
            name == function && (wanted.is_none() || *wanted == segment)
        };
        for rule in &self.rules {
            match rule {
                FaultRule::FailOnce {
                    function: name,
                    segment: wanted,
                } if matches(name, wanted) => {
                    let mut fired = self.fired.lock().unwrap_or_else(|p| p.into_inner());
                    if fired.insert((function.to_owned(), segment)) {
                        return FaultAction::Fail(HandlerError::transient(format!(
                            "injected fault: {function} fails once"
                        )));
                    }
                }
                FaultRule::FailAlways {
                    function: name,
                    segment: wanted,
                } if matches(name, wanted) => {
                    return FaultAction::Fail(HandlerError::media(format!(
                        "injected fault: {function} always fails"
                    )));
                }
                FaultRule::Duplicate { function: name } if name == function => {
                    return FaultAction::RunTwice
                }
                FaultRule::Lose { function: name } if name == function => return FaultAction::Lose,
                FaultRule::Throttle {
                    function: name,
                    times,
                } if name == function => {
                    let mut throttled = self.throttled.lock().unwrap_or_else(|p| p.into_inner());
                    let count = throttled.entry((function.to_owned(), segment)).or_insert(0);
                    if *count < *times {
                        *count += 1;
                        return FaultAction::Throttle;
                    }
                }
                _ => {}
            }
        }
        FaultAction::Run
    }
}

/// An object store whose reads all fail with a transient error under the `fail-reads` fault, as
/// S3 answering 503 would: analyze then fails after it created the job record, on every attempt.
#[derive(Clone, Debug)]
pub struct FaultyObjects<O> {
    inner: O,
    fail_reads: bool,
}

impl<O> FaultyObjects<O> {
    /// Under `fail-reads`, the transient error every read answers.
    fn refuse_read(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        if self.fail_reads {
            return Err(ObjectError::Failed {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: FAILED_READ.to_owned(),
            });
        }
        Ok(())
    }
}

impl<O: ObjectStore> ObjectStore for FaultyObjects<O> {
    async fn get_to_path(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
        path: &std::path::Path,
    ) -> Result<u64, ObjectError> {
        self.refuse_read(bucket, key)?;
        self.inner.get_to_path(bucket, key, version, path).await
    }

    async fn size(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
    ) -> Result<u64, ObjectError> {
        self.refuse_read(bucket, key)?;
        self.inner.size(bucket, key, version).await
    }

    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ObjectError> {
        self.refuse_read(bucket, key)?;
        self.inner
            .read_range(bucket, key, version, offset, len)
            .await
    }

    async fn put_from_path(
        &self,
        path: &std::path::Path,
        bucket: &str,
        key: &str,
    ) -> Result<(), ObjectError> {
        self.inner.put_from_path(path, bucket, key).await
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, ObjectError> {
        self.inner.exists(bucket, key).await
    }
}

/// Uploads are not affected by `fail-reads`.
impl<O: MultipartStore> MultipartStore for FaultyObjects<O> {
    async fn create_upload(&self, bucket: &str, key: &str) -> Result<String, ObjectError> {
        self.inner.create_upload(bucket, key).await
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Vec<u8>,
    ) -> Result<String, ObjectError> {
        self.inner
            .upload_part(bucket, key, upload_id, number, bytes)
            .await
    }

    async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), ObjectError> {
        self.inner
            .complete_upload(bucket, key, upload_id, parts)
            .await
    }

    async fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectError> {
        self.inner.abort_upload(bucket, key, upload_id).await
    }
}

/// Attempts Lambda makes of an asynchronous invocation (an S3 event for analyze, an EventBridge
/// rule's invocation of job-failed): the first and the template's `MaximumRetryAttempts` (2).
pub const ASYNC_ATTEMPTS: u32 = 3;

/// Where a function's asynchronous invocation goes after its last failed attempt, as the
/// template's `EventInvokeConfig` `OnFailure` destinations of type Lambda say: analyze's to
/// job-failed. (job-failed's own failures go to an SQS queue on AWS; the worker logs them.)
pub fn on_failure_destination(function: &str) -> Option<&'static str> {
    match function {
        "analyze" => Some("job-failed"),
        _ => None,
    }
}

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
                        handle_task(
                            &services,
                            &sfn,
                            &options.faults,
                            &body,
                            options.async_retry_seconds,
                        )
                        .await;
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

/// Runs one state-machine task and answers Step Functions.
async fn handle_task<S, O, X>(
    services: &Services<S, O, X>,
    sfn: &aws_sdk_sfn::Client,
    faults: &Faults,
    body: &str,
    retry_seconds: f64,
) where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
    X: ExecutionStarter,
{
    let message: Value = match serde_json::from_str(body) {
        Ok(message) => message,
        Err(error) => {
            return tracing::error!(error = %error, "worker: dropping a message that is not JSON")
        }
    };
    let Some(function) = message["function"].as_str() else {
        return tracing::error!("worker: dropping a message without a function");
    };
    let input = message["input"].clone();
    // No token: an asynchronous invocation (what EventBridge makes of job-failed), nobody to answer.
    let Some(token) = message["token"].as_str() else {
        return invoke_async(services, faults, function, input, retry_seconds).await;
    };
    let job = message["input"]["job_id"].as_str().unwrap_or("-");
    let started = Instant::now();
    let result = match faults.decide(function, &input) {
        FaultAction::Lose => {
            return tracing::warn!(
                function,
                job_id = job,
                "worker: injected fault: lost, never answered"
            )
        }
        FaultAction::Throttle => {
            tracing::warn!(
                function,
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
                    function,
                    job_id = job,
                    error = %aws_sdk_sfn::error::DisplayErrorContext(error),
                    "worker: answering Step Functions failed"
                );
            }
            return;
        }
        action => run_action(services, function, input, action).await,
    };
    let answer = match &result {
        Ok(output) => {
            tracing::info!(
                function,
                job_id = job,
                seconds = started.elapsed().as_secs_f64(),
                outcome = "ok",
                "worker: task answered"
            );
            sfn.send_task_success()
                .task_token(token)
                .output(output.to_string())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_sdk_sfn::error::DisplayErrorContext(e).to_string())
        }
        Err(error) => {
            tracing::warn!(
                function,
                job_id = job,
                seconds = started.elapsed().as_secs_f64(),
                outcome = "failed",
                error = error.name(),
                message = %error.message,
                "worker: task answered"
            );
            let cause: String = error.message.chars().take(30_000).collect();
            sfn.send_task_failure()
                .task_token(token)
                .error(error.name())
                .cause(cause)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_sdk_sfn::error::DisplayErrorContext(e).to_string())
        }
    };
    if let Err(error) = answer {
        tracing::warn!(
            function,
            job_id = job,
            error = %error,
            "worker: answering Step Functions failed"
        );
    }
}

/// Runs a task the way `action` says ([`FaultAction::Run`], [`FaultAction::RunTwice`] or
/// [`FaultAction::Fail`]).
async fn run_action<S, O, X>(
    services: &Services<S, O, X>,
    function: &str,
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
                function,
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

/// Lambda's record of an asynchronous invocation whose last attempt failed, as its `OnFailure`
/// destination receives it (see [`treemux_functions::events::AsyncInvocationRecord`]).
fn invocation_record(function: &str, input: Value, attempts: u32, error: &HandlerError) -> Value {
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
async fn invoke_async<S, O, X>(
    services: &Services<S, O, X>,
    faults: &Faults,
    function: &str,
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
                function,
                "worker: injected fault: asynchronous invocation lost"
            );
        }
        match run_action(services, function, input.clone(), action).await {
            Ok(_) => {
                // The handler logged its own outcome (job ids, keys).
                return tracing::info!(
                    function,
                    attempt,
                    outcome = "ok",
                    "worker: asynchronous invocation"
                );
            }
            Err(error) => {
                tracing::warn!(
                    function,
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
            function,
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
async fn handle_upload<S, O, X>(
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
    if event.records.is_empty() {
        return; // s3:TestEvent, sent once when the notification is configured.
    }
    let Ok(input) = serde_json::to_value(&event) else {
        return;
    };
    invoke_async(services, faults, "analyze", input, retry_seconds).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_fire_as_documented() {
        let faults =
            Faults::parse("fail-once:split-and-convert:1, duplicate:merge-video").expect("parse");
        let segment = |n: u32| serde_json::json!({"job_id": "a", "segment": n});
        assert!(
            matches!(faults.decide("split-and-convert", &segment(1)), FaultAction::Fail(e) if e.name() == "TreemuxTransient")
        );
        assert_eq!(
            faults.decide("split-and-convert", &segment(1)),
            FaultAction::Run,
            "only once"
        );
        assert_eq!(
            faults.decide("split-and-convert", &segment(2)),
            FaultAction::Run
        );
        assert_eq!(
            faults.decide("merge-video", &serde_json::json!({})),
            FaultAction::RunTwice
        );
        assert!(Faults::parse("explode:x").is_err());
        let losing = Faults::parse("lose:split-audio").expect("parse");
        assert_eq!(
            losing.decide("split-audio", &serde_json::json!({})),
            FaultAction::Lose
        );
        assert_eq!(
            losing.decide("merge-audio", &serde_json::json!({})),
            FaultAction::Run
        );
        let crashing =
            Faults::parse("crash:after-segment:1,crash:mid-encode:0:5,fail-once:merge-video")
                .expect("parse");
        assert!(!crashing.crash_plan().is_empty());
        assert_eq!(
            crashing.decide("split-and-convert", &segment(1)),
            FaultAction::Run,
            "a crash fires inside the handler, not before it"
        );
        assert!(Faults::parse("crash:after-everything").is_err());
        assert!(Faults::parse("").expect("parse").crash_plan().is_empty());
        let always = Faults::parse("fail-always:merge-audio").expect("parse");
        assert!(
            matches!(always.decide("merge-audio", &serde_json::json!({})), FaultAction::Fail(e) if e.name() == "TreemuxMediaFailure")
        );
        let throttling = Faults::parse("throttle:split-and-convert:2").expect("parse");
        let decisions: Vec<FaultAction> = (0..3)
            .map(|_| throttling.decide("split-and-convert", &segment(0)))
            .collect();
        assert_eq!(
            decisions,
            [
                FaultAction::Throttle,
                FaultAction::Throttle,
                FaultAction::Run
            ]
        );
        assert!(Faults::parse("throttle:split-and-convert:many").is_err());
        assert!(Faults::parse("fail-reads").expect("parse").fail_reads);
        assert!(
            !Faults::parse("fail-once:analyze")
                .expect("parse")
                .fail_reads
        );
    }

    /// What the worker hands analyze's destination is what Lambda sends one: job-failed reads it
    /// as an invocation record with the event and the last error.
    #[test]
    fn the_invocation_record_is_what_job_failed_reads() {
        let event = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "in"}, "object": {"key": "uploads/a.mp4"}}}]});
        let error = HandlerError::transient("s3://in/uploads/a.mp4: 503");
        let record = invocation_record("analyze", event, ASYNC_ATTEMPTS, &error);
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
        assert_eq!(on_failure_destination("analyze"), Some("job-failed"));
        assert_eq!(on_failure_destination("job-failed"), None);
    }
}
