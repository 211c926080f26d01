//! The one engine both runners drive: job preparation with every check, the scratch layout,
//! "produce a segment", "produce a pair", "extract the audio", "finish the root", what "already
//! done" means for each, and where the crash points sit.
//!
//! The local runner (`local.rs`, a thread pool and the in-memory state store) and the Lambda
//! handlers (one task per invocation, DynamoDB) call these same functions, so they cannot drift:
//! the same checks refuse the same jobs, the same files mean the same progress, and a repeated
//! task (a retry, a duplicate delivery, a `--resume`) finds the same work done.
//!
//! # Scratch layout (one directory per job)
//! - `node-0-<i>.nut`: segment `i`, written once by [`produce_segment`].
//! - `node-<level>-<index>.json`: the [`NodeIndex`] of a finished node (a segment, or a merge
//!   of two). Its presence is what "done" means; it is written (renamed into place) last.
//! - `audio.nut` and `audio.json`: every audio track, extracted once, and its report.
//!
//! No merge writes video and no file is deleted before the job ends: segments are read once,
//! in order, by [`finish_root`], which writes the output once. Scratch then holds the segments
//! and the audio only, about the output's size.

use crate::error::Error;
use crate::extras::ExtrasPlan;
use crate::fault::{CrashPlan, CrashPoint};
use crate::join::NodeIndex;
use crate::media::audio::{self, AudioAction, AudioReport};
use crate::media::convert::{self, SegmentReport};
use crate::media::merge::{self, MergeReport};
use crate::media::probe::MediaInfo;
use crate::media::remux::{self, MuxTarget, RemuxReport};
use crate::media::source::Source;
use crate::media::{streams, MediaError};
use crate::output_plan::{self, PartPlan};
use crate::plan::{
    estimate_frame_costs, plan_segments_by_cost, PlanError, PlanOptions, SegmentPlan,
};
use crate::settings::{Container, EncodeSettings, RateControl};
use crate::state::StateStore;
use crate::steps::{after_node_finished, NextStep};
use crate::tree::{MergeKind, MergeTree, NodeId};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where a job's scratch files live (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScratchLayout {
    pub dir: PathBuf,
}

impl ScratchLayout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The encoded video of segment `index`.
    pub fn segment(&self, index: u32) -> PathBuf {
        self.dir.join(format!("node-0-{index}.nut"))
    }

    /// The index of a finished node; present only when the node is done.
    pub fn index(&self, node: NodeId) -> PathBuf {
        self.dir
            .join(format!("node-{}-{}.json", node.level, node.index))
    }

    pub fn audio(&self) -> PathBuf {
        self.dir.join("audio.nut")
    }

    /// The [`AudioReport`] of the extraction that wrote [`Self::audio`]: a repeated task needs it
    /// to know the audio is there and what it holds.
    pub fn audio_report(&self) -> PathBuf {
        self.dir.join("audio.json")
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

/// Writes `value` as JSON to `target`, complete or not at all (renamed into place from a
/// private name of this call's own, so a duplicate task writing the same file cannot truncate it).
fn write_json_atomically<T: Serialize>(target: &Path, value: &T) -> Result<(), Error> {
    let json = serde_json::to_vec(value).map_err(|error| Error::Io {
        path: target.to_owned(),
        source: error.into(),
    })?;
    Ok(crate::atomic_file::write_atomically(target, &json)?)
}

/// A job ready to run: the source's probe, the settings for its container, the plan, the merge
/// tree, the audio plan and what the output keeps of everything else.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSpec {
    pub info: MediaInfo,
    pub container: Container,
    /// Encoder settings for the container; `threads` as the caller gave it.
    pub settings: EncodeSettings,
    pub plan: SegmentPlan,
    pub tree: MergeTree,
    pub audio_actions: Vec<AudioAction>,
}

impl JobSpec {
    /// What the output keeps of subtitles, cover art, chapters and tags (and warnings for the
    /// rest): decided from the probe, the same in every runner.
    pub fn extras(&self) -> ExtrasPlan {
        streams::plan(&self.info, self.container)
    }

