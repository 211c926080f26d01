//! HLS and DASH packages play in a real browser: a two-rendition ladder of a test pattern with
//! audio, packaged by `transcode` to `out/master.m3u8` and `out/manifest.mpd`, played in headless
//! Chromium by hls.js and dash.js (npm, pinned in tests/browser/package.json) from the start and
//! after a seek to the middle, with both renditions and the audio track listed and no player
//! error (`common::browser`). Without Chromium or the players this is a visible skip, and a
//! failure in CI.

mod common;

use common::browser::assert_stream_plays_in_browser;
use common::{path, pattern_clip, run, stderr};

fn package(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("pattern.mp4");
    pattern_clip(&source, 10, 25);
    let output = dir.path().join("out").join(name);
    let result = run(&[
        "transcode",
        "-q",
        "--renditions",
        "240,120",
        "--segments",
        "3",
        "--preset",
        "ultrafast",
        path(&source),
        path(&output),
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    dir
}

#[test]
fn an_hls_ladder_plays_and_seeks_in_hls_js() {
    let dir = package("master.m3u8");
    if let Some(report) = assert_stream_plays_in_browser(
        &dir.path().join("out"),
        "master.m3u8",
        &["320x240", "160x120"],
        1,
    ) {
        assert_eq!(report["kind"], "hls");
    }
}

#[test]
fn a_dash_ladder_plays_and_seeks_in_dash_js() {
    let dir = package("manifest.mpd");
    if let Some(report) = assert_stream_plays_in_browser(
        &dir.path().join("out"),
        "manifest.mpd",
        &["320x240", "160x120"],
        1,
    ) {
        assert_eq!(report["kind"], "dash");
    }
}
