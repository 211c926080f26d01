//! The Lambda handlers, generic over the state store, the object store and the execution
//! starter, so tests run them with in-memory and local-directory fakes and the binaries with
//! DynamoDB, S3 and Step Functions. Each one is a thin adapter over the core library: media work
//! runs on a blocking thread (`spawn_blocking`), never on the async runtime.
//!
//! - this module: the services and configuration every handler takes, and what they share
//!   (the job's manifest and source, fail-fast on dead jobs, failures recorded on the job);
//! - `announce.rs`: the job events each state change sends ([`crate::job_events`]);
//! - `event_jobs.rs`: an S3 event's uploads and the job id each one names;
//! - `analyze.rs`: an upload → a planned job and its execution;
//! - `segments.rs`: split-audio and split-and-convert (one segment);
//! - `merge_video.rs`: one pair of the merge tree, and the climb up it that split-and-convert
//!   shares;
//! - `merge_audio.rs`: the root: audio joined, the output streamed into its multipart upload;
//! - `root_outputs.rs`: the root's other outputs: a ladder's other rungs, an HLS/DASH package;
//! - `thumbnails.rs`: the root's thumbnails composed and uploaded beside the output;
//! - `job_failed.rs`: a failed job's record and clean-up, also for an analyze that gave up.

mod analyze;
mod announce;
mod event_jobs;
mod job_failed;
mod merge_audio;
mod merge_video;
mod root_outputs;
mod segments;
mod thumbnails;
mod upload_parts;

pub use analyze::analyze;
pub use event_jobs::{event_jobs, EventJob, Upload};
pub use job_failed::{analyze_gave_up, job_failed, JobFailedOutcome};
pub use merge_audio::merge_audio;
pub use merge_video::merge_video;
pub use segments::{split_and_convert, split_audio};
pub use upload_parts::upload_parts;

use crate::error::HandlerError;
use crate::job::{JobManifest, JobPaths};
use crate::job_events::JobEvents;
use crate::job_settings::Templates;
use crate::ports::{ObjectSource, ObjectStore, ObjectVersion};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use treemux_core::fault::CrashPlan;
use treemux_core::media::source::{ByteSource, OverlaySource, SavedRanges, Source};
use treemux_core::plan::PlanOptions;
use treemux_core::settings::{Container, EncodeSettings};
use treemux_core::state::{JobStatus, JobStore, JobUpdate, StateError};

/// Settings shared by every handler, read from the environment by the binaries.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where job scratch directories live (the EFS mount in AWS).
    pub scratch_root: PathBuf,
    pub output_bucket: String,
    /// Prepended to output keys, e.g. `transcoded/`.
    pub output_prefix: String,
    /// The stack's encoder settings, every job's defaults (threads: the function's vCPUs).
    pub settings: EncodeSettings,
    /// The stack's output container, every job's default.
    pub container: Container,
    /// Named settings an upload may choose ([`crate::job_settings`]).
    pub templates: Templates,
    pub plan: PlanOptions,
    /// Points where a handler dies on purpose: empty except in the worker's fault-injection
    /// runs (`TREEMUX_WORKER_FAULTS=crash:…`).
    pub crashes: Arc<CrashPlan>,
    /// Seconds a task (split-and-convert, merge-video) may have run and still start the next
    /// merge up the tree itself; past it, the merge is handed to the state machine as a
    /// merge-video task. Merges combine indexes only (well under a second a level), so
    /// [`climb_seconds_for`] leaves two minutes of the function's timeout for them.
    pub climb_seconds: f64,
    /// The bucket that keeps segment files between the task that encodes them and the tasks
    /// that read them ([`crate::segment_objects`]); `None`: on scratch with the rest.
    pub segment_bucket: Option<String>,
    /// The function's own local storage (Lambda's `/tmp`), where a task encodes or fetches the
    /// segment files it works on.
    pub local_dir: PathBuf,
}

/// The climbing budget ([`Config::climb_seconds`]) for functions that time out after
/// `timeout_seconds`.
pub fn climb_seconds_for(timeout_seconds: f64) -> f64 {
    (timeout_seconds - CLIMB_RESERVE_SECONDS).max(0.0)
}

/// What a task's timeout keeps back from climbing: room for the merge it starts last.
const CLIMB_RESERVE_SECONDS: f64 = 120.0;

/// The outside world, as the handlers see it.
#[derive(Debug)]
pub struct Services<S, O, X> {
    pub store: S,
    pub objects: O,
    pub executions: X,
    /// Where job events go (EventBridge, the completion topic; none in most tests).
    pub events: JobEvents,
    pub config: Config,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The current time as ISO 8601 UTC with milliseconds, as S3 writes `eventTime` (so the two
/// compare as text).
fn now_iso() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .expect("the format has only fields every date has")
}

/// Runs blocking media work off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, HandlerError> + Send + 'static,
) -> Result<T, HandlerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| HandlerError::media(format!("media task ended abnormally: {error}")))?
}

async fn read_manifest(config: &Config, job_id: &str) -> Result<JobManifest, HandlerError> {
    if job_id.is_empty() || !job_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(HandlerError::invalid(format!(
            "job id {job_id:?} is not one treemux made"
        )));
    }
    let path = JobPaths::new(&config.scratch_root, job_id).manifest();
    let text = tokio::fs::read(&path)
        .await
        .map_err(|e| HandlerError::transient(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| {
        HandlerError::internal(format!("{}: unreadable manifest: {e}", path.display()))
    })
}

