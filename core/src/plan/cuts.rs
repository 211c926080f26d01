//! The cuts for one segment count: each at its share of the running cost, snapped to a nearby
//! keyframe or decoded from the one before it within the lead-in bound.

use super::cost::nearest_cut;
use super::{FrameInfo, PlanOptions, SeekPoint, Segment, FRAME_COST_UNIT};
/// Tries to cut `frames` into one segment per share of the running cost (`shares`, relative);
/// `None` when the cuts violate the lead-in bound or cannot be placed on distinct timestamps.
pub(super) fn try_cuts(
    frames: &[FrameInfo],
    keyframes: &[usize],
    running: &[u128],
    shares: &[f64],
    options: &PlanOptions,
) -> Option<Vec<Segment>> {
    let count = shares.len();
    let total = frames.len();
    let total_cost = *running.last()? as f64;
    let share_cost = total_cost / shares.iter().sum::<f64>();
    let tolerance = total_cost / count as f64 * options.keyframe_snap;
    // Costs are in units of the running sums; a segment's cost is reported in FRAME_COST_UNITs
    // of an average frame.
    let unit = FRAME_COST_UNIT as f64 * total as f64 / total_cost;
    let mut starts = vec![0usize];
    // Shares are halves and wholes, so their running sum is exact.
    let mut shares_before = 0.0;
    for k in 1..count {
        let previous = *starts.last()?;
        shares_before += shares[k - 1];
        let target = shares_before * share_cost;
        let ideal = nearest_cut(running, target).min(total - 1);
        let snapped =
            nearest_keyframe(keyframes, running, target, tolerance).filter(|&key| key > previous);
        let mut cut = snapped.unwrap_or(ideal).max(previous + 1);
        // Two frames with the same timestamp cannot be separated by a pts range.
        while cut < total && frames[cut].pts == frames[cut - 1].pts {
            cut += 1;
        }
        if cut >= total {
            return None;
        }
        starts.push(cut);
    }

    let mut segments = Vec::with_capacity(count);
    for (index, &start) in starts.iter().enumerate() {
        let end = starts.get(index + 1).copied().unwrap_or(total);
        let length = (end - start) as u64;
        let (decode_from, lead_in) = if index == 0 {
            (None, 0)
        } else {
            match keyframe_at_or_before(keyframes, start) {
                Some(key) => (
                    Some(SeekPoint {
                        pts: frames[key].pts,
                        dts: frames[key].dts,
                    }),
                    (start - key) as u64,
                ),
                None => (None, start as u64),
            }
        };
        if lead_in as f64 > options.max_lead_in_ratio * length as f64 {
            return None;
        }
        segments.push(Segment {
            index: index as u32,
            start_pts: (index > 0).then(|| frames[start].pts),
            end_pts: starts.get(index + 1).map(|&next| frames[next].pts),
            decode_from,
            frames: length,
            lead_in_frames: lead_in,
            encode_cost: ((running[end] - running[start]) as f64 * unit).round() as u64,
        });
    }
    Some(segments)
}

/// The keyframe index whose running cost is closest to `target`, within `tolerance` of it,
/// preferring the earlier one on a tie. `keyframes` is sorted; `running` as [`running_costs`].
fn nearest_keyframe(
    keyframes: &[usize],
    running: &[u128],
    target: f64,
    tolerance: f64,
) -> Option<usize> {
    let after = keyframes.partition_point(|&key| (running[key] as f64) < target);
    let candidates = [
        after.checked_sub(1).map(|i| keyframes[i]),
        keyframes.get(after).copied(),
    ];
    let distance = |key: usize| (running[key] as f64 - target).abs();
    candidates
        .into_iter()
        .flatten()
        .filter(|&key| distance(key) <= tolerance)
        .min_by(|&a, &b| distance(a).total_cmp(&distance(b)).then(a.cmp(&b)))
}

/// The last keyframe index at or before `index`. `keyframes` is sorted.
fn keyframe_at_or_before(keyframes: &[usize], index: usize) -> Option<usize> {
    let after = keyframes.partition_point(|&key| key <= index);
    after.checked_sub(1).map(|i| keyframes[i])
}
