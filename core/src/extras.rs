//! **Pure.** What the output keeps of everything in the source besides the transcoded video and
//! the audio tracks: subtitles, cover art, attachments, other video and data streams, the
//! timecode, chapters and the container's global tags, and one warning line for each thing the
//! output container cannot hold.
//!
//! [`plan_extras`] is a pure function of the probe and the output container. What the FFmpeg
//! build can convert is passed in (`can_convert`), so the rules stay testable without FFmpeg;
//! `media::streams::plan` passes the build's answer. Both runners (the local CLI and the Lambda
//! handlers) call that one function, print or record its warnings, and hand the plan to the
//! final mux.

use crate::media::probe::MediaInfo;
use crate::plan::TimeBase;
use crate::settings::Container;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What kind of stream an [`OtherStream`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    Subtitle,
    /// Cover art: a video stream holding one picture (FFmpeg's ATTACHED_PIC disposition), from
    /// an MP4 `covr` atom or a Matroska image attachment.
    AttachedPicture,
    /// A Matroska attachment that is not a picture (fonts, …): no packets, the file in the
    /// stream's extradata.
    Attachment,
    /// A video stream other than the one treemux transcodes.
    Video,
    /// An audio stream the probe did not take as a track (it had no packets).
    Audio,
    /// A QuickTime timecode track (`tmcd`).
    Timecode,
    Data,
}

impl StreamKind {
    fn label(self) -> &'static str {
        match self {
            Self::Subtitle => "subtitle",
            Self::AttachedPicture => "cover art",
            Self::Attachment => "attachment",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Timecode => "timecode",
            Self::Data => "data",
        }
    }
}

/// A source stream that is neither the transcoded video nor an audio track.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OtherStream {
    pub stream_index: usize,
    pub kind: StreamKind,
    /// FFmpeg's codec name (`mov_text`, `subrip`, `mjpeg`, `ttf`, `none`, …).
    pub codec: String,
    /// The container's codec tag as text when printable (`tx3g`, `tmcd`), else empty.
    pub codec_tag: String,
    /// Raw FFmpeg disposition bits (default, forced, attached picture, …).
    pub disposition: i32,
    pub metadata: BTreeMap<String, String>,
}

impl OtherStream {
    pub fn language(&self) -> Option<&str> {
        self.metadata.get("language").map(String::as_str)
    }

    /// `stream #2 (subtitle hdmv_pgs_subtitle, eng)`: how warnings and verify name a stream.
    pub fn describe(&self) -> String {
        let mut details = vec![format!("{} {}", self.kind.label(), self.codec)];
        if let Some(name) = self.metadata.get("filename") {
            details.push(name.clone());
        }
        if let Some(language) = self.language().filter(|l| *l != "und") {
            details.push(language.to_owned());
        }
        if self.kind == StreamKind::Video {
            details.push("second video track".to_owned());
        }
        format!("stream #{} ({})", self.stream_index, details.join(", "))
    }
}

/// A chapter of the source: `[start, end)` in ticks of `time_base`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chapter {
    pub id: i64,
    pub time_base: TimeBase,
    pub start: i64,
    pub end: i64,
    pub metadata: BTreeMap<String, String>,
}

impl Chapter {
    pub fn title(&self) -> Option<&str> {
        self.metadata.get("title").map(String::as_str)
    }
}

/// What happens to one [`OtherStream`] that the output keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum ExtraAction {
    /// Stream copy (packets, or the picture / attachment data).
    Copy,
    /// Decode the text subtitles and encode them with this FFmpeg encoder (`mov_text`, `srt`,
    /// `webvtt`), as `ffmpeg -c:s ENCODER` does.
    Convert { encoder: String },
    /// Cover art written as a Matroska image attachment (which Matroska readers, FFmpeg's
    /// included, show as cover art again).
    PictureAttachment,
}

