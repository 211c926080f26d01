//! Split-audio: take every audio track out of the source once, for the whole file.
//!
//! Audio is never cut per segment: per-segment AAC would add encoder priming and padding at every
//! joint (tens of milliseconds of drift and a click each). The tracks are stream-copied into one
//! NUT file with their original timestamps, and muxed back beside the merged video at the end.

use super::convert::SEGMENT_MUXER;
use super::probe::MediaInfo;
use super::util::{self, PartialFile};
use super::MediaError;
use crate::settings::Container;
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// What extracting the audio did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioReport {
    pub tracks: usize,
    pub packets: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Checks, before any work starts, that every audio track of `info` can be stored in `container`
/// as it is.
pub fn check_audio_fits(
    info: &MediaInfo,
    container: Container,
    output: &Path,
) -> Result<(), MediaError> {
    util::init();
    let Some(format) = output_format(container) else {
        return Err(MediaError::Unsupported {
            path: output.to_owned(),
            reason: format!("muxer {} is missing", container.muxer_name()),
        });
    };
    for (position, track) in info.audio.iter().enumerate() {
        let Some(codec) = ffmpeg::decoder::find_by_name(&track.codec)
            .map(|c| c.id())
            .or_else(|| codec_id_by_name(&track.codec))
        else {
            continue;
        };
        // SAFETY: `format` points at a static muxer description.
        let fits = unsafe {
            ffmpeg::ffi::avformat_query_codec(
                format,
                codec.into(),
                ffmpeg::ffi::FF_COMPLIANCE_NORMAL,
            )
        } == 1;
        if !fits {
            return Err(MediaError::Unsupported {
                path: output.to_owned(),
                reason: format!(
                    "audio track {} ({}) cannot be stored in a .{} file without re-encoding; use .mkv, which keeps every audio codec",
                    position + 1,
                    track.codec,
                    container.muxer_name()
                ),
            });
        }
    }
    Ok(())
}

/// Copies every audio track of `info.path` into `output` (NUT). Returns `None`, writing nothing,
/// when the source has no audio.
pub fn extract_audio(info: &MediaInfo, output: &Path) -> Result<Option<AudioReport>, MediaError> {
    util::init();
    if info.audio.is_empty() {
        return Ok(None);
    }
    let started = Instant::now();
    let mut input = util::open_input(&info.path)?;
    let partial = PartialFile::new(output);
    let write_failed = |source| MediaError::Write {
        path: partial.path().to_owned(),
        source,
    };
    let mut muxer = util::open_output(partial.path(), SEGMENT_MUXER)?;

    // Source stream index → (output stream index, source time base).
    let mut routes: Vec<Option<(usize, ffmpeg::Rational)>> = vec![None; input.streams().count()];
    for (position, track) in info.audio.iter().enumerate() {
        let stream = input
            .stream(track.stream_index)
            .ok_or_else(|| MediaError::Unsupported {
                path: info.path.clone(),
                reason: format!("audio stream #{} is gone", track.stream_index),
            })?;
        let mut added = muxer
            .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
            .map_err(write_failed)?;
        added.set_parameters(stream.parameters());
        added.set_time_base(stream.time_base());
        routes[track.stream_index] = Some((position, stream.time_base()));
        util::clear_codec_tag(&mut muxer, position, 0);
    }
    util::write_intermediate_header(&mut muxer).map_err(write_failed)?;
    let output_time_bases: Vec<ffmpeg::Rational> = muxer.streams().map(|s| s.time_base()).collect();

    let offsets: Vec<i64> = output_time_bases
        .iter()
        .map(|&time_base| util::offset_ticks(info.intermediate_offset_seconds, time_base))
        .collect();
    let mut packets = 0u64;
    let mut packet = ffmpeg::Packet::empty();
    loop {
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(source) => {
                return Err(MediaError::Read {
                    path: info.path.clone(),
                    source,
                })
            }
        }
        let Some(Some((position, time_base))) = routes.get(packet.stream()).copied() else {
            continue;
        };
        packet.rescale_ts(time_base, output_time_bases[position]);
        util::shift_packet(&mut packet, offsets[position]);
        packet.set_stream(position);
        packet.set_position(-1);
        packet.write_interleaved(&mut muxer).map_err(write_failed)?;
        packets += 1;
    }
    muxer.write_trailer().map_err(write_failed)?;
    drop(muxer);
    let bytes = std::fs::metadata(partial.path())
        .map_err(MediaError::io(partial.path()))?
        .len();
    partial.commit()?;
    Ok(Some(AudioReport {
        tracks: info.audio.len(),
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
