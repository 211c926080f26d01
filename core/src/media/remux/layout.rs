//! Laying the output out without its video bytes: the same mux as [`super::remux`], with each
//! video packet replaced by a stand-in of its sample's size ([`crate::nal::stand_in`]) and the
//! audio packets as they are (their bytes copied per track to scratch on the way), into a sink
//! that keeps only the header region and counts the rest. The sample table is then read back by
//! FFmpeg's mov demuxer over "the header + zeros to the total length" and checked to tile the
//! media exactly ([`OutputLayout::tile`]).
//!
//! Only where the mov muxer neither looks at nor changes a payload (FFmpeg 5.1 movenc): video
//! H.264/HEVC (avcC/hvcC as they are, Annex B by the one conversion of [`crate::nal`]), VP9,
//! MPEG-4 part 2 and ProRes; audio AAC, MP3, Opus, FLAC, ALAC, AC-3 and PCM (the real audio
//! packets go through the muxer, so what it reads of them it reads). Anything else (AV1, whose
//! OBUs are filtered; E-AC-3, parsed and merged; kept subtitle or other streams; chapters and
//! timecodes, which add text and timecode samples) is [`Laid::Refused`] with the reason, and
//! keeps the single-stream path.

use super::{Failure, Passes};
use crate::extras::ExtrasPlan;
use crate::join::VideoSamples;
use crate::media::probe::MediaInfo;
use crate::media::source::Source;
use crate::media::util;
use crate::media::MediaError;
use crate::output_layout::{OutputLayout, SampleEntry};
use crate::settings::{Container, EncodeSettings};
use ffmpeg_next as ffmpeg;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What laying out found.
#[derive(Debug)]
pub enum Laid {
    Out(OutputLayout),
    /// The output cannot be laid out without its bytes; why.
    Refused(String),
}

/// What the layout pass muxes: the root's segments and their samples, the joined audio, and
/// where each audio track's bytes are copied.
#[derive(Debug)]
pub struct LayoutInputs<'a> {
    pub leaves: &'a [u32],
    pub video: &'a [PathBuf],
    pub samples: &'a VideoSamples,
    pub video_pts: &'a [i64],
    pub audio: Option<&'a Path>,
    /// One file per audio track, written here.
    pub audio_copies: &'a [PathBuf],
}

const AUDIO_CODECS: [&str; 13] = [
    "aac",
    "mp3",
    "opus",
    "flac",
    "alac",
    "ac3",
    "pcm_s16le",
    "pcm_s16be",
    "pcm_s24le",
    "pcm_s24be",
    "pcm_s32le",
    "pcm_f32le",
    "pcm_f32be",
];

/// Why the output of `extras`, `container` and the audio file `audio` cannot be laid out by
/// sizes, if it cannot.
/// Why an output of `container` keeping `extras` is never laid out by sizes, known before any
/// work (the rest of [`refusal`] needs the extracted audio or the mux itself); `None`: it may
/// be.
pub fn refusal_before_work(extras: &ExtrasPlan, container: Container) -> Option<String> {
    if !matches!(container, Container::Mp4 | Container::Mov) {
        return Some(format!("the {container:?} muxer is not laid out by sizes"));
    }
    if !extras.streams.is_empty() {
        return Some("subtitle, picture or other kept streams".into());
    }
    if !extras.chapters.is_empty() || extras.timecode.is_some() {
        return Some("chapters or a timecode (the muxer adds samples for them)".into());
    }
    None
}

fn refusal(
    extras: &ExtrasPlan,
    container: Container,
    audio: Option<&Path>,
) -> Result<Option<String>, MediaError> {
    if let Some(reason) = refusal_before_work(extras, container) {
        return Ok(Some(reason));
    }
    if let Some(path) = audio {
        let input = util::open_input(path)?;
        for stream in input.streams() {
            let codec = util::codec_name(stream.parameters().id());
            if !AUDIO_CODECS.contains(&codec.as_str()) {
                return Ok(Some(format!("audio codec {codec}")));
            }
        }
    }
    Ok(None)
}

/// Lays the output out (see the module docs). `name` names the output in errors. The audio
/// copies are written even when the layout is refused after the mux (then unused).
pub(super) fn lay_out(
    passes: &Passes<'_>,
    inputs: &LayoutInputs<'_>,
    extras: &ExtrasPlan,
    name: &Path,
) -> Result<Laid, MediaError> {
    if let Some(reason) = refusal(extras, passes.container, inputs.audio)? {
        return Ok(Laid::Refused(reason));
    }
    let sink = HeaderSink::default();
    let state = sink.state.clone();
    let write_failed = |source| MediaError::Write {
        path: name.to_owned(),
        source,
    };
    let io = ffmpeg::format::context::StreamIo::from_write_seek_with_capacity(sink, 1024 * 1024)
        .map_err(write_failed)?;
    let mut muxer = ffmpeg::format::output_to_stream(io, None, Some(passes.container.muxer_name()))
        .map_err(write_failed)?;
    let written = passes.write(&mut muxer, name, 0, Some(inputs));
    drop(muxer);
    let (report, audio_bytes) = match written {
        Ok(written) => written,
        Err(Failure::IndexRoom { needed }) => {
            return Ok(Laid::Refused(format!(
                "the index needed {needed} more bytes than reserved"
            )))
        }
        Err(Failure::Media(error)) => return Err(error),
    };
    let state = std::mem::take(&mut *state.lock().unwrap_or_else(|p| p.into_inner()));
    let total_bytes = state.len;
    let entries = read_entries(&state.kept, total_bytes, name)?;
    let header_len = entries
        .iter()
        .map(|entry| entry.offset)
        .min()
        .unwrap_or(total_bytes);
    if header_len > state.kept.len() as u64 {
        return Ok(Laid::Refused(format!(
            "the header ({header_len} bytes) lies beyond the {} bytes kept",
            state.kept.len()
        )));
    }
    let runs = match OutputLayout::tile(
        entries,
        header_len,
        total_bytes,
        inputs.samples,
        &audio_bytes,
    ) {
        Ok(runs) => runs,
        Err(error) => return Ok(Laid::Refused(format!("the laid-out index: {error}"))),
    };
    let mut header = state.kept;
    header.truncate(header_len as usize);
    Ok(Laid::Out(OutputLayout {
        header,
        header_len,
        total_bytes,
        runs,
        leaves: inputs.leaves.to_vec(),
        video: inputs.samples.clone(),
        audio_bytes,
        audio_packets: report.audio_packets,
    }))
}

