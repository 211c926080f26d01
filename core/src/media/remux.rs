//! Merge-audio (finishing the root): mux the segment files, in order, with the extracted audio
//! into the final container, in one pass: the output is written once.
//!
//! For MP4/MOV the index goes in front without a second pass: room for it is reserved from the
//! sample counts ([`crate::output_plan::moov_reserve`]) and filled at the trailer, so packets
//! are written in decode-time order (audio and video interleaved) right after it and a player
//! starts at once over HTTP range requests. The output goes to a file (renamed into place when
//! complete) or to a seekable stream ([`MuxTarget::Stream`], e.g. a multipart upload).
//!
//! Also restores what a stream copy through intermediate files loses: packet durations (NUT does
//! not keep them; the last frame's duration would otherwise be lost and the output end one frame
//! short), the display matrix (rotation), and each audio track's language, title and
//! disposition. Writes what the [`ExtrasPlan`] keeps beside them: subtitles (copied or
//! converted), cover art, attachments, the timecode, chapters and global tags.

use super::merge::LeafVideo;
use super::picture;
use super::probe::MediaInfo;
use super::source::Source;
use super::streams::{self, ExtraStreams};
use super::util;
use super::MediaError;
use crate::atomic_file::AtomicFile;
use crate::extras::ExtrasPlan;
use crate::output_plan::{moov_reserve, IndexContents};
use crate::settings::{Container, EncodeSettings};
use crate::timestamps::{decode_timestamps, frame_durations};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::Rescale as _;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
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

/// Where the final mux writes.
pub enum MuxTarget {
    /// A file, written under a temporary name beside it and renamed when complete.
    File(PathBuf),
    /// A seekable stream (e.g. a multipart upload that holds part 1 back until the trailer);
    /// `name` is what errors call it. Whoever made the stream completes or abandons it.
    Stream {
        name: PathBuf,
        writer: Box<dyn SeekWrite>,
    },
}

impl std::fmt::Debug for MuxTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Stream { name, .. } => f.debug_struct("Stream").field("name", name).finish(),
        }
    }
}

/// What a [`MuxTarget::Stream`] must do: write and seek like a file. The mov muxer seeks back
/// only into its header region (the reserved index and the `mdat` size) at the trailer.
pub trait SeekWrite: std::io::Write + std::io::Seek + Send {}
impl<T: std::io::Write + std::io::Seek + Send> SeekWrite for T {}

