//! **Pure.** A run's progress as counts and rates, and the one line that reports it: on a log or
//! a pipe every few seconds, beside the bar on a terminal. The caller owns the clock and passes
//! the elapsed time in.

use crate::local::Progress;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Counts fed by [`Progress`] events from any worker thread.
#[derive(Debug, Default)]
pub struct ProgressTally {
    frames_done: AtomicU64,
    frames_total: AtomicU64,
    segments_done: AtomicU32,
    segments_total: AtomicU32,
    merges_done: AtomicU32,
    merges_total: AtomicU32,
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
                frames,
                segments,
                merges,
                duration_seconds,
            } => {
                self.frames_total.store(frames, Ordering::Relaxed);
                self.segments_total.store(segments, Ordering::Relaxed);
                self.merges_total.store(merges, Ordering::Relaxed);
                self.duration_bits
                    .store(duration_seconds.to_bits(), Ordering::Relaxed);
            }
            Progress::FrameEncoded => {
                self.frames_done.fetch_add(1, Ordering::Relaxed);
            }
            Progress::SegmentDone { .. } => {
                self.segments_done.fetch_add(1, Ordering::Relaxed);
            }
            Progress::MergeDone { .. } => {
                self.merges_done.fetch_add(1, Ordering::Relaxed);
            }
            Progress::AudioDone => {}
            Progress::Muxing => self.muxing.store(true, Ordering::Relaxed),
        }
    }

    /// The counts now, `elapsed_seconds` after the run started.
    pub fn snapshot(&self, elapsed_seconds: f64) -> ProgressSnapshot {
        ProgressSnapshot {
            frames_done: self.frames_done.load(Ordering::Relaxed),
            frames_total: self.frames_total.load(Ordering::Relaxed),
            segments_done: self.segments_done.load(Ordering::Relaxed),
            segments_total: self.segments_total.load(Ordering::Relaxed),
            merges_done: self.merges_done.load(Ordering::Relaxed),
            merges_total: self.merges_total.load(Ordering::Relaxed),
            duration_seconds: f64::from_bits(self.duration_bits.load(Ordering::Relaxed)),
            elapsed_seconds,
            muxing: self.muxing.load(Ordering::Relaxed),
        }
    }
}

/// The progress of a run at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProgressSnapshot {
    pub frames_done: u64,
    pub frames_total: u64,
    pub segments_done: u32,
    pub segments_total: u32,
    pub merges_done: u32,
    pub merges_total: u32,
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
            self.frames_done as f64 / self.elapsed_seconds
        } else {
            0.0
        }
    }

    /// Seconds of video encoded per wall-clock second (ffmpeg's `speed=`); `None` before
    /// anything can be said.
    pub fn speed(&self) -> Option<f64> {
        (self.frames_total > 0 && self.elapsed_seconds > 0.0 && self.duration_seconds > 0.0).then(
            || {
                self.duration_seconds * self.frames_done as f64
                    / self.frames_total as f64
                    / self.elapsed_seconds
            },
        )
    }

    /// Seconds left at the rate so far; `None` before the first frame.
    pub fn eta_seconds(&self) -> Option<f64> {
        let fps = self.fps();
        (fps > 0.0).then(|| self.frames_total.saturating_sub(self.frames_done) as f64 / fps)
    }

    /// The progress as one line of at most `width` characters, e.g.
    /// `frame 1234/5678 21% 23.4 fps speed=2.3x seg 3/16 merge 1/15 ETA 0:03:12`. Fields are
    /// left out, least useful first, until the line fits (the frame count always stays).
    pub fn line(&self, width: usize) -> String {
        let percent = (self.frames_done.min(self.frames_total) * 100)
            .checked_div(self.frames_total)
            .map_or_else(String::new, |percent| format!(" {percent}%"));
        let speed = self.speed().map_or_else(
            || "speed=N/A".to_owned(),
            |speed| format!("speed={speed:.1}x"),
        );
        let eta = if self.muxing {
            "muxing".to_owned()
        } else if self.frames_total > 0 && self.frames_done >= self.frames_total {
            "ETA 0:00:00".to_owned()
        } else {
            self.eta_seconds()
                .map_or_else(|| "ETA -".to_owned(), |eta| format!("ETA {}", clock(eta)))
        };
        // (priority, text): the lowest priority goes first when the line is too long.
        let mut fields = vec![
            (
                9,
                format!("frame {}/{}", self.frames_done, self.frames_total),
            ),
            (3, percent),
            (7, format!(" {:.1} fps", self.fps())),
            (8, format!(" {speed}")),
            (
                2,
                format!(" seg {}/{}", self.segments_done, self.segments_total),
            ),
            (
                1,
                format!(" merge {}/{}", self.merges_done, self.merges_total),
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
            frames_done: 1234,
            frames_total: 5678,
            segments_done: 3,
            segments_total: 16,
            merges_done: 1,
            merges_total: 15,
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
            frames_done: 98_765_432_100,
            frames_total: 123_456_789_012,
            segments_done: 4_000_000_000,
            segments_total: 4_000_000_001,
            merges_done: 4_000_000_000,
            merges_total: 4_000_000_000,
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
        tally.record(Progress::SegmentDone { index: 0 });
        tally.record(Progress::Muxing);
        let line = tally.snapshot(2.0).line(80);
        assert_eq!(
            line,
            "frame 2/2 100% 1.0 fps speed=0.5x seg 1/1 merge 0/0 muxing"
        );
    }
}
