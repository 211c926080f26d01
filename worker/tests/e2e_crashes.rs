//! Workers that die on the local AWS stack: `treemux worker` aborts at a chosen crash point
//! inside a handler (before encoding, mid-encode, after writing its segment but before
//! confirming it, after confirming but before answering, after writing a merge but before
//! marking it, after uploading a part of the output but before recording its ETag, after
//! recording it) or is SIGKILLed at a random moment. Its unanswered task messages come back after
//! the visibility timeout with the same task tokens, a new worker process takes them (the
//! supervisor in `common::stack` restarts it, as Lambda would start a new sandbox), and the job
//! must still succeed with the fault-free run's decoded frames, every pair merged exactly once,
//! one output object and no scratch file left.
//!
//! `TREEMUX_STACK_CRASH_RUNS` (default 10) sets how many seeded random runs
//! `seeded_random_crashes_heal` makes, `TREEMUX_STACK_CRASH_PARALLEL` (default 10) how many at
//! once, and `TREEMUX_STACK_CRASH_SEED` the first seed: a longer soak is
//! `TREEMUX_STACK_CRASH_RUNS=1000 cargo test -p treemux-worker --test e2e_crashes -- --nocapture`.

mod common;

use common::rng::Rng;
use common::stack::{assert_no_secrets, fired_crashes, Stack, WorkerSetup};
use common::stack_available;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use treemux_core::media::verify::decoded_frame_hashes;
use treemux_core::state::JobStatus;

/// Seconds a dead worker's tasks stay hidden before another worker may take them.
const VISIBILITY_SECONDS: u32 = 3;
const KEY: &str = "uploads/clip.mp4";
const OUTPUT_KEY: &str = "transcoded/uploads/clip.mp4.mp4";

/// A 4 s clip with exactly known content: 100 frames of a moving test pattern at 25 fps with a
/// keyframe every 12 frames (so the planner can cut 4 segments), and a 440 Hz tone.
fn clip(dir: &Path) -> PathBuf {
    clip_of_size(dir, "160x96", false)
}

/// [`clip`] at `size` (`WxH`), with seeded noise on the picture when `noisy` (a lossless
/// encode of it is then large: about 29 MB at 640x360).
fn clip_of_size(dir: &Path, size: &str, noisy: bool) -> PathBuf {
    let path = dir.join(format!("clip-{size}.mp4"));
    let noise = if noisy {
        "noise=alls=20:allf=t"
    } else {
        "null"
    };
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25:duration=4"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=4"])
        .args(["-vf", noise])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "12",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made the clip");
    path
}

/// Runs the clip through a stack with no faults; returns its decoded frame hashes.
async fn fault_free_frames(source: &Path) -> Vec<u64> {
    fault_free_frames_with(source, Vec::new()).await
}

/// [`fault_free_frames`] with the worker's environment `env` added.
async fn fault_free_frames_with(source: &Path, env: Vec<(String, String)>) -> Vec<u64> {
    let clean = Stack::with_worker(
        "crash-reference",
        WorkerSetup {
            env,
            ..WorkerSetup::faults("")
        },
    )
    .await;
    clean.upload(KEY, source).await;
    let (status, job) = clean.finished_job().await;
    assert_eq!(status, "SUCCEEDED", "{}", clean.worker_log());
    assert_eq!(
        (job.segments, job.merges),
        (4, 3),
        "the clip is cut in 4 segments"
    );
    decoded_frame_hashes(&clean.download(OUTPUT_KEY).await).expect("hashes")
}

/// What one crashing run did, for the summary.
#[derive(Debug, Default)]
struct Healed {
    fired: Vec<String>,
    restarts: u32,
}

/// Uploads the clip to a stack whose worker crashes as `faults` says (and is SIGKILLed after
/// `kill_after`, if given), waits for the job and checks that it healed; an `Err` says how not.
async fn crashing_run(
    label: String,
    source: Arc<PathBuf>,
    reference: Arc<Vec<u64>>,
    faults: String,
    kill_after: Option<Duration>,
) -> Result<Healed, String> {
    crashing_run_with(label, source, reference, faults, kill_after, Vec::new()).await
}

