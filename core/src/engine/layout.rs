//! The scratch layout of one job (see the engine's module docs): where each file lives, what
//! "done" means on disk, and what a resumed run or a repeated task finds finished.

use crate::error::Error;
use crate::join::NodeIndex;
use crate::media::audio::AudioReport;
use crate::tree::{MergeTree, NodeId};
use serde::Serialize;
use std::path::{Path, PathBuf};

use super::JobSpec;

/// Where a job's scratch files live (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScratchLayout {
    pub dir: PathBuf,
    /// Renditions the job encodes (1 without a ladder): rung 0's files are this directory's,
    /// rung `k`'s those of [`Self::rendition`]`(k)`.
    renditions: u32,
    /// Where rung 0's segment files are, when not in `dir` ([`Self::with_segments_in`]).
    segment_dir: Option<PathBuf>,
}

impl ScratchLayout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            renditions: 1,
            segment_dir: None,
        }
    }

    /// The same layout with rung 0's segment files in `dir` instead of beside the rest: a task
    /// of the Lambda runner encodes or reads them in its own local directory, and between tasks
    /// they are kept elsewhere (a [`SegmentKeeper`](super::SegmentKeeper) other than
    /// [`KeptInScratch`](super::KeptInScratch)). Everything else stays where it was.
    pub fn with_segments_in(mut self, dir: impl Into<PathBuf>) -> Self {
        self.segment_dir = Some(dir.into());
        self
    }

    /// The layout of a job encoding `count` renditions (see [`JobSpec::rungs`]).
    pub fn with_renditions(mut self, count: usize) -> Self {
        self.renditions = count.max(1) as u32;
        self
    }

    /// Renditions the job encodes.
    pub fn renditions(&self) -> u32 {
        self.renditions
    }

    /// Where rung `rung`'s segments and node indexes live: this layout for rung 0, a
    /// `rendition-<rung>` directory beside its files for the others. A node is done when rung
    /// 0's index is there, which is written after every other rung's.
    pub fn rendition(&self, rung: u32) -> ScratchLayout {
        if rung == 0 {
            return self.clone();
        }
        ScratchLayout::new(self.dir.join(format!("rendition-{rung}")))
    }

    /// The encoded video of segment `index`.
    pub fn segment(&self, index: u32) -> PathBuf {
        self.segment_dir
            .as_ref()
            .unwrap_or(&self.dir)
            .join(Self::segment_name(index))
    }

    /// The file name of segment `index`'s encoded video, wherever it is kept.
    pub fn segment_name(index: u32) -> String {
        format!("node-0-{index}.nut")
    }

    /// The index of a finished node; present only when the node is done.
    pub fn index(&self, node: NodeId) -> PathBuf {
        self.dir
            .join(format!("node-{}-{}.json", node.level, node.index))
    }

    pub fn audio(&self) -> PathBuf {
        self.dir.join("audio.nut")
    }

    /// Segment `index`'s share of the audio, when the segments carry it.
    pub fn segment_audio(&self, index: u32) -> PathBuf {
        self.dir.join(format!("audio-{index}.nut"))
    }

    /// Segment `index`'s thumbnail tiles (raw planes, in order), when it takes any.
    pub fn segment_thumbnails(&self, index: u32) -> PathBuf {
        self.dir.join(format!("thumbnails-{index}.raw"))
    }

    /// The poster (JPEG), written by the segment holding its frame.
    pub fn poster(&self) -> PathBuf {
        self.dir.join("poster.jpg")
    }

    /// Where the root composes the thumbnail files (named as beside the output).
    pub fn thumbnail_dir(&self) -> PathBuf {
        self.dir.join("thumbnails")
    }

    /// The [`AudioReport`] of the extraction that wrote [`Self::audio`]: a repeated task needs it
    /// to know the audio is there and what it holds.
    pub fn audio_report(&self) -> PathBuf {
        self.dir.join("audio.json")
    }

    /// Audio track `track`'s bytes, as the root's layout pass copied them (its samples in
    /// order), for filling the output by parts.
    pub fn audio_copy(&self, track: usize) -> PathBuf {
        self.dir.join(format!("audio-track-{track}.raw"))
    }

    /// The output's layout ([`crate::output_layout::OutputLayout`]); present only when the
    /// layout is done (written after [`Self::output_header`]).
    pub fn output_layout(&self) -> PathBuf {
        self.dir.join("output-layout.json")
    }

    /// The output's header bytes, as the layout pass muxed them.
    pub fn output_header(&self) -> PathBuf {
        self.dir.join("output-header.bin")
    }

    /// The index of `node` if it is done.
    pub fn finished(&self, node: NodeId) -> Option<NodeIndex> {
        let json = std::fs::read(self.index(node)).ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// The audio a previous attempt finished: its file exists and its report reads back.
    pub fn finished_audio(&self) -> Option<AudioReport> {
        if !self.audio().is_file() {
            return None;
        }
        let json = std::fs::read(self.audio_report()).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// The bytes the output will have at most, before its index: the segments and the audio, for
/// sizing a multipart upload. Precondition: the root is done.
pub fn media_bytes(job: &JobSpec, layout: &ScratchLayout) -> u64 {
    let video = layout
        .finished(job.tree.root())
        .map_or(0, |index| index.bytes);
    let audio = std::fs::metadata(layout.audio()).map_or(0, |meta| meta.len());
    video + audio
}

/// Every segment file and node index in `layout` that a resumed run or a repeated task finds,
/// as the frontier to climb on from: finished nodes without a finished ancestor, and the leaves
/// they cover (not encoded again). Half-written (`.partial`) files are removed.
pub fn scan_finished(
    tree: &MergeTree,
    layout: &ScratchLayout,
) -> (Vec<NodeId>, std::collections::BTreeSet<u32>) {
    if let Ok(entries) = std::fs::read_dir(&layout.dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".partial") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let done = |node: NodeId| layout.index(node).is_file();
    let has_finished_ancestor = |mut node: NodeId| {
        while let Some((parent, _)) = tree.parent(node) {
            if done(parent) {
                return true;
            }
            node = parent;
        }
        false
    };
    let mut nodes: Vec<NodeId> = (0..tree.leaf_count()).map(NodeId::leaf).collect();
    nodes.extend(tree.internal_nodes());
    let frontier = nodes
        .into_iter()
        .filter(|&node| done(node) && !has_finished_ancestor(node))
        .collect();
    let mut covered = std::collections::BTreeSet::new();
    for leaf in 0..tree.real_leaves {
        let mut node = NodeId::leaf(leaf);
        loop {
            if done(node) {
                covered.insert(leaf);
                break;
            }
            match tree.parent(node) {
                Some((parent, _)) => node = parent,
                None => break,
            }
        }
    }
    (frontier, covered)
}

/// Writes `value` as JSON to `target`, complete or not at all (renamed into place from a
/// private name of this call's own, so a duplicate task writing the same file cannot truncate it).
pub(crate) fn write_json_atomically<T: Serialize>(target: &Path, value: &T) -> Result<(), Error> {
    Ok(crate::atomic_file::write_atomically(
        target,
        &json_for(target, value)?,
    )?)
}

/// `value` as the JSON to be written at `target` (named in the error).
fn json_for<T: Serialize>(target: &Path, value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|error| Error::Io {
        path: target.to_owned(),
        source: error.into(),
    })
}

/// As [`write_json_atomically`], unless `target` exists: true when this call wrote it.
pub(crate) fn write_json_unless_exists<T: Serialize>(
    target: &Path,
    value: &T,
) -> Result<bool, Error> {
    Ok(crate::atomic_file::write_atomically_unless_exists(
        target,
        &json_for(target, value)?,
    )?)
}
