//! Text subtitles from one format to another ([`SubtitleConverter`]): decoded to FFmpeg's ASS
//! events, encoded with the target encoder, timed as `ffmpeg -c:s ENCODER` times them.

use crate::media::util;
use crate::media::MediaError;
use ffmpeg_next as ffmpeg;
use ffmpeg_next::Rescale as _;
use std::path::{Path, PathBuf};
/// Text subtitles from one format to another: decode to FFmpeg's ASS events, encode with the
/// target encoder, timed as `ffmpeg -c:s ENCODER` times them.
pub(super) struct SubtitleConverter {
    path: PathBuf,
    decoder: ffmpeg::decoder::Subtitle,
    pub(super) encoder: ffmpeg::encoder::subtitle::Encoder,
    /// The source stream's time base (its packets' timestamps).
    packet_time_base: ffmpeg::Rational,
    buffer: Vec<u8>,
}

/// Largest encoded subtitle event, in bytes (ffmpeg's own buffer is 1 MiB).
const SUBTITLE_BUFFER_BYTES: usize = 1 << 20;

impl SubtitleConverter {
    pub(super) fn open(
        path: &Path,
        stream: &ffmpeg::format::stream::Stream,
        encoder_name: &str,
    ) -> Result<Self, MediaError> {
        let codec = util::codec_name(stream.parameters().id());
        let decode_failed = |source| MediaError::Decode {
            path: path.to_owned(),
            codec: codec.clone(),
            source,
        };
        let mut context =
            ffmpeg::codec::Context::from_parameters(stream.parameters()).map_err(decode_failed)?;
        // SAFETY: the context is not opened yet; pkt_timebase tells the decoder how to turn
        // packet timestamps into the subtitle's microseconds.
        unsafe {
            (*context.as_mut_ptr()).pkt_timebase = stream.time_base().into();
        }
        let decoder = context.decoder().subtitle().map_err(decode_failed)?;
        let encode_failed = |source| MediaError::Encode {
            encoder: encoder_name.to_owned(),
            source,
        };
        let target = ffmpeg::encoder::find_by_name(encoder_name).ok_or_else(|| {
            MediaError::EncoderMissing {
                encoder: encoder_name.to_owned(),
            }
        })?;
        let mut encoder = ffmpeg::codec::Context::new_with_codec(target)
            .encoder()
            .subtitle()
            .map_err(encode_failed)?;
        // SAFETY: both contexts are valid; the encoder (not yet opened) gets its own copy of
        // the decoder's ASS header, which describes the styles every event refers to and is
        // freed with the encoder.
        unsafe {
            let (from, to) = (decoder.as_ptr(), encoder.as_mut_ptr());
            (*to).time_base = ffmpeg::ffi::AVRational { num: 1, den: 1000 };
            let size = (*from).subtitle_header_size.max(0) as usize;
            if !(*from).subtitle_header.is_null() && size > 0 {
                let header = ffmpeg::ffi::av_mallocz(size + 1).cast::<u8>();
                if !header.is_null() {
                    std::ptr::copy_nonoverlapping((*from).subtitle_header, header, size);
                    (*to).subtitle_header = header;
                    (*to).subtitle_header_size = size as i32;
                }
            }
        }
        let encoder = encoder
            .open_as(target)
            .map_err(|source| MediaError::EncoderOpen {
                encoder: encoder_name.to_owned(),
                settings: format!("subtitles from {codec}"),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            decoder,
            encoder,
            packet_time_base: stream.time_base(),
            buffer: vec![0; SUBTITLE_BUFFER_BYTES],
        })
    }

    /// Converts one source packet; `None` when it holds no event (an empty one, or one the
    /// decoder could not read).
    pub(super) fn convert(
        &mut self,
        packet: &ffmpeg::Packet,
        output_time_base: ffmpeg::Rational,
    ) -> Result<Option<ffmpeg::Packet>, MediaError> {
        let mut subtitle = ffmpeg::Subtitle::new();
        let decoded = match self.decoder.decode(packet, &mut subtitle) {
            Ok(got) => got,
            // A damaged event costs that event, as in the audio.
            Err(ffmpeg::Error::InvalidData) => false,
            Err(source) => {
                return Err(MediaError::Decode {
                    path: self.path.clone(),
                    codec: "subtitle".into(),
                    source,
                })
            }
        };
        if !decoded {
            return Ok(None);
        }
        // SAFETY: `subtitle` was filled by the decoder; it is encoded from and freed here once.
        let result = unsafe {
            let raw = subtitle.as_mut_ptr();
            let empty = (*raw).num_rects == 0;
            let microseconds = ffmpeg::Rational::new(1, 1_000_000);
            let start = if (*raw).pts == ffmpeg::ffi::AV_NOPTS_VALUE {
                packet
                    .pts()
                    .unwrap_or(0)
                    .rescale(self.packet_time_base, microseconds)
            } else {
                (*raw).pts
            } + i64::from((*raw).start_display_time) * 1000;
            let duration_ms =
                i64::from((*raw).end_display_time) - i64::from((*raw).start_display_time);
            (*raw).pts = start;
            (*raw).end_display_time = duration_ms.max(0) as u32;
            (*raw).start_display_time = 0;
            let written = if empty {
                0
            } else {
                ffmpeg::ffi::avcodec_encode_subtitle(
                    self.encoder.as_mut_ptr(),
                    self.buffer.as_mut_ptr(),
                    self.buffer.len() as i32,
                    raw,
                )
            };
            ffmpeg::ffi::avsubtitle_free(raw);
            (written, start, duration_ms)
        };
        let (written, start, duration_ms) = result;
        if written < 0 {
            return Err(MediaError::Encode {
                encoder: self.encoder_name(),
                source: ffmpeg::Error::from(written),
            });
        }
        if written == 0 {
            return Ok(None);
        }
        let mut converted = ffmpeg::Packet::copy(&self.buffer[..written as usize]);
        let pts = start.rescale(ffmpeg::Rational::new(1, 1_000_000), output_time_base);
        converted.set_pts(Some(pts));
        converted.set_dts(Some(pts));
        converted.set_duration(
            duration_ms
                .max(0)
                .rescale(ffmpeg::Rational::new(1, 1000), output_time_base),
        );
        converted.set_flags(ffmpeg::packet::Flags::KEY);
        Ok(Some(converted))
    }

    fn encoder_name(&self) -> String {
        self.encoder
            .codec()
            .map(|c| c.name().to_owned())
            .unwrap_or_default()
    }
}
