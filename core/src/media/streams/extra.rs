//! [`ExtraStreams`]: the kept streams of a source added to the output (copied, converted, cover
//! art, attachments) and their packets read from the source in file order, one at a time for
//! the remux to interleave.

use super::subtitles::SubtitleConverter;
use crate::extras::{ExtraAction, ExtrasPlan, StreamKind, PICTURE_MIME_TYPES};
use crate::media::probe::MediaInfo;
use crate::media::source::{ReadFailure, Source};
use crate::media::util;
use crate::media::MediaError;
use ffmpeg_next as ffmpeg;

use std::path::PathBuf;
/// One kept stream with packets, as the final mux writes it.
struct Route {
    /// Output stream index.
    output: usize,
    input_time_base: ffmpeg::Rational,
    converter: Option<SubtitleConverter>,
}

/// The kept streams of a source, added to an output: their packets, read from the source in
/// file order and made ready for the output (converted and in the output's time base), one at
/// a time for the caller to interleave.
pub(crate) struct ExtraStreams {
    path: PathBuf,
    /// Explains a failed read of the source.
    failure: ReadFailure,
    /// Opened only when a kept stream has packets to read.
    input: Option<ffmpeg::format::context::Input>,
    /// Per source stream: where its packets go.
    routes: Vec<Option<Route>>,
    /// Cover-art pictures to write once, right after the header: (output index, packet).
    pictures: Vec<(usize, ffmpeg::Packet)>,
    output_time_bases: Vec<ffmpeg::Rational>,
    /// Microseconds added to every timestamp, as for the video and audio (see
    /// `MediaInfo::output_shift_micros`).
    shift_micros: i64,
    /// Removes the source's timestamp discontinuities, as for the video and audio.
    repairer: crate::media::clock::Repairer,
    /// The next packet, already for the output: (output index, packet).
    peeked: Option<(usize, ffmpeg::Packet)>,
}

