//! The hostile-input corpus (tests/corpus/generate.py, rebuilt on every run): for every case,
//! `treemux transcode` either produces an output that verify passes, or exits non-zero with one
//! line naming the file. Never a panic, never a hang, never a partial output or scratch left
//! behind, and the input is never modified. Checks that docs/robustness.md holds every outcome
//! (`TREEMUX_REGENERATE_DOCS=1` rewrites it).

mod common;

use common::*;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use treemux_core::media::verify::{verify, VerifyOptions};

/// Longest a debug build may take on one of these small files before it counts as a hang.
const TIME_LIMIT: Duration = Duration::from_secs(120);

#[derive(serde::Deserialize)]
struct Case {
    file: String,
    what: String,
    expect: String,
    /// The output's extension (the container); `mp4` when absent.
    #[serde(default)]
    output: Option<String>,
    /// Extra `treemux transcode` options; `--preset ultrafast` is added unless they set one.
    #[serde(default)]
    args: Vec<String>,
    /// What a refusal must name; the input file when empty.
    #[serde(default)]
    error_names: Vec<String>,
}

/// Judges a transcoded output with the ffmpeg and ffprobe CLIs (tests/corpus/judge.py: frames,
/// frame times, per-frame PSNR of the displayed source, aspect, audio lengths, streams and tags
/// kept or warned, and the case's own `checks`). Returns what does not hold.
fn judge(case_json: &serde_json::Value, input: &Path, output: &Path, stderr: &str) -> Vec<String> {
    let judge = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/judge.py");
    let stderr_file = output.with_extension("stderr.txt");
    std::fs::write(&stderr_file, stderr).expect("write treemux's stderr");
    let judged = std::process::Command::new("python3")
        .arg(&judge)
        .arg(case_json.to_string())
        .arg(input)
        .arg(output)
        .arg(&stderr_file)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_file(&stderr_file);
    let mut problems: Vec<String> = String::from_utf8_lossy(&judged.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    if !judged.status.success() && problems.is_empty() {
        problems.push(format!(
            "the judge failed: {}",
            String::from_utf8_lossy(&judged.stderr)
        ));
    }
    problems
}

fn content_hash(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

fn all_entries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(read) = std::fs::read_dir(dir) {
        for entry in read.flatten() {
            found.push(entry.path());
        }
    }
    found
}

/// Runs `treemux transcode input output`, killing it after [`TIME_LIMIT`].
fn transcode_bounded(
    input: &Path,
    output: &Path,
    scratch: &Path,
    args: &[String],
) -> (Option<i32>, String) {
    let started = Instant::now();
    let preset: &[&str] = if args.iter().any(|arg| arg == "--preset") {
        &[]
    } else {
        &["--preset", "ultrafast"]
    };
    let mut child = treemux()
        .args(["transcode"])
        .arg(input)
        .arg(output)
        .args(preset)
        .args(args)
        .arg("--temp-dir")
        .arg(scratch)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("treemux runs");
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            return (status.code(), stderr);
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "HANG".to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_hostile_input_is_transcoded_and_verified_or_refused_in_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let corpus = dir.path().join("corpus");
    let generator = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/generate.py");
    let generated = std::process::Command::new("python3")
        .arg(&generator)
        .arg(&corpus)
        .output()
        .expect("python3 runs");
    assert!(
        generated.status.success(),
        "the corpus generator failed: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let case_values: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(corpus.join("cases.json")).expect("cases.json"))
            .expect("cases.json parses");
    let cases: Vec<Case> = case_values
        .iter()
        .map(|value| serde_json::from_value(value.clone()).expect("a case parses"))
        .collect();
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());

    let mut problems = Vec::new();
    let mut rows = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let input = corpus.join(&case.file);
        let work = dir.path().join(format!("case-{index}"));
        let scratch = work.join("scratch");
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        let output = work.join(format!("out.{}", case.output.as_deref().unwrap_or("mp4")));
        let before = content_hash(&input);
        let (code, stderr) = transcode_bounded(&input, &output, &scratch, &case.args);
        let mut fail = |what: String| problems.push(format!("{}: {what}", case.file));
        if content_hash(&input) != before {
            fail("the input was modified".into());
        }
        if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
            fail(format!("panic: {stderr}"));
        }
        if !all_entries(&scratch).is_empty() {
            fail(format!("scratch left: {:?}", all_entries(&scratch)));
        }
        let leftovers: Vec<PathBuf> = all_entries(&work)
            .into_iter()
            .filter(|p| p != &scratch && p != &output)
            .collect();
        if !leftovers.is_empty() {
            fail(format!("partial files left: {leftovers:?}"));
        }
        let outcome = match code {
            None => {
                fail(format!("no answer within {TIME_LIMIT:?} (a hang)"));
                "HANG".to_owned()
            }
            Some(0) => match std::fs::metadata(&output) {
                Ok(meta) if meta.len() > 0 => {
                    match verify(&input, &output, &VerifyOptions::default()) {
                        Ok(report) if report.passed() => {
                            for judged in judge(&case_values[index], &input, &output, &stderr) {
                                fail(format!("judged by ffmpeg: {judged}"));
                            }
                            format!(
                                "transcoded, verified ({} frame{})",
                                report.output_frames,
                                if report.output_frames == 1 { "" } else { "s" }
                            )
                        }
                        Ok(report) => {
                            let failed: Vec<&str> =
                                report.failures().map(|c| c.name.as_str()).collect();
                            fail(format!("success claimed but verify fails: {failed:?}"));
                            format!("VERIFY FAILED: {failed:?}")
                        }
                        Err(error) => {
                            fail(format!(
                                "success claimed but the output cannot be verified: {error}"
                            ));
                            "UNVERIFIABLE".to_owned()
                        }
                    }
                }
                _ => {
                    fail("exit 0 with a missing or empty output".into());
                    "EMPTY SUCCESS".to_owned()
                }
            },
            Some(_) => {
                // Progress lines (stderr is a pipe) may precede the error of a run that
                // failed after work started.
                let stderr = without_progress(&stderr);
                let lines: Vec<&str> = stderr.trim().lines().collect();
                if lines.len() != 1 || !lines[0].starts_with("treemux: error: ") {
                    fail(format!("the error is not one line: {stderr:?}"));
                }
                let names = if case.error_names.is_empty() {
                    std::slice::from_ref(&case.file)
                } else {
                    &case.error_names[..]
                };
                for name in names {
                    if !stderr.contains(name.as_str()) {
                        fail(format!("the error does not name {name}: {stderr:?}"));
                    }
                }
                if output.exists() {
                    fail("failed but left an output".into());
                }
                let message = lines.first().copied().unwrap_or("");
                let message = message
                    .trim_start_matches("treemux: error: ")
                    .replace(&format!("{}/", corpus.display()), "")
                    // A refusal naming OUTPUT: its temporary directory changes from run to run.
                    .replace(&format!("{}/", work.display()), "");
                format!("refused: {message}")
            }
        };
        let succeeded = outcome.starts_with("transcoded");
        match (case.expect.as_str(), succeeded) {
            ("ok", false) => fail(format!("expected a verified output, got {outcome}")),
            ("refused", true) => fail(format!("expected a refusal, got {outcome}")),
            _ => {}
        }
        // No timings in the document: it must not change from run to run.
        rows.push(format!(
            "| `{}` | {} | {} | {} |",
            case.file,
            case.what,
            case.expect,
            outcome.replace('|', "\\|"),
        ));
    }

    let document = format!(
        "# Robustness\n\n\
         How treemux is checked against bad input and faults, and the outcome of every \
         hostile-corpus case. This file is written by `TREEMUX_REGENERATE_DOCS=1 cargo test --test hostile_corpus` and checked by every test run.\n\n\
         ## What is checked where\n\n\
         | what | test | how |\n|---|---|---|\n\
         | hostile inputs | `tests/hostile_corpus.rs` | {} generated cases (table below): verified output or a one-line refusal naming the file; no panic, no hang (answer within {} s), no partial output, no scratch left, input unchanged |\n\
         | bad requests | `tests/bad_input.rs` | missing, directory, output = input, unwritable output, unknown extension, codec the container cannot hold, damaged packets mid-run |\n\
         | crashes and `--resume` (local runner) | `tests/faults_resume.rs` | an injected `abort` before encoding, mid-encode, after a segment is written, after it is confirmed, after a merge; SIGKILL and SIGINT at seeded random moments; 10 seeded runs with one or two crashes each (1000 in `scripts/soak`); the resumed run must give the fault-free run's decoded frames, merge each pair exactly once across the runs and leave nothing behind. `scripts/soak` (or `TREEMUX_SOAK_RUNS=1000`) for a longer soak. Without `--resume`, SIGINT or SIGTERM stops the run within a frame or a merge: one line naming the file, exit 130, no output, no scratch left |\n\
         | retries and duplicates (AWS path) | `worker/tests/e2e_local_stack.rs` | on the local AWS stack: a task failing once (same decoded frames as a fault-free run, bit for bit), tasks delivered twice (each pair merged once), a permanent failure (job FAILED with the cause, input untouched, no output, no scratch), a duplicate S3 event, hostile S3 keys; the worker log never contains credentials or request signatures |\n\
         | workers dying (AWS path) | `worker/tests/e2e_crashes.rs` | `treemux worker` aborts at a named point (before encoding, mid-encode, after writing its segment but before confirming it, after confirming but before answering, after writing a merge but before marking it) or is SIGKILLed at a random moment; its messages come back after a 3 s visibility timeout to a new worker process; every point once, then 10 seeded runs with one or two crashes each (1000 in `scripts/soak`) and a SIGKILL in about a third; each job must succeed with the fault-free run's decoded frames, every pair merged exactly once (job record and worker log), one output object and no scratch left. `scripts/soak` (or `TREEMUX_STACK_CRASH_RUNS=1000`) for a longer soak |\n\
         | concurrent writers | `functions/tests/state_store_conformance.rs` | 60 updates racing on one job record are all kept, racing confirmations complete each pair once, racing claimants win once: in memory and on DynamoDB. Plain moto loses conditional updates under concurrency; the local stack serializes its DynamoDB requests (`scripts/moto-server.py`) as DynamoDB itself guarantees |\n\
         | fuzzing | `tests/fuzz.rs` | random and mutated inputs from fixed seeds (500, 2000 and 150 iterations) for the planner, the merge-tree protocol and the probe path (seeds: `samples/`, `tests/fuzz-seeds/`); `TREEMUX_FUZZ_SECONDS=600 cargo test --release --test fuzz -- --nocapture --test-threads 1` for 10 minutes per target |\n\
         | repeatable encodes | `tests/pipeline.rs` | an encode in a process whose heap holds garbage (`MALLOC_PERTURB_`) decodes to the same frames (libx264 reads memory it never wrote; see `core/src/process.rs`) |\n\n\
         Security: S3 keys never name scratch paths (`functions/src/job.rs`, tested with `../`, spaces and unicode); scratch directories are created private (mode 0700, unique names from `tempfile`; the `--resume` directory is accepted only if it is a real directory owned by the user with no group or other access); files are written under random names created exclusively (`O_EXCL`) and readable by the owner only, and renamed into place only when complete (`core/src/media/util.rs`, `PartialFile`); the worker's and CLI's logs are checked for credentials and signatures (`worker/tests/e2e_local_stack.rs`, `e2e_crashes.rs`).\n\n\
         ## The hostile-input corpus\n\n\
         Generated by `tests/corpus/generate.py` ({} cases, rebuilt on every run; nothing binary is \
         committed). For each case `treemux transcode` (debug build, preset ultrafast) must either \
         produce an output that `treemux verify` passes, or exit non-zero with one line naming the \
         file. *expect* says what the case must do (`either` accepts both).\n\n\
         | file | what | expect | outcome |\n|---|---|---|---|\n{}\n",
        cases.len(),
        TIME_LIMIT.as_secs(),
        cases.len(),
        rows.join("\n")
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The document is regenerated on request and otherwise checked, so that a change of outcome
    // cannot go unnoticed and a test run never edits the checkout.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/robustness.md");
    if std::env::var_os("TREEMUX_REGENERATE_DOCS").is_some() {
        std::fs::write(&target, document).expect("write docs/robustness.md");
    } else {
        let committed = std::fs::read_to_string(&target).unwrap_or_default();
        // The lines that differ, so a change of outcome (or a run-to-run difference) is named.
        let differing: Vec<String> = committed
            .lines()
            .zip(document.lines())
            .filter(|(old, new)| old != new)
            .map(|(old, new)| format!("committed: {old}\nthis run:  {new}"))
            .collect();
        assert!(
            committed == document,
            "docs/robustness.md is not current: regenerate it with \
             TREEMUX_REGENERATE_DOCS=1 cargo test --test hostile_corpus\n{}",
            differing.join("\n")
        );
    }
}

