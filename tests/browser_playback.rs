//! A real browser plays treemux's output: a clip transcoded in several segments, served over
//! HTTP with range requests, plays in headless Chromium's `<video>` from the start and seeks to
//! the middle with frames decoding after the seek and no media error (`common::browser`).
//! Without Chromium this is a visible skip, and a failure in CI.

mod common;

use common::{browser::assert_plays_in_browser, pattern_clip, run, stderr};
use std::path::Path;

/// Transcodes a 6 s test pattern (keyframe every second) in three segments to `name` and
/// returns the output's path.
fn transcoded(dir: &Path, name: &str) -> std::path::PathBuf {
    let source = dir.join("pattern.mp4");
    pattern_clip(&source, 6, 25);
    let output = dir.join(name);
    let result = run(&[
        "transcode",
        "-q",
        "--segments",
        "3",
        common::path(&source),
        common::path(&output),
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    output
}

#[test]
fn an_mp4_output_plays_and_seeks_in_chromium() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = transcoded(dir.path(), "out.mp4");
    assert_plays_in_browser(&output, 320, 240);
}

#[test]
fn a_webm_output_plays_and_seeks_in_chromium() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = transcoded(dir.path(), "out.webm");
    assert_plays_in_browser(&output, 320, 240);
}
