//! The streams-and-tags check: subtitles, cover art, attachments, the timecode, chapters and
//! global tags kept wherever the output's container can hold them.

use crate::extras::{tag, ExtraAction, StreamKind};
use crate::media::probe::MediaInfo;
use crate::media::util;
use crate::settings::Container;
use ffmpeg_next as ffmpeg;

/// The container `output` was written as: from its extension as the transcode chose it, else
/// from the demuxer that read it.
fn output_container(output: &MediaInfo) -> Container {
    Container::from_path(&output.path).unwrap_or_else(|| {
        if output.container.contains("matroska") {
            Container::Matroska
        } else {
            Container::Mp4
        }
    })
}

/// Subtitles, cover art, attachments, the timecode, chapters and global tags: everything that the
/// output's container can hold (by the rule the transcode follows, `streams::plan`) must be in
/// the output. What it cannot hold is returned for the report.
pub(super) fn check_extras(
    source: &MediaInfo,
    output: &MediaInfo,
    check: &mut impl FnMut(&str, bool, String),
) -> Vec<String> {
    let plan = crate::media::streams::plan(source, output_container(output));
    let mut missing = Vec::new();
    let mut unmatched: Vec<(StreamKind, &str)> = output
        .other_streams
        .iter()
        .map(|stream| (stream.kind, stream.codec.as_str()))
        .collect();
    for kept in &plan.streams {
        let Some(stream) = source
            .other_streams
            .iter()
            .find(|stream| stream.stream_index == kept.stream_index)
        else {
            continue;
        };
        // What the kept stream reads back as: a converted subtitle has the encoder's codec, a
        // Matroska picture attachment reads as cover art again.
        let converted;
        let (kind, codec) = match &kept.action {
            ExtraAction::Copy => (stream.kind, stream.codec.as_str()),
            ExtraAction::Convert { encoder } => {
                converted = ffmpeg::encoder::find_by_name(encoder)
                    .map_or_else(|| encoder.clone(), |codec| util::codec_name(codec.id()));
                (StreamKind::Subtitle, converted.as_str())
            }
            ExtraAction::PictureAttachment => (StreamKind::AttachedPicture, stream.codec.as_str()),
        };
        match unmatched
            .iter()
            .position(|&(found_kind, found_codec)| found_kind == kind && found_codec == codec)
        {
            Some(at) => {
                unmatched.remove(at);
            }
            None => missing.push(stream.describe()),
        }
    }
    if let Some(timecode) = &plan.timecode {
        let found = tag(&output.video.metadata, "timecode") == Some(timecode.as_str())
            || output.other_streams.iter().any(|stream| {
                stream.kind == StreamKind::Timecode
                    && tag(&stream.metadata, "timecode") == Some(timecode.as_str())
            });
        if !found {
            missing.push(format!("timecode {timecode}"));
        }
    }
    if output.chapters.len() != plan.chapters.len() {
        missing.push(format!(
            "{} of {} chapters",
            plan.chapters.len().saturating_sub(output.chapters.len()),
            plan.chapters.len()
        ));
    }
    for (key, value) in &plan.tags {
        // Muxers rewrite creation times in their own format: only its presence is comparable.
        let same = match tag(&output.tags, key) {
            Some(found) => found == value || key.eq_ignore_ascii_case("creation_time"),
            None => false,
        };
        if !same {
            missing.push(format!("tag {key}={value:?}"));
        }
    }
    check(
        "streams and tags",
        missing.is_empty(),
        if missing.is_empty() {
            format!(
                "kept: {} streams, {} chapters, {} tags{}; not kept (the container cannot hold them): {}",
                plan.streams.len(),
                plan.chapters.len(),
                plan.tags.len(),
                if plan.timecode.is_some() { ", the timecode" } else { "" },
                if plan.warnings.is_empty() {
                    "nothing".to_owned()
                } else {
                    plan.warnings.len().to_string()
                }
            )
        } else {
            format!("missing from the output: {}", missing.join("; "))
        },
    );
    plan.warnings
}
