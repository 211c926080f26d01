//! Verify: check a transcoded output against its source by properties, never by bytes.
//!
//! Both video streams are decoded in full and paired frame by frame (frame exactness makes the
//! i-th output frame the encoding of the i-th source frame), giving the frame counts, timestamp
//! order, PSNR (all planes, weighted by plane size as FFmpeg's `psnr` filter does) and SSIM (luma,
//! 8×8 windows at a stride of 4, FFmpeg's `ssim` filter's formula); both agree with those filters
//! (tests/verify_metrics.rs). Container-level facts (duration, audio tracks, A/V offset,
//! rotation) come from probing both files.
//!
//! When the output is smaller than the source (cropped to even, or scaled with `--height`) the
//! source frame is cropped or scaled to the output size before comparing.

use super::clock::{DtsOnlyClock, Repairer};
use super::picture::{self, Orientation};
use super::probe::{probe, AudioTrack, MediaInfo, ProbeError};
use super::util;
use super::MediaError;
use crate::extras::{tag, ExtraAction, StreamKind};
use crate::settings::Container;
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How far an output frame's presentation time may be from its source frame's: Matroska and
/// WebM store milliseconds, so rounding alone can move a frame by half of one.
const FRAME_TIMING_TOLERANCE_SECONDS: f64 = 0.0011;

/// How much a re-encoded audio track's length may change: one codec frame of padding either way
/// (AAC 1024 samples, Opus 20 ms) plus resampling rounding.
const REENCODED_LENGTH_TOLERANCE_SECONDS: f64 = 0.05;

/// How far the fitted luma slope may be from 1: a full/limited range mix-up gives 219/255 = 0.86
/// or its inverse 1.16; encodes and scaling stay within a few hundredths.
const MAX_LEVEL_SLOPE_ERROR: f64 = 0.06;

/// How far the mean luma may move, in 8-bit levels.
const MAX_LEVEL_SHIFT: f64 = 6.0;

fn range_name(tags: picture::ColorTags) -> &'static str {
    if tags.full_range() {
        "full"
    } else if tags.range == ffmpeg::ffi::AVColorRange::AVCOL_RANGE_MPEG as i32 {
        "limited"
    } else {
        "unspecified"
    }
}

/// Thresholds for [`verify`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyOptions {
    /// Lowest acceptable average PSNR in dB. The default (25 dB) is far below any sane encode
    /// (CRF 23 gives about 40 dB) and far above misaligned or grey frames (10–20 dB).
    pub min_psnr_db: f64,
    /// Largest change of an audio track's start relative to the video, in seconds.
    pub max_av_offset_seconds: f64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            min_psnr_db: 25.0,
            max_av_offset_seconds: 0.010,
        }
    }
}

/// One property and whether it held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// Everything [`verify`] measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub source_frames: u64,
    pub output_frames: u64,
    pub source_duration_seconds: f64,
    pub output_duration_seconds: f64,
    /// Average PSNR over all frames and planes, in dB.
    pub psnr_db: f64,
    /// PSNR of the worst frame, in dB: catches a single misplaced frame that an average hides.
    pub min_frame_psnr_db: f64,
    /// Average luma SSIM (1 = identical).
    pub ssim: f64,
    pub output_bytes: u64,
    pub checks: Vec<Check>,
    /// What of the source besides the video and audio the output's container cannot hold (the
    /// lines the transcode warned with): streams, tags. Reported, not a failure.
    #[serde(default)]
    pub not_kept: Vec<String>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| !check.passed)
    }
}

/// Errors that stop verification before any property can be judged.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Media(#[from] MediaError),
}