impl ExtraStreams {
    /// Adds the streams `plan` keeps from `source` to `muxer` (after those it already has).
    pub(crate) fn add(
        source: &Source,
        plan: &ExtrasPlan,
        info: &MediaInfo,
        muxer: &mut ffmpeg::format::context::Output,
    ) -> Result<Self, MediaError> {
        let mut extras = Self {
            path: source.name().to_owned(),
            failure: ReadFailure::default(),
            input: None,
            routes: Vec::new(),
            pictures: Vec::new(),
            output_time_bases: Vec::new(),
            shift_micros: info.output_shift_micros,
            repairer: info.timestamp_repair.repairer(),
            peeked: None,
        };
        if plan.streams.is_empty() {
            return Ok(extras);
        }
        let (mut input, failure) = crate::media::source::open(source)?;
        extras.failure = failure;
        extras.routes = (0..input.streams().count()).map(|_| None).collect();
        let output_path = PathBuf::from(muxer_path(muxer));
        let write_failed = |source| MediaError::Write {
            path: output_path.clone(),
            source,
        };
        let gone = |index: usize| MediaError::Unsupported {
            path: source.name().to_owned(),
            reason: format!("stream #{index} is gone"),
        };
        let mut needs_packets = false;
        for kept in &plan.streams {
            let stream = input
                .stream(kept.stream_index)
                .ok_or_else(|| gone(kept.stream_index))?;
            let described = info
                .other_streams
                .iter()
                .find(|other| other.stream_index == kept.stream_index)
                .ok_or_else(|| gone(kept.stream_index))?;
            let output = muxer.nb_streams() as usize;
            let mut metadata = ffmpeg::Dictionary::new();
            for (key, value) in &described.metadata {
                if matches!(key.as_str(), "language" | "title" | "filename" | "mimetype") {
                    metadata.set(key, value);
                }
            }
            let mut disposition = described.disposition;
            match (&kept.action, described.kind) {
                (ExtraAction::Convert { encoder }, _) => {
                    let converter = SubtitleConverter::open(source.name(), &stream, encoder)?;
                    let mut added = muxer
                        .add_stream(converter.encoder.codec())
                        .map_err(write_failed)?;
                    added.set_parameters(&converter.encoder);
                    added.set_time_base(converter.encoder.time_base());
                    added.set_metadata(metadata);
                    extras.routes[kept.stream_index] = Some(Route {
                        output,
                        input_time_base: stream.time_base(),
                        converter: Some(converter),
                    });
                    needs_packets = true;
                }
                (ExtraAction::PictureAttachment, _) => {
                    // Matroska keeps pictures as attachments: the file in extradata, with a
                    // name and a MIME type.
                    let picture =
                        attached_picture(&stream).ok_or_else(|| gone(kept.stream_index))?;
                    let mime = PICTURE_MIME_TYPES
                        .iter()
                        .find(|(codec, _)| *codec == described.codec)
                        .map_or("image/jpeg", |(_, mime)| mime);
                    let mut added = muxer
                        .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
                        .map_err(write_failed)?;
                    added.set_parameters(stream.parameters());
                    if !described.metadata.contains_key("filename") {
                        let extension = mime.rsplit('/').next().unwrap_or("jpeg");
                        metadata.set("filename", &format!("cover.{extension}"));
                    }
                    metadata.set("mimetype", mime);
                    added.set_metadata(metadata);
                    // SAFETY: the stream was just added; its codecpar is allocated and owned by
                    // the muxer, which frees the extradata set here.
                    unsafe {
                        let par = (*added.as_mut_ptr()).codecpar;
                        (*par).codec_type = ffmpeg::ffi::AVMediaType::AVMEDIA_TYPE_ATTACHMENT;
                        set_extradata(par, &picture)?;
                    }
                    disposition &= !ffmpeg::ffi::AV_DISPOSITION_ATTACHED_PIC;
                }
                (ExtraAction::Copy, kind) => {
                    let mut added = muxer
                        .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
                        .map_err(write_failed)?;
                    added.set_parameters(stream.parameters());
                    added.set_time_base(stream.time_base());
                    added.set_metadata(metadata);
                    if kind == StreamKind::AttachedPicture {
                        // Cover art is one packet, written right after the header.
                        let mut packet =
                            attached_picture(&stream).ok_or_else(|| gone(kept.stream_index))?;
                        packet.set_stream(output);
                        packet.set_pts(Some(0));
                        packet.set_dts(Some(0));
                        packet.set_flags(ffmpeg::packet::Flags::KEY);
                        extras.pictures.push((output, packet));
                    } else if kind != StreamKind::Attachment {
                        extras.routes[kept.stream_index] = Some(Route {
                            output,
                            input_time_base: stream.time_base(),
                            converter: None,
                        });
                        needs_packets = true;
                    }
                }
            }
            util::clear_codec_tag(muxer, output, 0);
            util::set_disposition(muxer, output, disposition);
        }
        if extras.repairer.is_inert() {
            // Only the kept streams' packets are fetched (MP4/MOV seek over the others).
            let kept: Vec<usize> = (0..extras.routes.len())
                .filter(|&index| extras.routes[index].is_some())
                .collect();
            util::discard_all_but(&mut input, &kept);
        }
        extras.input = needs_packets.then_some(input);
        Ok(extras)
    }

    /// Kept streams whose packets are copied or converted one by one (subtitles, …).
    pub(crate) fn packet_streams(&self) -> usize {
        self.routes.iter().flatten().count()
    }

    /// Bytes of the cover pictures: an MP4 keeps them inside its index.
    pub(crate) fn picture_bytes(&self) -> u64 {
        self.pictures
            .iter()
            .map(|(_, packet)| packet.size() as u64)
            .sum()
    }

    /// Call once the header is written: the output's time bases are final then. Returns the
    /// cover pictures to write first.
    pub(crate) fn start(&mut self, muxer: &ffmpeg::format::context::Output) -> Vec<ffmpeg::Packet> {
        self.output_time_bases = muxer.streams().map(|s| s.time_base()).collect();
        std::mem::take(&mut self.pictures)
            .into_iter()
            .map(|(output, mut packet)| {
                packet.set_stream(output);
                packet
            })
            .collect()
    }

