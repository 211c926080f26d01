//! The audio transcoder of one track: decode → swresample → encode, frames of exactly the
//! encoder's frame size.

use crate::media::probe::{AudioTrack, MediaInfo};
use crate::media::MediaError;
use ffmpeg_next as ffmpeg;
/// Decode → resample → encode for one track. libswresample buffers the converted samples, so
/// the encoder can be fed frames of exactly its frame size.
pub(super) struct AudioTranscoder {
    path: std::path::PathBuf,
    decoder: ffmpeg::decoder::Audio,
    pub(super) encoder: ffmpeg::encoder::Audio,
    resampler: *mut ffmpeg::ffi::SwrContext,
    layout: ffmpeg::ChannelLayout,
    /// Samples per encoder frame.
    frame_size: usize,
    /// Next output pts in samples (encoder time base 1/rate); set from the first decoded frame so
    /// the track keeps its start time.
    next_pts: Option<i64>,
    decoded: ffmpeg::frame::Audio,
}

// SAFETY: the resampler is owned by this value and only touched through `&mut self`.
unsafe impl Send for AudioTranscoder {}

impl Drop for AudioTranscoder {
    fn drop(&mut self) {
        // SAFETY: the pointer came from swr_alloc_set_opts and is freed once here.
        unsafe { ffmpeg::ffi::swr_free(&mut self.resampler) };
    }
}

impl AudioTranscoder {
    pub(super) fn open(
        info: &MediaInfo,
        track: &AudioTrack,
        stream: &ffmpeg::format::stream::Stream,
        encoder_name: &str,
        global_header: bool,
    ) -> Result<Self, MediaError> {
        let decode_failed = |source| MediaError::Decode {
            path: info.path.clone(),
            codec: track.codec.clone(),
            source,
        };
        let encode_failed = |source| MediaError::Encode {
            encoder: encoder_name.to_owned(),
            source,
        };
        let decoder = ffmpeg::codec::Context::from_parameters(stream.parameters())
            .map_err(decode_failed)?
            .decoder()
            .audio()
            .map_err(decode_failed)?;
        let codec = ffmpeg::encoder::find_by_name(encoder_name).ok_or_else(|| {
            MediaError::EncoderMissing {
                encoder: encoder_name.to_owned(),
            }
        })?;
        let audio_codec = codec.audio().map_err(encode_failed)?;

        let channels = track.channels.clamp(1, 8) as i32;
        let layout = match decoder.channel_layout() {
            layout if layout.channels() == channels => layout,
            _ => ffmpeg::ChannelLayout::default(channels),
        };
        let supports_source_rate = audio_codec
            .rates()
            .is_none_or(|mut rates| rates.any(|r| r == track.sample_rate as i32));
        let rate = if supports_source_rate && track.sample_rate > 0 {
            track.sample_rate as i32
        } else {
            48_000
        };
        let format = audio_codec
            .formats()
            .and_then(|mut formats| formats.next())
            .unwrap_or(ffmpeg::format::Sample::F32(
                ffmpeg::format::sample::Type::Planar,
            ));

        let mut encoder = ffmpeg::codec::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(encode_failed)?;
        encoder.set_rate(rate);
        encoder.set_channel_layout(layout);
        encoder.set_format(format);
        encoder.set_time_base(ffmpeg::Rational::new(1, rate));
        // 64 kb/s per channel is transparent for AAC-LC and generous for Opus.
        encoder.set_bit_rate((64_000 * channels as usize).min(512_000));
        if global_header {
            encoder.set_flags(ffmpeg::codec::Flags::GLOBAL_HEADER);
        }
        let encoder = encoder
            .open_as(codec)
            .map_err(|source| MediaError::EncoderOpen {
                encoder: encoder_name.to_owned(),
                settings: format!("{rate} Hz, {channels} channels"),
                source,
            })?;
        let frame_size = match encoder.frame_size() {
            0 => 1024,
            size => size as usize,
        };
        Ok(Self {
            path: info.path.clone(),
            decoder,
            encoder,
            resampler: std::ptr::null_mut(),
            layout,
            frame_size,
            next_pts: None,
            decoded: ffmpeg::frame::Audio::empty(),
        })
    }

    /// Feeds one source packet (`None` at the end) and returns the packets encoded so far.
    pub(super) fn push(
        &mut self,
        packet: Option<&ffmpeg::Packet>,
    ) -> Result<Vec<ffmpeg::Packet>, MediaError> {
        let decode_failed = |source| MediaError::Decode {
            path: self.path.clone(),
            codec: String::from("audio"),
            source,
        };
        match packet {
            Some(packet) => match self.decoder.send_packet(packet) {
                Ok(()) | Err(ffmpeg::Error::InvalidData) => {}
                Err(error) => return Err(decode_failed(error)),
            },
            None => self.decoder.send_eof().map_err(decode_failed)?,
        }
        let mut encoded = Vec::new();
        while self.decoder.receive_frame(&mut self.decoded).is_ok() {
            self.resample_decoded()?;
            self.encode_ready(false, &mut encoded)?;
        }
        if packet.is_none() {
            self.encode_ready(true, &mut encoded)?;
            self.encoder
                .send_eof()
                .map_err(|source| MediaError::Encode {
                    encoder: self.encoder_name(),
                    source,
                })?;
            self.drain(&mut encoded);
        }
        Ok(encoded)
    }

