//! Probe: what a source file holds, read from its packets without decoding.
//!
//! One pass over the container gives the video packet list (timestamps and keyframe flags, the
//! planner's input) and the facts about every audio track that the final remux needs to keep
//! (language, title, disposition, start time). Sources are checked here, once, so that every
//! later step can assume a readable, decodable video stream.

use super::clock::{DtsOnlyClock, JumpDetector, TimestampRepair};
use super::picture::{ColorTags, HdrStatic};
use super::source::{self, ReadFailure, Source, ZeroedSource};
use super::util::{self, time_base};
use super::MediaError;
use crate::plan::{FrameInfo, TimeBase};
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Why a source cannot be transcoded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{path}: no such file")]
    NotFound { path: PathBuf },
    #[error("{path}: is a directory, not a video file")]
    IsDirectory { path: PathBuf },
    #[error("{path}: is empty (0 bytes)")]
    Empty { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `reason`: what FFmpeg logged when it refused the file, followed by the text of `code`, the
    /// error it returned (not a `#[source]`: the reason already says it).
    #[error("{path}: FFmpeg cannot open it as media: {reason}")]
    NotMedia {
        path: PathBuf,
        reason: String,
        code: ffmpeg::Error,
    },
    #[error("{path}: has no video stream (streams found: {found})")]
    NoVideo { path: PathBuf, found: String },
    #[error("{path}: video codec {codec} cannot be decoded by this FFmpeg build")]
    Undecodable { path: PathBuf, codec: String },
    #[error("{path}: the video stream has no frames")]
    NoFrames { path: PathBuf },
    #[error("{path}: none of its {packets} video packets has a timestamp (a raw elementary stream?); put it in a container first, e.g. `ffmpeg -r 25 -i INPUT -c copy OUTPUT.mkv` with its real frame rate")]
    NoTimestamps { path: PathBuf, packets: u64 },
    /// The container declares a longer stream (or file) than its packets hold: a cut download or
    /// an interrupted recording. Seconds, first readable timestamp to the end of the last packet.
    #[error("{path}: truncated or damaged: the container declares {declared_seconds:.2} s of {what} but only {read_seconds:.2} s can be read")]
    Truncated {
        path: PathBuf,
        /// `video` or `media` (the whole file, when the video track declares no length).
        what: &'static str,
        declared_seconds: f64,
        read_seconds: f64,
    },
    /// Reading the source's bytes failed (see [`super::source::SourceErrorKind`]).
    #[error("{path}: read failed: {source}")]
    Source {
        path: PathBuf,
        #[source]
        source: super::source::SourceError,
    },
    #[error("{path}: read error after {read} video frames: {source}")]
    Read {
        path: PathBuf,
        read: u64,
        #[source]
        source: ffmpeg::Error,
    },
    #[error("{path}: the first video frame cannot be decoded ({reason})")]
    FirstFrame { path: PathBuf, reason: String },
}

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

/// Checks that `path` names a readable, non-empty regular file.
pub fn check_source_file(path: &Path) -> Result<u64, ProbeError> {
    let metadata = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ProbeError::NotFound {
            path: path.to_owned(),
        },
        _ => ProbeError::Io {
            path: path.to_owned(),
            source,
        },
    })?;
    if metadata.is_dir() {
        return Err(ProbeError::IsDirectory {
            path: path.to_owned(),
        });
    }
    if metadata.len() == 0 {
        return Err(ProbeError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(metadata.len())
}

/// Reads `path` and describes its video and audio streams.
///
/// Fails when the file is not media, has no decodable video stream, or is visibly truncated (fewer
/// video packets than the container declares).
pub fn probe(path: &Path) -> Result<MediaInfo, ProbeError> {
    util::init();
    check_source_file(path)?;
    let source = Source::file(path).map_err(|error| match error {
        MediaError::Io { path, source } => ProbeError::Io { path, source },
        other => ProbeError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(other.to_string()),
        },
    })?;
    probe_source(&source, PacketReads::IndexWherePossible)
}

