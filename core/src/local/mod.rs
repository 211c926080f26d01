//! The local runner: the whole pipeline on one machine, with a pool of segment workers.
//!
//! It is the same flow the AWS functions follow, with the in-memory state store: probe, plan,
//! then a pool that encodes segments longest first (for MP4/MOV each also copies its share of
//! the audio; for other containers one task extracts the audio beside them); the worker that
//! completes a pair merges it at once (so merges run while other segments still encode) and
//! climbs the tree as far as it can; finally the audio is joined and the root muxed with it.

mod output_path;
mod run;
mod scratch;
mod thumbnails;

pub use crate::progress::Progress;
pub use output_path::check_output_path;

use crate::engine::{self, JobSpec, ScratchLayout};
use crate::error::Error;
use crate::fault::{CrashPlan, CrashPoint};
use crate::media::audio::AudioReport;
use crate::media::convert::SegmentReport;
use crate::media::merge::MergeReport;
use crate::media::package::{PackageFormat, PackageReport};
use crate::media::probe::{self, MediaInfo};
use crate::media::remux::{MuxTarget, RemuxReport};
use crate::media::source::Source;
use crate::names::{Stage, TaskKind};
use crate::plan::{PlanOptions, SegmentPlan};
use crate::renditions::{rendition_output, rendition_settings, Rendition};
use crate::settings::EncodeSettings;
use crate::state::InMemoryStateStore;
use crate::thumbnails::ThumbnailRequest;
use crate::tree::{MergeKind, MergeTree, NodeId};
use run::{Outcomes, Run};
use scratch::{resume_dir, resume_key, Scratch};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the user asked for, beyond the input and output paths.
#[derive(Clone, Debug)]
pub struct TranscodeOptions {
    /// Encoder settings; `threads` is replaced by the per-worker share of `cores`.
    pub settings: EncodeSettings,
    pub plan: PlanOptions,
    /// Segment workers; `None` = one per core.
    pub workers: Option<usize>,
    /// CPU cores to share between workers (workers × encoder threads ≈ cores).
    pub cores: usize,
    /// Keep the scratch directory (segments, merges, audio) instead of deleting it.
    pub keep_temp: bool,
    /// Where the scratch directory is created; `None` = the system temporary directory.
    pub temp_root: Option<PathBuf>,
    /// Keep the scratch directory of a failed or killed run under a name derived from the input,
    /// the settings and the plan, and reuse its finished segments, merges and audio when run
    /// again with the same input and options.
    pub resume: bool,
    /// What to do when the output file already exists (checked before any work).
    pub existing_output: ExistingOutput,
    /// Crash on purpose at this point (fault injection for robustness tests; never in normal use).
    pub fault: Option<CrashPoint>,
    /// Set (from a signal handler) to stop the run: encodes stop at their next frame, merges and
    /// the audio at their end, no new work starts, and the run returns [`Error::Interrupted`]
    /// after removing its scratch directory (kept with `resume`) and writing no output.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// An ABR ladder: every rung encoded from one decode of each segment, each written to its
    /// own file ([`rendition_output`]: `out.mp4` → `out_720p.mp4`); empty: one output at
    /// `settings`.
    pub renditions: Vec<Rendition>,
    /// A poster and, with an interval, thumbnail sheets and their WebVTT index, put beside the
    /// output (inside a package's directory) under the existing-output rule; `None`: none.
    pub thumbnails: Option<ThumbnailRequest>,
}

impl TranscodeOptions {
    /// Defaults for `settings` on this machine.
    pub fn new(settings: EncodeSettings) -> Self {
        Self {
            settings,
            plan: PlanOptions::default(),
            workers: None,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            keep_temp: false,
            temp_root: None,
            resume: false,
            existing_output: ExistingOutput::Refuse,
            fault: None,
            interrupt: None,
            renditions: Vec::new(),
            thumbnails: None,
        }
    }
}

/// What a run does when its output file already exists. Either way it never overwrites its input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExistingOutput {
    /// Refuse, saying how to replace it (`-y`): the command line's default, as in ffmpeg when
    /// nobody can be asked.
    #[default]
    Refuse,
    /// Refuse because the user said never to overwrite (`-n`).
    Keep,
    /// Replace it once the new output is complete (`-y`).
    Replace,
}