    /// One line per thing of the source the output does not keep.
    pub fn warnings(&self) -> Vec<String> {
        self.extras()
            .warnings
            .into_iter()
            .chain(self.info.video.hdr.not_kept_warning(self.settings.codec))
            .collect()
    }
}

/// Checks a probed source against the job's settings and plans it: the container can hold the
/// codec, the settings are valid, the audio has a plan, the frame size suits the encoder and no
/// upscaling happens unless allowed, and the frames can be cut into segments.
///
/// Errors name `output` for what concerns the output (container, settings) and `input` for
/// what concerns the source, in the user's terms.
pub fn prepare_job(
    info: MediaInfo,
    input: &Path,
    output: &Path,
    container: Container,
    settings: &EncodeSettings,
    plan_options: &PlanOptions,
) -> Result<JobSpec, Error> {
    if !container.allows(settings.codec) {
        return Err(Error::request(
            output,
            format!(
                "a .{} file cannot hold {} video",
                container.muxer_name(),
                settings.codec
            ),
        ));
    }
    settings
        .validate()
        .map_err(|problem| Error::request(output, problem))?;
    let audio_actions = audio::plan_audio(&info, container, output)?;
    let job_settings = settings.for_container(container);
    let (width, height) = convert::output_size(&info.video, &job_settings);
    // The source's height as it would be encoded without --height (whatever orientation and
    // rounding output_size applies).
    let (_, source_height) = convert::output_size(
        &info.video,
        &EncodeSettings {
            height: None,
            ..job_settings.clone()
        },
    );
    settings
        .check_upscale(height, source_height)
        .map_err(|problem| Error::request(input, problem))?;
    let min = settings.codec.min_dimension();
    if width < min || height < min {
        return Err(Error::request(
            input,
            format!(
                "{} needs frames of at least {min}x{min}; this video would be {width}x{height}",
                settings.codec.encoder_name()
            ),
        ));
    }
    let plan = plan_for(&info, plan_options).map_err(|source| Error::Plan {
        path: input.to_owned(),
        source,
    })?;
    let tree = MergeTree::new(plan.segments.len() as u32);
    Ok(JobSpec {
        info,
        container,
        settings: job_settings,
        plan,
        tree,
        audio_actions,
    })
}

/// The source's segment plan, balanced by estimated encode cost where the probe gave every
/// frame's packet size ([`frame_costs`]), else by frame count. What `transcode` runs and
/// `probe --segments` shows.
pub fn plan_for(info: &MediaInfo, options: &PlanOptions) -> Result<SegmentPlan, PlanError> {
    let costs = frame_costs(info);
    plan_segments_by_cost(
        &info.frames,
        costs.as_deref(),
        info.video.time_base,
        info.video.duration_seconds(),
        options,
    )
}

/// Each frame's estimated encode cost ([`estimate_frame_costs`]) from its packet's size in the
/// source, matched by pts; `None` when a frame's packet has no known position and size (a
/// container without byte positions) or two packets share a pts.
pub fn frame_costs(info: &MediaInfo) -> Option<Vec<u64>> {
    let mut size_by_pts = std::collections::HashMap::with_capacity(info.video_packets_at.len());
    for packet in &info.video_packets_at {
        if size_by_pts.insert(packet.pts, packet.size).is_some() {
            return None;
        }
    }
    let sizes: Option<Vec<u64>> = info
        .frames
        .iter()
        .map(|frame| size_by_pts.get(&frame.pts).copied())
        .collect();
    estimate_frame_costs(&info.frames, &sizes?)
}

