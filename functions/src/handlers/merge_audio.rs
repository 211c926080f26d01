//! merge-audio: the root of the merge tree: the audio joined, the output laid out (its header
//! and which samples fill which bytes) and its part 1 uploaded, the other parts left to
//! upload-parts tasks, then (the second task kind, `complete`) the upload completed with the
//! recorded ETags, only while the job is its key's newest. An output that cannot be laid out by
//! sizes (see the core's `engine::lay_out_root`) is muxed straight into the upload in one pass.

use super::{blocking, job_source, now, read_manifest, supersede, write_once, Services};
use super::{root_outputs, upload_parts};
use crate::error::HandlerError;
use crate::events::{JobDone, JobTask, RootStep};
use crate::job::{JobManifest, JobPaths};
use crate::ports::ObjectStore;
use crate::segment_objects::remove_kept_segments;
use crate::upload::{self, MultipartStore, PartWriter};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use treemux_core::engine::{self, RootLayout};
use treemux_core::media::remux::MuxTarget;
use treemux_core::names::Stage;
use treemux_core::output_plan::plan_parts;
use treemux_core::state::{JobStore, JobUpdate, StateStore};
use treemux_core::summary::RunOutput;

/// Stops a job whose input key has a newer upload's job recorded: marks it SUPERSEDED (the
/// reason on its record) and returns `TreemuxSuperseded`.
pub(super) async fn ensure_newest<S: JobStore, O: MultipartStore + ObjectStore, X>(
    services: &Services<S, O, X>,
    manifest: &JobManifest,
) -> Result<(), HandlerError> {
    let (bucket, key) = (&manifest.source_bucket, &manifest.source_key);
    match services.store.latest_job(bucket, key).await? {
        Some(newest) if newest != manifest.job_id => {
            let reason = format!(
                "superseded by job {newest}: s3://{bucket}/{key} was uploaded again while this job ran; its output is not written"
            );
            supersede(services, &manifest.job_id, &newest, reason.clone()).await?;
            let paths = JobPaths::new(&services.config.scratch_root, &manifest.job_id);
            end_unfinished_job(&services.objects, &paths).await;
            Err(HandlerError::superseded(format!(
                "job {}: {reason}",
                manifest.job_id
            )))
        }
        _ => Ok(()),
    }
}

/// The job's multipart upload of its output: created once, its id recorded in the job's
/// scratch (written once, so concurrent or repeated roots share one upload), and reused by a
/// retried root.
async fn output_upload<O: MultipartStore>(
    objects: &O,
    paths: &JobPaths,
    bucket: &str,
    key: &str,
) -> Result<String, HandlerError> {
    let record = paths.dir.join("upload.json");
    let read = |bytes: Vec<u8>| {
        serde_json::from_slice::<String>(&bytes)
            .map_err(|e| HandlerError::media(format!("{}: {e}", record.display())))
    };
    if let Ok(bytes) = tokio::fs::read(&record).await {
        return read(bytes);
    }
    let created = objects.create_upload(bucket, key).await?;
    let json = serde_json::to_vec(&created).map_err(|e| HandlerError::media(e.to_string()))?;
    if write_once(&record, json).await? {
        Ok(created)
    } else {
        // Another attempt recorded its upload first: that one is the job's.
        let _ = objects.abort_upload(bucket, key, &created).await;
        let bytes = tokio::fs::read(&record)
            .await
            .map_err(|e| HandlerError::transient(format!("{}: {e}", record.display())))?;
        read(bytes)
    }
}

/// Ends a job that ends without its output (failed or superseded): aborts its output upload,
/// if merge-audio started one (its parts are billed until aborted), removes its scratch
/// directory, then its kept segment objects. In that order: a segment task still running
/// keeps its file and then looks for the scratch directory, deleting the object itself when it
/// is gone ([`crate::segment_objects::ObjectKeeper`]), so no object outlives the job.
pub(super) async fn end_unfinished_job<O: MultipartStore + ObjectStore>(
    objects: &O,
    paths: &JobPaths,
) {
    let manifest = tokio::fs::read(paths.manifest())
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice::<JobManifest>(&bytes).ok());
    let upload = tokio::fs::read(paths.dir.join("upload.json"))
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice::<String>(&bytes).ok());
    if let (Some(manifest), Some(upload)) = (&manifest, upload) {
        let aborted = objects
            .abort_upload(&manifest.output_bucket, &manifest.output_key, &upload)
            .await;
        tracing::info!(job_id = %manifest.job_id, aborted = aborted.is_ok(), "output upload aborted");
    }
    remove_dir_retrying(&paths.dir).await;
    if let Some(manifest) = &manifest {
        remove_kept_segments(objects, manifest).await;
    }
}

