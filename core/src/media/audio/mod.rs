//! Split-audio: take every audio track out of the source once, for the whole file.
//!
//! Audio is never cut per segment: per-segment AAC would add encoder priming and padding at every
//! joint (tens of milliseconds of drift and a click each). Each track is stream-copied with its
//! original timestamps when the output container can hold its codec; otherwise (AAC into WebM,
//! say) that track alone is re-encoded, once, to the container's usual codec (Opus for WebM, AAC
//! otherwise), keeping its channels and start time. The tracks go into one NUT file that is
//! muxed back beside the merged video at the end.
//!
//! One module per job: the plan and the one-pass extraction (`mod.rs`), each segment's share
//! copied by its worker (`share`), the shares joined (`join`), the NUT writer of copied or
//! re-encoded tracks (`writer`), the re-encoding itself (`transcoder`).

mod join;
mod share;
mod transcoder;
mod writer;

pub use join::{join_audio_pieces, JoinedAudio};
pub(crate) use share::SegmentAudioCopy;
pub use share::{SegmentAudio, ShareBound};
pub(crate) use writer::AudioWriter;

use super::probe::MediaInfo;
use super::source::Source;
use super::util;
use super::MediaError;
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
/// says (one per track, from [`plan_audio`]), in one streaming pass over the source. Returns
/// `None`, writing nothing, when the source has no audio.
///
/// Reads `source` (the bytes `info` was probed from). Other streams are discarded: from
/// MP4/MOV the demuxer then skips the video samples, but ffmpeg-written files interleave an
/// audio frame or two per video frame, so this reads about the whole file; jobs whose segment
/// workers copy the audio instead ([`SegmentAudio`], [`join_audio_pieces`]) never call it.
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
    let tracks: Vec<usize> = info.audio.iter().map(|track| track.stream_index).collect();
    if info.timestamp_repair.is_empty() {
        // (A repaired timeline is followed per stream through every packet: keep them all.)
        util::discard_all_but(&mut input, &tracks);
    }
    let mut writer = AudioWriter::create(info, actions, &input, &tracks, output)?;
    let mut repairer = info.timestamp_repair.repairer();
    loop {
        // A fresh packet per read: `Packet::read` does not release the previous one.
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(error) => return Err(failure.read_error(source, error)),
        }
        let Some(position) = tracks.iter().position(|&index| index == packet.stream()) else {
            continue;
        };
        repairer.apply(&mut packet);
        writer.push(position, packet)?;
    }
    let (partial, packets) = writer.finish()?;
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
