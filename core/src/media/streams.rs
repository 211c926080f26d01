//! The streams beside the video and the audio: finding them in a source (for the probe), asking
//! the FFmpeg build what it can convert (for [`crate::extras::plan_extras`]), and writing the
//! kept ones, the chapters, the tags and the timecode into the final output (for the remux).
//!
//! Kept streams are read from the source itself at the final mux rather than from an
//! intermediate file: NUT, the intermediate format, has no codec tags for most subtitle formats
//! (SubRip, ASS, WebVTT, mov_text, PGS) nor a place for attachments, and the source stays in
//! the job's scratch directory (or the user's file) until the end in both runners. The source
//! is read a second time only when a subtitle stream is kept: cover art, attachments, chapters,
//! tags and the timecode come from its header.

use super::probe::MediaInfo;
use super::source::{ReadFailure, Source};
use super::util;
use super::MediaError;
use crate::extras::{
    plan_extras, Chapter, ExtraAction, ExtrasPlan, OtherStream, StreamKind, PICTURE_MIME_TYPES,
};
use crate::settings::Container;
use ffmpeg_next as ffmpeg;
use ffmpeg_next::Rescale as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the output keeps of `info`'s other streams, chapters and tags in `container`, and the
/// warnings for the rest, with this FFmpeg build's conversions. The one function both runners
/// call.
pub fn plan(info: &MediaInfo, container: Container) -> ExtrasPlan {
    util::init();
    plan_extras(info, container, &can_convert)
}

/// True when this build decodes `codec` and has the encoder `encoder`.
fn can_convert(codec: &str, encoder: &str) -> bool {
    let decodable = codec_id(codec).is_some_and(|id| ffmpeg::decoder::find(id).is_some());
    decodable && ffmpeg::encoder::find_by_name(encoder).is_some()
}

fn codec_id(name: &str) -> Option<ffmpeg::codec::Id> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: avcodec_descriptor_get_by_name reads the NUL-terminated name; the result is static.
    let descriptor = unsafe { ffmpeg::ffi::avcodec_descriptor_get_by_name(name.as_ptr()) };
    // SAFETY: a non-null descriptor is a valid static struct.
    (!descriptor.is_null()).then(|| ffmpeg::codec::Id::from(unsafe { (*descriptor).id }))
}

/// The streams of `input` that are neither `video_index` nor one of `audio_indices`, its
/// chapters and its global tags. Streams the demuxer itself marks as discarded (the text track
/// holding MP4 chapters, already read as chapters) are left out.
pub(crate) fn collect(
    input: &ffmpeg::format::context::Input,
    video_index: usize,
    audio_indices: &[usize],
) -> (Vec<OtherStream>, Vec<Chapter>, BTreeMap<String, String>) {
    let streams = input
        .streams()
        .filter(|stream| stream.index() != video_index && !audio_indices.contains(&stream.index()))
        .filter(|stream| stream.discard() != ffmpeg::Discard::All)
        .map(|stream| {
            let parameters = stream.parameters();
            let disposition = stream.disposition();
            // SAFETY: codecpar of an open stream is valid while `input` lives.
            let tag = unsafe { (*parameters.as_ptr()).codec_tag };
            let codec_tag = tag_text(tag);
            let kind = match parameters.medium() {
                ffmpeg::media::Type::Video
                    if disposition.contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC) =>
                {
                    StreamKind::AttachedPicture
                }
                ffmpeg::media::Type::Video => StreamKind::Video,
                ffmpeg::media::Type::Audio => StreamKind::Audio,
                ffmpeg::media::Type::Subtitle => StreamKind::Subtitle,
                ffmpeg::media::Type::Attachment => StreamKind::Attachment,
                _ if codec_tag == "tmcd" => StreamKind::Timecode,
                _ => StreamKind::Data,
            };
            OtherStream {
                stream_index: stream.index(),
                kind,
                codec: util::codec_name(parameters.id()),
                codec_tag,
                disposition: disposition.bits(),
                metadata: dictionary(&stream.metadata()),
            }
        })
        .collect();
    let chapters = input
        .chapters()
        .map(|chapter| Chapter {
            id: chapter.id(),
            time_base: util::time_base(chapter.time_base()),
            start: chapter.start(),
            end: chapter.end(),
            metadata: dictionary(&chapter.metadata()),
        })
        .collect();
    (streams, chapters, dictionary(&input.metadata()))
}

fn dictionary(dictionary: &ffmpeg::DictionaryRef<'_>) -> BTreeMap<String, String> {
    dictionary
        .iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// A codec tag as its four characters when they are printable, else empty.
fn tag_text(tag: u32) -> String {
    let bytes = tag.to_le_bytes();
    if tag != 0 && bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        String::from_utf8_lossy(&bytes).trim().to_owned()
    } else {
        String::new()
    }
}

/// Sets the output's chapters and global tags from the plan, before its header is written.
pub(crate) fn write_chapters_and_tags(
    muxer: &mut ffmpeg::format::context::Output,
    plan: &ExtrasPlan,
) -> Result<(), ffmpeg::Error> {
    for chapter in &plan.chapters {
        let mut added = muxer.add_chapter(
            chapter.id,
            util::rational(chapter.time_base),
            chapter.start,
            chapter.end.max(chapter.start),
            chapter.title().unwrap_or_default(),
        )?;
        for (key, value) in &chapter.metadata {
            added.set_metadata(key, value);
        }
    }
    let mut tags = ffmpeg::Dictionary::new();
    for (key, value) in &plan.tags {
        tags.set(key, value);
    }
    muxer.set_metadata(tags);
    Ok(())
}

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
    repairer: super::clock::Repairer,
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
        let (mut input, failure) = super::source::open(source)?;
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

/// Text subtitles from one format to another: decode to FFmpeg's ASS events, encode with the
/// target encoder, timed as `ffmpeg -c:s ENCODER` times them.
struct SubtitleConverter {
    path: PathBuf,
    decoder: ffmpeg::decoder::Subtitle,
    encoder: ffmpeg::encoder::subtitle::Encoder,
    /// The source stream's time base (its packets' timestamps).
    packet_time_base: ffmpeg::Rational,
    buffer: Vec<u8>,
}

/// Largest encoded subtitle event, in bytes (ffmpeg's own buffer is 1 MiB).
const SUBTITLE_BUFFER_BYTES: usize = 1 << 20;

impl SubtitleConverter {
    fn open(
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
    fn convert(
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