/// How [`probe_source`] reads the packets it lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketReads {
    /// Every packet's bytes are read.
    All,
    /// For MP4/MOV, packets whose listing does not need their bytes are not fetched: their
    /// timestamps, sizes, flags and positions come from the index the demuxer read. That is
    /// streams of a codec on [`index_only_codec`]'s list (AAC, ALAC, PCM audio, ProRes), and
    /// H.264/HEVC video whose index has a sync-sample table (some samples not keyframes), whose
    /// keyframes are then the table's. (Reading the packets, libavformat's parser flags
    /// keyframes from their headers instead: IDR slices and recovery points, which agree with
    /// `stss` in every sample here. A keyframe only the bitstream shows is lost as a cut
    /// candidate, which costs lead-in, never exactness; the workers seek by the same table.)
    /// Every keyframe a plan decodes from is checked against its own bytes
    /// ([`super::keyframes`]), so a table that lies never makes a false cut. Video without
    /// such a table (an empty `stss`, or none: every sample a keyframe) is read as with
    /// [`PacketReads::All`], as is every other stream and container.
    IndexWherePossible,
}

/// [`probe`] of any [`Source`]: errors name the source by its name.
pub fn probe_source(source: &Source, reads: PacketReads) -> Result<MediaInfo, ProbeError> {
    util::init();
    let path = source.name();
    let size_bytes = source.size_bytes();
    if size_bytes == 0 {
        return Err(ProbeError::Empty {
            path: path.to_owned(),
        });
    }
    let zeroed = Arc::new(ZeroedSource {
        inner: source.bytes().clone(),
        zeroed: Mutex::default(),
    });
    let reading = source.over(zeroed.clone());
    let failure = ReadFailure::default();
    util::clear_ffmpeg_error();
    let mut input = source::open_raw(&reading, &failure).map_err(|code| match failure.take() {
        Some(cause) => ProbeError::Source {
            path: path.to_owned(),
            source: cause,
        },
        None => ProbeError::NotMedia {
            path: path.to_owned(),
            reason: match util::take_ffmpeg_error() {
                Some(logged) => format!("{logged} ({code})"),
                None => code.to_string(),
            },
            code,
        },
    })?;
    let listing = if reads == PacketReads::IndexWherePossible {
        index_listing(&input)
    } else {
        IndexListing::default()
    };
    *zeroed.zeroed.lock().unwrap_or_else(|p| p.into_inner()) = listing.ranges.clone();
    let container = input.format().name().to_owned();

    let video_stream = input
        .streams()
        .filter(|stream| stream.parameters().medium() == ffmpeg::media::Type::Video)
        .find(|stream| {
            !stream
                .disposition()
                .contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC)
        })
        .ok_or_else(|| ProbeError::NoVideo {
            path: path.to_owned(),
            found: describe_streams(&input),
        })?;
    let video_index = video_stream.index();
    let parameters = video_stream.parameters();
    let codec_id = parameters.id();
    let codec = util::codec_name(codec_id);
    if codec_id == ffmpeg::codec::Id::None || ffmpeg::decoder::find(codec_id).is_none() {
        let codec = if codec_id == ffmpeg::codec::Id::None {
            unknown_codec_label(&parameters)
        } else {
            codec
        };
        return Err(ProbeError::Undecodable {
            path: path.to_owned(),
            codec,
        });
    }
    // SAFETY: codecpar of an open stream is valid while `input` lives.
    let (width, height, format) = unsafe {
        let par = &*parameters.as_ptr();
        (par.width, par.height, par.format)
    };
    let pixel_format = pixel_format_name(format);
    let video_time_base = time_base(video_stream.time_base());
    let frame_rate = video_stream.avg_frame_rate();
    // The container's pixel aspect wins over the bitstream's, FFmpeg's own rule.
    let sample_aspect_ratio = {
        // SAFETY: the context and the stream are open; a null frame is allowed.
        let sar = unsafe {
            ffmpeg::ffi::av_guess_sample_aspect_ratio(
                input.as_ptr() as *mut _,
                video_stream.as_ptr() as *mut _,
                std::ptr::null_mut(),
            )
        };
        FrameRate {
            num: sar.num,
            den: sar.den,
        }
    };
    // SAFETY: as above.
    let color = unsafe {
        let par = &*parameters.as_ptr();
        ColorTags {
            range: par.color_range as i32,
            space: par.color_space as i32,
            primaries: par.color_primaries as i32,
            transfer: par.color_trc as i32,
        }
    };
    let display_matrix = util::display_matrix(&video_stream);
    let video_metadata = dictionary(&video_stream.metadata());

    let mut audio: Vec<AudioTrack> = input
        .streams()
        .filter(|stream| stream.parameters().medium() == ffmpeg::media::Type::Audio)
        .map(|stream| {
            let parameters = stream.parameters();
            // SAFETY: codecpar of an open stream is valid while `input` lives.
            let (sample_rate, channels, initial_padding) = unsafe {
                let par = &*parameters.as_ptr();
                (
                    par.sample_rate.max(0) as u32,
                    par.ch_layout.nb_channels.max(0) as u32,
                    priming_from_header(par).unwrap_or(par.initial_padding.max(0) as u32),
                )
            };
            AudioTrack {
                stream_index: stream.index(),
                codec: util::codec_name(parameters.id()),
                sample_rate,
                channels,
                time_base: time_base(stream.time_base()),
                first_pts: None,
                end_pts: None,
                priming_samples: initial_padding,
                packets: 0,
                last_packet_duration: 0,
                disposition: stream.disposition().bits(),
                metadata: dictionary(&stream.metadata()),
            }
        })
        .collect();

    let mut frames: Vec<FrameInfo> = Vec::new();
    let mut video_packets_at: Vec<PacketSpan> = Vec::new();
    // Indices into `frames` of packets that came without a pts (see clock::infer_missing_pts).
    let mut frames_without_pts: Vec<usize> = Vec::new();
    let mut last_duration = 0i64;
    let mut max_pts = i64::MIN;
    let mut corrupt_in_a_row = 0u32;
    let mut video_packets = 0u64;
    let mut video_bytes = 0u64;
    // Earliest start and latest end of any packet of any stream, in seconds: what the file holds.
    let mut readable = ReadableSpan::default();
    let stream_time_bases: Vec<TimeBase> = input
        .streams()
        .map(|stream| time_base(stream.time_base()))
        .collect();
    let mut jumps = JumpDetector::new(&input, video_index);
    loop {
        // A fresh packet per read: `Packet::read` does not release the previous one.
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut input) {
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
                        read: frames.len() as u64,
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
            video_packets += 1;
            video_bytes += packet.size() as u64;
            // Packets outside an MP4 edit list are decoded but their frames never come out of the
            // decoder: they are not frames of the video.
            // SAFETY: the packet was just filled by av_read_frame; ffmpeg-next's Flags drops
            // this bit, so read the raw field.
            let discarded = unsafe { (*ffmpeg::packet::Ref::as_ptr(&packet)).flags }
                & ffmpeg::ffi::AV_PKT_FLAG_DISCARD
                != 0;
            let Some(pts) = packet.pts().or(packet.dts()).filter(|_| !discarded) else {
                continue;
            };
            if packet.pts().is_none() {
                frames_without_pts.push(frames.len());
            }
            if pts >= max_pts {
                max_pts = pts;
                last_duration = packet.duration();
            }
            // Video listed from the index takes its keyframes from the index: the packets' own
            // flags come from libavformat's parser, which the unfetched bytes would mislead.
            let key = u64::try_from(packet.position())
                .ok()
                .and_then(|position| listing.keyframe_at(index, position))
                .unwrap_or_else(|| packet.is_key());
            frames.push(FrameInfo {
                pts,
                dts: packet.dts(),
                key,
            });
            if let Ok(position) = u64::try_from(packet.position()) {
                video_packets_at.push(PacketSpan {
                    pts,
                    position,
                    size: packet.size() as u64,
                });
            }
        } else if let Some(track) = audio.iter_mut().find(|track| track.stream_index == index) {
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
    let timestamp_repair = jumps.finish();
    // Packets with a dts but no pts among packets with both (MPEG program streams leave some
    // anchor frames so): listed at the time the decoder shows them, not at their decode time,
    // or segments would be cut around the wrong frames. A stream of dts only is the clock's.
    if frames_without_pts.len() < frames.len() {
        super::clock::infer_missing_pts(&mut frames, &frames_without_pts);
    }
    if frames.is_empty() && video_packets > 0 {
        return Err(ProbeError::NoTimestamps {
            path: path.to_owned(),
            packets: video_packets,
        });
    }
    if frames.is_empty() {
        return Err(ProbeError::NoFrames {
            path: path.to_owned(),
        });
    }
    frames.sort_by_key(|frame| frame.pts);
    check_complete(
        path,
        &input,
        video_index,
        &frames,
        last_duration,
        typical_frame_ticks(&frames, frame_rate, video_time_base),
        video_time_base,
        readable,
    )?;
    // Frames the decoder never shows (packets before the first keyframe of a recording that
    // starts mid-GOP) are not frames of the video: ffmpeg drops them too.
    let (first_shown, hdr) = first_shown_pts(source, video_index, &timestamp_repair)?;
    if let Some(first_shown) = first_shown {
        frames.retain(|frame| frame.pts >= first_shown);
    }
    if frames.is_empty() {
        return Err(ProbeError::FirstFrame {
            path: path.to_owned(),
            reason: "no video frame can be decoded".into(),
        });
    }

    let first_pts = frames[0].pts;
    let last_pts = frames[frames.len() - 1].pts;
    let typical = typical_frame_ticks(&frames, frame_rate, video_time_base);
    // The last frame's duration: the longer of its packet's and what the stream's declared length
    // leaves for it (MP4 duration, or Matroska's per-track DURATION tag: Matroska keeps no frame
    // durations and WebM demuxes them as 1 ms); else the usual frame spacing.
    let declared_end = declared_stream_end(&input, video_index, video_time_base);
    let declared_ticks = declared_end
        .map(|end| end - last_pts)
        .filter(|&ticks| ticks > 0 && ticks <= typical * 64);
    let last_frame_ticks = match (last_duration > 0, declared_ticks) {
        (true, Some(declared)) => last_duration.max(declared),
        (true, None) => last_duration,
        (false, declared) => declared.unwrap_or(typical),
    };
    let rotation_degrees = display_matrix.as_ref().map_or(0.0, util::rotation_degrees);
    let keyframe_count = frames.iter().filter(|frame| frame.key).count() as u64;
    audio.retain(|track| track.packets > 0);
    let earliest = audio
        .iter()
        .filter_map(|track| track.first_pts.map(|pts| track.time_base.seconds(pts)))
        .fold(video_time_base.seconds(first_pts), f64::min);
    // One second of headroom beyond the earliest start: a re-encoded audio track starts earlier
    // by its encoder's priming (AAC 1024, Opus 312 samples).
    let intermediate_offset_seconds = (-earliest).max(0.0).ceil() as i64 + 1;
    let earliest_shown = audio
        .iter()
        .filter_map(AudioTrack::audible_start_seconds)
        .fold(video_time_base.seconds(first_pts), f64::min);
    // Below a millisecond is rounding, not frames before 0.
    let output_shift_micros = if earliest_shown < -0.001 {
        (-earliest_shown * 1e6).ceil() as i64
    } else {
        0
    };
    let audio_indices: Vec<usize> = audio.iter().map(|track| track.stream_index).collect();
    let (other_streams, chapters, tags) =
        super::streams::collect(&input, video_index, &audio_indices);

    Ok(MediaInfo {
        path: path.to_owned(),
        size_bytes,
        container,
        video: VideoInfo {
            stream_index: video_index,
            codec,
            width: width.max(0) as u32,
            height: height.max(0) as u32,
            pixel_format,
            time_base: video_time_base,
            frame_rate: FrameRate {
                num: frame_rate.numerator(),
                den: frame_rate.denominator(),
            },
            sample_aspect_ratio,
            first_pts,
            end_pts: last_pts.saturating_add(last_frame_ticks.max(1)),
            frame_count: frames.len() as u64,
            keyframe_count,
            packet_bytes: video_bytes,
            display_matrix,
            rotation_degrees,
            metadata: video_metadata,
            color,
            hdr,
        },
        audio,
        frames,
        video_packets_at,
        intermediate_offset_seconds,
        output_shift_micros,
        other_streams,
        chapters,
        tags,
        timestamp_repair,
    })
}