/// Refuses, before any work, a job whose output cannot be one S3 multipart upload (at most
/// 10,000 parts of 5 MiB–5 GiB, 5 TiB): the output estimated from the probe and the settings
/// ([`output_plan::estimate_output`]: the source's video bytes per pixel scaled to the output's
/// size, or the target bitrate; the audio; the index). Returns the part plan that estimate
/// gets; errors name `input`. For runners that upload the output (the Lambda path); a local
/// file has no such limit.
pub fn check_output_fits_multipart(job: &JobSpec, input: &Path) -> Result<PartPlan, Error> {
    let info = &job.info;
    let (width, height) = convert::output_size(&info.video, &job.settings);
    let reencoded = job
        .audio_actions
        .iter()
        .filter(|action| matches!(action, AudioAction::Encode { .. }))
        .count() as u64;
    // A re-encoded track's packets are not known yet: twice the source's leaves room for an
    // encoder with shorter frames (AAC's 1024 samples against Opus's 960 at 48 kHz).
    let audio_samples =
        info.audio
            .iter()
            .zip(&job.audio_actions)
            .map(|(track, action)| match action {
                AudioAction::Copy => track.packets,
                AudioAction::Encode { .. } => 2 * track.packets,
            });
    let inputs = output_plan::OutputEstimateInputs {
        duration_seconds: info.video.duration_seconds(),
        source_video_bytes: info.video.packet_bytes,
        source_pixels: u64::from(info.video.width) * u64::from(info.video.height),
        output_pixels: u64::from(width) * u64::from(height),
        video_bitrate: match job.settings.rate {
            RateControl::Bitrate(bits_per_second) => Some(bits_per_second),
            RateControl::Crf(_) => None,
        },
        other_source_bytes: info.size_bytes.saturating_sub(info.video.packet_bytes),
        reencoded_audio_tracks: reencoded,
        index: output_plan::IndexContents {
            samples_per_track: std::iter::once(info.frames.len() as u64)
                .chain(audio_samples)
                .collect(),
            other_tracks: info.other_streams.len() as u64,
            verbatim_bytes: 0,
        },
    };
    output_plan::check_fits_multipart(&inputs).map_err(|source| Error::OutputTooLarge {
        path: input.to_owned(),
        source,
    })
}

/// Whether a task did its work or found it done by an earlier attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Produced<T> {
    Made(T),
    Found,
}

/// Produces segment `index`: encodes it to its file (unless an earlier attempt committed the
/// file), then records its index, which makes it done. A segment already done is left as it is.
///
/// Crash points: `before-encode`, `mid-encode` (through `on_frame`), `after-segment` (when the
/// segment is done). `on_frame` is called after every encoded frame; breaking stops the encode
/// with [`MediaError::Interrupted`].
pub fn produce_segment(
    source: &Source,
    job: &JobSpec,
    settings: &EncodeSettings,
    layout: &ScratchLayout,
    index: u32,
    crashes: &CrashPlan,
    on_frame: &(dyn Fn(u64) -> ControlFlow<()> + Sync),
) -> Result<Produced<SegmentReport>, Error> {
    let leaf = NodeId::leaf(index);
    if layout.finished(leaf).is_some() {
        return Ok(Produced::Found);
    }
    let segment = job.plan.segments.get(index as usize).ok_or_else(|| {
        Error::request(&job.info.path, format!("the plan has no segment {index}"))
    })?;
    let path = layout.segment(index);
    // A segment file is committed atomically, so one that exists is whole: an earlier attempt
    // died after writing it and before recording its index.
    let report = if path.is_file() {
        None
    } else {
        crashes.at(CrashPoint::BeforeEncode(index));
        let with_crashes = |frames: u64| {
            crashes.at(CrashPoint::MidEncode {
                segment: index,
                frames,
            });
            on_frame(frames)
        };
        Some(convert::convert_segment_from(
            source,
            &job.info,
            segment,
            settings,
            &path,
            &with_crashes,
        )?)
    };
    let described = merge::describe_segment(&path, index)?;
    write_json_atomically(&layout.index(leaf), &described)?;
    crashes.at(CrashPoint::AfterSegment(index));
    Ok(report.map_or(Produced::Found, Produced::Made))
}

/// The segments a node covers, as the user would name them (`segments 4-7`).
fn describe_leaves(index: &NodeIndex) -> PathBuf {
    match (index.leaves.first(), index.leaves.last()) {
        (Some(first), Some(last)) if first != last => format!("segments {first}-{last}").into(),
        (Some(first), _) => format!("segment {first}").into(),
        _ => "no segments".into(),
    }
}

