//! The timing checks: as many frames, output timestamps increasing, each frame at its source
//! frame's time, the same duration and the same video start on each file's timeline.

use super::frames::FrameComparison;
use crate::media::probe::MediaInfo;

/// How far an output frame's presentation time may be from its source frame's: Matroska and
/// WebM store milliseconds, so rounding alone can move a frame by half of one.
const FRAME_TIMING_TOLERANCE_SECONDS: f64 = 0.0011;

/// The frame count, order, timing, duration and video start checks of `comparison` (the frames
/// of `output` paired with those of `source`). Returns the video durations of source and output,
/// in seconds, for the report.
pub(super) fn check_timing(
    source_info: &MediaInfo,
    output_info: &MediaInfo,
    comparison: &FrameComparison,
    check: &mut impl FnMut(&str, bool, String),
) -> (f64, f64) {
    check(
        "frame count",
        comparison.source_frames == comparison.output_frames,
        format!(
            "source {} frames, output {}",
            comparison.source_frames, comparison.output_frames
        ),
    );
    check(
        "timestamps increasing",
        comparison.non_increasing == 0,
        format!(
            "{} output frames not after their predecessor",
            comparison.non_increasing
        ),
    );
    check(
        "frame timing",
        comparison.max_timing_error_seconds <= FRAME_TIMING_TOLERANCE_SECONDS,
        format!(
            "largest difference between a frame's time in the output and in the source: {:.6} s (tolerance {FRAME_TIMING_TOLERANCE_SECONDS} s)",
            comparison.max_timing_error_seconds
        ),
    );
    let frame_seconds = typical_frame_seconds(source_info);
    let (source_duration, output_duration) = (
        source_info.video.duration_seconds(),
        output_info.video.duration_seconds(),
    );
    check(
        "duration",
        (source_duration - output_duration).abs() <= frame_seconds + 1e-6,
        format!("source {source_duration:.4} s, output {output_duration:.4} s, tolerance one frame ({frame_seconds:.4} s)"),
    );
    // Times are compared from each file's origin, its earliest stream start. Audio priming makes
    // "start" ambiguous: MP4 keeps an AAC encoder's priming packets before zero (an edit list hides
    // them), Matroska cannot start before zero and shifts the whole file instead. So the origin
    // is taken both ways, from first packets and from audible starts, and either reading agreeing
    // between source and output passes. The audio checks judge the A/V offset itself.
    let video_start =
        |info: &MediaInfo, origin: f64| info.video.time_base.seconds(info.video.first_pts) - origin;
    let by_packets = (
        video_start(source_info, timeline_origin(source_info, false)),
        video_start(output_info, timeline_origin(output_info, false)),
    );
    let by_sound = (
        video_start(source_info, timeline_origin(source_info, true)),
        video_start(output_info, timeline_origin(output_info, true)),
    );
    let agrees = |(source, output): (f64, f64)| (source - output).abs() <= frame_seconds / 2.0;
    check(
        "video start",
        agrees(by_packets) || agrees(by_sound),
        format!(
            "first frame {:.4} s after the start of the source, {:.4} s after the start of the output (from audible starts: {:.4} s and {:.4} s)",
            by_packets.0, by_packets.1, by_sound.0, by_sound.1
        ),
    );
    (source_duration, output_duration)
}

/// The earliest start of any stream, in seconds: audio from its first packet, or from its first
/// audible sample (after the priming) when `audible`.
fn timeline_origin(info: &MediaInfo, audible: bool) -> f64 {
    info.audio
        .iter()
        .filter_map(|track| {
            if audible {
                track.audible_start_seconds()
            } else {
                track.first_pts.map(|pts| track.time_base.seconds(pts))
            }
        })
        .fold(info.video.time_base.seconds(info.video.first_pts), f64::min)
}

/// One average frame, in seconds.
fn typical_frame_seconds(info: &MediaInfo) -> f64 {
    let fps = info.video.frame_rate.fps();
    if fps > 0.0 {
        1.0 / fps
    } else {
        info.video.duration_seconds() / info.video.frame_count.max(1) as f64
    }
}
