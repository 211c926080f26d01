//! Split-and-convert: decode the frames of one segment and encode them into a segment file.
//!
//! Frame exact: the decoder starts at the keyframe at or before the segment (the plan's
//! `decode_from`), frames with pts before `start_pts` are decoded and dropped, and decoding stops
//! at the first frame with pts at or after `end_pts`. Decoders emit frames in presentation order,
//! so that first late frame means every frame of the segment has been seen. Timestamps pass
//! through unchanged in the source stream's time base, which keeps VFR timing exact.
//!
//! Segment files are NUT: it stores any codec and keeps each stream's time base exactly
//! (Matroska would round timestamps to milliseconds).
//!
//! The steps, one module each: one attempt's read–decode–encode loop (`pass`), which decoded
//! frames belong to the segment (`gate`), the encoder with the conversions that feed it
//! (`encoder`), the encoders' private options (`options`).

mod encoder;
mod gate;
mod options;
mod pass;

use super::audio::SegmentAudio;
use super::picture::{self, Orientation};
use super::probe::{MediaInfo, VideoInfo};
use super::source::{segment_byte_range, Source};
use super::thumbnail::SegmentThumbnailSpec;
use super::util;
use super::MediaError;
use crate::join::NodeIndex;
use crate::plan::Segment;
use crate::renditions::KeyframeGrid;
use crate::settings::EncodeSettings;
use pass::{encode_pass, PassError};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

/// One rendition a segment is encoded into: its settings and its segment file.
#[derive(Clone, Copy, Debug)]
pub struct Rung<'a> {
    pub settings: &'a EncodeSettings,
    pub output: &'a Path,
}

/// Muxer for segment and merge files.
pub const SEGMENT_MUXER: &str = "nut";

/// What encoding one segment did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentReport {
    pub index: u32,
    pub frames_encoded: u64,
    /// Frames decoded before the segment's first frame and dropped.
    pub lead_in_dropped: u64,
    /// Frames whose timestamp had to be moved forward to keep timestamps increasing.
    pub timestamps_adjusted: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// One segment encoded into every rung: rung 0's report, and each rung's [`NodeIndex`] (in
/// rung order), built from the packets as they were written: equal to
/// [`super::merge::describe_segment`] of the committed file, without reading it back.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedSegment {
    pub report: SegmentReport,
    pub indexes: Vec<NodeIndex>,
}

/// The encoded frame size for a source video: the requested height as displayed (width
/// following the displayed aspect), or the source size; both rounded down to even numbers
/// because 4:2:0 chroma needs them. Width and height are swapped when `settings.autorotate`
/// turns a quarter-rotated source upright.
pub fn output_size(video: &VideoInfo, settings: &EncodeSettings) -> (u32, u32) {
    let orientation = if settings.autorotate {
        Orientation::from_rotation_degrees(video.rotation_degrees).unwrap_or(Orientation::Upright)
    } else {
        Orientation::Upright
    };
    picture::displayed_size(video, settings, orientation)
}

/// Encodes segment `segment` of the source `info` describes into `output` (NUT), frame exact.
///
/// `on_frame` is called after each encoded frame with the count so far (for progress display);
/// when it breaks, the encode stops, its partial file is removed and the result is
/// [`MediaError::Interrupted`].
/// The output appears only when complete; on error nothing is left at `output`.
///
/// The source is read from `source` (the bytes `info` was probed from: the file, or ranged
/// reads of an upload); read-ahead is bounded by the segment's bytes ([`segment_byte_range`]).
///
/// With `audio`, the worker also copies its share of every audio track out of the packets it
/// reads ([`SegmentAudio`]), reading on past its last video packet (video skipped) to the last
/// audio sample of its share; the piece is committed before the segment, so a committed
/// segment always has its audio beside it (unless the share could not be placed).
pub fn convert_segment_from(
    source: &Source,
    info: &MediaInfo,
    segment: &Segment,
    settings: &EncodeSettings,
    output: &Path,
    audio: Option<&SegmentAudio>,
    on_frame: &(dyn Fn(u64) -> ControlFlow<()> + Sync),
) -> Result<SegmentReport, MediaError> {
    convert_segment_renditions(
        source,
        info,
        segment,
        &[Rung { settings, output }],
        None,
        audio,
        None,
        on_frame,
    )
    .map(|encoded| encoded.report)
}

/// As [`convert_segment_from`], into every rung of `rungs` from one decode: each frame the
/// segment owns is decoded once and sent to one encoder per rung (each scaling to its own
/// size). Every rung's segment starts with a keyframe at the segment's first frame, and with
/// `keyframes` also at the first frame of each slot of that grid (so keyframes fall on the same
/// frames in every rung). The report is rung 0's (`bytes` its file's); the files are committed
/// together, rung 0's last, and only when every rung holds every frame; with them comes each
/// rung's index ([`EncodedSegment`]).
///
/// With `thumbnails`, the segment's planned tiles and poster are taken from the decoded frames
/// (upright, at the displayed aspect) and written before the segment files are committed.
#[allow(clippy::too_many_arguments)]
pub fn convert_segment_renditions(
    source: &Source,
    info: &MediaInfo,
    segment: &Segment,
    rungs: &[Rung<'_>],
    keyframes: Option<&KeyframeGrid>,
    audio: Option<&SegmentAudio>,
    thumbnails: Option<&SegmentThumbnailSpec>,
    on_frame: &(dyn Fn(u64) -> ControlFlow<()> + Sync),
) -> Result<EncodedSegment, MediaError> {
    util::init();
    let hint = segment_byte_range(info, segment);
    let reading = source.clone().with_hint(hint.or_else(|| source.hint()));
    let started = Instant::now();
    let seek = segment
        .decode_from
        .filter(|point| point.pts > info.video.first_pts);
    let mut report = match encode_pass(
        &reading,
        info,
        segment,
        rungs,
        keyframes,
        seek.map(|p| seek_timestamp(info, p)),
        audio,
        thumbnails,
        on_frame,
    ) {
        // The demuxer landed after the cut (an imprecise index): decode from the start instead.
        Err(PassError::SeekOvershoot) => encode_pass(
            &reading, info, segment, rungs, keyframes, None, audio, thumbnails, on_frame,
        ),
        other => other,
    }
    .map_err(|error| match error {
        PassError::Media(error) => error,
        PassError::SeekOvershoot => unreachable!("the second pass never seeks"),
    })?;
    report.report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The timestamp to seek to for keyframe `point`. Demuxers index keyframes by decoding
/// timestamp, except the MP4/MOV one, which takes a presentation timestamp and offsets it onto
/// its decode timeline itself: given the dts there, it lands a whole GOP early (decoded and
/// dropped, and its bytes fetched, for nothing).
fn seek_timestamp(info: &MediaInfo, point: crate::plan::SeekPoint) -> i64 {
    if info.container.starts_with("mov,") {
        point.pts
    } else {
        point.dts.unwrap_or(point.pts)
    }
}
