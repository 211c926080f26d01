//! A job that stops making progress ends FAILED with its cause, on the local stack. A worker
//! loses the job's tasks (`lose:split-audio,lose:split-and-convert`), so the execution never
//! reaches its Catch; it ends TIMED_OUT (the definition's `TimeoutSeconds`, the template's
//! ExecutionTimeoutSeconds) or ABORTED (StopExecution). On AWS, Step Functions reports that end to EventBridge and the
//! template's rules invoke job-failed. Here moto's EventBridge runs the template's own rules
//! (pattern and input transformer, read from infra/template.yaml by worker/tests/eventbridge.py,
//! which also sends the event moto's Step Functions does not), and the worker runs job-failed on
//! what the rule delivers, as Lambda would on its asynchronous invocation.

mod common;

use common::stack::{Stack, WorkerSetup};
use common::{endpoint, sdk, stack_available};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use treemux_core::state::{JobRecord, JobStatus, JobStore};
use treemux_functions::events::FailedTask;

fn workspace(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Runs worker/tests/eventbridge.py with the tools' Python (moto's boto3, cfn-lint).
fn eventbridge(args: &[&str]) -> String {
    let output = Command::new(workspace("target/tools/venv/bin/python"))
        .arg(workspace("worker/tests/eventbridge.py"))
        .args(args)
        .output()
        .expect(
            "target/tools/venv/bin/python runs (scripts/local-stack and lint-template install it)",
        );
    assert!(
        output.status.success(),
        "eventbridge.py {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls `check` every 300 ms until it returns something, for at most `seconds`.
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    seconds: u64,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {seconds} s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until the worker has finished an asynchronous invocation of job-failed. job-failed
/// marks the job FAILED first (so running tasks stop) and removes scratch after, so seeing
/// FAILED alone does not mean its clean-up is done.
async fn job_failed_finished(stack: &Stack) {
    wait_for("job-failed's invocation finishes", 60, || async {
        stack
            .worker_log()
            .lines()
            .any(|line| {
                line.contains("worker: asynchronous invocation")
                    && line.contains("function=\"job-failed\"")
            })
            .then_some(())
    })
    .await;
}

async fn job(stack: &Stack, job_id: &str) -> JobRecord {
    stack
        .store
        .get_job(job_id)
        .await
        .expect("read job")
        .expect("job record")
}

/// A stack whose worker loses the job's tasks, the template's job-failed rules installed with
/// an SQS queue as their target, and a job started on it. Returns the stack, the queue and the
/// job's execution ARN. `timeout_seconds` replaces the definition's `TimeoutSeconds`.
async fn stalled_job(test: &str, timeout_seconds: Option<u64>) -> (Stack, String, String) {
    // Nothing but analyze runs: no task writes scratch after job-failed removed it.
    let stack = Stack::new(test, "lose:split-audio,lose:split-and-convert").await;
    if let Some(seconds) = timeout_seconds {
        let described = stack
            .sfn
            .describe_state_machine()
            .state_machine_arn(&stack.state_machine)
            .send()
            .await
            .expect("describe state machine");
        let mut definition: serde_json::Value =
            serde_json::from_str(described.definition()).expect("definition");
        definition["TimeoutSeconds"] = seconds.into();
        stack
            .sfn
            .update_state_machine()
            .state_machine_arn(&stack.state_machine)
            .definition(definition.to_string())
            .send()
            .await
            .expect("update state machine");
    }
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    let queue_name = format!("{}-events", stack.name);
    let queue = sqs
        .create_queue()
        .queue_name(&queue_name)
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    let rules = eventbridge(&[
        "rules",
        &endpoint(),
        workspace("infra/template.yaml")
            .to_str()
            .expect("utf-8 path"),
        &stack.state_machine,
        &format!("arn:aws:sqs:us-east-1:123456789012:{queue_name}"),
        &stack.name,
    ]);
    assert!(!rules.trim().is_empty(), "no rules installed");
    stack
        .upload(
            "uploads/stalls.webm",
            &workspace("samples/06_bbb_vp9_opus_320x180.webm"),
        )
        .await;
    let execution = wait_for("the job's execution starts", 120, || async {
        let listed = stack
            .sfn
            .list_executions()
            .state_machine_arn(&stack.state_machine)
            .send()
            .await
            .expect("list");
        listed.executions.first().map(|e| e.execution_arn.clone())
    })
    .await;
    (stack, queue, execution)
}

/// Waits for the execution to end with `status` (unless `moto_reaches_it` is false: see
/// [`a_stopped_execution_marks_its_job_failed_with_the_cause`]), sends that status change
/// through the rules, has the worker run job-failed on what arrives, and returns the job record
/// once FAILED.
async fn report_end(
    stack: &Stack,
    queue: &str,
    execution: &str,
    status: &str,
    moto_reaches_it: bool,
) -> JobRecord {
    let job_id = execution
        .rsplit(':')
        .next()
        .expect("execution name")
        .to_owned();
    if moto_reaches_it {
        wait_for(&format!("the execution ends {status}"), 120, || async {
            let described = stack
                .sfn
                .describe_execution()
                .execution_arn(execution)
                .send()
                .await
                .expect("describe");
            (described.status.as_str() == status).then_some(())
        })
        .await;
    }
    let before = job(stack, &job_id).await;
    assert!(
        matches!(before.status, JobStatus::Created | JobStatus::Running),
        "before the event the job is {:?}: something else ended it",
        before.status
    );

    assert_eq!(
        eventbridge(&["emit", &endpoint(), execution, status]).trim(),
        status
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    let mut delivered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Every rule sees the event; exactly one may match it.
    while Instant::now() < deadline && delivered.len() < 2 {
        let received = sqs
            .receive_message()
            .queue_url(queue)
            .wait_time_seconds(if delivered.is_empty() { 5 } else { 2 })
            .send()
            .await
            .expect("receive");
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() && !delivered.is_empty() {
            break;
        }
        delivered.extend(messages.into_iter().filter_map(|m| m.body));
    }
    assert_eq!(
        delivered.len(),
        1,
        "the rules delivered {delivered:?} for an execution that ended {status}"
    );
    let task: FailedTask = serde_json::from_str(&delivered[0]).unwrap_or_else(|e| {
        panic!(
            "the rule's input is not job-failed's input ({e}): {}",
            delivered[0]
        )
    });
    assert_eq!(task.job_id, job_id, "the rule names the job");

    // What Lambda does with EventBridge's invocation: run job-failed on that input.
    let tasks = sqs
        .get_queue_url()
        .queue_name(format!("{}-tasks", stack.name))
        .send()
        .await
        .expect("task queue")
        .queue_url
        .expect("url");
    let input: serde_json::Value = serde_json::from_str(&delivered[0]).expect("json");
    sqs.send_message()
        .queue_url(&tasks)
        .message_body(serde_json::json!({"function": "job-failed", "input": input}).to_string())
        .send()
        .await
        .expect("send");
    let failed = wait_for("job-failed marks the job FAILED", 60, || async {
        let record = job(stack, &job_id).await;
        (record.status == JobStatus::Failed).then_some(record)
    })
    .await;
    job_failed_finished(stack).await;
    assert_eq!(
        stack.scratch_files().await,
        Vec::<PathBuf>::new(),
        "job-failed leaves no scratch\n{}",
        stack.worker_log()
    );
    failed
}

#[tokio::test]
async fn an_execution_that_times_out_marks_its_job_failed_with_the_cause() {
    if !stack_available() {
        return;
    }
    let (stack, queue, execution) = stalled_job("timed-out", Some(3)).await;
    let job = report_end(&stack, &queue, &execution, "TIMED_OUT", true).await;
    let error = job.error.unwrap_or_default();
    assert!(
        error.contains("States.Timeout") && error.contains("ExecutionTimeoutSeconds"),
        "the cause: {error:?}; worker log:\n{}",
        stack.worker_log()
    );
}

#[tokio::test]
async fn a_stopped_execution_marks_its_job_failed_with_the_cause() {
    if !stack_available() {
        return;
    }
    let (stack, queue, execution) = stalled_job("aborted", None).await;
    stack
        .sfn
        .stop_execution()
        .execution_arn(&execution)
        .send()
        .await
        .expect("stop");
    // AWS ends a stopped execution ABORTED at once; moto records the stop but keeps the execution
    // RUNNING while its callback task waits (this one forever), so the event says ABORTED without
    // waiting for moto to.
    let job = report_end(&stack, &queue, &execution, "ABORTED", false).await;
    let error = job.error.unwrap_or_default();
    assert!(
        error.contains("stopped before it finished"),
        "the cause: {error:?}; worker log:\n{}",
        stack.worker_log()
    );
}

/// analyze failing on every attempt after it created the job record (S3 reads fail: the
/// `fail-reads` fault) would leave the job CREATED until its TTL. The worker runs the upload
/// event as Lambda runs an asynchronous invocation (three attempts), then hands Lambda's
/// invocation record to job-failed, analyze's `OnFailure` destination in the template: the job
/// ends FAILED with the last error on its record, and no execution starts.
#[tokio::test]
async fn analyze_failing_on_every_attempt_fails_its_job_with_the_cause() {
    if !stack_available() {
        return;
    }
    let mut setup = WorkerSetup::faults("fail-reads");
    setup.env = vec![(
        "TREEMUX_WORKER_ASYNC_RETRY_SECONDS".to_owned(),
        "0.2".to_owned(),
    )];
    let stack = Stack::with_worker("analyze-gives-up", setup).await;
    let key = "uploads/unreadable.webm";
    stack
        .upload(key, &workspace("samples/06_bbb_vp9_opus_320x180.webm"))
        .await;
    let job_id = wait_for(
        "analyze records the job as the key's newest",
        60,
        || async {
            stack
                .store
                .latest_job(&stack.input_bucket, key)
                .await
                .expect("read")
        },
    )
    .await;
    let failed = wait_for("the job ends FAILED", 60, || async {
        let record = job(&stack, &job_id).await;
        (record.status != JobStatus::Created).then_some(record)
    })
    .await;
    assert_eq!(
        failed.status,
        JobStatus::Failed,
        "{failed:?}\nworker log:\n{}",
        stack.worker_log()
    );
    let cause = failed.error.clone().unwrap_or_default();
    for part in [
        "TreemuxTransient",
        treemux_worker::FAILED_READ,
        key,
        "3 attempts",
        "RetriesExhausted",
    ] {
        assert!(
            cause.contains(part),
            "{part:?} in the cause {cause:?}; worker log:\n{}",
            stack.worker_log()
        );
    }
    assert_eq!(stack.executions().await, 0, "no execution started");
    job_failed_finished(&stack).await;
    assert_eq!(
        stack.scratch_files().await,
        Vec::<PathBuf>::new(),
        "job-failed leaves no scratch\n{}",
        stack.worker_log()
    );
}
