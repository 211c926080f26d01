//! The Lambda handlers, generic over the state store, the object store and the execution
//! starter, so tests run them with in-memory and local-directory fakes and the binaries with
//! DynamoDB, S3 and Step Functions. Each one is a thin adapter over the core library: media work
//! runs on a blocking thread (`spawn_blocking`), never on the async runtime.

use crate::error::HandlerError;
use crate::events::{
    AnalyzeOutcome, AnalyzedJob, AsyncInvocationRecord, ExecutionInput, JobDone, JobFailedInput,
    JobTask, MergeTask, S3Event, S3EventRecord, SegmentTask, StepOutput,
};
use crate::job::{
    decode_event_key, is_treemux_output, output_key, settings_fingerprint, upload_order,
    JobIdentity, JobManifest, JobPaths,
};
use crate::ports::{ExecutionStarter, ObjectSource, ObjectStore, ObjectVersion};
use crate::upload::{self, MultipartStore, PartWriter};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use treemux_core::engine::{self, JobSpec, Produced};
use treemux_core::fault::CrashPlan;
use treemux_core::media::probe::{self, PacketReads};
use treemux_core::media::remux::MuxTarget;
use treemux_core::media::source::{self, ByteSource, OverlaySource, SavedRanges, Source};
use treemux_core::names::Stage;
use treemux_core::output_plan::plan_parts;
use treemux_core::plan::PlanOptions;
use treemux_core::settings::{Container, EncodeSettings};
use treemux_core::state::{
    ClaimOutcome, JobRecord, JobStatus, JobStore, JobUpdate, LatestClaim, StateError, StateStore,
};
use treemux_core::steps::{after_node_finished, claimant_for, mark_merged};
use treemux_core::summary::RunOutput;
use treemux_core::tree::NodeId;

/// Settings shared by every handler, read from the environment by the binaries.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where job scratch directories live (the EFS mount in AWS).
    pub scratch_root: PathBuf,
    pub output_bucket: String,
    /// Prepended to output keys, e.g. `transcoded/`.
    pub output_prefix: String,
    /// Encoder settings for every job (threads: the function's vCPUs).
    pub settings: EncodeSettings,
    pub plan: PlanOptions,
    /// Points where a handler dies on purpose: empty except in the worker's fault-injection
    /// runs (`TREEMUX_WORKER_FAULTS=crash:…`).
    pub crashes: Arc<CrashPlan>,
}

/// The outside world, as the handlers see it.
#[derive(Debug)]
pub struct Services<S, O, X> {
    pub store: S,
    pub objects: O,
    pub executions: X,
    pub config: Config,
}

const OUTPUT_CONTAINER: Container = Container::Mp4;
const OUTPUT_EXTENSION: &str = "mp4";

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

/// One upload as an S3 event record announces it.
#[derive(Clone, Debug)]
pub struct Upload {
    pub bucket: String,
    /// Decoded (`+` is a space, `%XX` a byte).
    pub key: String,
    /// Exactly what to read.
    pub version: ObjectVersion,
    /// The event's identity ([`JobIdentity::upload`]).
    pub upload: String,
    /// Rank among uploads of this key ([`upload_order`]).
    pub order: String,
}

impl Upload {
    /// Reads an event record. Precondition: an `ObjectCreated` record.
    pub fn from_record(record: &S3EventRecord) -> Result<Self, HandlerError> {
        let key = decode_event_key(&record.s3.object.key).map_err(|e| {
            HandlerError::invalid(format!("event key {:?}: {e}", record.s3.object.key))
        })?;
        let object = &record.s3.object;
        // "null" is how S3 names the version of an object written while versioning was off.
        let version_id = object
            .version_id
            .clone()
            .filter(|v| !v.is_empty() && v != "null");
        let e_tag = object
            .e_tag
            .as_deref()
            .map(|e| e.trim_matches('"').to_owned())
            .filter(|e| !e.is_empty());
        let sequencer = object.sequencer.as_deref().filter(|s| !s.is_empty());
        let event_time = record.event_time.as_deref().filter(|t| !t.is_empty());
        Ok(Self {
            bucket: record.s3.bucket.name.clone(),
            key,
            version: ObjectVersion { version_id, e_tag },
            upload: sequencer.or(event_time).unwrap_or("").to_owned(),
            order: upload_order(sequencer, event_time, &now_iso()),
        })
    }

