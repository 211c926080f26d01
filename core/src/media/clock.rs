//! The source's timestamps as every step sees them.
//!
//! Two repairs, both done the way the ffmpeg CLI does them so that treemux shows the frames
//! ffmpeg shows, at the times ffmpeg shows them:
//! - **Discontinuities.** Containers that allow timestamp jumps (MPEG-TS, MPEG-PS: FFmpeg's
//!   `AVFMT_TS_DISCONT`) restart their clock where two recordings were joined with `cat` or a
//!   broadcast switched programmes. The probe finds the jumps ([`JumpDetector`]) and every reader
//!   of the source removes them ([`Repairer`]), so the file plays as one continuous timeline.
//! - **Packets without a pts** (AVI and other dts-only containers, where B-frames make decode and
//!   presentation order differ): [`DtsOnlyClock`] gives each decoded frame its presentation time.

use super::util::time_base;
use crate::plan::{FrameInfo, TimeBase};
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A jump of the timestamps further than this, either way, is a discontinuity (microseconds):
/// ffmpeg's `-dts_delta_threshold` default, 10 s.
const JUMP_THRESHOLD_MICROS: i64 = 10_000_000;
/// A step back of the decode time further than this is a discontinuity too (microseconds):
/// ffmpeg's own rule, a tenth of a second.
const BACKWARD_THRESHOLD_MICROS: i64 = 100_000;

/// Where a source's timestamps jump, and the offset that makes them continuous. Empty for almost
/// every file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimestampRepair {
    /// In file order per stream.
    pub jumps: Vec<TimestampJump>,
    /// The transcoded video stream, whose timestamps are never touched beyond the jumps (the
    /// plan counts its frames by them). Every other stream's decode times are kept increasing
    /// after the repair, as ffmpeg's muxing does: the audio of the first recording usually runs
    /// a little past its video, so the second's first audio packets would go back in time.
    pub video_stream_index: usize,
}

/// From one packet of a stream on, an offset added to its timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimestampJump {
    pub stream_index: usize,
    /// Byte position in the file of the first packet the offset applies to; the offset holds for
    /// it and every later packet of the stream, up to the stream's next jump.
    pub position: i64,
    /// Added to pts and dts, in ticks of the stream's time base (the total since the file's start).
    pub offset_ticks: i64,
    /// The repaired decode timestamp of that first packet (pts when it has no dts), in the same
    /// ticks: where a reader looking for a later packet can start.
    pub first_dts: i64,
}

impl TimestampRepair {
    pub fn is_empty(&self) -> bool {
        self.jumps.is_empty()
    }

    /// The byte position to start reading from to reach the packet of `stream_index` whose
    /// repaired dts is `dts`: the start of the stretch of the stream holding it (`None` = the
    /// start of the file).
    pub fn start_of_stretch(&self, stream_index: usize, dts: i64) -> Option<i64> {
        self.jumps
            .iter()
            .filter(|jump| jump.stream_index == stream_index && jump.first_dts <= dts)
            .map(|jump| jump.position)
            .next_back()
    }

    /// A reader's repairer, to apply to every packet it reads from the source.
    pub fn repairer(&self) -> Repairer {
        Repairer {
            jumps: self.jumps.clone(),
            video_stream_index: self.video_stream_index,
            current: Vec::new(),
            monotonic: MonotonicGuard::default(),
        }
    }
}

/// Applies a [`TimestampRepair`] to the packets one reader reads, in file order from any place.
#[derive(Debug)]
pub struct Repairer {
    jumps: Vec<TimestampJump>,
    video_stream_index: usize,
    monotonic: MonotonicGuard,
    /// The offset last applied per stream: for packets that do not know their position.
    current: Vec<i64>,
}

impl Repairer {
    /// True when it changes nothing (the source has no discontinuities).
    pub fn is_inert(&self) -> bool {
        self.jumps.is_empty()
    }

