//! Split-and-convert: decode the frames of one segment and encode them into a segment file.
//!
//! Frame exact: the decoder starts at the keyframe at or before the segment (the plan's
//! `decode_from`), frames with pts before `start_pts` are decoded and dropped, and decoding stops
//! at the first frame with pts at or after `end_pts`. Decoders emit frames in presentation order,
//! so that first late frame means every frame of the segment has been seen. Timestamps pass
//! through unchanged in the source stream's time base, which keeps VFR timing exact.
//!
//! Segment files are NUT: it stores any codec and keeps each stream's time base exactly
//! (Matroska would round timestamps to milliseconds).

use super::audio::{SegmentAudio, SegmentAudioCopy};
use super::clock::DtsOnlyClock;
use super::picture::{self, HdrStatic, Orientation, OutputPicture};
use super::probe::{MediaInfo, VideoInfo};
use super::source::{segment_byte_range, Source};
use super::util;
use super::MediaError;
use crate::atomic_file::AtomicFile;
use crate::plan::Segment;
use crate::settings::{EncodeSettings, RateControl, VideoCodec};
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

/// Muxer for segment and merge files.
pub const SEGMENT_MUXER: &str = "nut";

/// What encoding one segment did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentReport {
    pub index: u32,
    pub frames_encoded: u64,
    /// Frames decoded before the segment's first frame and dropped.
    pub lead_in_dropped: u64,
    /// Frames whose timestamp had to be moved forward to keep timestamps increasing.
    pub timestamps_adjusted: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// The encoded frame size for a source video: the requested height as displayed (width
/// following the displayed aspect), or the source size; both rounded down to even numbers
/// because 4:2:0 chroma needs them. Width and height are swapped when `settings.autorotate`
/// turns a quarter-rotated source upright.
pub fn output_size(video: &VideoInfo, settings: &EncodeSettings) -> (u32, u32) {
    let orientation = if settings.autorotate {
        Orientation::from_rotation_degrees(video.rotation_degrees).unwrap_or(Orientation::Upright)
    } else {
        Orientation::Upright
    };
    picture::displayed_size(video, settings, orientation)
}