/// Decodes the video from the start of the file until the first frame comes out and returns its
/// presentation timestamp, so a stream the decoder cannot handle is reported now rather than in
/// every worker. Packets are fed in file order, as every worker does (an MP4 edit list that
/// starts after the first keyframe, or a recording that starts mid-GOP, needs several before
/// anything is shown). `None` when the frame has no timestamp. Also returns the HDR10 static
/// metadata the first frame (or the stream) carries.
fn first_shown_pts(
    source: &Source,
    video_index: usize,
    repair: &TimestampRepair,
) -> Result<(Option<i64>, HdrStatic), ProbeError> {
    /// Packets fed before giving up: far more than any decoder's delay or the longest GOP
    /// before a first keyframe that a real recording has.
    const MAX_PACKETS: usize = 4096;
    let path = source.name();
    let fail = |reason: String| ProbeError::FirstFrame {
        path: path.to_owned(),
        reason,
    };
    let (mut input, failure) = source::open(source).map_err(|e| match e {
        MediaError::Source { path, source } => ProbeError::Source { path, source },
        other => fail(other.to_string()),
    })?;
    let stream = input
        .stream(video_index)
        .ok_or_else(|| fail("stream vanished".into()))?;
    let context = ffmpeg::codec::Context::from_parameters(stream.parameters())
        .map_err(|e| fail(e.to_string()))?;
    let mut decoder = context.decoder().video().map_err(|e| fail(e.to_string()))?;
    let mut frame = ffmpeg::frame::Video::empty();
    let mut repairer = repair.repairer();
    let mut clock = DtsOnlyClock::default();
    let shown = |frame: &ffmpeg::frame::Video,
                 input: &ffmpeg::format::context::Input,
                 clock: &mut DtsOnlyClock|
     -> Result<(Option<i64>, HdrStatic), ProbeError> {
        if frame.width() == 0 || frame.height() == 0 {
            return Err(ProbeError::FirstFrame {
                path: path.to_owned(),
                reason: "decoded frame has no size".into(),
            });
        }
        let hdr = input
            .stream(video_index)
            .map(|stream| HdrStatic::read(frame, &stream))
            .unwrap_or_default();
        Ok((clock.pts_of(frame), hdr))
    };
    let mut last_error: Option<String> = None;
    let mut fed = 0usize;
    while fed < MAX_PACKETS {
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(error) => {
                return Err(match failure.take() {
                    Some(cause) => ProbeError::Source {
                        path: path.to_owned(),
                        source: cause,
                    },
                    None => fail(error.to_string()),
                })
            }
        }
        if packet.stream() != video_index {
            continue;
        }
        fed += 1;
        repairer.apply(&mut packet);
        if let Err(error) = decoder.send_packet(&packet) {
            // Packets before the first keyframe may not decode; a later one will.
            last_error = Some(error.to_string());
            continue;
        }
        clock.fed(&packet);
        if decoder.receive_frame(&mut frame).is_ok() {
            return shown(&frame, &input, &mut clock);
        }
    }
    decoder.send_eof().map_err(|e| fail(e.to_string()))?;
    match decoder.receive_frame(&mut frame) {
        Ok(()) => shown(&frame, &input, &mut clock),
        Err(error) => Err(fail(last_error.unwrap_or_else(|| error.to_string()))),
    }
}

