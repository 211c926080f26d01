//! The tasks both runners run: produce a segment, produce a pair, confirm a finished node,
//! extract or join the audio, and write the output from the finished root; each finds its work
//! done when an earlier attempt did it, and carries its crash points.

use crate::error::Error;
use crate::fault::{CrashPlan, CrashPoint};
use crate::join::NodeIndex;
use crate::media::audio::{self, AudioReport, JoinedAudio};
use crate::media::convert::{self, SegmentReport};
use crate::media::merge::{self, MergeReport};
use crate::media::package::{self, PackageFormat, PackageReport, PackageStreams, PackageVideo};
use crate::media::remux::{self, MuxTarget, RemuxReport};
use crate::media::source::Source;
use crate::media::MediaError;
use crate::settings::EncodeSettings;
use crate::state::StateStore;
use crate::steps::{after_node_finished, NextStep};
use crate::tree::{MergeKind, MergeTree, NodeId};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use super::layout::{write_json_atomically, write_json_unless_exists};
use super::{JobSpec, ScratchLayout, SegmentKeeper};

/// Whether a task did its work or found it done by an earlier attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Produced<T> {
    Made(T),
    Found,
}

/// Produces segment `index`: encodes it to its file (unless an earlier attempt committed the
/// file), hands rung 0's file to `keeper`, then records its index, which makes it done. A
/// segment already done is left as it is.
///
/// Crash points: `before-encode`, `mid-encode` (through `on_frame`), `after-segment` (when the
/// segment is done). `on_frame` is called after every encoded frame; breaking stops the encode
/// with [`MediaError::Interrupted`].
// The job, the segment and the three things each runner supplies (crash points, a keeper, a
// frame callback): grouping them would only rename the arguments.
#[allow(clippy::too_many_arguments)]
pub fn produce_segment(
    source: &Source,
    job: &JobSpec,
    settings: &EncodeSettings,
    layout: &ScratchLayout,
    index: u32,
    crashes: &CrashPlan,
    keeper: &dyn SegmentKeeper,
    on_frame: &(dyn Fn(u64) -> ControlFlow<()> + Sync),
) -> Result<Produced<SegmentReport>, Error> {
    let leaf = NodeId::leaf(index);
    if layout.finished(leaf).is_some() {
        return Ok(Produced::Found);
    }
    let segment = job.plan.segments.get(index as usize).ok_or_else(|| {
        Error::request(&job.info.path, format!("the plan has no segment {index}"))
    })?;
    // Every rung's settings with the caller's encoder threads.
    let rungs: Vec<EncodeSettings> = job
        .rungs()
        .iter()
        .map(|rung| EncodeSettings {
            threads: settings.threads,
            ..rung.clone()
        })
        .collect();
    let layouts: Vec<ScratchLayout> = (0..rungs.len() as u32)
        .map(|rung| layout.rendition(rung))
        .collect();
    let paths: Vec<PathBuf> = layouts.iter().map(|l| l.segment(index)).collect();
    // A segment file is committed atomically, so one that exists is whole: an earlier attempt
    // died after writing it and before recording its index. Rungs are encoded together (one
    // decode): any missing file means encoding them all again.
    let encoded = if paths.iter().all(|path| path.is_file()) {
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
        for dir in layouts.iter().skip(1) {
            std::fs::create_dir_all(&dir.dir).map_err(|source| Error::Io {
                path: dir.dir.clone(),
                source,
            })?;
        }
        let targets: Vec<convert::Rung> = rungs
            .iter()
            .zip(&paths)
            .map(|(settings, output)| convert::Rung { settings, output })
            .collect();
        let audio = job.segment_audio(layout, index);
        let thumbnails = job.segment_thumbnails(layout, index);
        Some(convert::convert_segment_renditions(
            source,
            &job.info,
            segment,
            &targets,
            job.keyframes.as_ref(),
            audio.as_ref(),
            thumbnails.as_ref(),
            &with_crashes,
        )?)
    };
    // Rung 0's index last: it is what "done" means. A fresh encode built each index as it
    // wrote the file; only a file committed by an earlier attempt is read back to describe it.
    let (report, mut built) = match encoded {
        Some(encoded) => (
            Some(encoded.report),
            encoded.indexes.into_iter().map(Some).collect(),
        ),
        None => (None, vec![None; paths.len()]),
    };
    if let Some(file) = paths.first() {
        keeper.keep(index, file)?;
    }
    for ((rung_layout, path), built) in layouts.iter().zip(&paths).zip(&mut built).rev() {
        let described = match built.take() {
            Some(index) => index,
            None => merge::describe_segment(path, index)?,
        };
        write_json_atomically(&rung_layout.index(leaf), &described)?;
    }
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
    let mut report = None;
    // Rung 0 last: its index is what "done" means.
    for rung in (0..layout.renditions()).rev() {
        let rung_layout = layout.rendition(rung);
        if rung > 0 && rung_layout.finished(node).is_some() {
            continue;
        }
        let left_index = rung_layout.finished(left).ok_or_else(|| missing(left))?;
        let joined = match kind {
            MergeKind::Concat => {
                let right_index = rung_layout.finished(right).ok_or_else(|| missing(right))?;
                let joined = merge::join_indexes(
                    &left_index,
                    &describe_leaves(&left_index),
                    &right_index,
                    &describe_leaves(&right_index),
                )?;
                report = Some(MergeReport {
                    packets: joined.packets,
                    bytes: joined.bytes,
                    seconds: started.elapsed().as_secs_f64(),
                });
                joined
            }
            MergeKind::Rename => left_index,
            MergeKind::Placeholder => {
                return Err(Error::request(
                    &layout.dir,
                    format!("{node} is a placeholder and is never merged"),
                ))
            }
        };
        if rung > 0 {
            write_json_atomically(&rung_layout.index(node), &joined)?;
        } else if !write_json_unless_exists(&rung_layout.index(node), &joined)? {
            // Another copy of this task (a duplicate delivery, both holding the claim in the
            // same name) finished the merge first: the same index, written once.
            return Ok(Produced::Found);
        }
    }
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
    finish_rendition(source, job, layout, 0, target)
}

