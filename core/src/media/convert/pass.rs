//! One attempt at a segment: open and seek the source, decode the segment's packets (flushing
//! once all its own are in), encode the frames the [`FrameGate`] admits, copy the audio share,
//! check the frame count, commit.

use super::encoder::SegmentEncoder;
use super::gate::{Admit, FrameGate};
use super::{EncodedSegment, Rung, SegmentReport, SEGMENT_MUXER};
use crate::atomic_file::AtomicFile;
use crate::media::audio::{SegmentAudio, SegmentAudioCopy};
use crate::media::probe::MediaInfo;
use crate::media::source::{self, ReadFailure, Source};
use crate::media::thumbnail::{SegmentThumbnailSpec, SegmentThumbnails};
use crate::media::util;
use crate::media::MediaError;
use crate::plan::Segment;
use crate::renditions::KeyframeGrid;
use crate::settings::EncodeSettings;
use ffmpeg_next as ffmpeg;
use std::ops::ControlFlow;
use std::path::Path;

/// Why one attempt ended without a segment.
pub(super) enum PassError {
    /// The demuxer landed after the cut (an imprecise index): decode from the start instead.
    SeekOvershoot,
    Media(MediaError),
}

impl From<MediaError> for PassError {
    fn from(error: MediaError) -> Self {
        Self::Media(error)
    }
}

