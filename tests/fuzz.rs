//! Fuzzing at scale: the planner, the merge-tree protocol and the probe path on random and
//! mutated inputs. Nothing may panic, hang or break an invariant.
//!
//! `cargo test` runs a fixed number of iterations per target from fixed seeds, so every machine
//! tests the same inputs (`TREEMUX_FUZZ_ITERATIONS=N` changes the count). A real session is bounded
//! by time instead, 10 minutes per target:
//!
//! ```sh
//! TREEMUX_FUZZ_SECONDS=600 cargo test --release --test fuzz -- --nocapture --test-threads 1
//! ```
//!
//! Each iteration's seed is printed when it fails; `TREEMUX_FUZZ_SEED=N` replays from N. The probe
//! target's seed files are the bundled samples (samples/) plus tests/fuzz-seeds/.

mod common;

use common::rng::Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use treemux_core::plan::{plan_segments, FrameInfo, PlanOptions, TimeBase};
use treemux_core::state::{InMemoryStateStore, StateStore};
use treemux_core::steps::{after_node_finished, mark_merged, NextStep};
use treemux_core::tree::{MergeKind, MergeTree};

/// How long a fuzz target runs: a fixed iteration count (the default, the same inputs on every
/// machine) or a time budget (`TREEMUX_FUZZ_SECONDS`, for soaks).
enum Bound {
    Iterations(u64),
    Time(Duration),
}