/// One task of the run, for the timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpan {
    pub kind: TaskKind,
    /// Segment index, or the merged node as `L<level>-<index>`.
    pub target: String,
    /// Pool thread that ran it.
    pub worker: usize,
    /// Seconds since the run started.
    pub start_seconds: f64,
    pub end_seconds: f64,
}

/// Wall-clock seconds per stage of a local run, one field per [`Stage`] it has (named as the
/// stage; the Lambda runner's [`Stage::Analyze`] is probe and plan here), and the total.
/// Encoding, merging and audio overlap in time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageSeconds {
    pub probe: f64,
    pub plan: f64,
    /// From the first segment start to the last segment end.
    pub convert: f64,
    /// Sum of merge durations.
    pub merge: f64,
    pub audio: f64,
    pub remux: f64,
    pub total: f64,
}

impl StageSeconds {
    /// The seconds of `stage`; `None` for a stage the local runner does not have.
    pub fn get(&self, stage: Stage) -> Option<f64> {
        match stage {
            Stage::Probe => Some(self.probe),
            Stage::Plan => Some(self.plan),
            Stage::Analyze => None,
            Stage::Convert => Some(self.convert),
            Stage::Merge => Some(self.merge),
            Stage::Audio => Some(self.audio),
            Stage::Remux => Some(self.remux),
        }
    }
}

/// Everything a finished run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TranscodeReport {
    pub input: PathBuf,
    pub output: PathBuf,
    pub source: MediaInfo,
    pub plan: SegmentPlan,
    pub tree: MergeTree,
    pub workers: usize,
    pub settings: EncodeSettings,
    pub segments: Vec<SegmentReport>,
    pub merges: Vec<(NodeId, MergeKind, Option<MergeReport>)>,
    pub audio: Option<AudioReport>,
    pub remux: RemuxReport,
    /// One line per stream, tag or attachment of the source the output does not keep (from
    /// [`streams::plan`](crate::media::streams::plan)); everything else of the source is in the
    /// output.
    #[serde(default)]
    pub warnings: Vec<String>,
    pub stages: StageSeconds,
    pub timeline: Vec<TaskSpan>,
    pub output_bytes: u64,
    /// Nodes (segments or merges) a `--resume` run found finished and reused.
    #[serde(default)]
    pub reused: Vec<NodeId>,
    /// The scratch directory, when kept.
    pub temp_dir: Option<PathBuf>,
    /// Every rendition of a ladder run, tallest first (the first is also `output`, `settings`
    /// and `remux`); empty for a run without `--renditions`.
    #[serde(default)]
    pub renditions: Vec<RenditionReport>,
    /// What an HLS/DASH output wrote (playlists, fragments, measured bitrates).
    #[serde(default)]
    pub package: Option<PackageReport>,
    /// The thumbnail files written (poster, sheets, WebVTT index); empty without.
    #[serde(default)]
    pub thumbnails: Vec<PathBuf>,
}

/// One rendition of a ladder run: its settings (as encoded, `threads` per worker), where it
/// went and what the mux wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenditionReport {
    /// Encoded size, pixels.
    pub width: u32,
    pub height: u32,
    pub settings: EncodeSettings,
    pub output: PathBuf,
    pub output_bytes: u64,
    pub remux: RemuxReport,
}

/// Chooses workers and encoder threads per worker so that workers × threads ≈ cores.
pub fn choose_parallelism(
    requested_workers: Option<usize>,
    cores: usize,
    segments: usize,
) -> (usize, u32) {
    let cores = cores.max(1);
    let workers = requested_workers.unwrap_or(cores).clamp(1, segments.max(1));
    let threads = (cores / workers).max(1);
    (workers, threads as u32)
}

