//! The output picture of a job, decided once from the probe and the settings: pixel format (bit
//! depth and chroma kept where the encoder can), sample range and colour tags, orientation
//! applied to the pixels, size, and pixel aspect. Every segment encoder of a job builds the same
//! [`OutputPicture`], so all segments carry identical codec parameters and can be joined.
//!
//! Also the two pixel operations treemux does itself: range-aware conversion (swscale told the
//! real input and output ranges, so full-range sources stay full range instead of being squeezed
//! into limited levels under a full-range tag) and lossless rotation by quarter turns (for
//! containers that cannot carry a display matrix, as ffmpeg's autorotate does).

use super::probe::VideoInfo;
use super::MediaError;
use crate::settings::{EncodeSettings, OutputPixels};
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};

/// A quarter-turn orientation applied to the pixels, clockwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Orientation {
    Upright,
    Clockwise90,
    Clockwise180,
    Clockwise270,
}

impl Orientation {
    /// The turn that shows a picture the way a display matrix with counter-clockwise rotation
    /// `degrees` (as `av_display_rotation_get` reports it) says it is shown, the rule of ffmpeg's
    /// autorotate. `None` when the angle is not a quarter turn.
    pub fn from_rotation_degrees(degrees: f64) -> Option<Self> {
        let clockwise = (-degrees).rem_euclid(360.0);
        let near = |target: f64| (clockwise - target).abs() < 1.0;
        if near(0.0) || near(360.0) {
            Some(Self::Upright)
        } else if near(90.0) {
            Some(Self::Clockwise90)
        } else if near(180.0) {
            Some(Self::Clockwise180)
        } else if near(270.0) {
            Some(Self::Clockwise270)
        } else {
            None
        }
    }

    /// True when the turn swaps width and height.
    pub fn swaps_axes(self) -> bool {
        matches!(self, Self::Clockwise90 | Self::Clockwise270)
    }

    /// Where output sample `(row, column)` of a `width`×`height` input plane comes from, for a
    /// rotated plane of size `(height, width)` (quarter turns) or `(width, height)` (half turn).
    fn source_of(self, row: usize, column: usize, width: usize, height: usize) -> (usize, usize) {
        match self {
            Self::Upright => (row, column),
            Self::Clockwise90 => (height - 1 - column, row),
            Self::Clockwise180 => (height - 1 - row, width - 1 - column),
            Self::Clockwise270 => (column, width - 1 - row),
        }
    }
}

/// What a pixel format is made of, as far as choosing an output format goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelTraits {
    /// Bits per sample of the first component.
    pub depth: u8,
    /// log2 of the horizontal and vertical chroma subsampling.
    pub chroma_shift: (u8, u8),
    pub rgb: bool,
    /// One component only (grey).
    pub gray: bool,
    /// A YUVJ format: full range implied by the format itself.
    pub jpeg_range: bool,
}

impl PixelTraits {
    /// 8-bit 4:2:0 YUV, assumed for a format FFmpeg cannot describe.
    pub const YUV420P8: Self = Self {
        depth: 8,
        chroma_shift: (1, 1),
        rgb: false,
        gray: false,
        jpeg_range: false,
    };
}

/// The pixel format name an encoder gets, chosen from what the source is made of and what the
/// encoder accepts (`accepted`, FFmpeg names). Keeps the bit depth (8, 10 or 12) and the chroma
/// format (4:2:0, 4:2:2, 4:4:4) where the encoder can; RGB, grey and unusual subsamplings become
/// 4:2:0 at the source's depth (what players expect of a delivery file); anything the encoder
/// lacks falls back to 4:2:0 at the same depth, then to 8-bit 4:2:0. `eight_bit` asks for 8-bit
/// 4:2:0 whatever the source.
pub fn choose_pixel_format(source: PixelTraits, accepted: &[String], eight_bit: bool) -> String {
    let depth = match source.depth {
        _ if eight_bit => 8,
        0..=8 => 8,
        9 | 10 => 10,
        _ => 12,
    };
    let chroma = match source.chroma_shift {
        _ if eight_bit || source.rgb || source.gray => "420",
        (0, 0) => "444",
        (1, 0) => "422",
        _ => "420",
    };
    let name = |chroma: &str, depth: u8| {
        if depth == 8 {
            format!("yuv{chroma}p")
        } else {
            format!("yuv{chroma}p{depth}le")
        }
    };
    let mut candidates = vec![name(chroma, depth)];
    if depth == 12 {
        candidates.push(name(chroma, 10));
    }
    candidates.push(name("420", depth));
    if depth == 12 {
        candidates.push(name("420", 10));
    }
    candidates.push(name("420", 8));
    candidates
        .into_iter()
        .find(|candidate| accepted.iter().any(|name| name == candidate))
        .unwrap_or_else(|| "yuv420p".to_owned())
}