/// One kept stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptStream {
    /// Index of the stream in the source.
    pub stream_index: usize,
    #[serde(flatten)]
    pub action: ExtraAction,
}

/// Everything beyond video and audio that the final mux writes, and what it cannot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtrasPlan {
    /// Kept streams, in source order; they follow the video and audio in the output.
    pub streams: Vec<KeptStream>,
    /// The source's timecode (`HH:MM:SS:FF`), written as the output video's `timecode` tag (MP4
    /// and MOV muxers make a timecode track of it, Matroska keeps the tag), as ffmpeg does.
    pub timecode: Option<String>,
    /// Chapters to write (with their titles).
    pub chapters: Vec<Chapter>,
    /// Global tags to write.
    pub tags: BTreeMap<String, String>,
    /// One line per thing of the source the output does not keep, naming it and why.
    pub warnings: Vec<String>,
}

impl ExtrasPlan {
    pub fn action_for(&self, stream_index: usize) -> Option<&ExtraAction> {
        self.streams
            .iter()
            .find(|kept| kept.stream_index == stream_index)
            .map(|kept| &kept.action)
    }
}

/// Global tags that describe the file's making rather than its content: the muxer writes its own
/// (`encoder`) or they are the container's bookkeeping. Neither kept nor warned about.
pub const BOOKKEEPING_TAGS: [&str; 6] = [
    "encoder",
    "encoding_tool",
    "major_brand",
    "minor_version",
    "compatible_brands",
    "duration",
];

/// Global tags FFmpeg 5.1's MP4 muxer writes (iTunes `ilst` items, `mvhd` time, `loci`): any
/// other is dropped by it.
const MP4_TAGS: [&str; 22] = [
    "title",
    "artist",
    "album_artist",
    "composer",
    "album",
    "date",
    "comment",
    "genre",
    "copyright",
    "grouping",
    "lyrics",
    "description",
    "synopsis",
    "show",
    "episode_id",
    "network",
    "keywords",
    "compilation",
    "disc",
    "track",
    "creation_time",
    "location",
];

/// Global tags FFmpeg 5.1's QuickTime muxer writes (`udta` strings, `mvhd` time).
const MOV_TAGS: [&str; 11] = [
    "title",
    "artist",
    "album",
    "date",
    "comment",
    "genre",
    "copyright",
    "make",
    "model",
    "location",
    "creation_time",
];

/// Text subtitle codecs (FFmpeg names): convertible into one another.
const TEXT_SUBTITLES: [&str; 7] = ["mov_text", "subrip", "srt", "ass", "ssa", "webvtt", "text"];

/// Bitmap subtitle codecs: pictures, which no text format can hold.
const BITMAP_SUBTITLES: [&str; 4] = ["hdmv_pgs_subtitle", "dvb_subtitle", "dvd_subtitle", "xsub"];

/// Subtitle codecs Matroska holds as they are.
const MATROSKA_SUBTITLES: [&str; 8] = [
    "subrip",
    "srt",
    "ass",
    "ssa",
    "webvtt",
    "hdmv_pgs_subtitle",
    "dvb_subtitle",
    "dvd_subtitle",
];

/// Picture codecs an MP4 `covr` atom holds.
const MP4_COVER_CODECS: [&str; 3] = ["mjpeg", "png", "bmp"];

