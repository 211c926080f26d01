//! The planner's table and property tests: keyframe snapping, lead-in, fallbacks, the automatic
//! count, encode order, balance by cost; every frame in exactly one segment for any input.

use super::*;
use proptest::prelude::*;

const TB: TimeBase = TimeBase { num: 1, den: 30 };

fn frames_with_keys(count: usize, keys: &[usize]) -> Vec<FrameInfo> {
    (0..count)
        .map(|i| FrameInfo {
            pts: i as i64,
            dts: Some(i as i64),
            key: keys.contains(&i),
        })
        .collect()
}

fn options(exact: u32) -> PlanOptions {
    PlanOptions {
        exact_segments: Some(exact),
        ..PlanOptions::default()
    }
}

#[test]
fn cuts_snap_to_nearby_keyframes() {
    let frames = frames_with_keys(100, &[0, 24, 49, 76]);
    let plan = plan_segments(&frames, TB, 100.0 / 30.0, &options(4)).expect("plan");
    let starts: Vec<_> = plan.segments.iter().map(|s| s.start_pts).collect();
    assert_eq!(starts, vec![None, Some(24), Some(49), Some(76)]);
    assert!(plan.segments.iter().all(|s| s.lead_in_frames == 0));
}

#[test]
fn single_keyframe_source_cuts_between_keyframes_with_lead_in() {
    let frames = frames_with_keys(120, &[0]);
    let plan = plan_segments(&frames, TB, 4.0, &options(2)).expect("plan");
    assert_eq!(plan.segments.len(), 2);
    assert_eq!(plan.segments[1].start_pts, Some(60));
    assert_eq!(plan.segments[1].lead_in_frames, 60);
    assert_eq!(
        plan.segments[1].decode_from,
        Some(SeekPoint {
            pts: 0,
            dts: Some(0)
        })
    );
}

#[test]
fn lead_in_bound_falls_back_to_fewer_segments() {
    // One keyframe: segment k of S has lead-in k·N/S and length N/S, so the ratio is k ≤ S−1.
    let frames = frames_with_keys(800, &[0]);
    let plan = plan_segments(&frames, TB, 800.0 / 30.0, &options(8)).expect("plan");
    assert_eq!(plan.segments.len(), 4, "ratio 3 allows S−1 ≤ 3");
    let strict = PlanOptions {
        max_lead_in_ratio: 0.0,
        ..options(8)
    };
    assert_eq!(
        plan_segments(&frames, TB, 800.0 / 30.0, &strict)
            .expect("plan")
            .segments
            .len(),
        1
    );
}

#[test]
fn automatic_count_is_a_multiple_of_the_workers() {
    let frames = frames_with_keys(500, &[0, 50, 100, 150, 200, 250, 300, 350, 400, 450]);
    let balanced = |workers: u32, seconds: f64| {
        let options = PlanOptions {
            max_segments: 4 * workers,
            balance_over: workers,
            ..PlanOptions::default()
        };
        plan_segments(&frames, TB, seconds, &options)
            .expect("plan")
            .segments
            .len()
    };
    // 20 s allows 5 segments of 4 s; two workers get 4, not 2 + 2 + a lone fifth.
    assert_eq!(balanced(2, 20.0), 4);
    assert_eq!(balanced(3, 20.0), 3);
    // Fewer possible segments than workers: as many as possible.
    assert_eq!(balanced(4, 12.0), 3);
    assert_eq!(
        balanced(1, 20.0),
        4,
        "one worker: capped at 4 by max_segments"
    );
}

#[test]
fn automatic_count_respects_minimum_length_and_maximum() {
    let frames = frames_with_keys(300, &[0, 30, 60, 90, 120, 150, 180, 210, 240, 270]);
    let auto = PlanOptions {
        max_segments: 16,
        min_segment_seconds: 4.0,
        ..PlanOptions::default()
    };
    // 10 s of video, at least 4 s each: 2 segments.
    assert_eq!(
        plan_segments(&frames, TB, 10.0, &auto)
            .expect("plan")
            .segments
            .len(),
        2
    );
    let capped = PlanOptions {
        max_segments: 1,
        ..auto
    };
    assert_eq!(
        plan_segments(&frames, TB, 10.0, &capped)
            .expect("plan")
            .segments
            .len(),
        1
    );
}