    /// When the next packet is due, in seconds of its decode time; `None` when there is none.
    pub(crate) fn peek_seconds(&mut self) -> Result<Option<f64>, MediaError> {
        if self.peeked.is_none() {
            self.peeked = self.read()?;
        }
        Ok(self.peeked.as_ref().map(|(output, packet)| {
            let time_base = self.output_time_bases[*output];
            packet.dts().or(packet.pts()).unwrap_or(0) as f64 * f64::from(time_base.numerator())
                / f64::from(time_base.denominator().max(1))
        }))
    }

    /// The packet [`Self::peek_seconds`] announced.
    pub(crate) fn take(&mut self) -> Option<ffmpeg::Packet> {
        self.peeked.take().map(|(_, packet)| packet)
    }

    fn read(&mut self) -> Result<Option<(usize, ffmpeg::Packet)>, MediaError> {
        let Some(input) = self.input.as_mut() else {
            return Ok(None);
        };
        loop {
            // A fresh packet per read: `Packet::read` does not release the previous one.
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => {
                    self.input = None;
                    return Ok(None);
                }
                Err(ffmpeg::Error::InvalidData) => continue,
                Err(error) => {
                    return Err(match self.failure.take() {
                        Some(cause) => MediaError::Source {
                            path: self.path.clone(),
                            source: cause,
                        },
                        None => MediaError::Read {
                            path: self.path.clone(),
                            source: error,
                        },
                    })
                }
            }
            let Some(Some(route)) = self.routes.get_mut(packet.stream()) else {
                continue;
            };
            self.repairer.apply(&mut packet);
            let output_time_base = self.output_time_bases[route.output];
            let ready = match &mut route.converter {
                None => {
                    packet.rescale_ts(route.input_time_base, output_time_base);
                    Some(packet)
                }
                Some(converter) => converter.convert(&packet, output_time_base)?,
            };
            if let Some(mut ready) = ready {
                util::shift_packet(
                    &mut ready,
                    util::micros_to_ticks_up(self.shift_micros, output_time_base),
                );
                ready.set_stream(route.output);
                ready.set_position(-1);
                return Ok(Some((route.output, ready)));
            }
        }
    }
}

/// The output file's name, for errors.
fn muxer_path(muxer: &ffmpeg::format::context::Output) -> String {
    // SAFETY: `url` is null or a NUL-terminated string owned by the open context.
    unsafe {
        let url = (*muxer.as_ptr()).url;
        if url.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(url).to_string_lossy().into_owned()
        }
    }
}

/// The picture of a cover-art stream (its one packet), if it has one.
fn attached_picture(stream: &ffmpeg::format::stream::Stream) -> Option<ffmpeg::Packet> {
    // SAFETY: `attached_pic` is a packet owned by the open stream; it is only read (copied).
    unsafe {
        let picture = &(*stream.as_ptr()).attached_pic;
        if picture.data.is_null() || picture.size <= 0 {
            return None;
        }
        let bytes = std::slice::from_raw_parts(picture.data, picture.size as usize);
        Some(ffmpeg::Packet::copy(bytes))
    }
}

/// Replaces a stream's extradata with `packet`'s bytes.
///
/// # Safety
/// `par` must be the codec parameters of a stream of an open output.
unsafe fn set_extradata(
    par: *mut ffmpeg::ffi::AVCodecParameters,
    packet: &ffmpeg::Packet,
) -> Result<(), MediaError> {
    let bytes = packet.data().unwrap_or_default();
    let padding = ffmpeg::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    // SAFETY: guaranteed by the caller; the buffer is allocated with FFmpeg's padding and
    // freed by FFmpeg with the parameters.
    unsafe {
        ffmpeg::ffi::av_freep(std::ptr::addr_of_mut!((*par).extradata).cast());
        let buffer = ffmpeg::ffi::av_mallocz(bytes.len() + padding).cast::<u8>();
        if buffer.is_null() {
            return Err(MediaError::Encode {
                encoder: "attachment".into(),
                source: ffmpeg::Error::Other { errno: 12 },
            });
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buffer, bytes.len());
        (*par).extradata = buffer;
        (*par).extradata_size = bytes.len() as i32;
    }
    Ok(())
}
