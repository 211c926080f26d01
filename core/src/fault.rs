//! Crash points for fault-injection tests, shared by the local runner (`TREEMUX_FAULT`) and the
//! SQS worker (`TREEMUX_WORKER_FAULTS=crash:…`). A crash is `abort`: no destructor and no
//! cleanup runs, as after a power cut, an out-of-memory kill or a Lambda sandbox that vanishes.
//! Nothing here runs unless a test asks for it; the Lambda binaries never read these variables.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

/// A point in a segment's or a merge's life where a process can be made to die.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Before segment `n` starts encoding.
    BeforeEncode(u32),
    /// After segment `n` has encoded `frames` frames (its output is half written).
    MidEncode { segment: u32, frames: u64 },
    /// After segment `n`'s file is complete, before it is confirmed to its pair.
    AfterSegment(u32),
    /// After segment `n` was confirmed to its pair, before its task merges or returns.
    AfterConfirm(u32),
    /// After the `n`th merge this process completes (from 0) wrote its index, before the pair is
    /// marked merged (on AWS inside the split-and-convert or merge-video task that climbs).
    AfterMerge(u32),
    /// After part `n` of the output's multipart upload was uploaded, before its ETag is
    /// recorded (the retry uploads it again, replacing it).
    AfterPartUpload(i32),
    /// After part `n`'s ETag was recorded, before its task goes on or answers.
    AfterPartRecord(i32),
}

impl CrashPoint {
    /// The accepted spellings, for error messages.
    pub const SYNTAX: &'static str =
        "before-encode:N, mid-encode:N:FRAMES, after-segment:N, after-confirm:N, after-merge:N, \
         after-part-upload:N or after-part-record:N";

    /// Parses one of [`CrashPoint::SYNTAX`].
    pub fn parse(text: &str) -> Option<Self> {
        let parts: Vec<&str> = text.trim().split(':').collect();
        let number = |i: usize| parts.get(i).and_then(|p| p.parse::<u32>().ok());
        // S3 numbers parts from 1.
        let part = |i: usize| {
            parts
                .get(i)
                .and_then(|p| p.parse::<i32>().ok())
                .filter(|&n| n >= 1)
        };
        Some(match (parts.first().copied()?, parts.len()) {
            ("before-encode", 2) => Self::BeforeEncode(number(1)?),
            ("mid-encode", 3) => Self::MidEncode {
                segment: number(1)?,
                frames: u64::from(number(2)?),
            },
            ("after-segment", 2) => Self::AfterSegment(number(1)?),
            ("after-confirm", 2) => Self::AfterConfirm(number(1)?),
            ("after-merge", 2) => Self::AfterMerge(number(1)?),
            ("after-part-upload", 2) => Self::AfterPartUpload(part(1)?),
            ("after-part-record", 2) => Self::AfterPartRecord(part(1)?),
            _ => return None,
        })
    }
}

/// The spelling [`CrashPoint::parse`] reads back.
impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BeforeEncode(n) => write!(f, "before-encode:{n}"),
            Self::MidEncode { segment, frames } => write!(f, "mid-encode:{segment}:{frames}"),
            Self::AfterSegment(n) => write!(f, "after-segment:{n}"),
            Self::AfterConfirm(n) => write!(f, "after-confirm:{n}"),
            Self::AfterMerge(n) => write!(f, "after-merge:{n}"),
            Self::AfterPartUpload(n) => write!(f, "after-part-upload:{n}"),
            Self::AfterPartRecord(n) => write!(f, "after-part-record:{n}"),
        }
    }
}

/// The crash points one process was given, and the count of merges it has completed (which
/// [`CrashPoint::AfterMerge`] refers to). Empty by default: then every check is a no-op.
#[derive(Debug, Default)]
pub struct CrashPlan {
    points: Vec<CrashPoint>,
    merges_written: AtomicU32,
}

impl CrashPlan {
    pub fn new(points: Vec<CrashPoint>) -> Self {
        Self {
            points,
            merges_written: AtomicU32::new(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Dies here when `point` is one of the plan's.
    pub fn at(&self, point: CrashPoint) {
        if self.points.contains(&point) {
            // The line is what tests read to learn which point fired (its `crash_point` field);
            // the log output writes each event to stderr at once, before the abort.
            tracing::error!(crash_point = %point, "injected crash, aborting");
            std::process::abort();
        }
    }

    /// Call when a merge has written its file: dies if the plan names this merge.
    pub fn merge_written(&self) {
        let completed = self.merges_written.fetch_add(1, Ordering::SeqCst);
        self.at(CrashPoint::AfterMerge(completed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_reads_back_its_own_spelling() {
        for point in [
            CrashPoint::BeforeEncode(3),
            CrashPoint::MidEncode {
                segment: 1,
                frames: 12,
            },
            CrashPoint::AfterSegment(0),
            CrashPoint::AfterConfirm(7),
            CrashPoint::AfterMerge(2),
            CrashPoint::AfterPartUpload(1),
            CrashPoint::AfterPartRecord(12),
        ] {
            assert_eq!(CrashPoint::parse(&point.to_string()), Some(point));
        }
        for wrong in [
            "",
            "before-encode",
            "mid-encode:1",
            "after-merge:x",
            "explode:1",
            "after-part-upload:0",
            "after-part-record",
        ] {
            assert_eq!(CrashPoint::parse(wrong), None, "{wrong:?}");
        }
    }

    #[test]
    fn an_empty_plan_never_fires() {
        let plan = CrashPlan::default();
        assert!(plan.is_empty());
        plan.at(CrashPoint::BeforeEncode(0));
        plan.merge_written();
    }
}
