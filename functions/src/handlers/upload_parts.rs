//! An output written by parts: upload-parts (one group of parts, each filled from the job's
//! scratch files by the core's `engine::write_output_part` and uploaded, its ETag recorded on
//! scratch) and the helpers merge-audio uses for part 1 and for completing the upload with the
//! last recorded ETags.
//!
//! A part uploaded again (a retried task, a duplicate delivery) replaces itself in S3 and its
//! recorded ETag, so the ETags that complete the upload are the last recorded for every number.

use super::{blocking, read_manifest, Services};
use crate::error::HandlerError;
use crate::events::{PartGroup, PartsUploaded};
use crate::job::{JobManifest, JobPaths};
use crate::ports::ObjectStore;
use crate::segment_objects::{LocalSegments, SegmentObjects};
use crate::upload::MultipartStore;
use std::path::PathBuf;
use treemux_core::engine::{self, ScratchLayout};
use treemux_core::fault::{CrashPlan, CrashPoint};
use treemux_core::output_layout::{OutputLayout, OutputPart};
use treemux_core::state::JobStore;

/// Where the ETag of part `number` is recorded.
fn e_tag_path(paths: &JobPaths, number: i32) -> PathBuf {
    paths.dir.join(format!("part-{number:05}.etag"))
}

/// The job's output layout, which merge-audio stored before any part was uploaded, without the
/// header: the parts after the first and the completion never need its bytes, and reading it in
/// every task would read the output's whole index (megabytes an hour) again per task.
pub(super) fn stored_layout(layout: &ScratchLayout) -> Result<OutputLayout, HandlerError> {
    engine::finished_layout_without_header(layout).ok_or_else(|| {
        HandlerError::internal(format!(
            "{}: the output's layout is missing, so its parts cannot be written",
            layout.output_layout().display()
        ))
    })
}

