//! **Pure.** A run's progress: the events either runner sends ([`Progress`]), the counts they
//! add up to ([`ProgressCounts`], with the one percentage), and the one line that reports them
//! on the command line (on a log or a pipe every few seconds, beside the bar on a terminal).
//! The CLI's bar counts the local runner's events in a [`ProgressTally`]; a Lambda job record
//! counts the same events through [`crate::state::apply_job_update`] into the same
//! [`ProgressCounts`], so both say the same for the same work. The caller owns the clock and
//! passes the elapsed time in.

use crate::tree::NodeId;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Progress events, sent from whichever worker makes the progress.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Progress {
    /// The plan is made: this many frames to encode, segments and pair merges to run, and the
    /// source's duration in seconds (for the speed against real time).
    Planned {
        frames: u64,
        segments: u32,
        merges: u32,
        duration_seconds: f64,
    },
    /// One more frame encoded.
    FrameEncoded,
    /// Segment `index` is done. `unreported_frames`: its frames not already counted by
    /// [`Progress::FrameEncoded`] events (all of them when the runner sends no frame events, as
    /// the Lambda runner does, or when the segment was found done; none when every frame was
    /// reported as it was encoded).
    SegmentDone {
        index: u32,
        unreported_frames: u64,
    },
    MergeDone {
        node: NodeId,
    },
    AudioDone,
    /// Writing the final file.
    Muxing,
}

/// What a run has done out of what it will do: frames encoded, segments and pair merges
/// finished. Plain data, kept by the CLI's [`ProgressTally`] and in a Lambda job record alike;
/// its JSON form adds the [`ProgressCounts::percent`] (0 while nothing is planned), so a reader
/// of the record sees the number the command line shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ProgressJson", from = "ProgressJson")]
pub struct ProgressCounts {
    pub frames_done: u64,
    pub frames_total: u64,
    pub segments_done: u32,
    pub segments_total: u32,
    pub merges_done: u32,
    pub merges_total: u32,
}

impl ProgressCounts {
    /// Counts `event`. Events that finish nothing countable (audio, muxing) change nothing; a
    /// runner that may repeat an event (a retried task) must count it once (the job record
    /// keeps the finished segments and merges as sets for that).
    pub fn record(&mut self, event: &Progress) {
        match *event {
            Progress::Planned {
                frames,
                segments,
                merges,
                ..
            } => {
                self.frames_total = frames;
                self.segments_total = segments;
                self.merges_total = merges;
            }
            Progress::FrameEncoded => self.frames_done += 1,
            Progress::SegmentDone {
                unreported_frames, ..
            } => {
                self.segments_done += 1;
                self.frames_done += unreported_frames;
            }
            Progress::MergeDone { .. } => self.merges_done += 1,
            Progress::AudioDone | Progress::Muxing => {}
        }
    }

    /// Percent of the frames encoded (the bulk of the work), 0–100; `None` before the plan.
    pub fn percent(&self) -> Option<u64> {
        (self.frames_done.min(self.frames_total) * 100).checked_div(self.frames_total)
    }
}

/// [`ProgressCounts`] as JSON: its counts and its percentage (recomputed when read).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct ProgressJson {
    frames_done: u64,
    frames_total: u64,
    segments_done: u32,
    segments_total: u32,
    merges_done: u32,
    merges_total: u32,
    percent: u64,
}

impl From<ProgressCounts> for ProgressJson {
    fn from(counts: ProgressCounts) -> Self {
        Self {
            frames_done: counts.frames_done,
            frames_total: counts.frames_total,
            segments_done: counts.segments_done,
            segments_total: counts.segments_total,
            merges_done: counts.merges_done,
            merges_total: counts.merges_total,
            percent: counts.percent().unwrap_or(0),
        }
    }
}

impl From<ProgressJson> for ProgressCounts {
    fn from(json: ProgressJson) -> Self {
        Self {
            frames_done: json.frames_done,
            frames_total: json.frames_total,
            segments_done: json.segments_done,
            segments_total: json.segments_total,
            merges_done: json.merges_done,
            merges_total: json.merges_total,
        }
    }
}