/// Removes `dir` and everything in it. A task of the job may still be running (Lambda finishes
/// an invocation whose execution has ended), and a file it renames or creates while the walk
/// runs makes one pass fail part way: try again, a few times, briefly.
async fn remove_dir_retrying(dir: &std::path::Path) {
    for attempt in 1..=5u64 {
        match tokio::fs::remove_dir_all(dir).await {
            Ok(()) => return,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
            Err(error) => {
                tracing::info!(dir = %dir.display(), attempt, %error, "scratch removal retried");
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            }
        }
    }
    tracing::warn!(dir = %dir.display(), "scratch not fully removed");
}

/// upload-parts tasks at most per job (an inline Map runs about 40 iterations at once).
pub const UPLOAD_TASKS: usize = 40;

/// merge-audio: finish the root. Lays the output out, uploads its part 1 and returns the other
/// parts in groups for upload-parts ([`RootStep::UploadParts`]); with `complete`, or when the
/// output is one part, completes the upload with the recorded ETags. An output that cannot be
/// laid out is muxed once, streamed straight into the upload. Then the job is marked SUCCEEDED
/// and its scratch files removed. A job superseded by a newer upload of its key writes nothing
/// (its upload is aborted).
pub async fn merge_audio<S, O, X>(
    services: &Services<S, O, X>,
    task: JobTask,
) -> Result<RootStep, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
{
    let job_id = task.job_id.clone();
    let result = super::task(&services.store, &job_id, merge_audio_body(services, task)).await;
    if result
        .as_ref()
        .is_err_and(|error| error.kind == treemux_core::ErrorKind::Superseded)
    {
        // The root is the job's last task: a superseded job's upload and scratch go now (every
        // segment and merge finished before it), whichever check stopped it.
        let paths = JobPaths::new(&services.config.scratch_root, &job_id);
        end_unfinished_job(&services.objects, &paths).await;
    }
    result
}

async fn merge_audio_body<S, O, X>(
    services: &Services<S, O, X>,
    task: JobTask,
) -> Result<RootStep, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
{
    let started = Instant::now();
    let manifest = read_manifest(&services.config, &task.job_id).await?;
    let paths = JobPaths::new(&services.config.scratch_root, &task.job_id);
    ensure_newest(services, &manifest).await?;
    let job = manifest.job();
    // The same decision the local runner makes: what the output keeps, and a warning for the rest.
    let warnings = job.warnings();
    let layout = paths.layout_of(&manifest);
    let (bytes, outputs) = if let Some(format) = manifest.packaging {
        // A package instead of files: no output by parts.
        root_outputs::upload_package(services, &manifest, &job, &layout, format).await?
    } else {
        let bytes = rung_0(services, &task, &manifest, &paths, &job, &layout).await?;
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(step) => return Ok(step),
        };
        // The other rungs of a ladder, each its own object.
        let outputs =
            root_outputs::upload_other_rungs(services, &manifest, &job, &layout, bytes).await?;
        let total = if outputs.is_empty() {
            bytes
        } else {
            outputs.iter().map(|o| o.bytes).sum()
        };
        (total, outputs)
    };
    // The output is complete: its thumbnails (if asked for) beside it, before the success.
    let thumbnails = super::thumbnails::upload_thumbnails(services, &manifest, &paths).await?;
    let seconds = started.elapsed().as_secs_f64();
    services
        .store
        .update_job(
            &task.job_id,
            &JobUpdate::Stage {
                stage: Stage::Remux,
                seconds,
            },
            now(),
        )
        .await?;
    let output = RunOutput {
        output_bytes: bytes,
        warnings,
        outputs,
        thumbnails,
    };
    services
        .store
        .update_job(&task.job_id, &JobUpdate::Output(output), now())
        .await?;
    // The output is written: its kept segments go before the success is told (a reader of
    // the success finds nothing of the job left but its output).
    remove_kept_segments(&services.objects, &manifest).await;
    services
        .store
        .update_job(&task.job_id, &JobUpdate::Succeeded, now())
        .await?;
    super::announce::state(services, &task.job_id).await;
    let _ = tokio::fs::remove_dir_all(&paths.dir).await;
    // Again, now that the job is SUCCEEDED and its scratch gone: a duplicate segment task that
    // kept its file after the first removal deletes it itself only once it sees either.
    remove_kept_segments(&services.objects, &manifest).await;
    tracing::info!(
        job_id = %task.job_id,
        key = %manifest.source_key,
        output = %manifest.output_key,
        segments = manifest.tree.real_leaves,
        bytes,
        outcome = "succeeded",
        "merge-audio"
    );
    Ok(RootStep::Done(JobDone {
        job_id: task.job_id,
        output: format!("s3://{}/{}", manifest.output_bucket, manifest.output_key),
        bytes,
    }))
}