    /// The id of this upload's job under `config`.
    pub fn job_id(&self, config: &Config) -> String {
        let settings = settings_fingerprint(
            &config.settings,
            &config.plan,
            &config.output_bucket,
            &config.output_prefix,
        );
        JobIdentity {
            bucket: &self.bucket,
            key: &self.key,
            version: self.version.label(),
            upload: &self.upload,
            settings: &settings,
        }
        .job_id()
    }
}

/// The `ObjectCreated` records of an event (S3 sends only those to treemux; a hand-made event
/// may name none).
fn created_records(event: &S3Event) -> impl Iterator<Item = &S3EventRecord> {
    event
        .records
        .iter()
        .filter(|r| r.event_name.is_empty() || r.event_name.starts_with("ObjectCreated"))
}

/// What analyze makes of one `ObjectCreated` record.
#[derive(Clone, Debug)]
pub enum EventJob {
    /// A key where treemux writes its outputs: no job.
    Refused(Upload),
    /// An upload and the id of its job under the configuration.
    Job { upload: Upload, id: String },
}

/// The jobs an S3 event names, one per `ObjectCreated` record, in order: the one derivation of
/// job ids from events, used by analyze and by job-failed for the events analyze gave up on.
/// A record whose key cannot be decoded is an error (`TreemuxInvalidInput`).
pub fn event_jobs<'a>(
    config: &'a Config,
    event: &'a S3Event,
) -> impl Iterator<Item = Result<EventJob, HandlerError>> + 'a {
    created_records(event).map(move |record| {
        let upload = Upload::from_record(record)?;
        Ok(
            if is_treemux_output(
                &config.output_bucket,
                &config.output_prefix,
                &upload.bucket,
                &upload.key,
            ) {
                EventJob::Refused(upload)
            } else {
                let id = upload.job_id(config);
                EventJob::Job { upload, id }
            },
        )
    })
}

/// The record analyze creates for `upload`'s job `id`: CREATED, nothing done yet.
fn new_job_record(config: &Config, upload: &Upload, id: &str) -> JobRecord {
    let output = output_key(&config.output_prefix, &upload.key, OUTPUT_EXTENSION);
    JobRecord {
        job_id: id.to_owned(),
        status: JobStatus::Created,
        source: format!("s3://{}/{}", upload.bucket, upload.key),
        source_version: upload.version.label().to_owned(),
        upload: upload.upload.clone(),
        output: format!("s3://{}/{output}", config.output_bucket),
        segments: 0,
        merges: 0,
        segments_done: Default::default(),
        merges_done: Default::default(),
        merge_runs: 0,
        stage_seconds: Default::default(),
        progress: Default::default(),
        error: None,
        superseded_by: None,
        result: RunOutput::default(),
        created_at: now(),
        updated_at: now(),
    }
}

/// analyze: S3 ObjectCreated → job record, source copy, probe, plan, pair records, execution.
///
/// A duplicate event (same upload event, same object version, same settings) finds the job
/// record and starts nothing. A key where treemux writes its outputs is refused (no job). An
/// upload older than one already recorded for its key, or replaced before it was read, ends as
/// a SUPERSEDED job; a newer upload supersedes the key's previous job, whose tasks then stop.
/// An upload that is not a usable video (or is gone) ends as a FAILED job record with the cause,
/// and the error is returned.
pub async fn analyze<S, O, X>(
    services: &Services<S, O, X>,
    event: S3Event,
) -> Result<AnalyzeOutcome, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore,
    X: ExecutionStarter,
{
    let config = &services.config;
    let mut jobs = Vec::new();
    for job in event_jobs(config, &event) {
        let (upload, id) = match job? {
            EventJob::Refused(upload) => {
                tracing::warn!(
                    bucket = %upload.bucket,
                    key = %upload.key,
                    outcome = "refused-output",
                    "analyze: s3://{}/{} is where treemux writes outputs (output prefix {:?}): not transcoding it again",
                    upload.bucket,
                    upload.key,
                    config.output_prefix
                );
                jobs.push(AnalyzedJob {
                    job_id: String::new(),
                    bucket: upload.bucket,
                    key: upload.key,
                    outcome: "refused-output".to_owned(),
                });
                continue;
            }
            EventJob::Job { upload, id } => (upload, id),
        };
        let outcome = analyze_one(services, &id, &upload).await;
        match &outcome {
            Ok((outcome, segments)) => tracing::info!(
                job_id = %id,
                bucket = %upload.bucket,
                key = %upload.key,
                version = upload.version.label(),
                segments,
                outcome,
                "analyze"
            ),
            Err(error) => tracing::error!(
                job_id = %id,
                bucket = %upload.bucket,
                key = %upload.key,
                version = upload.version.label(),
                outcome = "failed",
                error = error.name(),
                message = %error.message,
                "analyze"
            ),
        }
        jobs.push(AnalyzedJob {
            job_id: id,
            bucket: upload.bucket,
            key: upload.key,
            outcome: outcome?.0.to_owned(),
        });
    }
    Ok(AnalyzeOutcome { jobs })
}

