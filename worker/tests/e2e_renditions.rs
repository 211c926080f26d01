//! Renditions and HLS packages end to end on the local AWS stack (`scripts/local-stack up`),
//! issue 15 items 2 and 3 on AWS: an upload's `x-amz-meta-treemux-renditions` makes one object
//! per rung (named as the local runner names its files), each verified frame-exact with its
//! audio; `x-amz-meta-treemux-packaging: hls` makes a master playlist, media playlists and
//! fragments under the output prefix that verify (`treemux verify`'s `verify_package`) passes
//! once downloaded; a ladder or packaging that cannot be made ends the job FAILED before any
//! work, the reason on the record.

mod common;

use common::jobs::{newest_final_job, tone_clip};
use common::stack::Stack;
use common::stack_available;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use treemux_core::media::package::PackageFormat;
use treemux_core::media::verify::{verify, verify_package, VerifyOptions};
use treemux_core::state::{JobRecord, JobStatus};
use treemux_functions::job_events::{JobChange, JobEvent};

/// An 8 s, 25 fps 640x360 clip with a tone, a keyframe every second.
fn clip(dir: &Path) -> PathBuf {
    tone_clip(dir, "clip.mp4", 8, (640, 360))
}

/// The height ffprobe reads of a file's first video stream.
fn height(path: &Path) -> u32 {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=height", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}: no height", path.display()))
}

/// Waits for `key`'s newest job to end.
async fn finished(stack: &Stack, key: &str) -> JobRecord {
    newest_final_job(stack, key, Duration::from_secs(240)).await
}

/// Downloads `key` of the output bucket to `path`.
async fn download_to(stack: &Stack, key: &str, path: &Path) {
    let object = stack
        .s3
        .get_object()
        .bucket(&stack.output_bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
    let bytes = object.body.collect().await.expect("body").into_bytes();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("directory");
    }
    std::fs::write(path, bytes).expect("write");
}

fn assert_succeeded(stack: &Stack, record: &JobRecord) {
    assert_eq!(
        record.status,
        JobStatus::Succeeded,
        "{:?}; worker log:\n{}",
        record.error,
        stack.worker_log()
    );
}

/// The objects and sizes the SUCCEEDED event of `record` lists, as `(key, bytes)`.
fn event_outputs(record: &JobRecord) -> Vec<(String, u64)> {
    match JobEvent::of_record(record).map(|event| event.change) {
        Some(JobChange::Succeeded { outputs, .. }) => {
            outputs.into_iter().map(|o| (o.key, o.bytes)).collect()
        }
        other => panic!("not a success event: {other:?}"),
    }
}