/// The upload id merge-audio recorded for the job's output.
pub(super) async fn recorded_upload(paths: &JobPaths) -> Result<String, HandlerError> {
    let record = paths.dir.join("upload.json");
    let bytes = tokio::fs::read(&record)
        .await
        .map_err(|e| HandlerError::internal(format!("{}: {e}", record.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| HandlerError::internal(format!("{}: {e}", record.display())))
}

/// Where the segment files a task reads come from: its own copies, fetched from the job's
/// segment objects, or (`None`) the job's scratch.
pub(super) type SegmentFiles<'a> = Option<(&'a LocalSegments, &'a SegmentObjects)>;

/// This task's copies of `manifest`'s segment objects (`None` when its segments are on
/// scratch), in the function's local storage.
pub(super) fn local_segments(
    config: &crate::handlers::Config,
    manifest: &JobManifest,
) -> Result<Option<(LocalSegments, SegmentObjects)>, HandlerError> {
    manifest
        .segment_objects
        .as_ref()
        .map(|place| {
            LocalSegments::new(&config.local_dir, &manifest.job_id)
                .map(|local| (local, place.clone()))
        })
        .transpose()
}

/// Fills `part` from the segment files (`segments`) and the scratch files, uploads it and
/// records its ETag; returns its bytes. The segment copies it fetched go once it is filled:
/// parts are cut where segments start, so no other part reads them.
///
/// Crash points: `after-part-upload:N` (uploaded, ETag not recorded: the retry uploads it
/// again and records that ETag) and `after-part-record:N`.
pub(super) async fn upload_part<O: MultipartStore + ObjectStore>(
    objects: &O,
    crashes: &CrashPlan,
    paths: &JobPaths,
    output: &std::sync::Arc<OutputLayout>,
    part: &OutputPart,
    (bucket, key, upload_id): (&str, &str, &str),
    segments: SegmentFiles<'_>,
) -> Result<u64, HandlerError> {
    let mut layout = paths.layout();
    let mut fetched = Vec::new();
    if let Some((local, place)) = segments {
        fetched = engine::segments_for_part(output, part);
        local.fetch(objects, place, fetched.iter().copied()).await?;
        layout = local.layout(layout);
    }
    let (laid_out, filled) = (output.clone(), part.clone());
    let bytes = blocking(move || {
        engine::write_output_part(&layout, &laid_out, &filled).map_err(HandlerError::from)
    })
    .await?;
    if let Some((local, _)) = segments {
        local.forget(fetched);
    }
    let len = bytes.len() as u64;
    let e_tag = objects
        .upload_part(bucket, key, upload_id, part.number, bytes)
        .await?;
    crashes.at(CrashPoint::AfterPartUpload(part.number));
    let record = e_tag_path(paths, part.number);
    let written = record.clone();
    blocking(move || {
        treemux_core::atomic_file::write_atomically(&written, e_tag.as_bytes())
            .map_err(|e| HandlerError::transient(format!("{}: {e}", written.display())))
    })
    .await?;
    crashes.at(CrashPoint::AfterPartRecord(part.number));
    Ok(len)
}

/// The recorded ETag of every part of `parts`, in number order; an error naming the first part
/// that has none (a part task that never ran: the state machine did not run them all).
pub(super) async fn recorded_e_tags(
    paths: &JobPaths,
    parts: &[OutputPart],
) -> Result<Vec<(i32, String)>, HandlerError> {
    let mut e_tags = Vec::with_capacity(parts.len());
    for part in parts {
        let record = e_tag_path(paths, part.number);
        let e_tag = tokio::fs::read_to_string(&record).await.map_err(|e| {
            HandlerError::internal(format!(
                "part {} of the output was not uploaded ({}: {e})",
                part.number,
                record.display()
            ))
        })?;
        e_tags.push((part.number, e_tag));
    }
    Ok(e_tags)
}

/// upload-parts: parts `first..=last` of the job's output, each filled from the scratch files
/// and uploaded into the upload merge-audio created.
pub async fn upload_parts<S, O, X>(
    services: &Services<S, O, X>,
    group: PartGroup,
) -> Result<PartsUploaded, HandlerError>
where
    S: JobStore,
    O: MultipartStore + ObjectStore,
{
    let job_id = group.job_id.clone();
    super::task(&services.store, &job_id, async {
        let manifest = read_manifest(&services.config, &group.job_id).await?;
        let paths = JobPaths::new(&services.config.scratch_root, &group.job_id);
        let output = std::sync::Arc::new(stored_layout(&paths.layout())?);
        let parts = output
            .parts()
            .map_err(|error| HandlerError::invalid(error.to_string()))?;
        let upload_id = recorded_upload(&paths).await?;
        let target = (
            manifest.output_bucket.as_str(),
            manifest.output_key.as_str(),
            upload_id.as_str(),
        );
        let segments = local_segments(&services.config, &manifest)?;
        let segments = segments.as_ref().map(|(local, place)| (local, place));
        let mut uploaded = PartsUploaded { parts: 0, bytes: 0 };
        for number in group.first..=group.last {
            let part = parts
                .iter()
                .find(|part| part.number == number)
                .ok_or_else(|| {
                    HandlerError::invalid(format!(
                        "the output has {} parts, no part {number}",
                        parts.len()
                    ))
                })?;
            uploaded.bytes += upload_part(
                &services.objects,
                &services.config.crashes,
                &paths,
                &output,
                part,
                target,
                segments,
            )
            .await?;
            uploaded.parts += 1;
        }
        tracing::info!(
            job_id = %group.job_id,
            first = group.first,
            last = group.last,
            bytes = uploaded.bytes,
            "upload-parts"
        );
        Ok(uploaded)
    })
    .await
}

/// The groups of parts after part 1 for at most `tasks` upload-parts tasks: contiguous, as even
/// as whole parts allow, ascending.
pub(super) fn part_groups(job_id: &str, parts: usize, tasks: usize) -> Vec<PartGroup> {
    let later = parts.saturating_sub(1);
    let groups = later.min(tasks.max(1));
    let mut out = Vec::with_capacity(groups);
    let mut first = 2;
    for group in 0..groups {
        let size = later / groups + usize::from(group < later % groups);
        let last = first + size as i32 - 1;
        out.push(PartGroup {
            job_id: job_id.to_owned(),
            first,
            last,
        });
        first = last + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::part_groups;

    #[test]
    fn groups_cover_every_part_after_the_first_once() {
        for parts in [1usize, 2, 3, 41, 42, 268, 10_000] {
            let groups = part_groups("j", parts, 40);
            assert!(groups.len() <= 40);
            let numbers: Vec<i32> = groups.iter().flat_map(|g| g.first..=g.last).collect();
            assert_eq!(
                numbers,
                (2..=parts as i32).collect::<Vec<_>>(),
                "{parts} parts"
            );
        }
    }
}
