//! Bad input: each case gets one clear line naming the file and the cause, a non-zero exit, the
//! input untouched, and no output file (nor a partial one) left behind.

mod common;

use common::*;
use std::path::Path;

/// Runs a transcode expected to fail and checks the failure contract. Returns stderr.
fn expect_failure(input: &Path, output: &Path, extra: &[&str]) -> String {
    let before = std::fs::read(input).ok();
    let output_dir_before = output.parent().map(entries).unwrap_or_default();
    let mut args = vec!["transcode", path(input), path(output)];
    args.extend_from_slice(extra);
    let result = run(&args);
    // A run that fails after work started may have printed progress lines (stderr is a pipe).
    let message = without_progress(&stderr(&result));
    assert!(
        !result.status.success(),
        "transcode of {} succeeded",
        input.display()
    );
    assert_eq!(message.lines().count(), 1, "exactly one line: {message:?}");
    assert!(message.starts_with("treemux: error: "), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    assert_eq!(std::fs::read(input).ok(), before, "the input was modified");
    let output_is_input = std::fs::canonicalize(output).ok() == std::fs::canonicalize(input).ok();
    if !output_is_input {
        assert!(
            !output.exists(),
            "an output was left at {}",
            output.display()
        );
    }
    let output_dir_after = output.parent().map(entries).unwrap_or_default();
    assert_eq!(
        output_dir_before, output_dir_after,
        "files were left beside the output"
    );
    message
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("empty.mp4");
    std::fs::write(&input, b"").expect("write");
    let message = expect_failure(&input, &dir.path().join("out.mp4"), &[]);
    assert!(
        message.contains("empty.mp4") && message.contains("is empty"),
        "{message}"
    );
}

#[test]
fn text_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("notes.mp4");
    std::fs::write(
        &input,
        "these are not the frames you are looking for\n".repeat(50),
    )
    .expect("write");
    let message = expect_failure(&input, &dir.path().join("out.mp4"), &[]);
    assert!(
        message.contains("notes.mp4") && message.contains("cannot open it as media"),
        "{message}"
    );
}

/// FFmpeg returns a generic code for some refusals and says why only in its log; the error
/// carries the logged reason.
#[test]
fn absurd_declared_dimensions_are_refused_with_ffmpegs_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("huge.y4m");
    let mut bytes = b"YUV4MPEG2 W60000 H60000 F25:1 Ip A1:1 C420jpeg\nFRAME\n".to_vec();
    bytes.resize(bytes.len() + 1024, 0);
    std::fs::write(&input, bytes).expect("write");
    let message = expect_failure(&input, &dir.path().join("out.mp4"), &[]);
    assert!(
        message.contains("huge.y4m") && message.contains("Picture size 60000x60000 is invalid"),
        "{message}"
    );
}

#[test]
fn truncated_file_with_index_at_the_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let whole =
        std::fs::read(bundled("09_screenrec_vfr_h264_3026x1386_noaudio.mp4")).expect("sample");
    let input = dir.path().join("cut.mp4");
    std::fs::write(&input, &whole[..whole.len() / 2]).expect("write");
    let message = expect_failure(&input, &dir.path().join("out.mp4"), &[]);
    assert!(message.contains("cut.mp4"), "{message}");
}

#[test]
fn truncated_file_with_index_at_the_front() {
    let dir = tempfile::tempdir().expect("temp dir");
    let whole = dir.path().join("whole.mp4");
    ffmpeg_clip(
        &whole,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x240:r=25:d=6",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-movflags",
            "+faststart",
        ],
    );
    let bytes = std::fs::read(&whole).expect("clip");
    let input = dir.path().join("cut.mp4");
    std::fs::write(&input, &bytes[..bytes.len() * 6 / 10]).expect("write");
    let message = expect_failure(&input, &dir.path().join("out.mp4"), &[]);
    assert!(
        message.contains("cut.mp4") && message.contains("truncated"),
        "{message}"
    );
}

#[test]
fn audio_only_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("tone.m4a");
    ffmpeg_clip(&input, &["-f", "lavfi", "-i", "sine=d=2", "-c:a", "aac"]);
    let message = expect_failure(&input, &dir.path().join("out.mp4"), &[]);
    assert!(
        message.contains("tone.m4a") && message.contains("no video stream"),
        "{message}"
    );
}

/// An AVI whose video fourcc is one no FFmpeg build knows.
#[test]
fn video_codec_this_build_cannot_decode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let avi = dir.path().join("mpeg4.avi");
    ffmpeg_clip(
        &avi,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=160x120:r=10:d=1",
            "-c:v",
            "mpeg4",
        ],
    );
    // The AVI muxer only writes tags it knows, so swap MPEG-4's tag (in the stream header and the
    // stream format) for one nobody uses.
    let bytes = std::fs::read(&avi).expect("clip");
    let mut patched = Vec::with_capacity(bytes.len());
    let mut rest = bytes.as_slice();
    while let Some(at) = rest.windows(4).position(|w| w == b"FMP4") {
        patched.extend_from_slice(&rest[..at]);
        patched.extend_from_slice(b"ZQXW");
        rest = &rest[at + 4..];
    }
    patched.extend_from_slice(rest);
    assert_ne!(patched, bytes, "the tag was found");
    let input = dir.path().join("unknown-codec.avi");
    std::fs::write(&input, &patched).expect("write");
    let message = expect_failure(&input, &dir.path().join("out.mp4"), &[]);
    assert!(
        message.contains("unknown-codec.avi") && message.contains("cannot be decoded"),
        "{message}"
    );
}