#[tokio::test]
async fn a_ladder_makes_a_verified_object_per_rung_and_an_hls_package_verifies() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("renditions", "").await;
    let source = clip(stack.dir.path());
    let options = VerifyOptions::default();

    // A ladder of files: one object per rung, tallest first, named as the local runner names
    // its files.
    let key = "uploads/ladder.mp4";
    stack
        .upload_with_metadata(
            key,
            &source,
            &[
                ("treemux-renditions", "240,360:crf=30"),
                ("treemux-preset", "ultrafast"),
            ],
        )
        .await;
    let record = finished(&stack, key).await;
    assert_succeeded(&stack, &record);
    let settings = record.settings.clone().expect("settings recorded");
    assert_eq!(settings.renditions.len(), 2, "the ladder is on the record");
    assert_eq!(
        record.settings_from["renditions"],
        "x-amz-meta-treemux-renditions"
    );
    let rungs = [
        ("transcoded/uploads/ladder.mp4_360p.mp4", 360),
        ("transcoded/uploads/ladder.mp4_240p.mp4", 240),
    ];
    assert_eq!(
        record.output,
        format!("s3://{}/{}", stack.output_bucket, rungs[0].0)
    );
    let listed = event_outputs(&record);
    assert_eq!(
        listed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        rungs.map(|(k, _)| k),
        "the event lists every rung"
    );
    for ((rung_key, rung_height), (_, listed_bytes)) in rungs.iter().zip(&listed) {
        let file = stack
            .dir
            .path()
            .join(rung_key.rsplit('/').next().expect("name"));
        download_to(&stack, rung_key, &file).await;
        assert_eq!(
            std::fs::metadata(&file).expect("downloaded").len(),
            *listed_bytes,
            "{rung_key}: the size on the record and the event"
        );
        assert_eq!(height(&file), *rung_height, "{rung_key}");
        let report = verify(&source, &file, &options).expect("verify runs");
        assert!(
            report.passed(),
            "{rung_key}: {:?}",
            report.failures().collect::<Vec<_>>()
        );
    }
    assert_eq!(
        record.result.output_bytes,
        listed.iter().map(|(_, b)| b).sum::<u64>()
    );

    // An HLS package under the output prefix, the master playlist among its objects.
    let key = "uploads/package.mp4";
    stack
        .upload_with_metadata(
            key,
            &source,
            &[
                ("treemux-renditions", "360,240"),
                ("treemux-packaging", "hls"),
                ("treemux-preset", "ultrafast"),
            ],
        )
        .await;
    let record = finished(&stack, key).await;
    assert_succeeded(&stack, &record);
    let prefix = "transcoded/uploads/package.mp4/";
    let master_key = format!("{prefix}master.m3u8");
    assert_eq!(
        record.output,
        format!("s3://{}/{master_key}", stack.output_bucket)
    );
    assert_eq!(
        record.settings.as_ref().and_then(|s| s.packaging),
        Some(PackageFormat::Hls)
    );
    let mut keys: Vec<String> = stack
        .output_keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with(prefix))
        .collect();
    keys.sort();
    let listed = event_outputs(&record);
    assert_eq!(listed[0].0, master_key, "the manifest listed first");
    let mut listed_keys: Vec<String> = listed.iter().map(|(k, _)| k.clone()).collect();
    listed_keys.sort();
    assert_eq!(
        listed_keys, keys,
        "the event lists every object of the package"
    );
    assert!(
        keys.iter().filter(|k| k.ends_with(".m3u8")).count() >= 4,
        "master, two video playlists and the audio's: {keys:?}"
    );
    assert!(keys.iter().any(|k| k.ends_with(".m4s")), "{keys:?}");
    let local = stack.dir.path().join("package");
    for key in &keys {
        download_to(&stack, key, &local.join(&key[prefix.len()..])).await;
    }
    let verdicts =
        verify_package(&source, &local.join("master.m3u8"), &options).expect("verify runs");
    assert_eq!(verdicts.len(), 2, "both renditions");
    for verdict in &verdicts {
        assert!(
            verdict.report.passed(),
            "{}: {:?}",
            verdict.rendition.display(),
            verdict.report.failures().collect::<Vec<_>>()
        );
    }
    assert!(
        stack.scratch_files().await.is_empty(),
        "scratch removed: {:?}",
        stack.scratch_files().await
    );

    // A rung above the source's 360 lines, and a package in Matroska: refused before any work.
    let executions = stack.executions().await;
    for (bad, metadata, reason) in [
        (
            "uploads/too-tall.mp4",
            vec![("treemux-renditions", "720,360")],
            "renditions rung 720 is above the source's height of 360 pixels",
        ),
        (
            "uploads/mkv-package.mp4",
            vec![("treemux-packaging", "hls"), ("treemux-container", "mkv")],
            "HLS packages are fragmented MP4: the container must be mp4, not mkv",
        ),
    ] {
        stack.upload_with_metadata(bad, &source, &metadata).await;
        let record = finished(&stack, bad).await;
        assert_eq!(record.status, JobStatus::Failed, "{bad}");
        let error = record.error.unwrap_or_default();
        for part in [
            "TreemuxInvalidInput",
            &format!("s3://{}/{bad}", stack.input_bucket),
            reason,
        ] {
            assert!(error.contains(part), "{part:?} in {error:?}");
        }
        assert!(!error.contains("--"), "no command-line wording: {error:?}");
    }
    assert_eq!(
        stack.executions().await,
        executions,
        "no execution for the refused jobs"
    );
}
