//! `treemux transcode` then `treemux verify` on real videos made by others: every shared sample
//! with h264, and VP9 (.webm) and AV1 (.mkv) on several. Fast presets keep the suite quick; the
//! properties checked do not depend on the preset.

mod common;

use common::*;
use std::path::Path;

fn transcode_and_verify(source: &Path, output_name: &str, extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join(output_name);
    let mut args = vec!["transcode", path(source), path(&output), "--json"];
    args.extend_from_slice(extra);
    let result = run(&args);
    assert!(
        result.status.success(),
        "transcode {} failed: {}",
        source.display(),
        stderr(&result)
    );
    let summary = json(&result);
    let report = assert_verifies(source, &output);
    assert_eq!(
        summary["plan"]["frame_count"], report["report"]["output_frames"],
        "plan and output agree on frames"
    );
    report
}

/// Transcodes, verifies the output against the source, and returns the output's frame size.
fn transcoded_size(source: &Path, output_name: &str, extra: &[&str]) -> (u64, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join(output_name);
    let mut args = vec!["transcode", path(source), path(&output)];
    args.extend_from_slice(extra);
    let result = run(&args);
    assert!(result.status.success(), "{}", stderr(&result));
    assert_verifies(source, &output);
    let probe = json(&run(&["probe", path(&output), "--json"]));
    let video = &probe["source"]["video"];
    (
        video["width"].as_u64().unwrap_or(0),
        video["height"].as_u64().unwrap_or(0),
    )
}

macro_rules! shared_h264 {
    ($($name:ident => $file:literal,)*) => {$(
        #[test]
        fn $name() {
            let Some(dir) = shared_samples() else { return };
            transcode_and_verify(&dir.join($file), "out.mp4", &["--preset", "veryfast", "--segments", "4"]);
        }
    )*};
}

shared_h264! {
    h264_01_screencast_gop12 => "01_h264_aac_1280x720_gop12_screencast.mp4",
    h264_03_long_irregular_keyframes => "03_long180s_h264baseline_aac_480x352.mp4",
    h264_05_long_gop_bframes_he_aac_51 => "05_ebu_chid_h264_aac51_800x600_longgop.mp4",
    h264_06_vp9_opus_source => "06_bbb_vp9_opus_320x180.webm",
    h264_08_odd_height_quicktime => "08_quicktime_h264_aac_640x465_oddsize.mov",
    h264_09_vfr_screen_recording => "09_screenrec_vfr_h264_3026x1386_noaudio.mp4",
    h264_10_rotated_fragmented => "10_bbb_rotated90_h264_aac51_1080p.mp4",
    h264_12_hevc_in_ts_one_keyframe => "12_hevc_aac51_1080p.ts",
    h264_13_msmpeg4_avi_long_gop => "13_opencv_vtest_msmpeg4v3_768x576_noaudio.avi",
    h264_15_three_audio_tracks => "15_DERIVED_bbb_h264_3audio_aac51_aac51_opus.mkv",
}

#[test]
fn vp9_webm_on_opus_and_silent_sources() {
    for file in [
        "06_bbb_vp9_opus_320x180.webm",
        "09_screenrec_vfr_h264_3026x1386_noaudio.mp4",
    ] {
        transcode_and_verify(
            &bundled(file),
            "out.webm",
            &["--preset", "8", "--segments", "3"],
        );
    }
}

#[test]
fn av1_mkv_keeps_every_audio_track() {
    for file in [
        "15_DERIVED_bbb_h264_3audio_aac51_aac51_opus.mkv",
        "06_bbb_vp9_opus_320x180.webm",
    ] {
        let report = transcode_and_verify(
            &bundled(file),
            "out.mkv",
            &["--codec", "av1", "--preset", "12", "--segments", "2"],
        );
        let checks = report["report"]["checks"]
            .as_array()
            .expect("checks")
            .clone();
        assert!(checks
            .iter()
            .any(|c| c["name"] == "audio tracks" && c["passed"] == true));
    }
}

#[test]
fn h265_mp4_from_the_hevc_ts_sample() {
    transcode_and_verify(
        &bundled("12_hevc_aac51_1080p.ts"),
        "out.mp4",
        &[
            "--codec",
            "h265",
            "--preset",
            "ultrafast",
            "--segments",
            "2",
        ],
    );
}

#[test]
fn rotation_survives_and_is_checked() {
    let report = transcode_and_verify(
        &bundled("10_bbb_rotated90_h264_aac51_1080p.mp4"),
        "out.mp4",
        &["--preset", "veryfast"],
    );
    let rotation = report["report"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "rotation")
        .cloned();
    assert_eq!(rotation.expect("rotation check")["passed"], true);
}

#[test]
fn odd_height_is_cropped_to_even() {
    let source = bundled("08_quicktime_h264_aac_640x465_oddsize.mov");
    assert_eq!(
        transcoded_size(&source, "odd.mp4", &["--preset", "veryfast"]),
        (640, 464)
    );
}

#[test]
fn scaling_to_a_smaller_height_keeps_frames_and_aspect() {
    let source = bundled("15_DERIVED_bbb_h264_3audio_aac51_aac51_opus.mkv");
    let extra = ["--height", "90", "--preset", "veryfast"];
    assert_eq!(transcoded_size(&source, "small.mkv", &extra), (160, 90));
}

/// WebM cannot hold AAC: those tracks are re-encoded to Opus (once, for the whole file), the Opus
/// track is copied, and every track keeps its language, length and place.
#[test]
fn aac_tracks_are_re_encoded_for_webm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = bundled("15_DERIVED_bbb_h264_3audio_aac51_aac51_opus.mkv");
    let output = dir.path().join("out.webm");
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--preset",
        "8",
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let actions = json(&result)["audio"]["actions"].clone();
    assert_eq!(
        actions,
        serde_json::json!([{"encode": {"encoder": "libopus"}}, {"encode": {"encoder": "libopus"}}, "copy"])
    );
    let report = assert_verifies(&source, &output);
    let names: Vec<String> = report["report"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    assert!(
        names.contains(&"audio 1 re-encoded".to_owned())
            && names.contains(&"audio 3 packets".to_owned()),
        "{names:?}"
    );
}

/// Without the shared samples, a test that needs them says so on stderr (outside CI), naming
/// itself and the missing folder, and fails in CI: it never passes silently. Runs one of the
/// tests above in a child of this test binary with the samples pointed at a folder that is not
/// there.
#[test]
fn missing_shared_samples_are_a_visible_skip_or_a_failure() {
    let missing = "/nonexistent/treemux-shared-samples";
    let run_one = |ci: bool| {
        let mut command =
            std::process::Command::new(std::env::current_exe().expect("this test binary"));
        command
            .args(["h264_01_screencast_gop12", "--exact"])
            .env("TREEMUX_SHARED_SAMPLES", missing)
            .env_remove("CI");
        if ci {
            command.env("CI", "true");
        }
        command.output().expect("the test binary runs")
    };
    let local = run_one(false);
    let stderr = String::from_utf8_lossy(&local.stderr);
    assert!(local.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "SKIPPED h264_01_screencast_gop12: {missing} not present"
        )),
        "the skip is printed where a test run shows it: {stderr}"
    );
    assert!(
        !run_one(true).status.success(),
        "in CI a missing sample folder fails the test"
    );
}