/// Encodes segment `segment` of the source `info` describes into `output` (NUT), frame exact.
///
/// `on_frame` is called after each encoded frame with the count so far (for progress display);
/// when it breaks, the encode stops, its partial file is removed and the result is
/// [`MediaError::Interrupted`].
/// The output appears only when complete; on error nothing is left at `output`.
///
/// The source is read from `source` (the bytes `info` was probed from: the file, or ranged
/// reads of an upload); read-ahead is bounded by the segment's bytes ([`segment_byte_range`]).
///
/// With `audio`, the worker also copies its share of every audio track out of the packets it
/// reads ([`SegmentAudio`]), reading on past its last video packet (video skipped) to the last
/// audio sample of its share; the piece is committed before the segment, so a committed
/// segment always has its audio beside it (unless the share could not be placed).
pub fn convert_segment_from(
    source: &Source,
    info: &MediaInfo,
    segment: &Segment,
    settings: &EncodeSettings,
    output: &Path,
    audio: Option<&SegmentAudio>,
    on_frame: &(dyn Fn(u64) -> ControlFlow<()> + Sync),
) -> Result<SegmentReport, MediaError> {
    util::init();
    let hint = segment_byte_range(info, segment);
    let reading = source.clone().with_hint(hint.or_else(|| source.hint()));
    let started = Instant::now();
    let seek = segment
        .decode_from
        .filter(|point| point.pts > info.video.first_pts);
    let mut report = match encode_pass(
        &reading,
        info,
        segment,
        settings,
        output,
        seek.map(|p| seek_timestamp(info, p)),
        audio,
        on_frame,
    ) {
        // The demuxer landed after the cut (an imprecise index): decode from the start instead.
        Err(PassError::SeekOvershoot) => encode_pass(
            &reading, info, segment, settings, output, None, audio, on_frame,
        ),
        other => other,
    }
    .map_err(|error| match error {
        PassError::Media(error) => error,
        PassError::SeekOvershoot => unreachable!("the second pass never seeks"),
    })?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The timestamp to seek to for keyframe `point`. Demuxers index keyframes by decoding
/// timestamp, except the MP4/MOV one, which takes a presentation timestamp and offsets it onto
/// its decode timeline itself: given the dts there, it lands a whole GOP early (decoded and
/// dropped, and its bytes fetched, for nothing).
fn seek_timestamp(info: &MediaInfo, point: crate::plan::SeekPoint) -> i64 {
    if info.container.starts_with("mov,") {
        point.pts
    } else {
        point.dts.unwrap_or(point.pts)
    }
}

enum PassError {
    SeekOvershoot,
    Media(MediaError),
}

impl From<MediaError> for PassError {
    fn from(error: MediaError) -> Self {
        Self::Media(error)
    }
}

/// One attempt: decode from `seek_to` (a dts; `None` = the start of the file) and encode (and
/// copy `audio`'s share of the audio).
#[allow(clippy::too_many_arguments)]
fn encode_pass(
    reading: &Source,
    info: &MediaInfo,
    segment: &Segment,
    settings: &EncodeSettings,
    output: &Path,
    seek_to: Option<i64>,
    audio: Option<&SegmentAudio>,
    on_frame: &(dyn Fn(u64) -> ControlFlow<()> + Sync),
) -> Result<SegmentReport, PassError> {
    let (source, video) = (reading.name(), &info.video);
    let (mut input, failure) = super::source::open(reading)?;
    let stream_index = video.stream_index;
    let decode_failed = |error: ffmpeg::Error| MediaError::Decode {
        path: source.to_owned(),
        codec: video.codec.clone(),
        source: error,
    };

    let mut decoder = {
        let stream = input
            .stream(stream_index)
            .ok_or_else(|| MediaError::Unsupported {
                path: source.to_owned(),
                reason: format!("video stream #{stream_index} is gone"),
            })?;
        let mut context =
            ffmpeg::codec::Context::from_parameters(stream.parameters()).map_err(decode_failed)?;
        context.set_threading(ffmpeg::codec::threading::Config {
            kind: ffmpeg::codec::threading::Type::Frame,
            count: settings.threads.max(1) as usize,
            ..Default::default()
        });
        context.decoder().video().map_err(decode_failed)?
    };
    let read_failed = |error| failure.read_error(reading, error);
    // Video packets before this repaired dts are read and dropped without decoding.
    let mut skip_before = None;
    if let Some(timestamp) = seek_to {
        if info.timestamp_repair.is_empty() {
            util::seek_to_keyframe_before(&mut input, stream_index, timestamp)
                .map_err(read_failed)?;
        } else {
            // A timeline with jumps cannot be searched by timestamp (the demuxer's search assumes
            // they grow through the file): start where the stretch holding the keyframe starts,
            // then read up to the keyframe. Reading packets costs little next to decoding them.
            if let Some(position) = info
                .timestamp_repair
                .start_of_stretch(stream_index, timestamp)
            {
                util::seek_to_byte(&mut input, position).map_err(read_failed)?;
            }
            skip_before = Some(timestamp);
        }
    }
    let mut repairer = info.timestamp_repair.repairer();
    let mut audio_copy = match audio {
        Some(spec) => SegmentAudioCopy::create(spec, info, &input)?,
        None => None,
    };

    let partial = AtomicFile::create(output).map_err(MediaError::from)?;
    let mut muxer = util::open_output(&partial, SEGMENT_MUXER)?;
    let mut encoder = SegmentEncoder::open(info, settings, &mut muxer, partial.target())?;

    let mut frame = ffmpeg::frame::Video::empty();
    let mut first_seen = false;
    let mut last_pts: Option<i64> = None;
    let mut dropped = 0u64;
    let mut adjusted = 0u64;
    let mut finished = false;
    let clock = std::cell::RefCell::new(DtsOnlyClock::default());

    // Returns true once a frame at or past the segment's end has been seen.
    let mut handle = |frame: &mut ffmpeg::frame::Video,
                      encoder: &mut SegmentEncoder,
                      muxer: &mut ffmpeg::format::context::Output|
     -> Result<bool, PassError> {
        // The frame's own pts first: the plan's cuts are packet pts, and the best-effort
        // timestamp is a heuristic that depends on what was decoded before (so it could differ
        // between a segment decoded after a seek and the same frames decoded from the start).
        // A frame from a packet without pts (AVI and other dts-only containers) takes its
        // presentation slot (see `DtsOnlyClock`).
        let Some(pts) = clock.borrow_mut().pts_of(frame).or(last_pts.map(|p| p + 1)) else {
            return Err(MediaError::Unsupported {
                path: source.to_owned(),
                reason: "a decoded frame has no timestamp".into(),
            }
            .into());
        };
        if !first_seen {
            first_seen = true;
            if seek_to.is_some() && segment.start_pts.is_some_and(|start| pts > start) {
                return Err(PassError::SeekOvershoot);
            }
        }
        // The first segment starts at the first frame the probe saw shown: a decoder that
        // shows a frame of an incomplete GOP before it here must not add a frame.
        let start = segment.start_pts.unwrap_or(info.video.first_pts);
        if pts < start {
            dropped += 1;
            return Ok(false);
        }
        if segment.end_pts.is_some_and(|end| pts >= end) {
            return Ok(true);
        }
        let pts = match last_pts {
            Some(last) if pts <= last => {
                adjusted += 1;
                last + 1
            }
            _ => pts,
        };
        last_pts = Some(pts);
        encoder.send(frame, pts, muxer)?;
        if on_frame(encoder.frames).is_break() {
            return Err(MediaError::Interrupted {
                path: output.to_owned(),
            }
            .into());
        }
        Ok(false)
    };

    // Packets of the segment's own frames fed so far: once all are in, the decoder is flushed
    // instead of reading on, so the worker does not fetch the next segment's first packets.
    // (Packets without a pts cannot be counted; those segments read on as before.)
    let mut own_packets_fed = 0u64;
    'read: loop {
        // A fresh packet per read: `Packet::read` does not release the previous one.
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(error) => return Err(read_failed(error).into()),
        }
        if packet.stream() != stream_index {
            if let Some(copy) = audio_copy.as_mut() {
                copy.offer(packet)?;
            }
            continue;
        }
        repairer.apply(&mut packet);
        if let Some(keyframe) = skip_before {
            if packet
                .dts()
                .or(packet.pts())
                .is_some_and(|dts| dts < keyframe)
            {
                continue;
            }
            skip_before = None;
        }
        let own = packet.pts().is_some_and(|pts| {
            pts >= segment.start_pts.unwrap_or(info.video.first_pts) && segment.contains(pts)
        }) && !util::is_discarded(&packet);
        match decoder.send_packet(&packet) {
            Ok(()) => {
                clock.borrow_mut().fed(&packet);
                own_packets_fed += u64::from(own);
            }
            // A damaged packet: skip it like the ffmpeg CLI does; the frame count check below
            // turns any frame it cost into an error.
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(error) => return Err(decode_failed(error).into()),
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            if handle(&mut frame, &mut encoder, &mut muxer)? {
                finished = true;
                break 'read;
            }
        }
        if own_packets_fed == segment.frames {
            break;
        }
    }
    if !finished {
        decoder.send_eof().map_err(decode_failed)?;
        while decoder.receive_frame(&mut frame).is_ok() {
            if handle(&mut frame, &mut encoder, &mut muxer)? {
                break;
            }
        }
    }
    let frames_encoded = encoder.finish(&mut muxer)?;
    if let Some(copy) = audio_copy.as_mut() {
        // The rest of this segment's audio share lies after its last video packet: read on
        // with every other stream skipped (the MP4/MOV demuxer then reads the audio samples
        // only) until each track's share is in.
        util::discard_all_but(&mut input, copy.streams());
        while !copy.complete() {
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::InvalidData) => continue,
                Err(error) => return Err(read_failed(error).into()),
            }
            copy.offer(packet)?;
        }
    }
    muxer.write_trailer().map_err(|source| MediaError::Write {
        path: partial.target().to_owned(),
        source,
    })?;
    drop(muxer);
    if frames_encoded != segment.frames {
        let seconds = |pts: i64| video.time_base.seconds(pts - video.first_pts);
        return Err(MediaError::FrameCount {
            path: source.to_owned(),
            segment: segment.index,
            from_seconds: seconds(segment.start_pts.unwrap_or(video.first_pts)),
            to_seconds: seconds(segment.end_pts.unwrap_or(video.end_pts)),
            expected: segment.frames,
            got: frames_encoded,
        }
        .into());
    }
    let bytes = std::fs::metadata(partial.path())
        .map_err(MediaError::io(partial.target()))?
        .len();
    if let Some(copy) = audio_copy {
        copy.commit()?;
    }
    partial.commit().map_err(MediaError::from)?;
    Ok(SegmentReport {
        index: segment.index,
        frames_encoded,
        lead_in_dropped: dropped,
        timestamps_adjusted: adjusted,
        bytes,
        seconds: 0.0,
    })
}