/// Writes the output in `container` from the segment files `video` (in presentation order) and
/// the extracted `audio` file, in one pass.
///
/// `info` is the probe of the original source; its stream metadata is restored on the output.
/// `extras` (from [`streams::plan`] for the same `info` and `container`) says which other
/// streams, chapters and tags to write; kept streams are read from `source` (the bytes `info`
/// was probed from). A file target appears only when complete.
#[allow(clippy::too_many_arguments)]
pub fn remux(
    source: &Source,
    video: &[PathBuf],
    video_pts: Option<&[i64]>,
    audio: Option<&Path>,
    info: &MediaInfo,
    settings: &EncodeSettings,
    extras: &ExtrasPlan,
    container: Container,
    target: MuxTarget,
) -> Result<RemuxReport, MediaError> {
    util::init();
    let started = Instant::now();
    // The video's pts in decode order (dts and durations follow once the output time base is
    // known): from the merged index when it has them, else a first pass over the files.
    let merged_pts = match video_pts {
        Some(pts) => pts.to_vec(),
        None => LeafVideo::open(video)?.all_pts()?,
    };
    // Pass 1 over the audio: NUT keeps no durations for some codecs (Opus), and a last packet
    // without one is dropped by the MP4 muxer. Each track's pts give the missing durations.
    let audio_pts: Vec<Vec<i64>> = match audio {
        Some(path) => {
            let mut input = util::open_input(path)?;
            let mut per_stream = vec![Vec::new(); input.streams().count()];
            while let Some(packet) = read_packet(path, &mut input)? {
                per_stream[packet.stream()].push(packet.pts().unwrap_or(0));
            }
            per_stream
        }
        None => Vec::new(),
    };
    let passes = Passes {
        source,
        video,
        audio,
        merged_pts: &merged_pts,
        audio_pts: &audio_pts,
        info,
        settings,
        extras,
        container,
    };
    let mut report = match target {
        MuxTarget::File(output) => {
            // The reservation is a bound, so a second attempt never happens in practice; if it
            // did, the file is written again with the room FFmpeg said it lacked rather than
            // ever written without its index in front.
            let mut extra_room = 0;
            loop {
                let partial = AtomicFile::create(&output)?;
                let mut muxer = util::open_output(&partial, container.muxer_name())?;
                match passes.write(&mut muxer, partial.target(), extra_room) {
                    Ok(mut report) => {
                        drop(muxer);
                        report.bytes = std::fs::metadata(partial.path())
                            .map_err(MediaError::io(partial.target()))?
                            .len();
                        partial.commit()?;
                        break report;
                    }
                    Err(Failure::IndexRoom { needed }) if extra_room == 0 => {
                        extra_room = needed.saturating_mul(2).max(64 * 1024);
                    }
                    Err(failure) => return Err(failure.into_error(partial.target())),
                }
            }
        }
        MuxTarget::Stream { name, writer } => {
            let io = ffmpeg::format::context::StreamIo::from_write_seek_with_capacity(
                writer,
                1024 * 1024,
            )
            .map_err(|source| MediaError::Write {
                path: name.clone(),
                source,
            })?;
            let mut muxer =
                ffmpeg::format::output_to_stream(io, None, Some(container.muxer_name())).map_err(
                    |source| MediaError::Write {
                        path: name.clone(),
                        source,
                    },
                )?;
            let report = passes
                .write(&mut muxer, &name, 0)
                .map_err(|failure| failure.into_error(&name))?;
            // Dropping the muxer flushes FFmpeg's buffer into the stream.
            drop(muxer);
            report
        }
    };
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Why one attempt at the output failed.
enum Failure {
    /// The reserved index room was short by `needed` bytes.
    IndexRoom {
        needed: u64,
    },
    Media(MediaError),
}

impl From<MediaError> for Failure {
    fn from(error: MediaError) -> Self {
        Self::Media(error)
    }
}

impl Failure {
    fn into_error(self, name: &Path) -> MediaError {
        match self {
            Self::Media(error) => error,
            Self::IndexRoom { needed } => MediaError::Unsupported {
                path: name.to_owned(),
                reason: format!(
                    "the room reserved for the MP4 index was {needed} bytes short; nothing kept"
                ),
            },
        }
    }
}

/// What every attempt at the output reads.
struct Passes<'a> {
    source: &'a Source,
    video: &'a [PathBuf],
    audio: Option<&'a Path>,
    merged_pts: &'a [i64],
    audio_pts: &'a [Vec<i64>],
    info: &'a MediaInfo,
    settings: &'a EncodeSettings,
    extras: &'a ExtrasPlan,
    container: Container,
}

