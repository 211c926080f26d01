//! How the planner chooses the number of segments and their cuts ([`PlanOptions`]), and why a
//! plan could not be made ([`PlanError`]).

use serde::{Deserialize, Serialize};
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
