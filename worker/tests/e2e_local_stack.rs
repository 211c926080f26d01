//! End to end on the local AWS stack (`scripts/local-stack up`): an upload to the input bucket
//! becomes an S3 notification, analyze runs on it, the real state machine (rendered for SQS
//! callbacks) drives `treemux worker`, and the output lands in the output bucket.
//!
//! Each test makes its own buckets, table, queues and state machine on the shared moto server
//! and runs its own worker process (with its own injected faults), so tests run in parallel.
//! Without a reachable stack the tests are skipped, except in CI, where that is a failure.

mod common;

use common::stack::{
    assert_no_secrets, for_each_retrier, logged, one_second_retries, Stack, WorkerSetup,
};
use common::{sdk, stack_available};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use treemux_core::media::verify::{decoded_frame_hashes, verify, VerifyOptions};
use treemux_core::state::JobStatus;

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../samples")
        .join(name)
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
    assert_eq!(
        (job.segments, job.merges),
        (4, 3),
        "the plan is on the record"
    );
    assert_eq!(job.segments_done.len(), 4);
    assert_eq!(
        (job.merges_done.len(), job.merge_runs),
        (3, 3),
        "each pair merged once"
    );
    // The progress the command line's bar would show, read back from DynamoDB.
    let progress = job.progress;
    assert_eq!((progress.segments_done, progress.segments_total), (4, 4));
    assert_eq!((progress.merges_done, progress.merges_total), (3, 3));
    assert!(progress.frames_total > 0 && progress.frames_done == progress.frames_total);
    assert_eq!(progress.percent(), Some(100));
    // Every function of the pipeline timed its stage.
    for stage in treemux_core::names::Function::ALL
        .iter()
        .filter_map(|function| function.stage())
    {
        assert!(
            job.stage_seconds.get(&stage).is_some_and(|s| *s > 0.0),
            "stage {stage}: {:?}",
            job.stage_seconds
        );
    }
    let output = stack
        .download("transcoded/uploads/three tracks.mkv.mp4")
        .await;
    assert_verified(&source, &output);
    // The multipart upload's object, as a viewer gets it: plays from the start and seeks.
    common::browser::assert_plays_in_browser(&output, 320, 180);
    assert_no_secrets(&stack.worker_log());
    assert!(
        stack.scratch_files().await.is_empty(),
        "scratch left: {:?}",
        stack.scratch_files().await
    );
}