/// [`crashing_run`] with the worker's environment `env` added.
async fn crashing_run_with(
    label: String,
    source: Arc<PathBuf>,
    reference: Arc<Vec<u64>>,
    faults: String,
    kill_after: Option<Duration>,
    env: Vec<(String, String)>,
) -> Result<Healed, String> {
    let stack = Stack::with_worker(
        "crash",
        WorkerSetup {
            faults: faults.clone(),
            visibility_seconds: VISIBILITY_SECONDS,
            restart: true,
            env,
            definition: None,
        },
    )
    .await;
    stack.upload(KEY, &source).await;
    let kill = async {
        if let Some(delay) = kill_after {
            tokio::time::sleep(delay).await;
            stack.kill_worker();
        }
    };
    let ((status, job), ()) = tokio::join!(stack.finished_job(), kill);
    let log = stack.worker_log();
    let fail = |what: String| {
        Err(format!(
            "{label} ({faults}, kill {kill_after:?}): {what}\n--- worker log ---\n{log}"
        ))
    };
    if status != "SUCCEEDED" || job.status != JobStatus::Succeeded {
        return fail(format!(
            "execution {status}, job {:?}: {:?}",
            job.status, job.error
        ));
    }
    if (job.merges_done.len(), job.merge_runs) != (3, 3) {
        return fail(format!(
            "pairs merged {:?}, merge runs {} (each of the 3 pairs must be merged exactly once)",
            job.merges_done, job.merge_runs
        ));
    }
    // The record counts merges; the log shows each file being written, so a merge redone by a
    // retry (instead of found finished) shows here even when its first run died unrecorded.
    let mut writes = std::collections::BTreeMap::<&str, u32>::new();
    for line in log
        .lines()
        .filter(|l| l.contains("merge: merge file written"))
    {
        if let Some(node) = common::stack::field(line, "node") {
            *writes.entry(node).or_default() += 1;
        }
    }
    if writes.is_empty() {
        return fail("no merge file write logged: the check below would see nothing".into());
    }
    if writes.values().any(|&n| n > 1) {
        return fail(format!("merge files written more than once: {writes:?}"));
    }
    if job.segments_done.len() != 4 {
        return fail(format!(
            "segments recorded: {:?} in {job:?}",
            job.segments_done
        ));
    }
    let outputs = stack.output_keys().await;
    if outputs != [OUTPUT_KEY] {
        return fail(format!("output objects {outputs:?}"));
    }
    let frames = decoded_frame_hashes(&stack.download(OUTPUT_KEY).await)
        .map_err(|e| format!("{label}: decoding the output: {e}"))?;
    if frames != *reference {
        let differing = (0..frames.len().max(reference.len()))
            .filter(|&i| frames.get(i) != reference.get(i))
            .count();
        return fail(format!(
            "{differing} of {} decoded frames differ from the fault-free run",
            reference.len()
        ));
    }
    let left = stack.scratch_files().await;
    if !left.is_empty() {
        return fail(format!("scratch files left: {left:?}"));
    }
    assert_no_secrets(&log);
    Ok(Healed {
        fired: fired_crashes(&log),
        restarts: stack.worker_restarts(),
    })
}

/// Awaits `runs` (one per crash point of `points`): each healed with one new worker, and the
/// crashes that fired are exactly `points`, each once.
async fn assert_each_crashed_once_at_its_point(
    mut runs: JoinSet<Result<Healed, String>>,
    points: &[&str],
) {
    let mut fired = Vec::new();
    while let Some(outcome) = runs.join_next().await {
        let healed = outcome.expect("run").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            healed.restarts, 1,
            "{:?}: one new worker took over",
            healed.fired
        );
        fired.extend(healed.fired);
    }
    fired.sort();
    let mut expected: Vec<String> = points.iter().map(|p| p.to_string()).collect();
    expected.sort();
    assert_eq!(fired, expected, "each run crashed once, at its own point");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_at_each_point_heals_to_the_same_frames() {
    if !stack_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip(dir.path());
    let reference = fault_free_frames(&source).await;
    let points = [
        "before-encode:1",
        "mid-encode:2:5",
        "after-segment:0",
        "after-confirm:3",
        "after-merge:0",
        "after-merge:2",
    ];
    let (source, reference) = (Arc::new(source), Arc::new(reference));
    let mut runs = JoinSet::new();
    for point in points {
        runs.spawn(crashing_run(
            point.to_owned(),
            source.clone(),
            reference.clone(),
            format!("crash:{point}"),
            None,
        ));
    }
    assert_each_crashed_once_at_its_point(runs, &points).await;
}

