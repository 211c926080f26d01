//! The video's length: the same truncation rule for every container (declared length against
//! what the packets cover), where the container says the stream ends, the usual frame spacing.

use super::collect::ReadableSpan;
use super::ProbeError;
use crate::plan::{FrameInfo, TimeBase};
use ffmpeg_next as ffmpeg;
use std::path::Path;
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
pub(super) fn check_complete(
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

/// The usual distance between frames in ticks: from the average frame rate, else the median gap.
pub(super) fn typical_frame_ticks(
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

/// The last frame's duration in ticks of `time_base`: the longer of its packet's
/// (`last_duration`, 0 when unknown) and what the stream's declared length leaves for it after
/// `last_pts` (MP4 duration, or Matroska's per-track DURATION tag: Matroska keeps no frame
/// durations and WebM demuxes them as 1 ms); else the usual frame spacing (`typical`).
pub(super) fn last_frame_ticks(
    input: &ffmpeg::format::context::Input,
    video_index: usize,
    time_base: TimeBase,
    last_pts: i64,
    last_duration: i64,
    typical: i64,
) -> i64 {
    let declared_end = declared_stream_end(input, video_index, time_base);
    let declared_ticks = declared_end
        .map(|end| end - last_pts)
        .filter(|&ticks| ticks > 0 && ticks <= typical * 64);
    match (last_duration > 0, declared_ticks) {
        (true, Some(declared)) => last_duration.max(declared),
        (true, None) => last_duration,
        (false, declared) => declared.unwrap_or(typical),
    }
}