/// The encoder of one segment, with the conversions that feed it and the stream it writes to.
struct SegmentEncoder {
    encoder: ffmpeg::encoder::Video,
    encoder_name: &'static str,
    picture: OutputPicture,
    /// Source frame size after cropping to even, when no scaling is asked for.
    crop_only: bool,
    /// Converts decoded frames to the picture's format and pre-rotation size, for the frame
    /// format and size it was made for.
    scaler: Option<(
        ffmpeg::software::scaling::Context,
        (ffmpeg::format::Pixel, u32, u32, bool),
    )>,
    scaled: ffmpeg::frame::Video,
    /// The scaled picture turned upright, when the rotation is applied to the pixels.
    rotated: Option<ffmpeg::frame::Video>,
    /// For 4:2:2 pictures turned by a quarter: the turn is done at 4:4:4 (a turned 4:2:2 plane
    /// would be 4:4:0), then this converts to the encoder's format.
    after_rotation: Option<(ffmpeg::software::scaling::Context, ffmpeg::frame::Video)>,
    encoder_time_base: ffmpeg::Rational,
    stream_time_base: ffmpeg::Rational,
    frames: u64,
    /// The job's intermediate timestamp offset, in ticks of the stream time base.
    offset: i64,
    packet: ffmpeg::Packet,
    path: std::path::PathBuf,
}