/// Compares `output` with `source`.
pub fn verify(
    source: &Path,
    output: &Path,
    options: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    util::init();
    let source_info = probe(source)?;
    let output_info = probe(output)?;
    let comparison = compare_frames(&source_info, &output_info)?;
    let mut checks = Vec::new();
    let mut check = |name: &str, passed: bool, detail: String| {
        checks.push(Check {
            name: name.to_owned(),
            passed,
            detail,
        })
    };

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
    let frame_seconds = typical_frame_seconds(&source_info);
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
        video_start(&source_info, timeline_origin(&source_info, false)),
        video_start(&output_info, timeline_origin(&output_info, false)),
    );
    let by_sound = (
        video_start(&source_info, timeline_origin(&source_info, true)),
        video_start(&output_info, timeline_origin(&output_info, true)),
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
    check(
        "rotation",
        (source_info.video.rotation_degrees - output_info.video.rotation_degrees).abs() < 0.5
            || comparison.rotation_applied,
        if comparison.rotation_applied {
            format!(
                "source {}°, turned into the output's pixels (the frames are compared as shown)",
                source_info.video.rotation_degrees
            )
        } else {
            format!(
                "source {}°, output {}°",
                source_info.video.rotation_degrees, output_info.video.rotation_degrees
            )
        },
    );
    if let Some((slope, mean_shift)) = comparison.levels {
        check(
            "levels",
            (slope - 1.0).abs() <= MAX_LEVEL_SLOPE_ERROR && mean_shift.abs() <= MAX_LEVEL_SHIFT,
            format!(
                "output luma = {slope:.3} × source luma, means {mean_shift:+.2} levels apart (range tags {} → {}; tolerance ±{MAX_LEVEL_SLOPE_ERROR}, ±{MAX_LEVEL_SHIFT})",
                range_name(source_info.video.color), range_name(output_info.video.color)
            ),
        );
    }
    check_audio(&source_info, &output_info, options, &mut check);
    let not_kept = check_extras(&source_info, &output_info, &mut check);
    check(
        "quality",
        comparison.psnr_db >= options.min_psnr_db,
        format!(
            "PSNR {:.2} dB (worst frame {:.2} dB, minimum {:.1} dB), SSIM {:.4}",
            comparison.psnr_db, comparison.min_frame_psnr_db, options.min_psnr_db, comparison.ssim
        ),
    );

    Ok(VerifyReport {
        source_frames: comparison.source_frames,
        output_frames: comparison.output_frames,
        source_duration_seconds: source_duration,
        output_duration_seconds: output_duration,
        psnr_db: comparison.psnr_db,
        min_frame_psnr_db: comparison.min_frame_psnr_db,
        ssim: comparison.ssim,
        output_bytes: output_info.size_bytes,
        checks,
        not_kept,
    })
}

/// The container `output` was written as: from its extension as the transcode chose it, else
/// from the demuxer that read it.
fn output_container(output: &MediaInfo) -> Container {
    Container::from_path(&output.path).unwrap_or_else(|| {
        if output.container.contains("matroska") {
            Container::Matroska
        } else {
            Container::Mp4
        }
    })
}

