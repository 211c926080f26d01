//! Merge-audio: mux the merged video with the extracted audio into the final container.
//!
//! Also restores what a stream copy through intermediate files loses: packet durations (NUT does
//! not keep them; the last frame's duration would otherwise be lost and the output end one frame
//! short), the display matrix (rotation), and each audio track's language, title and
//! disposition. Writes what the [`ExtrasPlan`] keeps beside them: subtitles (copied or
//! converted), cover art, attachments, the timecode, chapters and global tags.

use super::picture;
use super::probe::MediaInfo;
use super::source::Source;
use super::streams::{self, ExtraStreams};
use super::util::{self, PartialFile};
use super::MediaError;
use crate::extras::ExtrasPlan;
use crate::settings::{Container, EncodeSettings};
use crate::timestamps::{decode_timestamps, frame_durations};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::Rescale as _;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// What the final mux did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemuxReport {
    pub video_packets: u64,
    pub audio_packets: u64,
    /// Packets of kept subtitle and other streams (cover pictures included).
    #[serde(default)]
    pub extra_packets: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Writes `output` in `container` from the merged `video` file and the extracted `audio` file.
///
/// `info` is the probe of the original source; its stream metadata is restored on the output.
/// `extras` (from [`streams::plan`] for the same `info` and `container`) says which other
/// streams, chapters and tags to write; kept streams are read from the source, `info.path`.
/// The output appears only when complete.
pub fn remux(
    video: &Path,
    audio: Option<&Path>,
    info: &MediaInfo,
    settings: &EncodeSettings,
    extras: &ExtrasPlan,
    container: Container,
    output: &Path,
) -> Result<RemuxReport, MediaError> {
    let source = Source::file(&info.path)?;
    remux_from(
        &source, video, audio, info, settings, extras, container, output,
    )
}