#[test]
fn empty_input_and_zero_segments_are_errors() {
    assert_eq!(
        plan_segments(&[], TB, 0.0, &PlanOptions::default()),
        Err(PlanError::NoFrames)
    );
    let frames = frames_with_keys(10, &[0]);
    assert!(matches!(
        plan_segments(&frames, TB, 1.0, &options(0)),
        Err(PlanError::InvalidOptions(_))
    ));
}

#[test]
fn encode_order_puts_the_longest_segment_first() {
    let frames = frames_with_keys(100, &[0, 10, 50]);
    let snap_wide = PlanOptions {
        keyframe_snap: 1.0,
        ..options(3)
    };
    let plan = plan_segments(&frames, TB, 100.0 / 30.0, &snap_wide).expect("plan");
    let order = plan.encode_order();
    let longest = plan
        .segments
        .iter()
        .max_by_key(|s| s.frames)
        .expect("segments");
    assert_eq!(order[0], longest.index);
}

#[test]
fn a_busy_stretch_gets_shorter_segments() {
    // 300 frames, keyframes every 30; the middle third carries 4× the bytes of the rest.
    let frames = frames_with_keys(300, &(0..300).step_by(30).collect::<Vec<_>>());
    let bytes: Vec<u64> = (0..300)
        .map(|i| if (100..200).contains(&i) { 4000 } else { 1000 })
        .collect();
    let costs = estimate_frame_costs(&frames, &bytes).expect("costs");
    let plan = plan_segments_by_cost(&frames, Some(&costs), TB, 10.0, &options(3)).expect("plan");
    let lengths: Vec<u64> = plan.segments.iter().map(|s| s.frames).collect();
    assert_eq!(lengths.iter().sum::<u64>(), 300);
    assert!(
        lengths[1] < 100 && lengths[0] > 100 && lengths[2] > 100,
        "{lengths:?}"
    );
    let range = |costs: &[u64]| {
        let most = costs.iter().max().expect("segments");
        let least = costs.iter().min().expect("segments");
        most - least
    };
    let spread = |plan: &SegmentPlan| {
        range(
            &plan
                .segments
                .iter()
                .map(|s| s.encode_cost)
                .collect::<Vec<_>>(),
        )
    };
    let by_count = plan_segments(&frames, TB, 10.0, &options(3)).expect("plan");
    let by_count_costs: Vec<u64> = {
        let mut first = 0;
        by_count
            .segments
            .iter()
            .map(|s| {
                let sum: u64 = costs[first..first + s.frames as usize].iter().sum();
                first += s.frames as usize;
                sum
            })
            .collect()
    };
    let by_count_spread = range(&by_count_costs);
    assert!(
        spread(&plan) * 4 < by_count_spread,
        "cost-balanced spread {} against {by_count_spread} by count",
        spread(&plan)
    );
    // Total cost in units of an average frame: 300 frames.
    let total: u64 = plan.segments.iter().map(|s| s.encode_cost).sum();
    assert!(total.abs_diff(300 * FRAME_COST_UNIT) <= 3, "{total}");
}

