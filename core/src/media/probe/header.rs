//! What the stream headers say, before any packet is read: the video stream treemux transcodes
//! (refused when absent or undecodable), each audio track's header facts, readable labels.

use super::{AudioTrack, FrameRate, ProbeError};
use crate::media::picture::ColorTags;
use crate::media::util::{self, time_base};
use crate::plan::TimeBase;
use ffmpeg_next as ffmpeg;
use std::collections::BTreeMap;
use std::path::Path;

/// The video stream's header: the first video stream that is not an attached picture.
pub(super) struct VideoHeader {
    pub(super) index: usize,
    pub(super) codec: String,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) pixel_format: String,
    pub(super) time_base: TimeBase,
    /// The stream's average frame rate as FFmpeg reports it (0/0 when unknown).
    pub(super) frame_rate: ffmpeg::Rational,
    pub(super) sample_aspect_ratio: FrameRate,
    pub(super) color: ColorTags,
    pub(super) display_matrix: Option<[i32; 9]>,
    pub(super) metadata: BTreeMap<String, String>,
}

impl VideoHeader {
    /// The video stream of `input` (named `path` in errors); refused when there is none or this
    /// FFmpeg build cannot decode its codec.
    pub(super) fn read(
        input: &ffmpeg::format::context::Input,
        path: &Path,
    ) -> Result<Self, ProbeError> {
        let video_stream = input
            .streams()
            .filter(|stream| stream.parameters().medium() == ffmpeg::media::Type::Video)
            .find(|stream| {
                !stream
                    .disposition()
                    .contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC)
            })
            .ok_or_else(|| ProbeError::NoVideo {
                path: path.to_owned(),
                found: describe_streams(input),
            })?;
        let parameters = video_stream.parameters();
        let codec_id = parameters.id();
        let codec = util::codec_name(codec_id);
        if codec_id == ffmpeg::codec::Id::None || ffmpeg::decoder::find(codec_id).is_none() {
            let codec = if codec_id == ffmpeg::codec::Id::None {
                unknown_codec_label(&parameters)
            } else {
                codec
            };
            return Err(ProbeError::Undecodable {
                path: path.to_owned(),
                codec,
            });
        }
        // SAFETY: codecpar of an open stream is valid while `input` lives.
        let (width, height, format) = unsafe {
            let par = &*parameters.as_ptr();
            (par.width, par.height, par.format)
        };
        // The container's pixel aspect wins over the bitstream's, FFmpeg's own rule.
        let sample_aspect_ratio = {
            // SAFETY: the context and the stream are open; a null frame is allowed.
            let sar = unsafe {
                ffmpeg::ffi::av_guess_sample_aspect_ratio(
                    input.as_ptr() as *mut _,
                    video_stream.as_ptr() as *mut _,
                    std::ptr::null_mut(),
                )
            };
            FrameRate {
                num: sar.num,
                den: sar.den,
            }
        };
        // SAFETY: as above.
        let color = unsafe {
            let par = &*parameters.as_ptr();
            ColorTags {
                range: par.color_range as i32,
                space: par.color_space as i32,
                primaries: par.color_primaries as i32,
                transfer: par.color_trc as i32,
            }
        };
        Ok(Self {
            index: video_stream.index(),
            codec,
            width: width.max(0) as u32,
            height: height.max(0) as u32,
            pixel_format: pixel_format_name(format),
            time_base: time_base(video_stream.time_base()),
            frame_rate: video_stream.avg_frame_rate(),
            sample_aspect_ratio,
            color,
            display_matrix: util::display_matrix(&video_stream),
            metadata: dictionary(&video_stream.metadata()),
        })
    }
}

/// Every audio stream of `input` as its header describes it; what its packets say (start, end,
/// count, priming from side data) is added while they are read.
pub(super) fn audio_tracks(input: &ffmpeg::format::context::Input) -> Vec<AudioTrack> {
    input
        .streams()
        .filter(|stream| stream.parameters().medium() == ffmpeg::media::Type::Audio)
        .map(|stream| {
            let parameters = stream.parameters();
            // SAFETY: codecpar of an open stream is valid while `input` lives.
            let (sample_rate, channels, initial_padding) = unsafe {
                let par = &*parameters.as_ptr();
                (
                    par.sample_rate.max(0) as u32,
                    par.ch_layout.nb_channels.max(0) as u32,
                    priming_from_header(par).unwrap_or(par.initial_padding.max(0) as u32),
                )
            };
            AudioTrack {
                stream_index: stream.index(),
                codec: util::codec_name(parameters.id()),
                sample_rate,
                channels,
                time_base: time_base(stream.time_base()),
                first_pts: None,
                end_pts: None,
                priming_samples: initial_padding,
                packets: 0,
                last_packet_duration: 0,
                disposition: stream.disposition().bits(),
                metadata: dictionary(&stream.metadata()),
            }
        })
        .collect()
}

/// Opus states its pre-skip (samples to drop at the start) in its `OpusHead` header, bytes 10–11.
///
/// # Safety
/// `par` must be valid codec parameters whose extradata holds `extradata_size` bytes.
unsafe fn priming_from_header(par: &ffmpeg::ffi::AVCodecParameters) -> Option<u32> {
    if par.codec_id != ffmpeg::ffi::AVCodecID::AV_CODEC_ID_OPUS
        || par.extradata.is_null()
        || par.extradata_size < 12
    {
        return None;
    }
    // SAFETY: guaranteed by the caller; at least 12 bytes were checked above.
    let header = unsafe { std::slice::from_raw_parts(par.extradata, 12) };
    (&header[..8] == b"OpusHead").then(|| u32::from(u16::from_le_bytes([header[10], header[11]])))
}

fn dictionary(dictionary: &ffmpeg::DictionaryRef<'_>) -> BTreeMap<String, String> {
    dictionary
        .iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

fn pixel_format_name(format: i32) -> String {
    // SAFETY: av_get_pix_fmt_name accepts any value and returns null for unknown ones.
    let name = unsafe {
        ffmpeg::ffi::av_get_pix_fmt_name(std::mem::transmute::<i32, ffmpeg::ffi::AVPixelFormat>(
            format,
        ))
    };
    if name.is_null() {
        "unknown".to_owned()
    } else {
        // SAFETY: non-null names are static NUL-terminated strings.
        unsafe { std::ffi::CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    }
}

/// A readable label for a stream whose codec FFmpeg does not know: its fourcc tag.
fn unknown_codec_label(parameters: &ffmpeg::codec::Parameters) -> String {
    // SAFETY: codecpar is valid while the input lives.
    let tag = unsafe { (*parameters.as_ptr()).codec_tag };
    let bytes = tag.to_le_bytes();
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!(
            "with tag '{}' (unknown to FFmpeg)",
            String::from_utf8_lossy(&bytes)
        )
    } else {
        format!("with tag 0x{tag:08x} (unknown to FFmpeg)")
    }
}

fn describe_streams(input: &ffmpeg::format::context::Input) -> String {
    let kinds: Vec<String> = input
        .streams()
        .map(|stream| {
            let parameters = stream.parameters();
            format!(
                "{:?} {}",
                parameters.medium(),
                util::codec_name(parameters.id())
            )
            .to_lowercase()
        })
        .collect();
    if kinds.is_empty() {
        "none".to_owned()
    } else {
        kinds.join(", ")
    }
}