impl Passes<'_> {
    /// Writes the whole output into `muxer` (header, interleaved packets, trailer); `extra_room`
    /// is added to the index reservation. `bytes` of the report is where the muxer ended.
    fn write(
        &self,
        muxer: &mut ffmpeg::format::context::Output,
        name: &Path,
        extra_room: u64,
    ) -> Result<RemuxReport, Failure> {
        let (info, settings, extras, container) =
            (self.info, self.settings, self.extras, self.container);
        let write_failed = |source| MediaError::Write {
            path: name.to_owned(),
            source,
        };
        let mut video_input = LeafVideo::open(self.video)?;
        let video_time_base = video_input.time_base();
        let mut audio_input = self.audio.map(util::open_input).transpose()?;
        let mut verbatim_bytes = 0u64;
        {
            let mut stream = muxer
                .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
                .map_err(write_failed)?;
            stream.set_parameters(video_input.parameters().clone());
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
            verbatim_bytes +=
                unsafe { (*(*stream.as_mut_ptr()).codecpar).extradata_size.max(0) as u64 };
        }
        let is_hevc = video_input.parameters().id() == ffmpeg::codec::Id::HEVC;
        let hvc1 = u32::from_le_bytes(*b"hvc1");
        util::clear_codec_tag(
            muxer,
            0,
            if is_hevc && matches!(container, Container::Mp4 | Container::Mov) {
                hvc1
            } else {
                0
            },
        );
        let picture = picture::output_picture(&info.video, settings)?;
        util::set_stream_color_tags(muxer, 0, picture.color);
        // A rotation turned into the pixels is not displayed a second time.
        if let (Some(matrix), picture::Orientation::Upright) =
            (&info.video.display_matrix, picture.orientation)
        {
            util::set_display_matrix(muxer, 0, matrix).map_err(write_failed)?;
        }

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
                        verbatim_bytes += (key.len() + value.len()) as u64;
                    }
                }
                added.set_metadata(metadata);
                // SAFETY: as for the video stream.
                verbatim_bytes +=
                    unsafe { (*(*added.as_mut_ptr()).codecpar).extradata_size.max(0) as u64 };
                util::clear_codec_tag(muxer, position + 1, 0);
                util::set_disposition(muxer, position + 1, track.disposition);
                audio_time_bases.push(stream.time_base());
            }
        }

        let mut extra_streams = ExtraStreams::add(self.source, extras, info, muxer)?;
        streams::write_chapters_and_tags(muxer, extras).map_err(write_failed)?;

        let mut options = ffmpeg::Dictionary::new();
        if matches!(container, Container::Mp4 | Container::Mov) {
            let mut samples: Vec<u64> = vec![self.merged_pts.len() as u64];
            samples.extend(self.audio_pts.iter().map(|pts| pts.len() as u64));
            // Subtitle events are not counted ahead; a stream of them has at most a couple
            // per video frame in any real file.
            samples.extend(
                (0..extra_streams.packet_streams()).map(|_| 2 * self.merged_pts.len() as u64 + 64),
            );
            verbatim_bytes += extra_streams.picture_bytes()
                + serde_json::to_vec(&(&extras.chapters, &extras.tags, &extras.timecode))
                    .map_or(0, |json| json.len() as u64);
            let reserve = moov_reserve(&IndexContents {
                samples_per_track: samples,
                other_tracks: 2 + extras.chapters.len().min(1) as u64,
                verbatim_bytes,
            }) + extra_room;
            options.set("moov_size", &reserve.to_string());
        }
        muxer.write_header_with(options).map_err(write_failed)?;
        let output_time_bases: Vec<ffmpeg::Rational> =
            muxer.streams().map(|s| s.time_base()).collect();
        let mut report = RemuxReport {
            video_packets: 0,
            audio_packets: 0,
            extra_packets: 0,
            bytes: 0,
            seconds: 0.0,
        };
        for picture in extra_streams.start(muxer) {
            picture.write_interleaved(muxer).map_err(write_failed)?;
            report.extra_packets += 1;
        }
        // Derive dts and durations in the output's own time base: derived in a finer one,
        // neighbouring dts could round onto the same tick.
        // Intermediate files carry the job's timestamp offset; the output does not.
        // A source that starts before 0 is shifted to start at 0 (see `output_shift_micros`).
        let video_offset = util::offset_ticks(info.intermediate_offset_seconds, video_time_base);
        let video_shift = util::micros_to_ticks_up(info.output_shift_micros, output_time_bases[0]);
        let video_pts: Vec<i64> = self
            .merged_pts
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
        let mut next_video = video_input.next_packet()?;
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
        let mut next_audio = match (self.audio, audio_input.as_mut()) {
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
                    packet.write_interleaved(muxer).map_err(write_failed)?;
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
                        path: video_input.first_path().to_owned(),
                        reason: "the segment files changed while they were being muxed".into(),
                    }
                    .into());
                };
                video_index += 1;
                packet.set_pts(Some(pts));
                packet.set_dts(Some(dts));
                packet.set_duration(duration);
                packet.set_stream(0);
                packet.set_position(-1);
                packet.write_interleaved(muxer).map_err(write_failed)?;
                report.video_packets += 1;
                next_video = video_input.next_packet()?;
            } else {
                let mut packet = next_audio.take().expect("chosen because present");
                let position = packet.stream();
                let index = audio_packet_counts[position];
                audio_packet_counts[position] += 1;
                if packet.duration() <= 0 {
                    let pts_list = &self.audio_pts[position];
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
                packet.write_interleaved(muxer).map_err(write_failed)?;
                report.audio_packets += 1;
                if let (Some(path), Some(input)) = (self.audio, audio_input.as_mut()) {
                    next_audio = read_audio(path, input)?;
                }
            }
        }
        util::clear_ffmpeg_error();
        if let Err(source) = muxer.write_trailer() {
            let logged = util::take_ffmpeg_error().unwrap_or_default();
            // "reserved_moov_size is too small, needed N additional"
            if let Some(needed) = logged
                .split("needed ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|_| logged.contains("reserved_moov_size"))
            {
                return Err(Failure::IndexRoom { needed });
            }
            return Err(write_failed(source).into());
        }
        // SAFETY: the muxer's pb is open until the muxer is dropped.
        report.bytes = unsafe {
            ffmpeg::ffi::avio_seek((*muxer.as_ptr()).pb, 0, libc::SEEK_CUR).max(0) as u64
        };
        Ok(report)
    }
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
