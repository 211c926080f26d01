//! Helpers shared by the integration tests: the built binary, sample locations, synthetic clips.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod browser;
pub mod rng;

/// The `treemux` binary built for this test run.
pub fn treemux() -> Command {
    Command::new(env!("CARGO_BIN_EXE_treemux"))
}

/// Runs `treemux` with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    treemux().args(args).output().expect("treemux runs")
}

/// The bundled fixtures (samples/ in the repository).
pub fn bundled(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name)
}

/// The shared real-world samples, next to the repository (`../shared/samples`), or the folder
/// named by `TREEMUX_SHARED_SAMPLES`. `None` when absent, except in CI, where their absence is a
/// broken checkout and fails the test.
pub fn shared_samples() -> Option<PathBuf> {
    let dir = std::env::var_os("TREEMUX_SHARED_SAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples"));
    if dir.is_dir() {
        Some(dir)
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} is missing: CI runs with shared/ beside the repository",
            dir.display()
        );
    } else {
        skip(&format!(
            "{} not present (set TREEMUX_SHARED_SAMPLES)",
            dir.display()
        ));
        None
    }
}

/// Says that the running test is skipped and why, on the process's real stderr: the test harness
/// captures `eprintln!` and shows it only for failing tests, so a skip printed that way would
/// pass silently. The line names the test (libtest names each test's thread after it).
pub fn skip(reason: &str) {
    use std::io::Write as _;
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
}

/// Makes a clip with the ffmpeg CLI: `args` go between `-y` and the output path.
pub fn ffmpeg_clip(output: &Path, args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(output)
        .status()
        .expect("the ffmpeg CLI is installed");
    assert!(
        status.success(),
        "ffmpeg could not make {}",
        output.display()
    );
}

/// A 320x240 test pattern of `seconds` at 25 fps with a moving counter, B-frames, and a sine tone,
/// with `gop` frames between keyframes.
pub fn pattern_clip(output: &Path, seconds: u32, gop: u32) {
    let duration = seconds.to_string();
    let gop = gop.to_string();
    ffmpeg_clip(
        output,
        &[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=s=320x240:r=25:d={duration}"),
            "-f",
            "lavfi",
            "-i",
            &format!("sine=f=440:d={duration}"),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "2",
            "-g",
            &gop,
            "-keyint_min",
            &gop,
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ],
    );
}

/// Parses a command's stdout as JSON.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Asserts that `treemux verify SOURCE OUTPUT` passes and returns its JSON report.
pub fn assert_verifies(source: &Path, output: &Path) -> serde_json::Value {
    let result = run(&["verify", path(source), path(output), "--json"]);
    let report = json(&result);
    assert!(
        result.status.success() && report["passed"] == true,
        "verify {} against {} failed:\n{}",
        output.display(),
        source.display(),
        // A file's checks, or a package's report with every rendition's.
        serde_json::to_string_pretty(if report["report"].is_null() {
            &report
        } else {
            &report["report"]["checks"]
        })
        .unwrap_or_default()
    );
    report
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// True for a progress line, which `transcode` prints on a stderr that is not a terminal every
/// `--stats-period` (`frame 12/250 4% …`).
pub fn is_progress_line(line: &str) -> bool {
    line.starts_with("frame ")
}

/// `stderr` without its progress lines: what a failed run said about the failure.
pub fn without_progress(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|line| !is_progress_line(line))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// Lists a directory's entries (names), sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// One audio track as a player would hear it: codec, layout, and the decoded samples (count and
/// a hash of the PCM, so reused audio can be compared with freshly extracted audio).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioSignature {
    pub codec: String,
    pub channels: u32,
    pub sample_rate: u32,
    /// Decoded samples per channel.
    pub samples: u64,
    /// MD5 of the decoded PCM (FFmpeg's `md5` muxer).
    pub pcm_md5: String,
}

/// The audio tracks of `file`, in order, read with the ffprobe and ffmpeg CLIs.
pub fn audio_signatures(file: &Path) -> Vec<AudioSignature> {
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a"])
        .args(["-show_entries", "stream=codec_name,channels,sample_rate"])
        .args(["-of", "json"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    let streams = serde_json::from_slice::<serde_json::Value>(&probe.stdout).expect("ffprobe JSON")
        ["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    streams
        .iter()
        .enumerate()
        .map(|(position, stream)| {
            let selector = format!("a:{position}");
            let frames = Command::new("ffprobe")
                .args(["-v", "error", "-select_streams", &selector])
                .args(["-show_entries", "frame=nb_samples", "-of", "csv=p=0"])
                .arg(file)
                .output()
                .expect("ffprobe runs");
            let samples = String::from_utf8_lossy(&frames.stdout)
                .lines()
                .filter_map(|line| line.trim().trim_end_matches(',').parse::<u64>().ok())
                .sum();
            let md5 = Command::new("ffmpeg")
                .args(["-v", "error", "-i"])
                .arg(file)
                .args(["-map", &format!("0:{selector}"), "-f", "md5", "-"])
                .output()
                .expect("ffmpeg runs");
            AudioSignature {
                codec: stream["codec_name"].as_str().unwrap_or("").to_owned(),
                channels: stream["channels"].as_u64().unwrap_or(0) as u32,
                sample_rate: stream["sample_rate"]
                    .as_str()
                    .and_then(|rate| rate.parse().ok())
                    .unwrap_or(0),
                samples,
                pcm_md5: String::from_utf8_lossy(&md5.stdout).trim().to_owned(),
            }
        })
        .collect()
}
