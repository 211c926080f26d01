//! Split-audio: take every audio track out of the source once, for the whole file.
//!
//! Audio is never cut per segment: per-segment AAC would add encoder priming and padding at every
//! joint (tens of milliseconds of drift and a click each). Each track is stream-copied with its
//! original timestamps when the output container can hold its codec; otherwise (AAC into WebM,
//! say) that track alone is re-encoded, once, to the container's usual codec (Opus for WebM, AAC
//! otherwise), keeping its channels and start time. The tracks go into one NUT file that is
//! muxed back beside the merged video at the end.

use super::convert::SEGMENT_MUXER;
use super::probe::{AudioTrack, MediaInfo};
use super::source::Source;
use super::util;
use super::MediaError;
use crate::atomic_file::AtomicFile;
use crate::settings::Container;
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// What happens to one audio track.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioAction {
    /// Stream copy: the container holds the codec.
    Copy,
    /// Re-encode with this FFmpeg encoder (the container cannot hold the codec).
    Encode { encoder: String },
}

/// What extracting the audio did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioReport {
    pub tracks: usize,
    pub actions: Vec<AudioAction>,
    pub packets: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Decides, before any work starts, what happens to each audio track of `info` in `container`,
/// and fails early when a track can be neither copied nor re-encoded.
pub fn plan_audio(
    info: &MediaInfo,
    container: Container,
    output: &Path,
) -> Result<Vec<AudioAction>, MediaError> {
    util::init();
    let Some(format) = output_format(container) else {
        return Err(MediaError::Unsupported {
            path: output.to_owned(),
            reason: format!("muxer {} is missing", container.muxer_name()),
        });
    };
    info.audio
        .iter()
        .enumerate()
        .map(|(position, track)| {
            let codec = codec_id_by_name(&track.codec);
            // SAFETY: `format` points at a static muxer description.
            let fits = container.copies_audio(&track.codec) && codec.is_some_and(|codec| unsafe {
                ffmpeg::ffi::avformat_query_codec(format, codec.into(), ffmpeg::ffi::FF_COMPLIANCE_NORMAL) == 1
            });
            if fits {
                return Ok(AudioAction::Copy);
            }
            let encoder = container.fallback_audio_encoder();
            let unsupported = |reason: String| MediaError::Unsupported { path: output.to_owned(), reason };
            if ffmpeg::encoder::find_by_name(encoder).is_none() {
                return Err(unsupported(format!("audio track {} ({}) needs re-encoding with {encoder}, which this FFmpeg build lacks", position + 1, track.codec)));
            }
            if codec.and_then(ffmpeg::decoder::find).is_none() {
                return Err(unsupported(format!("audio track {} ({}) cannot be decoded, so it cannot be re-encoded for a .{} file", position + 1, track.codec, container.muxer_name())));
            }
            if track.channels == 0 || track.channels > 8 {
                return Err(unsupported(format!("audio track {} has {} channels; re-encoding handles 1 to 8", position + 1, track.channels)));
            }
            Ok(AudioAction::Encode { encoder: encoder.to_owned() })
        })
        .collect()
}