/// The earliest start and latest end of the packets read, in seconds.
#[derive(Clone, Copy, Debug, Default)]
struct ReadableSpan {
    range: Option<(f64, f64)>,
}

impl ReadableSpan {
    fn add(&mut self, start: f64, end: f64) {
        self.range = Some(match self.range {
            Some((first, last)) => (first.min(start), last.max(end)),
            None => (start, end),
        });
    }

    fn seconds(self) -> f64 {
        self.range.map_or(0.0, |(first, last)| last - first)
    }
}

/// True when a container that declares `declared` seconds but holds only `read` seconds is
/// missing part of its media. Legitimate files end a little before what they declare (a last
/// frame's duration rounded, audio priming, a muxer's rounding to milliseconds), so the shortfall
/// must exceed three frames, half a second and 1% of the declared length: a cut download or an
/// interrupted recording misses far more.
pub fn falls_short(declared: f64, read: f64, frame_seconds: f64) -> bool {
    let shortfall = declared - read;
    shortfall > (3.0 * frame_seconds).max(0.5) && shortfall > declared * 0.01
}

/// Refuses a source whose container declares more than its packets hold, the same way for every
/// container: the video track's declared length (MP4 and AVI track durations, which count AVI's
/// empty dropped-frame entries; Matroska's per-track DURATION tag) against the span its frames
/// cover, or, when the track declares nothing, the file's declared duration (Matroska's segment
/// duration, WebM) against the span of all its packets. Lengths FFmpeg only estimated (from the
/// last timestamps of an MPEG-TS, or from the bit rate) declare nothing: there is no index to
/// contradict what was read.
///
/// `frames` sorted by pts; `last_duration` the last frame's packet duration (0 when unknown) and
/// `typical` the usual frame spacing, both in ticks of `time_base`.
#[allow(clippy::too_many_arguments)]
fn check_complete(
    path: &Path,
    input: &ffmpeg::format::context::Input,
    video_index: usize,
    frames: &[FrameInfo],
    last_duration: i64,
    typical: i64,
    time_base: TimeBase,
    readable: ReadableSpan,
) -> Result<(), ProbeError> {
    // SAFETY: the context is open for the lifetime of `input`.
    let method = unsafe { (*input.as_ptr()).duration_estimation_method };
    if method != ffmpeg::ffi::AVDurationEstimationMethod::AVFMT_DURATION_FROM_STREAM {
        return Ok(());
    }
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return Ok(());
    };
    let frame_seconds = time_base.seconds(typical);
    // The index lists every frame and every one was read: nothing is missing, however long the
    // last frame is shown (MP4, AVI).
    let indexed = input
        .stream(video_index)
        .map_or(0, |stream| stream.frames());
    if indexed > 0 && frames.len() as i64 >= indexed {
        return Ok(());
    }
    // The last frame may be shown as long as the longest frame before it: a variable-rate
    // recording (a screen capture holding a still picture) ends on a long frame, which Matroska
    // keeps no duration for, while a cut file ends on an ordinary one.
    let longest_gap = frames
        .windows(2)
        .map(|pair| pair[1].pts - pair[0].pts)
        .max()
        .unwrap_or(0);
    let last_ticks = last_duration.max(typical).max(longest_gap);
    let video_read = time_base.seconds(last.pts + last_ticks - first.pts);
    let truncated = |what, declared_seconds: f64, read_seconds: f64| {
        if falls_short(declared_seconds, read_seconds, frame_seconds) {
            Err(ProbeError::Truncated {
                path: path.to_owned(),
                what,
                declared_seconds,
                read_seconds,
            })
        } else {
            Ok(())
        }
    };
    let stream = input.stream(video_index);
    let track_declared = stream.as_ref().and_then(|stream| {
        if stream.duration() > 0 && stream.duration() != ffmpeg::ffi::AV_NOPTS_VALUE {
            Some(time_base.seconds(stream.duration()))
        } else {
            stream.metadata().get("DURATION").and_then(parse_clock)
        }
    });
    if let Some(declared) = track_declared {
        return truncated("video", declared, video_read);
    }
    if input.duration() > 0 {
        let declared = input.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE);
        return truncated("media", declared, readable.seconds());
    }
    Ok(())
}

