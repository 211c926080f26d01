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
//!
//! One module per output stream, as FFmpeg's remux example maps them: the video (`video`: stream
//! 0, its timestamps derived in the output's time base), the audio tracks (`audio`: streams 1…),
//! the MP4/MOV index room (`index`); the kept extra streams are `super::streams`'.

pub(crate) mod audio;
mod index;
mod layout;
mod parts;
pub(crate) mod video;

pub use layout::{lay_out_output, refusal_before_work, Laid, LayoutInputs};
pub use parts::write_part;

use super::merge::LeafVideo;
use super::probe::MediaInfo;
use super::source::Source;
use super::streams::{self, ExtraStreams};
use super::util;
use super::MediaError;
use crate::atomic_file::AtomicFile;
use crate::extras::ExtrasPlan;
use crate::settings::{Container, EncodeSettings};
use audio::AudioOutput;
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use video::VideoOutput;

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
    let audio_pts = match audio {
        Some(path) => audio_pts(path)?,
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
        MuxTarget::File(output) => passes.write_file(&output)?,
        MuxTarget::Stream { name, writer } => passes.write_stream(&name, writer)?,
    };
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Pass 1 over the audio: NUT keeps no durations for some codecs (Opus), and a last packet
/// without one is dropped by the MP4 muxer. Each track's pts (in file order) give the missing
/// durations.
pub(crate) fn audio_pts(path: &Path) -> Result<Vec<Vec<i64>>, MediaError> {
    let mut input = util::open_input(path)?;
    let mut per_stream = vec![Vec::new(); input.streams().count()];
    while let Some(packet) = util::read_packet(path, &mut input)? {
        per_stream[packet.stream()].push(packet.pts().unwrap_or(0));
    }
    Ok(per_stream)
}

/// Why one attempt at the output failed.
pub(crate) enum Failure {
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
    pub(crate) fn into_error(self, name: &Path) -> MediaError {
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
    /// The output as a file, appearing only when complete. The reservation is a bound, so a
    /// second attempt never happens in practice; if it did, the file is written again with the
    /// room FFmpeg said it lacked rather than ever written without its index in front.
    fn write_file(&self, output: &Path) -> Result<RemuxReport, MediaError> {
        let mut extra_room = 0;
        loop {
            let partial = AtomicFile::create(output)?;
            let mut muxer = util::open_output(&partial, self.container.muxer_name())?;
            match self.write(&mut muxer, partial.target(), extra_room, None) {
                Ok((mut report, _)) => {
                    drop(muxer);
                    report.bytes = std::fs::metadata(partial.path())
                        .map_err(MediaError::io(partial.target()))?
                        .len();
                    partial.commit()?;
                    return Ok(report);
                }
                Err(Failure::IndexRoom { needed }) if extra_room == 0 => {
                    extra_room = needed.saturating_mul(2).max(64 * 1024);
                }
                Err(failure) => return Err(failure.into_error(partial.target())),
            }
        }
    }

    /// The output into a seekable stream named `name` in errors (one attempt).
    fn write_stream(
        &self,
        name: &Path,
        writer: Box<dyn SeekWrite>,
    ) -> Result<RemuxReport, MediaError> {
        let write_failed = |source| MediaError::Write {
            path: name.to_owned(),
            source,
        };
        let io =
            ffmpeg::format::context::StreamIo::from_write_seek_with_capacity(writer, 1024 * 1024)
                .map_err(write_failed)?;
        let mut muxer =
            ffmpeg::format::output_to_stream(io, None, Some(self.container.muxer_name()))
                .map_err(write_failed)?;
        let (report, _) = self
            .write(&mut muxer, name, 0, None)
            .map_err(|failure| failure.into_error(name))?;
        // Dropping the muxer flushes FFmpeg's buffer into the stream.
        drop(muxer);
        Ok(report)
    }

    /// Writes the whole output into `muxer` (header, interleaved packets, trailer); `extra_room`
    /// is added to the index reservation. `bytes` of the report is where the muxer ended.
    /// With `layout`, the video packets are stand-ins (nothing of the segments is read but their
    /// headers) and each audio track's bytes are copied to its file; the copies' sizes are
    /// returned beside the report.
    fn write(
        &self,
        muxer: &mut ffmpeg::format::context::Output,
        name: &Path,
        extra_room: u64,
        layout: Option<&LayoutInputs<'_>>,
    ) -> Result<(RemuxReport, Vec<u64>), Failure> {
        let (info, extras) = (self.info, self.extras);
        let write_failed = |source| MediaError::Write {
            path: name.to_owned(),
            source,
        };
        let video_input = LeafVideo::open(self.video)?;
        let audio_input = self.audio.map(util::open_input).transpose()?;
        let mut verbatim_bytes = video::add_stream(
            muxer,
            &video_input,
            info,
            self.settings,
            extras,
            self.container,
            &write_failed,
        )?;
        let audio_time_bases = match &audio_input {
            Some(input) => {
                let (time_bases, bytes) = audio::add_streams(muxer, input, info, &write_failed)?;
                verbatim_bytes += bytes;
                time_bases
            }
            None => Vec::new(),
        };
        let mut extra_streams = ExtraStreams::add(self.source, extras, info, muxer)?;
        streams::write_chapters_and_tags(muxer, extras).map_err(write_failed)?;
        let options = index::header_options(
            self.container,
            self.merged_pts.len() as u64,
            self.audio_pts,
            &extra_streams,
            extras,
            verbatim_bytes,
            extra_room,
        );
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
        let mut video = VideoOutput::start(
            video_input,
            layout.map(|inputs| inputs.samples),
            self.merged_pts,
            info,
            output_time_bases[0],
            0,
        )?;
        let mut audio = AudioOutput::start(
            self.audio.zip(audio_input),
            audio_time_bases,
            output_time_bases[1..].to_vec(),
            self.audio_pts,
            info,
            1,
        )?;
        if let Some(inputs) = layout {
            audio.copy_bytes_to(inputs.audio_copies)?;
        }
        loop {
            // The earliest of the three sources by decode time; video first on a tie.
            let video_due = video.due();
            let audio_due = audio.due();
            let extra_due = extra_streams.peek_seconds()?;
            let earliest = [video_due, audio_due, extra_due]
                .into_iter()
                .flatten()
                .fold(f64::INFINITY, f64::min);
            if video_due.is_none() && audio_due.is_none() && extra_due.is_none() {
                break;
            }
            if video_due == Some(earliest) {
                video.write_next(muxer, &write_failed)?;
                report.video_packets += 1;
            } else if audio_due == Some(earliest) {
                audio.write_next(muxer, &write_failed)?;
                report.audio_packets += 1;
            } else if let Some(packet) = extra_streams.take() {
                packet.write_interleaved(muxer).map_err(write_failed)?;
                report.extra_packets += 1;
            }
        }
        index::write_trailer(muxer, &write_failed)?;
        let copied = audio.finish_copies()?;
        // SAFETY: the muxer's pb is open until the muxer is dropped.
        report.bytes = unsafe {
            ffmpeg::ffi::avio_seek((*muxer.as_ptr()).pb, 0, libc::SEEK_CUR).max(0) as u64
        };
        Ok((report, copied))
    }
}

/// Ticks of `time_base` in seconds, for interleaving.
fn ticks_to_seconds(ticks: i64, time_base: ffmpeg::Rational) -> f64 {
    ticks as f64 * f64::from(time_base.numerator()) / f64::from(time_base.denominator().max(1))
}