/// Subtitles, cover art, attachments, the timecode, chapters and global tags: everything that the
/// output's container can hold (by the rule the transcode follows, `streams::plan`) must be in
/// the output. What it cannot hold is returned for the report.
fn check_extras(
    source: &MediaInfo,
    output: &MediaInfo,
    check: &mut impl FnMut(&str, bool, String),
) -> Vec<String> {
    let plan = super::streams::plan(source, output_container(output));
    let mut missing = Vec::new();
    let mut unmatched: Vec<(StreamKind, &str)> = output
        .other_streams
        .iter()
        .map(|stream| (stream.kind, stream.codec.as_str()))
        .collect();
    for kept in &plan.streams {
        let Some(stream) = source
            .other_streams
            .iter()
            .find(|stream| stream.stream_index == kept.stream_index)
        else {
            continue;
        };
        // What the kept stream reads back as: a converted subtitle has the encoder's codec, a
        // Matroska picture attachment reads as cover art again.
        let converted;
        let (kind, codec) = match &kept.action {
            ExtraAction::Copy => (stream.kind, stream.codec.as_str()),
            ExtraAction::Convert { encoder } => {
                converted = ffmpeg::encoder::find_by_name(encoder)
                    .map_or_else(|| encoder.clone(), |codec| util::codec_name(codec.id()));
                (StreamKind::Subtitle, converted.as_str())
            }
            ExtraAction::PictureAttachment => (StreamKind::AttachedPicture, stream.codec.as_str()),
        };
        match unmatched
            .iter()
            .position(|&(found_kind, found_codec)| found_kind == kind && found_codec == codec)
        {
            Some(at) => {
                unmatched.remove(at);
            }
            None => missing.push(stream.describe()),
        }
    }
    if let Some(timecode) = &plan.timecode {
        let found = tag(&output.video.metadata, "timecode") == Some(timecode.as_str())
            || output.other_streams.iter().any(|stream| {
                stream.kind == StreamKind::Timecode
                    && tag(&stream.metadata, "timecode") == Some(timecode.as_str())
            });
        if !found {
            missing.push(format!("timecode {timecode}"));
        }
    }
    if output.chapters.len() != plan.chapters.len() {
        missing.push(format!(
            "{} of {} chapters",
            plan.chapters.len().saturating_sub(output.chapters.len()),
            plan.chapters.len()
        ));
    }
    for (key, value) in &plan.tags {
        // Muxers rewrite creation times in their own format: only its presence is comparable.
        let same = match tag(&output.tags, key) {
            Some(found) => found == value || key.eq_ignore_ascii_case("creation_time"),
            None => false,
        };
        if !same {
            missing.push(format!("tag {key}={value:?}"));
        }
    }
    check(
        "streams and tags",
        missing.is_empty(),
        if missing.is_empty() {
            format!(
                "kept: {} streams, {} chapters, {} tags{}; not kept (the container cannot hold them): {}",
                plan.streams.len(),
                plan.chapters.len(),
                plan.tags.len(),
                if plan.timecode.is_some() { ", the timecode" } else { "" },
                if plan.warnings.is_empty() {
                    "nothing".to_owned()
                } else {
                    plan.warnings.len().to_string()
                }
            )
        } else {
            format!("missing from the output: {}", missing.join("; "))
        },
    );
    plan.warnings
}

/// The earliest start of any video or audio stream in the file, in seconds.
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