/// Where the container says the stream ends, in the stream's time base.
fn declared_stream_end(
    input: &ffmpeg::format::context::Input,
    index: usize,
    time_base: TimeBase,
) -> Option<i64> {
    let stream = input.stream(index)?;
    let start = if stream.start_time() == ffmpeg::ffi::AV_NOPTS_VALUE {
        0
    } else {
        stream.start_time()
    };
    if stream.duration() > 0 && stream.duration() != ffmpeg::ffi::AV_NOPTS_VALUE {
        return Some(start + stream.duration());
    }
    let to_ticks = |seconds: f64| {
        (time_base.num > 0)
            .then(|| (seconds * f64::from(time_base.den) / f64::from(time_base.num)).round() as i64)
    };
    if let Some(seconds) = stream.metadata().get("DURATION").and_then(parse_clock) {
        return to_ticks(seconds);
    }
    // WebM keeps only the file's duration; it is the video's when nothing else is in the file.
    if input.streams().count() == 1 && input.duration() > 0 {
        // SAFETY: the context is open for the lifetime of `input`.
        let raw_start = unsafe { (*input.as_ptr()).start_time };
        let file_start = if raw_start == ffmpeg::ffi::AV_NOPTS_VALUE {
            0
        } else {
            raw_start
        };
        return to_ticks(
            (file_start + input.duration()) as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE),
        );
    }
    None
}

