//! [`SegmentEncoder`]: the encoder of one segment with the conversions that feed it (crop or
//! scale to the output picture, the turn into the pixels) and the stream it writes to.

use super::options::encoder_options;
use crate::join::NodeIndex;
use crate::media::picture::{self, Orientation, OutputPicture};
use crate::media::probe::MediaInfo;
use crate::media::segment_index::{stream_facts, SegmentIndexer, SegmentPacket};
use crate::media::util;
use crate::media::MediaError;
use crate::settings::{EncodeSettings, RateControl};
use ffmpeg_next as ffmpeg;
use std::path::Path;

/// The encoder of one segment, with the conversions that feed it and the stream it writes to.
pub(super) struct SegmentEncoder {
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
    pub(super) frames: u64,
    /// The job's intermediate timestamp offset, in ticks of the stream time base.
    offset: i64,
    packet: ffmpeg::Packet,
    path: std::path::PathBuf,
    /// The segment file's index, built from the packets as they are written, so the segment
    /// is never read back to describe it.
    index: SegmentIndexer,
}

impl SegmentEncoder {
    /// `fixed_keyframes`: see [`encoder_options`]; `leaf`: the segment's number, for its index.
    pub(super) fn open(
        leaf: u32,
        info: &MediaInfo,
        settings: &EncodeSettings,
        muxer: &mut ffmpeg::format::context::Output,
        path: &Path,
        fixed_keyframes: bool,
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
            .open_as_with(
                codec,
                encoder_options(settings, &video.hdr, fixed_keyframes),
            )
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
        let written = muxer.stream(0).ok_or_else(|| MediaError::Unsupported {
            path: path.to_owned(),
            reason: "the segment muxer lost its stream".into(),
        })?;
        // What the header holds (the muxer may have settled the time base and extradata).
        let stream_time_base = written.time_base();
        let (facts, extradata) = stream_facts(&written);
        let index = SegmentIndexer::new(leaf, facts, &extradata);

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
            index,
        })
    }

    /// Encodes one decoded frame at presentation timestamp `pts` (source time base), as a
    /// keyframe when `key` (otherwise the encoder chooses).
    pub(super) fn send(
        &mut self,
        frame: &mut ffmpeg::frame::Video,
        pts: i64,
        key: bool,
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
        to_encode.set_kind(if key {
            ffmpeg::picture::Type::I
        } else {
            ffmpeg::picture::Type::None
        });
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
            // Recorded before the write, which may take the packet's data. The segment muxer
            // (NUT) keeps each packet's payload, pts and keyframe flag as given, and no other
            // flag (an encoder's "disposable" on a B-frame is not stored, so it is not counted).
            self.index.record(SegmentPacket {
                pts: self.packet.pts(),
                data: self.packet.data().unwrap_or_default(),
                key: self.packet.is_key(),
                other_flags: false,
            });
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
    pub(super) fn finish(
        &mut self,
        muxer: &mut ffmpeg::format::context::Output,
    ) -> Result<u64, MediaError> {
        self.encoder
            .send_eof()
            .map_err(|source| MediaError::Encode {
                encoder: self.encoder_name.to_owned(),
                source,
            })?;
        self.drain(muxer)?;
        Ok(self.frames)
    }

    /// The index of the file written, once [`Self::finish`] has flushed the encoder.
    pub(super) fn into_index(self) -> Result<NodeIndex, MediaError> {
        self.index.finish(&self.path)
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
