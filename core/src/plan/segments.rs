//! The plan's data, shared by the CLI, the functions, the state machine payloads and the tests:
//! the stream's [`TimeBase`], the probe's [`FrameInfo`], and the [`SegmentPlan`] of
//! [`Segment`]s with their [`SeekPoint`]s and encode order.

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