/// Parses `HH:MM:SS.fraction` into seconds.
fn parse_clock(text: &str) -> Option<f64> {
    let mut parts = text.trim().split(':');
    let (hours, minutes, seconds) = (parts.next()?, parts.next()?, parts.next()?);
    Some(
        hours.parse::<f64>().ok()? * 3600.0
            + minutes.parse::<f64>().ok()? * 60.0
            + seconds.parse::<f64>().ok()?,
    )
}

/// Opus states its pre-skip (samples to drop at the start) in its `OpusHead` header, bytes 10–11.
///
/// # Safety
/// `par` must be valid codec parameters whose extradata holds `extradata_size` bytes.
unsafe fn priming_from_header(par: &ffmpeg::ffi::AVCodecParameters) -> Option<u32> {
    if par.codec_id != ffmpeg::ffi::AVCodecID::AV_CODEC_ID_OPUS
        || par.extradata.is_null()
        || par.extradata_size < 12
    {
        return None;
    }
    // SAFETY: guaranteed by the caller; at least 12 bytes were checked above.
    let header = unsafe { std::slice::from_raw_parts(par.extradata, 12) };
    (&header[..8] == b"OpusHead").then(|| u32::from(u16::from_le_bytes([header[10], header[11]])))
}

/// The usual distance between frames in ticks: from the average frame rate, else the median gap.
fn typical_frame_ticks(
    frames: &[FrameInfo],
    frame_rate: ffmpeg::Rational,
    time_base: TimeBase,
) -> i64 {
    if frame_rate.numerator() > 0 && frame_rate.denominator() > 0 && time_base.num > 0 {
        let ticks = (i64::from(frame_rate.denominator()) * i64::from(time_base.den))
            / (i64::from(frame_rate.numerator()) * i64::from(time_base.num));
        if ticks > 0 {
            return ticks;
        }
    }
    let mut gaps: Vec<i64> = frames
        .windows(2)
        .map(|pair| pair[1].pts - pair[0].pts)
        .filter(|&gap| gap > 0)
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or(1)
}