fn check_audio(
    source: &MediaInfo,
    output: &MediaInfo,
    options: &VerifyOptions,
    check: &mut impl FnMut(&str, bool, String),
) {
    check(
        "audio tracks",
        source.audio.len() == output.audio.len(),
        format!(
            "source {} tracks, output {}",
            source.audio.len(),
            output.audio.len()
        ),
    );
    let video_start = |info: &MediaInfo| info.video.time_base.seconds(info.video.first_pts);
    for (number, (before, after)) in source.audio.iter().zip(&output.audio).enumerate() {
        let number = number + 1;
        if before.codec == after.codec {
            check(
                &format!("audio {number} codec and layout"),
                before.channels == after.channels && before.sample_rate == after.sample_rate,
                format!(
                    "{} {} ch {} Hz, output {} ch {} Hz",
                    before.codec,
                    before.channels,
                    before.sample_rate,
                    after.channels,
                    after.sample_rate
                ),
            );
            check(
                &format!("audio {number} packets"),
                before.packets == after.packets,
                format!(
                    "source {} packets, output {}",
                    before.packets, after.packets
                ),
            );
        } else {
            // Re-encoded for the container: the channels and the length must survive.
            let (length_before, length_after) = (
                before.audible_duration_seconds().unwrap_or(0.0),
                after.audible_duration_seconds().unwrap_or(0.0),
            );
            check(
                &format!("audio {number} re-encoded"),
                before.channels == after.channels && (length_before - length_after).abs() <= REENCODED_LENGTH_TOLERANCE_SECONDS,
                format!(
                    "{} {} ch {length_before:.3} s → {} {} ch {length_after:.3} s (length tolerance {REENCODED_LENGTH_TOLERANCE_SECONDS} s)",
                    before.codec, before.channels, after.codec, after.channels
                ),
            );
        }
        // An unset language and "und" mean the same; a muxer that insists on a default track may
        // mark one where the source marked none.
        let language = |track: &AudioTrack| track.language().unwrap_or("und").to_owned();
        let source_has_default = source
            .audio
            .iter()
            .any(|track| track.disposition & ffmpeg::ffi::AV_DISPOSITION_DEFAULT != 0);
        let default_bit = if source_has_default {
            ffmpeg::ffi::AV_DISPOSITION_DEFAULT
        } else {
            0
        };
        let comparable = |bits: i32| {
            disposition_core(bits) & !(ffmpeg::ffi::AV_DISPOSITION_DEFAULT & !default_bit)
        };
        check(
            &format!("audio {number} language and disposition"),
            language(before) == language(after)
                && comparable(before.disposition) == comparable(after.disposition),
            format!(
                "source {:?} disposition {:#x}, output {:?} disposition {:#x}",
                before.language(),
                before.disposition,
                after.language(),
                after.disposition
            ),
        );
        // A copied track must keep its packets where they were relative to the video (priming
        // included: not every container can signal it, but the samples are the same). A
        // re-encoded track has new priming, so its audible start is what must stay.
        let start = |track: &AudioTrack| {
            if before.codec == after.codec {
                track.first_pts.map(|pts| track.time_base.seconds(pts))
            } else {
                track.audible_start_seconds()
            }
        };
        if let (Some(start_before), Some(start_after)) = (start(before), start(after)) {
            let offset_before = start_before - video_start(source);
            let offset_after = start_after - video_start(output);
            check(
                &format!("audio {number} A/V offset"),
                (offset_before - offset_after).abs() <= options.max_av_offset_seconds,
                format!("audio starts {offset_before:+.4} s from the first frame in the source, {offset_after:+.4} s in the output"),
            );
        }
    }
}

/// The disposition bits a container can be expected to keep (default, forced, …): some muxers
/// add or drop bookkeeping bits of their own.
fn disposition_core(bits: i32) -> i32 {
    let default = ffmpeg::ffi::AV_DISPOSITION_DEFAULT;
    let forced = ffmpeg::ffi::AV_DISPOSITION_FORCED;
    let dub = ffmpeg::ffi::AV_DISPOSITION_DUB;
    let commentary = ffmpeg::ffi::AV_DISPOSITION_COMMENT;
    let impaired =
        ffmpeg::ffi::AV_DISPOSITION_HEARING_IMPAIRED | ffmpeg::ffi::AV_DISPOSITION_VISUAL_IMPAIRED;
    bits & (default | forced | dub | commentary | impaired)
}

struct FrameComparison {
    /// Output luma fitted against source luma over all frames (both normalised to limited
    /// range by their own tags): slope and the difference of means, in 8-bit levels.
    levels: Option<(f64, f64)>,
    /// The source's display rotation was found turned into the output's pixels.
    rotation_applied: bool,
    source_frames: u64,
    output_frames: u64,
    non_increasing: u64,
    max_timing_error_seconds: f64,
    psnr_db: f64,
    min_frame_psnr_db: f64,
    ssim: f64,
}

