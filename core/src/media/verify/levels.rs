//! The levels check: output luma fitted against source luma, which catches squeezed or stretched
//! levels (a full/limited range mix-up) that PSNR alone passes.

use crate::media::picture::ColorTags;
use crate::media::probe::MediaInfo;
use ffmpeg_next as ffmpeg;

/// How far the fitted luma slope may be from 1: a full/limited range mix-up gives 219/255 = 0.86
/// or its inverse 1.16; encodes and scaling stay within a few hundredths.
const MAX_LEVEL_SLOPE_ERROR: f64 = 0.06;

/// How far the mean luma may move, in 8-bit levels.
const MAX_LEVEL_SHIFT: f64 = 6.0;

/// Judges the fit `levels` (`(slope, mean difference)` from [`LevelFit::fit`]) of `output`
/// against `source`; no check when no frames were paired.
pub(super) fn check_levels(
    source: &MediaInfo,
    output: &MediaInfo,
    levels: Option<(f64, f64)>,
    check: &mut impl FnMut(&str, bool, String),
) {
    let Some((slope, mean_shift)) = levels else {
        return;
    };
    check(
        "levels",
        (slope - 1.0).abs() <= MAX_LEVEL_SLOPE_ERROR && mean_shift.abs() <= MAX_LEVEL_SHIFT,
        format!(
            "output luma = {slope:.3} × source luma, means {mean_shift:+.2} levels apart (range tags {} → {}; tolerance ±{MAX_LEVEL_SLOPE_ERROR}, ±{MAX_LEVEL_SHIFT})",
            range_name(source.video.color), range_name(output.video.color)
        ),
    );
}

/// The range a file's tags declare, as the levels check names it.
fn range_name(tags: ColorTags) -> &'static str {
    if tags.full_range() {
        "full"
    } else if tags.range == ffmpeg::ffi::AVColorRange::AVCOL_RANGE_MPEG as i32 {
        "limited"
    } else {
        "unspecified"
    }
}

/// Least-squares fit of output luma against source luma, over every fourth sample of every
/// row of every fourth line: a slope far from 1 or a shifted mean means levels were squeezed or
/// stretched (full-range samples written as limited, or the reverse), which PSNR alone passes.
#[derive(Default)]
pub(super) struct LevelFit {
    n: f64,
    sum_x: f64,
    sum_y: f64,
    sum_xx: f64,
    sum_xy: f64,
}

impl LevelFit {
    /// Adds the luma samples of one pair of 8-bit frames of `width`×`height`.
    pub(super) fn add(
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
    pub(super) fn fit(&self) -> Option<(f64, f64)> {
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
