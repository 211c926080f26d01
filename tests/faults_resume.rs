//! Crashes and `--resume`: a `treemux transcode --resume` that crashes at a chosen point (an
//! injected `abort`, or SIGKILL / SIGINT at a random moment) and is run again reuses what was
//! finished and produces the same decoded frames as a run without faults, merging every pair
//! exactly once and leaving no files behind.

mod common;

use common::rng::Rng;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use treemux_core::media::verify::decoded_frame_hashes;

const SEGMENTS: &str = "8";

struct Fixture {
    _dir: tempfile::TempDir,
    source: PathBuf,
    scratch_root: PathBuf,
    work: PathBuf,
    clean_hashes: Vec<u64>,
    clean_audio: Vec<AudioSignature>,
    concat_nodes: Vec<String>,
}

fn transcode_command(fixture_source: &Path, output: &Path, scratch_root: &Path) -> Command {
    let mut command = treemux();
    command
        .args(["transcode"])
        .arg(fixture_source)
        .arg(output)
        .args([
            "--segments",
            SEGMENTS,
            "--workers",
            "2",
            "--preset",
            "ultrafast",
            "--resume",
            "--json",
            "--temp-dir",
        ])
        .arg(scratch_root)
        .stdin(Stdio::null());
    command
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.mp4");
    pattern_clip(&source, 4, 25);
    let scratch_root = dir.path().join("scratch");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&scratch_root).expect("scratch");
    std::fs::create_dir_all(&work).expect("work");
    let clean = work.join("clean.mp4");
    let result = transcode_command(&source, &clean, &scratch_root)
        .output()
        .expect("treemux runs");
    assert!(result.status.success(), "{}", stderr(&result));
    let summary = json(&result);
    let concat_nodes: Vec<String> = summary["merges"]
        .as_array()
        .expect("merges")
        .iter()
        .filter(|m| m["kind"] == "Concat")
        .map(|m| m["node"].to_string())
        .collect();
    assert!(concat_nodes.len() >= 7, "8 segments make 7 merges");
    let clean_hashes = decoded_frame_hashes(&clean).expect("hashes");
    let clean_audio = audio_signatures(&clean);
    assert!(
        clean_audio.len() == 1 && clean_audio[0].samples > 3 * 44_100,
        "the fault-free run keeps the source's 4 s of audio: {clean_audio:?}"
    );
    assert!(
        entries(&scratch_root).is_empty(),
        "a successful run removes its scratch"
    );
    Fixture {
        _dir: dir,
        source,
        scratch_root,
        work,
        clean_hashes,
        clean_audio,
        concat_nodes,
    }
}

/// How a run is interrupted.
#[derive(Debug, Clone)]
enum Crash {
    Injected(String),
    Signal { signal: i32, after_ms: u64 },
}

/// Runs once with `crash`; returns whether the run was in fact interrupted.
fn crashed_run(fixture: &Fixture, output: &Path, crash: &Crash) -> bool {
    let mut command = transcode_command(&fixture.source, output, &fixture.scratch_root);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    match crash {
        Crash::Injected(fault) => {
            let status = command
                .env("TREEMUX_FAULT", fault)
                .status()
                .expect("treemux runs");
            !status.success()
        }
        Crash::Signal { signal, after_ms } => {
            let mut child = command.spawn().expect("treemux runs");
            std::thread::sleep(Duration::from_millis(*after_ms));
            // SAFETY: signalling our own child, which has not been waited for yet.
            unsafe { libc::kill(child.id() as libc::pid_t, *signal) };
            !child.wait().expect("wait").success()
        }
    }
}