impl SegmentEncoder {
    fn open(
        info: &MediaInfo,
        settings: &EncodeSettings,
        muxer: &mut ffmpeg::format::context::Output,
        path: &Path,
    ) -> Result<Self, MediaError> {
        let video = &info.video;
        let encoder_name = settings.codec.encoder_name();
        let codec = ffmpeg::encoder::find_by_name(encoder_name).ok_or_else(|| {
            MediaError::EncoderMissing {
                encoder: encoder_name.to_owned(),
            }
        })?;
        let failed = |source| MediaError::Encode {
            encoder: encoder_name.to_owned(),
            source,
        };
        let picture = picture::output_picture(video, settings)?;
        let (width, height) = (picture.width, picture.height);
        let time_base = util::rational(video.time_base);

        let mut encoder = ffmpeg::codec::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(failed)?;
        encoder.set_width(width);
        encoder.set_height(height);
        encoder.set_format(picture.pixel);
        encoder.set_time_base(time_base);
        if video.frame_rate.num > 0 && video.frame_rate.den > 0 {
            // Rate control and level selection read the frame rate; timestamps stay exact anyway.
            encoder.set_frame_rate(Some(ffmpeg::Rational::new(
                video.frame_rate.num,
                video.frame_rate.den,
            )));
        }
        let (sar_num, sar_den) = picture.sample_aspect_ratio;
        if sar_num > 0 && sar_den > 0 {
            encoder.set_aspect_ratio(ffmpeg::Rational::new(sar_num, sar_den));
        }
        util::set_color_tags(&mut encoder, picture.color);
        if muxer
            .format()
            .flags()
            .contains(ffmpeg::format::Flags::GLOBAL_HEADER)
        {
            encoder.set_flags(ffmpeg::codec::Flags::GLOBAL_HEADER);
        }
        encoder.set_threading(ffmpeg::codec::threading::Config {
            kind: ffmpeg::codec::threading::Type::Frame,
            count: settings.threads.max(1) as usize,
            ..Default::default()
        });
        if let RateControl::Bitrate(bits) = settings.rate {
            encoder.set_bit_rate(bits as usize);
        }
        let pixel_name = picture::pixel_name(picture.pixel).unwrap_or_default();
        let encoder = encoder
            .open_as_with(codec, encoder_options(settings, &video.hdr))
            .map_err(|source| MediaError::EncoderOpen {
                encoder: encoder_name.to_owned(),
                settings: format!(
                    "preset {}, {:?}, {width}x{height} {pixel_name}",
                    settings.preset, settings.rate
                ),
                source,
            })?;

        let mut stream = muxer
            .add_stream(codec)
            .map_err(|source| MediaError::Write {
                path: path.to_owned(),
                source,
            })?;
        stream.set_parameters(&encoder);
        stream.set_time_base(time_base);
        util::write_intermediate_header(muxer).map_err(|source| MediaError::Write {
            path: path.to_owned(),
            source,
        })?;
        let stream_time_base = muxer.stream(0).map(|s| s.time_base()).unwrap_or(time_base);

        let turned_format = rotation_format(&picture);
        let rotated = (picture.orientation != Orientation::Upright)
            .then(|| ffmpeg::frame::Video::new(turned_format, width, height));
        let after_rotation = if rotated.is_some() && turned_format != picture.pixel {
            let full = picture.color.full_range();
            let context = picture::scaler(
                (turned_format, width, height),
                full,
                (picture.pixel, width, height),
                full,
                picture.color.space,
            )
            .map_err(failed)?;
            Some((context, ffmpeg::frame::Video::empty()))
        } else {
            None
        };

        Ok(Self {
            encoder,
            encoder_name,
            crop_only: settings.height.is_none(),
            picture,
            scaler: None,
            scaled: ffmpeg::frame::Video::empty(),
            rotated,
            after_rotation,
            encoder_time_base: time_base,
            stream_time_base,
            frames: 0,
            offset: util::offset_ticks(info.intermediate_offset_seconds, stream_time_base),
            packet: ffmpeg::Packet::empty(),
            path: path.to_owned(),
        })
    }

