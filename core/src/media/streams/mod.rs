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
//!
//! One module each: finding them in a source (`found`), chapters and tags on the output
//! (`chapters`), the kept streams added to the output and their packets (`extra`), the text
//! subtitle converter (`subtitles`).

mod chapters;
mod extra;
mod found;
mod subtitles;

pub(crate) use chapters::write_chapters_and_tags;
pub(crate) use extra::ExtraStreams;
pub(crate) use found::collect;

use super::probe::MediaInfo;
use super::util;
use crate::extras::{plan_extras, ExtrasPlan};
use crate::settings::Container;
use ffmpeg_next as ffmpeg;

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