/// Produces the merged `node` from its two finished children: checks that they join and
/// records the joined index (a concatenation), or takes the left child's index as it is (a
/// rename, when the right child is a placeholder). No video is copied. A node already done is
/// left as it is. Precondition: both children are done (their pair record says so).
///
/// Crash point: `after-merge` (counting merges this process produced).
pub fn produce_pair(
    tree: &MergeTree,
    layout: &ScratchLayout,
    node: NodeId,
    crashes: &CrashPlan,
) -> Result<Produced<(MergeKind, Option<MergeReport>)>, Error> {
    if layout.finished(node).is_some() {
        return Ok(Produced::Found);
    }
    let started = Instant::now();
    let (left, right) = tree
        .children(node)
        .ok_or_else(|| Error::request(&layout.dir, format!("{node} is not a pair of this job")))?;
    let missing = |child: NodeId| {
        Error::Media(MediaError::Unsupported {
            path: layout.index(child),
            reason: format!("{child} is not finished, so {node} cannot be merged"),
        })
    };
    let kind = tree.merge_kind(node);
    let left_index = layout.finished(left).ok_or_else(|| missing(left))?;
    let (joined, report) = match kind {
        MergeKind::Concat => {
            let right_index = layout.finished(right).ok_or_else(|| missing(right))?;
            let joined = merge::join_indexes(
                &left_index,
                &describe_leaves(&left_index),
                &right_index,
                &describe_leaves(&right_index),
            )?;
            let report = MergeReport {
                packets: joined.packets,
                bytes: joined.bytes,
                seconds: started.elapsed().as_secs_f64(),
            };
            (joined, Some(report))
        }
        MergeKind::Rename => (left_index, None),
        MergeKind::Placeholder => {
            return Err(Error::request(
                &layout.dir,
                format!("{node} is a placeholder and is never merged"),
            ))
        }
    };
    write_json_atomically(&layout.index(node), &joined)?;
    crashes.merge_written();
    Ok(Produced::Made((kind, report)))
}

/// A node is done: confirms it to its pair and says what comes next (see
/// [`after_node_finished`]). Crash point: `after-confirm` for segments.
pub async fn node_finished<S: StateStore>(
    store: &S,
    job_id: &str,
    tree: &MergeTree,
    node: NodeId,
    crashes: &CrashPlan,
) -> Result<NextStep, Error> {
    let next = after_node_finished(store, job_id, tree, node).await?;
    if node.level == 0 {
        crashes.at(CrashPoint::AfterConfirm(node.index));
    }
    Ok(next)
}

/// Extracts every audio track once (unless an earlier attempt finished it) and records its
/// report beside it. `None` when the source has no audio.
pub fn extract_audio(
    source: &Source,
    job: &JobSpec,
    layout: &ScratchLayout,
) -> Result<Produced<Option<AudioReport>>, Error> {
    if job.info.audio.is_empty() {
        return Ok(Produced::Made(None));
    }
    if layout.finished_audio().is_some() {
        return Ok(Produced::Found);
    }
    let report = audio::extract_audio_from(source, &job.info, &job.audio_actions, &layout.audio())?;
    if let Some(report) = &report {
        write_json_atomically(&layout.audio_report(), report)?;
    }
    Ok(Produced::Made(report))
}

/// Writes the output once from the finished root: its segments in order, the audio, and what
/// [`JobSpec::extras`] keeps, into `target`. Precondition: the root is done and, when the
/// source has audio, so is the audio.
pub fn finish_root(
    source: &Source,
    job: &JobSpec,
    layout: &ScratchLayout,
    target: MuxTarget,
) -> Result<RemuxReport, Error> {
    let root = job.tree.root();
    let index = layout.finished(root).ok_or_else(|| {
        Error::Media(MediaError::Unsupported {
            path: job.info.path.clone(),
            reason: "the merged video is missing; the merge tree did not finish".into(),
        })
    })?;
    let leaves: Vec<PathBuf> = index.leaves.iter().map(|&i| layout.segment(i)).collect();
    let audio = if job.info.audio.is_empty() {
        None
    } else {
        layout.finished_audio().ok_or_else(|| {
            Error::Media(MediaError::Unsupported {
                path: job.info.path.clone(),
                reason: "the extracted audio is missing".into(),
            })
        })?;
        Some(layout.audio())
    };
    Ok(remux::remux(
        source,
        &leaves,
        audio.as_deref(),
        &job.info,
        &job.settings,
        &job.extras(),
        job.container,
        target,
    )?)
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
