//! `transcode --renditions`: an ABR ladder from one decode of each segment, one file per rung
//! beside a file OUTPUT, each verified against the source, keyframes at the same frames in
//! every rung (the plan's cuts), the settings in the JSON summary; bad ladders and rungs taller
//! than the source refused before any work.

mod common;

use common::{assert_verifies, entries, json, path, pattern_clip, run, stderr};
use std::path::Path;
use std::process::Command;

/// The pts (seconds, as ffprobe prints them) of every video packet flagged key.
fn keyframe_times(file: &Path) -> Vec<String> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(",K"))
        .map(|line| line.split(',').next().unwrap_or_default().to_owned())
        .collect()
}

fn video_height(file: &Path) -> u64 {
    let probe = json(&run(&["probe", path(file), "--json"]));
    probe["source"]["video"]["height"]
        .as_u64()
        .expect("a height")
}

#[test]
fn a_ladder_from_one_decode_writes_a_verified_file_per_rung() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.mp4");
    pattern_clip(&source, 4, 25);
    let output = dir.path().join("out.mp4");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("mkdir");
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--renditions",
        "120,240,180:crf=30",
        "--segments",
        "3",
        "--preset",
        "ultrafast",
        "--temp-dir",
        path(&scratch),
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let summary = json(&result);
    assert!(!output.exists(), "the ladder's OUTPUT names the rungs only");
    assert!(
        entries(&scratch).is_empty(),
        "scratch left: {:?}",
        entries(&scratch)
    );

    let renditions = summary["renditions"].as_array().expect("renditions");
    let heights: Vec<u64> = renditions
        .iter()
        .map(|r| r["height"].as_u64().expect("height"))
        .collect();
    assert_eq!(heights, [240, 180, 120], "tallest first");
    assert_eq!(
        renditions[1]["settings"]["rate"],
        serde_json::json!({"crf": 30})
    );
    assert_eq!(
        renditions[0]["settings"]["rate"],
        renditions[2]["settings"]["rate"]
    );
    assert_eq!(summary["output"], renditions[0]["output"]);

    // The plan's cuts, as ffprobe prints the source's pts.
    let cuts = summary["plan"]["segments"].as_array().expect("segments");
    assert_eq!(cuts.len(), 3);
    let mut first_keyframes = None;
    for (rendition, height) in renditions.iter().zip(heights) {
        let file = Path::new(rendition["output"].as_str().expect("output"));
        assert_eq!(
            file.file_name().and_then(|n| n.to_str()),
            Some(format!("out_{height}p.mp4").as_str())
        );
        assert_eq!(video_height(file), height);
        assert_verifies(&source, file);
        assert_eq!(
            rendition["output_bytes"].as_u64(),
            Some(std::fs::metadata(file).expect("rung file").len())
        );
        let keyframes = keyframe_times(file);
        assert!(
            keyframes.len() >= 3,
            "a keyframe at every cut: {keyframes:?}"
        );
        match &first_keyframes {
            None => first_keyframes = Some(keyframes),
            Some(first) => assert_eq!(&keyframes, first, "keyframes aligned across rungs"),
        }
    }
}

#[test]
fn a_rung_taller_than_the_source_is_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.mp4");
    pattern_clip(&source, 1, 25);
    let output = dir.path().join("out.mp4");
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--renditions",
        "480,240",
    ]);
    let message = stderr(&result);
    assert!(!result.status.success(), "upscaled silently");
    assert!(
        message.contains("source.mp4")
            && message.contains("--renditions rung 480")
            && message.contains("--upscale"),
        "{message}"
    );
    assert_eq!(entries(dir.path()), ["source.mp4"], "nothing written");

    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--renditions",
        "480,240",
        "--upscale",
        "--preset",
        "ultrafast",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    assert_eq!(video_height(&dir.path().join("out_480p.mp4")), 480);
    assert_eq!(video_height(&dir.path().join("out_240p.mp4")), 240);
}

#[test]
fn bad_ladders_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.mp4");
    pattern_clip(&source, 1, 25);
    let output = dir.path().join("out.mp4");
    for (ladder, expected) in [
        ("240,240", "listed twice"),
        ("abc", "is not a height"),
        ("240:speed=1", "unknown rung setting"),
    ] {
        let result = run(&[
            "transcode",
            path(&source),
            path(&output),
            "--renditions",
            ladder,
        ]);
        let message = stderr(&result);
        assert!(!result.status.success(), "{ladder} accepted");
        assert!(
            message.contains("--renditions") && message.contains(expected),
            "{ladder}: {message}"
        );
    }
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--renditions",
        "240",
        "--height",
        "120",
    ]);
    assert!(
        !result.status.success(),
        "--height beside --renditions accepted"
    );
    assert!(
        stderr(&result).contains("cannot be used with"),
        "{}",
        stderr(&result)
    );
    assert_eq!(entries(dir.path()), ["source.mp4"], "nothing written");
}

/// A ladder run that crashes after a segment resumes with `--resume`: the finished segments of
/// every rung are reused (not encoded again) and every rung still verifies.
#[test]
fn a_crashed_ladder_run_resumes_every_rung() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.mp4");
    pattern_clip(&source, 4, 25);
    let output = dir.path().join("out.mp4");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("mkdir");
    let args = [
        "transcode",
        path(&source),
        path(&output),
        "--renditions",
        "240,120",
        "--segments",
        "4",
        "--workers",
        "1",
        "--preset",
        "ultrafast",
        "--temp-dir",
        path(&scratch),
        "--resume",
        "-q",
    ];
    let crashed = common::treemux()
        .args(args)
        .env("TREEMUX_FAULT", "after-segment:1")
        .output()
        .expect("treemux runs");
    assert!(!crashed.status.success(), "the injected crash did not fire");
    assert!(!dir.path().join("out_240p.mp4").exists());

    let result = run(&[&args[..], &["--json"]].concat());
    assert!(result.status.success(), "{}", stderr(&result));
    let summary = json(&result);
    let reused = summary["reused"].as_array().expect("reused");
    assert!(!reused.is_empty(), "nothing reused: {summary}");
    for height in [240, 120] {
        let file = dir.path().join(format!("out_{height}p.mp4"));
        assert_eq!(video_height(&file), height);
        assert_verifies(&source, &file);
    }
    assert!(
        entries(&scratch).is_empty(),
        "scratch left: {:?}",
        entries(&scratch)
    );
}