/// The output uploaded by parts (a lossless encode of a noisy 640x360 clip: four 8 MiB parts, so
/// upload-parts runs beside merge-audio's part 1): a worker dying after a part's upload and
/// before its ETag is recorded, or just after, heals; the completion uses the last recorded
/// ETags (S3 refuses a completion whose ETags do not match its parts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_inside_upload_parts_heals_to_the_same_frames() {
    if !stack_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip_of_size(dir.path(), "640x360", true);
    let env: Vec<(String, String)> = [("TREEMUX_CRF", "0"), ("TREEMUX_PRESET", "ultrafast")]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let reference = fault_free_frames_with(&source, env.clone()).await;
    // Part 1 is merge-audio's, parts 2 and 3 upload-parts tasks'.
    let points = [
        "after-part-upload:1",
        "after-part-record:1",
        "after-part-upload:2",
        "after-part-record:3",
    ];
    let (source, reference) = (Arc::new(source), Arc::new(reference));
    let mut runs = JoinSet::new();
    for point in points {
        runs.spawn(crashing_run_with(
            point.to_owned(),
            source.clone(),
            reference.clone(),
            format!("crash:{point}"),
            None,
            env.clone(),
        ));
    }
    assert_each_crashed_once_at_its_point(runs, &points).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_random_crashes_heal() {
    if !stack_available() {
        return;
    }
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (runs, parallel, first_seed) = (
        env("TREEMUX_STACK_CRASH_RUNS", 10),
        env("TREEMUX_STACK_CRASH_PARALLEL", 10).max(1),
        env("TREEMUX_STACK_CRASH_SEED", 1),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip(dir.path());
    let reference = fault_free_frames(&source).await;
    let (source, reference) = (Arc::new(source), Arc::new(reference));
    let mut seeds = first_seed..first_seed + runs;
    let mut failures = Vec::new();
    let mut fired_kinds = std::collections::BTreeMap::<String, u32>::new();
    let (mut kills, mut restarts) = (0, 0);
    // A sliding window of `parallel` runs: most of a run is waiting for a dead worker's
    // messages to come back, not using the CPU.
    let mut running = JoinSet::new();
    loop {
        while running.len() < parallel as usize {
            let Some(seed) = seeds.next() else { break };
            let (faults, kill_after) = random_faults(seed);
            kills += u32::from(kill_after.is_some());
            running.spawn(crashing_run(
                format!("seed {seed}"),
                source.clone(),
                reference.clone(),
                faults,
                kill_after,
            ));
        }
        let Some(outcome) = running.join_next().await else {
            break;
        };
        match outcome.expect("run") {
            Ok(healed) => {
                restarts += healed.restarts;
                for point in healed.fired {
                    let kind = point.split(':').next().unwrap_or_default().to_owned();
                    *fired_kinds.entry(kind).or_default() += 1;
                }
            }
            Err(failure) => failures.push(failure),
        }
    }
    println!(
        "{runs} seeded runs from seed {first_seed}: crashes fired {fired_kinds:?}, {kills} SIGKILLs, {restarts} worker restarts, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    if runs >= 50 {
        for kind in [
            "before-encode",
            "mid-encode",
            "after-segment",
            "after-confirm",
            "after-merge",
            "after-part-upload",
            "after-part-record",
        ] {
            assert!(
                fired_kinds.get(kind).is_some_and(|&n| n > 0),
                "no run crashed at {kind}: {fired_kinds:?}"
            );
        }
    }
}

/// One or two crash points for seed `seed`, and sometimes a SIGKILL at a random moment.
fn random_faults(seed: u64) -> (String, Option<Duration>) {
    let mut rng = Rng(seed);
    let mut faults = Vec::new();
    for _ in 0..1 + rng.below(2) {
        let segment = rng.below(4);
        faults.push(match rng.below(7) {
            0 => format!("crash:before-encode:{segment}"),
            1 => format!("crash:mid-encode:{segment}:{}", 1 + rng.below(24)),
            2 => format!("crash:after-segment:{segment}"),
            3 => format!("crash:after-confirm:{segment}"),
            // The small clip's output is one part, merge-audio's.
            4 => "crash:after-part-upload:1".to_owned(),
            5 => "crash:after-part-record:1".to_owned(),
            _ => format!("crash:after-merge:{}", rng.below(3)),
        });
    }
    let kill = (rng.below(3) == 0).then(|| Duration::from_millis(300 + rng.below(3_700)));
    (faults.join(","), kill)
}