/// [`ProgressCounts`] fed by [`Progress`] events from any worker thread, with what the line
/// needs beyond them (the source's duration, whether the output is being written).
#[derive(Debug, Default)]
pub struct ProgressTally {
    counts: Mutex<ProgressCounts>,
    /// The source's duration in seconds, as `f64` bits.
    duration_bits: AtomicU64,
    muxing: AtomicBool,
}

impl ProgressTally {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `event`.
    pub fn record(&self, event: Progress) {
        match event {
            Progress::Planned {
                duration_seconds, ..
            } => self
                .duration_bits
                .store(duration_seconds.to_bits(), Ordering::Relaxed),
            Progress::Muxing => self.muxing.store(true, Ordering::Relaxed),
            _ => {}
        }
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .record(&event);
    }

    /// The counts now, `elapsed_seconds` after the run started.
    pub fn snapshot(&self, elapsed_seconds: f64) -> ProgressSnapshot {
        ProgressSnapshot {
            counts: *self
                .counts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            duration_seconds: f64::from_bits(self.duration_bits.load(Ordering::Relaxed)),
            elapsed_seconds,
            muxing: self.muxing.load(Ordering::Relaxed),
        }
    }
}

/// The progress of a run at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProgressSnapshot {
    pub counts: ProgressCounts,
    /// The source's duration, seconds.
    pub duration_seconds: f64,
    /// Wall-clock seconds since the run started (probe included, as ffmpeg counts).
    pub elapsed_seconds: f64,
    /// The final file is being written.
    pub muxing: bool,
}

impl ProgressSnapshot {
    /// Frames encoded per wall-clock second since the start.
    pub fn fps(&self) -> f64 {
        if self.elapsed_seconds > 0.0 {
            self.counts.frames_done as f64 / self.elapsed_seconds
        } else {
            0.0
        }
    }

    /// Seconds of video encoded per wall-clock second (ffmpeg's `speed=`); `None` before
    /// anything can be said.
    pub fn speed(&self) -> Option<f64> {
        (self.counts.frames_total > 0 && self.elapsed_seconds > 0.0 && self.duration_seconds > 0.0)
            .then(|| {
                self.duration_seconds * self.counts.frames_done as f64
                    / self.counts.frames_total as f64
                    / self.elapsed_seconds
            })
    }

    /// Seconds left at the rate so far; `None` before the first frame.
    pub fn eta_seconds(&self) -> Option<f64> {
        let fps = self.fps();
        (fps > 0.0).then(|| {
            self.counts
                .frames_total
                .saturating_sub(self.counts.frames_done) as f64
                / fps
        })
    }

    /// The progress as one line of at most `width` characters, e.g.
    /// `frame 1234/5678 21% 23.4 fps speed=2.3x seg 3/16 merge 1/15 ETA 0:03:12`. Fields are
    /// left out, least useful first, until the line fits (the frame count always stays).
    pub fn line(&self, width: usize) -> String {
        let percent = self
            .counts
            .percent()
            .map_or_else(String::new, |percent| format!(" {percent}%"));
        let speed = self.speed().map_or_else(
            || "speed=N/A".to_owned(),
            |speed| format!("speed={speed:.1}x"),
        );
        let eta = if self.muxing {
            "muxing".to_owned()
        } else if self.counts.frames_total > 0
            && self.counts.frames_done >= self.counts.frames_total
        {
            "ETA 0:00:00".to_owned()
        } else {
            self.eta_seconds()
                .map_or_else(|| "ETA -".to_owned(), |eta| format!("ETA {}", clock(eta)))
        };
        // (priority, text): the lowest priority goes first when the line is too long.
        let mut fields = vec![
            (
                9,
                format!(
                    "frame {}/{}",
                    self.counts.frames_done, self.counts.frames_total
                ),
            ),
            (3, percent),
            (7, format!(" {:.1} fps", self.fps())),
            (8, format!(" {speed}")),
            (
                2,
                format!(
                    " seg {}/{}",
                    self.counts.segments_done, self.counts.segments_total
                ),
            ),
            (
                1,
                format!(
                    " merge {}/{}",
                    self.counts.merges_done, self.counts.merges_total
                ),
            ),
            (6, format!(" {eta}")),
        ];
        loop {
            let length: usize = fields.iter().map(|(_, text)| text.chars().count()).sum();
            if length <= width || fields.len() == 1 {
                break;
            }
            let lowest = fields
                .iter()
                .enumerate()
                .min_by_key(|(_, (priority, _))| *priority)
                .map(|(index, _)| index)
                .expect("more than one field");
            fields.remove(lowest);
        }
        fields.into_iter().map(|(_, text)| text).collect()
    }
}

