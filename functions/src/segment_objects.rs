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
/// A job can end while a task of it still runs (job-failed, a stopped execution): the end
/// removes the job's scratch directory, then its segment objects. A keeper that finds the
/// scratch directory gone after its upload removes the object itself, so whichever comes
/// last, no object outlives the job.
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
        // Storage that failed: transient, as a failed write to scratch would be.
        let failed = |message: String| treemux_core::Error::Io {
            path: self.place.name(index).into(),
            source: std::io::Error::other(message),
        };
        self.runtime
            .block_on(self.objects.put_from_path(file, &self.place.bucket, &key))
            .map_err(|error| failed(error.to_string()))?;
        if !self.scratch_dir.is_dir() {
            let removed = self
                .runtime
                .block_on(self.objects.delete_objects(&self.place.bucket, &[key]));
            return Err(failed(format!(
                "the job ended while segment {index} was encoded ({} is gone); its object is {}",
                self.scratch_dir.display(),
                if removed.is_ok() {
                    "removed"
                } else {
                    "left to the bucket's lifecycle rule"
                }
            )));
        }
        Ok(())
    }
}

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

    /// Fetches the segments `indexes` that are not here yet from `place`. A segment recorded done
    /// whose object is missing is treemux's own state broken (removed too early, or never
    /// kept): an internal error naming it, not the upload's fault.
    pub async fn fetch<O: ObjectStore>(
        &self,
        objects: &O,
        place: &SegmentObjects,
        indexes: impl IntoIterator<Item = u32>,
    ) -> Result<u64, HandlerError> {
        let mut bytes = 0;
        for index in indexes {
            let path = self.dir.path().join(ScratchLayout::segment_name(index));
            if path.is_file() {
                continue;
            }
            let key = place.key(index);
            bytes += objects
                .get_to_path(&place.bucket, &key, &ObjectVersion::default(), &path)
                .await
                .map_err(|error| match error {
                    ObjectError::NotFound { .. } => HandlerError::internal(format!(
                        "segment {index} is recorded done but {} is missing",
                        place.name(index)
                    )),
                    other => HandlerError::from(other),
                })?;
        }
        Ok(bytes)
    }

    /// Removes the copies of `indexes` (read, not needed again by this task).
    pub fn forget(&self, indexes: impl IntoIterator<Item = u32>) {
        for index in indexes {
            let _ = std::fs::remove_file(self.dir.path().join(ScratchLayout::segment_name(index)));
        }
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
