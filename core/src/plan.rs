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

use serde::{Deserialize, Serialize};

/// A time base: one tick lasts `num / den` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeBase {
    pub num: i32,
    pub den: i32,
}

impl TimeBase {
    /// Seconds in `ticks` ticks of this time base.
    pub fn seconds(self, ticks: i64) -> f64 {
        if self.den == 0 {
            return 0.0;
        }
        ticks as f64 * f64::from(self.num) / f64::from(self.den)
    }
}

/// One video frame as the container describes it, before any decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameInfo {
    /// Presentation timestamp, in the video stream's time base.
    pub pts: i64,
    /// Decoding timestamp in the same time base, when the container gives one.
    pub dts: Option<i64>,
    /// The packet is flagged as a keyframe: decoding can start here.
    pub key: bool,
}

/// Where a segment's decoder starts reading: a keyframe at or before the segment's first frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeekPoint {
    /// The keyframe's presentation timestamp (stream time base).
    pub pts: i64,
    /// The keyframe's decoding timestamp, the value demuxers seek on (stream time base).
    pub dts: Option<i64>,
}

/// One segment: the frames whose presentation timestamps lie in `[start_pts, end_pts)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Position of the segment in presentation order, from 0; also its leaf index in the tree.
    pub index: u32,
    /// First presentation timestamp that belongs here (inclusive). `None` for the first segment:
    /// it takes every frame before the second segment, whatever its timestamp.
    pub start_pts: Option<i64>,
    /// First presentation timestamp that belongs to the next segment (exclusive). `None` for the
    /// last segment.
    pub end_pts: Option<i64>,
    /// Keyframe to seek to before decoding. `None`: decode from the start of the file.
    pub decode_from: Option<SeekPoint>,
    /// Frames in this segment, counted from the container's packets.
    pub frames: u64,
    /// Frames decoded and dropped before `start_pts` (0 when the cut is on a keyframe).
    pub lead_in_frames: u64,
    /// Estimated encode cost of the segment's own frames, in [`FRAME_COST_UNIT`]s (an average
    /// frame costs one unit). 0 in plans recorded before costs existed: then the frame count
    /// stands in.
    #[serde(default)]
    pub encode_cost: u64,
}

/// What an average frame costs to encode in [`Segment::encode_cost`] (and what every frame
/// costs when no per-frame costs are given). Decoding a lead-in frame costs a tenth of it.
pub const FRAME_COST_UNIT: u64 = 1000;

impl Segment {
    /// True when a frame with presentation timestamp `pts` belongs to this segment.
    pub fn contains(&self, pts: i64) -> bool {
        self.start_pts.is_none_or(|start| pts >= start) && self.end_pts.is_none_or(|end| pts < end)
    }

    /// Relative cost used to order work, in [`FRAME_COST_UNIT`]s: the estimated encode cost of
    /// its frames plus a tenth of a unit per lead-in frame (decoding only).
    pub fn estimated_cost(&self) -> u64 {
        let encode = if self.encode_cost > 0 {
            self.encode_cost
        } else {
            self.frames * FRAME_COST_UNIT
        };
        encode + self.lead_in_frames * (FRAME_COST_UNIT / 10)
    }
}

/// The plan for one job: the real segments in presentation order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentPlan {
    /// Time base of every timestamp in the plan (the source video stream's).
    pub time_base: TimeBase,
    /// Video frames in the source, counted from packets.
    pub frame_count: u64,
    /// Real segments, contiguous and in presentation order. The merge tree pads them with
    /// placeholders up to the next power of two.
    pub segments: Vec<Segment>,
}

impl SegmentPlan {
    /// Segment indices, most expensive first, so the longest work starts first and the tail of the
    /// run is short.
    pub fn encode_order(&self) -> Vec<u32> {
        let mut order: Vec<&Segment> = self.segments.iter().collect();
        order.sort_by(|a, b| {
            b.estimated_cost()
                .cmp(&a.estimated_cost())
                .then(a.index.cmp(&b.index))
        });
        order.iter().map(|segment| segment.index).collect()
    }

    /// The segment a frame with presentation timestamp `pts` belongs to.
    pub fn segment_of(&self, pts: i64) -> Option<&Segment> {
        self.segments.iter().find(|segment| segment.contains(pts))
    }
}

