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
//!
//! [`verify`] probes both files, pairs the frames (`frames`, reading each file through `decode`,
//! the only place here that opens a file for decoding), then judges one area per module:
//! `timing` (frame count, order, frame times, duration, video start), rotation (here), `levels`,
//! `audio`, `extras` (streams, chapters, tags) and quality from `metrics` (PSNR, SSIM).

mod audio;
mod dash;
mod decode;
mod extras;
mod frames;
mod levels;
mod metrics;
mod package;
mod timing;

pub use decode::decoded_frame_hashes;
pub use package::{verify_package, RenditionVerified};

use super::probe::{probe, ProbeError};
use super::util;
use super::MediaError;
use audio::check_audio;
use extras::check_extras;
use frames::compare_frames;
use levels::check_levels;
use serde::{Deserialize, Serialize};
use std::path::Path;
use timing::check_timing;

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
    verify_probed(&source_info, &output_info, options, true)
}

/// [`verify`] over probed files: the output's video decoded from `output_info.path`, its audio
/// judged from `output_info.audio` (an HLS/DASH rendition's from its audio playlists). Without
/// `judge_extras` the streams besides video and audio are listed as not kept (packages hold
/// video and audio only).
fn verify_probed(
    source_info: &super::probe::MediaInfo,
    output_info: &super::probe::MediaInfo,
    options: &VerifyOptions,
    judge_extras: bool,
) -> Result<VerifyReport, VerifyError> {
    let (source_info, output_info) = (source_info.clone(), output_info.clone());
    let comparison = compare_frames(&source_info, &output_info)?;
    let mut checks = Vec::new();
    let mut check = |name: &str, passed: bool, detail: String| {
        checks.push(Check {
            name: name.to_owned(),
            passed,
            detail,
        })
    };

    let (source_duration, output_duration) =
        check_timing(&source_info, &output_info, &comparison, &mut check);
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
    check_levels(&source_info, &output_info, comparison.levels, &mut check);
    check_audio(&source_info, &output_info, options, &mut check);
    let not_kept = if judge_extras {
        check_extras(&source_info, &output_info, &mut check)
    } else {
        let other = source_info.other_streams.len();
        if other == 0 {
            Vec::new()
        } else {
            vec![format!(
                "{other} streams besides video and audio (a package holds neither)"
            )]
        }
    };
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
