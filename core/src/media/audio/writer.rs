//! [`AudioWriter`]: one NUT file of audio tracks, each copied or re-encoded, timestamps moved by
//! the intermediate offset.

use super::transcoder::AudioTranscoder;
use super::AudioAction;
use crate::atomic_file::AtomicFile;
use crate::media::convert::SEGMENT_MUXER;
use crate::media::probe::MediaInfo;
use crate::media::util;
use crate::media::MediaError;
use ffmpeg_next as ffmpeg;
use std::path::Path;
/// One NUT file of audio tracks being written: each track copied or re-encoded, fed packets in
/// their input stream's time base with the source's timestamps (the intermediate offset is
/// added here).
pub(crate) struct AudioWriter {
    partial: AtomicFile,
    muxer: ffmpeg::format::context::Output,
    /// Per track, in track order.
    routes: Vec<Route>,
    output_time_bases: Vec<ffmpeg::Rational>,
    offsets: Vec<i64>,
    packets: u64,
}

impl AudioWriter {
    /// Opens `output` for the tracks of `info`, whose streams are `streams[t]` of `input` (the
    /// source, or a piece holding the same tracks), each handled as `actions[t]` says.
    pub(crate) fn create(
        info: &MediaInfo,
        actions: &[AudioAction],
        input: &ffmpeg::format::context::Input,
        streams: &[usize],
        output: &Path,
    ) -> Result<Self, MediaError> {
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
        let mut routes = Vec::with_capacity(streams.len());
        for (position, ((track, action), &index)) in
            info.audio.iter().zip(actions).zip(streams).enumerate()
        {
            let stream = input.stream(index).ok_or_else(|| MediaError::Unsupported {
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
                        input_time_base: stream.time_base(),
                        transcoder: Some(transcoder),
                    }
                }
            };
            routes.push(route);
            util::clear_codec_tag(&mut muxer, position, 0);
        }
        util::write_intermediate_header(&mut muxer).map_err(write_failed)?;
        let output_time_bases: Vec<ffmpeg::Rational> =
            muxer.streams().map(|s| s.time_base()).collect();
        let offsets = output_time_bases
            .iter()
            .map(|&time_base| util::offset_ticks(info.intermediate_offset_seconds, time_base))
            .collect();
        Ok(Self {
            partial,
            muxer,
            routes,
            output_time_bases,
            offsets,
            packets: 0,
        })
    }

    fn write(
        &mut self,
        mut packet: ffmpeg::Packet,
        position: usize,
        from: ffmpeg::Rational,
    ) -> Result<(), MediaError> {
        packet.rescale_ts(from, self.output_time_bases[position]);
        util::shift_packet(&mut packet, self.offsets[position]);
        packet.set_stream(position);
        packet.set_position(-1);
        self.packets += 1;
        packet
            .write_interleaved(&mut self.muxer)
            .map_err(|source| MediaError::Write {
                path: self.partial.target().to_owned(),
                source,
            })
    }

    /// Writes one packet of track `position` (copied, or fed to its encoder).
    pub(crate) fn push(
        &mut self,
        position: usize,
        packet: ffmpeg::Packet,
    ) -> Result<(), MediaError> {
        let from = self.routes[position].input_time_base;
        let Some(transcoder) = self.routes[position].transcoder.as_mut() else {
            return self.write(packet, position, from);
        };
        let encoder_base = transcoder.encoder.time_base();
        for encoded in transcoder.push(Some(&packet))? {
            self.write(encoded, position, encoder_base)?;
        }
        Ok(())
    }

    /// Flushes the encoders and writes the trailer: the file, still under its partial name, and
    /// the packets written.
    pub(crate) fn finish(mut self) -> Result<(AtomicFile, u64), MediaError> {
        for position in 0..self.routes.len() {
            if let Some(transcoder) = &mut self.routes[position].transcoder {
                let encoder_base = transcoder.encoder.time_base();
                let encoded = transcoder.push(None)?;
                for packet in encoded {
                    self.write(packet, position, encoder_base)?;
                }
            }
        }
        self.muxer
            .write_trailer()
            .map_err(|source| MediaError::Write {
                path: self.partial.target().to_owned(),
                source,
            })?;
        let Self {
            partial,
            muxer,
            packets,
            ..
        } = self;
        drop(muxer);
        Ok((partial, packets))
    }
}

/// How one track is written: its input time base, and its encoder when it is re-encoded.
struct Route {
    input_time_base: ffmpeg::Rational,
    transcoder: Option<AudioTranscoder>,
}
