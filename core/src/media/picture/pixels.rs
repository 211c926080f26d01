//! Pixel formats: what a format is made of, FFmpeg's names for them, and the encoder's format
//! chosen from the source's (depth and chroma kept where the encoder can).

use ffmpeg_next as ffmpeg;

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
}
