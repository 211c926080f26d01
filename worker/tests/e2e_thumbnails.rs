//! Thumbnails end to end on the local AWS stack (`scripts/local-stack up`), issue 15 item 4: an
//! upload with `x-amz-meta-treemux-thumbnails: 1` gets a poster, a sprite sheet and a WebVTT
//! index as objects beside its output (each valid: ffprobe's size and codec, the poster the
//! source's frame by PSNR, the cues contiguous over the video and inside the sheet), recorded on
//! the job (its settings and its output); a job spec's `poster: true` gets the poster alone; an
//! HLS package gets its set inside its prefix;
//! `thumbnails: 0` fails the job naming the setting, before any work.

mod common;

use common::jobs::{newest_final_job, tone_clip};
use common::stack::Stack;
use common::stack_available;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use treemux_core::state::{JobRecord, JobStatus};

/// A 4 s, 25 fps 320x180 clip with a tone.
fn clip(dir: &Path) -> PathBuf {
    tone_clip(dir, "clip.mp4", 4, (320, 180))
}

/// Waits for `key`'s newest job to end.
async fn finished(stack: &Stack, key: &str) -> JobRecord {
    newest_final_job(stack, key, Duration::from_secs(180)).await
}

/// Downloads output object `key` to its own file.
async fn fetch(stack: &Stack, key: &str) -> PathBuf {
    let downloaded = stack.download(key).await;
    let path = stack.dir.path().join(key.replace('/', "_"));
    std::fs::rename(&downloaded, &path).expect("rename");
    path
}

