//! Colour: the tags a source declares, and range-aware swscale conversion (swscale told the real
//! input and output ranges, so full-range sources stay full range instead of being squeezed into
//! limited levels under a full-range tag).

use super::pixels::pixel_traits;
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};

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
    scaler_between(from, (from_full_range, space), to, (to_full_range, space))
}

/// As [`scaler`], with each side's own (full range, colour space): for pictures leaving the
/// video's colour space (JPEG thumbnails are BT.601, full range).
pub fn scaler_between(
    from: (ffmpeg::format::Pixel, u32, u32),
    (from_full_range, from_space): (bool, i32),
    to: (ffmpeg::format::Pixel, u32, u32),
    (to_full_range, to_space): (bool, i32),
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
    // SAFETY: the context is valid; the tables are static; brightness 0, contrast and saturation
    // 1.0 in 16.16 fixed point are swscale's neutral values.
    let status = unsafe {
        ffmpeg::ffi::sws_setColorspaceDetails(
            context.as_mut_ptr(),
            sws_coefficients(from_space),
            libc::c_int::from(from_full_range),
            sws_coefficients(to_space),
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