fn compare_frames(source: &MediaInfo, output: &MediaInfo) -> Result<FrameComparison, MediaError> {
    let mut source_frames = DecodedFrames::open(source)?;
    let mut output_frames = DecodedFrames::open(output)?;
    let (width, height) = (output.video.width & !1, output.video.height & !1);
    // An output without the source's display rotation must hold the turned picture (treemux turns
    // the pixels for containers that cannot carry a rotation): compare against the source as shown.
    let turn = if output.video.rotation_degrees.abs() < 0.5 {
        Orientation::from_rotation_degrees(source.video.rotation_degrees)
            .unwrap_or(Orientation::Upright)
    } else {
        Orientation::Upright
    };
    let (source_width, source_height) = if turn.swaps_axes() {
        (height, width)
    } else {
        (width, height)
    };
    let mut turned = (turn != Orientation::Upright)
        .then(|| ffmpeg::frame::Video::new(ffmpeg::format::Pixel::YUV420P, width, height));
    let mut levels = LevelFit::default();
    let mut source_scaler: Option<ComparableScaler> = None;
    let mut output_scaler = source_scaler.take();
    let mut source_converted = ffmpeg::frame::Video::empty();
    let mut output_converted = ffmpeg::frame::Video::empty();

    let mut counts = (0u64, 0u64);
    let mut non_increasing = 0u64;
    let mut last_output_pts: Option<i64> = None;
    let mut max_timing_error = 0f64;
    // Frame times are compared from each file's first frame; where that first frame sits is the
    // "video start" check's business.
    let (source_origin, output_origin) = (
        source.video.time_base.seconds(source.video.first_pts),
        output.video.time_base.seconds(output.video.first_pts),
    );
    let (mut squared_error, mut samples) = (0f64, 0f64);
    let mut min_frame_psnr = f64::INFINITY;
    let (mut ssim_total, mut ssim_frames) = (0f64, 0u64);
    loop {
        let source_frame = source_frames.next()?;
        let output_frame = output_frames.next()?;
        if let Some(frame) = &output_frame {
            let pts = frame.pts().or(frame.timestamp());
            if let (Some(pts), Some(last)) = (pts, last_output_pts) {
                if pts <= last {
                    non_increasing += 1;
                }
            }
            last_output_pts = pts.or(last_output_pts);
        }
        match (source_frame, output_frame) {
            (None, None) => break,
            (Some(_), None) => counts.0 += 1,
            (None, Some(_)) => counts.1 += 1,
            (Some(mut source_frame), Some(mut output_frame)) => {
                counts.0 += 1;
                counts.1 += 1;
                if let (Some(source_pts), Some(output_pts)) = (
                    source_frame.pts().or(source_frame.timestamp()),
                    output_frame.pts().or(output_frame.timestamp()),
                ) {
                    let error = (source.video.time_base.seconds(source_pts)
                        - source_origin
                        - (output.video.time_base.seconds(output_pts) - output_origin))
                        .abs();
                    max_timing_error = max_timing_error.max(error);
                }
                let a = to_comparable(
                    &mut source_frame,
                    source_width,
                    source_height,
                    &mut source_scaler,
                    &mut source_converted,
                )?;
                let a: &ffmpeg::frame::Video = match turned.as_mut() {
                    Some(turned) => {
                        picture::rotate_frame(a, turned, turn);
                        turned
                    }
                    None => a,
                };
                let b = to_comparable(
                    &mut output_frame,
                    width,
                    height,
                    &mut output_scaler,
                    &mut output_converted,
                )?;
                let (frame_error, frame_samples) = squared_error_yuv(a, b, width, height);
                squared_error += frame_error;
                samples += frame_samples;
                min_frame_psnr = min_frame_psnr.min(psnr(frame_error, frame_samples));
                ssim_total += ssim_luma(a, b, width as usize, height as usize);
                levels.add(a, b, width as usize, height as usize);
                ssim_frames += 1;
            }
        }
    }
    Ok(FrameComparison {
        levels: levels.fit(),
        rotation_applied: turn != Orientation::Upright,
        source_frames: counts.0,
        output_frames: counts.1,
        non_increasing,
        max_timing_error_seconds: max_timing_error,
        psnr_db: psnr(squared_error, samples),
        min_frame_psnr_db: if min_frame_psnr.is_finite() {
            min_frame_psnr
        } else {
            psnr(0.0, 0.0)
        },
        ssim: if ssim_frames > 0 {
            ssim_total / ssim_frames as f64
        } else {
            0.0
        },
    })
}

/// PSNR in dB for 8-bit samples; identical input is reported as 100 dB.
fn psnr(squared_error: f64, samples: f64) -> f64 {
    if samples == 0.0 || squared_error == 0.0 {
        return 100.0;
    }
    let mse = squared_error / samples;
    (10.0 * (255.0f64 * 255.0 / mse).log10()).min(100.0)
}