    /// Adds the offset that applies at `packet`'s position to its pts and dts.
    pub fn apply(&mut self, packet: &mut ffmpeg::Packet) {
        if self.jumps.is_empty() {
            return;
        }
        let stream = packet.stream();
        if self.current.len() <= stream {
            self.current.resize(stream + 1, 0);
        }
        let position = packet.position() as i64;
        if position >= 0 {
            self.current[stream] = self
                .jumps
                .iter()
                .filter(|jump| jump.stream_index == stream && jump.position <= position)
                .map(|jump| jump.offset_ticks)
                .next_back()
                .unwrap_or(0);
        }
        shift(packet, self.current[stream]);
        if stream != self.video_stream_index {
            self.monotonic.apply(packet);
        }
    }
}

/// Keeps each stream's decode times increasing, as ffmpeg's muxing does ("non-monotonic DTS"):
/// a packet at or before its stream's previous one is moved just after it.
#[derive(Debug, Default)]
struct MonotonicGuard {
    last_dts: Vec<Option<i64>>,
}

impl MonotonicGuard {
    fn apply(&mut self, packet: &mut ffmpeg::Packet) {
        let stream = packet.stream();
        if self.last_dts.len() <= stream {
            self.last_dts.resize(stream + 1, None);
        }
        let Some(dts) = packet.dts().or(packet.pts()) else {
            return;
        };
        let dts = match self.last_dts[stream] {
            Some(last) if dts <= last => {
                let moved = last + 1;
                if packet.dts().is_some() {
                    packet.set_dts(Some(moved));
                }
                packet.set_pts(packet.pts().map(|pts| pts.max(moved)));
                moved
            }
            _ => dts,
        };
        self.last_dts[stream] = Some(dts);
    }
}

fn shift(packet: &mut ffmpeg::Packet, ticks: i64) {
    if ticks == 0 {
        return;
    }
    if let Some(pts) = packet.pts() {
        packet.set_pts(Some(pts + ticks));
    }
    if let Some(dts) = packet.dts() {
        packet.set_dts(Some(dts + ticks));
    }
}

/// Per stream state of [`JumpDetector`], in microseconds of the repaired timeline.
#[derive(Clone, Copy, Debug, Default)]
struct StreamClock {
    /// Where the next packet's dts is expected: this one's plus its duration.
    next_dts: Option<i64>,
    /// The latest dts seen.
    last_dts: Option<i64>,
    /// The last gap between two dts: the duration of packets that do not state one.
    last_gap: i64,
    /// Offset in the stream's ticks applied to its latest packet.
    offset_ticks: i64,
}

/// Finds the discontinuities of a source while the probe reads it, with the ffmpeg CLI's rule
/// (`process_input` in FFmpeg 5.1's `ffmpeg.c`): for a container that allows them, a video or
/// audio packet whose dts is more than 10 s away from where its stream was expected to go on, or
/// more than 0.1 s before its stream's latest dts, moves the whole file's offset so that the packet
/// continues its stream; the offset holds for every stream from there on.
#[derive(Debug)]
pub struct JumpDetector {
    enabled: bool,
    video_stream_index: usize,
    /// Applied once a jump was found, as every reader does.
    monotonic: MonotonicGuard,
    time_bases: Vec<TimeBase>,
    watched: Vec<bool>,
    clocks: Vec<StreamClock>,
    /// The file's offset, microseconds.
    offset_micros: i64,
    jumps: Vec<TimestampJump>,
}

