//! The streams of a source beside its video and audio, its chapters and its global tags, as the
//! probe lists them for [`crate::extras::plan_extras`].

use crate::extras::{Chapter, OtherStream, StreamKind};
use crate::media::util;
use ffmpeg_next as ffmpeg;
use std::collections::BTreeMap;
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