/// Fails fast when the job already failed (another task's permanent error, or the Catch) or was
/// superseded by a newer upload, so no task keeps working, or retrying, on a dead job.
async fn ensure_active<S: JobStore>(store: &S, job_id: &str) -> Result<(), HandlerError> {
    match store.get_job(job_id).await? {
        None => Err(HandlerError::invalid(format!(
            "job {job_id}: no job record"
        ))),
        Some(job) if job.status == JobStatus::Failed => Err(HandlerError::media(format!(
            "job {job_id} already failed: {}",
            job.error.unwrap_or_default()
        ))),
        Some(job) if job.status == JobStatus::Superseded => Err(HandlerError::superseded(format!(
            "job {job_id} stopped: {}",
            job.error.unwrap_or_default()
        ))),
        Some(_) => Ok(()),
    }
}

/// Records a permanent task failure on the job (the first cause is kept), so the job record
/// says why even where the orchestrator does not pass causes on. Transient errors are retried
/// and not recorded; a superseded job stays superseded.
pub async fn record_failure<S: JobStore>(store: &S, job_id: &str, error: &HandlerError) {
    if !matches!(
        error.kind,
        treemux_core::ErrorKind::Transient | treemux_core::ErrorKind::Superseded
    ) && job_id.bytes().all(|b| b.is_ascii_hexdigit())
        && !job_id.is_empty()
    {
        let failure = JobUpdate::Failed {
            error: format!("{}: {}", error.name(), error.message),
        };
        let _ = store.update_job(job_id, &failure, now()).await;
    }
}

/// Runs a task handler's body after [`ensure_active`] and records a permanent failure.
async fn task<S: JobStore, T>(
    store: &S,
    job_id: &str,
    body: impl std::future::Future<Output = Result<T, HandlerError>>,
) -> Result<T, HandlerError> {
    let result = match ensure_active(store, job_id).await {
        Ok(()) => body.await,
        Err(error) => Err(error),
    };
    if let Err(error) = &result {
        tracing::warn!(
            job_id,
            error = error.name(),
            message = %error.message,
            "task stopped"
        );
        record_failure(store, job_id, error).await;
    }
    result
}

/// Marks `job` superseded (and announces it); a job that is gone (expired) or already final is
/// left as it is.
async fn supersede<S: JobStore, O, X>(
    services: &Services<S, O, X>,
    job: &str,
    by: &str,
    reason: String,
) -> Result<(), HandlerError> {
    let store = &services.store;
    let was_final = store
        .get_job(job)
        .await?
        .is_none_or(|record| record.status.is_final());
    match store
        .update_job(
            job,
            &JobUpdate::Superseded {
                by: by.to_owned(),
                reason,
            },
            now(),
        )
        .await
    {
        Ok(()) => {
            if !was_final {
                announce::state(services, job).await;
            }
            Ok(())
        }
        Err(StateError::MissingJob { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// `version` of an object, `size` bytes, as the core's byte source (ranged reads).
fn object_source<O: ObjectStore>(
    objects: &O,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    size: u64,
) -> Arc<dyn ByteSource> {
    Arc::new(ObjectSource {
        store: objects.clone(),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version: version.clone(),
        size,
        runtime: tokio::runtime::Handle::current(),
    })
}

/// The job's source as workers read it: ranged reads of the upload's exact version, overlaid
/// with the opening bytes analyze saved on scratch (so a thousand workers do not each fetch the
/// `moov`). Named `s3://bucket/key` in messages.
async fn job_source<S, O, X>(
    services: &Services<S, O, X>,
    manifest: &JobManifest,
) -> Result<Source, HandlerError>
where
    O: ObjectStore,
{
    let paths = JobPaths::new(&services.config.scratch_root, &manifest.job_id);
    let saved = match tokio::fs::read(paths.source_opening()).await {
        Ok(bytes) => SavedRanges::from_bytes(&bytes).unwrap_or_else(|| {
            // Still correct (every read goes to the store), only slower and dearer: say so.
            tracing::warn!(
                path = %paths.source_opening().display(),
                "the saved source opening is unreadable; reading the source's index from S3"
            );
            SavedRanges::default()
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => SavedRanges::default(),
        Err(error) => {
            return Err(HandlerError::transient(format!(
                "{}: {error}",
                paths.source_opening().display()
            )))
        }
    };
    let version = ObjectVersion {
        version_id: manifest.source_version_id.clone(),
        e_tag: manifest.source_e_tag.clone(),
    };
    let (bucket, key) = (&manifest.source_bucket, &manifest.source_key);
    let store = object_source(
        &services.objects,
        bucket,
        key,
        &version,
        manifest.info.size_bytes,
    );
    Ok(Source::new(
        format!("s3://{bucket}/{key}"),
        Arc::new(OverlaySource {
            saved,
            inner: store,
        }),
    ))
}

/// The manifest at `path`, if one was written.
async fn read_existing_manifest(path: &Path) -> Result<Option<JobManifest>, HandlerError> {
    match tokio::fs::read(path).await {
        Ok(text) => serde_json::from_slice(&text).map(Some).map_err(|e| {
            HandlerError::internal(format!("{}: unreadable manifest: {e}", path.display()))
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(HandlerError::transient(format!(
            "{}: {error}",
            path.display()
        ))),
    }
}

/// Writes `bytes` to `path` complete or not at all, unless `path` exists: true when this call
/// wrote it. (A hard link, unlike a rename, never replaces an existing file.)
async fn write_once(path: &Path, bytes: Vec<u8>) -> Result<bool, HandlerError> {
    let failed = |e: std::io::Error| HandlerError::transient(format!("{}: {e}", path.display()));
    let partial = treemux_core::atomic_file::AtomicFile::create(path)
        .map_err(|error| failed(error.source))?;
    tokio::fs::write(partial.path(), bytes)
        .await
        .map_err(failed)?;
    partial
        .commit_unless_exists()
        .map_err(|error| failed(error.source))
}
