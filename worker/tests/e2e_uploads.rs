//! Uploads as users make them, on the local AWS stack (`scripts/local-stack up`): a file replaced
//! while its first job runs, files that differ only in extension, a forced re-run, new settings,
//! and an output configured inside the watched input prefix (issue 12, items 2, 6, 7, 10).
//!
//! Each test has its own buckets, table, queues, state machine and worker (see `common::stack`).
//! Clips are synthetic (the ffmpeg CLI) and judged by verify's properties (decoded frames,
//! timestamps, duration, audio), never by bytes.

mod common;

use common::jobs::tone_clip;
use common::stack::{logged, Stack};
use common::stack_available;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use treemux_core::media::verify::{verify, VerifyOptions};
use treemux_core::state::JobStatus;

/// A `seconds`-long 25 fps clip with a tone, `width`x`height`, written by the ffmpeg CLI.
fn clip(dir: &Path, name: &str, seconds: u32, size: (u32, u32)) -> PathBuf {
    tone_clip(dir, name, seconds, size)
}

fn assert_verified(source: &Path, output: &Path) {
    let report = verify(source, output, &VerifyOptions::default()).expect("verify runs");
    assert!(
        report.passed(),
        "{} is not a transcode of {}: {:?}",
        output.display(),
        source.display(),
        report.failures().collect::<Vec<_>>()
    );
}

/// Waits until `predicate` holds for the worker log.
async fn wait_for_log(stack: &Stack, what: &str, predicate: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !predicate(&stack.worker_log()) {
        assert!(
            Instant::now() < deadline,
            "{}: never saw {what}; worker log:\n{}",
            stack.name,
            stack.worker_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_file_replaced_while_its_job_runs_leaves_the_newest_as_the_output() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("replaced", "").await;
    let long = clip(stack.dir.path(), "long.mp4", 40, (640, 360));
    let short = clip(stack.dir.path(), "short.mp4", 2, (320, 240));
    let key = "uploads/race.mp4";
    stack.upload(key, &long).await;
    // The long upload's job is analyzed and running; now the user replaces the file.
    wait_for_log(&stack, "the long upload's job start", |log| {
        logged(
            log,
            " analyze",
            &[
                ("bucket", &stack.input_bucket),
                ("key", key),
                ("outcome", "started"),
            ],
        )
    })
    .await;
    stack.upload(key, &short).await;
    let jobs = stack.finished_jobs(2).await;
    let (long_job, short_job) = (&jobs[0].1, &jobs[1].1);
    // Superseded is not a failure: the state machine catches TreemuxSuperseded into a Succeed
    // state, so the console shows the replaced upload's execution green, not red.
    assert_eq!(
        (jobs[0].0.as_str(), jobs[1].0.as_str()),
        ("SUCCEEDED", "SUCCEEDED"),
        "the replaced and the newest upload's executions; worker log:\n{}",
        stack.worker_log()
    );
    assert_eq!(
        short_job.status,
        JobStatus::Succeeded,
        "the newest upload's job: {short_job:?}\n{}",
        stack.worker_log()
    );
    assert_eq!(
        long_job.status,
        JobStatus::Superseded,
        "the replaced upload's job: {long_job:?}\n{}",
        stack.worker_log()
    );
    assert_eq!(long_job.superseded_by.as_ref(), Some(&short_job.job_id));
    let reason = long_job.error.clone().unwrap_or_default();
    assert!(
        reason.contains("uploaded again") && reason.contains(key),
        "the reason is on the record: {reason}"
    );
    assert!(
        !long_job
            .stage_seconds
            .contains_key(&treemux_core::names::Stage::Remux),
        "the superseded job stopped before its final step: {:?}",
        long_job.stage_seconds
    );
    let output = stack.download("transcoded/uploads/race.mp4.mp4").await;
    assert_verified(&short, &output);
    assert!(
        stack.scratch_files().await.is_empty(),
        "scratch left: {:?}",
        stack.scratch_files().await
    );
}

#[tokio::test]
async fn inputs_differing_only_in_extension_get_their_own_outputs() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("extensions", "").await;
    let mp4 = clip(stack.dir.path(), "x.mp4", 2, (320, 240));
    let mov = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../samples/08_quicktime_h264_aac_640x465_oddsize.mov");
    stack.upload("uploads/x.mp4", &mp4).await;
    stack.upload("uploads/x.mov", &mov).await;
    let jobs = stack.finished_jobs(2).await;
    for (status, job) in &jobs {
        assert_eq!(status, "SUCCEEDED", "{job:?}\n{}", stack.worker_log());
    }
    let mut outputs = stack.output_keys().await;
    outputs.sort();
    assert_eq!(
        outputs,
        [
            "transcoded/uploads/x.mov.mp4",
            "transcoded/uploads/x.mp4.mp4"
        ]
    );
    assert_verified(&mp4, &stack.download("transcoded/uploads/x.mp4.mp4").await);
    assert_verified(&mov, &stack.download("transcoded/uploads/x.mov.mp4").await);
}

#[tokio::test]
async fn a_reupload_and_new_settings_run_again_a_repeated_event_does_not() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("rerun", "").await;
    let source = clip(stack.dir.path(), "r.mp4", 2, (320, 240));
    let key = "uploads/r.mp4";
    stack.upload(key, &source).await;
    let first = stack.finished_jobs(1).await.remove(0).1;
    // The documented way to force a re-run: upload (or copy onto itself) the same bytes again.
    stack.upload(key, &source).await;
    let jobs = stack.finished_jobs(2).await;
    let second = jobs[1].1.clone();
    assert_eq!(
        first.source_version, second.source_version,
        "the same bytes"
    );
    assert_ne!(first.job_id, second.job_id, "a new upload is a new job");
    for (status, job) in &jobs {
        assert_eq!(status, "SUCCEEDED", "{job:?}\n{}", stack.worker_log());
    }
    // A redeploy with another quality: the same upload event again is a new job, not "duplicate".
    stack.restart_worker_with(&[("TREEMUX_CRF", "35")]);
    let event = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
        "eventTime": second.upload, "s3": {"bucket": {"name": stack.input_bucket},
        "object": {"key": key, "eTag": second.source_version}}}]});
    let sqs = aws_sdk_sqs::Client::new(&common::sdk().await);
    sqs.send_message()
        .queue_url(&stack.upload_queue)
        .message_body(event.to_string())
        .send()
        .await
        .expect("send");
    let jobs = stack.finished_jobs(3).await;
    let third = &jobs[2].1;
    assert_eq!(jobs[2].0, "SUCCEEDED", "{third:?}\n{}", stack.worker_log());
    assert!(
        ![&first.job_id, &second.job_id].contains(&&third.job_id),
        "new settings make a new job"
    );
    assert_verified(
        &source,
        &stack.download("transcoded/uploads/r.mp4.mp4").await,
    );
    // The same event under the same settings is a duplicate delivery: no fourth job.
    sqs.send_message()
        .queue_url(&stack.upload_queue)
        .message_body(event.to_string())
        .send()
        .await
        .expect("send");
    wait_for_log(&stack, "the duplicate", |log| {
        logged(log, " analyze", &[("outcome", "duplicate")])
    })
    .await;
    assert_eq!(stack.executions().await, 3);
}

