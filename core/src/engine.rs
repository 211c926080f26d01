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
//! - `audio-<i>.nut`: segment `i`'s share of every audio track, copied out of the bytes its
//!   worker read anyway, when the segments carry the audio ([`JobSpec::audio_from_segments`]);
//!   written before the segment, so a committed segment has its audio beside it.
//! - `audio.nut` and `audio.json`: every audio track, extracted once (joined from the pieces by
//!   [`finish_audio`], or by one streaming pass, [`extract_audio`]), and its report.
//!
//! No merge writes video and no file is deleted before the job ends: segments are read once,
//! in order, by [`finish_root`], which writes the output once. Scratch then holds the segments
//! and the audio only (twice: pieces and joined), about the output's size.
//!
//! # The audio (read once)
//! For MP4/MOV sources each segment worker copies its share of every audio track from the
//! packets it demuxes anyway ([`SegmentAudio`]): per track, the samples from the first at or
//! after the decode time of the keyframe it seeks to, up to the first at or after the next
//! segment's (the first segment from the file's first sample, the last to its end). That is
//! exactly what its seek makes the demuxer hand on, and it knows from the index when it has its
//! share's last sample, so it reads on past its video only for the few audio samples
//! interleaved before the next keyframe. Stream copy, never re-encoded per segment; the shares
//! partition every track, so each packet lands in exactly one piece. [`finish_audio`] joins the
//! pieces once (re-encoding a track once, whole, where the output container needs it) and
//! checks that they hold exactly the packets the probe counted, in order; if not (a file
//! interleaved so that a worker's seek lands after a sample of its share), it falls back to one
//! streaming pass over the source. Other containers (Matroska/WebM, MPEG-TS, AVI: no index to
//! place the shares by) and sources with timestamp jumps keep that one streaming pass
//! ([`extract_audio`]).