#[test]
fn with_two_segments_per_worker_the_last_ones_shrink_and_are_encoded_last() {
    let frames = frames_with_keys(800, &(0..800).collect::<Vec<_>>());
    let costs = vec![FRAME_COST_UNIT; 800];
    let options = PlanOptions {
        balance_over: 2,
        ..options(8)
    };
    let plan = plan_segments_by_cost(&frames, Some(&costs), TB, 30.0, &options).expect("plan");
    let lengths: Vec<u64> = plan.segments.iter().map(|s| s.frames).collect();
    // Shares 1, 1, 1, 1, 1/2, 1/4, 1/8, 1/16: 79/16 in all (cuts rounded to whole frames).
    let unit = 800.0 * 16.0 / 79.0;
    let expected = [1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125, 0.0625].map(|share| share * unit);
    assert!(
        lengths
            .iter()
            .zip(expected)
            .all(|(&n, want)| (n as f64 - want).abs() < 1.5),
        "{lengths:?} against {expected:?}"
    );
    let order = plan.encode_order();
    assert_eq!(
        &order[4..],
        [4, 5, 6, 7],
        "the shrinking segments end the run"
    );
    // Three workers over nine segments: the last six shrink by two thirds each time.
    let three = plan_segments_by_cost(
        &frames,
        Some(&costs),
        TB,
        30.0,
        &PlanOptions {
            balance_over: 3,
            ..self::options(9)
        },
    )
    .expect("plan");
    let three: Vec<u64> = three.segments.iter().map(|s| s.frames).collect();
    assert!(
        three[..3].iter().all(|&n| n.abs_diff(three[0]) <= 1),
        "{three:?}"
    );
    assert!(three[2..].windows(2).all(|w| w[1] < w[0]), "{three:?}");
    // Fewer than two segments per worker, or one worker: equal shares.
    let equal = |options: PlanOptions| {
        let plan = plan_segments_by_cost(&frames, Some(&costs), TB, 30.0, &options).expect("plan");
        plan.segments.iter().map(|s| s.frames).collect::<Vec<_>>()
    };
    assert_eq!(
        equal(PlanOptions {
            balance_over: 5,
            ..options
        }),
        [100; 8]
    );
    assert_eq!(
        equal(PlanOptions {
            balance_over: 1,
            ..options
        }),
        [100; 8]
    );
}

#[test]
fn frame_costs_discount_keyframes_and_keep_a_per_frame_share() {
    // A group of a 9000-byte keyframe and three 1000-byte frames, then an all-intra run.
    let frames = frames_with_keys(6, &[0, 4, 5]);
    let bytes = [9000, 1000, 1000, 1000, 3000, 3000];
    let costs = estimate_frame_costs(&frames, &bytes).expect("costs");
    // The keyframe costs as its group's other frames; the intra frames as themselves.
    assert_eq!(costs[0], costs[1]);
    assert!(costs[4] > costs[1] && costs[4] == costs[5]);
    // The per-frame share: three times the bytes is less than three times the cost.
    assert!(costs[4] < 3 * costs[1]);
    let mean = costs.iter().sum::<u64>() as f64 / costs.len() as f64;
    assert!((mean - FRAME_COST_UNIT as f64).abs() < 1.0, "{mean}");
    assert_eq!(estimate_frame_costs(&frames, &bytes[..5]), None);
    assert_eq!(estimate_frame_costs(&frames, &[0; 6]), None);
}

fn arbitrary_frames() -> impl Strategy<Value = Vec<FrameInfo>> {
    // Strictly or weakly increasing timestamps with arbitrary keyframe flags.
    prop::collection::vec((0i64..4, any::<bool>()), 1..400).prop_map(|steps| {
        let mut pts = -7;
        steps
            .into_iter()
            .enumerate()
            .map(|(i, (step, key))| {
                pts += step;
                FrameInfo {
                    pts,
                    dts: None,
                    key: key || i == 0,
                }
            })
            .collect()
    })
}

/// Frames as [`arbitrary_frames`] and, sometimes, one cost per frame: mostly moderate,
/// some zero, a few a hundred times the rest (a scene cut's burst of bytes).
fn arbitrary_frames_and_costs() -> impl Strategy<Value = (Vec<FrameInfo>, Option<Vec<u64>>)> {
    arbitrary_frames().prop_flat_map(|frames| {
        let cost = prop_oneof![8 => 1u64..2000, 1 => Just(0u64), 1 => 50_000u64..200_000];
        let costs = prop::option::of(prop::collection::vec(cost, frames.len()));
        (Just(frames), costs)
    })
}