/// One attempt: decode from `seek_to` (a dts; `None` = the start of the file) and encode each
/// decoded frame into every rung (and copy `audio`'s share of the audio, and take the
/// `thumbnails` the segment holds from the frames as decoded). Keyframes are forced
/// where `keyframes` says, so every rung has them at the same frames. Returns rung 0's report
/// (every rung encodes the same frames) and each rung's index, built as its file was written.
#[allow(clippy::too_many_arguments)]
pub(super) fn encode_pass(
    reading: &Source,
    info: &MediaInfo,
    segment: &Segment,
    rungs: &[Rung<'_>],
    keyframes: Option<&KeyframeGrid>,
    seek_to: Option<i64>,
    audio: Option<&SegmentAudio>,
    thumbnails: Option<&SegmentThumbnailSpec>,
    on_frame: &(dyn Fn(u64) -> ControlFlow<()> + Sync),
) -> Result<EncodedSegment, PassError> {
    let (source, video) = (reading.name(), &info.video);
    let (mut input, failure) = source::open(reading)?;
    let stream_index = video.stream_index;
    let decode_failed = |error: ffmpeg::Error| MediaError::Decode {
        path: source.to_owned(),
        codec: video.codec.clone(),
        source: error,
    };
    let first = rungs.first().ok_or_else(|| MediaError::Unsupported {
        path: source.to_owned(),
        reason: "a segment needs at least one rendition to encode".into(),
    })?;
    let output = first.output;
    let mut decoder = open_decoder(&input, info, first.settings, source)?;
    let read_failed = |error| failure.read_error(reading, error);
    // Video packets before this repaired dts are read and dropped without decoding.
    let mut skip_before = match seek_to {
        Some(timestamp) => seek(&mut input, info, timestamp).map_err(read_failed)?,
        None => None,
    };
    let mut repairer = info.timestamp_repair.repairer();
    let mut audio_copy = match audio {
        Some(spec) => SegmentAudioCopy::create(spec, info, &input)?,
        None => None,
    };

    let mut thumbnails = thumbnails.map(|spec| SegmentThumbnails::new(spec, video));
    let mut outputs = Vec::with_capacity(rungs.len());
    for rung in rungs {
        let partial = AtomicFile::create(rung.output).map_err(MediaError::from)?;
        let mut muxer = util::open_output(&partial, SEGMENT_MUXER)?;
        let encoder = SegmentEncoder::open(
            segment.index,
            info,
            rung.settings,
            &mut muxer,
            partial.target(),
            keyframes.is_some(),
        )?;
        outputs.push((partial, muxer, encoder));
    }

    let mut frame = ffmpeg::frame::Video::empty();
    let mut gate = FrameGate::new(segment, video.first_pts, seek_to.is_some(), source);
    let mut finished = false;
    let mut last_key_slot = None;
    // Returns true once a frame at or past the segment's end has been seen.
    let mut handle = |frame: &mut ffmpeg::frame::Video,
                      gate: &mut FrameGate,
                      outputs: &mut Outputs|
     -> Result<bool, PassError> {
        let pts = match gate.admit(frame)? {
            Admit::Drop => return Ok(false),
            Admit::End => return Ok(true),
            Admit::Encode(pts) => pts,
        };
        // Before the encoders: they may crop the frame's declared size.
        if let Some(thumbnails) = thumbnails.as_mut() {
            thumbnails.offer(frame, pts)?;
        }
        // A keyframe at the first frame of each slot of the grid (the segment's first frame
        // is one anyway: every encoder starts there).
        let key = keyframes.is_some_and(|grid| {
            let slot = grid.slot(pts);
            let new = last_key_slot.is_some_and(|last| slot != last);
            last_key_slot = Some(slot);
            new
        });
        for (_, muxer, encoder) in outputs.iter_mut() {
            encoder.send(frame, pts, key, muxer)?;
        }
        let frames = outputs.first().map_or(0, |(_, _, encoder)| encoder.frames);
        if on_frame(frames).is_break() {
            return Err(MediaError::Interrupted {
                path: output.to_owned(),
            }
            .into());
        }
        Ok(false)
    };

    // Packets of the segment's own frames fed so far: once all are in, the decoder is flushed
    // instead of reading on, so the worker does not fetch the next segment's first packets.
    // (Packets without a pts cannot be counted; those segments read on as before.)
    let mut own_packets_fed = 0u64;
    'read: loop {
        // A fresh packet per read: `Packet::read` does not release the previous one.
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(error) => return Err(read_failed(error).into()),
        }
        if packet.stream() != stream_index {
            if let Some(copy) = audio_copy.as_mut() {
                copy.offer(packet)?;
            }
            continue;
        }
        repairer.apply(&mut packet);
        if let Some(keyframe) = skip_before {
            if packet
                .dts()
                .or(packet.pts())
                .is_some_and(|dts| dts < keyframe)
            {
                continue;
            }
            skip_before = None;
        }
        let own = packet.pts().is_some_and(|pts| {
            pts >= segment.start_pts.unwrap_or(info.video.first_pts) && segment.contains(pts)
        }) && !util::is_discarded(&packet);
        match decoder.send_packet(&packet) {
            Ok(()) => {
                gate.fed(&packet);
                own_packets_fed += u64::from(own);
            }
            // A damaged packet: skip it like the ffmpeg CLI does; the frame count check below
            // turns any frame it cost into an error.
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(error) => return Err(decode_failed(error).into()),
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            if handle(&mut frame, &mut gate, &mut outputs)? {
                finished = true;
                break 'read;
            }
        }
        if own_packets_fed == segment.frames {
            break;
        }
    }
    if !finished {
        decoder.send_eof().map_err(decode_failed)?;
        while decoder.receive_frame(&mut frame).is_ok() {
            if handle(&mut frame, &mut gate, &mut outputs)? {
                break;
            }
        }
    }
    let mut finished_files = Vec::with_capacity(outputs.len());
    for (partial, mut muxer, mut encoder) in outputs {
        let frames_encoded = encoder.finish(&mut muxer)?;
        muxer.write_trailer().map_err(|source| MediaError::Write {
            path: partial.target().to_owned(),
            source,
        })?;
        drop(muxer);
        check_frame_count(info, segment, source, frames_encoded)?;
        finished_files.push((partial, frames_encoded, encoder.into_index()?));
    }
    if let Some(copy) = audio_copy.as_mut() {
        read_rest_of_share(&mut input, copy, reading, &failure)?;
    }
    let (first_partial, frames_encoded, _) = finished_files
        .first()
        .expect("one finished file per rung, and at least one rung");
    let frames_encoded = *frames_encoded;
    let bytes = std::fs::metadata(first_partial.path())
        .map_err(MediaError::io(first_partial.target()))?
        .len();
    // Thumbnails and audio before the segment: a committed segment has them beside it.
    if let Some(thumbnails) = thumbnails {
        thumbnails.commit(source)?;
    }
    if let Some(copy) = audio_copy {
        copy.commit()?;
    }
    // Rung 0 last: its file is what a repeated task looks for first.
    let mut indexes = Vec::with_capacity(finished_files.len());
    for (partial, _, index) in finished_files.into_iter().rev() {
        partial.commit().map_err(MediaError::from)?;
        indexes.push(index);
    }
    indexes.reverse();
    Ok(EncodedSegment {
        report: SegmentReport {
            index: segment.index,
            frames_encoded,
            lead_in_dropped: gate.dropped,
            timestamps_adjusted: gate.adjusted,
            bytes,
            seconds: 0.0,
        },
        indexes,
    })
}

