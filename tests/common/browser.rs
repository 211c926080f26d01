//! A real browser plays an output: headless Chromium (Debian's `chromium`, or the binary named by
//! `TREEMUX_CHROMIUM`) driven by `tests/browser/play.mjs` (`playwright-core`, installed by
//! `scripts/setup` from `tests/browser/package-lock.json`), the file served over HTTP with range
//! requests. Shared by the core's tests and the functions crate's (included by path).
//!
//! Without Chromium, Node or the installed driver the check is a visible skip (`SKIPPED <test>:
//! <reason>`), except in CI (`CI=true`), where it is a failure: CI installs them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding `play.mjs` and its `node_modules`, found from this crate's manifest
/// upwards (the workspace root holds `tests/browser`, whichever crate runs the test).
fn driver_dir() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("tests/browser"))
        .find(|dir| dir.join("play.mjs").is_file())
}

/// What is missing to run a browser here, if anything.
fn missing_browser(chromium: &Path, driver: Option<&Path>) -> Option<String> {
    if !chromium.is_file() {
        return Some(format!(
            "no Chromium at {} (apt-get install chromium, or set TREEMUX_CHROMIUM)",
            chromium.display()
        ));
    }
    let Some(driver) = driver else {
        return Some("tests/browser/play.mjs not found above the crate".into());
    };
    if !driver
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return Some(format!(
            "playwright-core is not installed in {} (scripts/setup installs it)",
            driver.display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed (scripts/setup installs it)".into());
    }
    None
}

/// Plays `file` in headless Chromium from the start, then seeks to the middle, and asserts what
/// a viewer needs: metadata loaded with the file's picture size, the first frames presented at
/// the beginning (media time below 0.25 s) and increasing, the clock advancing, a `seeked`
/// event landing at the middle, frames presented after it (from the seek target onwards) and
/// decoded to a real picture (many luma levels on a canvas), the file requested with `Range`,
/// and no media error at any point. Returns the driver's report, or `None` when the browser is
/// missing outside CI (after a `SKIPPED` line).
///
/// Precondition: `file` is a video of at least 2 s with a moving picture (a test pattern), of
/// `width`x`height` as displayed.
pub fn assert_plays_in_browser(file: &Path, width: u64, height: u64) -> Option<serde_json::Value> {
    let chromium = std::env::var_os("TREEMUX_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let driver = driver_dir();
    if let Some(reason) = missing_browser(&chromium, driver.as_deref()) {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{reason}: CI installs the browser with scripts/setup");
        }
        super::skip(&format!("{reason}; the browser playback check did not run"));
        return None;
    }
    let driver = driver.expect("missing_browser found the driver");
    let output = Command::new("node")
        .arg(driver.join("play.mjs"))
        .arg(file)
        .arg("--chromium")
        .arg(&chromium)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "the browser driver failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "the browser driver's report is not JSON ({error}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
    let context = format!("{} in Chromium: {report}", file.display());
    let steps = report["steps"].as_array().expect("steps");
    for step in [
        "loadedmetadata",
        "first frames",
        "clock advances",
        "seeked",
        "frames after seek",
    ] {
        assert!(
            steps.iter().any(|s| s["step"] == step && s["done"] == true),
            "step {step:?} did not finish: {context}"
        );
    }
    assert_eq!(
        report["errors"].as_array().map(Vec::len),
        Some(0),
        "media errors: {context}"
    );
    assert!(report["finalError"].is_null(), "{context}");
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(width), Some(height)),
        "{context}"
    );
    let times = |name: &str| -> Vec<f64> {
        report[name]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {context}"))
            .iter()
            .map(|t| t.as_f64().expect("a media time"))
            .collect()
    };
    let increasing = |t: &[f64]| t.windows(2).all(|w| w[0] < w[1]);
    let start = times("startFrameTimes");
    assert!(
        start[0] < 0.25 && increasing(&start),
        "playback does not start at the beginning: {context}"
    );
    assert!(report["playedTo"].as_f64() > Some(0.2), "{context}");
    let target = report["seekTarget"].as_f64().expect("seek target");
    assert!(target >= 1.0, "the clip is too short to seek in: {context}");
    let after_seek = times("seekFrameTimes");
    assert!(
        after_seek[0] >= target - 0.1 && after_seek[0] < target + 0.5 && increasing(&after_seek),
        "frames after the seek are not at its target: {context}"
    );
    assert!(
        report["framesDecodedAfterSeek"].as_u64() > report["framesDecodedBeforeSeek"].as_u64(),
        "{context}"
    );
    assert!(
        report["pictureLevelsAfterSeek"].as_u64() > Some(16),
        "the frame after the seek is not a decoded picture: {context}"
    );
    assert!(
        report["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .any(|r| r["status"] == 206),
        "the browser never asked for a range: {context}"
    );
    Some(report)
}

