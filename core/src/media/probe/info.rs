//! What the probe tells every later step: [`MediaInfo`] with its [`VideoInfo`], [`AudioTrack`]s
//! and video packet positions ([`PacketSpan`]); plain serde data.

use super::super::clock::TimestampRepair;
use super::super::picture::{ColorTags, HdrStatic};
use crate::plan::{FrameInfo, TimeBase};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
/// A frame rate as FFmpeg reports it: `num / den` frames per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameRate {
    pub num: i32,
    pub den: i32,
}

impl FrameRate {
    pub fn fps(self) -> f64 {
        if self.den == 0 {
            0.0
        } else {
            f64::from(self.num) / f64::from(self.den)
        }
    }
}

/// The video stream treemux transcodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    pub stream_index: usize,
    pub codec: String,
    /// Coded size in pixels (before any display rotation).
    pub width: u32,
    pub height: u32,
    pub pixel_format: String,
    pub time_base: TimeBase,
    /// Average frame rate; for VFR sources only an average.
    pub frame_rate: FrameRate,
    /// Sample (pixel) aspect ratio; 0/1 when unknown.
    pub sample_aspect_ratio: FrameRate,
    /// Presentation timestamp of the first frame, in `time_base` ticks.
    pub first_pts: i64,
    /// One past the last frame: its pts plus its duration, in `time_base` ticks.
    pub end_pts: i64,
    pub frame_count: u64,
    pub keyframe_count: u64,
    /// Bytes of all the stream's packets: the video's share of the file.
    #[serde(default)]
    pub packet_bytes: u64,
    /// Display matrix (rotation, flips), when the container has one.
    pub display_matrix: Option<[i32; 9]>,
    /// Counter-clockwise display rotation in degrees, from the display matrix (0 when none).
    pub rotation_degrees: f64,
    /// Stream metadata tags (language, handler name, …).
    pub metadata: BTreeMap<String, String>,
    /// Range, matrix, primaries and transfer the stream declares.
    #[serde(default)]
    pub color: ColorTags,
    /// HDR10 static metadata (mastering display, content light level), when the source has it.
    #[serde(default)]
    pub hdr: HdrStatic,
}

impl VideoInfo {
    /// Duration of the video stream in seconds, first frame to the end of the last.
    pub fn duration_seconds(&self) -> f64 {
        self.time_base.seconds(self.end_pts - self.first_pts)
    }
}

/// One audio track of the source, as the final output must reproduce it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioTrack {
    pub stream_index: usize,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
    pub time_base: TimeBase,
    /// Presentation timestamp of the first packet, in `time_base` ticks.
    pub first_pts: Option<i64>,
    /// One past the last packet (its pts plus duration), in `time_base` ticks.
    pub end_pts: Option<i64>,
    /// Encoder priming at the start that decoders drop (AAC's 1024, Opus pre-skip), in samples:
    /// the audible start is `first_pts` plus this.
    pub priming_samples: u32,
    pub packets: u64,
    /// Duration of the last packet in `time_base` ticks (0 when the container does not say).
    pub last_packet_duration: i64,
    /// Raw FFmpeg disposition bits (default, forced, …).
    pub disposition: i32,
    pub metadata: BTreeMap<String, String>,
}

impl AudioTrack {
    pub fn language(&self) -> Option<&str> {
        self.metadata.get("language").map(String::as_str)
    }

    /// When the first audible sample plays, in seconds (after the priming is dropped).
    pub fn audible_start_seconds(&self) -> Option<f64> {
        let priming = if self.sample_rate > 0 {
            f64::from(self.priming_samples) / f64::from(self.sample_rate)
        } else {
            0.0
        };
        self.first_pts
            .map(|pts| self.time_base.seconds(pts) + priming)
    }

    /// Seconds from the audible start to the end of the last packet.
    pub fn audible_duration_seconds(&self) -> Option<f64> {
        let end = self.time_base.seconds(self.end_pts?);
        self.audible_start_seconds().map(|start| end - start)
    }
}

/// Everything the pipeline needs to know about a source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
    /// Demuxer name(s), e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub container: String,
    pub video: VideoInfo,
    pub audio: Vec<AudioTrack>,
    /// One entry per video packet, sorted by presentation timestamp. Not serialised: a plan is
    /// made from it once and it can hold hundreds of thousands of entries.
    #[serde(skip)]
    pub frames: Vec<FrameInfo>,
    /// Where each video packet with a pts lies in the source (file order), for the byte range
    /// a segment reads ([`super::source::segment_byte_range`]). Not serialised, as `frames`.
    #[serde(skip)]
    pub video_packets_at: Vec<PacketSpan>,
    /// Whole seconds added to every timestamp in intermediate files and removed in the final
    /// mux: NUT cannot store negative timestamps, which AAC priming and some containers produce.
    pub intermediate_offset_seconds: i64,
    /// Microseconds added to every timestamp of the output, so that nothing is shown before
    /// time 0: positive only for sources whose first frame or first audible sample is before
    /// 0 (an MPEG-TS clock that wraps just after the start), which an MP4/MOV edit list would
    /// otherwise hide. ffmpeg shifts such files the same way.
    #[serde(default)]
    pub output_shift_micros: i64,
    /// Streams other than the transcoded video and the audio tracks (subtitles, cover art,
    /// attachments, other video, timecode and data), in source order.
    #[serde(default)]
    pub other_streams: Vec<crate::extras::OtherStream>,
    #[serde(default)]
    pub chapters: Vec<crate::extras::Chapter>,
    /// The container's global tags (title, artist, …).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The timestamp discontinuities of the source (two recordings joined with `cat`), which
    /// every reader of the source removes: all timestamps here are of the repaired timeline.
    #[serde(default)]
    pub timestamp_repair: TimestampRepair,
}

/// A video packet's pts (stream time base, repaired timeline) and its bytes in the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketSpan {
    pub pts: i64,
    /// Byte offset in the source.
    pub position: u64,
    pub size: u64,
}

impl MediaInfo {
    /// Keyframe presentation timestamps in seconds from the first frame.
    pub fn keyframe_seconds(&self) -> Vec<f64> {
        let video = &self.video;
        self.frames
            .iter()
            .filter(|f| f.key)
            .map(|f| video.time_base.seconds(f.pts - video.first_pts))
            .collect()
    }
}
