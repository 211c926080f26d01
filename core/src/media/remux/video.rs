//! The output's video stream (stream 0): added with the source's language, the timecode, the
//! codec tag, colour tags and display matrix; then fed the segment files' packets with dts and
//! durations derived in the output's own time base.

use super::{ticks_to_seconds, Failure};
use crate::extras::ExtrasPlan;
use crate::join::VideoSamples;
use crate::media::merge::LeafVideo;
use crate::media::picture;
use crate::media::probe::MediaInfo;
use crate::media::util;
use crate::media::MediaError;
use crate::settings::{Container, EncodeSettings};
use crate::timestamps::{decode_timestamps, frame_durations};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::Rescale as _;

/// Adds the video stream of `input` to `muxer` as its next stream (stream 0 of a remux;
/// `write_failed` names the output in errors). Returns the bytes of its header the index holds
/// verbatim (the codec's extradata).
pub(crate) fn add_stream(
    muxer: &mut ffmpeg::format::context::Output,
    input: &LeafVideo,
    info: &MediaInfo,
    settings: &EncodeSettings,
    extras: &ExtrasPlan,
    container: Container,
    write_failed: &dyn Fn(ffmpeg::Error) -> MediaError,
) -> Result<u64, MediaError> {
    let index = muxer.nb_streams() as usize;
    let verbatim_bytes = {
        let mut stream = muxer
            .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
            .map_err(write_failed)?;
        stream.set_parameters(input.parameters().clone());
        stream.set_time_base(util::rational(info.video.time_base));
        let mut metadata = ffmpeg::Dictionary::new();
        if let Some(language) = info.video.metadata.get("language") {
            metadata.set("language", language);
        }
        if let Some(timecode) = &extras.timecode {
            // MP4 and MOV muxers make a timecode track of this tag, at the video's frame rate.
            metadata.set("timecode", timecode);
            let rate = info.video.frame_rate;
            if rate.num > 0 && rate.den > 0 {
                stream.set_avg_frame_rate(ffmpeg::Rational::new(rate.num, rate.den));
            }
        }
        stream.set_metadata(metadata);
        // SAFETY: the stream's codecpar was just set and is owned by the muxer.
        unsafe { (*(*stream.as_mut_ptr()).codecpar).extradata_size.max(0) as u64 }
    };
    let is_hevc = input.parameters().id() == ffmpeg::codec::Id::HEVC;
    let hvc1 = u32::from_le_bytes(*b"hvc1");
    util::clear_codec_tag(
        muxer,
        index,
        if is_hevc && matches!(container, Container::Mp4 | Container::Mov) {
            hvc1
        } else {
            0
        },
    );
    let picture = picture::output_picture(&info.video, settings)?;
    util::set_stream_color_tags(muxer, index, picture.color);
    // A rotation turned into the pixels is not displayed a second time.
    if let (Some(matrix), picture::Orientation::Upright) =
        (&info.video.display_matrix, picture.orientation)
    {
        util::set_display_matrix(muxer, index, matrix).map_err(write_failed)?;
    }
    Ok(verbatim_bytes)
}

/// The video packets on their way into stream 0: each with its pts, dts and duration in the
/// output's time base, worked out before the first is written. Read from the segment files, or,
/// to lay the output out without its bytes, stand-ins of each packet's sample size.
pub(crate) struct VideoOutput<'a> {
    input: LeafVideo,
    stand_ins: Option<&'a VideoSamples>,
    next: Option<ffmpeg::Packet>,
    pts: Vec<i64>,
    dts: Vec<i64>,
    durations: Vec<i64>,
    /// How many packets were written.
    written: usize,
    time_base: ffmpeg::Rational,
    /// The output stream written to.
    stream: usize,
}