/// [`remux`] reading the kept extra streams from `source` (the bytes `info` was probed from).
#[allow(clippy::too_many_arguments)]
pub fn remux_from(
    source: &Source,
    video: &Path,
    audio: Option<&Path>,
    info: &MediaInfo,
    settings: &EncodeSettings,
    extras: &ExtrasPlan,
    container: Container,
    output: &Path,
) -> Result<RemuxReport, MediaError> {
    util::init();
    let started = Instant::now();
    let mut video_input = util::open_input(video)?;
    let video_time_base = video_input
        .stream(0)
        .map(|s| s.time_base())
        .ok_or_else(|| MediaError::Unsupported {
            path: video.to_owned(),
            reason: "the merged video file has no stream".into(),
        })?;
    // Pass 1 over the video: the pts in decode order (dts and durations follow once the output
    // time base is known).
    let merged_pts = util::read_packet_pts(video, &mut video_input)?;
    let mut video_input = util::open_input(video)?;
    let mut audio_input = audio.map(util::open_input).transpose()?;

    let partial = PartialFile::create(output)?;
    let write_failed = |source| MediaError::Write {
        path: partial.target().to_owned(),
        source,
    };
    let mut muxer = util::open_output(&partial, container.muxer_name())?;
    {
        let source_stream = video_input.stream(0).expect("checked above");
        let mut stream = muxer
            .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
            .map_err(write_failed)?;
        stream.set_parameters(source_stream.parameters());
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
    }
    let is_hevc = video_input
        .stream(0)
        .is_some_and(|s| s.parameters().id() == ffmpeg::codec::Id::HEVC);
    let hvc1 = u32::from_le_bytes(*b"hvc1");
    util::clear_codec_tag(
        &mut muxer,
        0,
        if is_hevc && matches!(container, Container::Mp4 | Container::Mov) {
            hvc1
        } else {
            0
        },
    );
    let picture = picture::output_picture(&info.video, settings)?;
    util::set_stream_color_tags(&mut muxer, 0, picture.color);
    // A rotation turned into the pixels is not displayed a second time.
    if let (Some(matrix), picture::Orientation::Upright) =
        (&info.video.display_matrix, picture.orientation)
    {
        util::set_display_matrix(&mut muxer, 0, matrix).map_err(write_failed)?;
    }

    // Pass 1 over the audio: NUT keeps no durations for some codecs (Opus), and a last packet
    // without one is dropped by the MP4 muxer. Each track's pts give the missing durations.
    let audio_pts: Vec<Vec<i64>> = match (audio, audio_input.as_mut()) {
        (Some(path), Some(input)) => {
            let mut per_stream = vec![Vec::new(); input.streams().count()];
            while let Some(packet) = read_packet(path, input)? {
                per_stream[packet.stream()].push(packet.pts().unwrap_or(0));
            }
            per_stream
        }
        _ => Vec::new(),
    };
    let mut audio_input = audio.map(util::open_input).transpose()?;
    let mut audio_time_bases = Vec::new();
    if let Some(input) = &audio_input {
        for (position, (stream, track)) in input.streams().zip(&info.audio).enumerate() {
            let mut added = muxer
                .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
                .map_err(write_failed)?;
            added.set_parameters(stream.parameters());
            added.set_time_base(stream.time_base());
            let mut metadata = ffmpeg::Dictionary::new();
            for (key, value) in &track.metadata {
                // Muxer-specific bookkeeping tags would be stale; keep the descriptive ones.
                if matches!(
                    key.as_str(),
                    "language" | "title" | "handler_name" | "comment"
                ) {
                    metadata.set(key, value);
                }
            }
            added.set_metadata(metadata);
            util::clear_codec_tag(&mut muxer, position + 1, 0);
            util::set_disposition(&mut muxer, position + 1, track.disposition);
            audio_time_bases.push(stream.time_base());
        }
    }

    let mut extra_streams = ExtraStreams::add(source, extras, info, &mut muxer)?;
    streams::write_chapters_and_tags(&mut muxer, extras).map_err(write_failed)?;

    let mut options = ffmpeg::Dictionary::new();
    if matches!(container, Container::Mp4 | Container::Mov) {
        options.set("movflags", "+faststart");
    }
    muxer.write_header_with(options).map_err(write_failed)?;
    let output_time_bases: Vec<ffmpeg::Rational> = muxer.streams().map(|s| s.time_base()).collect();
    let mut report = RemuxReport {
        video_packets: 0,
        audio_packets: 0,
        extra_packets: 0,
        bytes: 0,
        seconds: 0.0,
    };
    for picture in extra_streams.start(&muxer) {
        picture
            .write_interleaved(&mut muxer)
            .map_err(write_failed)?;
        report.extra_packets += 1;
    }
    // Derive dts and durations in the output's own time base: derived in a finer one, neighbouring
    // dts could round onto the same tick.
    // Intermediate files carry the job's timestamp offset; the output does not.
    // A source that starts before 0 is shifted to start at 0 (see `output_shift_micros`).
    let video_offset = util::offset_ticks(info.intermediate_offset_seconds, video_time_base);
    let video_shift = util::micros_to_ticks_up(info.output_shift_micros, output_time_bases[0]);
    let video_pts: Vec<i64> = merged_pts
        .iter()
        .map(|pts| {
            (pts - video_offset).rescale(video_time_base, output_time_bases[0]) + video_shift
        })
        .collect();
    let end = info
        .video
        .end_pts
        .rescale(util::rational(info.video.time_base), output_time_bases[0])
        + video_shift;
    let video_dts = decode_timestamps(&video_pts, end);
    // Each frame's own display duration: MP4 takes the track's length from the largest
    // pts + duration, Matroska from the last frame's.
    let video_durations = frame_durations(&video_pts, end);

    let mut video_index = 0usize;
    let mut audio_packet_counts = vec![0usize; audio_time_bases.len()];
    let mut next_video = read_packet(video, &mut video_input)?;
    let audio_offsets: Vec<i64> = audio_time_bases
        .iter()
        .map(|&time_base| {
            util::offset_ticks(info.intermediate_offset_seconds, time_base)
                - util::micros_to_ticks_up(info.output_shift_micros, time_base)
        })
        .collect();
    let read_audio = |path: &Path,
                      input: &mut ffmpeg::format::context::Input|
     -> Result<Option<ffmpeg::Packet>, MediaError> {
        let mut packet = read_packet(path, input)?;
        if let Some(packet) = packet.as_mut() {
            util::shift_packet(packet, -audio_offsets[packet.stream()]);
        }
        Ok(packet)
    };
    let mut next_audio = match (audio, audio_input.as_mut()) {
        (Some(path), Some(input)) => read_audio(path, input)?,
        _ => None,
    };
    loop {
        // The earliest of the three sources by decode time; video first on a tie.
        let video_due = next_video.as_ref().map(|_| {
            ticks_to_seconds(
                video_dts.get(video_index).copied().unwrap_or(i64::MAX),
                output_time_bases[0],
            )
        });
        let audio_due = next_audio.as_ref().map(|a| {
            ticks_to_seconds(
                a.dts().or(a.pts()).unwrap_or(0),
                audio_time_bases[a.stream()],
            )
        });
        let extra_due = extra_streams.peek_seconds()?;
        let earliest = [video_due, audio_due, extra_due]
            .into_iter()
            .flatten()
            .fold(f64::INFINITY, f64::min);
        if video_due.is_none() && audio_due.is_none() && extra_due.is_none() {
            break;
        }
        if video_due != Some(earliest) && audio_due != Some(earliest) {
            if let Some(packet) = extra_streams.take() {
                packet.write_interleaved(&mut muxer).map_err(write_failed)?;
                report.extra_packets += 1;
            }
            continue;
        }
        let take_video = video_due == Some(earliest);
        if take_video {
            let mut packet = next_video.take().expect("chosen because present");
            let (Some(&pts), Some(&dts), Some(&duration)) = (
                video_pts.get(video_index),
                video_dts.get(video_index),
                video_durations.get(video_index),
            ) else {
                return Err(MediaError::Unsupported {
                    path: video.to_owned(),
                    reason: "the file changed while it was being muxed".into(),
                });
            };
            video_index += 1;
            packet.set_pts(Some(pts));
            packet.set_dts(Some(dts));
            packet.set_duration(duration);
            packet.set_stream(0);
            packet.set_position(-1);
            packet.write_interleaved(&mut muxer).map_err(write_failed)?;
            report.video_packets += 1;
            next_video = read_packet(video, &mut video_input)?;
        } else {
            let mut packet = next_audio.take().expect("chosen because present");
            let position = packet.stream();
            let index = audio_packet_counts[position];
            audio_packet_counts[position] += 1;
            if packet.duration() <= 0 {
                let pts_list = &audio_pts[position];
                let duration = match (pts_list.get(index), pts_list.get(index + 1)) {
                    (Some(pts), Some(next)) => next - pts,
                    _ => info.audio[position].last_packet_duration.rescale(
                        util::rational(info.audio[position].time_base),
                        audio_time_bases[position],
                    ),
                };
                packet.set_duration(duration.max(0));
            }
            packet.rescale_ts(audio_time_bases[position], output_time_bases[position + 1]);
            packet.set_stream(position + 1);
            packet.set_position(-1);
            packet.write_interleaved(&mut muxer).map_err(write_failed)?;
            report.audio_packets += 1;
            if let (Some(path), Some(input)) = (audio, audio_input.as_mut()) {
                next_audio = read_audio(path, input)?;
            }
        }
    }
    muxer.write_trailer().map_err(write_failed)?;
    drop(muxer);
    report.bytes = std::fs::metadata(partial.path())
        .map_err(MediaError::io(partial.target()))?
        .len();
    partial.commit()?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn read_packet(
    path: &Path,
    input: &mut ffmpeg::format::context::Input,
) -> Result<Option<ffmpeg::Packet>, MediaError> {
    let mut packet = ffmpeg::Packet::empty();
    match packet.read(input) {
        Ok(()) => Ok(Some(packet)),
        Err(ffmpeg::Error::Eof) => Ok(None),
        Err(source) => Err(MediaError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Ticks of `time_base` in seconds, for interleaving.
fn ticks_to_seconds(ticks: i64, time_base: ffmpeg::Rational) -> f64 {
    ticks as f64 * f64::from(time_base.numerator()) / f64::from(time_base.denominator().max(1))
}
