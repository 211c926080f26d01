//! Per-job settings end to end on the local AWS stack (`scripts/local-stack up`), issue 15 item
//! 1: an upload's `x-amz-meta-treemux-*` metadata and its job spec (`<key>.treemux.json`, whose
//! own upload starts nothing) make the output (codec, height, container, checked by ffprobe),
//! and a bad setting ends the job FAILED with `TreemuxInvalidInput` naming the key and the
//! setting, with no execution started.

mod common;

use common::jobs::{newest_final_job, tone_clip};
use common::stack::Stack;
use common::stack_available;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use treemux_core::settings::{Container, RateControl, VideoCodec};
use treemux_core::state::{JobRecord, JobStatus};

/// A 4 s, 25 fps 640x360 clip with a tone.
fn clip(dir: &Path) -> PathBuf {
    tone_clip(dir, "clip.mp4", 4, (640, 360))
}

/// ffprobe's `entries` of the first video stream and the format, one `key=value` a line.
fn ffprobe(path: &Path) -> String {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
        .args([
            "-show_entries",
            "stream=codec_name,height,nb_read_frames:format=format_name",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(output.status.success(), "ffprobe {}", path.display());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits for `key`'s newest job to end.
async fn finished(stack: &Stack, key: &str) -> JobRecord {
    newest_final_job(stack, key, Duration::from_secs(180)).await
}

#[tokio::test]
async fn metadata_and_a_job_spec_make_the_output_and_a_bad_setting_fails_the_job() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("job-settings", "").await;
    let source = clip(stack.dir.path());

    // The job spec first: its own upload starts no job.
    let spec = stack.dir.path().join("spec.json");
    std::fs::write(&spec, r#"{"height": 240, "crf": 35}"#).expect("spec");
    stack.upload("uploads/clip.mp4.treemux.json", &spec).await;
    // Then the video, its metadata over the spec.
    let key = "uploads/clip.mp4";
    stack
        .upload_with_metadata(
            key,
            &source,
            &[
                ("treemux-codec", "h265"),
                ("treemux-preset", "ultrafast"),
                ("treemux-crf", "30"),
                ("treemux-container", "mkv"),
            ],
        )
        .await;
    let record = finished(&stack, key).await;
    assert_eq!(
        record.status,
        JobStatus::Succeeded,
        "{:?}; worker log:\n{}",
        record.error,
        stack.worker_log()
    );
    let settings = record.settings.clone().expect("settings recorded");
    assert_eq!(settings.container, Container::Matroska);
    assert_eq!(settings.encode.codec, VideoCodec::H265);
    assert_eq!(
        settings.encode.rate,
        RateControl::Crf(30),
        "metadata over the spec"
    );
    assert_eq!(settings.encode.height, Some(240), "the spec's");
    assert_eq!(
        record.settings_from["height"],
        format!(
            "s3://{}/uploads/clip.mp4.treemux.json: height",
            stack.input_bucket
        )
    );
    let output_key = "transcoded/uploads/clip.mp4.mkv";
    assert_eq!(
        record.output,
        format!("s3://{}/{output_key}", stack.output_bucket)
    );
    let head = stack
        .s3
        .head_object()
        .bucket(&stack.output_bucket)
        .key(output_key)
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_type(), Some("video/x-matroska"));
    let output = stack.download(output_key).await;
    let probed = ffprobe(&output);
    for line in [
        "codec_name=hevc",
        "height=240",
        "nb_read_frames=100",
        "format_name=matroska,webm",
    ] {
        assert!(probed.lines().any(|l| l == line), "{line} in\n{probed}");
    }
    assert_eq!(
        stack.executions().await,
        1,
        "the spec's upload started nothing"
    );

    // A height above the source's 360 without upscale: refused before any work.
    let bad = "uploads/too-tall.mp4";
    stack
        .upload_with_metadata(bad, &source, &[("treemux-height", "720")])
        .await;
    let record = finished(&stack, bad).await;
    assert_eq!(record.status, JobStatus::Failed);
    let error = record.error.unwrap_or_default();
    for part in [
        "TreemuxInvalidInput",
        &format!("s3://{}/{bad}", stack.input_bucket),
        "height 720 is above the source's height of 360 pixels",
        "set upscale (x-amz-meta-treemux-upscale: true",
        "height from x-amz-meta-treemux-height",
    ] {
        assert!(error.contains(part), "{part:?} in {error:?}");
    }
    assert!(!error.contains("--"), "no command-line wording: {error:?}");
    assert_eq!(
        stack.executions().await,
        1,
        "no execution for the bad upload"
    );
}