/// Transcodes `input` to `output` on this machine.
///
/// On success `output` holds the finished file; on failure nothing is written there and the
/// scratch directory is removed (unless `keep_temp`). The input is only ever read.
pub fn transcode(
    input: &Path,
    output: &Path,
    options: &TranscodeOptions,
    on_progress: &(dyn Fn(Progress) + Sync),
) -> Result<TranscodeReport, Error> {
    let started = Instant::now();
    let package = PackageFormat::from_path(output);
    // An HLS/DASH package goes in the manifest's directory, made here if missing (and removed
    // again if the run writes nothing into it).
    let made_dir = match (package, output.parent()) {
        (Some(_), Some(dir)) if !dir.as_os_str().is_empty() && !dir.exists() => {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_owned(),
                source,
            })?;
            Some(dir.to_owned())
        }
        _ => None,
    };
    let remove_made_dir = || {
        if let Some(dir) = &made_dir {
            let _ = std::fs::remove_dir(dir);
        }
    };
    let result = transcode_into(input, output, package, options, on_progress, started);
    if result.is_err() {
        remove_made_dir();
    }
    result
}

/// Keyframe spacing and fragment length of HLS/DASH packages, seconds.
pub const FRAGMENT_SECONDS: f64 = 4.0;

fn transcode_into(
    input: &Path,
    output: &Path,
    package: Option<PackageFormat>,
    options: &TranscodeOptions,
    on_progress: &(dyn Fn(Progress) + Sync),
    started: Instant,
) -> Result<TranscodeReport, Error> {
    if let Some(format) = package {
        // The package's segments are MP4's (fragmented), whatever the container option says.
        format
            .check(crate::settings::Container::Mp4, options.settings.codec)
            .map_err(|problem| Error::request(output, problem))?;
    }
    // With a ladder (or a package) the output names the rungs' files and is not written itself.
    let existing = if options.renditions.is_empty() || package.is_some() {
        options.existing_output
    } else {
        ExistingOutput::Replace
    };
    let container = check_output_path(input, output, existing)?;
    let ladder = rendition_settings(&options.settings, &options.renditions);
    // Where each rung goes: the output itself without a ladder.
    let outputs: Vec<PathBuf> = if ladder.is_empty() || package.is_some() {
        vec![output.to_owned()]
    } else {
        ladder
            .iter()
            .map(|rung| rendition_output(output, rung.height.unwrap_or_default()))
            .collect()
    };
    for output in &outputs {
        check_output_path(input, output, options.existing_output)?;
        // A run of this command that was SIGKILLed while writing the output left its partial file.
        crate::atomic_file::AtomicFile::remove_stale(output);
    }
    // The settings are checked before the (possibly long) probe; prepare_job checks them again
    // with everything else, as the Lambda runner's analyze does.
    if !container.allows(options.settings.codec) {
        return Err(Error::request(
            output,
            format!(
                "a .{} file cannot hold {} video",
                container.muxer_name(),
                options.settings.codec
            ),
        ));
    }
    options
        .settings
        .validate()
        .map_err(|problem| Error::request(output, problem))?;
    let mut stages = StageSeconds::default();

    let info = probe::probe(input)?;
    stages.probe = started.elapsed().as_secs_f64();
    let planning = Instant::now();
    let mut job = engine::prepare_job(
        &Source::file(input)?,
        info,
        input,
        output,
        container,
        &options.settings,
        &options.plan,
    )?;
    job.set_renditions(&ladder, input, output)?;
    let thumbnail_targets = match &options.thumbnails {
        Some(request) => {
            job.set_thumbnails(request, input)?;
            let targets = thumbnails::ThumbnailTargets::new(output, package.is_some());
            if let Some(plan) = &job.thumbnails {
                targets.check(plan, options.existing_output)?;
            }
            Some(targets)
        }
        None => None,
    };
    if package.is_some() {
        job.align_keyframes(FRAGMENT_SECONDS);
    }
    let (plan, tree, info) = (&job.plan, job.tree, &job.info);
    let (workers, threads) =
        choose_parallelism(options.workers, options.cores, plan.segments.len());
    let settings = EncodeSettings {
        threads,
        ..job.settings.clone()
    };
    stages.plan = planning.elapsed().as_secs_f64();
    on_progress(Progress::Planned {
        frames: plan.frame_count,
        segments: plan.segments.len() as u32,
        merges: tree.merges_needed(),
        duration_seconds: info.video.duration_seconds(),
    });

    let scratch = if options.resume {
        Scratch::Named(resume_dir(
            &options.temp_root.clone().unwrap_or_else(std::env::temp_dir),
            resume_key(
                input,
                container,
                &job.rungs()
                    .iter()
                    .map(|rung| EncodeSettings {
                        threads,
                        ..rung.clone()
                    })
                    .collect::<Vec<_>>(),
                plan,
                &job.audio_actions,
                job.thumbnails.as_ref(),
            ),
        )?)
    } else {
        Scratch::Temp(
            match &options.temp_root {
                Some(root) => tempfile::Builder::new().prefix("treemux-").tempdir_in(root),
                None => tempfile::Builder::new().prefix("treemux-").tempdir(),
            }
            .map_err(|source| Error::Io {
                path: options.temp_root.clone().unwrap_or_else(std::env::temp_dir),
                source,
            })?,
        )
    };
    let run = Run {
        job: &job,
        info,
        plan,
        tree,
        settings: &settings,
        layout: ScratchLayout::new(scratch.path()).with_renditions(job.rungs().len()),
        crashes: CrashPlan::new(options.fault.into_iter().collect()),
        interrupt: options.interrupt.clone(),
        store: InMemoryStateStore::new(),
        started,
        failure: Mutex::new(None),
        cancelled: AtomicBool::new(false),
        outcomes: Mutex::new(Outcomes::default()),
        on_progress,
    };
    let mut composed = Vec::new();
    let result = run
        .execute(workers, options.resume)
        .and_then(|mut outcomes| {
            let source = Source::file(&job.info.path)?;
            run.finish_audio(&source, &mut outcomes)?;
            if let Some(targets) = &thumbnail_targets {
                composed = engine::finish_thumbnails(&job, &run.layout, &targets.names)?;
            }
            on_progress(Progress::Muxing);
            let muxing = Instant::now();
            if let Some(format) = package {
                let packaged =
                    engine::finish_package(&job, &run.layout, format, output, FRAGMENT_SECONDS)?;
                let remux = RemuxReport {
                    video_packets: packaged.video_packets,
                    audio_packets: packaged.audio_packets,
                    extra_packets: 0,
                    bytes: packaged.bytes,
                    seconds: packaged.seconds,
                };
                return Ok((
                    outcomes,
                    vec![remux],
                    Some(packaged),
                    muxing.elapsed().as_secs_f64(),
                ));
            }
            let remuxes = outputs
                .iter()
                .zip(0..)
                .map(|(output, rung)| {
                    // Rung 0 (the output of a job without renditions) by parts, as on AWS;
                    // the other rungs in one pass.
                    if rung == 0 {
                        engine::finish_root_to_file(&source, &job, &run.layout, output)
                    } else {
                        engine::finish_rendition(
                            &source,
                            &job,
                            &run.layout,
                            rung,
                            MuxTarget::File(output.clone()),
                        )
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((outcomes, remuxes, None, muxing.elapsed().as_secs_f64()))
        });
    // The thumbnails once the output is complete (from scratch, before it goes); if they
    // cannot be put in place, the output files go too.
    let mut placed_thumbnails = Vec::new();
    let result = result.and_then(|done| match &thumbnail_targets {
        Some(targets) => match targets.place(&composed) {
            Ok(placed) => {
                placed_thumbnails = placed;
                Ok(done)
            }
            Err(error) => {
                thumbnails::remove_all(if package.is_some() { &[] } else { &outputs });
                Err(error)
            }
        },
        None => Ok(done),
    });
    let temp_dir = if options.keep_temp {
        Some(scratch.keep())
    } else {
        // A resumable scratch directory outlives a failure (run again with --resume to reuse
        // it) and goes with success.
        scratch.finish(result.is_ok());
        None
    };
    let (outcomes, remuxes, packaged, remux_seconds) = result?;
    let renditions: Vec<RenditionReport> = if let Some(packaged) = &packaged {
        job.rungs()
            .iter()
            .zip(&packaged.renditions)
            .map(|(rung, written)| RenditionReport {
                width: written.width,
                height: written.height,
                settings: EncodeSettings {
                    threads,
                    ..rung.clone()
                },
                output: written.playlist.clone(),
                output_bytes: written.bytes,
                remux: RemuxReport {
                    video_packets: plan.frame_count,
                    audio_packets: 0,
                    extra_packets: 0,
                    bytes: written.bytes,
                    seconds: 0.0,
                },
            })
            .collect()
    } else if job.renditions.is_empty() {
        Vec::new()
    } else {
        job.rungs()
            .iter()
            .zip(&outputs)
            .zip(&remuxes)
            .map(|((rung, output), remux)| {
                let (width, height) = crate::media::convert::output_size(&job.info.video, rung);
                RenditionReport {
                    width,
                    height,
                    settings: EncodeSettings {
                        threads,
                        ..rung.clone()
                    },
                    output: output.clone(),
                    output_bytes: remux.bytes,
                    remux: remux.clone(),
                }
            })
            .collect()
    };
    let remux = remuxes
        .into_iter()
        .next()
        .expect("one remux per output, and at least one output");

    stages.remux = remux_seconds;
    stages.convert = span_of(&outcomes.timeline, TaskKind::Segment);
    stages.merge = outcomes
        .timeline
        .iter()
        .filter(|t| t.kind.stage() == Stage::Merge)
        // A fold from +0.0: an empty f64 `sum` is -0.0, which prints as "-0.00".
        .fold(0.0, |total, t| total + (t.end_seconds - t.start_seconds));
    stages.audio = outcomes.audio.as_ref().map_or(0.0, |a| a.seconds);
    stages.total = started.elapsed().as_secs_f64();
    let mut segments = outcomes.segments;
    segments.sort_by_key(|s| s.index);
    // What the output cannot keep, as the Lambda runner records it.
    let mut warnings = job.warnings();
    let extras = job.extras();
    if packaged.is_some()
        && (!extras.streams.is_empty() || !extras.chapters.is_empty() || !extras.tags.is_empty())
    {
        warnings.push(format!(
            "the {} package keeps the video and audio only: {} other streams, {} chapters and {} \
             tags of the source are not kept",
            package.map_or("", PackageFormat::name),
            extras.streams.len(),
            extras.chapters.len(),
            extras.tags.len()
        ));
    }
    let JobSpec { info, plan, .. } = job;
    Ok(TranscodeReport {
        input: input.to_owned(),
        output: outputs[0].clone(),
        output_bytes: remux.bytes,
        source: info,
        plan,
        tree,
        workers,
        settings,
        segments,
        merges: outcomes.merges,
        audio: outcomes.audio,
        remux,
        warnings,
        stages,
        timeline: outcomes.timeline,
        reused: outcomes.reused,
        temp_dir,
        renditions,
        package: packaged,
        thumbnails: placed_thumbnails,
    })
}

/// Seconds from the first task of `kind` starting to the last one ending.
fn span_of(timeline: &[TaskSpan], kind: TaskKind) -> f64 {
    let spans = timeline.iter().filter(|t| t.kind == kind);
    let start = spans
        .clone()
        .map(|t| t.start_seconds)
        .fold(f64::INFINITY, f64::min);
    let end = spans
        .map(|t| t.end_seconds)
        .fold(f64::NEG_INFINITY, f64::max);
    if end >= start {
        end - start
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallelism_shares_cores_between_workers() {
        assert_eq!(choose_parallelism(None, 2, 8), (2, 1));
        assert_eq!(choose_parallelism(Some(1), 2, 8), (1, 2));
        assert_eq!(choose_parallelism(None, 8, 2), (2, 4));
        assert_eq!(choose_parallelism(Some(0), 4, 3), (1, 4));
    }

    /// Each field of the stage seconds is named as its [`Stage`], so the local summary and
    /// the Lambda job record name a stage alike.
    #[test]
    fn stage_fields_are_named_as_the_stages() {
        let stages = StageSeconds {
            probe: 1.0,
            plan: 2.0,
            convert: 3.0,
            merge: 4.0,
            audio: 5.0,
            remux: 6.0,
            total: 7.0,
        };
        let json = serde_json::to_value(&stages).expect("JSON");
        let mut named = 0;
        for stage in Stage::ALL {
            assert_eq!(
                json.get(stage.name()).and_then(serde_json::Value::as_f64),
                stages.get(stage),
                "{stage}"
            );
            named += usize::from(stages.get(stage).is_some());
        }
        // Every field but the total is a stage.
        assert_eq!(json.as_object().map(|fields| fields.len()), Some(named + 1));
    }
}