/// `codec_name,width,height` of a picture, by ffprobe.
fn picture(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Luma PSNR of picture `a` against the frame of `video` at `seconds`, by the ffmpeg CLI.
fn psnr_against_frame(a: &Path, video: &Path, seconds: f64) -> f64 {
    let luma = |args: &[&str]| {
        let out = Command::new("ffmpeg")
            .args(["-v", "error"])
            .args(args)
            .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
            .output()
            .expect("ffmpeg runs");
        out.stdout
    };
    let (x, y) = (
        luma(&["-i", &a.to_string_lossy()]),
        luma(&["-ss", &seconds.to_string(), "-i", &video.to_string_lossy()]),
    );
    assert_eq!(x.len(), y.len(), "one size");
    let mse = x
        .iter()
        .zip(&y)
        .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
        .sum::<f64>()
        / x.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
}

#[tokio::test]
async fn thumbnails_by_metadata_appear_beside_the_output_and_are_valid() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("thumbnails", "").await;
    let source = clip(stack.dir.path());
    let key = "uploads/clip.mp4";
    stack
        .upload_with_metadata(
            key,
            &source,
            &[("treemux-thumbnails", "1"), ("treemux-preset", "ultrafast")],
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
    assert_eq!(
        settings.thumbnails.and_then(|t| t.interval_ms),
        Some(1000),
        "recorded on the job"
    );
    assert_eq!(
        record.settings_from["thumbnails"],
        "x-amz-meta-treemux-thumbnails"
    );
    let prefix = "transcoded/uploads/clip.mp4";
    let names = ["poster.jpg", "thumbnails-0.jpg", "thumbnails.vtt"];
    let listed: Vec<&str> = record
        .result
        .thumbnails
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    let keys = stack.output_keys().await;
    for name in names {
        let object = format!("{prefix}.{name}");
        assert!(keys.contains(&object), "{object} in {keys:?}");
        let address = format!("s3://{}/{object}", stack.output_bucket);
        assert!(
            listed.contains(&address.as_str()),
            "{address} on the record: {listed:?}"
        );
    }
    // Each listed size is the object's.
    for file in &record.result.thumbnails {
        let object = file
            .name
            .rsplit_once(&stack.output_bucket)
            .expect("address")
            .1;
        let head = stack
            .s3
            .head_object()
            .bucket(&stack.output_bucket)
            .key(object.trim_start_matches('/'))
            .send()
            .await
            .expect("head");
        assert_eq!(
            head.content_length(),
            Some(file.bytes as i64),
            "{}",
            file.name
        );
        let wanted = if file.name.ends_with(".vtt") {
            "text/vtt"
        } else {
            "image/jpeg"
        };
        assert_eq!(head.content_type(), Some(wanted), "{}", file.name);
    }
    let poster = fetch(&stack, &format!("{prefix}.poster.jpg")).await;
    assert_eq!(picture(&poster), "mjpeg,320,180");
    // 10% into the 4 s clip.
    let at = psnr_against_frame(&poster, &source, 0.4);
    assert!(at >= 32.0, "poster PSNR {at:.1} dB");
    assert!(psnr_against_frame(&poster, &source, 2.0) < at - 3.0);
    let sheet = fetch(&stack, &format!("{prefix}.thumbnails-0.jpg")).await;
    assert_eq!(
        picture(&sheet),
        "mjpeg,640,90",
        "four 160x90 tiles in a row"
    );
    let vtt = std::fs::read_to_string(fetch(&stack, &format!("{prefix}.thumbnails.vtt")).await)
        .expect("VTT");
    let cues: Vec<&str> = vtt
        .split("\n\n")
        .skip(1)
        .filter(|c| !c.trim().is_empty())
        .collect();
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    assert_eq!(cues.len(), 4, "{vtt}");
    for (k, cue) in cues.iter().enumerate() {
        let expected = format!(
            "00:00:0{k}.000 --> 00:00:0{}.000\nclip.mp4.thumbnails-0.jpg#xywh={},0,160,90",
            k + 1,
            160 * k
        );
        assert_eq!(cue.trim(), expected, "cue {k}");
    }

    // A job spec's poster alone.
    let spec = stack.dir.path().join("spec.json");
    std::fs::write(&spec, r#"{"poster": true, "preset": "ultrafast"}"#).expect("spec");
    stack.upload("uploads/only.mp4.treemux.json", &spec).await;
    stack.upload("uploads/only.mp4", &source).await;
    let record = finished(&stack, "uploads/only.mp4").await;
    assert_eq!(record.status, JobStatus::Succeeded, "{:?}", record.error);
    let keys = stack.output_keys().await;
    assert!(
        keys.contains(&"transcoded/uploads/only.mp4.poster.jpg".to_owned()),
        "{keys:?}"
    );
    assert!(
        !keys
            .iter()
            .any(|k| k.starts_with("transcoded/uploads/only.mp4.thumbnails")),
        "no sheets without thumbnails: {keys:?}"
    );

    // An HLS package: its thumbnails inside its prefix, unprefixed, as locally.
    stack
        .upload_with_metadata(
            "uploads/pkg.mp4",
            &source,
            &[
                ("treemux-packaging", "hls"),
                ("treemux-thumbnails", "2"),
                ("treemux-preset", "ultrafast"),
            ],
        )
        .await;
    let record = finished(&stack, "uploads/pkg.mp4").await;
    assert_eq!(record.status, JobStatus::Succeeded, "{:?}", record.error);
    let keys = stack.output_keys().await;
    for name in [
        "master.m3u8",
        "poster.jpg",
        "thumbnails.vtt",
        "thumbnails-0.jpg",
    ] {
        let object = format!("transcoded/uploads/pkg.mp4/{name}");
        assert!(keys.contains(&object), "{object} in {keys:?}");
    }
    let vtt =
        std::fs::read_to_string(fetch(&stack, "transcoded/uploads/pkg.mp4/thumbnails.vtt").await)
            .expect("VTT");
    assert!(
        vtt.contains("00:00:02.000 --> 00:00:04.000\nthumbnails-0.jpg#xywh=160,0,160,90"),
        "{vtt}"
    );

    // A bad interval: the job fails naming the setting, before any work.
    let executions = stack.executions().await;
    stack
        .upload_with_metadata("uploads/bad.mp4", &source, &[("treemux-thumbnails", "0")])
        .await;
    let record = finished(&stack, "uploads/bad.mp4").await;
    assert_eq!(record.status, JobStatus::Failed);
    let error = record.error.unwrap_or_default();
    for part in [
        "TreemuxInvalidInput",
        "x-amz-meta-treemux-thumbnails",
        "thumbnails=\"0\"",
    ] {
        assert!(error.contains(part), "{part:?} in {error:?}");
    }
    assert_eq!(stack.executions().await, executions, "no execution for it");
}
