//! HDR10 static metadata (mastering display, content light level): read from a source's side
//! data and restated in the terms of the encoders that write it (x265, SVT-AV1), or warned.

use crate::settings::VideoCodec;
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};

/// A mastering display (SMPTE ST 2086) as HEVC's SEI and x265 state it: chromaticities `(x, y)`
/// in units of 1/50000, luminance in units of 1/10000 cd/m².
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasteringDisplay {
    pub red: (u32, u32),
    pub green: (u32, u32),
    pub blue: (u32, u32),
    pub white_point: (u32, u32),
    pub max_luminance: u32,
    pub min_luminance: u32,
}

/// HDR10's static metadata of a source: its mastering display and content light level (MaxCLL,
/// MaxFALL in cd/m²), from the first frame's side data (HEVC SEI) or the container's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HdrStatic {
    pub mastering_display: Option<MasteringDisplay>,
    pub content_light: Option<(u32, u32)>,
}

impl HdrStatic {
    /// Reads it from the side data of a decoded frame, else of the source's stream.
    pub fn read(frame: &ffmpeg::frame::Video, stream: &ffmpeg::format::stream::Stream) -> Self {
        let frame_bytes = |kind| frame.side_data(kind).map(|side| side.data().to_vec());
        let stream_bytes = |kind: ffmpeg::ffi::AVPacketSideDataType| {
            let mut size = 0usize;
            // SAFETY: the stream is open; the returned buffer (if any) holds `size` bytes owned by
            // the stream, copied at once.
            unsafe {
                let data = ffmpeg::ffi::av_stream_get_side_data(stream.as_ptr(), kind, &mut size);
                (!data.is_null()).then(|| std::slice::from_raw_parts(data, size).to_vec())
            }
        };
        // FFmpeg's AVMasteringDisplayMetadata (not in the generated bindings): ten AVRationals
        // (R, G, B primaries as x, y; white point x, y; min and max luminance), then the ints
        // has_primaries and has_luminance, all native-endian 32-bit.
        let word = |bytes: &[u8], at: usize| {
            bytes
                .get(at * 4..at * 4 + 4)
                .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let mastering = frame_bytes(ffmpeg::frame::side_data::Type::MasteringDisplayMetadata)
            .or_else(|| {
                stream_bytes(
                    ffmpeg::ffi::AVPacketSideDataType::AV_PKT_DATA_MASTERING_DISPLAY_METADATA,
                )
            })
            .filter(|bytes| bytes.len() >= 22 * 4)
            .and_then(|bytes| {
                let rational = |index: usize, unit: f64| {
                    let (num, den) = (word(&bytes, index * 2), word(&bytes, index * 2 + 1));
                    (f64::from(num) / f64::from(den.max(1)) * unit)
                        .round()
                        .max(0.0) as u32
                };
                let point =
                    |index: usize| (rational(index, 50_000.0), rational(index + 1, 50_000.0));
                (word(&bytes, 20) != 0 && word(&bytes, 21) != 0).then(|| MasteringDisplay {
                    red: point(0),
                    green: point(2),
                    blue: point(4),
                    white_point: point(6),
                    min_luminance: rational(8, 10_000.0),
                    max_luminance: rational(9, 10_000.0),
                })
            });
        // AVContentLightMetadata: unsigned MaxCLL, MaxFALL.
        let content_light = frame_bytes(ffmpeg::frame::side_data::Type::ContentLightLevel)
            .or_else(|| {
                stream_bytes(ffmpeg::ffi::AVPacketSideDataType::AV_PKT_DATA_CONTENT_LIGHT_LEVEL)
            })
            .filter(|bytes| bytes.len() >= 8)
            .map(|bytes| (word(&bytes, 0) as u32, word(&bytes, 1) as u32));
        Self {
            mastering_display: mastering,
            content_light,
        }
    }

    /// True when the source has any HDR10 static metadata.
    pub fn is_present(&self) -> bool {
        self.mastering_display.is_some() || self.content_light.is_some()
    }

    /// The one line warned when `codec`'s encoder cannot write the metadata into the output.
    pub fn not_kept_warning(&self, codec: VideoCodec) -> Option<String> {
        let writes = matches!(codec, VideoCodec::H265 | VideoCodec::Av1);
        (self.is_present() && !writes).then(|| {
            format!(
                "the HDR10 mastering display and content light level metadata are not kept: {} does not write them (--codec h265 or av1 does)",
                codec.encoder_name()
            )
        })
    }

    /// The metadata as SVT-AV1 options (`mastering-display=…:content-light=…`, chromaticities
    /// and cd/m² as decimals), empty when there is none.
    pub fn svtav1_params(&self) -> String {
        let mut params = Vec::new();
        if let Some(m) = &self.mastering_display {
            let xy = |(x, y): (u32, u32)| {
                format!(
                    "({:.5},{:.5})",
                    f64::from(x) / 50_000.0,
                    f64::from(y) / 50_000.0
                )
            };
            params.push(format!(
                "mastering-display=G{}B{}R{}WP{}L({:.4},{:.4})",
                xy(m.green),
                xy(m.blue),
                xy(m.red),
                xy(m.white_point),
                f64::from(m.max_luminance) / 10_000.0,
                f64::from(m.min_luminance) / 10_000.0
            ));
        }
        if let Some((max_cll, max_fall)) = self.content_light {
            params.push(format!("content-light={max_cll},{max_fall}"));
        }
        params.join(":")
    }

    /// The metadata as x265 options (`master-display=…:max-cll=…`), empty when there is none.
    pub fn x265_params(&self) -> String {
        let mut params = Vec::new();
        if let Some(m) = &self.mastering_display {
            params.push(format!(
                "master-display=G({},{})B({},{})R({},{})WP({},{})L({},{})",
                m.green.0,
                m.green.1,
                m.blue.0,
                m.blue.1,
                m.red.0,
                m.red.1,
                m.white_point.0,
                m.white_point.1,
                m.max_luminance,
                m.min_luminance
            ));
        }
        if let Some((max_cll, max_fall)) = self.content_light {
            params.push(format!("max-cll={max_cll},{max_fall}"));
        }
        params.join(":")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr10() -> HdrStatic {
        HdrStatic {
            mastering_display: Some(MasteringDisplay {
                red: (34000, 16000),
                green: (13250, 34500),
                blue: (7500, 3000),
                white_point: (15635, 16450),
                max_luminance: 10_000_000,
                min_luminance: 1,
            }),
            content_light: Some((1000, 400)),
        }
    }

    #[test]
    fn hdr10_metadata_is_written_in_each_encoders_terms_or_warned() {
        assert_eq!(
            hdr10().x265_params(),
            "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400"
        );
        assert_eq!(
            hdr10().svtav1_params(),
            "mastering-display=G(0.26500,0.69000)B(0.15000,0.06000)R(0.68000,0.32000)WP(0.31270,0.32900)L(1000.0000,0.0001):content-light=1000,400"
        );
        assert_eq!(HdrStatic::default().x265_params(), "");
        assert!(HdrStatic::default()
            .not_kept_warning(VideoCodec::H264)
            .is_none());
        assert!(hdr10().not_kept_warning(VideoCodec::H265).is_none());
        assert!(hdr10()
            .not_kept_warning(VideoCodec::Vp9)
            .is_some_and(|w| w.contains("libvpx-vp9 does not write them")));
    }
}
