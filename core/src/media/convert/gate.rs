//! Which decoded frames belong to the segment: lead-in frames before its start dropped, the
//! first frame at or past its end ending it, presentation times kept increasing, and a seek that
//! landed after the cut detected.

use super::pass::PassError;
use crate::media::clock::DtsOnlyClock;
use crate::media::MediaError;
use crate::plan::Segment;
use ffmpeg_next as ffmpeg;
use std::path::{Path, PathBuf};

/// What to do with one decoded frame.
pub(super) enum Admit {
    /// Before the segment's start (lead-in): dropped.
    Drop,
    /// The segment's: encode it at this pts (source time base).
    Encode(i64),
    /// At or past the segment's end: every frame of the segment has been seen.
    End,
}

/// The segment's frames out of the decoder, in presentation order.
pub(super) struct FrameGate<'a> {
    segment: &'a Segment,
    /// The first segment starts at the first frame the probe saw shown: a decoder that shows a
    /// frame of an incomplete GOP before it here must not add a frame.
    start: i64,
    /// The pass seeked (a first frame after the segment's start is then an overshoot).
    seeked: bool,
    first_seen: bool,
    last_pts: Option<i64>,
    /// Lead-in frames decoded and dropped.
    pub(super) dropped: u64,
    /// Frames whose pts was moved up to keep presentation times increasing.
    pub(super) adjusted: u64,
    clock: DtsOnlyClock,
    /// The source's name, for errors.
    source: PathBuf,
}

impl<'a> FrameGate<'a> {
    /// `first_pts`: the video's first shown frame (stream time base).
    pub(super) fn new(segment: &'a Segment, first_pts: i64, seeked: bool, source: &Path) -> Self {
        Self {
            segment,
            start: segment.start_pts.unwrap_or(first_pts),
            seeked,
            first_seen: false,
            last_pts: None,
            dropped: 0,
            adjusted: 0,
            clock: DtsOnlyClock::default(),
            source: source.to_owned(),
        }
    }

    /// A packet went into the decoder (the clock of dts-only streams counts them).
    pub(super) fn fed(&mut self, packet: &ffmpeg::Packet) {
        self.clock.fed(packet);
    }

    /// Where `frame` goes. Fails on a frame without any timestamp, and with
    /// [`PassError::SeekOvershoot`] when the first frame after a seek is already past the
    /// segment's start.
    pub(super) fn admit(&mut self, frame: &ffmpeg::frame::Video) -> Result<Admit, PassError> {
        // The frame's own pts first: the plan's cuts are packet pts, and the best-effort
        // timestamp is a heuristic that depends on what was decoded before (so it could differ
        // between a segment decoded after a seek and the same frames decoded from the start).
        // A frame from a packet without pts (AVI and other dts-only containers) takes its
        // presentation slot (see `DtsOnlyClock`).
        let Some(pts) = self.clock.pts_of(frame).or(self.last_pts.map(|p| p + 1)) else {
            return Err(MediaError::Unsupported {
                path: self.source.clone(),
                reason: "a decoded frame has no timestamp".into(),
            }
            .into());
        };
        if !self.first_seen {
            self.first_seen = true;
            if self.seeked && self.segment.start_pts.is_some_and(|start| pts > start) {
                return Err(PassError::SeekOvershoot);
            }
        }
        if pts < self.start {
            self.dropped += 1;
            return Ok(Admit::Drop);
        }
        if self.segment.end_pts.is_some_and(|end| pts >= end) {
            return Ok(Admit::End);
        }
        let pts = match self.last_pts {
            Some(last) if pts <= last => {
                self.adjusted += 1;
                last + 1
            }
            _ => pts,
        };
        self.last_pts = Some(pts);
        Ok(Admit::Encode(pts))
    }
}