/// A scaler and the frame format, size and range it was made for.
type ComparableScaler = (
    ffmpeg::software::scaling::Context,
    (ffmpeg::format::Pixel, u32, u32, bool),
);

/// Brings a decoded frame to 8-bit 4:2:0 limited range at `width`×`height`, reading its samples
/// in the range they are tagged with (so a full-range file and a limited one showing the same
/// picture compare equal, and one whose samples do not match its tag does not): a crop when it
/// is the same picture with an odd row or column more, a bicubic scale otherwise.
fn to_comparable<'a>(
    frame: &'a mut ffmpeg::frame::Video,
    width: u32,
    height: u32,
    scaler: &mut Option<ComparableScaler>,
    converted: &'a mut ffmpeg::frame::Video,
) -> Result<&'a ffmpeg::frame::Video, MediaError> {
    let full_range = picture::frame_is_full_range(frame);
    let same_picture = frame.width() & !1 == width && frame.height() & !1 == height;
    if same_picture {
        frame.set_width(width);
        frame.set_height(height);
        if frame.format() == ffmpeg::format::Pixel::YUV420P && !full_range {
            return Ok(frame);
        }
    }
    let key = (frame.format(), frame.width(), frame.height(), full_range);
    if scaler.as_ref().is_none_or(|(_, current)| *current != key) {
        let context = picture::scaler(
            (key.0, key.1, key.2),
            full_range,
            (ffmpeg::format::Pixel::YUV420P, width, height),
            false,
            frame_color_space(frame),
        )
        .map_err(|source| MediaError::Encode {
            encoder: "swscale".into(),
            source,
        })?;
        *scaler = Some((context, key));
    }
    let (context, _) = scaler.as_mut().expect("scaler was just created");
    context
        .run(frame, converted)
        .map_err(|source| MediaError::Encode {
            encoder: "swscale".into(),
            source,
        })?;
    Ok(converted)
}

/// The frame's colour matrix as FFmpeg's raw value (RGB sources are converted with BT.601, as the
/// encoder side does).
fn frame_color_space(frame: &ffmpeg::frame::Video) -> i32 {
    // SAFETY: the frame is a valid decoded frame.
    unsafe { (*frame.as_ptr()).colorspace as i32 }
}

/// Least-squares fit of output luma against source luma, over every fourth sample of every
/// row of every fourth line: a slope far from 1 or a shifted mean means levels were squeezed or
/// stretched (full-range samples written as limited, or the reverse), which PSNR alone passes.
#[derive(Default)]
struct LevelFit {
    n: f64,
    sum_x: f64,
    sum_y: f64,
    sum_xx: f64,
    sum_xy: f64,
}

impl LevelFit {
    fn add(
        &mut self,
        a: &ffmpeg::frame::Video,
        b: &ffmpeg::frame::Video,
        width: usize,
        height: usize,
    ) {
        let (data_a, data_b, stride_a, stride_b) = (a.data(0), b.data(0), a.stride(0), b.stride(0));
        for row in (0..height).step_by(4) {
            for column in (0..width).step_by(4) {
                let x = f64::from(data_a[row * stride_a + column]);
                let y = f64::from(data_b[row * stride_b + column]);
                self.n += 1.0;
                self.sum_x += x;
                self.sum_y += y;
                self.sum_xx += x * x;
                self.sum_xy += x * y;
            }
        }
    }

    /// `(slope, mean difference)`; the slope is 1 when the source has no contrast to fit.
    fn fit(&self) -> Option<(f64, f64)> {
        if self.n < 1.0 {
            return None;
        }
        let variance = self.n * self.sum_xx - self.sum_x * self.sum_x;
        let slope = if variance > self.n * self.n * 4.0 {
            (self.n * self.sum_xy - self.sum_x * self.sum_y) / variance
        } else {
            1.0
        };
        Some((slope, (self.sum_y - self.sum_x) / self.n))
    }
}

