//! The output picture of a job, decided once from the probe and the settings: pixel format (bit
//! depth and chroma kept where the encoder can), sample range and colour tags, orientation
//! applied to the pixels, size, and pixel aspect. Every segment encoder of a job builds the same
//! [`OutputPicture`], so all segments carry identical codec parameters and can be joined.
//!
//! Also the two pixel operations treemux does itself: range-aware conversion (swscale told the
//! real input and output ranges, so full-range sources stay full range instead of being squeezed
//! into limited levels under a full-range tag) and lossless rotation by quarter turns (for
//! containers that cannot carry a display matrix, as ffmpeg's autorotate does).
//!
//! The decision is here; its parts are in `pixels` (formats), `color` (tags, range-aware
//! scaling), `orientation` (quarter turns) and `hdr` (HDR10 static metadata), all re-exported.

mod color;
mod hdr;
mod orientation;
mod pixels;

pub use color::{frame_is_full_range, scaler, scaler_between, ColorTags};
pub use hdr::{HdrStatic, MasteringDisplay};
pub use orientation::{rotate_frame, Orientation};
pub use pixels::{choose_pixel_format, pixel_by_name, pixel_name, pixel_traits, PixelTraits};

use super::probe::VideoInfo;
use super::MediaError;
use crate::settings::{EncodeSettings, OutputPixels};
use ffmpeg_next as ffmpeg;

/// Everything about the encoded picture that must be the same in every segment of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputPicture {
    /// The encoder's pixel format.
    pub pixel: ffmpeg::format::Pixel,
    /// Size of the encoded picture in pixels (after rotation).
    pub width: u32,
    pub height: u32,
    /// Size the source is scaled (or cropped) to before rotation.
    pub scaled_width: u32,
    pub scaled_height: u32,
    /// Turn applied to the pixels (`Upright` unless the display rotation is baked in).
    pub orientation: Orientation,
    /// Pixel aspect of the encoded picture (`0/1` unknown).
    pub sample_aspect_ratio: (i32, i32),
    /// Colour tags of the encoded samples: the source's range for YUV sources (so full-range
    /// stays full range), limited BT.601 for RGB sources.
    pub color: ColorTags,
    /// The source samples' range, as swscale must read them.
    pub source_full_range: bool,
}

/// Decides the output picture of a job. Preconditions: `video` comes from the probe; the
/// encoder `settings.codec` names exists in this FFmpeg build.
pub fn output_picture(
    video: &VideoInfo,
    settings: &EncodeSettings,
) -> Result<OutputPicture, MediaError> {
    let encoder_name = settings.codec.encoder_name();
    let codec =
        ffmpeg::encoder::find_by_name(encoder_name).ok_or_else(|| MediaError::EncoderMissing {
            encoder: encoder_name.to_owned(),
        })?;
    let accepted: Vec<String> = codec
        .video()
        .ok()
        .and_then(|video| video.formats())
        .map(|formats| formats.filter_map(pixel_name).collect())
        .unwrap_or_default();
    let source_pixel = pixel_by_name(&video.pixel_format);
    let traits = source_pixel
        .and_then(pixel_traits)
        .unwrap_or(PixelTraits::YUV420P8);
    let name = choose_pixel_format(
        traits,
        &accepted,
        settings.pixel_format == OutputPixels::Yuv420p,
    );
    let pixel = pixel_by_name(&name).unwrap_or(ffmpeg::format::Pixel::YUV420P);

    let source_full_range = traits.jpeg_range || traits.rgb || video.color.full_range();
    let mut color = video.color;
    if traits.rgb {
        // swscale converts RGB with BT.601 coefficients into limited range: tag exactly that.
        color.range = ffmpeg::ffi::AVColorRange::AVCOL_RANGE_MPEG as i32;
        color.space = ffmpeg::ffi::AVColorSpace::AVCOL_SPC_SMPTE170M as i32;
    } else if traits.jpeg_range {
        color.range = ffmpeg::ffi::AVColorRange::AVCOL_RANGE_JPEG as i32;
    }

    let orientation = if settings.autorotate {
        Orientation::from_rotation_degrees(video.rotation_degrees).unwrap_or(Orientation::Upright)
    } else {
        Orientation::Upright
    };
    let (width, height) = displayed_size(video, settings, orientation);
    let (scaled_width, scaled_height) = if orientation.swaps_axes() {
        (height, width)
    } else {
        (width, height)
    };
    let sar = (video.sample_aspect_ratio.num, video.sample_aspect_ratio.den);
    // Scaling to a height rounds the width to an even number, which changes the displayed
    // aspect slightly (1280x720 → 852x480); the pixel aspect makes up for it, as FFmpeg's
    // scale filter does (640:639), so every rung of a ladder shows the source's exact aspect.
    let sar = if settings.height.is_some() {
        scaled_sample_aspect(
            sar,
            (video.width, video.height),
            (scaled_width, scaled_height),
        )
    } else {
        sar
    };
    let sample_aspect_ratio = if orientation.swaps_axes() && sar.0 > 0 && sar.1 > 0 {
        (sar.1, sar.0)
    } else {
        sar
    };
    Ok(OutputPicture {
        pixel,
        width,
        height,
        scaled_width,
        scaled_height,
        orientation,
        sample_aspect_ratio,
        color,
        source_full_range,
    })
}