impl Bound {
    fn from_env(default_iterations: u64) -> Self {
        let var = |name: &str| std::env::var(name).ok();
        if let Some(seconds) = var("TREEMUX_FUZZ_SECONDS").and_then(|v| v.parse::<f64>().ok()) {
            return Self::Time(Duration::from_secs_f64(seconds));
        }
        Self::Iterations(
            var("TREEMUX_FUZZ_ITERATIONS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(default_iterations),
        )
    }

    fn more(&self, started: Instant, done: u64) -> bool {
        match self {
            Self::Iterations(count) => done < *count,
            Self::Time(budget) => done == 0 || started.elapsed() < *budget,
        }
    }
}

fn first_seed() -> u64 {
    std::env::var("TREEMUX_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Runs `iteration(seed)` with increasing seeds, `default_iterations` of them unless the
/// environment asks otherwise (see [`Bound`]).
fn fuzz(name: &str, default_iterations: u64, mut iteration: impl FnMut(u64)) {
    let bound = Bound::from_env(default_iterations);
    let started = Instant::now();
    let mut seed = first_seed();
    let mut count = 0u64;
    while bound.more(started, count) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| iteration(seed)));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("{name}: seed {seed} failed (replay with TREEMUX_FUZZ_SEED={seed}): {message}");
        }
        seed += 1;
        count += 1;
    }
    println!(
        "fuzz {name}: {count} iterations in {:.1} s, no failure",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn planner() {
    let mut planned = 0u64;
    fuzz("planner", 500, |seed| {
        let mut rng = Rng(seed);
        let limit = if rng.chance(5) { 20_000 } else { 600 };
        let frames = rng.below(limit) as usize;
        let mut pts = rng.below(1000) as i64 - 500;
        let step = 1 + rng.below(4000) as i64;
        let gop = 1 + rng.below(300);
        let mut list = Vec::with_capacity(frames);
        for index in 0..frames {
            // Steps vary (VFR), repeat (equal pts) or jump; keyframes are regular, random or absent.
            pts += match rng.below(10) {
                0 => 0,
                1 => step * (1 + rng.below(50) as i64),
                _ => step,
            };
            let key = match seed % 3 {
                0 => index as u64 % gop == 0,
                1 => rng.chance(3),
                _ => index == 0 && rng.chance(50),
            };
            list.push(FrameInfo {
                pts,
                dts: rng.chance(80).then_some(pts - step),
                key,
            });
        }
        let time_base = TimeBase {
            num: 1,
            den: [25, 1000, 90_000, 1_000_000, 1][rng.below(5) as usize],
        };
        let options = PlanOptions {
            max_segments: rng.below(2048) as u32,
            exact_segments: rng.chance(40).then(|| rng.below(2000) as u32),
            min_segment_seconds: [0.0, 0.5, 4.0, 1e9][rng.below(4) as usize],
            max_lead_in_ratio: [0.0, 1.0, 3.0, 1e6][rng.below(4) as usize],
            keyframe_snap: [0.0, 0.05, 0.5, 10.0][rng.below(4) as usize],
            balance_over: rng.below(9) as u32,
        };
        let duration = rng.below(100_000) as f64 / 10.0;
        let Ok(plan) = plan_segments(&list, time_base, duration, &options) else {
            return;
        };
        planned += 1;
        // Every frame in exactly one segment, in order.
        let total: u64 = plan.segments.iter().map(|s| s.frames).sum();
        assert_eq!(total, frames as u64, "frames lost or duplicated");
        for pair in plan.segments.windows(2) {
            assert_eq!(
                pair[0].end_pts, pair[1].start_pts,
                "segments not contiguous"
            );
        }
        assert!(!plan.segments.is_empty());
        assert!(
            plan.segments.len() <= options.max_segments.max(1) as usize
                || options.exact_segments.is_some()
        );
    });
    assert!(
        planned > 0,
        "no input was ever planned: the generator is broken"
    );
    println!("fuzz planner: {planned} plans checked");
}

#[test]
fn merge_tree_protocol() {
    fuzz("merge tree", 2000, |seed| {
        let mut rng = Rng(seed);
        let limit = if rng.chance(5) { 4096 } else { 70 };
        let real = 1 + rng.below(limit) as u32;
        let tree = MergeTree::new(real);
        let store = InMemoryStateStore::new();
        let mut merges: BTreeMap<String, u32> = BTreeMap::new();
        pollster::block_on(async {
            store.create_pairs("job", &tree).await.expect("create");
            // Leaves finish in a random order; some tasks are delivered twice, and some crash
            // after merging but before marking (so they run again).
            let mut pending: Vec<treemux_core::tree::NodeId> =
                (0..real).map(treemux_core::tree::NodeId::leaf).collect();
            let mut roots = 0;
            while !pending.is_empty() {
                let pick = rng.below(pending.len() as u64) as usize;
                let finished = if rng.chance(10) {
                    pending[pick]
                } else {
                    pending.swap_remove(pick)
                };
                match after_node_finished(&store, "job", &tree, finished)
                    .await
                    .expect("step")
                {
                    NextStep::Merge { node, child } => {
                        *merges.entry(node.to_string()).or_default() += 1;
                        if rng.chance(5) {
                            // Crashed before marking: the same task comes back.
                            *merges.entry(node.to_string()).or_default() -= 1;
                            pending.push(finished);
                            continue;
                        }
                        mark_merged(&store, "job", node, child).await.expect("mark");
                        pending.push(node);
                    }
                    NextStep::MergeAudio => roots += 1,
                    NextStep::Done => {}
                }
            }
            assert!(roots >= 1, "the root was never reached");
        });
        assert!(
            merges.values().all(|&n| n == 1),
            "a pair merged twice or never: {merges:?}"
        );
        let placeholder_pairs = tree
            .internal_nodes()
            .filter(|&node| tree.merge_kind(node) == MergeKind::Placeholder)
            .count();
        assert_eq!(
            merges.len() + placeholder_pairs,
            tree.leaf_count() as usize - 1,
            "every pair completed"
        );
    });
}

fn seed_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [root.join("samples"), root.join("tests/fuzz-seeds")] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let small = path
                    .metadata()
                    .is_ok_and(|m| m.is_file() && m.len() < 2_000_000);
                if small && path.extension().is_some_and(|e| e != "md") {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    files
}

#[test]
fn probe_on_mutated_files() {
    let seeds: Vec<(PathBuf, Vec<u8>)> = seed_files()
        .into_iter()
        .filter_map(|path| std::fs::read(&path).ok().map(|bytes| (path, bytes)))
        .collect();
    assert!(!seeds.is_empty(), "no seed files");
    let dir = tempfile::tempdir().expect("temp dir");
    fuzz("probe", 150, |seed| {
        let mut rng = Rng(seed);
        let (origin, bytes) = &seeds[rng.below(seeds.len() as u64) as usize];
        let mut data = bytes.clone();
        // Damage concentrated near the start (headers and indexes) half of the time.
        let region = if rng.chance(50) {
            data.len().min(4096)
        } else {
            data.len()
        };
        for _ in 0..1 + rng.below(32) {
            if data.is_empty() {
                break;
            }
            let at = rng.below(region.max(1) as u64) as usize % data.len();
            match rng.below(5) {
                0 => data[at] ^= 1 << rng.below(8),
                1 => data[at] = rng.next() as u8,
                2 => data.truncate(at),
                3 => {
                    let end = (at + 1 + rng.below(256) as usize).min(data.len());
                    data.drain(at..end);
                }
                _ => {
                    let insert: Vec<u8> =
                        (0..1 + rng.below(64)).map(|_| rng.next() as u8).collect();
                    data.splice(at..at, insert);
                }
            }
        }
        let extension = origin
            .extension()
            .map_or("bin".into(), |e| e.to_string_lossy().into_owned());
        let file = dir.path().join(format!("mutant.{extension}"));
        std::fs::write(&file, &data).expect("write");
        // Either a description or a typed error; the plan must accept whatever probe accepted.
        if let Ok(info) = treemux_core::media::probe::probe(&file) {
            let options = PlanOptions {
                max_segments: 8,
                ..PlanOptions::default()
            };
            let _ = plan_segments(
                &info.frames,
                info.video.time_base,
                info.video.duration_seconds(),
                &options,
            );
        }
    });
}
