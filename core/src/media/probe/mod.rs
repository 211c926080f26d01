//! Probe: what a source file holds, read from its packets without decoding.
//!
//! One pass over the container gives the video packet list (timestamps and keyframe flags, the
//! planner's input) and the facts about every audio track that the final remux needs to keep
//! (language, title, disposition, start time). Sources are checked here, once, so that every
//! later step can assume a readable, decodable video stream.
//!
//! The steps, one module each: the stream headers (`header`), the MP4/MOV index listing
//! (`index`), one pass over the packets with a collector per stream (`collect`), the length
//! checks (`length`), the first decodable frame (`first_frame`); `mod.rs` runs them in order.

mod collect;
mod error;
mod first_frame;
mod header;
mod index;
mod info;
mod length;

pub use error::ProbeError;
pub use info::{AudioTrack, FrameRate, MediaInfo, PacketSpan, VideoInfo};
pub use length::falls_short;

use super::source::{self, ReadFailure, Source, ZeroedSource};
use super::util;
use super::MediaError;
use crate::plan::FrameInfo;
use collect::Collected;
use ffmpeg_next as ffmpeg;
use header::VideoHeader;
use index::IndexListing;
use std::path::Path;
use std::sync::{Arc, Mutex};

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
    /// streams of a codec on `index_only_codec`'s list (AAC, ALAC, PCM audio, ProRes), and
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
    let (mut input, failure, listing) = open_listed(source, reads)?;
    let container = input.format().name().to_owned();
    let header = VideoHeader::read(&input, path)?;
    let audio = header::audio_tracks(&input);
    let Collected {
        video: packets,
        mut audio,
        readable,
        timestamp_repair,
    } = collect::read_packets(&mut input, &failure, path, header.index, audio, &listing)?;
    let time_base = header.time_base;
    let mut frames = listed_frames(
        path,
        packets.frames,
        &packets.frames_without_pts,
        packets.packets,
    )?;
    length::check_complete(
        path,
        &input,
        header.index,
        &frames,
        packets.last_duration,
        length::typical_frame_ticks(&frames, header.frame_rate, time_base),
        time_base,
        readable,
    )?;
    // Frames the decoder never shows (packets before the first keyframe of a recording that
    // starts mid-GOP) are not frames of the video: ffmpeg drops them too.
    let (first_shown, hdr) = first_frame::first_shown_pts(source, header.index, &timestamp_repair)?;
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
    let last_frame_ticks = length::last_frame_ticks(
        &input,
        header.index,
        time_base,
        last_pts,
        packets.last_duration,
        length::typical_frame_ticks(&frames, header.frame_rate, time_base),
    );
    let rotation_degrees = header
        .display_matrix
        .as_ref()
        .map_or(0.0, util::rotation_degrees);
    let keyframe_count = frames.iter().filter(|frame| frame.key).count() as u64;
    audio.retain(|track| track.packets > 0);
    let (intermediate_offset_seconds, output_shift_micros) =
        start_offsets(time_base.seconds(first_pts), &audio);
    let audio_indices: Vec<usize> = audio.iter().map(|track| track.stream_index).collect();
    let (other_streams, chapters, tags) =
        super::streams::collect(&input, header.index, &audio_indices);

    Ok(MediaInfo {
        path: path.to_owned(),
        size_bytes,
        container,
        video: VideoInfo {
            stream_index: header.index,
            codec: header.codec,
            width: header.width,
            height: header.height,
            pixel_format: header.pixel_format,
            time_base,
            frame_rate: FrameRate {
                num: header.frame_rate.numerator(),
                den: header.frame_rate.denominator(),
            },
            sample_aspect_ratio: header.sample_aspect_ratio,
            first_pts,
            end_pts: last_pts.saturating_add(last_frame_ticks.max(1)),
            frame_count: frames.len() as u64,
            keyframe_count,
            packet_bytes: packets.bytes,
            display_matrix: header.display_matrix,
            rotation_degrees,
            metadata: header.metadata,
            color: header.color,
            hdr,
        },
        audio,
        frames,
        video_packets_at: packets.packets_at,
        intermediate_offset_seconds,
        output_shift_micros,
        other_streams,
        chapters,
        tags,
        timestamp_repair,
    })
}

/// Opens `source` for the probe through a [`ZeroedSource`] whose zeroed ranges are the MP4/MOV
/// index listing's (none unless `reads` is [`PacketReads::IndexWherePossible`]), so the packets
/// it lists are not fetched. The [`ReadFailure`] explains later failed reads.
fn open_listed(
    source: &Source,
    reads: PacketReads,
) -> Result<(ffmpeg::format::context::Input, ReadFailure, IndexListing), ProbeError> {
    let path = source.name();
    let zeroed = Arc::new(ZeroedSource {
        inner: source.bytes().clone(),
        zeroed: Mutex::default(),
    });
    let reading = source.over(zeroed.clone());
    let failure = ReadFailure::default();
    util::clear_ffmpeg_error();
    let input = source::open_raw(&reading, &failure).map_err(|code| match failure.take() {
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
        index::index_listing(&input)
    } else {
        IndexListing::default()
    };
    *zeroed.zeroed.lock().unwrap_or_else(|p| p.into_inner()) = listing.ranges.clone();
    Ok((input, failure, listing))
}

/// The video's frames as the planner takes them, sorted by pts: packets with a dts but no pts
/// among packets with both (`without_pts`, indices into `frames`) placed where the decoder shows
/// them. Refused when none of the stream's `packets` gave a frame.
fn listed_frames(
    path: &Path,
    mut frames: Vec<FrameInfo>,
    without_pts: &[usize],
    packets: u64,
) -> Result<Vec<FrameInfo>, ProbeError> {
    // Packets with a dts but no pts among packets with both (MPEG program streams leave some
    // anchor frames so): listed at the time the decoder shows them, not at their decode time,
    // or segments would be cut around the wrong frames. A stream of dts only is the clock's.
    if without_pts.len() < frames.len() {
        super::clock::infer_missing_pts(&mut frames, without_pts);
    }
    if frames.is_empty() && packets > 0 {
        return Err(ProbeError::NoTimestamps {
            path: path.to_owned(),
            packets,
        });
    }
    if frames.is_empty() {
        return Err(ProbeError::NoFrames {
            path: path.to_owned(),
        });
    }
    frames.sort_by_key(|frame| frame.pts);
    Ok(frames)
}

/// `(intermediate_offset_seconds, output_shift_micros)` of [`MediaInfo`], from the video's first
/// frame (`video_start`, seconds) and the audio tracks' starts.
fn start_offsets(video_start: f64, audio: &[AudioTrack]) -> (i64, i64) {
    let earliest = audio
        .iter()
        .filter_map(|track| track.first_pts.map(|pts| track.time_base.seconds(pts)))
        .fold(video_start, f64::min);
    // One second of headroom beyond the earliest start: a re-encoded audio track starts earlier
    // by its encoder's priming (AAC 1024, Opus 312 samples).
    let intermediate_offset_seconds = (-earliest).max(0.0).ceil() as i64 + 1;
    let earliest_shown = audio
        .iter()
        .filter_map(AudioTrack::audible_start_seconds)
        .fold(video_start, f64::min);
    // Below a millisecond is rounding, not frames before 0.
    let output_shift_micros = if earliest_shown < -0.001 {
        (-earliest_shown * 1e6).ceil() as i64
    } else {
        0
    };
    (intermediate_offset_seconds, output_shift_micros)
}
