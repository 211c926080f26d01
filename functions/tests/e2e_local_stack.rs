//! End to end on the local AWS stack (`scripts/local-stack up`): an upload to the input bucket
//! becomes an S3 notification, analyze runs on it, the real state machine (rendered for SQS
//! callbacks) drives `treemux worker`, and the output lands in the output bucket.
//!
//! Each test makes its own buckets, table, queues and state machine on the shared moto server
//! and runs its own worker process (with its own injected faults), so tests run in parallel.
//! Without a reachable stack the tests are skipped, except in CI, where that is a failure.

mod common;

use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use common::{endpoint, sdk, stack_available};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use treemux::media::verify::{decoded_frame_hashes, verify, VerifyOptions};
use treemux::state::{JobRecord, JobStatus, JobStore};
use treemux_functions::asl;
use treemux_functions::aws::DynamoStore;

const CANARY_KEY_ID: &str = "AKIATREEMUXCANARY777";
const CANARY_SECRET: &str = "treemux-canary-secret-never-log-me";

/// Credentials and request signatures never reach the worker's log.
fn assert_no_secrets(log: &str) {
    for secret in [
        CANARY_KEY_ID,
        CANARY_SECRET,
        "X-Amz-Signature",
        "X-Amz-Credential",
        "Authorization:",
    ] {
        assert!(
            !log.contains(secret),
            "the worker log contains {secret:?}:\n{log}"
        );
    }
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../samples")
        .join(name)
}

/// One test's isolated resources and worker.
struct Stack {
    name: String,
    s3: aws_sdk_s3::Client,
    sfn: aws_sdk_sfn::Client,
    store: DynamoStore,
    state_machine: String,
    upload_queue: String,
    input_bucket: String,
    output_bucket: String,
    dir: tempfile::TempDir,
    worker: Child,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.worker.kill();
        let _ = self.worker.wait();
    }
}

impl Stack {
    async fn new(test: &str, faults: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "e2e-{test}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        )
        .replace('_', "-");
        let config = sdk().await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        let dynamodb = aws_sdk_dynamodb::Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        let sfn = aws_sdk_sfn::Client::new(&config);
        let (input_bucket, output_bucket, table) = (
            format!("{name}-in"),
            format!("{name}-out"),
            format!("{name}-jobs"),
        );
        for bucket in [&input_bucket, &output_bucket] {
            s3.create_bucket()
                .bucket(bucket)
                .send()
                .await
                .expect("create bucket");
        }
        common::create_table(&dynamodb, &table).await;
        let task_queue = sqs
            .create_queue()
            .queue_name(format!("{name}-tasks"))
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url");
        let upload_queue = sqs
            .create_queue()
            .queue_name(format!("{name}-uploads"))
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url");
        let upload_queue_arn = format!("arn:aws:sqs:us-east-1:123456789012:{name}-uploads");
        s3.put_bucket_notification_configuration()
            .bucket(&input_bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(upload_queue_arn)
                            .events(Event::from("s3:ObjectCreated:*"))
                            .build()
                            .expect("queue config"),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("notification");
        let definition = asl::render_for_worker(&task_queue).expect("render");
        let state_machine = sfn
            .create_state_machine()
            .name(&name)
            .definition(definition.to_string())
            .role_arn("arn:aws:iam::123456789012:role/treemux-local")
            .send()
            .await
            .expect("state machine")
            .state_machine_arn;

        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("efs")).expect("scratch");
        let log = std::fs::File::create(dir.path().join("worker.log")).expect("log");
        let worker = Command::new(env!("CARGO_BIN_EXE_treemux-worker"))
            .arg("run")
            .env("AWS_ENDPOINT_URL", endpoint())
            // Canary credentials (moto accepts any): no log may ever contain them.
            .env("AWS_ACCESS_KEY_ID", CANARY_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", CANARY_SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("TREEMUX_TABLE", &table)
            .env("TREEMUX_OUTPUT_BUCKET", &output_bucket)
            .env("TREEMUX_STATE_MACHINE_ARN", &state_machine)
            .env("TREEMUX_TASK_QUEUE_URL", &task_queue)
            .env("TREEMUX_UPLOAD_QUEUE_URL", &upload_queue)
            .env("TREEMUX_SCRATCH_DIR", dir.path().join("efs"))
            .env("TREEMUX_PRESET", "veryfast")
            .env("TREEMUX_THREADS", "1")
            .env("TREEMUX_MAX_SEGMENTS", "4")
            .env("TREEMUX_MIN_SEGMENT_SECONDS", "1")
            .env("TREEMUX_WORKER_CONCURRENCY", "2")
            .env("TREEMUX_WORKER_FAULTS", faults)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("worker starts");
        let store = DynamoStore {
            client: dynamodb,
            table,
            ttl_seconds: 3600,
        };
        Stack {
            name,
            s3,
            sfn,
            store,
            state_machine,
            upload_queue,
            input_bucket,
            output_bucket,
            dir,
            worker,
        }
    }

    async fn upload(&self, key: &str, file: &Path) {
        let body = aws_sdk_s3::primitives::ByteStream::from_path(file)
            .await
            .expect("read sample");
        self.s3
            .put_object()
            .bucket(&self.input_bucket)
            .key(key)
            .body(body)
            .send()
            .await
            .expect("upload");
    }

    /// Waits for the first execution to end; returns its status and the job record.
    async fn finished_job(&self) -> (String, JobRecord) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let executions = self
                .sfn
                .list_executions()
                .state_machine_arn(&self.state_machine)
                .send()
                .await
                .expect("list")
                .executions;
            if let Some(execution) = executions.iter().find(|e| e.status.as_str() != "RUNNING") {
                let job = self
                    .store
                    .get_job(&execution.name)
                    .await
                    .expect("read job")
                    .expect("job record");
                return (execution.status.as_str().to_owned(), job);
            }
            assert!(
                Instant::now() < deadline,
                "{}: no execution finished in time; worker log:\n{}",
                self.name,
                self.worker_log()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn executions(&self) -> usize {
        self.sfn
            .list_executions()
            .state_machine_arn(&self.state_machine)
            .send()
            .await
            .expect("list")
            .executions
            .len()
    }

    async fn download(&self, key: &str) -> PathBuf {
        let object = self
            .s3
            .get_object()
            .bucket(&self.output_bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{}: no output {key}: {}\nworker log:\n{}",
                    self.name,
                    aws_sdk_s3::error::DisplayErrorContext(e),
                    self.worker_log()
                )
            });
        let bytes = object.body.collect().await.expect("body").into_bytes();
        let path = self.dir.path().join("downloaded.mp4");
        std::fs::write(&path, bytes).expect("write");
        path
    }