impl JumpDetector {
    /// `video_stream_index`: the video stream treemux transcodes.
    pub fn new(input: &ffmpeg::format::context::Input, video_stream_index: usize) -> Self {
        // SAFETY: the context and its input format are valid while `input` lives.
        let flags = unsafe { (*(*input.as_ptr()).iformat).flags };
        let enabled = flags & ffmpeg::ffi::AVFMT_TS_DISCONT != 0;
        let time_bases: Vec<TimeBase> = input
            .streams()
            .map(|stream| time_base(stream.time_base()))
            .collect();
        let watched = input
            .streams()
            .map(|stream| {
                matches!(
                    stream.parameters().medium(),
                    ffmpeg::media::Type::Video | ffmpeg::media::Type::Audio
                )
            })
            .collect();
        Self {
            enabled,
            video_stream_index,
            monotonic: MonotonicGuard::default(),
            clocks: vec![StreamClock::default(); time_bases.len()],
            time_bases,
            watched,
            offset_micros: 0,
            jumps: Vec::new(),
        }
    }

    /// Repairs `packet` (the next packet of the file, in file order) and notes any jump it shows.
    pub fn observe(&mut self, packet: &mut ffmpeg::Packet) {
        let stream = packet.stream();
        if !self.enabled || stream >= self.time_bases.len() {
            return;
        }
        let base = self.time_bases[stream];
        let Some(raw) = packet.dts().or(packet.pts()) else {
            return;
        };
        let to_micros = |ticks: i64| rescale(ticks, base, MICROS);
        let clock = self.clocks[stream];
        if self.watched[stream] {
            let dts = to_micros(raw) + self.offset_micros;
            if let Some(expected) = clock.next_dts {
                let delta = dts - expected;
                let backwards = clock
                    .last_dts
                    .is_some_and(|last| dts + BACKWARD_THRESHOLD_MICROS < last);
                if delta.abs() > JUMP_THRESHOLD_MICROS || backwards {
                    self.offset_micros -= delta;
                }
            }
        }
        let offset_ticks = rescale(self.offset_micros, MICROS, base);
        shift(packet, offset_ticks);
        let dts_ticks = raw + offset_ticks;
        if offset_ticks != clock.offset_ticks {
            self.jumps.push(TimestampJump {
                stream_index: stream,
                position: packet.position() as i64,
                offset_ticks,
                first_dts: dts_ticks,
            });
        }
        if !self.jumps.is_empty() && stream != self.video_stream_index {
            self.monotonic.apply(packet);
        }
        let dts = to_micros(dts_ticks);
        let gap = clock.last_dts.map_or(0, |last| dts - last);
        let duration = if packet.duration() > 0 {
            to_micros(packet.duration())
        } else if gap > 0 {
            gap
        } else {
            clock.last_gap
        };
        self.clocks[stream] = StreamClock {
            next_dts: Some(dts + duration),
            last_dts: Some(clock.last_dts.map_or(dts, |last| last.max(dts))),
            last_gap: if gap > 0 { gap } else { clock.last_gap },
            offset_ticks,
        };
    }

    pub fn finish(self) -> TimestampRepair {
        TimestampRepair {
            jumps: self.jumps,
            video_stream_index: self.video_stream_index,
        }
    }
}

const MICROS: TimeBase = TimeBase {
    num: 1,
    den: 1_000_000,
};

/// `value` ticks of `from` in ticks of `to`, rounded to the nearest.
fn rescale(value: i64, from: TimeBase, to: TimeBase) -> i64 {
    // SAFETY: av_rescale_q is a pure function.
    unsafe {
        ffmpeg::ffi::av_rescale_q(
            value,
            ffmpeg::ffi::AVRational {
                num: from.num,
                den: from.den,
            },
            ffmpeg::ffi::AVRational {
                num: to.num,
                den: to.den,
            },
        )
    }
}