/// Writes every audio track of the source into `output` (NUT), copied or re-encoded as `actions`
/// says (one per track, from [`plan_audio`]). Returns `None`, writing nothing, when the source has
/// no audio.
///
/// Reads `source` (the bytes `info` was probed from). Other streams are
/// discarded: from MP4/MOV through ranged reads this fetches the audio's own bytes (plus read-
/// ahead), not the video's; a container without an index is read through once.
pub fn extract_audio_from(
    source: &Source,
    info: &MediaInfo,
    actions: &[AudioAction],
    output: &Path,
) -> Result<Option<AudioReport>, MediaError> {
    util::init();
    if info.audio.is_empty() {
        return Ok(None);
    }
    let started = Instant::now();
    let (mut input, failure) = super::source::open(source)?;
    if info.timestamp_repair.is_empty() {
        // (A repaired timeline is followed per stream through every packet: keep them all.)
        let tracks: Vec<usize> = info.audio.iter().map(|track| track.stream_index).collect();
        util::discard_all_but(&mut input, &tracks);
    }
    let partial = AtomicFile::create(output)?;
    let write_failed = |source| MediaError::Write {
        path: partial.target().to_owned(),
        source,
    };
    let mut muxer = util::open_output(&partial, SEGMENT_MUXER)?;
    let global_header = muxer
        .format()
        .flags()
        .contains(ffmpeg::format::Flags::GLOBAL_HEADER);

    let mut routes: Vec<Option<Route>> = (0..input.streams().count()).map(|_| None).collect();
    for (position, (track, action)) in info.audio.iter().zip(actions).enumerate() {
        let stream = input
            .stream(track.stream_index)
            .ok_or_else(|| MediaError::Unsupported {
                path: info.path.clone(),
                reason: format!("audio stream #{} is gone", track.stream_index),
            })?;
        let route = match action {
            AudioAction::Copy => {
                let mut added = muxer
                    .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
                    .map_err(write_failed)?;
                added.set_parameters(stream.parameters());
                added.set_time_base(stream.time_base());
                Route {
                    position,
                    input_time_base: stream.time_base(),
                    transcoder: None,
                }
            }
            AudioAction::Encode { encoder } => {
                let transcoder =
                    AudioTranscoder::open(info, track, &stream, encoder, global_header)?;
                let mut added = muxer
                    .add_stream(transcoder.encoder.codec())
                    .map_err(write_failed)?;
                added.set_parameters(&transcoder.encoder);
                added.set_time_base(transcoder.encoder.time_base());
                Route {
                    position,
                    input_time_base: stream.time_base(),
                    transcoder: Some(transcoder),
                }
            }
        };
        routes[track.stream_index] = Some(route);
        util::clear_codec_tag(&mut muxer, position, 0);
    }
    util::write_intermediate_header(&mut muxer).map_err(write_failed)?;
    let output_time_bases: Vec<ffmpeg::Rational> = muxer.streams().map(|s| s.time_base()).collect();
    let offsets: Vec<i64> = output_time_bases
        .iter()
        .map(|&time_base| util::offset_ticks(info.intermediate_offset_seconds, time_base))
        .collect();
    let mut writer = |mut packet: ffmpeg::Packet,
                      position: usize,
                      from: ffmpeg::Rational|
     -> Result<(), MediaError> {
        packet.rescale_ts(from, output_time_bases[position]);
        util::shift_packet(&mut packet, offsets[position]);
        packet.set_stream(position);
        packet.set_position(-1);
        packet.write_interleaved(&mut muxer).map_err(write_failed)
    };

    let mut repairer = info.timestamp_repair.repairer();
    let mut packets = 0u64;
    loop {
        // A fresh packet per read: `Packet::read` does not release the previous one.
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(error) => return Err(failure.read_error(source, error)),
        }
        let Some(Some(route)) = routes.get_mut(packet.stream()) else {
            continue;
        };
        repairer.apply(&mut packet);
        let position = route.position;
        match &mut route.transcoder {
            None => {
                writer(packet.clone(), position, route.input_time_base)?;
                packets += 1;
            }
            Some(transcoder) => {
                for encoded in transcoder.push(Some(&packet))? {
                    writer(encoded, position, transcoder.encoder.time_base())?;
                    packets += 1;
                }
            }
        }
    }
    for route in routes.iter_mut().flatten() {
        if let Some(transcoder) = &mut route.transcoder {
            for encoded in transcoder.push(None)? {
                writer(encoded, route.position, transcoder.encoder.time_base())?;
                packets += 1;
            }
        }
    }
    muxer.write_trailer().map_err(write_failed)?;
    drop(muxer);
    let bytes = std::fs::metadata(partial.path())
        .map_err(MediaError::io(partial.target()))?
        .len();
    partial.commit()?;
    Ok(Some(AudioReport {
        tracks: info.audio.len(),
        actions: actions.to_vec(),
        packets,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    }))
}

/// Where a source audio stream goes.
struct Route {
    position: usize,
    input_time_base: ffmpeg::Rational,
    transcoder: Option<AudioTranscoder>,
}

/// Decode → resample → encode for one track. libswresample buffers the converted samples, so
/// the encoder can be fed frames of exactly its frame size.
struct AudioTranscoder {
    path: std::path::PathBuf,
    decoder: ffmpeg::decoder::Audio,
    encoder: ffmpeg::encoder::Audio,
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
    fn open(
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
    fn push(&mut self, packet: Option<&ffmpeg::Packet>) -> Result<Vec<ffmpeg::Packet>, MediaError> {
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

pub(crate) fn output_format(container: Container) -> Option<*const ffmpeg::ffi::AVOutputFormat> {
    let name = std::ffi::CString::new(container.muxer_name()).ok()?;
    // SAFETY: av_guess_format only reads the NUL-terminated name and returns a static description.
    let format =
        unsafe { ffmpeg::ffi::av_guess_format(name.as_ptr(), std::ptr::null(), std::ptr::null()) };
    (!format.is_null()).then_some(format)
}

fn codec_id_by_name(name: &str) -> Option<ffmpeg::codec::Id> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: avcodec_descriptor_get_by_name reads the NUL-terminated name; the result is static.
    let descriptor = unsafe { ffmpeg::ffi::avcodec_descriptor_get_by_name(name.as_ptr()) };
    // SAFETY: a non-null descriptor is a valid static struct.
    (!descriptor.is_null()).then(|| ffmpeg::codec::Id::from(unsafe { (*descriptor).id }))
}
