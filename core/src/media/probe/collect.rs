//! One pass over the packets: a collector per stream (video frames and packet positions; each
//! audio track's start, end and priming) and the span every stream's packets cover.

use super::index::IndexListing;
use super::{AudioTrack, PacketSpan, ProbeError};
use crate::media::clock::{JumpDetector, TimestampRepair};
use crate::media::source::ReadFailure;
use crate::media::util::time_base;
use crate::plan::{FrameInfo, TimeBase};
use ffmpeg_next as ffmpeg;
use std::path::Path;

/// What one pass over the packets found.
pub(super) struct Collected {
    pub(super) video: VideoCollector,
    /// The tracks of [`super::header::audio_tracks`] with what their packets said.
    pub(super) audio: Vec<AudioTrack>,
    /// Earliest start and latest end of any packet of any stream: what the file holds.
    pub(super) readable: ReadableSpan,
    /// The discontinuities found, removed from every timestamp collected.
    pub(super) timestamp_repair: TimestampRepair,
}

/// Reads every packet of `input` once (named `path` in errors; `failure` explains a failed
/// read of the source), the timeline without its discontinuities: the video stream at
/// `video_index` into a [`VideoCollector`], each of `audio` into an [`AudioCollector`].
/// Up to 1000 damaged packets in a row are skipped.
pub(super) fn read_packets(
    input: &mut ffmpeg::format::context::Input,
    failure: &ReadFailure,
    path: &Path,
    video_index: usize,
    audio: Vec<AudioTrack>,
    listing: &IndexListing,
) -> Result<Collected, ProbeError> {
    let mut video = VideoCollector::new(video_index);
    let mut audio: Vec<AudioCollector> = audio
        .into_iter()
        .map(|track| AudioCollector { track })
        .collect();
    let mut readable = ReadableSpan::default();
    let stream_time_bases: Vec<TimeBase> = input
        .streams()
        .map(|stream| time_base(stream.time_base()))
        .collect();
    let mut jumps = JumpDetector::new(input, video_index);
    let mut corrupt_in_a_row = 0u32;
    loop {
        // A fresh packet per read: `Packet::read` does not release the previous one.
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(input) {
            Ok(()) => corrupt_in_a_row = 0,
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) if corrupt_in_a_row < 1000 => {
                corrupt_in_a_row += 1;
                continue;
            }
            Err(code) => {
                return Err(match failure.take() {
                    Some(cause) => ProbeError::Source {
                        path: path.to_owned(),
                        source: cause,
                    },
                    None => ProbeError::Read {
                        path: path.to_owned(),
                        read: video.frames.len() as u64,
                        source: code,
                    },
                })
            }
        }
        // Everything below sees the timeline without its discontinuities.
        jumps.observe(&mut packet);
        let index = packet.stream();
        if let (Some(pts), Some(&base)) =
            (packet.pts().or(packet.dts()), stream_time_bases.get(index))
        {
            readable.add(
                base.seconds(pts),
                base.seconds(pts + packet.duration().max(0)),
            );
        }
        if index == video_index {
            video.add(&packet, listing);
        } else if let Some(track) = audio
            .iter_mut()
            .find(|collector| collector.track.stream_index == index)
        {
            track.add(&packet);
        }
    }
    Ok(Collected {
        video,
        audio: audio.into_iter().map(|collector| collector.track).collect(),
        readable,
        timestamp_repair: jumps.finish(),
    })
}

/// The video stream's packets as the planner needs them: frames (pts in the stream's time base,
/// dts, keyframe) and each packet's bytes in the source.
pub(super) struct VideoCollector {
    index: usize,
    /// In file order; unsorted until the caller sorts them.
    pub(super) frames: Vec<FrameInfo>,
    pub(super) packets_at: Vec<PacketSpan>,
    /// Indices into `frames` of packets that came without a pts (see clock::infer_missing_pts).
    pub(super) frames_without_pts: Vec<usize>,
    /// The duration of the packet with the highest pts, in stream ticks (0 when unknown).
    pub(super) last_duration: i64,
    max_pts: i64,
    /// Every packet of the stream, discarded ones and ones without a timestamp included.
    pub(super) packets: u64,
    pub(super) bytes: u64,
}

impl VideoCollector {
    fn new(index: usize) -> Self {
        Self {
            index,
            frames: Vec::new(),
            packets_at: Vec::new(),
            frames_without_pts: Vec::new(),
            last_duration: 0,
            max_pts: i64::MIN,
            packets: 0,
            bytes: 0,
        }
    }

    fn add(&mut self, packet: &ffmpeg::Packet, listing: &IndexListing) {
        self.packets += 1;
        self.bytes += packet.size() as u64;
        // Packets outside an MP4 edit list are decoded but their frames never come out of the
        // decoder: they are not frames of the video.
        // SAFETY: the packet was just filled by av_read_frame; ffmpeg-next's Flags drops
        // this bit, so read the raw field.
        let discarded = unsafe { (*ffmpeg::packet::Ref::as_ptr(packet)).flags }
            & ffmpeg::ffi::AV_PKT_FLAG_DISCARD
            != 0;
        let Some(pts) = packet.pts().or(packet.dts()).filter(|_| !discarded) else {
            return;
        };
        if packet.pts().is_none() {
            self.frames_without_pts.push(self.frames.len());
        }
        if pts >= self.max_pts {
            self.max_pts = pts;
            self.last_duration = packet.duration();
        }
        // Video listed from the index takes its keyframes from the index: the packets' own
        // flags come from libavformat's parser, which the unfetched bytes would mislead.
        let key = u64::try_from(packet.position())
            .ok()
            .and_then(|position| listing.keyframe_at(self.index, position))
            .unwrap_or_else(|| packet.is_key());
        self.frames.push(FrameInfo {
            pts,
            dts: packet.dts(),
            key,
        });
        if let Ok(position) = u64::try_from(packet.position()) {
            self.packets_at.push(PacketSpan {
                pts,
                position,
                size: packet.size() as u64,
            });
        }
    }
}

/// One audio track's packets: its first and last timestamps, count, last duration, and the
/// priming its first packet's side data states.
struct AudioCollector {
    track: AudioTrack,
}

impl AudioCollector {
    fn add(&mut self, packet: &ffmpeg::Packet) {
        let track = &mut self.track;
        if track.packets == 0 {
            if let Some(skip) = packet
                .side_data()
                .find(|side| side.kind() == ffmpeg::codec::packet::side_data::Type::SkipSamples)
                .and_then(|side| {
                    side.data()
                        .get(..4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                })
            {
                track.priming_samples = skip;
            }
        }
        track.packets += 1;
        track.last_packet_duration = packet.duration();
        if let Some(pts) = packet.pts().or(packet.dts()) {
            track.first_pts = Some(track.first_pts.map_or(pts, |first| first.min(pts)));
            let end = pts + packet.duration().max(0);
            track.end_pts = Some(track.end_pts.map_or(end, |last| last.max(end)));
        }
    }
}

/// The earliest start and latest end of the packets read, in seconds.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ReadableSpan {
    range: Option<(f64, f64)>,
}

impl ReadableSpan {
    fn add(&mut self, start: f64, end: f64) {
        self.range = Some(match self.range {
            Some((first, last)) => (first.min(start), last.max(end)),
            None => (start, end),
        });
    }

    pub(super) fn seconds(self) -> f64 {
        self.range.map_or(0.0, |(first, last)| last - first)
    }
}
