//! The encoders' private options: headers from the settings alone (so segments join), rate
//! control, HDR10 static metadata where the encoder carries it.

use crate::media::picture::HdrStatic;
use crate::settings::{EncodeSettings, RateControl, VideoCodec};
use ffmpeg_next as ffmpeg;
/// Encoder private options for `settings`, in each encoder's own vocabulary.
///
/// Segments are joined by a check of their codec headers, not a re-encode, so each encoder must
/// make headers that depend on the settings only: x264 needs `stitchable` (otherwise it may tune
/// the SPS/PPS to a segment's content); x265's VPS/SPS/PPS, libvpx's VP9 (no global header) and
/// SVT-AV1's sequence header already follow from the settings alone. The source's HDR10
/// static metadata goes to x265 and SVT-AV1, whose bitstreams carry it in every container
/// (FFmpeg 5.1's wrappers do not pass it on by themselves); the others warn
/// ([`HdrStatic::not_kept_warning`]).
///
/// With `fixed_keyframes` (renditions whose fragments must align) x264 and x265 place no
/// keyframes of their own at scene cuts: the segment's start and the frames the caller forces
/// are then the keyframes, the same frames in every rendition.
pub(super) fn encoder_options(
    settings: &EncodeSettings,
    hdr: &HdrStatic,
    fixed_keyframes: bool,
) -> ffmpeg::Dictionary<'static> {
    let mut options = ffmpeg::Dictionary::new();
    let crf = match settings.rate {
        RateControl::Crf(crf) => Some(crf.to_string()),
        RateControl::Bitrate(_) => None,
    };
    let threads = settings.threads.max(1);
    match settings.codec {
        VideoCodec::H264 => {
            options.set("preset", &settings.preset);
            if let Some(crf) = &crf {
                options.set("crf", crf);
            }
            // Headers (SPS/PPS) from the settings alone, never tuned to a segment's content:
            // segments are joined without re-muxing, so every one must carry the same headers.
            options.set(
                "x264-params",
                if fixed_keyframes {
                    "stitchable=1:scenecut=0"
                } else {
                    "stitchable=1"
                },
            );
            if fixed_keyframes {
                // A forced I frame is an IDR, so a fragment starting there decodes on its own.
                options.set("forced-idr", "1");
            }
        }
        VideoCodec::H265 => {
            options.set("preset", &settings.preset);
            if let Some(crf) = &crf {
                options.set("crf", crf);
            }
            // libx265 ignores the generic thread count and logs to stderr on its own.
            let mut params = format!("pools={threads}:frame-threads={threads}:log-level=error");
            if fixed_keyframes {
                params.push_str(":scenecut=0");
                options.set("forced-idr", "1");
            }
            let hdr_params = hdr.x265_params();
            if !hdr_params.is_empty() {
                params = format!("{params}:{hdr_params}");
            }
            options.set("x265-params", &params);
        }
        VideoCodec::Vp9 => {
            options.set("deadline", "good");
            options.set("cpu-used", &settings.preset);
            options.set("row-mt", "1");
            if let Some(crf) = &crf {
                options.set("crf", crf);
                // Constant quality in libvpx needs the target bitrate at 0.
                options.set("b", "0");
            }
        }
        VideoCodec::Av1 => {
            options.set("preset", &settings.preset);
            if let Some(crf) = &crf {
                options.set("crf", crf);
            }
            let hdr_params = hdr.svtav1_params();
            options.set(
                "svtav1-params",
                &if hdr_params.is_empty() {
                    format!("lp={threads}")
                } else {
                    format!("lp={threads}:{hdr_params}")
                },
            );
        }
    }
    options
}