/// Plays the HLS or DASH package in `dir` (entry point `manifest`, `master.m3u8` or
/// `manifest.mpd`) in headless Chromium through hls.js or dash.js (`tests/browser/
/// play_stream.mjs`, both from npm), from the start and after a seek to the middle, and asserts:
/// every step finished, no player error (fatal or not), no media or page error, the first
/// frames at the beginning and increasing, frames after the seek at its target, and the player
/// listing `renditions` (`WxH`, any order) and one audio track per `audio_tracks`. Returns the
/// report, or `None` when the browser or the players are missing outside CI (after a `SKIPPED`
/// line).
///
/// Precondition: the package holds at least 4 s of video.
pub fn assert_stream_plays_in_browser(
    dir: &Path,
    manifest: &str,
    renditions: &[&str],
    audio_tracks: usize,
) -> Option<serde_json::Value> {
    let chromium = std::env::var_os("TREEMUX_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let driver = driver_dir();
    let missing = missing_browser(&chromium, driver.as_deref()).or_else(|| {
        let driver = driver.as_deref()?;
        ["hls.js", "dashjs"]
            .into_iter()
            .find(|name| {
                !driver
                    .join("node_modules")
                    .join(name)
                    .join("package.json")
                    .is_file()
            })
            .map(|name| {
                format!(
                    "{name} is not installed in {} (scripts/setup installs it)",
                    driver.display()
                )
            })
    });
    if let Some(reason) = missing {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{reason}: CI installs the browser with scripts/setup");
        }
        super::skip(&format!("{reason}; the browser playback check did not run"));
        return None;
    }
    let driver = driver.expect("missing_browser found the driver");
    let output = Command::new("node")
        .arg(driver.join("play_stream.mjs"))
        .arg(dir)
        .arg(manifest)
        .arg("--chromium")
        .arg(&chromium)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "the browser driver failed on {}: {}",
        dir.join(manifest).display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "the browser driver's report is not JSON ({error}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
    let context = format!("{} in Chromium: {report}", dir.join(manifest).display());
    let steps = report["steps"].as_array().expect("steps");
    for step in [
        "loadedmetadata",
        "first frames",
        "clock advances",
        "seeked",
        "frames after seek",
    ] {
        assert!(
            steps.iter().any(|s| s["step"] == step && s["done"] == true),
            "step {step:?} did not finish: {context}"
        );
    }
    for errors in ["errors", "playerErrors", "pageErrors"] {
        assert_eq!(
            report[errors].as_array().map(Vec::len),
            Some(0),
            "{errors}: {context}"
        );
    }
    assert!(report["finalError"].is_null(), "{context}");
    let times = |name: &str| -> Vec<f64> {
        report[name]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {context}"))
            .iter()
            .map(|t| t.as_f64().expect("a media time"))
            .collect()
    };
    let increasing = |t: &[f64]| t.windows(2).all(|w| w[0] < w[1]);
    let start = times("startFrameTimes");
    assert!(
        start[0] < 0.25 && increasing(&start),
        "playback does not start at the beginning: {context}"
    );
    let target = report["seekTarget"].as_f64().expect("seek target");
    assert!(
        target >= 2.0,
        "the package is too short to seek in: {context}"
    );
    let after_seek = times("seekFrameTimes");
    assert!(
        after_seek[0] >= target - 0.1 && after_seek[0] < target + 0.5 && increasing(&after_seek),
        "frames after the seek are not at its target: {context}"
    );
    let mut listed: Vec<String> = report["renditions"]["video"]
        .as_array()
        .unwrap_or_else(|| panic!("renditions: {context}"))
        .iter()
        .map(|size| size.as_str().unwrap_or_default().to_owned())
        .collect();
    listed.sort();
    let mut wanted: Vec<String> = renditions.iter().map(|size| (*size).to_owned()).collect();
    wanted.sort();
    assert_eq!(listed, wanted, "{context}");
    assert_eq!(
        report["renditions"]["audio"].as_array().map(Vec::len),
        Some(audio_tracks),
        "{context}"
    );
    Some(report)
}