/// Rung 0's file (the output of a job without a ladder): its bytes once its upload is complete,
/// or the upload-parts step to return first (`Err`).
async fn rung_0<S, O, X>(
    services: &Services<S, O, X>,
    task: &JobTask,
    manifest: &JobManifest,
    paths: &JobPaths,
    job: &treemux_core::engine::JobSpec,
    layout: &treemux_core::engine::ScratchLayout,
) -> Result<Result<u64, RootStep>, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
{
    let (bucket, key) = (manifest.output_bucket.clone(), manifest.output_key.clone());
    let completed_marker = paths.dir.join("upload-completed");
    let bytes = if completed_marker.is_file() {
        // An earlier attempt completed the upload and died before recording the job's success.
        tokio::fs::read_to_string(&completed_marker)
            .await
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    } else if task.complete {
        complete_by_parts(services, manifest, paths).await?
    } else {
        // The audio first: joined once from the pieces the segments copied (MP4/MOV), found
        // when split-audio extracted it, or a streaming pass if the pieces do not add up.
        let source = job_source(services, manifest).await?;
        let (audio_job, audio_layout, audio_source) = (job.clone(), layout.clone(), source.clone());
        blocking(move || {
            engine::finish_audio(&audio_source, &audio_job, &audio_layout)
                .map(|_| ())
                .map_err(HandlerError::from)
        })
        .await?;
        // The segment files the layout pass and part 1 read, and (one pass) all of them:
        // fetched into this task's own storage when they are kept as objects.
        let segments = upload_parts::local_segments(&services.config, manifest)?;
        let segment_files = segments.as_ref().map(|(local, place)| (local, place));
        let layout_scratch = match segment_files {
            Some((local, place)) => {
                let needed = engine::segments_for_layout(job, layout)?;
                local.fetch(&services.objects, place, needed).await?;
                local.layout(layout.clone())
            }
            None => layout.clone(),
        };
        let (layout_job, layout_source) = (job.clone(), source.clone());
        let laid_out = blocking(move || {
            engine::lay_out_root(&layout_source, &layout_job, &layout_scratch)
                .map_err(HandlerError::from)
        })
        .await?;
        match laid_out {
            RootLayout::Parts(output) => {
                let parts = output.parts().map_err(|error| {
                    HandlerError::invalid(format!("s3://{bucket}/{key}: {error}"))
                })?;
                let upload_id = output_upload(&services.objects, paths, &bucket, &key).await?;
                let output = Arc::new(output);
                let first = parts
                    .first()
                    .ok_or_else(|| HandlerError::internal("no parts"))?;
                upload_parts::upload_part(
                    &services.objects,
                    &services.config.crashes,
                    paths,
                    &output,
                    first,
                    (&bucket, &key, &upload_id),
                    segment_files,
                )
                .await?;
                if parts.len() > 1 {
                    let groups = upload_parts::part_groups(&task.job_id, parts.len(), UPLOAD_TASKS);
                    tracing::info!(
                        job_id = %task.job_id,
                        parts = parts.len(),
                        groups = groups.len(),
                        bytes = output.total_bytes,
                        "merge-audio: laid out, part 1 uploaded"
                    );
                    return Ok(Err(RootStep::UploadParts {
                        job_id: task.job_id.clone(),
                        groups,
                    }));
                }
                complete_by_parts(services, manifest, paths).await?
            }
            RootLayout::OnePass(reason) => {
                tracing::info!(job_id = %task.job_id, reason, "merge-audio: one pass");
                stream_output(services, manifest, paths, source, segment_files).await?
            }
        }
    };
    Ok(Ok(bytes))
}