#[tokio::test]
async fn a_segment_that_fails_once_is_retried_to_the_same_frames() {
    if !stack_available() {
        return;
    }
    let source = sample("06_bbb_vp9_opus_320x180.webm");
    let clean = Stack::new("clean", "").await;
    // Merges handed to merge-video tasks (no climbing inside a task), so that one fails too.
    let flaky = Stack::with_worker(
        "flaky",
        merges_as_tasks(WorkerSetup::faults(
            "fail-once:split-and-convert:1,fail-once:merge-video",
        )),
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
    let clean_output = clean.download("transcoded/uploads/a.webm.mp4").await;
    let flaky_output = flaky.download("transcoded/uploads/a.webm.mp4").await;
    assert_verified(&source, &flaky_output);
    // The worker restarts itself with zeroed allocations (treemux_core::process), which makes the
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

/// Every task delivered twice (the copy runs after the first), both ways merges run: inside the
/// split-and-convert tasks that complete each pair (the default: the copy climbs the same path
/// and finds every merge done), and as merge-video tasks of the state machine.
#[tokio::test]
async fn tasks_delivered_twice_merge_each_pair_once() {
    if !stack_available() {
        return;
    }
    let faults = "duplicate:split-and-convert,duplicate:merge-video";
    let climbing = Stack::new("twice", faults).await;
    let handed_over =
        Stack::with_worker("twice-tasks", merges_as_tasks(WorkerSetup::faults(faults))).await;
    let source = sample("06_bbb_vp9_opus_320x180.webm");
    climbing.upload("uploads/b.webm", &source).await;
    handed_over.upload("uploads/b.webm", &source).await;
    for (stack, merge_tasks) in [(&climbing, false), (&handed_over, true)] {
        let (status, job) = stack.finished_job().await;
        let log = stack.worker_log();
        assert_eq!(status, "SUCCEEDED", "worker log:\n{log}");
        assert!(log.contains("delivered twice"), "duplicates happened");
        assert_eq!(
            (job.merges_done.len(), job.merge_runs),
            (3, 3),
            "merges counted across duplicates\n{log}"
        );
        assert_eq!(
            logged(
                &log,
                "worker: task answered",
                &[("function", "merge-video")]
            ),
            merge_tasks,
            "merge-video tasks ran only where merges are handed over:\n{log}"
        );
        assert_verified(
            &source,
            &stack.download("transcoded/uploads/b.webm.mp4").await,
        );
    }
}

/// `setup` with every merge handed to the state machine as a merge-video task
/// (`TREEMUX_CLIMB_SECONDS=0`), as when a task's climbing budget is spent.
fn merges_as_tasks(mut setup: WorkerSetup) -> WorkerSetup {
    setup
        .env
        .push(("TREEMUX_CLIMB_SECONDS".to_owned(), "0".to_owned()));
    setup
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
        stack.scratch_files().await.is_empty(),
        "scratch left: {:?}",
        stack.scratch_files().await
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
    let (status, job) = stack.finished_job().await;
    assert_eq!(status, "SUCCEEDED");
    // S3 delivers at least once: send the same event again, as S3 would (same object, same
    // event time; moto's events carry no sequencer).
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
        "bucket": {"name": stack.input_bucket}, "object": {"key": "uploads/d.webm", "eTag": etag}},
        "eventTime": job.upload}]});
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    sqs.send_message()
        .queue_url(&stack.upload_queue)
        .message_body(event.to_string())
        .send()
        .await
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(60);
    let duplicate = |log: &str| logged(log, " analyze", &[("outcome", "duplicate")]);
    while !duplicate(&stack.worker_log()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        duplicate(&stack.worker_log()),
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
            ["efs", "local", "worker.log"].contains(&name.as_str()),
            "a file escaped the scratch root: {name}"
        );
    }
    let local = stack.dir.path().join("local");
    let kept = format!("s3://{}/", stack.segment_bucket);
    for path in stack.scratch_files().await {
        if path.starts_with(&local) {
            continue;
        }
        if let Some(key) = path.to_str().and_then(|p| p.strip_prefix(&kept)) {
            // A kept segment: under its job id, named by its number, whatever the upload's key.
            let (job, name) = key.split_once('/').expect("under a job folder");
            assert!(
                job.bytes().all(|b| b.is_ascii_hexdigit()) && name.starts_with("node-0-"),
                "{key}"
            );
            continue;
        }
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

/// Two large jobs throttle each other (issue: the Map's fan-out used up the account's
/// concurrency and throttling had about a minute of retries). Every segment's task is refused six
/// times with `Lambda.TooManyRequestsException`, as Lambda refuses invocations over the quota:
/// with the state machine's throttling retrier the job still succeeds, frame-exact; with the
/// policy before (5 attempts) the same faults end it FAILED. Retry delays are cut to one second
/// here (attempts kept), so the test shows the policy's shape, not its real minutes.
#[tokio::test]
async fn throttled_tasks_are_retried_until_they_run() {
    if !stack_available() {
        return;
    }
    let source = sample("06_bbb_vp9_opus_320x180.webm");
    // One segment: moto's Step Functions counts a Map child's retries together with its
    // siblings' (and re-runs finished siblings), so with several segments the attempts a policy
    // allows per task cannot be told apart there.
    let throttled = |definition: Option<fn(&mut serde_json::Value)>| WorkerSetup {
        definition,
        env: vec![("TREEMUX_MAX_SEGMENTS".to_owned(), "1".to_owned())],
        ..WorkerSetup::faults("throttle:split-and-convert:6")
    };
    let patient = Stack::with_worker("throttled", throttled(Some(one_second_retries))).await;
    let impatient = Stack::with_worker(
        "throttled-old-policy",
        throttled(Some(|definition| {
            one_second_retries(definition);
            five_throttle_attempts(definition);
        })),
    )
    .await;
    patient.upload("uploads/a.webm", &source).await;
    impatient.upload("uploads/a.webm", &source).await;
    let ((patient_status, patient_job), (impatient_status, impatient_job)) =
        (patient.finished_job().await, impatient.finished_job().await);
    let log = patient.worker_log();
    assert_eq!(patient_status, "SUCCEEDED", "worker log:\n{log}");
    assert!(
        log.matches("throttled (Lambda.TooManyRequestsException)")
            .count()
            >= 6,
        "the throttles fired:\n{log}"
    );
    assert_eq!(patient_job.status, JobStatus::Succeeded);
    let keys = patient.output_keys().await;
    assert_eq!(keys.len(), 1, "one output: {keys:?}");
    let output = patient.download(&keys[0]).await;
    assert_verified(&source, &output);
    assert_eq!(
        (impatient_status.as_str(), impatient_job.status),
        ("FAILED", JobStatus::Failed),
        "the old policy must give up on six throttles, or this test shows nothing:\n{}",
        impatient.worker_log()
    );
}

/// The throttling retrier as it was: 5 attempts.
fn five_throttle_attempts(definition: &mut serde_json::Value) {
    for_each_retrier(definition, &mut |retrier| {
        let throttling = retrier["ErrorEquals"].as_array().is_some_and(|errors| {
            errors
                .iter()
                .any(|e| e == "Lambda.TooManyRequestsException")
        });
        if throttling {
            retrier["MaxAttempts"] = 5.into();
        }
    });
}

/// An 8 s 1280x720 clip of moving noise with a tone, keyframes every 2 s, by the ffmpeg CLI.
fn long_clip(dir: &Path) -> PathBuf {
    let path = dir.join("long.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=25:duration=8",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=8",
        ])
        .args([
            "-vf",
            "noise=alls=30:allf=t",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args([
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made {}", path.display());
    path
}

/// An output of several multipart parts: merge-audio lays it out and uploads part 1 only, the
/// upload-parts tasks of the state machine's Map upload the others, the completing task
/// completes the upload; the object is the whole, verified output and scratch is left empty.
#[tokio::test]
async fn a_large_output_is_uploaded_by_parts_in_parallel() {
    if !stack_available() {
        return;
    }
    let mut setup = WorkerSetup::faults("");
    // Noise at a high bitrate makes 8 s of video an output of several 8 MiB parts.
    setup.env = vec![
        ("TREEMUX_BITRATE".into(), "40M".into()),
        ("TREEMUX_PRESET".into(), "ultrafast".into()),
    ];
    let stack = Stack::with_worker("parts", setup).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let source = long_clip(dir.path());
    stack.upload("uploads/long.mp4", &source).await;
    let (status, job) = stack.finished_job().await;
    let log = stack.worker_log();
    assert_eq!(status, "SUCCEEDED", "worker log:\n{log}");
    assert_eq!(job.status, JobStatus::Succeeded);
    let output = stack.download("transcoded/uploads/long.mp4.mp4").await;
    let bytes = std::fs::metadata(&output).expect("output").len();
    assert!(
        bytes > 3 * 8 * 1024 * 1024,
        "{bytes} bytes: not several parts"
    );
    assert!(
        logged(&log, "merge-audio: laid out, part 1 uploaded", &[]),
        "the root laid the output out:\n{log}"
    );
    let groups = log
        .lines()
        .filter(|line| line.contains("upload-parts"))
        .count();
    assert!(groups >= 2, "{groups} upload-parts tasks:\n{log}");
    assert_verified(&source, &output);
    assert!(
        stack.scratch_files().await.is_empty(),
        "scratch left: {:?}",
        stack.scratch_files().await
    );
}