/// Marks `job` superseded; a job that is gone (expired) or already final is left as it is.
async fn supersede<S: JobStore>(
    store: &S,
    job: &str,
    by: &str,
    reason: String,
) -> Result<(), HandlerError> {
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
        Ok(()) | Err(StateError::MissingJob { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Analyzes one upload; returns the outcome and the number of segments (0 when none started).
async fn analyze_one<S, O, X>(
    services: &Services<S, O, X>,
    id: &str,
    upload: &Upload,
) -> Result<(&'static str, u32), HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore,
    X: ExecutionStarter,
{
    let started = Instant::now();
    let config = &services.config;
    let (bucket, key) = (upload.bucket.as_str(), upload.key.as_str());
    let output = output_key(&config.output_prefix, key, OUTPUT_EXTENSION);
    let record = new_job_record(config, upload, id);
    if !services.store.create_job(&record).await? {
        // The same upload again. Carry on only if an earlier attempt stopped before starting.
        let existing = services.store.get_job(id).await?;
        if let Some(job) = existing.filter(|job| job.status != JobStatus::Created) {
            return Ok(("duplicate", job.segments));
        }
    }
    // Newest upload wins: an older one stops here; a newer one stops the key's previous job.
    match services
        .store
        .claim_latest(bucket, key, id, &upload.order)
        .await?
    {
        LatestClaim::Older { newest } => {
            let reason = format!(
                "superseded by job {newest}: a newer upload of s3://{bucket}/{key} came first"
            );
            supersede(&services.store, id, &newest, reason).await?;
            return Ok(("superseded", 0));
        }
        LatestClaim::Newest {
            previous: Some(previous),
        } => {
            let reason = format!(
                "superseded by job {id}: s3://{bucket}/{key} was uploaded again while this job ran"
            );
            supersede(&services.store, &previous, id, reason).await?;
            tracing::info!(job_id = %previous, superseded_by = %id, key, "job superseded");
        }
        LatestClaim::Newest { previous: None } => {}
    }
    match prepare(services, id, upload, output).await {
        Ok(manifest) => {
            // A newer upload may have superseded this job while it was prepared: start nothing.
            if services
                .store
                .get_job(id)
                .await?
                .is_some_and(|job| job.status == JobStatus::Superseded)
            {
                let _ =
                    tokio::fs::remove_dir_all(JobPaths::new(&config.scratch_root, id).dir).await;
                return Ok(("superseded", 0));
            }
            let input = ExecutionInput {
                job_id: id.to_owned(),
                segments: (0..manifest.plan.segments.len() as u32).collect(),
            };
            let input = serde_json::to_string(&input)
                .map_err(|e| HandlerError::internal(format!("job {id}: execution input: {e}")))?;
            services.executions.start(id, &input).await?;
            services
                .store
                .update_job(
                    id,
                    &JobUpdate::Running {
                        segments: manifest.tree.real_leaves,
                        merges: manifest.tree.merges_needed(),
                        frames: manifest.plan.frame_count,
                    },
                    now(),
                )
                .await?;
            services
                .store
                .update_job(
                    id,
                    &JobUpdate::Stage {
                        stage: Stage::Analyze,
                        seconds: started.elapsed().as_secs_f64(),
                    },
                    now(),
                )
                .await?;
            Ok(("started", manifest.tree.real_leaves))
        }
        Err(error) if error.kind == treemux_core::ErrorKind::Superseded => {
            // The key holds other bytes now: their own event makes their job.
            let newest = services
                .store
                .latest_job(bucket, key)
                .await?
                .filter(|newest| newest != id)
                .unwrap_or_default();
            supersede(&services.store, id, &newest, error.message.clone()).await?;
            let _ = tokio::fs::remove_dir_all(JobPaths::new(&config.scratch_root, id).dir).await;
            Ok(("superseded", 0))
        }
        Err(error) => {
            if error.kind != treemux_core::ErrorKind::Transient {
                let failure = JobUpdate::Failed {
                    error: format!("{}: {}", error.name(), error.message),
                };
                services.store.update_job(id, &failure, now()).await?;
                let _ =
                    tokio::fs::remove_dir_all(JobPaths::new(&config.scratch_root, id).dir).await;
            }
            Err(error)
        }
    }
}

/// Probes the upload by ranged reads (no copy), plans it, saves the bytes opening it reads,
/// writes the manifest and the pair records.
///
/// The manifest is written once: a repeated analyze (a retry, a duplicate event) that finds it
/// uses it as it is and reads nothing again, so an execution that may already run on it never
/// sees it change.
async fn prepare<S, O, X>(
    services: &Services<S, O, X>,
    id: &str,
    upload: &Upload,
    output: String,
) -> Result<JobManifest, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore,
    X: ExecutionStarter,
{
    let config = services.config.clone();
    let paths = JobPaths::new(&config.scratch_root, id);
    if let Some(manifest) = read_existing_manifest(&paths.manifest()).await? {
        tracing::info!(
            job_id = id,
            "analyze: the job's manifest exists; reusing it"
        );
        services.store.create_pairs(id, &manifest.tree).await?;
        return Ok(manifest);
    }
    let (bucket, key) = (upload.bucket.as_str(), upload.key.as_str());
    tokio::fs::create_dir_all(&paths.dir)
        .await
        .map_err(|e| HandlerError::transient(format!("{}: {e}", paths.dir.display())))?;
    // The upload is not copied: probing reads it by ranges (HEAD first, so a replaced or
    // deleted upload is refused as before).
    let size = services.objects.size(bucket, key, &upload.version).await?;
    let store = object_source(&services.objects, bucket, key, &upload.version, size);

    let (id_owned, bucket_owned, key_owned) = (id.to_owned(), bucket.to_owned(), key.to_owned());
    let source_version = upload.version.label().to_owned();
    let version = upload.version.clone();
    let opening_path = paths.source_opening();
    let (manifest, opening) = blocking(move || {
        let name = format!("s3://{bucket_owned}/{key_owned}");
        // What FFmpeg reads while opening the source (an MP4's moov) is fetched once, here, and
        // saved for every worker; the probe's own opening is served from it.
        // A source FFmpeg cannot open is left to the probe, which says why in the user's terms.
        let opening = source::opening_reads(&Source::new(&name, store.clone()), OPENING_CAP)
            .unwrap_or_default();
        let overlay = Arc::new(OverlaySource {
            saved: opening.clone(),
            inner: store,
        });
        let source = Source::new(&name, overlay);
        let info =
            probe::probe_source(&source, PacketReads::IndexWherePossible).map_err(|error| {
                HandlerError::from(error).with_source_name(&bucket_owned, &key_owned)
            })?;
        // Every check the local runner makes, in the same words (the core's engine).
        let source_name = PathBuf::from(format!("s3://{bucket_owned}/{key_owned}"));
        let output_name = PathBuf::from(format!("s3://{}/{output}", config.output_bucket));
        let job = engine::prepare_job(
            &source,
            info,
            &source_name,
            &output_name,
            OUTPUT_CONTAINER,
            &config.settings,
            &config.plan,
        )?;
        // Before any work: an output one multipart upload cannot hold is refused now, not by
        // merge-audio after every segment was encoded.
        engine::check_output_fits_multipart(&job, &source_name)?;
        let JobSpec {
            info,
            settings,
            plan,
            tree,
            audio_actions,
            ..
        } = job;
        let segment_bytes = plan
            .segments
            .iter()
            .map(|segment| source::segment_byte_range(&info, segment).map(|r| [r.start, r.end]))
            .collect();
        Ok((
            JobManifest {
                job_id: id_owned,
                source_bucket: bucket_owned,
                source_key: key_owned,
                source_version,
                source_version_id: version.version_id.clone(),
                source_e_tag: version.e_tag.clone(),
                segment_bytes,
                output_bucket: config.output_bucket.clone(),
                output_key: output,
                output_extension: OUTPUT_EXTENSION.to_owned(),
                settings,
                info,
                plan,
                tree,
                audio_actions,
            },
            opening,
        ))
    })
    .await?;
    // Before the manifest: a worker that finds the manifest finds this too. (A duplicate
    // analyze writes the same bytes: the first copy stays.)
    write_once(&opening_path, opening.to_bytes()).await?;
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| HandlerError::internal(format!("job {id}: manifest: {e}")))?;
    let path = JobPaths::new(&services.config.scratch_root, id).manifest();
    let manifest = if write_once(&path, bytes).await? {
        manifest
    } else {
        // A concurrent analyze of the same job wrote it first: that one is the manifest.
        read_existing_manifest(&path).await?.ok_or_else(|| {
            HandlerError::transient(format!("{}: vanished after it was written", path.display()))
        })?
    };
    services.store.create_pairs(id, &manifest.tree).await?;
    Ok(manifest)
}

/// Most bytes analyze saves of what opening the source reads (an hour's MP4 `moov` is a few MiB).
const OPENING_CAP: u64 = 64 * 1024 * 1024;

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
        Ok(bytes) => SavedRanges::from_bytes(&bytes).unwrap_or_default(),
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

impl HandlerError {
    /// Names the upload instead of the scratch copy in a probe error.
    fn with_source_name(mut self, bucket: &str, key: &str) -> Self {
        if let Some((_, cause)) = self.message.split_once(": ") {
            self.message = format!("s3://{bucket}/{key}: {cause}");
        }
        self
    }
}

/// split-audio: every audio track, once, for the whole file, in one streaming pass, for sources
/// whose segments do not carry the audio (containers without an MP4/MOV index); for MP4/MOV
/// nothing: the segment workers copy the audio and merge-audio joins it
/// ([`JobSpec::audio_from_segments`]).
pub async fn split_audio<S, O, X>(
    services: &Services<S, O, X>,
    task: JobTask,
) -> Result<JobTask, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore,
{
    let job_id = task.job_id.clone();
    self::task(&services.store, &job_id, split_audio_body(services, task)).await
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
    let layout = JobPaths::new(&services.config.scratch_root, &task.job_id).layout();
    let source = job_source(services, &manifest).await?;
    // A repeated task finds the audio extracted and its report recorded: nothing is redone.
    let produced = blocking(move || {
        engine::extract_audio(&source, &manifest.job(OUTPUT_CONTAINER), &layout)
            .map_err(HandlerError::from)
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

/// split-and-convert: encode one segment, then decide whether this task merges next.
pub async fn split_and_convert<S, O, X>(
    services: &Services<S, O, X>,
    task: SegmentTask,
) -> Result<StepOutput, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore,
{
    let job_id = task.job_id.clone();
    self::task(
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
    let manifest = read_manifest(&services.config, &task.job_id).await?;
    if task.segment >= manifest.tree.real_leaves {
        return Err(HandlerError::invalid(format!(
            "job {}: no segment {}",
            task.job_id, task.segment
        )));
    }
    let leaf = NodeId::leaf(task.segment);
    let layout = JobPaths::new(&services.config.scratch_root, &task.job_id).layout();
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
    let produced = blocking(move || {
        let job = manifest.job(OUTPUT_CONTAINER);
        engine::produce_segment(
            &source,
            &job,
            &job.settings,
            &layout,
            index,
            &crashes_for_encode,
            &|_| ControlFlow::Continue(()),
        )
        .map_err(HandlerError::from)
    })
    .await?;
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
    let next = engine::node_finished(&services.store, &task.job_id, &tree, leaf, &crashes).await?;
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

/// merge-video: produce `node` from its children (concatenation, or a rename when the right
/// child is a placeholder), mark it merged, and decide what comes next.
pub async fn merge_video<S, O, X>(
    services: &Services<S, O, X>,
    task: MergeTask,
) -> Result<StepOutput, HandlerError>
where
    S: StateStore + JobStore,
{
    let job_id = task.job_id.clone();
    self::task(&services.store, &job_id, merge_video_body(services, task)).await
}

async fn merge_video_body<S, O, X>(
    services: &Services<S, O, X>,
    task: MergeTask,
) -> Result<StepOutput, HandlerError>
where
    S: StateStore + JobStore,
{
    let started = Instant::now();
    let manifest = read_manifest(&services.config, &task.job_id).await?;
    let tree = manifest.tree;
    if !tree.contains(task.node) || task.node.level == 0 {
        return Err(HandlerError::invalid(format!(
            "job {}: {} is not a pair of this job",
            task.job_id, task.node
        )));
    }
    // A retried task may find its merge already done (and the children cleaned up): walk on.
    match services
        .store
        .claim_merge(&task.job_id, task.node, &claimant_for(task.child))
        .await?
    {
        ClaimOutcome::Won => {}
        ClaimOutcome::AlreadyMerged => {
            let next = after_node_finished(&services.store, &task.job_id, &tree, task.node).await?;
            return Ok(StepOutput {
                job_id: task.job_id,
                next,
            });
        }
        ClaimOutcome::Lost { holder } => {
            return Err(HandlerError::invalid(format!(
                "job {}: {} is claimed by {holder}, not by {}",
                task.job_id, task.node, task.child
            )));
        }
    }
    let layout = JobPaths::new(&services.config.scratch_root, &task.job_id).layout();
    // The claim is this task's, so an index at the node was recorded by an earlier attempt of
    // this same task that died before marking the pair: the merge is done already.
    let (node, crashes) = (task.node, services.config.crashes.clone());
    let produced = blocking(move || {
        engine::produce_pair(&tree, &layout, node, &crashes).map_err(HandlerError::from)
    })
    .await?;
    let ran = matches!(produced, Produced::Made(_));
    if ran {
        // One line per index written: a crash soak counts them to prove no pair is merged
        // twice, even when a run died before recording it.
        tracing::info!(
            job_id = %task.job_id,
            node = %task.node,
            kind = ?tree.merge_kind(task.node),
            "merge-video: merge file written"
        );
    }
    let update = JobUpdate::Merged {
        node: task.node,
        seconds: started.elapsed().as_secs_f64(),
        ran,
    };
    services
        .store
        .update_job(&task.job_id, &update, now())
        .await?;
    // Nothing is deleted: the segments are what the root reads, and the job's scratch goes
    // when the job ends (as in the local runner).
    mark_merged(&services.store, &task.job_id, task.node, task.child).await?;
    let next = after_node_finished(&services.store, &task.job_id, &tree, task.node).await?;
    tracing::info!(
        job_id = %task.job_id,
        node = %task.node,
        outcome = if ran { "merged" } else { "found-merged" },
        next = ?next,
        "merge-video"
    );
    Ok(StepOutput {
        job_id: task.job_id,
        next,
    })
}

/// Stops a job whose input key has a newer upload's job recorded: marks it SUPERSEDED (the
/// reason on its record) and returns `TreemuxSuperseded`.
async fn ensure_newest<S: JobStore, O: MultipartStore, X>(
    services: &Services<S, O, X>,
    manifest: &JobManifest,
) -> Result<(), HandlerError> {
    let (bucket, key) = (&manifest.source_bucket, &manifest.source_key);
    match services.store.latest_job(bucket, key).await? {
        Some(newest) if newest != manifest.job_id => {
            let reason = format!(
                "superseded by job {newest}: s3://{bucket}/{key} was uploaded again while this job ran; its output is not written"
            );
            supersede(&services.store, &manifest.job_id, &newest, reason.clone()).await?;
            let paths = JobPaths::new(&services.config.scratch_root, &manifest.job_id);
            abort_output_upload(&services.objects, &paths).await;
            let _ = tokio::fs::remove_dir_all(paths.dir).await;
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

/// Aborts the job's output upload, if it started one (its parts are billed until then).
async fn abort_output_upload<O: MultipartStore>(objects: &O, paths: &JobPaths) {
    let record = paths.dir.join("upload.json");
    let manifest = tokio::fs::read(paths.manifest())
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice::<JobManifest>(&bytes).ok());
    let upload = tokio::fs::read(&record)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice::<String>(&bytes).ok());
    if let (Some(manifest), Some(upload)) = (manifest, upload) {
        let aborted = objects
            .abort_upload(&manifest.output_bucket, &manifest.output_key, &upload)
            .await;
        tracing::info!(job_id = %manifest.job_id, aborted = aborted.is_ok(), "output upload aborted");
    }
}

/// merge-audio: finish the root: mux its segments and the audio once, streamed straight into
/// the output's multipart upload (no copy of the output on scratch), complete the upload, mark
/// the job SUCCEEDED and remove its scratch files. A job superseded by a newer upload of its
/// key writes nothing (its upload is aborted).
pub async fn merge_audio<S, O, X>(
    services: &Services<S, O, X>,
    task: JobTask,
) -> Result<JobDone, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
{
    let job_id = task.job_id.clone();
    self::task(&services.store, &job_id, merge_audio_body(services, task)).await
}

async fn merge_audio_body<S, O, X>(
    services: &Services<S, O, X>,
    task: JobTask,
) -> Result<JobDone, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
{
    let started = Instant::now();
    let manifest = read_manifest(&services.config, &task.job_id).await?;
    let paths = JobPaths::new(&services.config.scratch_root, &task.job_id);
    ensure_newest(services, &manifest).await?;
    let (bucket, key) = (manifest.output_bucket.clone(), manifest.output_key.clone());
    let completed_marker = paths.dir.join("upload-completed");
    let job = manifest.job(OUTPUT_CONTAINER);
    // The same decision the local runner makes: what the output keeps, and a warning for the rest.
    let warnings = job.warnings();
    let layout = paths.layout();
    let bytes = if completed_marker.is_file() {
        // An earlier attempt completed the upload and died before recording the job's success.
        tokio::fs::read_to_string(&completed_marker)
            .await
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    } else {
        // The audio first: joined once from the pieces the segments copied (MP4/MOV), found
        // when split-audio extracted it, or a streaming pass if the pieces do not add up.
        let source = job_source(services, &manifest).await?;
        let (audio_job, audio_layout, audio_source) = (job.clone(), layout.clone(), source.clone());
        blocking(move || {
            engine::finish_audio(&audio_source, &audio_job, &audio_layout)
                .map(|_| ())
                .map_err(HandlerError::from)
        })
        .await?;
        // Refused before anything is uploaded: an output S3 cannot take in 10,000 parts of at
        // most 5 GiB (the segments and audio, with room for the index).
        let media = engine::media_bytes(&job, &layout);
        let plan = plan_parts(media + media / 10, 0)
            .map_err(|error| HandlerError::invalid(format!("s3://{bucket}/{key}: {error}")))?;
        let upload_id = output_upload(&services.objects, &paths, &bucket, &key).await?;
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
        if let Err(error) = ensure_newest(services, &manifest).await {
            let _ = services
                .objects
                .abort_upload(&bucket, &key, &upload_id)
                .await;
            return Err(error);
        }
        let bytes = upload::complete(&services.objects, &bucket, &key, &upload_id, parts).await?;
        let _ = write_once(&completed_marker, bytes.to_string().into_bytes()).await;
        bytes
    };
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
    };
    services
        .store
        .update_job(&task.job_id, &JobUpdate::Output(output), now())
        .await?;
    services
        .store
        .update_job(&task.job_id, &JobUpdate::Succeeded, now())
        .await?;
    let _ = tokio::fs::remove_dir_all(&paths.dir).await;
    tracing::info!(
        job_id = %task.job_id,
        key = %manifest.source_key,
        output = %manifest.output_key,
        segments = manifest.tree.real_leaves,
        bytes,
        outcome = "succeeded",
        "merge-audio"
    );
    Ok(JobDone {
        job_id: task.job_id,
        output: format!("s3://{}/{}", manifest.output_bucket, manifest.output_key),
        bytes,
    })
}

/// What job-failed did: the jobs it was told about.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobFailedOutcome {
    pub job_ids: Vec<String>,
}

/// job-failed: marks a job FAILED with its cause and aborts the output's multipart upload if merge-audio started one
/// (the object never appeared: only a completed upload makes it) and removes its scratch files. Invoked by the state machine's Catch and the EventBridge rules with
/// `{job_id, error}`, and as analyze's `OnFailure` destination with Lambda's invocation record
/// (see [`analyze_gave_up`]). A job that succeeded or was superseded keeps its status.
pub async fn job_failed<S, O, X>(
    services: &Services<S, O, X>,
    input: JobFailedInput,
) -> Result<JobFailedOutcome, HandlerError>
where
    S: StateStore + JobStore,
    O: MultipartStore,
{
    match input {
        JobFailedInput::Task(task) => {
            let error = task.error.describe();
            services
                .store
                .update_job(
                    &task.job_id,
                    &JobUpdate::Failed {
                        error: error.clone(),
                    },
                    now(),
                )
                .await?;
            // The state machine also runs this for a superseded job's clean-up: say what the
            // record says.
            let status = services
                .store
                .get_job(&task.job_id)
                .await?
                .map(|job| job.status);
            tracing::error!(job_id = %task.job_id, outcome = ?status, cause = %error, "job-failed");
            remove_scratch(&services.config, &services.objects, &task.job_id).await;
            Ok(JobFailedOutcome {
                job_ids: vec![task.job_id],
            })
        }
        JobFailedInput::Invocation(record) => analyze_gave_up(services, &record).await,
    }
}

/// Removes a job's scratch directory (nothing for an id treemux did not make).
/// Aborts the job's output upload first, if merge-audio started one.
async fn remove_scratch<O: MultipartStore>(config: &Config, objects: &O, job_id: &str) {
    if job_id.bytes().all(|b| b.is_ascii_hexdigit()) && !job_id.is_empty() {
        let paths = JobPaths::new(&config.scratch_root, job_id);
        abort_output_upload(objects, &paths).await;
        let _ = tokio::fs::remove_dir_all(paths.dir).await;
    }
}

/// job-failed as analyze's failure destination: every attempt of analyze on `record`'s S3 event
/// failed (or the event expired). Each job of the event ([`event_jobs`], as analyze derives
/// them) still CREATED ends FAILED with the last error; one with no record yet gets a FAILED
/// record, so the upload's fate can be looked up; a RUNNING job is left to its execution and a
/// finished or superseded one keeps its status ([`JobUpdate::NeverStarted`]).
pub async fn analyze_gave_up<S, O, X>(
    services: &Services<S, O, X>,
    record: &AsyncInvocationRecord,
) -> Result<JobFailedOutcome, HandlerError>
where
    S: StateStore + JobStore,
    O: MultipartStore,
{
    let config = &services.config;
    let cause = record.describe();
    let mut job_ids = Vec::new();
    for job in event_jobs(config, &record.request_payload) {
        let (upload, id) = match job {
            Ok(EventJob::Job { upload, id }) => (upload, id),
            Ok(EventJob::Refused(_)) => continue,
            Err(error) => {
                tracing::error!(
                    outcome = "no-job",
                    error = error.name(),
                    message = %error.message,
                    cause = %cause,
                    "job-failed: an upload event analyze gave up on names no job"
                );
                continue;
            }
        };
        let failed = JobRecord {
            status: JobStatus::Failed,
            error: Some(cause.clone()),
            ..new_job_record(config, &upload, &id)
        };
        if !services.store.create_job(&failed).await? {
            let update = JobUpdate::NeverStarted {
                error: cause.clone(),
            };
            services.store.update_job(&id, &update, now()).await?;
        }
        let status = services.store.get_job(&id).await?.map(|job| job.status);
        if status == Some(JobStatus::Failed) {
            remove_scratch(config, &services.objects, &id).await;
        }
        tracing::error!(
            job_id = %id,
            bucket = %upload.bucket,
            key = %upload.key,
            outcome = ?status,
            cause = %cause,
            "job-failed"
        );
        job_ids.push(id);
    }
    Ok(JobFailedOutcome { job_ids })
}