    async fn output_keys(&self) -> Vec<String> {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&self.output_bucket)
            .send()
            .await
            .expect("list");
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    fn worker_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("worker.log")).unwrap_or_default()
    }

    /// Every file left under the scratch root.
    fn scratch_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.dir.path().join("efs"), &mut found);
        found
    }
}

fn assert_verified(source: &Path, output: &Path) {
    let report = verify(source, output, &VerifyOptions::default()).expect("verify runs");
    assert!(
        report.passed(),
        "verify failed: {:?}",
        report.failures().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_upload_becomes_a_verified_output() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("happy", "").await;
    let source = sample("15_DERIVED_bbb_h264_3audio_aac51_aac51_opus.mkv");
    stack.upload("uploads/three tracks.mkv", &source).await;
    let (status, job) = stack.finished_job().await;
    assert_eq!(status, "SUCCEEDED", "worker log:\n{}", stack.worker_log());
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.segments_done.len(), 4);
    assert_eq!(
        (job.merges_done.len(), job.merge_runs),
        (3, 3),
        "each pair merged once"
    );
    for stage in ["analyze", "split_audio", "convert", "merge", "merge_audio"] {
        assert!(
            job.stage_seconds.get(stage).is_some_and(|s| *s > 0.0),
            "stage {stage}: {:?}",
            job.stage_seconds
        );
    }
    let output = stack.download("transcoded/uploads/three tracks.mp4").await;
    assert_verified(&source, &output);
    assert_no_secrets(&stack.worker_log());
    assert!(
        stack.scratch_files().is_empty(),
        "scratch left: {:?}",
        stack.scratch_files()
    );
}

#[tokio::test]
async fn a_segment_that_fails_once_is_retried_to_the_same_frames() {
    if !stack_available() {
        return;
    }
    let source = sample("06_bbb_vp9_opus_320x180.webm");
    let clean = Stack::new("clean", "").await;
    let flaky = Stack::new(
        "flaky",
        "fail-once:split-and-convert:1,fail-once:merge-video",
    )
    .await;
    clean.upload("uploads/a.webm", &source).await;
    flaky.upload("uploads/a.webm", &source).await;
    let ((clean_status, _), (flaky_status, flaky_job)) =
        (clean.finished_job().await, flaky.finished_job().await);
    assert_eq!(
        (clean_status.as_str(), flaky_status.as_str()),
        ("SUCCEEDED", "SUCCEEDED"),
        "worker log:\n{}",
        flaky.worker_log()
    );
    assert!(
        flaky.worker_log().contains("injected fault"),
        "the fault fired"
    );
    assert_eq!(flaky_job.merge_runs, 3);
    let clean_output = clean.download("transcoded/uploads/a.mp4").await;
    let flaky_output = flaky.download("transcoded/uploads/a.mp4").await;
    assert_verified(&source, &flaky_output);
    // The worker restarts itself with zeroed allocations (treemux::process), which makes the
    // retried segment's re-encode bit-identical, not merely close.
    let (clean_hashes, flaky_hashes) = (
        decoded_frame_hashes(&clean_output).expect("hashes"),
        decoded_frame_hashes(&flaky_output).expect("hashes"),
    );
    assert_eq!(clean_hashes.len(), flaky_hashes.len());
    let differing: Vec<usize> = (0..clean_hashes.len())
        .filter(|&i| clean_hashes[i] != flaky_hashes[i])
        .collect();
    assert!(
        differing.is_empty(),
        "decoded frames {differing:?} differ from the fault-free run\n{}",
        flaky.worker_log()
    );
}