fn squared_error_yuv(
    a: &ffmpeg::frame::Video,
    b: &ffmpeg::frame::Video,
    width: u32,
    height: u32,
) -> (f64, f64) {
    let mut total = 0u64;
    let mut samples = 0u64;
    for plane in 0..3 {
        let (plane_width, plane_height) = if plane == 0 {
            (width as usize, height as usize)
        } else {
            (width as usize / 2, height as usize / 2)
        };
        let (data_a, data_b) = (a.data(plane), b.data(plane));
        let (stride_a, stride_b) = (a.stride(plane), b.stride(plane));
        for row in 0..plane_height {
            let row_a = &data_a[row * stride_a..row * stride_a + plane_width];
            let row_b = &data_b[row * stride_b..row * stride_b + plane_width];
            total += row_a
                .iter()
                .zip(row_b)
                .map(|(&x, &y)| u64::from(x.abs_diff(y)).pow(2))
                .sum::<u64>();
        }
        samples += (plane_width * plane_height) as u64;
    }
    (total as f64, samples as f64)
}

/// Mean SSIM of the luma planes over 8×8 windows at a stride of 4, computed as FFmpeg's `ssim`
/// filter (and x264) do, so the two agree (tests/verify_metrics.rs): its constants are scaled for
/// sums over the 64 samples of a window, which weights the luminance term's C1 64 times less than
/// the textbook formula on means; on noisy pictures the textbook value differs by 0.003.
fn ssim_luma(
    a: &ffmpeg::frame::Video,
    b: &ffmpeg::frame::Video,
    width: usize,
    height: usize,
) -> f64 {
    let (blocks_x, blocks_y) = (width / 4, height / 4);
    if blocks_x < 2 || blocks_y < 2 {
        return 1.0;
    }
    let (data_a, data_b, stride_a, stride_b) = (a.data(0), b.data(0), a.stride(0), b.stride(0));
    // Sums over each 4×4 block: Σa, Σb, Σa², Σb², Σab.
    let mut blocks = vec![[0u64; 5]; blocks_x * blocks_y];
    for by in 0..blocks_y {
        for bx in 0..blocks_x {
            let sums = &mut blocks[by * blocks_x + bx];
            for row in by * 4..by * 4 + 4 {
                for column in bx * 4..bx * 4 + 4 {
                    let x = u64::from(data_a[row * stride_a + column]);
                    let y = u64::from(data_b[row * stride_b + column]);
                    sums[0] += x;
                    sums[1] += y;
                    sums[2] += x * x;
                    sums[3] += y * y;
                    sums[4] += x * y;
                }
            }
        }
    }
    // FFmpeg's `ssim_c1` and `ssim_c2` (libavfilter/vf_ssim.c), in the units of 64-sample sums.
    let c1 = (0.01f64 * 0.01 * 255.0 * 255.0 * 64.0 + 0.5) as i64;
    let c2 = (0.03f64 * 0.03 * 255.0 * 255.0 * 64.0 * 63.0 + 0.5) as i64;
    let mut total = 0.0;
    for by in 0..blocks_y - 1 {
        for bx in 0..blocks_x - 1 {
            let mut sums = [0u64; 5];
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let block = &blocks[(by + dy) * blocks_x + bx + dx];
                for (total, value) in sums.iter_mut().zip(block) {
                    *total += value;
                }
            }
            // Sums over one window of 64 samples: at most 64 × 255² each, so i64 holds every
            // product below exactly.
            let [s1, s2, ssa, ssb, s12] = sums.map(|sum| sum as i64);
            let variances = (ssa + ssb) * 64 - s1 * s1 - s2 * s2;
            let covariance = s12 * 64 - s1 * s2;
            total += ((2 * s1 * s2 + c1) as f64 * (2 * covariance + c2) as f64)
                / ((s1 * s1 + s2 * s2 + c1) as f64 * (variances + c2) as f64);
        }
    }
    total / ((blocks_x - 1) * (blocks_y - 1)) as f64
}

