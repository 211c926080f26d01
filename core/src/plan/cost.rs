//! Encode cost: per-frame estimates from the packets' bytes ([`estimate_frame_costs`]), their
//! running sums, each segment's share, and the frame nearest a running-cost target.

use super::{FrameInfo, PlanOptions, FRAME_COST_UNIT};
/// Each of `count` segments' share of the cost when balancing by cost. Equal, except with at
/// least two segments per worker (`balance_over` workers, at least two): then the last
/// `min(2 × workers, count − workers)` segments shrink geometrically, each `1 − 1/workers` of
/// the one before (two workers: ½, ¼, ⅛, 1/16). Encoded last (cheapest last in
/// [`SegmentPlan::encode_order`]), they end the run, and a worker that finishes early takes the
/// next small one while the others finish theirs: the idle tail is bounded by the last segments'
/// estimate error, not by a whole segment's. Equal shares, or equal half shares one per worker,
/// leave whatever imbalance the estimate made standing (a simulation of list scheduling with a
/// 12% per-segment estimate error: 6% of the wall time idle with half shares for 8 segments on
/// 2 workers, under 2% with this tail).
pub(super) fn cost_shares(count: usize, options: &PlanOptions) -> Vec<f64> {
    let workers = options.balance_over as usize;
    let mut shares = vec![1.0; count];
    if workers >= 2 && count >= 2 * workers {
        let ratio = 1.0 - 1.0 / workers as f64;
        let tail = (2 * workers).min(count - workers);
        let mut share = 1.0;
        for slot in &mut shares[count - tail..] {
            share *= ratio;
            *slot = share;
        }
    }
    shares
}

/// `running[i]` is the cost of the frames before frame `i` (so `running[0] == 0` and the last
/// entry is the total); a cost of 0 counts as 1, so the sums strictly increase.
pub(super) fn running_costs(costs: &[u64]) -> Vec<u128> {
    let mut running = Vec::with_capacity(costs.len() + 1);
    let mut sum = 0u128;
    running.push(0);
    for &cost in costs {
        sum += u128::from(cost.max(1));
        running.push(sum);
    }
    running
}

/// The frame index `i` whose running cost is nearest `target` (the later on a tie, as rounding
/// half up does for uniform costs). `running` strictly increases.
pub(super) fn nearest_cut(running: &[u128], target: f64) -> usize {
    let after = running.partition_point(|&cost| (cost as f64) < target);
    match after.checked_sub(1) {
        Some(before) if after < running.len() => {
            if target - (running[before] as f64) < running[after] as f64 - target {
                before
            } else {
                after
            }
        }
        Some(before) => before,
        None => 0,
    }
}

/// Per-frame encode costs from the source's compressed bytes (`packet_bytes[i]` the size of
/// `frames[i]`'s packet): bytes track content complexity, and encoding also has a per-frame
/// share, which is the average frame's bytes × `FIXED_SHARE`. A keyframe's own size says more
/// about the source's encoder (an intra frame is several times larger) than about its content,
/// so a keyframe costs what the other frames of its group of pictures cost on average (its own
/// size when the group has no other frame: an all-intra source). Returns [`FRAME_COST_UNIT`]s
/// rounded (an average frame ≈ one unit), or `None` without one size per frame or with no
/// bytes at all (then balance by frame count).
pub fn estimate_frame_costs(frames: &[FrameInfo], packet_bytes: &[u64]) -> Option<Vec<u64>> {
    /// The per-frame share of the cost, as a multiple of the average frame's bytes.
    const FIXED_SHARE: f64 = 2.0;
    if frames.len() != packet_bytes.len() || frames.is_empty() {
        return None;
    }
    let mut content: Vec<f64> = packet_bytes.iter().map(|&bytes| bytes as f64).collect();
    // Groups of pictures in presentation order: a keyframe up to the next one.
    let mut group_start = 0;
    for end in (1..=frames.len()).filter(|&i| i == frames.len() || frames[i].key) {
        let group = group_start..end;
        let (sum, count) = group
            .clone()
            .filter(|&i| !frames[i].key)
            .fold((0.0, 0u32), |(sum, count), i| (sum + content[i], count + 1));
        if count > 0 {
            let mean = sum / f64::from(count);
            for i in group.filter(|&i| frames[i].key) {
                content[i] = mean;
            }
        }
        group_start = end;
    }
    let mean = content.iter().sum::<f64>() / content.len() as f64;
    // No bytes at all (or not a number): nothing to weigh by.
    if mean.is_nan() || mean <= 0.0 {
        return None;
    }
    let unit = FRAME_COST_UNIT as f64 / ((1.0 + FIXED_SHARE) * mean);
    Some(
        content
            .iter()
            .map(|bytes| ((FIXED_SHARE * mean + bytes) * unit).round() as u64)
            .collect(),
    )
}
