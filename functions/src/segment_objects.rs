//! Segment files kept as objects between the task that encodes them and the tasks that read
//! them, so the video never passes through EFS (the job's scratch keeps the indexes, the audio
//! and the records): split-and-convert encodes into a directory of its own and uploads the file
//! ([`ObjectKeeper`], the core's [`SegmentKeeper`] for this runner) before it records the
//! segment done; the writers of the output fetch the segments their bytes come from
//! ([`LocalSegments`]); the job's end removes them ([`remove_segment_objects`]). Each segment is
//! written once and read once (by the one part that starts in it), and S3 charges requests,
//! not bytes, inside its region, where EFS charges every byte written and read.

use crate::error::HandlerError;
use crate::ports::{ObjectError, ObjectStore, ObjectVersion};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use treemux_core::engine::{ScratchLayout, SegmentKeeper};

/// Where one job's segment files are kept: `s3://{bucket}/{prefix}node-0-<i>.nut`. Recorded in
/// the job's manifest, so every task of the job agrees whatever the configuration says later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentObjects {
    pub bucket: String,
    /// Ends with `/`: the job id's folder.
    pub prefix: String,
}

impl SegmentObjects {
    /// The place of job `job_id`'s segments in `bucket`.
    pub fn for_job(bucket: &str, job_id: &str) -> Self {
        Self {
            bucket: bucket.to_owned(),
            prefix: format!("{job_id}/"),
        }
    }

    /// The key of segment `index`'s file.
    pub fn key(&self, index: u32) -> String {
        format!("{}{}", self.prefix, ScratchLayout::segment_name(index))
    }

    fn name(&self, index: u32) -> String {
        format!("s3://{}/{}", self.bucket, self.key(index))
    }
}

/// Keeps a committed segment file by uploading it (a repeated upload replaces the object).
/// Called on a blocking thread (the encode's), so it waits on the runtime `runtime`.
///
/// A job can end while a task of it still runs (job-failed, a stopped execution, a duplicate
/// delivery after the success): the end records the job's status, removes its scratch
/// directory, then its segment objects. A keeper that finds the scratch directory gone after
/// its upload removes the object itself, and split-and-convert, once the keeper is done, reads
/// the job's record (strongly consistent) and removes its object if the job has ended
/// ([`remove_if_job_ended`]): whichever comes last, no object outlives the job (NFS may show a
/// removed directory for a while; the record cannot).
#[derive(Debug)]
pub struct ObjectKeeper<O> {
    pub objects: O,
    pub place: SegmentObjects,
    /// The job's scratch directory.
    pub scratch_dir: PathBuf,
    pub runtime: tokio::runtime::Handle,
}

impl<O: ObjectStore> SegmentKeeper for ObjectKeeper<O> {
    fn keep(&self, index: u32, file: &Path) -> Result<(), treemux_core::Error> {
        let key = self.place.key(index);
        let failed = |reason: String, retryable: bool| treemux_core::Error::Keep {
            path: self.place.name(index).into(),
            reason,
            retryable,
        };
        self.runtime
            .block_on(self.objects.put_from_path(file, &self.place.bucket, &key))
            // Storage that failed is worth a retry, as a failed write to scratch would be; a
            // refusal (no such bucket, access denied) is the deployment's, the same again.
            .map_err(|error| {
                let retryable = !matches!(error, ObjectError::Refused { .. });
                failed(error.to_string(), retryable)
            })?;
        if !self.scratch_dir.is_dir() {
            let removed = self
                .runtime
                .block_on(self.objects.delete_objects(&self.place.bucket, &[key]));
            let left = if removed.is_ok() {
                "removed"
            } else {
                "left to the bucket's lifecycle rule"
            };
            return Err(failed(
                format!(
                    "the job ended while segment {index} was encoded ({} is gone); its object is {left}",
                    self.scratch_dir.display()
                ),
                true,
            ));
        }
        Ok(())
    }
}

/// Segment GETs a task has in flight at once.
const FETCHES_AT_ONCE: usize = 8;

/// The prefix of every [`LocalSegments`] directory's name.
const LOCAL_PREFIX: &str = "segments-";