/// Every frame of a file's video stream, decoded in presentation order.
struct DecodedFrames {
    path: std::path::PathBuf,
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream_index: usize,
    /// The source's discontinuities removed, as the pipeline does.
    repairer: Repairer,
    clock: DtsOnlyClock,
    draining: bool,
    done: bool,
}

impl DecodedFrames {
    fn open(info: &MediaInfo) -> Result<Self, MediaError> {
        // The same opening as every other reader of a source.
        let (input, _) = super::source::open(&super::source::Source::file(&info.path)?)?;
        let failed = |source| MediaError::Decode {
            path: info.path.clone(),
            codec: info.video.codec.clone(),
            source,
        };
        let stream =
            input
                .stream(info.video.stream_index)
                .ok_or_else(|| MediaError::Unsupported {
                    path: info.path.clone(),
                    reason: "video stream is gone".into(),
                })?;
        let mut context =
            ffmpeg::codec::Context::from_parameters(stream.parameters()).map_err(failed)?;
        context.set_threading(ffmpeg::codec::threading::Config {
            kind: ffmpeg::codec::threading::Type::Frame,
            count: 0,
            ..Default::default()
        });
        let decoder = context.decoder().video().map_err(failed)?;
        Ok(Self {
            path: info.path.clone(),
            input,
            decoder,
            stream_index: info.video.stream_index,
            repairer: info.timestamp_repair.repairer(),
            clock: DtsOnlyClock::default(),
            draining: false,
            done: false,
        })
    }

    fn next(&mut self) -> Result<Option<ffmpeg::frame::Video>, MediaError> {
        let mut frame = ffmpeg::frame::Video::empty();
        loop {
            if self.done {
                return Ok(None);
            }
            if self.decoder.receive_frame(&mut frame).is_ok() {
                // The frame's time as the pipeline planned it (best-effort timestamps of
                // dts-only sources lag behind B-frames).
                let pts = self.clock.pts_of(&frame);
                frame.set_pts(pts);
                return Ok(Some(frame));
            }
            if self.draining {
                self.done = true;
                continue;
            }
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) if packet.stream() == self.stream_index => {
                    self.repairer.apply(&mut packet);
                    // A damaged packet costs its frame, which the frame-count check reports.
                    if self.decoder.send_packet(&packet).is_ok() {
                        self.clock.fed(&packet);
                    }
                }
                Ok(()) | Err(ffmpeg::Error::InvalidData) => {}
                Err(ffmpeg::Error::Eof) => {
                    self.draining = true;
                    let _ = self.decoder.send_eof();
                }
                Err(source) => {
                    return Err(MediaError::Read {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
    }
}

/// A hash of each decoded video frame of `path` (all planes, in presentation order): two
/// encodes are the same video exactly when these lists are equal. Hashes are stable within one
/// build of treemux.
pub fn decoded_frame_hashes(path: &Path) -> Result<Vec<u64>, VerifyError> {
    use std::hash::{Hash, Hasher};
    util::init();
    let info = probe(path)?;
    let mut frames = DecodedFrames::open(&info)?;
    let mut hashes = Vec::new();
    while let Some(frame) = frames.next()? {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (frame.width(), frame.height(), frame.format() as i32).hash(&mut hasher);
        for plane in 0..frame.planes() {
            // Only the picture's bytes: row padding up to the stride is undefined.
            // SAFETY: av_image_get_linesize only computes from its arguments.
            let row_bytes = unsafe {
                ffmpeg::ffi::av_image_get_linesize(
                    frame.format().into(),
                    frame.width() as i32,
                    plane as i32,
                )
            };
            let row_bytes = (row_bytes.max(0) as usize).min(frame.stride(plane));
            let data = frame.data(plane);
            for row in 0..frame.plane_height(plane) as usize {
                let start = row * frame.stride(plane);
                data[start..start + row_bytes].hash(&mut hasher);
            }
        }
        hashes.push(hasher.finish());
    }
    Ok(hashes)
}