    /// Encodes one decoded frame at presentation timestamp `pts` (source time base).
    fn send(
        &mut self,
        frame: &mut ffmpeg::frame::Video,
        pts: i64,
        muxer: &mut ffmpeg::format::context::Output,
    ) -> Result<(), MediaError> {
        let failed = |source| MediaError::Encode {
            encoder: self.encoder_name.to_owned(),
            source,
        };
        // Let the encoder choose frame types: a decoded frame's picture type would force
        // keyframes wherever the source had them.
        frame.set_kind(ffmpeg::picture::Type::None);
        let picture = &self.picture;
        let (scaled_width, scaled_height) = (picture.scaled_width, picture.scaled_height);
        let scaled_format = rotation_format(picture);
        let source_full = picture::frame_is_full_range(frame) || picture.source_full_range;
        let fits = frame.format() == scaled_format
            && source_full == picture.color.full_range()
            && self.crop_only
            && frame.width() & !1 == scaled_width
            && frame.height() & !1 == scaled_height;
        let scaled: &mut ffmpeg::frame::Video = if fits {
            // Cropping the last odd row/column is just a smaller declared size over the same planes.
            frame.set_width(scaled_width);
            frame.set_height(scaled_height);
            frame
        } else {
            if self.crop_only {
                let (width, height) = (frame.width() & !1, frame.height() & !1);
                frame.set_width(width.max(2));
                frame.set_height(height.max(2));
            }
            let key = (frame.format(), frame.width(), frame.height(), source_full);
            if self
                .scaler
                .as_ref()
                .is_none_or(|(_, current)| *current != key)
            {
                let scaler = picture::scaler(
                    (key.0, key.1, key.2),
                    source_full,
                    (scaled_format, scaled_width, scaled_height),
                    picture.color.full_range(),
                    picture.color.space,
                )
                .map_err(failed)?;
                self.scaler = Some((scaler, key));
            }
            let (scaler, _) = self.scaler.as_mut().expect("scaler was just created");
            scaler.run(frame, &mut self.scaled).map_err(failed)?;
            &mut self.scaled
        };
        let to_encode: &mut ffmpeg::frame::Video = match self.rotated.as_mut() {
            Some(rotated) => {
                picture::rotate_frame(scaled, rotated, self.picture.orientation);
                match self.after_rotation.as_mut() {
                    Some((context, converted)) => {
                        context.run(rotated, converted).map_err(failed)?;
                        converted
                    }
                    None => rotated,
                }
            }
            None => scaled,
        };
        to_encode.set_pts(Some(pts));
        to_encode.set_kind(ffmpeg::picture::Type::None);
        self.encoder.send_frame(to_encode).map_err(failed)?;
        self.frames += 1;
        self.drain(muxer)
    }