/// Resumes and checks: same frames, each concat merged once across the runs, nothing left.
fn resume_and_check(fixture: &Fixture, output: &Path, label: &str, crashed: usize) -> usize {
    let result = transcode_command(&fixture.source, output, &fixture.scratch_root)
        .output()
        .expect("treemux runs");
    assert!(
        result.status.success(),
        "{label}: resume failed: {}",
        stderr(&result)
    );
    let summary = json(&result);
    let hashes = decoded_frame_hashes(output).expect("hashes");
    assert!(
        hashes == fixture.clean_hashes,
        "{label}: decoded frames differ from the fault-free run"
    );
    // Audio extracted before the crash and reused must be muxed like freshly extracted audio.
    let audio = audio_signatures(output);
    assert!(
        audio == fixture.clean_audio,
        "{label}: the audio differs from the fault-free run's: {audio:?} against {:?}",
        fixture.clean_audio
    );
    // Every concat node is merged by the resumed run or lies at or under a node it reused.
    let reused: Vec<(u64, u64)> = summary["reused"]
        .as_array()
        .expect("reused")
        .iter()
        .map(|n| {
            (
                n["level"].as_u64().unwrap_or(0),
                n["index"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let mut merged: BTreeMap<String, u32> = BTreeMap::new();
    for merge in summary["merges"].as_array().expect("merges") {
        if merge["kind"] == "Concat" {
            *merged.entry(merge["node"].to_string()).or_default() += 1;
        }
    }
    for node in &fixture.concat_nodes {
        let value: serde_json::Value = serde_json::from_str(node).expect("node json");
        let (level, index) = (
            value["level"].as_u64().unwrap_or(0),
            value["index"].as_u64().unwrap_or(0),
        );
        let covered = reused
            .iter()
            .any(|&(l, i)| l >= level && index >> (l - level) == i);
        let again = merged.get(node).copied().unwrap_or(0);
        assert!(
            again <= 1 && !(covered && again == 1),
            "{label}: node {node} merged {again} time(s) after being reused={covered}"
        );
        assert!(
            covered || again == 1,
            "{label}: node {node} was never merged"
        );
    }
    assert!(
        entries(&fixture.scratch_root).is_empty(),
        "{label}: scratch left after {crashed} crash(es): {:?}",
        entries(&fixture.scratch_root)
    );
    std::fs::remove_file(output).expect("remove output");
    assert!(
        entries(&fixture.work)
            .iter()
            .all(|name| name == "clean.mp4"),
        "{label}: stray files {:?}",
        entries(&fixture.work)
    );
    reused.len()
}

#[test]
fn each_named_crash_point_resumes_to_the_same_frames() {
    let fixture = fixture();
    let output = fixture.work.join("out.mp4");
    for fault in [
        "before-encode:3",
        "mid-encode:0:5",
        "mid-encode:7:5",
        "after-segment:2",
        "after-confirm:1",
        "after-merge:0",
        "after-merge:4",
        "after-merge:6",
    ] {
        let crash = Crash::Injected(fault.to_owned());
        assert!(
            crashed_run(&fixture, &output, &crash),
            "{fault}: the fault did not fire"
        );
        assert!(!output.exists(), "{fault}: a crashed run left an output");
        assert!(
            !entries(&fixture.scratch_root).is_empty(),
            "{fault}: a crashed --resume run keeps its work"
        );
        let reused = resume_and_check(&fixture, &output, fault, 1);
        if fault.starts_with("after-") {
            assert!(reused > 0, "{fault}: the resumed run reused nothing");
        }
    }
}

#[test]
fn seeded_random_crashes_resume_to_the_same_frames() {
    let fixture = fixture();
    let output = fixture.work.join("out.mp4");
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (runs, first_seed) = (env("TREEMUX_SOAK_RUNS", 10), env("TREEMUX_SOAK_SEED", 0));
    for seed in first_seed..first_seed + runs {
        let mut rng = Rng(seed);
        // One or two crashes in a row before the resume that must finish.
        let crashes = 1 + rng.below(2) as usize;
        let mut plan = Vec::new();
        for _ in 0..crashes {
            let crash = match rng.below(7) {
                0 => Crash::Injected(format!("before-encode:{}", rng.below(8))),
                1 => Crash::Injected(format!("mid-encode:{}:{}", rng.below(8), 1 + rng.below(10))),
                2 => Crash::Injected(format!("after-segment:{}", rng.below(8))),
                3 => Crash::Injected(format!("after-confirm:{}", rng.below(8))),
                4 => Crash::Injected(format!("after-merge:{}", rng.below(7))),
                5 => Crash::Signal {
                    signal: libc::SIGKILL,
                    after_ms: 50 + rng.below(600),
                },
                _ => Crash::Signal {
                    signal: libc::SIGINT,
                    after_ms: 50 + rng.below(600),
                },
            };
            crashed_run(&fixture, &output, &crash);
            let _ = std::fs::remove_file(&output);
            plan.push(crash);
        }
        resume_and_check(&fixture, &output, &format!("seed {seed} {plan:?}"), crashes);
    }
}

/// SIGINT and SIGTERM on a run without `--resume`: the run stops within its current frame or
/// merge, says so in one line, exits 130, and leaves neither an output file nor its scratch
/// directory.
#[test]
fn an_interrupted_run_without_resume_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.mp4");
    pattern_clip(&source, 12, 25);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let scratch_root = dir.path().join(format!("scratch-{signal}"));
        std::fs::create_dir_all(&scratch_root).expect("scratch");
        let output = dir.path().join(format!("out-{signal}.mp4"));
        let mut child = treemux()
            .arg("transcode")
            .arg(&source)
            .arg(&output)
            .args(["--segments", "4", "--workers", "2", "--preset", "slow"])
            .arg("--temp-dir")
            .arg(&scratch_root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("treemux runs");
        // Interrupt once encoding has visibly started: a file exists in the run's scratch.
        let started = std::time::Instant::now();
        let encoding = |root: &Path| {
            std::fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .any(|run| !entries(&run.path()).is_empty())
        };
        while !encoding(&scratch_root) {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the run never started encoding"
            );
            assert!(
                child.try_wait().expect("wait").is_none(),
                "the run ended before it could be interrupted"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: signalling our own child, which has not been waited for yet.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let result = child.wait_with_output().expect("wait");
        let message = stderr(&result);
        assert_eq!(
            result.status.code(),
            Some(130),
            "signal {signal}: {message}"
        );
        assert!(
            message.contains("interrupted") && message.contains("source.mp4"),
            "signal {signal}: says what happened to which file: {message}"
        );
        assert!(!output.exists(), "signal {signal}: no output file");
        assert!(
            entries(dir.path())
                .iter()
                .all(|name| !name.starts_with("out-")),
            "signal {signal}: no partial output: {:?}",
            entries(dir.path())
        );
        assert!(
            entries(&scratch_root).is_empty(),
            "signal {signal}: scratch left: {:?}",
            entries(&scratch_root)
        );
    }
}
