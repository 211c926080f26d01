//! Segment planning: a pure function from the video packet list to a [`SegmentPlan`].
//!
//! No ffmpeg, no clock, no I/O: the probe hands in one [`FrameInfo`] per video packet and the
//! planner decides where to cut. Every timestamp here is in the video stream's own time base
//! ([`TimeBase`]), never rescaled, so a cut point is an exact presentation timestamp.
//!
//! # How cuts are chosen
//! Segments are balanced by **frame count** (encoding cost is per frame, not per second, which
//! matters for VFR sources). For the `k`-th of `S` cuts the ideal position is frame `k·N/S`.
//! If a keyframe lies within `keyframe_snap × N/S` frames of it, the cut snaps to that keyframe
//! and the segment decodes independently. Otherwise the cut stays at the ideal frame and the
//! segment *decodes from the keyframe at or before the cut, dropping the earlier frames* (the
//! lead-in). That keeps single-keyframe and long-GOP sources parallel while staying frame exact.
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
}

impl Segment {
    /// True when a frame with presentation timestamp `pts` belongs to this segment.
    pub fn contains(&self, pts: i64) -> bool {
        self.start_pts.is_none_or(|start| pts >= start) && self.end_pts.is_none_or(|end| pts < end)
    }

    /// Relative encoding cost used to order work: one unit per encoded frame plus a tenth per
    /// lead-in frame (decoding only).
    pub fn estimated_cost(&self) -> u64 {
        self.frames * 10 + self.lead_in_frames
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
    for count in (1..=wanted).rev() {
        if let Some(segments) = try_cuts(frames, &keyframes, count as usize, options) {
            return Ok(SegmentPlan {
                time_base,
                frame_count,
                segments,
            });
        }
    }
    unreachable!("a single segment is always feasible")
}

/// Tries to cut `frames` into `count` segments; `None` when the cuts violate the lead-in bound or
/// cannot be placed on distinct timestamps.
fn try_cuts(
    frames: &[FrameInfo],
    keyframes: &[usize],
    count: usize,
    options: &PlanOptions,
) -> Option<Vec<Segment>> {
    let total = frames.len();
    let ideal_length = total as f64 / count as f64;
    let tolerance = (ideal_length * options.keyframe_snap).floor() as usize;
    let mut starts = vec![0usize];
    for k in 1..count {
        let previous = *starts.last()?;
        let ideal = ((k * total) as f64 / count as f64).round() as usize;
        let snapped = nearest_keyframe(keyframes, ideal, tolerance).filter(|&key| key > previous);
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
        });
    }
    Some(segments)
}

/// The keyframe index closest to `ideal` within `tolerance` frames, preferring the earlier one on
/// a tie. `keyframes` is sorted.
fn nearest_keyframe(keyframes: &[usize], ideal: usize, tolerance: usize) -> Option<usize> {
    let after = keyframes.partition_point(|&key| key < ideal);
    let candidates = [
        after.checked_sub(1).map(|i| keyframes[i]),
        keyframes.get(after).copied(),
    ];
    candidates
        .into_iter()
        .flatten()
        .filter(|&key| key.abs_diff(ideal) <= tolerance)
        .min_by_key(|&key| (key.abs_diff(ideal), key))
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

    proptest! {
        #[test]
        fn every_frame_lands_in_exactly_one_segment(
            frames in arbitrary_frames(),
            exact in 1u32..40,
            ratio in 0.0f64..5.0,
            snap in 0.0f64..0.5,
        ) {
            let options = PlanOptions { exact_segments: Some(exact), max_lead_in_ratio: ratio, keyframe_snap: snap, ..PlanOptions::default() };
            let plan = plan_segments(&frames, TB, frames.len() as f64 / 30.0, &options).expect("plan");
            prop_assert!(!plan.segments.is_empty() && plan.segments.len() <= exact as usize);
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
