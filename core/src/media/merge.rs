//! The video side of merging: what a segment file holds (its [`NodeIndex`]) and, for the root,
//! one packet source over all segment files in order.
//!
//! No merge copies video. A merge joins its children's indexes ([`NodeIndex::join`], which
//! checks that their streams are interchangeable and their timestamps continuous); the video
//! bytes are read once, segment after segment, by the final mux ([`LeafVideo`]).
//!
//! Segments keep the source's presentation timestamps, so each segment's timestamps already
//! follow the previous one's: nothing is offset. Decoding timestamps are not copied: NUT does not
//! store them, and with B-frames each segment's first dts would reach back before the previous
//! segment's last. The final mux derives them afresh from the pts of the whole joined sequence
//! ([`crate::timestamps::decode_timestamps`]), which keeps decode order and every pts intact.

use super::segment_index::{stream_facts, SegmentIndexer, SegmentPacket};
use super::util;
use super::MediaError;
use crate::join::NodeIndex;
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What one merge did: it wrote an index only; `packets` and `bytes` are the video the merged
/// node covers (read once, later, by the final mux), not bytes written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeReport {
    pub packets: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Packet flags other than "keyframe" that an MP4 sample cannot carry from an index.
fn has_other_flags(packet: &ffmpeg::Packet) -> bool {
    !(packet.flags() - ffmpeg::packet::Flags::KEY).is_empty()
}

/// The index of segment `leaf`, read from its file (demuxing only: headers, packet timestamps
/// and, for the output's layout, each packet's size as an MP4 sample; no decoding).
///
/// A freshly encoded segment's index is built as its packets are written (the convert pass), so
/// this read of a whole segment is only for a committed file without an index: scratch from an
/// older version, or an attempt that died between committing the file and recording its index.
pub fn describe_segment(path: &Path, leaf: u32) -> Result<NodeIndex, MediaError> {
    util::init();
    let mut input = util::open_input(path)?;
    let stream = input.stream(0).ok_or_else(|| MediaError::Unsupported {
        path: path.to_owned(),
        reason: "the segment file has no stream".into(),
    })?;
    let (facts, extradata) = stream_facts(&stream);
    let mut indexer = SegmentIndexer::new(leaf, facts, &extradata);
    while let Some(packet) = util::read_packet(path, &mut input)? {
        indexer.record(SegmentPacket {
            pts: packet.pts(),
            data: packet.data().unwrap_or_default(),
            key: packet.is_key(),
            other_flags: has_other_flags(&packet),
        });
    }
    indexer.finish(path)
}

/// Joins two neighbouring nodes' indexes; the error names the two nodes' files.
pub fn join_indexes(
    left: &NodeIndex,
    left_name: &Path,
    right: &NodeIndex,
    right_name: &Path,
) -> Result<NodeIndex, MediaError> {
    left.join(right).map_err(|reason| MediaError::Incompatible {
        left: left_name.to_owned(),
        right: right_name.to_owned(),
        reason: reason.to_string(),
    })
}

/// The video packets of several segment files as one stream: every file's packets in order,
/// with their pts as written (the files share one time base, checked on open).
pub(crate) struct LeafVideo {
    paths: Vec<PathBuf>,
    /// The open file and its position in `paths`.
    current: Option<(usize, ffmpeg::format::context::Input)>,
    time_base: ffmpeg::Rational,
    parameters: ffmpeg::codec::Parameters,
}

impl std::fmt::Debug for LeafVideo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafVideo")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl LeafVideo {
    /// Opens the first of `paths` (at least one, all of the same stream).
    pub(crate) fn open(paths: &[PathBuf]) -> Result<Self, MediaError> {
        let first = paths.first().ok_or_else(|| MediaError::Unsupported {
            path: PathBuf::new(),
            reason: "no segment files to mux".into(),
        })?;
        let input = util::open_input(first)?;
        let stream = input.stream(0).ok_or_else(|| MediaError::Unsupported {
            path: first.clone(),
            reason: "the segment file has no stream".into(),
        })?;
        let (time_base, parameters) = (stream.time_base(), stream.parameters());
        Ok(Self {
            paths: paths.to_vec(),
            current: Some((0, input)),
            time_base,
            parameters,
        })
    }

    /// The stream's codec parameters (the first segment's: all are the same, as the merges
    /// checked).
    pub(crate) fn parameters(&self) -> &ffmpeg::codec::Parameters {
        &self.parameters
    }

    pub(crate) fn time_base(&self) -> ffmpeg::Rational {
        self.time_base
    }

    /// The first file's path, for errors about the video as a whole.
    pub(crate) fn first_path(&self) -> &Path {
        &self.paths[0]
    }

    /// Every packet's pts in decode order over all files (a separate read of each).
    pub(crate) fn all_pts(&self) -> Result<Vec<i64>, MediaError> {
        let mut pts = Vec::new();
        for path in &self.paths {
            let mut input = util::open_input(path)?;
            let time_base = input.stream(0).map(|s| s.time_base());
            if time_base != Some(self.time_base) {
                return Err(MediaError::Incompatible {
                    left: self.paths[0].clone(),
                    right: path.clone(),
                    reason: "time bases differ".into(),
                });
            }
            pts.extend(util::read_packet_pts(path, &mut input)?);
        }
        Ok(pts)
    }

    /// The next packet, from this file or the next one; `None` after the last file's last.
    pub(crate) fn next_packet(&mut self) -> Result<Option<ffmpeg::Packet>, MediaError> {
        loop {
            let Some((position, input)) = self.current.as_mut() else {
                return Ok(None);
            };
            if let Some(packet) = util::read_packet(&self.paths[*position], input)? {
                return Ok(Some(packet));
            }
            let next = *position + 1;
            self.current = match self.paths.get(next) {
                Some(path) => Some((next, util::open_input(path)?)),
                None => None,
            };
        }
    }
}