fn dictionary(dictionary: &ffmpeg::DictionaryRef<'_>) -> BTreeMap<String, String> {
    dictionary
        .iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

fn pixel_format_name(format: i32) -> String {
    // SAFETY: av_get_pix_fmt_name accepts any value and returns null for unknown ones.
    let name = unsafe {
        ffmpeg::ffi::av_get_pix_fmt_name(std::mem::transmute::<i32, ffmpeg::ffi::AVPixelFormat>(
            format,
        ))
    };
    if name.is_null() {
        "unknown".to_owned()
    } else {
        // SAFETY: non-null names are static NUL-terminated strings.
        unsafe { std::ffi::CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    }
}

/// A readable label for a stream whose codec FFmpeg does not know: its fourcc tag.
fn unknown_codec_label(parameters: &ffmpeg::codec::Parameters) -> String {
    // SAFETY: codecpar is valid while the input lives.
    let tag = unsafe { (*parameters.as_ptr()).codec_tag };
    let bytes = tag.to_le_bytes();
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!(
            "with tag '{}' (unknown to FFmpeg)",
            String::from_utf8_lossy(&bytes)
        )
    } else {
        format!("with tag 0x{tag:08x} (unknown to FFmpeg)")
    }
}

fn describe_streams(input: &ffmpeg::format::context::Input) -> String {
    let kinds: Vec<String> = input
        .streams()
        .map(|stream| {
            let parameters = stream.parameters();
            format!(
                "{:?} {}",
                parameters.medium(),
                util::codec_name(parameters.id())
            )
            .to_lowercase()
        })
        .collect();
    if kinds.is_empty() {
        "none".to_owned()
    } else {
        kinds.join(", ")
    }
}

/// Codecs whose MP4/MOV packets FFmpeg passes on exactly as the index lists them, without
/// looking inside, so their bytes need not be read to list them. Not MP2/MP3, AC-3, E-AC-3,
/// MPEG-1, VC-1, VP8, VP9 (FFmpeg 5.1's mov demuxer asks for them to be parsed) or EIA-608 and
/// DV (inspected). H.264/HEVC video qualifies only with a sync-sample table
/// ([`listed_by_sync_table`]), and its keyframes are then taken from the index.
fn index_only_codec(id: ffmpeg::codec::Id) -> bool {
    use ffmpeg::codec::Id;
    matches!(
        id,
        Id::PRORES
            | Id::AAC
            | Id::ALAC
            | Id::PCM_S16LE
            | Id::PCM_S16BE
            | Id::PCM_S24LE
            | Id::PCM_S24BE
            | Id::PCM_F32LE
    )
}

/// True for H.264/HEVC video whose MP4/MOV index entries (`flags`, one per sample) hold at
/// least one sample that is not a keyframe: the track has a sync-sample table with entries,
/// which the index's keyframe flags are. (With an empty `stss` FFmpeg 5.1's mov demuxer marks
/// every sample a keyframe and parses the packets for the real ones; without `stss` every
/// sample is one: either way the table says nothing, and the packets are read.)
fn listed_by_sync_table(id: ffmpeg::codec::Id, flags: &[i32]) -> bool {
    use ffmpeg::codec::Id;
    matches!(id, Id::H264 | Id::HEVC)
        && flags
            .iter()
            .any(|flags| flags & ffmpeg::ffi::AVINDEX_KEYFRAME == 0)
}

/// What [`PacketReads::IndexWherePossible`] takes from the MP4/MOV index instead of the
/// packets' bytes.
#[derive(Debug, Default)]
struct IndexListing {
    /// Byte ranges of packets not fetched (sorted, merged).
    ranges: Vec<std::ops::Range<u64>>,
    /// For video [`listed_by_sync_table`]: (stream index, sample position) → keyframe, from the
    /// sync-sample table.
    keyframes: std::collections::HashMap<(usize, u64), bool>,
}

impl IndexListing {
    /// Whether the index calls the sample of `stream` at byte `position` a keyframe; `None`
    /// when that stream's keyframes are not taken from the index (or the sample is not in it).
    fn keyframe_at(&self, stream: usize, position: u64) -> Option<bool> {
        self.keyframes.get(&(stream, position)).copied()
    }
}

/// What [`PacketReads::IndexWherePossible`] need not fetch: for the MP4/MOV demuxer, the index
/// entries of streams with an [`index_only_codec`] and of video [`listed_by_sync_table`] (whose
/// keyframe flags it keeps). Empty for any other container. (Fragments the demuxer finds later
/// are not in the index yet: they are read.)
fn index_listing(input: &ffmpeg::format::context::Input) -> IndexListing {
    let mut listing = IndexListing::default();
    if !input.format().name().starts_with("mov,") {
        return listing;
    }
    let mut ranges = Vec::new();
    for stream in input.streams() {
        let id = stream.parameters().id();
        let video = stream.parameters().medium() == ffmpeg::media::Type::Video;
        let coded_video = video && matches!(id, ffmpeg::codec::Id::H264 | ffmpeg::codec::Id::HEVC);
        if !(index_only_codec(id) || coded_video) {
            continue;
        }
        // (position, size, flags) of every index entry.
        let mut entries: Vec<(i64, i32, i32)> = Vec::new();
        // SAFETY: the stream belongs to the open `input`; the entries are read before any other
        // call on the context, as avformat_index_get_entry requires.
        unsafe {
            let stream_ptr = stream.as_ptr() as *mut ffmpeg::ffi::AVStream;
            let count = ffmpeg::ffi::avformat_index_get_entries_count(stream_ptr);
            for index in 0..count {
                let entry = ffmpeg::ffi::avformat_index_get_entry(stream_ptr, index);
                if !entry.is_null() {
                    entries.push(((*entry).pos, (*entry).size(), (*entry).flags()));
                }
            }
        }
        if !index_only_codec(id) {
            let flags: Vec<i32> = entries.iter().map(|entry| entry.2).collect();
            // SAFETY: codecpar of an open stream is valid while `input` lives; extradata holds
            // extradata_size bytes when non-null.
            let configured = unsafe {
                let par = &*stream.parameters().as_ptr();
                !par.extradata.is_null() && par.extradata_size > 0 && *par.extradata == 1
            };
            // Length-prefixed samples with their decoder configuration (avcC/hvcC) only:
            // anything else is read.
            if !configured || !listed_by_sync_table(id, &flags) {
                continue;
            }
            for &(position, _, flags) in &entries {
                if let Ok(position) = u64::try_from(position) {
                    listing.keyframes.insert(
                        (stream.index(), position),
                        flags & ffmpeg::ffi::AVINDEX_KEYFRAME != 0,
                    );
                }
            }
        }
        for (position, size, _) in entries {
            let (Ok(position), Ok(size)) = (u64::try_from(position), u64::try_from(size)) else {
                continue;
            };
            if size > 0 {
                ranges.push(position..position + size);
            }
        }
    }
    ranges.sort_by_key(|range| range.start);
    for range in ranges {
        match listing.ranges.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => listing.ranges.push(range),
        }
    }
    listing
}