/// Presentation timestamps for the frames decoded from packets that carry only a dts.
///
/// Frames leave a decoder in presentation order, so the k-th frame shown is the k-th smallest
/// dts of the packets fed: the timestamps the probe planned with. The decoder's own guess for
/// such frames (the best-effort timestamp) is the dts of whichever packet went in when the frame
/// came out, which B-frame reordering delays and makes non-monotonic.
///
/// Only for streams where no packet has a pts: in a stream that labels some packets and not
/// others (MPEG-PS may leave the PTS out of some PES headers), the unlabelled ones are not the
/// first to be shown, and the decoder's guess is the better one.
#[derive(Debug, Default)]
pub struct DtsOnlyClock {
    /// Decode timestamps of the packets fed, smallest first (packets are fed in decode order,
    /// which is dts order).
    slots: VecDeque<i64>,
    /// A packet with a pts was fed: the slots do not apply.
    labelled: bool,
}

impl DtsOnlyClock {
    /// Call for every packet the decoder accepted.
    pub fn fed(&mut self, packet: &ffmpeg::Packet) {
        if packet.pts().is_some() {
            self.labelled = true;
            self.slots.clear();
        } else if let (false, Some(dts)) = (self.labelled, packet.dts()) {
            self.slots.push_back(dts);
        }
    }

    /// The presentation timestamp of `frame`, the next one out of the decoder: its own pts, else
    /// its slot (dts-only streams), else the decoder's best-effort guess.
    pub fn pts_of(&mut self, frame: &ffmpeg::frame::Video) -> Option<i64> {
        frame
            .pts()
            .or_else(|| self.slots.pop_front())
            .or(frame.timestamp())
    }
}