    fn encoder_name(&self) -> String {
        self.encoder
            .codec()
            .map(|c| c.name().to_owned())
            .unwrap_or_default()
    }

    /// Pushes the decoded frame into the resampler's buffer.
    fn resample_decoded(&mut self) -> Result<(), MediaError> {
        let failed = |source| MediaError::Encode {
            encoder: String::from("swresample"),
            source,
        };
        if self.resampler.is_null() {
            let source_layout = match self.decoded.channel_layout() {
                layout
                    if layout.channels() == i32::from(self.decoded.channels())
                        && !layout.is_empty() =>
                {
                    layout
                }
                _ => ffmpeg::ChannelLayout::default(i32::from(self.decoded.channels())),
            };
            // SAFETY: plain constructor over valid enum values; the result is checked for null.
            self.resampler = unsafe {
                ffmpeg::ffi::swr_alloc_set_opts(
                    std::ptr::null_mut(),
                    self.layout.bits() as i64,
                    self.encoder.format().into(),
                    self.encoder.rate() as i32,
                    source_layout.bits() as i64,
                    self.decoded.format().into(),
                    self.decoded.rate() as i32,
                    0,
                    std::ptr::null_mut(),
                )
            };
            // SAFETY: non-null contexts from swr_alloc_set_opts may be initialised.
            if self.resampler.is_null() || unsafe { ffmpeg::ffi::swr_init(self.resampler) } < 0 {
                return Err(failed(ffmpeg::Error::InvalidData));
            }
            if self.next_pts.is_none() {
                let start = self.decoded.timestamp().or(self.decoded.pts()).unwrap_or(0);
                let time_base = self.decoder.time_base();
                let time_base = if time_base.denominator() > 0 {
                    time_base
                } else {
                    ffmpeg::Rational::new(1, self.decoded.rate() as i32)
                };
                use ffmpeg::Rescale as _;
                self.next_pts = Some(start.rescale(time_base, self.encoder.time_base()));
            }
        }
        // SAFETY: the frame's extended_data holds `samples` samples per channel; a zero-sized
        // output makes swr buffer everything.
        let status = unsafe {
            let frame = self.decoded.as_ptr();
            ffmpeg::ffi::swr_convert(
                self.resampler,
                std::ptr::null_mut(),
                0,
                (*frame).extended_data as *mut *const u8,
                (*frame).nb_samples,
            )
        };
        if status < 0 {
            return Err(failed(ffmpeg::Error::from(status)));
        }
        Ok(())
    }

    /// Encodes every full frame the resampler holds (and, at the end, the last partial one).
    fn encode_ready(
        &mut self,
        at_end: bool,
        encoded: &mut Vec<ffmpeg::Packet>,
    ) -> Result<(), MediaError> {
        if self.resampler.is_null() {
            return Ok(());
        }
        let encoder_name = self.encoder_name();
        let failed = |source| MediaError::Encode {
            encoder: encoder_name.clone(),
            source,
        };
        loop {
            // SAFETY: the resampler is initialised.
            let buffered =
                unsafe { ffmpeg::ffi::swr_get_out_samples(self.resampler, 0) }.max(0) as usize;
            if buffered == 0 || (buffered < self.frame_size && !at_end) {
                return Ok(());
            }
            let mut frame =
                ffmpeg::frame::Audio::new(self.encoder.format(), self.frame_size, self.layout);
            // SAFETY: the frame was allocated for frame_size samples of the encoder's format and
            // layout; swr writes at most that many.
            let written = unsafe {
                let raw = frame.as_mut_ptr();
                ffmpeg::ffi::swr_convert(
                    self.resampler,
                    (*raw).extended_data,
                    self.frame_size as i32,
                    std::ptr::null_mut(),
                    0,
                )
            };
            if written < 0 {
                return Err(failed(ffmpeg::Error::from(written)));
            }
            if written == 0 {
                return Ok(());
            }
            frame.set_samples(written as usize);
            frame.set_rate(self.encoder.rate());
            let pts = self.next_pts.unwrap_or(0);
            frame.set_pts(Some(pts));
            self.next_pts = Some(pts + i64::from(written));
            self.encoder.send_frame(&frame).map_err(failed)?;
            self.drain(encoded);
        }
    }

    fn drain(&mut self, encoded: &mut Vec<ffmpeg::Packet>) {
        let mut packet = ffmpeg::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            encoded.push(std::mem::replace(&mut packet, ffmpeg::Packet::empty()));
        }
    }
}