/// The pixel aspect that keeps `source` pixels of aspect `sar` (`0/1` unknown, read as square)
/// showing the same picture once scaled to `scaled` pixels, both in the source's coded
/// orientation; reduced, and `sar` itself when the scale keeps the aspect exactly.
fn scaled_sample_aspect(sar: (i32, i32), source: (u32, u32), scaled: (u32, u32)) -> (i32, i32) {
    let (num, den) = if sar.0 > 0 && sar.1 > 0 {
        (i64::from(sar.0), i64::from(sar.1))
    } else {
        (1, 1)
    };
    let num = num * i64::from(source.0) * i64::from(scaled.1);
    let den = den * i64::from(scaled.0) * i64::from(source.1);
    if num == 0 || den == 0 || num == den && (sar.0 <= 0 || sar.1 <= 0) {
        return sar;
    }
    let (mut a, mut b) = (num, den);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    match (i32::try_from(num / a), i32::try_from(den / a)) {
        (Ok(num), Ok(den)) => (num, den),
        _ => sar,
    }
}

/// The encoded size for `orientation`: the source's size (cropped to even: 4:2:0 needs even
/// sizes), or `settings.height` as the displayed height with the width following the displayed
/// aspect ratio; both rounded down to even numbers.
pub fn displayed_size(
    video: &VideoInfo,
    settings: &EncodeSettings,
    orientation: Orientation,
) -> (u32, u32) {
    let even = |value: u32| (value & !1).max(2);
    // The picture as shown when the display rotation is applied (whether by a player reading the
    // display matrix or by treemux turning the pixels).
    let displayed_rotation =
        Orientation::from_rotation_degrees(video.rotation_degrees).unwrap_or(Orientation::Upright);
    let (shown_width, shown_height) = if displayed_rotation.swaps_axes() {
        (video.height, video.width)
    } else {
        (video.width, video.height)
    };
    let (width, height) = match settings.height {
        Some(height) if shown_height > 0 => {
            let width = (f64::from(shown_width) * f64::from(height) / f64::from(shown_height))
                .round() as u32;
            (even(width), even(height))
        }
        _ => (even(shown_width), even(shown_height)),
    };
    // Back to coded orientation unless the turn is applied to the pixels.
    if displayed_rotation.swaps_axes() && !orientation.swaps_axes() {
        (height, width)
    } else {
        (width, height)
    }
}

#[cfg(test)]
mod tests {
    use super::scaled_sample_aspect;

    #[test]
    fn a_rounded_width_is_made_up_for_by_the_pixel_aspect() {
        // 1280x720 at 480 lines: 853.3 rounds to 852, shown at exactly 16:9 with 640:639.
        assert_eq!(
            scaled_sample_aspect((1, 1), (1280, 720), (852, 480)),
            (640, 639)
        );
        assert_eq!(
            scaled_sample_aspect((0, 1), (1280, 720), (852, 480)),
            (640, 639)
        );
        // An exact scale keeps the source's aspect, unknown staying unknown.
        assert_eq!(
            scaled_sample_aspect((0, 1), (1280, 720), (640, 360)),
            (0, 1)
        );
        assert_eq!(
            scaled_sample_aspect((1, 1), (1920, 1080), (1280, 720)),
            (1, 1)
        );
        // Anamorphic sources keep their displayed aspect: 720x576 at 16:15 is 4:3 (with 4:3's
        // own rounding at 360 lines, 450 wide).
        let (num, den) = scaled_sample_aspect((16, 15), (720, 576), (450, 360));
        assert_eq!(
            i64::from(num) * 450 * 3,
            i64::from(den) * 360 * 4,
            "{num}:{den} shows 4:3"
        );
    }
}