impl<'a> VideoOutput<'a> {
    /// `merged_pts`: every packet's pts in `input`'s time base, in decode order (pass 1);
    /// `time_base`: the output stream's, known once the header is written; `stream`: its index.
    /// With `stand_ins`, no packet is read: each is a stand-in of its sample's size and keyframe
    /// flag.
    pub(crate) fn start(
        mut input: LeafVideo,
        stand_ins: Option<&'a VideoSamples>,
        merged_pts: &[i64],
        info: &MediaInfo,
        time_base: ffmpeg::Rational,
        stream: usize,
    ) -> Result<Self, MediaError> {
        let input_time_base = input.time_base();
        // Derive dts and durations in the output's own time base: derived in a finer one,
        // neighbouring dts could round onto the same tick.
        // Intermediate files carry the job's timestamp offset; the output does not.
        // A source that starts before 0 is shifted to start at 0 (see `output_shift_micros`).
        let offset = util::offset_ticks(info.intermediate_offset_seconds, input_time_base);
        let shift = util::micros_to_ticks_up(info.output_shift_micros, time_base);
        let pts: Vec<i64> = merged_pts
            .iter()
            .map(|pts| (pts - offset).rescale(input_time_base, time_base) + shift)
            .collect();
        let end = info
            .video
            .end_pts
            .rescale(util::rational(info.video.time_base), time_base)
            + shift;
        let dts = decode_timestamps(&pts, end);
        // Each frame's own display duration: MP4 takes the track's length from the largest
        // pts + duration, Matroska from the last frame's.
        let durations = frame_durations(&pts, end);
        let next = match stand_ins {
            Some(samples) => Some(stand_in(samples, 0, input.first_path())?),
            None => input.next_packet()?,
        };
        Ok(Self {
            input,
            stand_ins,
            next,
            pts,
            dts,
            durations,
            written: 0,
            time_base,
            stream,
        })
    }

    /// The next packet's decode time in seconds; `None` when all are written.
    pub(crate) fn due(&self) -> Option<f64> {
        self.next.as_ref().map(|_| {
            ticks_to_seconds(
                self.dts.get(self.written).copied().unwrap_or(i64::MAX),
                self.time_base,
            )
        })
    }

    /// Writes the next packet (see [`VideoOutput::due`]) and reads the one after.
    pub(crate) fn write_next(
        &mut self,
        muxer: &mut ffmpeg::format::context::Output,
        write_failed: &dyn Fn(ffmpeg::Error) -> MediaError,
    ) -> Result<(), Failure> {
        let mut packet = self.next.take().expect("written only when due");
        let (Some(&pts), Some(&dts), Some(&duration)) = (
            self.pts.get(self.written),
            self.dts.get(self.written),
            self.durations.get(self.written),
        ) else {
            return Err(MediaError::Unsupported {
                path: self.input.first_path().to_owned(),
                reason: "the segment files changed while they were being muxed".into(),
            }
            .into());
        };
        self.written += 1;
        packet.set_pts(Some(pts));
        packet.set_dts(Some(dts));
        packet.set_duration(duration);
        packet.set_stream(self.stream);
        packet.set_position(-1);
        packet.write_interleaved(muxer).map_err(write_failed)?;
        self.next = match self.stand_ins {
            Some(samples) if self.written < samples.sizes.len() => {
                Some(stand_in(samples, self.written, self.input.first_path())?)
            }
            Some(_) => None,
            None => self.input.next_packet()?,
        };
        Ok(())
    }
}

/// The stand-in for packet `index` of `samples` (see [`crate::nal::stand_in`]).
fn stand_in(
    samples: &VideoSamples,
    index: usize,
    name: &std::path::Path,
) -> Result<ffmpeg::Packet, MediaError> {
    let unsupported = |reason: String| MediaError::Unsupported {
        path: name.to_owned(),
        reason,
    };
    let size = samples
        .sizes
        .get(index)
        .ok_or_else(|| unsupported(format!("the index has no video sample {index}")))?;
    let payload = crate::nal::stand_in(samples.form, u64::from(*size)).ok_or_else(|| {
        unsupported(format!(
            "video sample {index} has no stand-in of {size} bytes"
        ))
    })?;
    let mut packet = ffmpeg::Packet::copy(&payload);
    if samples.keyframes.binary_search(&(index as u64)).is_ok() {
        packet.set_flags(ffmpeg::packet::Flags::KEY);
    }
    Ok(packet)
}