/// The judge must be able to fail: outputs wrong in each way it looks for, made with the ffmpeg
/// CLI (stream copies that lose what a careless transcode loses), each named by its problem.
#[test]
fn the_judge_fails_outputs_that_lose_levels_rotation_frames_streams_or_tags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let at = |name: &str| dir.path().join(name);
    let video = ["-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=2"];
    let tone = ["-f", "lavfi", "-i", "sine=f=440:r=48000:d=2"];
    let x264 = ["-c:v", "libx264", "-preset", "ultrafast"];
    let none = serde_json::json!({});
    let expect = |case: &serde_json::Value, source: &Path, output: &Path, expected: &[&str]| {
        let problems = judge(case, source, output, "");
        for text in expected {
            assert!(
                problems.iter().any(|problem| problem.contains(text)),
                "{} judged against {}: expected a problem saying {text:?}, got {problems:?}",
                output.display(),
                source.display()
            );
        }
    };

    // Full-range samples tagged limited: the levels are wrong as shown.
    let full = at("full.mp4");
    ffmpeg_clip(
        &full,
        &[&video[..], &x264, &["-pix_fmt", "yuvj420p"]].concat(),
    );
    let mistagged = at("mistagged.mp4");
    ffmpeg_clip(
        &mistagged,
        &[
            "-i",
            path(&full),
            "-c",
            "copy",
            "-bsf:v",
            "h264_metadata=video_full_range_flag=0",
        ],
    );
    expect(&none, &full, &mistagged, &["picture: PSNR-Y"]);
    let check_range = serde_json::json!({"checks": {"color": {"color_range": "pc"}}});
    expect(
        &check_range,
        &full,
        &mistagged,
        &["color_range: tv, expected pc"],
    );

    // A rotation lost: the picture is shown sideways.
    let rotated = at("rotated.mp4");
    ffmpeg_clip(
        &rotated,
        &[
            "-i",
            path(&full),
            "-c",
            "copy",
            "-metadata:s:v:0",
            "rotate=90",
        ],
    );
    let check_rotation = serde_json::json!({"checks": {"rotation": 90}});
    expect(
        &check_rotation,
        &rotated,
        &full,
        &[
            "picture: PSNR-Y",
            "displayed aspect ratio",
            "rotation: 0°, expected 90°",
        ],
    );

    // Frames and audio before 0 hidden by an MP4 edit list.
    let wrapped = at("wrapped.ts");
    ffmpeg_clip(
        &wrapped,
        &[
            &video[..],
            &tone,
            &x264,
            &[
                "-c:a",
                "aac",
                "-output_ts_offset",
                "95442.1",
                "-f",
                "mpegts",
            ],
        ]
        .concat(),
    );
    let hidden = at("hidden.mp4");
    ffmpeg_clip(&hidden, &["-copyts", "-i", path(&wrapped), "-c", "copy"]);
    expect(
        &none,
        &wrapped,
        &hidden,
        &["frames: ffmpeg decodes 50", "audio 1: decodes to"],
    );

    // HDR10 mastering display metadata dropped without a warning (libx264 cannot write it).
    let hdr10 = at("hdr10.mp4");
    ffmpeg_clip(
        &hdr10,
        &[
            &video[..],
            &["-t", "0.4", "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le"],
            &["-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc"],
            &["-x265-params", "log-level=error:master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400"],
        ]
        .concat(),
    );
    let sdr_metadata = at("no-mastering.mp4");
    ffmpeg_clip(&sdr_metadata, &[&["-i", path(&hdr10)][..], &x264].concat());
    expect(
        &none,
        &hdr10,
        &sdr_metadata,
        &["HDR10 mastering display metadata: not in the output and not warned"],
    );

    // Subtitles, chapters and tags dropped without a warning.
    let subtitles = at("subtitles.srt");
    std::fs::write(&subtitles, "1\n00:00:00,000 --> 00:00:01,000\nHello\n").expect("srt");
    let extras = at("extras.mkv");
    ffmpeg_clip(
        &extras,
        &[
            &video[..],
            &["-i", path(&subtitles)],
            &x264,
            &[
                "-metadata",
                "title=Kept?",
                "-metadata:s:v:0",
                "timecode=01:00:00:00",
            ],
        ]
        .concat(),
    );
    let bare = at("bare.mkv");
    ffmpeg_clip(
        &bare,
        &[
            "-i",
            path(&extras),
            "-map",
            "0:v",
            "-c",
            "copy",
            "-map_metadata",
            "-1",
            "-metadata:s:v:0",
            "timecode=",
        ],
    );
    expect(
        &none,
        &extras,
        &bare,
        &[
            "streams: 1 source streams are missing",
            "tag title='Kept?'",
            "timecode 01:00:00:00",
        ],
    );
    let check_streams = serde_json::json!({"checks": {"streams": ["video:h264", "subtitle:subrip"], "warnings": ["not kept"], "pix_fmt": "yuv420p10le"}});
    expect(
        &check_streams,
        &extras,
        &bare,
        &[
            "streams: ['video:h264']",
            "warnings: 0 lines say 'not kept'",
            "pix_fmt: yuv420p, expected yuv420p10le",
        ],
    );
}
