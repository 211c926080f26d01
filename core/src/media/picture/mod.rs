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