/// [`finish_root`] for rung `rung` of the job's renditions ([`JobSpec::rungs`]): its segments,
/// the job's one audio, into `target`.
pub fn finish_rendition(
    source: &Source,
    job: &JobSpec,
    layout: &ScratchLayout,
    rung: u32,
    target: MuxTarget,
) -> Result<RemuxReport, Error> {
    let settings = job.rungs().get(rung as usize).ok_or_else(|| {
        Error::request(&job.info.path, format!("the job has no rendition {rung}"))
    })?;
    let rung_layout = layout.rendition(rung);
    let (leaves, video_pts) = root_leaves(job, &rung_layout)?;
    let audio = job_audio(job, layout)?;
    Ok(remux::remux(
        source,
        &leaves,
        video_pts.as_deref(),
        audio.as_deref(),
        &job.info,
        settings,
        &job.extras(),
        job.container,
        target,
    )?)
}

/// The finished root's segment files in order and, when its index lists them, every video
/// packet's pts in file order.
pub(super) fn root_leaves(
    job: &JobSpec,
    layout: &ScratchLayout,
) -> Result<(Vec<PathBuf>, Option<Vec<i64>>), Error> {
    let index = root_index(job, layout)?;
    let leaves: Vec<PathBuf> = index.leaves.iter().map(|&i| layout.segment(i)).collect();
    // An index that counts its packets but lists no pts was written before the pts were kept.
    let video_pts = (index.pts.len() as u64 == index.packets).then_some(index.pts);
    Ok((leaves, video_pts))
}

/// The job's extracted audio, `None` when the source has none. Precondition: it is finished.
pub(super) fn job_audio(job: &JobSpec, layout: &ScratchLayout) -> Result<Option<PathBuf>, Error> {
    if job.info.audio.is_empty() {
        return Ok(None);
    }
    layout.finished_audio().ok_or_else(|| {
        Error::Media(MediaError::Unsupported {
            path: job.info.path.clone(),
            reason: "the extracted audio is missing".into(),
        })
    })?;
    Ok(Some(layout.audio()))
}

/// Writes the job's HLS or DASH package from the finished root of every rendition and the
/// job's audio ([`package::package`]: fMP4 fragments straight from the segments' packets),
/// with `manifest` as its entry point. Precondition: every rung's root is done and, when the
/// source has audio, so is the audio.
pub fn finish_package(
    job: &JobSpec,
    layout: &ScratchLayout,
    format: PackageFormat,
    manifest: &std::path::Path,
    fragment_seconds: f64,
) -> Result<PackageReport, Error> {
    let mut video = Vec::with_capacity(job.rungs().len());
    for (rung, settings) in (0..).zip(job.rungs()) {
        let (leaves, pts) = root_leaves(job, &layout.rendition(rung))?;
        video.push(PackageVideo {
            leaves,
            pts,
            settings,
        });
    }
    let streams = PackageStreams {
        video,
        audio: job_audio(job, layout)?,
        info: &job.info,
    };
    Ok(package::package(
        &streams,
        format,
        manifest,
        fragment_seconds,
    )?)
}

/// The finished root's index, or why the root cannot be finished.
pub(super) fn root_index(job: &JobSpec, layout: &ScratchLayout) -> Result<NodeIndex, Error> {
    layout.finished(job.tree.root()).ok_or_else(|| {
        Error::Media(MediaError::Unsupported {
            path: job.info.path.clone(),
            reason: "the merged video is missing; the merge tree did not finish".into(),
        })
    })
}