#[tokio::test]
async fn tasks_delivered_twice_merge_each_pair_once() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("twice", "duplicate:split-and-convert,duplicate:merge-video").await;
    let source = sample("06_bbb_vp9_opus_320x180.webm");
    stack.upload("uploads/b.webm", &source).await;
    let (status, job) = stack.finished_job().await;
    assert_eq!(status, "SUCCEEDED", "worker log:\n{}", stack.worker_log());
    assert!(
        stack.worker_log().contains("delivered twice"),
        "duplicates happened"
    );
    assert_eq!(
        (job.merges_done.len(), job.merge_runs),
        (3, 3),
        "merges counted across duplicates"
    );
    assert_verified(&source, &stack.download("transcoded/uploads/b.mp4").await);
}

#[tokio::test]
async fn a_permanent_failure_fails_the_job_and_leaves_no_output() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("broken", "fail-always:split-and-convert:2").await;
    let source = sample("06_bbb_vp9_opus_320x180.webm");
    stack.upload("uploads/c.webm", &source).await;
    let (status, job) = stack.finished_job().await;
    assert_eq!(status, "FAILED");
    assert_eq!(
        job.status,
        JobStatus::Failed,
        "worker log:\n{}",
        stack.worker_log()
    );
    let cause = job.error.clone().unwrap_or_default();
    assert!(
        cause.contains("TreemuxMediaFailure") && cause.contains("injected fault"),
        "readable cause: {cause:?}\n{}",
        stack.worker_log()
    );
    assert!(stack.output_keys().await.is_empty(), "no output object");
    assert_no_secrets(&stack.worker_log());
    let original = std::fs::read(&source).expect("sample");
    let object = stack
        .s3
        .get_object()
        .bucket(&stack.input_bucket)
        .key("uploads/c.webm")
        .send()
        .await
        .expect("input kept");
    assert_eq!(
        object
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec(),
        original,
        "the input object is untouched"
    );
    assert!(
        stack.scratch_files().is_empty(),
        "scratch left: {:?}",
        stack.scratch_files()
    );
}

#[tokio::test]
async fn a_duplicate_event_starts_no_second_job() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("dup", "").await;
    let source = sample("06_bbb_vp9_opus_320x180.webm");
    stack.upload("uploads/d.webm", &source).await;
    let (status, _) = stack.finished_job().await;
    assert_eq!(status, "SUCCEEDED");
    // S3 delivers at least once: send the same event again, as S3 would.
    let head = stack
        .s3
        .head_object()
        .bucket(&stack.input_bucket)
        .key("uploads/d.webm")
        .send()
        .await
        .expect("head");
    let etag = head
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    let event = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": stack.input_bucket}, "object": {"key": "uploads/d.webm", "eTag": etag}}}]});
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    sqs.send_message()
        .queue_url(&stack.upload_queue)
        .message_body(event.to_string())
        .send()
        .await
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stack.worker_log().contains(" duplicate") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        stack.worker_log().contains(" duplicate"),
        "the worker saw the duplicate:\n{}",
        stack.worker_log()
    );
    assert_eq!(stack.executions().await, 1, "one execution for one upload");
}

#[tokio::test]
async fn hostile_keys_cannot_escape_the_job_directory() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("keys", "fail-always:merge-audio").await;
    let source = sample("06_bbb_vp9_opus_320x180.webm");
    stack
        .upload("uploads/../../escape dir/ünï cødé.webm", &source)
        .await;
    // merge-audio fails on purpose, so the job's scratch stays until the Catch cleans it; watch
    // what was written while the job ran.
    let (status, job) = stack.finished_job().await;
    assert_eq!(status, "FAILED");
    assert!(
        job.source
            .ends_with("uploads/../../escape dir/ünï cødé.webm"),
        "{}",
        job.source
    );
    let efs = stack.dir.path().join("efs");
    for entry in std::fs::read_dir(stack.dir.path()).expect("list").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            ["efs", "worker.log"].contains(&name.as_str()),
            "a file escaped the scratch root: {name}"
        );
    }
    for path in stack.scratch_files() {
        let relative = path.strip_prefix(&efs).expect("inside the scratch root");
        let first = relative
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        assert_eq!(first.as_deref(), Some("jobs"), "{}", path.display());
    }
    assert!(!stack.dir.path().join("escape dir").exists());
    assert!(!efs.join("escape dir").exists());
    assert!(stack.output_keys().await.is_empty());
}