/// Completes the output's upload with the ETags the part uploads recorded, checked right before
/// that the job is still its key's newest (else the upload is aborted); returns the output's
/// length.
async fn complete_by_parts<S, O, X>(
    services: &Services<S, O, X>,
    manifest: &JobManifest,
    paths: &JobPaths,
) -> Result<u64, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
{
    let (bucket, key) = (&manifest.output_bucket, &manifest.output_key);
    let output = upload_parts::stored_layout(&paths.layout())?;
    let parts = output
        .parts()
        .map_err(|error| HandlerError::invalid(format!("s3://{bucket}/{key}: {error}")))?;
    let upload_id = upload_parts::recorded_upload(paths).await?;
    let e_tags = upload_parts::recorded_e_tags(paths, &parts).await?;
    if let Err(error) = ensure_newest(services, manifest).await {
        let _ = services.objects.abort_upload(bucket, key, &upload_id).await;
        return Err(error);
    }
    services
        .objects
        .complete_upload(bucket, key, &upload_id, &e_tags)
        .await?;
    let bytes = output.total_bytes;
    let marker = paths.dir.join("upload-completed");
    let _ = write_once(&marker, bytes.to_string().into_bytes()).await;
    Ok(bytes)
}

/// The output muxed once, streamed straight into its multipart upload (the path for outputs
/// that cannot be laid out by sizes), the upload completed; returns the output's length. Kept
/// segment objects are all fetched first (this task's local storage must hold the video).
async fn stream_output<S, O, X>(
    services: &Services<S, O, X>,
    manifest: &JobManifest,
    paths: &JobPaths,
    source: treemux_core::media::source::Source,
    segments: upload_parts::SegmentFiles<'_>,
) -> Result<u64, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
{
    let (bucket, key) = (manifest.output_bucket.clone(), manifest.output_key.clone());
    let completed_marker = paths.dir.join("upload-completed");
    let job = manifest.job();
    let mut layout = paths.layout_of(manifest);
    if let Some((local, place)) = segments {
        let every = engine::segments_for_root(&job, &layout)?;
        local.fetch(&services.objects, place, every).await?;
        layout = local.layout(layout);
    }
    // Refused before anything is uploaded: an output S3 cannot take in 10,000 parts of at
    // most 5 GiB (the segments and audio, with room for the index).
    let media = engine::media_bytes(&job, &layout);
    let plan = plan_parts(media + media / 10, 0)
        .map_err(|error| HandlerError::invalid(format!("s3://{bucket}/{key}: {error}")))?;
    let upload_id = output_upload(&services.objects, paths, &bucket, &key).await?;
    let writer = PartWriter::new(
        Arc::new(services.objects.clone()),
        tokio::runtime::Handle::current(),
        &bucket,
        &key,
        &upload_id,
        plan,
    );
    let parts = writer.parts.clone();
    let name = PathBuf::from(format!("s3://{bucket}/{key}"));
    blocking(move || {
        let target = MuxTarget::Stream {
            name,
            writer: Box::new(writer),
        };
        engine::finish_root(&source, &job, &layout, target).map_err(HandlerError::from)
    })
    .await?;
    let parts = std::mem::take(&mut *parts.lock().unwrap_or_else(|p| p.into_inner()));
    // The final write: checked again right before it, so an older upload's job that
    // reaches this point after a newer upload of the key was analyzed cannot replace the
    // newer result.
    if let Err(error) = ensure_newest(services, manifest).await {
        let _ = services
            .objects
            .abort_upload(&bucket, &key, &upload_id)
            .await;
        return Err(error);
    }
    let bytes = upload::complete(&services.objects, &bucket, &key, &upload_id, parts).await?;
    let _ = write_once(&completed_marker, bytes.to_string().into_bytes()).await;
    Ok(bytes)
}
