//! The run summary: one finished transcode as plain data. `treemux transcode --json` writes it,
//! `treemux bench` reads it from the runs it measures, `treemux diagram` draws from it; its
//! [`RunOutput`] is also what a Lambda job record keeps of its output.
//!
//! The JSON is the contract (fields named as below; `docs/merge-tree-run.json` is one): read it
//! with `serde_json::from_str::<RunSummary>`, never field by field.

use crate::local::{RenditionReport, StageSeconds, TaskSpan, TranscodeReport};
use crate::media::audio::AudioReport;
use crate::media::convert::SegmentReport;
use crate::media::merge::MergeReport;
use crate::media::package::PackageReport;
use crate::media::probe::MediaInfo;
use crate::media::remux::RemuxReport;
use crate::plan::SegmentPlan;
use crate::settings::EncodeSettings;
use crate::tree::{MergeKind, MergeTree, NodeId};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a finished run wrote, in the terms both runners know at its end: the summary of a local
/// run and the job record of a serverless one carry it alike.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutput {
    /// Bytes of the output file (or object); 0 while the run has not finished.
    #[serde(default)]
    pub output_bytes: u64,
    /// One line per stream, tag or attachment of the source the output does not keep (from
    /// `media::streams::plan`); everything else of the source is in the output.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Every file or object written, when there is more than the one output: each rendition's
    /// file, or every object of an HLS/DASH package (manifest, playlists, init segments,
    /// fragments); `output_bytes` is then their sum. Empty: the one output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputFile>,
    /// The thumbnail files written beside the output (poster, sheets, WebVTT index): local
    /// paths, or `s3://bucket/key` addresses; absent without thumbnails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thumbnails: Vec<OutputFile>,
}

/// One written output: its name (`s3://bucket/key` on AWS) and bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub name: String,
    pub bytes: u64,
}

/// The merge tree's shape: `leaves` = 2^`levels`, of which the first `real_segments` are
/// segments and the rest placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeShape {
    pub levels: u32,
    pub leaves: u32,
    pub real_segments: u32,
}

impl From<MergeTree> for TreeShape {
    fn from(tree: MergeTree) -> Self {
        Self {
            levels: tree.levels,
            leaves: tree.leaf_count(),
            real_segments: tree.real_leaves,
        }
    }
}

impl TreeShape {
    /// The tree itself; `None` when the shape is not one [`MergeTree::new`] makes (a segment
    /// count outside 1..=2^[`crate::tree::MAX_LEVELS`], or levels and leaves that disagree).
    pub fn tree(&self) -> Option<MergeTree> {
        let count_fits = (1..=1 << crate::tree::MAX_LEVELS).contains(&self.real_segments);
        let tree = count_fits.then(|| MergeTree::new(self.real_segments))?;
        (TreeShape::from(tree) == *self).then_some(tree)
    }
}

/// One internal node of the tree: how it was made and, unless it is a placeholder, its report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeMerge {
    pub node: NodeId,
    pub kind: MergeKind,
    pub report: Option<MergeReport>,
}

/// One finished `treemux transcode` run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub input: PathBuf,
    pub output: PathBuf,
    #[serde(flatten)]
    pub result: RunOutput,
    /// The settings the segments were encoded with (`threads`: encoder threads per worker).
    pub settings: EncodeSettings,
    /// Segment workers that ran at once.
    pub workers: usize,
    pub source: MediaInfo,
    pub plan: SegmentPlan,
    pub tree: TreeShape,
    /// One per real segment, in index order.
    pub segments: Vec<SegmentReport>,
    pub merges: Vec<NodeMerge>,
    pub audio: Option<AudioReport>,
    pub remux: RemuxReport,
    /// Wall-clock seconds per stage (encoding, merging and audio overlap).
    pub stages_seconds: StageSeconds,
    /// Every task of the run, for the timeline and the merge-tree pictures.
    pub timeline: Vec<TaskSpan>,
    /// Nodes a `--resume` run found finished and reused.
    #[serde(default)]
    pub reused: Vec<NodeId>,
    /// The scratch directory, when kept.
    pub temp_dir: Option<PathBuf>,
    /// A ladder run's renditions, tallest first (settings, output, bytes); absent without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renditions: Vec<RenditionReport>,
    /// What an HLS/DASH output wrote; absent for a file output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageReport>,
}