/// `seconds` as `H:MM:SS`, rounded up so that a nearly finished run does not show 0:00:00.
fn clock(seconds: f64) -> String {
    let total = seconds.max(0.0).ceil().min(f64::from(u32::MAX)) as u64;
    format!("{}:{:02}:{:02}", total / 3600, total / 60 % 60, total % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> ProgressSnapshot {
        ProgressSnapshot {
            counts: ProgressCounts {
                frames_done: 1234,
                frames_total: 5678,
                segments_done: 3,
                segments_total: 16,
                merges_done: 1,
                merges_total: 15,
            },
            duration_seconds: 227.12,
            elapsed_seconds: 52.7,
            muxing: false,
        }
    }

    #[test]
    fn the_line_states_rate_speed_and_eta() {
        let line = snapshot().line(80);
        // 1234 / 52.7 s = 23.4 fps; 227.12 s × 1234/5678 / 52.7 s = 0.9x; 4444 frames left at
        // 23.4 fps = 189.8 s.
        assert_eq!(
            line,
            "frame 1234/5678 21% 23.4 fps speed=0.9x seg 3/16 merge 1/15 ETA 0:03:10"
        );
    }

    #[test]
    fn the_line_fits_eighty_columns_whatever_the_numbers() {
        let huge = ProgressSnapshot {
            counts: ProgressCounts {
                frames_done: 98_765_432_100,
                frames_total: 123_456_789_012,
                segments_done: 4_000_000_000,
                segments_total: 4_000_000_001,
                merges_done: 4_000_000_000,
                merges_total: 4_000_000_000,
            },
            duration_seconds: 1e9,
            elapsed_seconds: 1e-3,
            muxing: false,
        };
        for snapshot in [snapshot(), huge] {
            let line = snapshot.line(80);
            assert!(line.chars().count() <= 80, "{line}");
            assert!(line.starts_with("frame ") && line.contains("fps"), "{line}");
        }
        // A narrow terminal keeps the frame count.
        assert_eq!(snapshot().line(10), "frame 1234/5678");
    }

    #[test]
    fn nothing_is_claimed_before_it_is_known() {
        let tally = ProgressTally::new();
        let line = tally.snapshot(0.0).line(80);
        assert!(
            line.contains("speed=N/A") && line.contains("ETA -"),
            "{line}"
        );
        tally.record(Progress::Planned {
            frames: 2,
            segments: 1,
            merges: 0,
            duration_seconds: 1.0,
        });
        tally.record(Progress::FrameEncoded);
        tally.record(Progress::FrameEncoded);
        tally.record(Progress::SegmentDone {
            index: 0,
            unreported_frames: 0,
        });
        tally.record(Progress::Muxing);
        let line = tally.snapshot(2.0).line(80);
        assert_eq!(
            line,
            "frame 2/2 100% 1.0 fps speed=0.5x seg 1/1 merge 0/0 muxing"
        );
    }

    /// A resumed run's segments found done count their frames, so the count still ends at
    /// the total; the JSON form carries the percentage and reads back the same.
    #[test]
    fn found_segments_count_their_frames_and_the_json_has_the_percent() {
        let mut counts = ProgressCounts::default();
        assert_eq!(counts.percent(), None);
        counts.record(&Progress::Planned {
            frames: 8,
            segments: 2,
            merges: 1,
            duration_seconds: 1.0,
        });
        for _ in 0..3 {
            counts.record(&Progress::FrameEncoded);
        }
        counts.record(&Progress::SegmentDone {
            index: 1,
            unreported_frames: 0,
        });
        assert_eq!(counts.percent(), Some(37));
        counts.record(&Progress::SegmentDone {
            index: 0,
            unreported_frames: 5,
        });
        counts.record(&Progress::MergeDone {
            node: NodeId { level: 1, index: 0 },
        });
        let json = serde_json::to_value(counts).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "frames_done": 8, "frames_total": 8, "segments_done": 2, "segments_total": 2,
                "merges_done": 1, "merges_total": 1, "percent": 100
            })
        );
        let back: ProgressCounts = serde_json::from_value(json).expect("reads");
        assert_eq!(back, counts);
        let missing: ProgressCounts = serde_json::from_str("{}").expect("an old record");
        assert_eq!(missing, ProgressCounts::default());
    }

    /// The command line's bar and a Lambda job record say the same for the same events: a
    /// run of 3 segments (one merge and one rename), the record fed as the Lambda handlers
    /// feed it (each task's update, some delivered twice), the tally as the local runner does.
    #[test]
    fn the_bar_and_the_job_record_report_the_same_progress() {
        use crate::state::{apply_job_update, JobRecord, JobStatus, JobUpdate};
        let tree = crate::tree::MergeTree::new(3);
        let frames = [40u64, 35, 25];
        let mut record = JobRecord {
            job_id: "job".into(),
            status: JobStatus::Created,
            source: "s3://in/a.mp4".into(),
            source_version: String::new(),
            upload: String::new(),
            output: "s3://out/a.mp4".into(),
            segments: 0,
            merges: 0,
            segments_done: Default::default(),
            merges_done: Default::default(),
            merge_runs: 0,
            stage_seconds: Default::default(),
            progress: ProgressCounts::default(),
            settings: None,
            settings_from: Default::default(),
            error: None,
            superseded_by: None,
            result: Default::default(),
            created_at: 0,
            updated_at: 0,
        };
        let tally = ProgressTally::new();
        let same = |tally: &ProgressTally, record: &JobRecord| {
            let snapshot = tally.snapshot(1.0);
            assert_eq!(snapshot.counts, record.progress);
            let line = snapshot.line(200);
            let percent = record.progress.percent().expect("planned");
            assert!(line.contains(&format!(" {percent}% ")), "{line}");
            let p = &record.progress;
            let counts = format!(
                "seg {}/{} merge {}/{}",
                p.segments_done, p.segments_total, p.merges_done, p.merges_total
            );
            assert!(line.contains(&counts), "{line} lacks {counts}");
        };
        let planned = Progress::Planned {
            frames: frames.iter().sum(),
            segments: 3,
            merges: tree.merges_needed(),
            duration_seconds: 4.0,
        };
        tally.record(planned);
        let running = JobUpdate::Running {
            segments: 3,
            merges: tree.merges_needed(),
            frames: frames.iter().sum(),
        };
        apply_job_update(&mut record, &running, 1);
        same(&tally, &record);
        let finished = |index: u32| JobUpdate::SegmentDone {
            index,
            seconds: 1.0,
            frames: frames[index as usize],
        };
        let merged = |node: NodeId| JobUpdate::Merged {
            node,
            seconds: 0.1,
            ran: true,
        };
        // Segment 2 and the rename of its pair; then 0 and 1, their merge, the root.
        let mut order: Vec<(Progress, Vec<JobUpdate>)> = Vec::new();
        for index in [2, 0, 1] {
            let event = Progress::SegmentDone {
                index,
                unreported_frames: frames[index as usize],
            };
            // A retried task reports its segment twice.
            order.push((event, vec![finished(index), finished(index)]));
            if index == 2 {
                let node = NodeId { level: 1, index: 1 };
                order.push((Progress::MergeDone { node }, vec![merged(node)]));
            }
        }
        for node in [NodeId { level: 1, index: 0 }, tree.root()] {
            order.push((
                Progress::MergeDone { node },
                vec![merged(node), merged(node)],
            ));
        }
        for (event, updates) in order {
            tally.record(event);
            for update in &updates {
                apply_job_update(&mut record, update, 2);
            }
            same(&tally, &record);
        }
        assert_eq!(record.progress.percent(), Some(100));
        assert_eq!(record.progress.merges_done, tree.merges_needed());
        assert_eq!(
            tally.snapshot(1.0).counts.segments_done,
            record.segments_done.len() as u32
        );
    }
}
