//! Segment planning: a pure function from the video packet list to a [`SegmentPlan`].
//!
//! No ffmpeg, no clock, no I/O: the probe hands in one [`FrameInfo`] per video packet and the
//! planner decides where to cut. Every timestamp here is in the video stream's own time base
//! ([`TimeBase`]), never rescaled, so a cut point is an exact presentation timestamp.
//!
//! # How cuts are chosen
//! Segments are balanced by **estimated encode cost**: one number per frame (plain data the
//! caller derives from the source, [`estimate_frame_costs`]: a per-frame share plus the frame's
//! compressed bytes, which track content complexity, so a busy scene gets shorter segments than
//! a static one). Without costs every frame costs the same and segments are balanced by frame
//! count (encoding cost is per frame, not per second, which matters for VFR sources). For the
//! `k`-th of `S` cuts the ideal position is the frame where the running cost reaches `k·W/S`
//! (`W` the total). If a keyframe lies within `keyframe_snap × W/S` of it in cost, the cut snaps
//! to that keyframe and the segment decodes independently. Otherwise the cut stays at the ideal
//! frame and the segment *decodes from the keyframe at or before the cut, dropping the earlier
//! frames* (the lead-in). That keeps single-keyframe and long-GOP sources parallel while staying
//! frame exact. A count whose cost-balanced cuts break the lead-in bound is tried balanced by
//! frame count before falling back to fewer segments, so costs never cost parallelism.
//!
//! # The lead-in bound
//! Decoding is at least ten times cheaper than encoding for every encoder treemux ships (x264,
//! x265, libvpx, SVT-AV1 at their default presets), so a worker may decode up to
//! [`PlanOptions::max_lead_in_ratio`] (default 3) times its own segment length in discarded
//! frames: at most about 30% extra work for that worker. A plan that needs more is rejected and
//! the planner falls back to fewer segments (one segment never needs a lead-in).
//!
//! # Where things are
//! The plan's data (`segments`), its options and errors (`options`), the per-frame costs and
//! their running sums (`cost`), the cuts for one segment count (`cuts`); `mod.rs` picks the
//! count. Everything is re-exported here (`treemux_core::plan::X`).

mod cost;
mod cuts;
mod options;
mod segments;

pub use cost::estimate_frame_costs;
pub use options::{PlanError, PlanOptions};
pub use segments::{FrameInfo, SeekPoint, Segment, SegmentPlan, TimeBase, FRAME_COST_UNIT};

use cost::{cost_shares, running_costs};
use cuts::try_cuts;

#[cfg(test)]
mod tests;
/// Plans the segments of a video.
///
/// Preconditions: `frames` is in presentation order (non-decreasing `pts`, stream time base);
/// `duration_seconds` is the video's duration. Every frame lands in exactly one segment: the
/// segments' `[start_pts, end_pts)` ranges are contiguous and together cover every timestamp.
///
/// ```
/// use treemux_core::plan::{plan_segments, FrameInfo, PlanOptions, TimeBase};
///
/// // 100 frames at 25 fps with a keyframe every 25 frames, cut into 4 segments.
/// let frames: Vec<FrameInfo> = (0..100).map(|i| FrameInfo { pts: i, dts: Some(i), key: i % 25 == 0 }).collect();
/// let options = PlanOptions { exact_segments: Some(4), ..PlanOptions::default() };
/// let plan = plan_segments(&frames, TimeBase { num: 1, den: 25 }, 4.0, &options).unwrap();
/// let starts: Vec<Option<i64>> = plan.segments.iter().map(|s| s.start_pts).collect();
/// assert_eq!(starts, [None, Some(25), Some(50), Some(75)]); // every cut on a keyframe
/// assert!(plan.segments.iter().all(|s| s.frames == 25 && s.lead_in_frames == 0));
/// ```
pub fn plan_segments(
    frames: &[FrameInfo],
    time_base: TimeBase,
    duration_seconds: f64,
    options: &PlanOptions,
) -> Result<SegmentPlan, PlanError> {
    plan_segments_by_cost(frames, None, time_base, duration_seconds, options)
}

/// Plans the segments of a video balanced by estimated encode cost: [`plan_segments`] with
/// `frame_costs[i]` the cost of `frames[i]` (any positive unit; a 0 counts as 1), e.g. from
/// [`estimate_frame_costs`]. `None` balances by frame count.
///
/// Preconditions as [`plan_segments`]; `frame_costs`, when given, has one entry per frame
/// (otherwise [`PlanError::InvalidOptions`]). The guarantees are the same (every frame in exactly
/// one segment, the lead-in bound), and the count of segments is never below the frame-balanced
/// plan's.
pub fn plan_segments_by_cost(
    frames: &[FrameInfo],
    frame_costs: Option<&[u64]>,
    time_base: TimeBase,
    duration_seconds: f64,
    options: &PlanOptions,
) -> Result<SegmentPlan, PlanError> {
    debug_assert!(
        frames.windows(2).all(|pair| pair[0].pts <= pair[1].pts),
        "frames must be sorted by pts"
    );
    if frames.is_empty() {
        return Err(PlanError::NoFrames);
    }
    if options.max_segments == 0 || options.exact_segments == Some(0) {
        return Err(PlanError::InvalidOptions(
            "segment count must be at least 1",
        ));
    }
    if !(options.max_lead_in_ratio >= 0.0 && options.keyframe_snap >= 0.0) {
        return Err(PlanError::InvalidOptions("ratios must be non-negative"));
    }
    let frame_count = frames.len() as u64;
    let wanted = wanted_segments(frame_count, duration_seconds, options);

    let keyframes: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, frame)| frame.key)
        .map(|(i, _)| i)
        .collect();
    if frame_costs.is_some_and(|costs| costs.len() != frames.len()) {
        return Err(PlanError::InvalidOptions(
            "frame costs must have one entry per frame",
        ));
    }
    // Units per frame when every frame costs the same.
    let uniform = vec![FRAME_COST_UNIT; frames.len()];
    let running_uniform = running_costs(&uniform);
    let running_given = frame_costs.map(running_costs);
    for count in (1..=wanted).rev() {
        let count = count as usize;
        let equal = vec![1.0; count];
        let by_cost = running_given.as_deref().and_then(|running| {
            try_cuts(
                frames,
                &keyframes,
                running,
                &cost_shares(count, options),
                options,
            )
        });
        if let Some(segments) =
            by_cost.or_else(|| try_cuts(frames, &keyframes, &running_uniform, &equal, options))
        {
            return Ok(SegmentPlan {
                time_base,
                frame_count,
                segments,
            });
        }
    }
    unreachable!("a single segment is always feasible")
}

/// The segment count to try first: the exact count asked for, else the most segments of at least
/// `min_segment_seconds` up to `max_segments`, rounded down to a multiple of `balance_over`
/// workers when there are that many; at least 1 and at most one per frame.
fn wanted_segments(frame_count: u64, duration_seconds: f64, options: &PlanOptions) -> u64 {
    match options.exact_segments {
        Some(exact) => u64::from(exact),
        None => {
            let by_length = if options.min_segment_seconds > 0.0 && duration_seconds.is_finite() {
                (duration_seconds / options.min_segment_seconds)
                    .floor()
                    .max(1.0) as u64
            } else {
                u64::MAX
            };
            let count = u64::from(options.max_segments).min(by_length);
            let multiple = u64::from(options.balance_over.max(1));
            if count >= multiple {
                count - count % multiple
            } else {
                count
            }
        }
    }
    .clamp(1, frame_count)
}