/// Each rung's file as it is written: the partial file, its muxer, its encoder.
type Outputs = Vec<(AtomicFile, ffmpeg::format::context::Output, SegmentEncoder)>;

/// The video decoder of `info`'s stream in `input` (named `source` in errors), with frame
/// threads as the settings ask.
fn open_decoder(
    input: &ffmpeg::format::context::Input,
    info: &MediaInfo,
    settings: &EncodeSettings,
    source: &Path,
) -> Result<ffmpeg::decoder::Video, MediaError> {
    let video = &info.video;
    let stream_index = video.stream_index;
    let decode_failed = |error: ffmpeg::Error| MediaError::Decode {
        path: source.to_owned(),
        codec: video.codec.clone(),
        source: error,
    };
    let stream = input
        .stream(stream_index)
        .ok_or_else(|| MediaError::Unsupported {
            path: source.to_owned(),
            reason: format!("video stream #{stream_index} is gone"),
        })?;
    let mut context =
        ffmpeg::codec::Context::from_parameters(stream.parameters()).map_err(decode_failed)?;
    context.set_threading(ffmpeg::codec::threading::Config {
        kind: ffmpeg::codec::threading::Type::Frame,
        count: settings.threads.max(1) as usize,
        ..Default::default()
    });
    context.decoder().video().map_err(decode_failed)
}

/// Seeks `input` for a pass that decodes from `timestamp` (see `seek_timestamp`). Returns the
/// repaired dts before which video packets are to be read and dropped, when the timeline has
/// jumps and the seek went to the start of the stretch holding the keyframe instead.
fn seek(
    input: &mut ffmpeg::format::context::Input,
    info: &MediaInfo,
    timestamp: i64,
) -> Result<Option<i64>, ffmpeg::Error> {
    let stream_index = info.video.stream_index;
    if info.timestamp_repair.is_empty() {
        util::seek_to_keyframe_before(input, stream_index, timestamp)?;
        return Ok(None);
    }
    // A timeline with jumps cannot be searched by timestamp (the demuxer's search assumes
    // they grow through the file): start where the stretch holding the keyframe starts,
    // then read up to the keyframe. Reading packets costs little next to decoding them.
    if let Some(position) = info
        .timestamp_repair
        .start_of_stretch(stream_index, timestamp)
    {
        util::seek_to_byte(input, position)?;
    }
    Ok(Some(timestamp))
}

/// The rest of this segment's audio share lies after its last video packet: reads on with every
/// other stream skipped (the MP4/MOV demuxer then reads the audio samples only) until each
/// track's share is in.
fn read_rest_of_share(
    input: &mut ffmpeg::format::context::Input,
    copy: &mut SegmentAudioCopy,
    reading: &Source,
    failure: &ReadFailure,
) -> Result<(), MediaError> {
    util::discard_all_but(input, copy.streams());
    while !copy.complete() {
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(error) => return Err(failure.read_error(reading, error)),
        }
        copy.offer(packet)?;
    }
    Ok(())
}

/// Fails when the pass encoded another number of frames than the segment lists (a damaged
/// stretch of the source).
fn check_frame_count(
    info: &MediaInfo,
    segment: &Segment,
    source: &Path,
    frames_encoded: u64,
) -> Result<(), MediaError> {
    let video = &info.video;
    if frames_encoded == segment.frames {
        return Ok(());
    }
    let seconds = |pts: i64| video.time_base.seconds(pts - video.first_pts);
    Err(MediaError::FrameCount {
        path: source.to_owned(),
        segment: segment.index,
        from_seconds: seconds(segment.start_pts.unwrap_or(video.first_pts)),
        to_seconds: seconds(segment.end_pts.unwrap_or(video.end_pts)),
        expected: segment.frames,
        got: frames_encoded,
    })
}