/// Gives the frames at `missing` (indices into `frames`, in decode order: packets that came with
/// a dts but no pts, as MPEG program streams leave some anchor frames) the presentation times the
/// decoder will show them at. In a constant-rate stream the presentation times are the decode
/// times shifted by the reorder delay, so the missing ones are those shifted decode times no
/// other frame holds, handed out in decode order (anchor frames are shown in decode order).
/// Returns false, changing nothing, when that does not account for them exactly (a variable
/// rate, or no frame with a pts to learn the delay from); the frames then keep their decode
/// times.
///
/// Precondition: `frames` in decode order; every frame at `missing` has `dts` set and its `pts`
/// equal to that dts.
pub fn infer_missing_pts(frames: &mut [FrameInfo], missing: &[usize]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let is_missing = |index: usize| missing.binary_search(&index).is_ok();
    let known: std::collections::BTreeSet<i64> = frames
        .iter()
        .enumerate()
        .filter(|(index, _)| !is_missing(*index))
        .map(|(_, frame)| frame.pts)
        .collect();
    let (Some(&first_known), Some(first_dts)) =
        (known.first(), frames.iter().filter_map(|f| f.dts).min())
    else {
        return false;
    };
    let delay = first_known - first_dts;
    let mut free: Vec<i64> = frames
        .iter()
        .filter_map(|frame| frame.dts)
        .map(|dts| dts + delay)
        .filter(|pts| !known.contains(pts))
        .collect();
    free.sort_unstable();
    free.dedup();
    if free.len() != missing.len() {
        return false;
    }
    let fits = missing
        .iter()
        .zip(&free)
        .all(|(&index, &pts)| frames[index].dts.is_some_and(|dts| pts >= dts));
    if !fits {
        return false;
    }
    for (&index, &pts) in missing.iter().zip(&free) {
        frames[index].pts = pts;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pts: i64, dts: i64) -> FrameInfo {
        FrameInfo {
            pts,
            dts: Some(dts),
            key: false,
        }
    }

    /// An MPEG program stream with B-frames whose anchor at dts 167400 has no pts (listed at its
    /// dts by the demuxer): the decoder shows it at 178200, one reorder delay after the next
    /// anchor's dts.
    #[test]
    fn missing_anchor_pts_come_from_the_shifted_decode_times() {
        let mut frames = vec![
            frame(156_600, 145_800),
            frame(149_400, 149_400),
            frame(153_000, 153_000),
            frame(167_400, 156_600),
            frame(160_200, 160_200),
            frame(163_800, 163_800),
            frame(167_400, 167_400), // no pts in the file
            frame(171_000, 171_000),
            frame(174_600, 174_600),
            frame(189_000, 178_200),
            frame(181_800, 181_800),
            frame(185_400, 185_400),
        ];
        assert!(infer_missing_pts(&mut frames, &[6]));
        assert_eq!(frames[6].pts, 178_200);
        let mut pts: Vec<i64> = frames.iter().map(|f| f.pts).collect();
        pts.sort_unstable();
        pts.dedup();
        assert_eq!(pts.len(), frames.len(), "every frame has its own time");
    }

    #[test]
    fn frames_stay_at_their_decode_times_when_the_rule_does_not_fit() {
        // Uneven decode times: the shifted decode times leave two holes for one missing frame.
        let mut frames = vec![frame(5000, 0), frame(1000, 1000), frame(2000, 2000)];
        let before = frames.clone();
        assert!(!infer_missing_pts(&mut frames, &[1]));
        assert_eq!(frames, before);
        assert!(infer_missing_pts(&mut frames, &[]));
    }

    fn packet(stream: usize, position: i64, dts: i64) -> ffmpeg::Packet {
        let mut packet = ffmpeg::Packet::empty();
        packet.set_stream(stream);
        packet.set_position(position as isize);
        packet.set_dts(Some(dts));
        packet.set_pts(Some(dts));
        packet
    }

    fn repair() -> TimestampRepair {
        TimestampRepair {
            jumps: vec![
                TimestampJump {
                    stream_index: 0,
                    position: 1000,
                    offset_ticks: 500,
                    first_dts: 900,
                },
                TimestampJump {
                    stream_index: 1,
                    position: 1200,
                    offset_ticks: 500,
                    first_dts: 880,
                },
            ],
            video_stream_index: 0,
        }
    }

    #[test]
    fn offsets_apply_from_the_jump_on_by_position_and_carry_over_unpositioned_packets() {
        let mut repairer = repair().repairer();
        let mut fix = |stream, position, dts| {
            let mut packet = packet(stream, position, dts);
            repairer.apply(&mut packet);
            packet.dts()
        };
        assert_eq!(fix(0, 900, 390), Some(390), "before the jump");
        assert_eq!(fix(0, 1000, 400), Some(900), "the jump's packet");
        assert_eq!(
            fix(0, -1, 410),
            Some(910),
            "no position: the stream's last offset"
        );
        assert_eq!(fix(1, -1, 395), Some(395), "audio before its own jump");
        assert_eq!(fix(1, 1200, 380), Some(880), "audio from its jump on");
        // Read again from before the jump (a reader that seeks back): the position decides.
        assert_eq!(fix(0, 950, 395), Some(395));
    }

    #[test]
    fn other_streams_never_go_back_after_the_repair_but_the_video_is_untouched() {
        let mut repairer = repair().repairer();
        let mut fix = |stream, position, dts| {
            let mut packet = packet(stream, position, dts);
            repairer.apply(&mut packet);
            (packet.dts(), packet.pts())
        };
        assert_eq!(fix(1, 1100, 890), (Some(890), Some(890)));
        // 380 + 500 = 880 would go back before 890: moved just after it, as ffmpeg's muxing does.
        assert_eq!(fix(1, 1200, 380), (Some(891), Some(891)));
        assert_eq!(fix(0, 900, 950), (Some(950), Some(950)));
        assert_eq!(
            fix(0, 1000, 400),
            (Some(900), Some(900)),
            "video keeps its timestamps"
        );
    }

    #[test]
    fn stretches_start_at_the_last_jump_at_or_before_a_timestamp() {
        let repair = repair();
        assert_eq!(repair.start_of_stretch(0, 100), None, "the file's start");
        assert_eq!(repair.start_of_stretch(0, 900), Some(1000));
        assert_eq!(repair.start_of_stretch(0, 5000), Some(1000));
        assert!(TimestampRepair::default().is_empty());
    }
}