use crate::error::Error;
use crate::extras::ExtrasPlan;
use crate::fault::{CrashPlan, CrashPoint};
use crate::join::NodeIndex;
use crate::media::audio::{self, AudioAction, AudioReport, JoinedAudio, SegmentAudio};
use crate::media::convert::{self, SegmentReport};
use crate::media::keyframes;
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
use std::collections::BTreeSet;
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

    /// Segment `index`'s share of the audio, when the segments carry it.
    pub fn segment_audio(&self, index: u32) -> PathBuf {
        self.dir.join(format!("audio-{index}.nut"))
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

    /// True when the segment workers copy the audio out of the bytes they read
    /// ([`convert::convert_segment_from`]'s `audio`) and [`finish_audio`] joins their pieces:
    /// MP4/MOV sources with audio and without timestamp jumps (the mov demuxer positions every
    /// stream by time when a worker seeks, so each worker sees all of its share). Otherwise one
    /// streaming pass extracts the audio ([`extract_audio`]).
    pub fn audio_from_segments(&self) -> bool {
        !self.info.audio.is_empty()
            && self.info.container.starts_with("mov,")
            && self.info.timestamp_repair.is_empty()
    }

    /// What segment `index` copies of the audio, when [`Self::audio_from_segments`].
    pub fn segment_audio(&self, layout: &ScratchLayout, index: u32) -> Option<SegmentAudio> {
        (self.audio_from_segments() && (index as usize) < self.plan.segments.len()).then(|| {
            SegmentAudio::of_segment(&self.info, &self.plan, index, layout.segment_audio(index))
        })
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
/// upscaling happens unless allowed, and the frames can be cut into segments, at keyframes
/// whose own bytes say they are (see [`plan_at_real_keyframes`]; `source` holds the bytes
/// `info` was probed from).
///
/// Errors name `output` for what concerns the output (container, settings) and `input` for
/// what concerns the source, in the user's terms.
pub fn prepare_job(
    source: &Source,
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
    let mut info = info;
    let plan = plan_at_real_keyframes(source, &mut info, input, plan_options)?;
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

/// Rounds of planning, checking the plan's keyframes and demoting the false ones, before every
/// keyframe not yet checked is demoted at once (which the next plan cannot cut at).
const KEYFRAME_CHECK_ROUNDS: usize = 8;

/// Plans `info`'s frames so that every keyframe a segment decodes from starts decoding by its
/// own bytes ([`keyframes::false_cut_points`]: MP4/MOV H.264 and HEVC, whose keyframes the
/// probe lists from the sync-sample table). A keyframe that does not is demoted in
/// `info.frames` (with a warning) and the frames are planned again; after
/// [`KEYFRAME_CHECK_ROUNDS`] rounds every unchecked keyframe is demoted, so the plan decodes
/// only from checked keyframes or the start: a cut never lands on a false keyframe.
pub fn plan_at_real_keyframes(
    source: &Source,
    info: &mut MediaInfo,
    input: &Path,
    plan_options: &PlanOptions,
) -> Result<SegmentPlan, Error> {
    let plan_once = |info: &MediaInfo| {
        plan_for(info, plan_options).map_err(|source| Error::Plan {
            path: input.to_owned(),
            source,
        })
    };
    let bitstream = keyframes::video_bitstream(source, &*info)?;
    let mut checked = BTreeSet::new();
    for round in 1.. {
        let plan = plan_once(&*info)?;
        let false_points =
            keyframes::false_cut_points(source, &*info, &plan, bitstream, &mut checked)?;
        if false_points.is_empty() {
            return Ok(plan);
        }
        let last_round = round >= KEYFRAME_CHECK_ROUNDS;
        tracing::warn!(
            source = %input.display(),
            false_keyframes = false_points.len(),
            round,
            "the index calls {} samples keyframes that are not; planning again without {}",
            false_points.len(),
            if last_round { "any unchecked keyframe" } else { "them" }
        );
        let first_pts = info.video.first_pts;
        for frame in &mut info.frames {
            let unchecked = frame.pts > first_pts && !checked.contains(&frame.pts);
            if frame.key && (false_points.contains(&frame.pts) || (last_round && unchecked)) {
                frame.key = false;
            }
        }
        info.video.keyframe_count = info.frames.iter().filter(|frame| frame.key).count() as u64;
    }
    unreachable!("the rounds end with a plan that decodes from checked keyframes only")
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
        let audio = job.segment_audio(layout, index);
        Some(convert::convert_segment_from(
            source,
            &job.info,
            segment,
            settings,
            &path,
            audio.as_ref(),
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

/// Extracts every audio track once, in one streaming pass over the source (unless an earlier
/// attempt finished it), and records its report beside it. `None` when the source has no audio,
/// and nothing to do (`Made(None)`, nothing read) when the segments carry the audio
/// ([`JobSpec::audio_from_segments`]): [`finish_audio`] joins it then.
pub fn extract_audio(
    source: &Source,
    job: &JobSpec,
    layout: &ScratchLayout,
) -> Result<Produced<Option<AudioReport>>, Error> {
    if job.info.audio.is_empty() || job.audio_from_segments() {
        return Ok(Produced::Made(None));
    }
    stream_audio(source, job, layout)
}

fn stream_audio(
    source: &Source,
    job: &JobSpec,
    layout: &ScratchLayout,
) -> Result<Produced<Option<AudioReport>>, Error> {
    if layout.finished_audio().is_some() {
        return Ok(Produced::Found);
    }
    let report = audio::extract_audio_from(source, &job.info, &job.audio_actions, &layout.audio())?;
    if let Some(report) = &report {
        write_json_atomically(&layout.audio_report(), report)?;
    }
    Ok(Produced::Made(report))
}

/// Makes sure the job's audio is extracted before the root is finished: found done, joined once
/// from the segments' pieces (every segment is done, so every piece is there), or, when the
/// pieces do not hold every packet exactly once or the segments do not carry the audio, one
/// streaming pass over `source`. `None` when the source has no audio. Precondition: every
/// segment is done.
pub fn finish_audio(
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
    if job.audio_from_segments() {
        let pieces: Vec<PathBuf> = (0..job.tree.real_leaves)
            .map(|index| layout.segment_audio(index))
            .collect();
        match audio::join_audio_pieces(&job.info, &job.audio_actions, &pieces, &layout.audio())? {
            JoinedAudio::Written(report) => {
                write_json_atomically(&layout.audio_report(), &report)?;
                return Ok(Produced::Made(Some(report)));
            }
            JoinedAudio::Mismatch(reason) => tracing::warn!(
                source = %job.info.path.display(),
                reason,
                "the segments' audio pieces do not add up; extracting the audio in one pass"
            ),
        }
    }
    stream_audio(source, job, layout)
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
    // An index that counts its packets but lists no pts was written before the pts were kept.
    let video_pts = (index.pts.len() as u64 == index.packets).then_some(index.pts.as_slice());
    Ok(remux::remux(
        source,
        &leaves,
        video_pts,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::probe::{probe_source, PacketReads};

    /// 100 frames at 25 fps, no B-frames (sample n is frame n-1), a keyframe every 25 frames;
    /// then, if `lie`, the sync-sample table's last entry (sample 76, a keyframe) moved to
    /// sample 74, a P frame, without changing the box's size.
    fn clip(dir: &Path, lie: bool) -> PathBuf {
        let path = dir.join(if lie { "lying.mp4" } else { "honest.mp4" });
        let status = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=160x120:rate=25:duration=4")
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0"])
            .args(["-g", "25", "-keyint_min", "25", "-sc_threshold", "0"])
            .arg(&path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg could not write the clip");
        if lie {
            let mut data = std::fs::read(&path).expect("clip");
            let at = data
                .windows(4)
                .position(|w| w == b"stss")
                .expect("a sync-sample table");
            // type, version+flags, count, then the entries.
            let entries: Vec<u32> = (0..4)
                .map(|i| {
                    let from = at + 12 + 4 * i;
                    u32::from_be_bytes(data[from..from + 4].try_into().expect("4 bytes"))
                })
                .collect();
            assert_eq!(entries, [1, 26, 51, 76], "the clip's keyframes");
            data[at + 24..at + 28].copy_from_slice(&74u32.to_be_bytes());
            std::fs::write(&path, data).expect("patched");
        }
        path
    }

    fn four_segments() -> PlanOptions {
        PlanOptions {
            exact_segments: Some(4),
            min_segment_seconds: 0.5,
            ..PlanOptions::default()
        }
    }

    #[test]
    fn a_false_keyframe_in_the_index_is_never_cut_at() {
        crate::media::init();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = clip(dir.path(), true);
        let source = Source::file(&path).expect("source");
        let mut info = probe_source(&source, PacketReads::IndexWherePossible).expect("probe");
        assert!(info.frames[73].key, "the index calls frame 73 a keyframe");
        assert!(!info.frames[75].key, "and frame 75 none");
        // Planned on the index's word, segment 3 would decode from frame 73.
        let trusting = plan_for(&info, &four_segments()).expect("plan");
        assert_eq!(
            trusting.segments[3].decode_from.map(|point| point.pts),
            Some(info.frames[73].pts)
        );
        let plan = plan_at_real_keyframes(&source, &mut info, &path, &four_segments())
            .expect("checked plan");
        assert!(!info.frames[73].key, "the false keyframe is demoted");
        let starts: Vec<Option<i64>> = plan
            .segments
            .iter()
            .map(|segment| segment.decode_from.map(|point| point.pts))
            .collect();
        let real = |frame: usize| Some(info.frames[frame].pts);
        assert_eq!(starts[1..], [real(25), real(50), real(50)]);
    }

    #[test]
    fn an_honest_index_is_planned_as_it_says() {
        crate::media::init();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = clip(dir.path(), false);
        let source = Source::file(&path).expect("source");
        let mut info = probe_source(&source, PacketReads::IndexWherePossible).expect("probe");
        let before = info.frames.clone();
        let plan =
            plan_at_real_keyframes(&source, &mut info, &path, &four_segments()).expect("plan");
        assert_eq!(info.frames, before, "nothing demoted");
        assert_eq!(
            plan,
            plan_for(&info, &four_segments()).expect("plan"),
            "the plan the index gives"
        );
    }
}