proptest! {
    /// Where every frame can start a segment (all keyframes, distinct timestamps, no snap),
    /// each segment's cost is within one frame's cost of the ideal share: the cuts follow the
    /// running cost, not the frame count. Frames here cost at most half a segment.
    #[test]
    fn segments_are_balanced_by_cost(
        costs in prop::collection::vec(1u64..5000, 40..400),
        exact in 1u32..10,
    ) {
        let frames: Vec<FrameInfo> = (0..costs.len())
            .map(|i| FrameInfo { pts: i as i64, dts: Some(i as i64), key: true })
            .collect();
        let total: u64 = costs.iter().sum();
        let largest = *costs.iter().max().expect("costs");
        prop_assume!(largest * 2 * u64::from(exact) <= total);
        let options = PlanOptions { exact_segments: Some(exact), keyframe_snap: 0.0, ..PlanOptions::default() };
        let plan = plan_segments_by_cost(&frames, Some(&costs), TB, 100.0, &options).expect("plan");
        prop_assert_eq!(plan.segments.len(), exact as usize);
        let ideal = total as f64 / f64::from(exact);
        let mut first = 0usize;
        for segment in &plan.segments {
            let cost: u64 = costs[first..first + segment.frames as usize].iter().sum();
            prop_assert!((cost as f64 - ideal).abs() <= largest as f64, "segment {} costs {} of ideal {}", segment.index, cost, ideal);
            first += segment.frames as usize;
        }
        // Constant costs are frame-count balance, exactly.
        let constant = vec![FRAME_COST_UNIT; frames.len()];
        prop_assert_eq!(
            plan_segments_by_cost(&frames, Some(&constant), TB, 100.0, &options),
            plan_segments(&frames, TB, 100.0, &options)
        );
    }

    #[test]
    fn every_frame_lands_in_exactly_one_segment(
        (frames, costs) in arbitrary_frames_and_costs(),
        exact in 1u32..40,
        ratio in 0.0f64..5.0,
        snap in 0.0f64..0.5,
    ) {
        let options = PlanOptions { exact_segments: Some(exact), max_lead_in_ratio: ratio, keyframe_snap: snap, ..PlanOptions::default() };
        let duration = frames.len() as f64 / 30.0;
        let plan = plan_segments_by_cost(&frames, costs.as_deref(), TB, duration, &options).expect("plan");
        prop_assert!(!plan.segments.is_empty() && plan.segments.len() <= exact as usize);
        let by_count = plan_segments(&frames, TB, duration, &options).expect("plan");
        prop_assert!(plan.segments.len() >= by_count.segments.len(), "costs never cost segments");
        for frame in &frames {
            let owners = plan.segments.iter().filter(|s| s.contains(frame.pts)).count();
            prop_assert_eq!(owners, 1, "frame pts {} owned by {} segments", frame.pts, owners);
        }
        let counted: u64 = plan.segments.iter().map(|s| s.frames).sum();
        prop_assert_eq!(counted, frames.len() as u64);
        for segment in &plan.segments {
            let inside = frames.iter().filter(|f| segment.contains(f.pts)).count() as u64;
            prop_assert_eq!(inside, segment.frames);
            prop_assert!(segment.frames > 0);
            prop_assert!(segment.lead_in_frames as f64 <= ratio * segment.frames as f64);
            if let (Some(seek), Some(start)) = (segment.decode_from, segment.start_pts) {
                prop_assert!(seek.pts <= start, "decoding starts at or before the cut");
            }
        }
        for pair in plan.segments.windows(2) {
            prop_assert_eq!(pair[0].end_pts, pair[1].start_pts, "segments are contiguous");
        }
        let mut order = plan.encode_order();
        order.sort_unstable();
        prop_assert_eq!(order, (0..plan.segments.len() as u32).collect::<Vec<_>>());
    }
}