/// Picture codecs FFmpeg's Matroska muxer can label as image attachments (it needs a MIME type).
pub const PICTURE_MIME_TYPES: [(&str, &str); 5] = [
    ("mjpeg", "image/jpeg"),
    ("png", "image/png"),
    ("bmp", "image/bmp"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
];

/// Decides what `container` keeps of `info`'s other streams, chapters and tags.
///
/// `can_convert(source_codec, encoder)` says whether this FFmpeg build can decode the first and
/// has the encoder named by the second. Warnings come in a fixed order: streams in source order,
/// then tags in name order.
pub fn plan_extras(
    info: &MediaInfo,
    container: Container,
    can_convert: &dyn Fn(&str, &str) -> bool,
) -> ExtrasPlan {
    let mut plan = ExtrasPlan {
        chapters: info.chapters.clone(),
        ..ExtrasPlan::default()
    };
    let file = format!("a .{} file", extension(container));
    for stream in &info.other_streams {
        let decision = match stream.kind {
            StreamKind::Subtitle => subtitle_action(stream, container, &file, can_convert),
            StreamKind::AttachedPicture => match container {
                Container::Mp4 if MP4_COVER_CODECS.contains(&stream.codec.as_str()) => {
                    Ok(ExtraAction::Copy)
                }
                Container::Mp4 => Err(format!("{file} holds cover art only as JPEG, PNG or BMP")),
                Container::Matroska
                    if PICTURE_MIME_TYPES
                        .iter()
                        .any(|(codec, _)| *codec == stream.codec) =>
                {
                    Ok(ExtraAction::PictureAttachment)
                }
                Container::Matroska => Err(format!(
                    "{file} holds cover art only as a JPEG, PNG, BMP, GIF or WebP picture"
                )),
                Container::Mov | Container::WebM => {
                    Err(format!("{file} cannot hold cover art (.mp4 and .mkv can)"))
                }
            },
            StreamKind::Attachment => match container {
                Container::Matroska => Ok(ExtraAction::Copy),
                _ => Err(format!("{file} cannot hold attachments (only .mkv can)")),
            },
            StreamKind::Timecode => match tag(&stream.metadata, "timecode") {
                Some(timecode) => {
                    plan.timecode.get_or_insert_with(|| timecode.to_owned());
                    continue;
                }
                None => Err("the timecode track states no start timecode".to_owned()),
            },
            StreamKind::Video => Err("treemux transcodes only the first video track".to_owned()),
            StreamKind::Audio => Err("the audio stream has no packets".to_owned()),
            StreamKind::Data => Err(format!(
                "data streams (codec {}) are not carried over",
                if stream.codec_tag.is_empty() {
                    &stream.codec
                } else {
                    &stream.codec_tag
                }
            )),
        };
        match decision {
            Ok(action) => plan.streams.push(KeptStream {
                stream_index: stream.stream_index,
                action,
            }),
            Err(reason) => plan
                .warnings
                .push(format!("{} is not kept: {reason}", stream.describe())),
        }
    }
    if plan.timecode.is_none() {
        // Matroska keeps it as an upper-case TIMECODE tag of the video track.
        plan.timecode = tag(&info.video.metadata, "timecode").map(str::to_owned);
    }
    for (key, value) in &info.tags {
        let lower = key.to_ascii_lowercase();
        if BOOKKEEPING_TAGS.contains(&lower.as_str()) {
            continue;
        }
        let holds = match container {
            Container::Mp4 => MP4_TAGS.contains(&lower.as_str()),
            Container::Mov => MOV_TAGS.contains(&lower.as_str()),
            Container::Matroska | Container::WebM => true,
        };
        if holds {
            plan.tags.insert(key.clone(), value.clone());
        } else {
            plan.warnings.push(format!(
                "tag {key}={value:?} is not kept: {file} holds only its own set of tags ({})",
                match container {
                    Container::Mov => MOV_TAGS.join(", "),
                    _ => MP4_TAGS.join(", "),
                }
            ));
        }
    }
    plan
}

/// A tag by name in any case: Matroska stores names in upper case, MP4 and MOV in lower case.
pub fn tag<'a>(tags: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
        .map(|(_, value)| value.as_str())
}