#[test]
fn directory_as_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("folder.mp4");
    std::fs::create_dir(&input).expect("mkdir");
    let message = expect_failure(&input, &dir.path().join("out.mp4"), &[]);
    assert!(
        message.contains("folder.mp4") && message.contains("is a directory"),
        "{message}"
    );
}

#[test]
fn missing_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let message = expect_failure(
        &dir.path().join("nothing.mp4"),
        &dir.path().join("out.mp4"),
        &[],
    );
    assert!(
        message.contains("nothing.mp4") && message.contains("no such file"),
        "{message}"
    );
}

#[test]
fn output_equal_to_input_never_overwrites_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("clip.mp4");
    std::fs::copy(bundled("10_bbb_rotated90_h264_aac51_1080p.mp4"), &input).expect("copy");
    let message = expect_failure(&input, &input, &[]);
    assert!(message.contains("is the input file"), "{message}");
    // The same file through another spelling of its path.
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let detour = dir.path().join("sub/../clip.mp4");
    let message = expect_failure(&input, &detour, &[]);
    assert!(message.contains("is the input file"), "{message}");
}

#[test]
fn unwritable_output_paths() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = bundled("06_bbb_vp9_opus_320x180.webm");
    let message = expect_failure(&input, &dir.path().join("no/such/dir/out.mp4"), &[]);
    assert!(
        message.contains("out.mp4") && message.contains("does not exist"),
        "{message}"
    );
    // /proc refuses new files even to root.
    let result = run(&["transcode", path(&input), "/proc/treemux-out.mp4"]);
    assert!(!result.status.success());
    assert!(
        stderr(&result).contains("/proc/treemux-out.mp4")
            && stderr(&result).contains("cannot write"),
        "{}",
        stderr(&result)
    );
}

#[test]
fn unknown_output_extension_and_unfit_codec() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = bundled("06_bbb_vp9_opus_320x180.webm");
    let message = expect_failure(&input, &dir.path().join("out.avi"), &[]);
    assert!(
        message.contains("out.avi") && message.contains("unknown output type"),
        "{message}"
    );
    let message = expect_failure(&input, &dir.path().join("out.webm"), &["--codec", "h264"]);
    assert!(
        message.contains("out.webm") && message.contains("cannot hold h264"),
        "{message}"
    );
}

#[test]
fn frames_too_small_for_the_encoder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("tiny.mp4");
    ffmpeg_clip(
        &input,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=16x16:r=10:d=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    let message = expect_failure(&input, &dir.path().join("out.mkv"), &["--codec", "av1"]);
    assert!(
        message.contains("at least 64x64") && message.contains("16x16"),
        "{message}"
    );
}

/// Damaged packets in the middle of a file pass the probe but cost frames when decoding: the
/// run fails after work has started, naming the segment, and leaves no output and no scratch.
#[test]
fn damaged_packets_fail_mid_run_and_leave_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clip = dir.path().join("clip.mp4");
    ffmpeg_clip(
        &clip,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x240:r=25:d=8",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
        ],
    );
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pos,size",
            "-of",
            "json",
        ])
        .arg(&clip)
        .output()
        .expect("ffprobe runs");
    let packets: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("ffprobe json");
    let mut bytes = std::fs::read(&clip).expect("clip");
    // Zero the first packets of the third segment (frames 100..150 of 200).
    for packet in &packets["packets"].as_array().expect("packets")[100..104] {
        let position: usize = packet["pos"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .expect("pos");
        let size: usize = packet["size"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("size");
        bytes[position..position + size].fill(0);
    }
    let input = dir.path().join("damaged.mp4");
    std::fs::write(&input, &bytes).expect("write");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("mkdir");
    let message = expect_failure(
        &input,
        &dir.path().join("out.mkv"),
        &["--segments", "4", "--temp-dir", path(&scratch)],
    );
    assert!(message.contains("damaged.mp4"), "{message}");
    // The zeroed keyframe (4.00 s) is demoted by the plan's keyframe check, so the segment
    // that holds the damage may start at an earlier keyframe: the named range must hold 4.00 s.
    let range: Vec<f64> = message
        .split("damaged video from ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .map(|range| {
            range
                .split(" to ")
                .filter_map(|time| time.trim().trim_end_matches(" s").parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        range.len() == 2 && range[0] <= 4.0 && 4.0 < range[1],
        "the damaged range names 4.00 s: {message}"
    );
    // What is wrong with the file, not the plan's arithmetic.
    assert!(
        !message.contains("segment") && !message.contains("plan"),
        "{message}"
    );
    assert!(
        entries(&scratch).is_empty(),
        "scratch left behind: {:?}",
        entries(&scratch)
    );
}

#[test]
fn bad_option_values_are_refused() {
    let input = bundled("06_bbb_vp9_opus_320x180.webm");
    for (flag, value) in [
        ("--segments", "0"),
        ("--segments", "many"),
        ("--crf", "99"),
        ("--bitrate", "fast"),
        ("--codec", "mpeg2"),
        ("--preset", "sluggish"),
    ] {
        let result = run(&[
            "transcode",
            path(&input),
            "/tmp/never-written.mp4",
            flag,
            value,
        ]);
        assert!(!result.status.success(), "{flag} {value} accepted");
        assert!(
            stderr(&result).contains(flag),
            "{flag} {value}: {}",
            stderr(&result)
        );
    }
    assert!(!Path::new("/tmp/never-written.mp4").exists());
}