/// Every sample of every stream of the MP4 whose first bytes are `header` and whose other bytes
/// (to `total_bytes`) are taken as zeros, from FFmpeg's mov demuxer (edit lists ignored: the
/// raw sample table).
fn read_entries(
    header: &[u8],
    total_bytes: u64,
    name: &Path,
) -> Result<Vec<SampleEntry>, MediaError> {
    let zeros = HeaderAndZeros {
        header: header.to_vec(),
        total_bytes,
        position: 0,
    };
    let open_failed = |source| MediaError::Open {
        path: name.to_owned(),
        source,
    };
    let io = ffmpeg::format::context::StreamIo::from_read_seek_with_capacity(zeros, 64 * 1024)
        .map_err(open_failed)?;
    let mut options = ffmpeg::Dictionary::new();
    options.set("ignore_editlist", "1");
    let input = ffmpeg::format::input_from_stream(io, Some("layout.mp4"), Some(options))
        .map_err(open_failed)?;
    let mut entries = Vec::new();
    for stream in input.streams() {
        // SAFETY: the stream belongs to the open input; entries are valid until it reads on.
        let pointer = unsafe { stream.as_ptr() } as *mut ffmpeg::ffi::AVStream;
        let count = unsafe { ffmpeg::ffi::avformat_index_get_entries_count(pointer) };
        for index in 0..count {
            let entry = unsafe { ffmpeg::ffi::avformat_index_get_entry(pointer, index).as_ref() };
            let Some(entry) = entry else { continue };
            entries.push(SampleEntry {
                stream: stream.index() as u32,
                offset: entry.pos.max(0) as u64,
                size: entry.size().max(0) as u64,
            });
        }
    }
    Ok(entries)
}

/// The layout pass's output: the bytes written below `keep_below` (the header region: set at
/// the furthest seek, where the muxer skipped over the reserved index), the length of the rest.
#[derive(Debug, Default)]
struct SinkState {
    kept: Vec<u8>,
    len: u64,
}

#[derive(Debug, Default)]
struct HeaderSink {
    state: Arc<Mutex<SinkState>>,
    position: u64,
    furthest_seek: u64,
}

/// Bytes kept past the furthest seek: the `mdat` header and a margin.
const KEEP_PAST_SEEK: u64 = 64 * 1024;

impl Write for HeaderSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let keep_below = self.furthest_seek + KEEP_PAST_SEEK;
        let end = self.position + bytes.len() as u64;
        if self.position < keep_below {
            let kept = (keep_below.min(end) - self.position) as usize;
            let at = self.position as usize;
            if state.kept.len() < at + kept {
                state.kept.resize(at + kept, 0);
            }
            state.kept[at..at + kept].copy_from_slice(&bytes[..kept]);
        }
        self.position = end;
        state.len = state.len.max(end);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for HeaderSink {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let len = self.state.lock().unwrap_or_else(|p| p.into_inner()).len;
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
            SeekFrom::End(delta) => len.checked_add_signed(delta),
        }
        .ok_or_else(|| std::io::Error::other("seek before the start"))?;
        self.position = target;
        self.furthest_seek = self.furthest_seek.max(target);
        Ok(target)
    }
}

/// A file of `total_bytes` whose first bytes are `header` and the rest zeros.
struct HeaderAndZeros {
    header: Vec<u8>,
    total_bytes: u64,
    position: u64,
}

impl Read for HeaderAndZeros {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.total_bytes.saturating_sub(self.position);
        let n = (buf.len() as u64).min(left) as usize;
        for (i, byte) in buf[..n].iter_mut().enumerate() {
            *byte = self
                .header
                .get(self.position as usize + i)
                .copied()
                .unwrap_or(0);
        }
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for HeaderAndZeros {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
            SeekFrom::End(delta) => self.total_bytes.checked_add_signed(delta),
        }
        .ok_or_else(|| std::io::Error::other("seek before the start"))?;
        self.position = target;
        Ok(target)
    }
}

/// Lays out the output of [`super::remux`]'s arguments (see the module docs).
#[allow(clippy::too_many_arguments)]
pub fn lay_out_output(
    source: &Source,
    inputs: &LayoutInputs<'_>,
    info: &MediaInfo,
    settings: &EncodeSettings,
    extras: &ExtrasPlan,
    container: Container,
    name: &Path,
) -> Result<Laid, MediaError> {
    util::init();
    let audio_pts = match inputs.audio {
        Some(path) => super::audio_pts(path)?,
        None => Vec::new(),
    };
    let passes = Passes {
        source,
        video: inputs.video,
        audio: inputs.audio,
        merged_pts: inputs.video_pts,
        audio_pts: &audio_pts,
        info,
        settings,
        extras,
        container,
    };
    lay_out(&passes, inputs, extras, name)
}
