//! The segment tasks: split-audio (the whole audio once, where segments do not carry it) and
//! split-and-convert (one segment encoded, then the merges it completes, climbing the tree).

use super::{blocking, job_source, now, read_manifest, Services};
use crate::error::HandlerError;
use crate::events::{JobTask, SegmentTask, StepOutput};
use crate::job::JobPaths;
use crate::ports::ObjectStore;
use crate::segment_objects::{remove_if_job_ended, LocalSegments, ObjectKeeper};
use std::ops::ControlFlow;
use std::time::Instant;
use treemux_core::engine::{self, KeptInScratch, Produced, SegmentKeeper};
use treemux_core::names::Stage;
use treemux_core::state::{JobStore, JobUpdate, StateStore};
use treemux_core::tree::NodeId;

/// split-audio: every audio track, once, for the whole file, in one streaming pass, for sources
/// whose segments do not carry the audio (containers without an MP4/MOV index); for MP4/MOV
/// nothing: the segment workers copy the audio and merge-audio joins it
/// ([`engine::JobSpec::audio_from_segments`]).
pub async fn split_audio<S, O, X>(
    services: &Services<S, O, X>,
    task: JobTask,
) -> Result<JobTask, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore,
{
    let job_id = task.job_id.clone();
    super::task(&services.store, &job_id, split_audio_body(services, task)).await
}

async fn split_audio_body<S, O, X>(
    services: &Services<S, O, X>,
    task: JobTask,
) -> Result<JobTask, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore,
{
    let started = Instant::now();
    let manifest = read_manifest(&services.config, &task.job_id).await?;
    let layout = JobPaths::new(&services.config.scratch_root, &task.job_id).layout_of(&manifest);
    let source = job_source(services, &manifest).await?;
    // A repeated task finds the audio extracted and its report recorded: nothing is redone.
    let produced = blocking(move || {
        engine::extract_audio(&source, &manifest.job(), &layout).map_err(HandlerError::from)
    })
    .await?;
    let outcome = match produced {
        Produced::Made(Some(_)) => "done",
        Produced::Made(None) => "nothing-to-do",
        Produced::Found => "found-done",
    };
    let seconds = started.elapsed().as_secs_f64();
    services
        .store
        .update_job(
            &task.job_id,
            &JobUpdate::Stage {
                stage: Stage::Audio,
                seconds,
            },
            now(),
        )
        .await?;
    tracing::info!(job_id = %task.job_id, seconds, outcome, "split-audio");
    Ok(task)
}

/// split-and-convert: encode one segment, then merge the pair it completes and the pairs above
/// while it has time ([`super::merge_video`]'s climb); the step left for the state machine.
pub async fn split_and_convert<S, O, X>(
    services: &Services<S, O, X>,
    task: SegmentTask,
) -> Result<StepOutput, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore,
{
    let job_id = task.job_id.clone();
    super::task(
        &services.store,
        &job_id,
        split_and_convert_body(services, task),
    )
    .await
}

async fn split_and_convert_body<S, O, X>(
    services: &Services<S, O, X>,
    task: SegmentTask,
) -> Result<StepOutput, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore,
{
    let started = Instant::now();
    let manifest = read_manifest(&services.config, &task.job_id).await?;
    if task.segment >= manifest.tree.real_leaves {
        return Err(HandlerError::invalid(format!(
            "job {}: no segment {}",
            task.job_id, task.segment
        )));
    }
    let leaf = NodeId::leaf(task.segment);
    let layout = JobPaths::new(&services.config.scratch_root, &task.job_id).layout_of(&manifest);
    let tree = manifest.tree;
    let crashes = services.config.crashes.clone();
    let index = task.segment;
    // Its own byte range of the upload, straight from the store (read-ahead bounded by it).
    let hint = manifest
        .segment_bytes
        .get(index as usize)
        .copied()
        .flatten()
        .map(|[start, end]| start..end);
    let source = job_source(services, &manifest).await?.with_hint(hint);
    // A segment is done once its index is recorded, and kept until the job ends, so a repeated
    // task (a retry after a lost answer or a crash, or a duplicate delivery) finds it and does
    // not encode again (the core's engine decides, as for the local runner's --resume).
    let crashes_for_encode = crashes.clone();
    let frames = manifest
        .plan
        .segments
        .get(index as usize)
        .map_or(0, |segment| segment.frames);
    let job = manifest.job();
    // With a segment bucket the file is encoded in this task's own directory and kept as an
    // object (the video never passes through EFS); else it is committed to scratch.
    let (layout, keeper, local): (_, Box<dyn SegmentKeeper + Send>, _) =
        match &manifest.segment_objects {
            Some(place) => {
                let local = LocalSegments::new(&services.config.local_dir, &task.job_id)?;
                let keeper = ObjectKeeper {
                    objects: services.objects.clone(),
                    place: place.clone(),
                    scratch_dir: layout.dir.clone(),
                    runtime: tokio::runtime::Handle::current(),
                };
                (local.layout(layout), Box::new(keeper), Some(local))
            }
            None => (layout, Box::new(KeptInScratch), None),
        };
    let produced = blocking(move || {
        engine::produce_segment(
            &source,
            &job,
            &job.settings,
            &layout,
            index,
            &crashes_for_encode,
            keeper.as_ref(),
            &|_| ControlFlow::Continue(()),
        )
        .map_err(HandlerError::from)
    })
    .await;
    // This task's copy goes; its object too if the job ended while it was kept.
    drop(local);
    if let Some(place) = &manifest.segment_objects {
        remove_if_job_ended(
            &services.store,
            &services.objects,
            &task.job_id,
            place,
            index,
        )
        .await;
    }
    let produced = produced?;
    let seconds = match produced {
        Produced::Made(report) => report.seconds,
        Produced::Found => 0.0,
    };
    // Recorded on the repeated path too: the attempt that encoded may have died before this.
    let update = JobUpdate::SegmentDone {
        index,
        seconds,
        frames,
    };
    services
        .store
        .update_job(&task.job_id, &update, now())
        .await?;
    super::announce::progress(services, &task.job_id).await;
    let next = engine::node_finished(&services.store, &task.job_id, &tree, leaf, &crashes).await?;
    let next = super::merge_video::climb(services, &manifest, next, started).await?;
    tracing::info!(
        job_id = %task.job_id,
        segment = index,
        segments = tree.real_leaves,
        seconds,
        outcome = if seconds > 0.0 { "encoded" } else { "found-encoded" },
        next = ?next,
        "split-and-convert"
    );
    Ok(StepOutput {
        job_id: task.job_id,
        next,
    })
}