#[tokio::test]
async fn an_output_inside_the_watched_input_is_not_transcoded_again() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("loop", "").await;
    // The output goes to the input bucket, under the prefix the notification watches.
    stack.restart_worker_with(&[
        ("TREEMUX_OUTPUT_BUCKET", &stack.input_bucket),
        ("TREEMUX_OUTPUT_PREFIX", "uploads/transcoded/"),
    ]);
    let source = clip(stack.dir.path(), "l.mp4", 2, (320, 240));
    stack.upload("uploads/l.mp4", &source).await;
    let (status, job) = stack.finished_job().await;
    assert_eq!(status, "SUCCEEDED", "{job:?}\n{}", stack.worker_log());
    assert_eq!(
        job.output,
        format!(
            "s3://{}/uploads/transcoded/uploads/l.mp4.mp4",
            stack.input_bucket
        )
    );
    // The output's own upload event reaches analyze, which refuses it.
    wait_for_log(&stack, "the output refused", |log| {
        logged(
            log,
            "is where treemux writes outputs",
            &[
                ("key", "uploads/transcoded/uploads/l.mp4.mp4"),
                ("outcome", "refused-output"),
            ],
        )
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stack.executions().await, 1, "no second generation");
}

#[tokio::test]
async fn every_function_logs_one_structured_line_per_task() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("logs", "").await;
    // As on Lambda: JSON lines (CloudWatch Logs Insights reads their fields).
    stack.restart_worker_with(&[("TREEMUX_LOG_FORMAT", "json")]);
    let source = clip(stack.dir.path(), "j.mp4", 4, (320, 240));
    let key = "uploads/logged clip.mp4";
    stack.upload(key, &source).await;
    let (status, job) = stack.finished_job().await;
    assert_eq!(status, "SUCCEEDED", "{job:?}\n{}", stack.worker_log());
    let lines: Vec<serde_json::Value> = stack
        .worker_log()
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).expect("each structured line is JSON"))
        .collect();
    let of = |function: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["message"] == function && l["job_id"] == job.job_id.as_str())
            .collect()
    };
    let analyze = of("analyze");
    assert_eq!(analyze.len(), 1, "{lines:?}");
    assert_eq!(analyze[0]["key"], key);
    assert_eq!(analyze[0]["bucket"], stack.input_bucket.as_str());
    assert_eq!(analyze[0]["outcome"], "started");
    assert_eq!(analyze[0]["segments"], job.segments);
    assert_eq!(of("split-audio").len(), 1, "{lines:?}");
    let converts = of("split-and-convert");
    assert_eq!(converts.len(), job.segments as usize, "{lines:?}");
    assert!(
        converts.iter().all(|l| l["outcome"] == "encoded"),
        "{converts:?}"
    );
    // One line per merge, whichever task ran it (here the split-and-convert that completed
    // the pair, climbing).
    assert_eq!(of("merge").len(), job.merges as usize, "{lines:?}");
    let done = of("merge-audio");
    assert_eq!(done.len(), 1, "{lines:?}");
    assert_eq!(done[0]["outcome"], "succeeded");
    assert_eq!(done[0]["key"], key);
}