    fn drain(&mut self, muxer: &mut ffmpeg::format::context::Output) -> Result<(), MediaError> {
        while self.encoder.receive_packet(&mut self.packet).is_ok() {
            self.packet.set_stream(0);
            self.packet
                .rescale_ts(self.encoder_time_base, self.stream_time_base);
            util::shift_packet(&mut self.packet, self.offset);
            self.packet
                .write(muxer)
                .map_err(|source| MediaError::Write {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Flushes the encoder; returns the number of frames encoded.
    fn finish(&mut self, muxer: &mut ffmpeg::format::context::Output) -> Result<u64, MediaError> {
        self.encoder
            .send_eof()
            .map_err(|source| MediaError::Encode {
                encoder: self.encoder_name.to_owned(),
                source,
            })?;
        self.drain(muxer)?;
        Ok(self.frames)
    }
}

/// The format the picture is turned in: the encoder's, except 4:2:2 (and 4:4:0) turned by a
/// quarter, which is turned at 4:4:4 of the same depth and converted after.
fn rotation_format(picture: &OutputPicture) -> ffmpeg::format::Pixel {
    let asymmetric = picture::pixel_traits(picture.pixel)
        .is_some_and(|traits| traits.chroma_shift.0 != traits.chroma_shift.1);
    if picture.orientation.swaps_axes() && asymmetric {
        let depth = picture::pixel_traits(picture.pixel).map_or(8, |traits| traits.depth);
        let name = if depth > 8 {
            format!("yuv444p{depth}le")
        } else {
            "yuv444p".to_owned()
        };
        picture::pixel_by_name(&name).unwrap_or(picture.pixel)
    } else {
        picture.pixel
    }
}

/// Encoder private options for `settings`, in each encoder's own vocabulary.
///
/// Segments are joined by a check of their codec headers, not a re-encode, so each encoder must
/// make headers that depend on the settings only: x264 needs `stitchable` (otherwise it may tune
/// the SPS/PPS to a segment's content); x265's VPS/SPS/PPS, libvpx's VP9 (no global header) and
/// SVT-AV1's sequence header already follow from the settings alone. The source's HDR10
/// static metadata goes to x265 and SVT-AV1, whose bitstreams carry it in every container
/// (FFmpeg 5.1's wrappers do not pass it on by themselves); the others warn
/// ([`HdrStatic::not_kept_warning`]).
fn encoder_options(settings: &EncodeSettings, hdr: &HdrStatic) -> ffmpeg::Dictionary<'static> {
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
            options.set("x264-params", "stitchable=1");
        }
        VideoCodec::H265 => {
            options.set("preset", &settings.preset);
            if let Some(crf) = &crf {
                options.set("crf", crf);
            }
            // libx265 ignores the generic thread count and logs to stderr on its own.
            let mut params = format!("pools={threads}:frame-threads={threads}:log-level=error");
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
