//! A transcode's progress on stderr: a bar redrawn in place on a terminal, a plain line every
//! `--stats-period` on a log or a pipe, both from the core's [`ProgressTally`] (the counts and
//! the percentage a Lambda job record keeps too); with `--verbose`, a line per finished step.

use crate::count;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};
use treemux_core::local::Progress;
use treemux_core::progress::ProgressTally;

/// Where progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProgressMode {
    /// `--json` or `--quiet`.
    Hidden,
    /// stderr is a terminal: a bar redrawn in place.
    Bar,
    /// stderr is a file or a pipe: one plain line every `--stats-period`.
    Lines,
}

/// How often the terminal bar is redrawn.
pub(crate) const BAR_REDRAW: Duration = Duration::from_millis(200);

/// Width of a progress line on a log: fits an 80-column terminal or viewer.
const LINE_WIDTH: usize = 80;

/// Progress on stderr, from the counts in a [`ProgressTally`]: the same frames, rate, speed,
/// segments, merges and ETA as a bar on a terminal or as plain lines elsewhere.
pub(crate) struct ProgressDisplay {
    mode: ProgressMode,
    verbose: bool,
    tally: ProgressTally,
    started: Instant,
    bar: ProgressBar,
}

impl ProgressDisplay {
    pub(crate) fn new(mode: ProgressMode, verbose: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if mode == ProgressMode::Bar {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        if let Ok(style) = ProgressStyle::with_template("[{bar:20}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        Self {
            mode,
            verbose,
            tally: ProgressTally::new(),
            started: Instant::now(),
            bar,
        }
    }

    /// Counts `event` (from any worker); with --verbose, says what finished.
    pub(crate) fn update(&self, event: Progress) {
        self.tally.record(event);
        if !self.verbose || self.mode == ProgressMode::Hidden {
            return;
        }
        let snapshot = self.tally.snapshot(self.started.elapsed().as_secs_f64());
        let detail = match event {
            Progress::Planned {
                frames,
                segments,
                merges,
                duration_seconds,
            } => format!(
                "plan: {} over {duration_seconds:.3} s in {}, {}",
                count(frames, "frame"),
                count(u64::from(segments), "segment"),
                count(u64::from(merges), "merge")
            ),
            Progress::FrameEncoded => return,
            Progress::SegmentDone { index, .. } => format!(
                "segment {index} encoded ({}/{})",
                snapshot.counts.segments_done, snapshot.counts.segments_total
            ),
            Progress::MergeDone { node } => format!(
                "merge {node} done ({}/{})",
                snapshot.counts.merges_done, snapshot.counts.merges_total
            ),
            Progress::AudioDone => "audio done".to_owned(),
            Progress::Muxing => "writing the output".to_owned(),
        };
        self.say(&format!("treemux: {detail}"));
    }

    /// Shows the progress now: redraws the bar, or prints a line once the plan is known.
    pub(crate) fn tick(&self) {
        let snapshot = self.tally.snapshot(self.started.elapsed().as_secs_f64());
        if snapshot.counts.segments_total == 0 {
            return; // still probing: nothing to count yet
        }
        match self.mode {
            ProgressMode::Bar => {
                self.bar.set_length(snapshot.counts.frames_total);
                self.bar.set_position(snapshot.counts.frames_done);
                // The bar and its brackets take 23 columns.
                self.bar.set_message(snapshot.line(LINE_WIDTH - 23));
            }
            ProgressMode::Lines => errln!("{}", snapshot.line(LINE_WIDTH)),
            ProgressMode::Hidden => {}
        }
    }

    fn say(&self, line: &str) {
        match self.mode {
            ProgressMode::Bar => self.bar.println(line),
            ProgressMode::Lines => errln!("{line}"),
            ProgressMode::Hidden => {}
        }
    }

    /// Ends the display; on a log, a finished run's last line gives its final rate and speed
    /// (as ffmpeg's last stats line does).
    pub(crate) fn finish(&self, succeeded: bool) {
        self.bar.finish_and_clear();
        if succeeded && self.mode == ProgressMode::Lines {
            self.tick();
        }
    }
}