/// Removes every [`LocalSegments`] directory under `local_dir`: for a process that serves tasks,
/// at its start, when none of its tasks can be using one. Each process that serves tasks needs
/// its own `local_dir` (a Lambda environment runs one invocation at a time; the local stack
/// gives its worker one).
pub fn clear_local_copies(local_dir: &Path) {
    for entry in std::fs::read_dir(local_dir).into_iter().flatten().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(LOCAL_PREFIX)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A task's own copies of the segment files it reads, fetched on demand into a temporary
/// directory under the function's local storage, which goes when this is dropped.
#[derive(Debug)]
pub struct LocalSegments {
    dir: tempfile::TempDir,
}

impl LocalSegments {
    /// An empty directory for job `job_id`'s segments under `local_dir` (created if missing).
    pub fn new(local_dir: &Path, job_id: &str) -> Result<Self, HandlerError> {
        let local = |error: std::io::Error| {
            HandlerError::transient(format!("{}: {error}", local_dir.display()))
        };
        std::fs::create_dir_all(local_dir).map_err(local)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{LOCAL_PREFIX}{job_id}-"))
            .tempdir_in(local_dir)
            .map_err(local)?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `layout` with rung 0's segment files in this directory.
    pub fn layout(&self, layout: ScratchLayout) -> ScratchLayout {
        layout.with_segments_in(self.dir.path())
    }

    /// Fetches the segments `indexes` that are not here yet from `place`, a few at once (each
    /// GET waits on its first byte; the segments of one part are read back to back). A segment
    /// recorded done whose object is missing is treemux's own state broken (removed too early,
    /// or never kept): an internal error naming it, not the upload's fault.
    pub async fn fetch<O: ObjectStore>(
        &self,
        objects: &O,
        place: &SegmentObjects,
        indexes: impl IntoIterator<Item = u32>,
    ) -> Result<u64, HandlerError> {
        let mut missing = indexes.into_iter().filter_map(|index| {
            let path = self.dir.path().join(ScratchLayout::segment_name(index));
            (!path.is_file()).then_some((index, path))
        });
        let mut pending = tokio::task::JoinSet::new();
        let mut bytes = 0;
        loop {
            while pending.len() < FETCHES_AT_ONCE {
                let Some((index, path)) = missing.next() else {
                    break;
                };
                let (objects, place) = (objects.clone(), place.clone());
                pending.spawn(async move {
                    objects
                        .get_to_path(
                            &place.bucket,
                            &place.key(index),
                            &ObjectVersion::default(),
                            &path,
                        )
                        .await
                        .map_err(|error| match error {
                            ObjectError::NotFound { .. } => HandlerError::internal(format!(
                                "segment {index} is recorded done but {} is missing",
                                place.name(index)
                            )),
                            other => HandlerError::from(other),
                        })
                });
            }
            // Dropping the set on an error stops the other fetches.
            match pending.join_next().await {
                Some(joined) => {
                    bytes += joined.map_err(|error| {
                        HandlerError::transient(format!(
                            "a segment fetch ended abnormally: {error}"
                        ))
                    })??
                }
                None => return Ok(bytes),
            }
        }
    }

    /// Removes the copies of `indexes` (read, not needed again by this task).
    pub fn forget(&self, indexes: impl IntoIterator<Item = u32>) {
        for index in indexes {
            let _ = std::fs::remove_file(self.dir.path().join(ScratchLayout::segment_name(index)));
        }
    }
}

/// Removes the segment objects of `manifest`'s job, if it keeps them as objects (see
/// [`remove_segment_objects`]).
pub async fn remove_kept_segments<O: ObjectStore>(objects: &O, manifest: &crate::job::JobManifest) {
    if let Some(place) = &manifest.segment_objects {
        remove_segment_objects(objects, place, manifest.tree.real_leaves).await;
    }
}

/// Removes a job's segment objects `0..segments` (a missing one is fine): at the job's end,
/// whichever way it ended. Failures are logged, not returned: the bucket's lifecycle rule
/// removes what is left after a day.
pub async fn remove_segment_objects<O: ObjectStore>(
    objects: &O,
    place: &SegmentObjects,
    segments: u32,
) {
    let keys: Vec<String> = (0..segments).map(|index| place.key(index)).collect();
    match objects.delete_objects(&place.bucket, &keys).await {
        Ok(()) => {
            tracing::debug!(bucket = %place.bucket, prefix = %place.prefix, segments, "segment objects removed")
        }
        Err(error) => {
            tracing::warn!(%error, "segment objects were not removed (the bucket's lifecycle rule will)")
        }
    }
}

/// After segment `index`'s task kept it: removes its object again if job `job_id` has ended
/// meanwhile (SUCCEEDED, FAILED or SUPERSEDED: the job's end may have removed the objects
/// before this one was kept). A record that cannot be read leaves the object to the lifecycle
/// rule.
pub async fn remove_if_job_ended<S: treemux_core::state::JobStore, O: ObjectStore>(
    store: &S,
    objects: &O,
    job_id: &str,
    place: &SegmentObjects,
    index: u32,
) {
    use treemux_core::state::JobStatus;
    let ended = match store.get_job(job_id).await {
        Ok(Some(job)) => matches!(
            job.status,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Superseded
        ),
        // No record: the job is gone (expired) or never was; nothing else will remove it.
        Ok(None) => true,
        Err(_) => false,
    };
    if ended {
        let removed = objects
            .delete_objects(&place.bucket, &[place.key(index)])
            .await;
        tracing::info!(
            job_id,
            segment = index,
            removed = removed.is_ok(),
            "the job ended while its segment was kept: its object removed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::LocalDirStore;
    use treemux_core::state::{InMemoryStateStore, JobRecord, JobStatus, JobStore};

    fn record(job_id: &str, status: JobStatus) -> JobRecord {
        JobRecord {
            job_id: job_id.into(),
            status,
            source: "s3://in/a.mp4".into(),
            source_version: String::new(),
            upload: String::new(),
            output: "s3://out/a.mp4.mp4".into(),
            segments: 1,
            merges: 0,
            segments_done: Default::default(),
            merges_done: Default::default(),
            merge_runs: 0,
            stage_seconds: Default::default(),
            progress: Default::default(),
            error: None,
            superseded_by: None,
            result: Default::default(),
            settings: None,
            settings_from: Default::default(),
            created_at: 0,
            updated_at: 0,
        }
    }

    /// A store and segment 0 of job `job_id` kept in it.
    async fn kept(dir: &Path, job_id: &str) -> (LocalDirStore, SegmentObjects) {
        let objects = LocalDirStore {
            root: dir.join("buckets"),
        };
        let place = SegmentObjects::for_job("segments", job_id);
        let file = dir.join("segment.nut");
        std::fs::write(&file, b"segment bytes").expect("write");
        objects
            .put_from_path(&file, &place.bucket, &place.key(0))
            .await
            .expect("put");
        (objects, place)
    }

    #[tokio::test]
    async fn a_segment_kept_after_its_job_ended_is_removed_and_a_running_jobs_stays() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = InMemoryStateStore::new();
        for (job_id, status, stays) in [
            ("a1", JobStatus::Running, true),
            ("b2", JobStatus::Failed, false),
            ("c3", JobStatus::Succeeded, false),
            ("d4", JobStatus::Superseded, false),
        ] {
            store
                .create_job(&record(job_id, status))
                .await
                .expect("record");
            let (objects, place) = kept(dir.path(), job_id).await;
            remove_if_job_ended(&store, &objects, job_id, &place, 0).await;
            assert_eq!(
                objects
                    .exists(&place.bucket, &place.key(0))
                    .await
                    .expect("exists"),
                stays,
                "{status:?}"
            );
        }
        // No record at all: nothing else would ever remove it.
        let (objects, place) = kept(dir.path(), "e5").await;
        remove_if_job_ended(&store, &objects, "e5", &place, 0).await;
        assert!(!objects
            .exists(&place.bucket, &place.key(0))
            .await
            .expect("exists"));
    }

    #[tokio::test]
    async fn a_keeper_that_finds_the_scratch_gone_removes_what_it_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let objects = LocalDirStore {
            root: dir.path().join("buckets"),
        };
        let file = dir.path().join("node-0-0.nut");
        std::fs::write(&file, b"segment bytes").expect("write");
        let scratch = dir.path().join("efs/jobs/ab");
        std::fs::create_dir_all(&scratch).expect("scratch");
        let keeper = ObjectKeeper {
            objects: objects.clone(),
            place: SegmentObjects::for_job("segments", "ab"),
            scratch_dir: scratch.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let keeper = std::sync::Arc::new(keeper);
        let keep = |keeper: std::sync::Arc<ObjectKeeper<LocalDirStore>>, file: PathBuf| {
            tokio::task::spawn_blocking(move || keeper.keep(0, &file))
        };
        keep(keeper.clone(), file.clone())
            .await
            .expect("join")
            .expect("kept while the job runs");
        assert!(objects
            .exists("segments", "ab/node-0-0.nut")
            .await
            .expect("exists"));
        std::fs::remove_dir_all(&scratch).expect("the job ends");
        let error = keep(keeper.clone(), file.clone())
            .await
            .expect("join")
            .expect_err("the job ended");
        assert!(error.to_string().contains("the job ended"), "{error}");
        assert_eq!(error.kind(), treemux_core::ErrorKind::Transient);
        assert!(!objects
            .exists("segments", "ab/node-0-0.nut")
            .await
            .expect("exists"));
    }
}