fn subtitle_action(
    stream: &OtherStream,
    container: Container,
    file: &str,
    can_convert: &dyn Fn(&str, &str) -> bool,
) -> Result<ExtraAction, String> {
    let codec = stream.codec.as_str();
    let (native, convert_to): (&[&str], &str) = match container {
        Container::Mp4 | Container::Mov => (&["mov_text"], "mov_text"),
        Container::Matroska => (&MATROSKA_SUBTITLES, "srt"),
        Container::WebM => (&["webvtt"], "webvtt"),
    };
    if native.contains(&codec) {
        return Ok(ExtraAction::Copy);
    }
    if BITMAP_SUBTITLES.contains(&codec) {
        return Err(format!(
            "{file} cannot hold bitmap subtitles, and pictures cannot be turned into text (.mkv holds them)"
        ));
    }
    if !TEXT_SUBTITLES.contains(&codec) {
        return Err(format!("{file} cannot hold {codec} subtitles"));
    }
    if !can_convert(codec, convert_to) {
        return Err(format!(
            "{file} needs them converted to {convert_to}, which this FFmpeg build cannot do"
        ));
    }
    Ok(ExtraAction::Convert {
        encoder: convert_to.to_owned(),
    })
}

fn extension(container: Container) -> &'static str {
    match container {
        Container::Mp4 => "mp4",
        Container::Mov => "mov",
        Container::Matroska => "mkv",
        Container::WebM => "webm",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::probe::{FrameRate, VideoInfo};
    use std::path::PathBuf;

    fn stream(index: usize, kind: StreamKind, codec: &str) -> OtherStream {
        OtherStream {
            stream_index: index,
            kind,
            codec: codec.to_owned(),
            codec_tag: String::new(),
            disposition: 0,
            metadata: BTreeMap::from([("language".to_owned(), "eng".to_owned())]),
        }
    }

    fn info(other_streams: Vec<OtherStream>, tags: &[(&str, &str)]) -> MediaInfo {
        MediaInfo {
            path: PathBuf::from("in.mkv"),
            size_bytes: 1,
            container: "matroska,webm".into(),
            video: VideoInfo {
                stream_index: 0,
                codec: "h264".into(),
                width: 320,
                height: 240,
                pixel_format: "yuv420p".into(),
                time_base: TimeBase { num: 1, den: 1000 },
                frame_rate: FrameRate { num: 25, den: 1 },
                sample_aspect_ratio: FrameRate { num: 1, den: 1 },
                first_pts: 0,
                end_pts: 1000,
                frame_count: 25,
                keyframe_count: 1,
                packet_bytes: 1,
                display_matrix: None,
                rotation_degrees: 0.0,
                metadata: BTreeMap::new(),
                color: Default::default(),
                hdr: Default::default(),
            },
            audio: Vec::new(),
            frames: Vec::new(),
            video_packets_at: Vec::new(),
            intermediate_offset_seconds: 1,
            output_shift_micros: 0,
            other_streams,
            chapters: vec![Chapter {
                id: 1,
                time_base: TimeBase { num: 1, den: 1000 },
                start: 0,
                end: 1000,
                metadata: BTreeMap::from([("title".to_owned(), "Intro".to_owned())]),
            }],
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            timestamp_repair: Default::default(),
        }
    }

    fn everything(_: &str, _: &str) -> bool {
        true
    }

    #[test]
    fn text_subtitles_are_copied_or_converted_for_the_container() {
        let source = info(
            vec![
                stream(1, StreamKind::Subtitle, "subrip"),
                stream(2, StreamKind::Subtitle, "ass"),
                stream(3, StreamKind::Subtitle, "mov_text"),
            ],
            &[],
        );
        let mkv = plan_extras(&source, Container::Matroska, &everything);
        assert!(mkv.warnings.is_empty(), "{:?}", mkv.warnings);
        assert_eq!(mkv.action_for(1), Some(&ExtraAction::Copy));
        assert_eq!(mkv.action_for(2), Some(&ExtraAction::Copy));
        assert_eq!(
            mkv.action_for(3),
            Some(&ExtraAction::Convert {
                encoder: "srt".into()
            })
        );
        let mp4 = plan_extras(&source, Container::Mp4, &everything);
        assert_eq!(
            mp4.action_for(1),
            Some(&ExtraAction::Convert {
                encoder: "mov_text".into()
            })
        );
        assert_eq!(mp4.action_for(3), Some(&ExtraAction::Copy));
        let webm = plan_extras(&source, Container::WebM, &everything);
        assert_eq!(
            webm.action_for(3),
            Some(&ExtraAction::Convert {
                encoder: "webvtt".into()
            })
        );
        assert_eq!(
            mkv.chapters.len(),
            1,
            "chapters are kept in every container"
        );
    }

    #[test]
    fn what_a_container_cannot_hold_is_named_in_one_warning_each() {
        let mut timecode = stream(5, StreamKind::Timecode, "none");
        timecode
            .metadata
            .insert("timecode".into(), "01:00:00:00".into());
        let mut font = stream(4, StreamKind::Attachment, "ttf");
        font.metadata.insert("filename".into(), "Font.ttf".into());
        let source = info(
            vec![
                stream(1, StreamKind::Subtitle, "hdmv_pgs_subtitle"),
                stream(2, StreamKind::Video, "h264"),
                stream(3, StreamKind::AttachedPicture, "mjpeg"),
                font,
                timecode,
                stream(6, StreamKind::Data, "bin_data"),
            ],
            &[("title", "A film"), ("encoder", "Lavf"), ("custom", "x")],
        );
        let mp4 = plan_extras(&source, Container::Mp4, &everything);
        assert_eq!(mp4.warnings.len(), 5, "{:#?}", mp4.warnings);
        assert!(mp4.warnings[0].starts_with("stream #1 (subtitle hdmv_pgs_subtitle, eng) is not kept: a .mp4 file cannot hold bitmap subtitles"));
        assert!(mp4.warnings[1]
            .starts_with("stream #2 (video h264, eng, second video track) is not kept"));
        assert!(mp4.warnings[2].contains("Font.ttf") && mp4.warnings[2].contains("attachments"));
        assert!(mp4.warnings[3].starts_with("stream #6 (data bin_data"));
        assert!(mp4.warnings[4].starts_with("tag custom=\"x\" is not kept"));
        assert_eq!(mp4.action_for(3), Some(&ExtraAction::Copy), "cover art");
        assert_eq!(mp4.timecode.as_deref(), Some("01:00:00:00"));
        assert_eq!(mp4.tags.keys().collect::<Vec<_>>(), ["title"]);

        let mkv = plan_extras(&source, Container::Matroska, &everything);
        assert_eq!(mkv.action_for(1), Some(&ExtraAction::Copy), "PGS in MKV");
        assert_eq!(mkv.action_for(3), Some(&ExtraAction::PictureAttachment));
        assert_eq!(mkv.action_for(4), Some(&ExtraAction::Copy), "fonts in MKV");
        assert_eq!(mkv.warnings.len(), 2, "{:#?}", mkv.warnings);
        assert!(mkv.tags.contains_key("custom"));

        let mov = plan_extras(&source, Container::Mov, &everything);
        assert!(mov
            .warnings
            .iter()
            .any(|w| w.starts_with("stream #3 (cover art mjpeg")));
    }

    #[test]
    fn a_matroska_timecode_tag_is_found_in_any_case() {
        let mut source = info(Vec::new(), &[]);
        source
            .video
            .metadata
            .insert("TIMECODE".into(), "10:00:00:00".into());
        let plan = plan_extras(&source, Container::Mov, &everything);
        assert_eq!(plan.timecode.as_deref(), Some("10:00:00:00"));
    }

    #[test]
    fn a_conversion_the_build_cannot_do_is_a_warning() {
        let source = info(vec![stream(1, StreamKind::Subtitle, "subrip")], &[]);
        let plan = plan_extras(&source, Container::Mp4, &|_, _| false);
        assert!(plan.streams.is_empty());
        assert_eq!(plan.warnings.len(), 1);
        assert!(plan.warnings[0].contains("cannot do"));
    }
}