impl From<&TranscodeReport> for RunSummary {
    fn from(report: &TranscodeReport) -> Self {
        Self {
            input: report.input.clone(),
            output: report.output.clone(),
            result: RunOutput {
                output_bytes: report.output_bytes,
                warnings: report.warnings.clone(),
                outputs: Vec::new(),
                thumbnails: report
                    .thumbnails
                    .iter()
                    .map(|file| OutputFile {
                        name: file.display().to_string(),
                        bytes: std::fs::metadata(file).map_or(0, |meta| meta.len()),
                    })
                    .collect(),
            },
            settings: report.settings.clone(),
            workers: report.workers,
            source: report.source.clone(),
            plan: report.plan.clone(),
            tree: report.tree.into(),
            segments: report.segments.clone(),
            merges: report
                .merges
                .iter()
                .map(|(node, kind, report)| NodeMerge {
                    node: *node,
                    kind: *kind,
                    report: report.clone(),
                })
                .collect(),
            audio: report.audio.clone(),
            remux: report.remux.clone(),
            stages_seconds: report.stages.clone(),
            timeline: report.timeline.clone(),
            reused: report.reused.clone(),
            temp_dir: report.temp_dir.clone(),
            renditions: report.renditions.clone(),
            package: report.package.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn recorded_run() -> (serde_json::Value, RunSummary) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/merge-tree-run.json");
        let text = std::fs::read_to_string(&path).expect("docs/merge-tree-run.json");
        let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let summary = serde_json::from_str(&text).expect("a RunSummary");
        (json, summary)
    }

    /// The recorded run of the README's picture reads as a summary, with every field it has
    /// (none dropped as unknown), and reads back the same after a write.
    #[test]
    fn a_recorded_run_round_trips() {
        let (json, summary) = recorded_run();
        let written = serde_json::to_value(&summary).expect("serialize");
        let keys = |value: &serde_json::Value| {
            let mut keys: Vec<String> =
                value.as_object().expect("object").keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(&written), keys(&json));
        let read_back: RunSummary = serde_json::from_value(written).expect("read back");
        assert_eq!(read_back, summary);
        assert_eq!(summary.tree.real_segments as usize, summary.segments.len());
        let tree = summary.tree.tree().expect("a tree of 6 segments");
        assert_eq!(tree, MergeTree::new(6));
        // Every pair merge the tree needs, once; the all-placeholder pair is no merge.
        assert_eq!(summary.merges.len() as u32, tree.merges_needed());
    }

    #[test]
    fn a_tree_shape_is_checked_before_it_becomes_a_tree() {
        let six = TreeShape::from(MergeTree::new(6));
        assert_eq!(
            six,
            TreeShape {
                levels: 3,
                leaves: 8,
                real_segments: 6
            }
        );
        assert_eq!(six.tree(), Some(MergeTree::new(6)));
        for shape in [
            TreeShape {
                real_segments: 0,
                ..six
            },
            TreeShape { leaves: 16, ..six },
            TreeShape { levels: 2, ..six },
            TreeShape {
                levels: 21,
                leaves: 0,
                real_segments: (1 << 20) + 1,
            },
        ] {
            assert_eq!(shape.tree(), None, "{shape:?}");
        }
    }

    /// A record without the output's fields (a job record written before they existed, or one
    /// still running) reads as nothing written yet.
    #[test]
    fn a_missing_output_reads_as_empty() {
        let output: RunOutput = serde_json::from_str("{}").expect("RunOutput");
        assert_eq!(output, RunOutput::default());
    }
}