/// The traits of an FFmpeg pixel format, `None` for an unknown one.
pub fn pixel_traits(format: ffmpeg::format::Pixel) -> Option<PixelTraits> {
    let raw: ffmpeg::ffi::AVPixelFormat = format.into();
    // SAFETY: av_pix_fmt_desc_get accepts any value and returns null or a static descriptor.
    let descriptor = unsafe { ffmpeg::ffi::av_pix_fmt_desc_get(raw).as_ref()? };
    let flags = descriptor.flags;
    Some(PixelTraits {
        depth: descriptor.comp[0].depth as u8,
        chroma_shift: (descriptor.log2_chroma_w, descriptor.log2_chroma_h),
        rgb: flags & (ffmpeg::ffi::AV_PIX_FMT_FLAG_RGB as u64) != 0,
        gray: descriptor.nb_components <= 2
            && flags & (ffmpeg::ffi::AV_PIX_FMT_FLAG_RGB as u64) == 0,
        jpeg_range: pixel_name(format).is_some_and(|name| name.starts_with("yuvj")),
    })
}

/// The pixel format named `name`, if FFmpeg knows it.
pub fn pixel_by_name(name: &str) -> Option<ffmpeg::format::Pixel> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: av_get_pix_fmt reads a NUL-terminated string and returns AV_PIX_FMT_NONE if unknown.
    let raw = unsafe { ffmpeg::ffi::av_get_pix_fmt(name.as_ptr()) };
    (raw != ffmpeg::ffi::AVPixelFormat::AV_PIX_FMT_NONE).then(|| ffmpeg::format::Pixel::from(raw))
}

/// The colour description a source declares, as FFmpeg's raw enum values (`AVColorRange`,
/// `AVColorSpace`, `AVColorPrimaries`, `AVColorTransferCharacteristic`; 2 = unspecified).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColorTags {
    pub range: i32,
    pub space: i32,
    pub primaries: i32,
    pub transfer: i32,
}

impl Default for ColorTags {
    fn default() -> Self {
        Self {
            range: 0,
            space: 2,
            primaries: 2,
            transfer: 2,
        }
    }
}

impl ColorTags {
    /// True when the samples use the full 0–255 (or 0–1023) range.
    pub fn full_range(self) -> bool {
        self.range == ffmpeg::ffi::AVColorRange::AVCOL_RANGE_JPEG as i32
    }

    /// True for HDR transfer functions (PQ, HLG).
    pub fn is_hdr(self) -> bool {
        self.transfer == ffmpeg::ffi::AVColorTransferCharacteristic::AVCOL_TRC_SMPTE2084 as i32
            || self.transfer
                == ffmpeg::ffi::AVColorTransferCharacteristic::AVCOL_TRC_ARIB_STD_B67 as i32
    }
}

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

