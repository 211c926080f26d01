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
//! A message without a token is an asynchronous invocation (on AWS, EventBridge invoking
//! job-failed when an execution timed out or was stopped): the handler runs, nobody is answered.
//!
//! A message stays invisible to other workers while its task runs: the worker extends its
//! visibility every third of [`WorkerOptions::visibility_seconds`], so a dead worker's tasks
//! return after at most that long, and a long encode is never handed to a second worker.

use crate::error::HandlerError;
use crate::events::S3Event;
use crate::handlers::{self, Services};
use crate::ports::{ExecutionStarter, ObjectStore};
use crate::upload::MultipartStore;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;
use treemux::fault::{CrashPlan, CrashPoint};
use treemux::state::{JobStore, StateStore};

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
        serde_json::to_value(value).map_err(|e| HandlerError::media(e.to_string()))
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
        for rule in spec.split(',').map(str::trim).filter(|r| !r.is_empty()) {
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
                        "fault {rule:?}: unknown kind {kind:?} (fail-once, fail-always, duplicate, lose, throttle, crash)"
                    ))
                }
            });
        }
        Ok(Self {
            rules,
            fired: Mutex::new(HashSet::new()),
            throttled: Mutex::new(std::collections::HashMap::new()),
            crash_points,
        })
    }

    /// The `crash:` points, for the handlers' [`crate::handlers::Config::crashes`].
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
    eprintln!(
        "worker: taking tasks from {} ({} at once)",
        options.task_queue_url,
        options.concurrency.max(1)
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
                    eprintln!(
                        "worker: receiving from {queue}: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(error)
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
                        handle_task(&services, &sfn, &options.faults, &body).await;
                    } else {
                        handle_upload(&services, &body).await;
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
                            eprintln!(
                                "worker: deleting a message: {}",
                                aws_sdk_sqs::error::DisplayErrorContext(error)
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
            eprintln!(
                "worker: extending a message's visibility: {}",
                aws_sdk_sqs::error::DisplayErrorContext(error)
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
) where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
    X: ExecutionStarter,
{
    let message: Value = match serde_json::from_str(body) {
        Ok(message) => message,
        Err(error) => return eprintln!("worker: dropping a message that is not JSON: {error}"),
    };
    let Some(function) = message["function"].as_str() else {
        return eprintln!("worker: dropping a message without a function");
    };
    // No token: an asynchronous invocation (what EventBridge makes of job-failed), nobody to answer.
    let token = message["token"].as_str();
    let input = message["input"].clone();
    let job = message["input"]["job_id"].as_str().unwrap_or("-");
    let started = Instant::now();
    let result = match faults.decide(function, &input) {
        FaultAction::Lose => {
            return eprintln!("worker: {function} job={job}: injected fault: lost, never answered")
        }
        FaultAction::Throttle => {
            eprintln!(
                "worker: {function} job={job}: injected fault: throttled ({THROTTLED_ERROR})"
            );
            if let Some(token) = token {
                let answer = sfn
                    .send_task_failure()
                    .task_token(token)
                    .error(THROTTLED_ERROR)
                    .cause("Rate Exceeded. (injected by TREEMUX_WORKER_FAULTS)")
                    .send()
                    .await;
                if let Err(error) = answer {
                    eprintln!(
                        "worker: answering Step Functions for {function}: {}",
                        aws_sdk_sfn::error::DisplayErrorContext(error)
                    );
                }
            }
            return;
        }
        FaultAction::Fail(error) => {
            // As the handler itself would: a permanent failure is recorded on the job.
            if let Some(job_id) = input["job_id"].as_str() {
                handlers::record_failure(&services.store, job_id, &error).await;
            }
            Err(error)
        }
        FaultAction::Run => dispatch(services, function, input).await,
        FaultAction::RunTwice => {
            // Step Functions takes a task's result from its last invocation (a retry follows only
            // a failure), so answer with the second run's: a claim it won must not be dropped.
            let first = dispatch(services, function, input.clone()).await;
            let second = dispatch(services, function, input).await;
            let outcome = if first.is_ok() { "succeeded" } else { "failed" };
            eprintln!("worker: {function} delivered twice: first run {outcome}");
            second
        }
    };
    let Some(token) = token else {
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(error) => format!("failed ({}): {}", error.name(), error.message),
        };
        return eprintln!("worker: {function} job={job} (asynchronous) {outcome}");
    };
    let answer = match &result {
        Ok(output) => {
            eprintln!(
                "worker: {function} job={job} ok in {:.2} s",
                started.elapsed().as_secs_f64()
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
            eprintln!(
                "worker: {function} job={job} failed ({}): {}",
                error.name(),
                error.message
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
        eprintln!("worker: answering Step Functions for {function}: {error}");
    }
}

/// Runs analyze on an S3 event notification. Failures are recorded on the job by analyze.
async fn handle_upload<S, O, X>(services: &Services<S, O, X>, body: &str)
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
    X: ExecutionStarter,
{
    let event: S3Event = match serde_json::from_str(body) {
        Ok(event) => event,
        Err(error) => {
            return eprintln!(
                "worker: dropping an upload notification that is not an S3 event: {error}"
            )
        }
    };
    if event.records.is_empty() {
        return; // s3:TestEvent, sent once when the notification is configured.
    }
    match handlers::analyze(services, event).await {
        Ok(outcome) => {
            for job in outcome.jobs {
                eprintln!(
                    "worker: analyze s3://{}/{}: job {} {}",
                    job.bucket, job.key, job.job_id, job.outcome
                );
            }
        }
        Err(error) => eprintln!(
            "worker: analyze failed ({}): {}",
            error.name(),
            error.message
        ),
    }
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
    }
}