/// How the planner chooses the number of segments and their cuts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanOptions {
    /// Upper bound on segments (at least 1): the parallelism worth using.
    pub max_segments: u32,
    /// Ask for exactly this many segments instead of choosing (still capped by the frame count
    /// and the lead-in bound).
    pub exact_segments: Option<u32>,
    /// Shortest segment worth its own encoder when choosing automatically, in seconds.
    pub min_segment_seconds: f64,
    /// Largest lead-in a segment may decode and drop, as a multiple of its own frame count.
    pub max_lead_in_ratio: f64,
    /// How far from the ideal cut a keyframe may be and still be preferred, as a fraction of the
    /// ideal segment length.
    pub keyframe_snap: f64,
    /// When choosing the count automatically, round it down to a multiple of this (the workers
    /// that will encode the segments) once there are at least this many, so that no worker sits
    /// idle while another encodes a last, lone segment. 1 = no rounding.
    #[serde(default = "one")]
    pub balance_over: u32,
}

fn one() -> u32 {
    1
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            max_segments: 8,
            exact_segments: None,
            min_segment_seconds: 4.0,
            max_lead_in_ratio: 3.0,
            keyframe_snap: 0.05,
            balance_over: 1,
        }
    }
}

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("the video stream has no frames to plan")]
    NoFrames,
    #[error("invalid plan options: {0}")]
    InvalidOptions(&'static str),
}

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
    let wanted = match options.exact_segments {
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
    .clamp(1, frame_count);

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

/// Each of `count` segments' share of the cost when balancing by cost. Equal, except with at
/// least two segments per worker (`balance_over` workers, at least two): then the last
/// `balance_over` segments get half a share. Encoded last (cheapest first is last in
/// [`SegmentPlan::encode_order`]), one per worker, they end the run: an estimate that is off
/// by some share of a segment leaves a worker idle for that share of a half segment.
fn cost_shares(count: usize, options: &PlanOptions) -> Vec<f64> {
    let workers = options.balance_over as usize;
    let mut shares = vec![1.0; count];
    if workers >= 2 && count >= 2 * workers {
        for share in &mut shares[count - workers..] {
            *share = 0.5;
        }
    }
    shares
}

/// `running[i]` is the cost of the frames before frame `i` (so `running[0] == 0` and the last
/// entry is the total); a cost of 0 counts as 1, so the sums strictly increase.
fn running_costs(costs: &[u64]) -> Vec<u128> {
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
fn nearest_cut(running: &[u128], target: f64) -> usize {
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

/// Tries to cut `frames` into one segment per share of the running cost (`shares`, relative);
/// `None` when the cuts violate the lead-in bound or cannot be placed on distinct timestamps.
fn try_cuts(
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

#[cfg(test)]
mod tests {
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
        let plan =
            plan_segments_by_cost(&frames, Some(&costs), TB, 10.0, &options(3)).expect("plan");
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
    fn with_two_segments_per_worker_the_last_ones_are_half_size_and_encoded_last() {
        let frames = frames_with_keys(800, &(0..800).collect::<Vec<_>>());
        let costs = vec![FRAME_COST_UNIT; 800];
        let options = PlanOptions {
            balance_over: 2,
            ..options(8)
        };
        let plan = plan_segments_by_cost(&frames, Some(&costs), TB, 30.0, &options).expect("plan");
        let lengths: Vec<u64> = plan.segments.iter().map(|s| s.frames).collect();
        // 7 shares: six of 800/7 frames, two of half that (cuts rounded to whole frames).
        let (whole, half) = (800.0 / 7.0, 400.0 / 7.0);
        assert!(
            lengths[..6].iter().all(|&n| (n as f64 - whole).abs() < 1.0)
                && lengths[6..].iter().all(|&n| (n as f64 - half).abs() < 1.0),
            "{lengths:?}"
        );
        let order = plan.encode_order();
        assert_eq!(&order[6..], [6, 7], "the half segments end the run");
        // Fewer than two segments per worker, or one worker: equal shares.
        let equal = |options: PlanOptions| {
            let plan =
                plan_segments_by_cost(&frames, Some(&costs), TB, 30.0, &options).expect("plan");
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
}