/// FFmpeg's own name of a pixel format.
pub fn pixel_name(format: ffmpeg::format::Pixel) -> Option<String> {
    let raw: ffmpeg::ffi::AVPixelFormat = format.into();
    // SAFETY: av_get_pix_fmt_name accepts any value and returns null or a static string.
    let name = unsafe { ffmpeg::ffi::av_get_pix_fmt_name(raw) };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null names are static NUL-terminated strings.
    Some(
        unsafe { std::ffi::CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Swscale coefficient table for a colour space (BT.709, BT.2020, else BT.601).
fn sws_coefficients(space: i32) -> *const libc::c_int {
    let table = if space == ffmpeg::ffi::AVColorSpace::AVCOL_SPC_BT709 as i32 {
        ffmpeg::ffi::SWS_CS_ITU709
    } else if space == ffmpeg::ffi::AVColorSpace::AVCOL_SPC_BT2020_NCL as i32
        || space == ffmpeg::ffi::AVColorSpace::AVCOL_SPC_BT2020_CL as i32
    {
        ffmpeg::ffi::SWS_CS_BT2020
    } else {
        ffmpeg::ffi::SWS_CS_ITU601
    };
    // SAFETY: sws_getCoefficients returns a pointer to a static table for any value.
    unsafe { ffmpeg::ffi::sws_getCoefficients(table as libc::c_int) }
}

/// A swscale context that reads `from` (format, width, height) in `from_full_range` and writes
/// `to` in `to_full_range`, both with the coefficients of colour space `space`.
pub fn scaler(
    from: (ffmpeg::format::Pixel, u32, u32),
    from_full_range: bool,
    to: (ffmpeg::format::Pixel, u32, u32),
    to_full_range: bool,
    space: i32,
) -> Result<ffmpeg::software::scaling::Context, ffmpeg::Error> {
    let mut context = ffmpeg::software::scaling::Context::get(
        from.0,
        from.1,
        from.2,
        to.0,
        to.1,
        to.2,
        ffmpeg::software::scaling::Flags::BICUBIC,
    )?;
    let coefficients = sws_coefficients(space);
    // SAFETY: the context is valid; the tables are static; brightness 0, contrast and saturation
    // 1.0 in 16.16 fixed point are swscale's neutral values.
    let status = unsafe {
        ffmpeg::ffi::sws_setColorspaceDetails(
            context.as_mut_ptr(),
            coefficients,
            libc::c_int::from(from_full_range),
            coefficients,
            libc::c_int::from(to_full_range),
            0,
            1 << 16,
            1 << 16,
        )
    };
    // -1 means the formats have no adjustable details (e.g. both RGB): the defaults stand.
    let _ = status;
    Ok(context)
}

/// True when a decoded frame's samples are full range (tagged so, or a YUVJ format).
pub fn frame_is_full_range(frame: &ffmpeg::frame::Video) -> bool {
    frame.color_range() == ffmpeg::color::Range::JPEG
        || pixel_traits(frame.format()).is_some_and(|traits| traits.jpeg_range || traits.rgb)
}

/// Turns `input` by `orientation` into `output`, which must be allocated with the same pixel
/// format and the turned size. Lossless: samples are moved, never resampled.
pub fn rotate_frame(
    input: &ffmpeg::frame::Video,
    output: &mut ffmpeg::frame::Video,
    orientation: Orientation,
) {
    let traits = pixel_traits(input.format()).unwrap_or(PixelTraits::YUV420P8);
    let bytes = if traits.depth > 8 { 2 } else { 1 };
    for plane in 0..input.planes().min(output.planes()) {
        let shift = if plane == 0 || plane == 3 {
            (0, 0)
        } else {
            traits.chroma_shift
        };
        let ceil_shift = |value: u32, by: u8| ((value + (1 << by) - 1) >> by) as usize;
        let width = ceil_shift(input.width(), shift.0);
        let height = ceil_shift(input.height(), shift.1);
        let (in_stride, out_stride) = (input.stride(plane), output.stride(plane));
        let (out_width, out_height) = if orientation.swaps_axes() {
            (height, width)
        } else {
            (width, height)
        };
        let source = input.data(plane);
        let target = output.data_mut(plane);
        rotate_plane(
            source,
            in_stride,
            (width, height),
            target,
            out_stride,
            (out_width, out_height),
            bytes,
            orientation,
        );
    }
}

/// Rotates one plane of `size` = (width, height) samples of `bytes` bytes each.
#[allow(clippy::too_many_arguments)]
fn rotate_plane(
    source: &[u8],
    source_stride: usize,
    size: (usize, usize),
    target: &mut [u8],
    target_stride: usize,
    target_size: (usize, usize),
    bytes: usize,
    orientation: Orientation,
) {
    let (width, height) = size;
    for row in 0..target_size.1 {
        for column in 0..target_size.0 {
            let (from_row, from_column) = orientation.source_of(row, column, width, height);
            let from = from_row * source_stride + from_column * bytes;
            let to = row * target_stride + column * bytes;
            target[to..to + bytes].copy_from_slice(&source[from..from + bytes]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traits(depth: u8, chroma_shift: (u8, u8)) -> PixelTraits {
        PixelTraits {
            depth,
            chroma_shift,
            rgb: false,
            gray: false,
            jpeg_range: false,
        }
    }

    fn names(list: &str) -> Vec<String> {
        list.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn depth_and_chroma_are_kept_where_the_encoder_can() {
        let x264 = names("yuv420p yuvj420p yuv422p yuv444p yuv420p10le yuv422p10le yuv444p10le");
        let svt = names("yuv420p yuv420p10le");
        assert_eq!(
            choose_pixel_format(traits(10, (1, 1)), &x264, false),
            "yuv420p10le"
        );
        assert_eq!(
            choose_pixel_format(traits(8, (1, 0)), &x264, false),
            "yuv422p"
        );
        assert_eq!(
            choose_pixel_format(traits(10, (0, 0)), &x264, false),
            "yuv444p10le"
        );
        assert_eq!(
            choose_pixel_format(traits(12, (1, 1)), &x264, false),
            "yuv420p10le"
        );
        assert_eq!(
            choose_pixel_format(traits(10, (1, 0)), &svt, false),
            "yuv420p10le"
        );
        assert_eq!(
            choose_pixel_format(traits(8, (2, 0)), &x264, false),
            "yuv420p"
        );
        // 8-bit 4:2:0 on request, whatever the source.
        assert_eq!(
            choose_pixel_format(traits(10, (0, 0)), &x264, true),
            "yuv420p"
        );
        let mut rgb = traits(8, (0, 0));
        rgb.rgb = true;
        assert_eq!(choose_pixel_format(rgb, &x264, false), "yuv420p");
    }

    #[test]
    fn orientations_follow_ffmpeg_autorotate() {
        // A display matrix of -90° (counter-clockwise) is a phone held upright: turn clockwise.
        assert_eq!(
            Orientation::from_rotation_degrees(-90.0),
            Some(Orientation::Clockwise90)
        );
        assert_eq!(
            Orientation::from_rotation_degrees(90.0),
            Some(Orientation::Clockwise270)
        );
        assert_eq!(
            Orientation::from_rotation_degrees(180.0),
            Some(Orientation::Clockwise180)
        );
        assert_eq!(
            Orientation::from_rotation_degrees(-180.0),
            Some(Orientation::Clockwise180)
        );
        assert_eq!(
            Orientation::from_rotation_degrees(0.0),
            Some(Orientation::Upright)
        );
        assert_eq!(Orientation::from_rotation_degrees(45.0), None);
    }

    #[test]
    fn rotating_a_plane_moves_each_sample_where_it_is_shown() {
        // 3 wide, 2 high:  a b c / d e f
        let source = b"abcdef";
        let mut target = [0u8; 6];
        rotate_plane(
            source,
            3,
            (3, 2),
            &mut target,
            2,
            (2, 3),
            1,
            Orientation::Clockwise90,
        );
        assert_eq!(&target, b"daebfc");
        rotate_plane(
            source,
            3,
            (3, 2),
            &mut target,
            2,
            (2, 3),
            1,
            Orientation::Clockwise270,
        );
        assert_eq!(&target, b"cfbead");
        rotate_plane(
            source,
            3,
            (3, 2),
            &mut target,
            3,
            (3, 2),
            1,
            Orientation::Clockwise180,
        );
        assert_eq!(&target, b"fedcba");
        // Two-byte samples move as units.
        let wide = [1u8, 2, 3, 4];
        let mut turned = [0u8; 4];
        rotate_plane(
            &wide,
            4,
            (2, 1),
            &mut turned,
            2,
            (1, 2),
            2,
            Orientation::Clockwise90,
        );
        assert_eq!(turned, [1, 2, 3, 4]);
        rotate_plane(
            &wide,
            4,
            (2, 1),
            &mut turned,
            2,
            (1, 2),
            2,
            Orientation::Clockwise270,
        );
        assert_eq!(turned, [3, 4, 1, 2]);
    }
}
