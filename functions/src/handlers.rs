//! The Lambda handlers, generic over the state store, the object store and the execution
//! starter, so tests run them with in-memory and local-directory fakes and the binaries with
//! DynamoDB, S3 and Step Functions. Each one is a thin adapter over the core library: media work
//! runs on a blocking thread (`spawn_blocking`), never on the async runtime.

use crate::error::HandlerError;
use crate::events::{
    AnalyzeOutcome, AnalyzedJob, ExecutionInput, FailedTask, JobDone, JobTask, MergeTask, S3Event,
    SegmentTask, StepOutput,
};
use crate::job::{decode_event_key, job_id, output_key, safe_extension, JobManifest, JobPaths};
use crate::ports::{ExecutionStarter, ObjectError, ObjectStore};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use treemux::fault::{CrashPlan, CrashPoint};
use treemux::media::{audio, convert, merge, probe, remux, streams};
use treemux::plan::{plan_segments, PlanOptions};
use treemux::settings::{Container, EncodeSettings};
use treemux::state::{ClaimOutcome, JobRecord, JobStatus, JobStore, JobUpdate, StateStore};
use treemux::steps::{after_node_finished, claimant_for, mark_merged};
use treemux::tree::{MergeKind, MergeTree, NodeId};

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

impl From<ObjectError> for HandlerError {
    fn from(error: ObjectError) -> Self {
        match error {
            ObjectError::NotFound { .. } => HandlerError::invalid(error.to_string()),
            _ => HandlerError::transient(error.to_string()),
        }
    }
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
    serde_json::from_slice(&text)
        .map_err(|e| HandlerError::media(format!("{}: unreadable manifest: {e}", path.display())))
}

/// Fails fast when the job already failed (another task's permanent error, or the Catch), so no
/// task keeps working, or retrying, on a dead job.
async fn ensure_active<S: JobStore>(store: &S, job_id: &str) -> Result<(), HandlerError> {
    match store.get_job(job_id).await? {
        None => Err(HandlerError::invalid(format!(
            "job {job_id}: no job record"
        ))),
        Some(job) if job.status == JobStatus::Failed => Err(HandlerError::media(format!(
            "job {job_id} already failed: {}",
            job.error.unwrap_or_default()
        ))),
        Some(_) => Ok(()),
    }
}

/// Records a permanent task failure on the job (the first cause is kept), so the job record
/// says why even where the orchestrator does not pass causes on. Transient errors are retried
/// and not recorded.
pub async fn record_failure<S: JobStore>(store: &S, job_id: &str, error: &HandlerError) {
    if error.kind != treemux::ErrorKind::Transient
        && job_id.bytes().all(|b| b.is_ascii_hexdigit())
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
        Err(error) => return Err(error),
    };
    if let Err(error) = &result {
        record_failure(store, job_id, error).await;
    }
    result
}

async fn write_atomically(path: &Path, bytes: Vec<u8>) -> Result<(), HandlerError> {
    let failed = |e: std::io::Error| HandlerError::transient(format!("{}: {e}", path.display()));
    let (_, partial) = crate::ports::partial_beside(path).map_err(failed)?;
    let written = match tokio::fs::write(&partial, bytes).await {
        Ok(()) => tokio::fs::rename(&partial, path).await,
        Err(error) => Err(error),
    };
    if written.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    written.map_err(failed)
}

/// analyze: S3 ObjectCreated → job record, source copy, probe, plan, pair records, execution.
///
/// A duplicate event (same bucket, key and version or ETag) finds the job record and starts
/// nothing. An upload that is not a usable video ends as a FAILED job record with the cause, and
/// the error is returned.
pub async fn analyze<S, O, X>(
    services: &Services<S, O, X>,
    event: S3Event,
) -> Result<AnalyzeOutcome, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore,
    X: ExecutionStarter,
{
    let mut jobs = Vec::new();
    for record in event
        .records
        .iter()
        .filter(|r| r.event_name.is_empty() || r.event_name.starts_with("ObjectCreated"))
    {
        let bucket = record.s3.bucket.name.clone();
        let key = decode_event_key(&record.s3.object.key).map_err(|e| {
            HandlerError::invalid(format!("event key {:?}: {e}", record.s3.object.key))
        })?;
        let version = record
            .s3
            .object
            .version_id
            .clone()
            .or_else(|| record.s3.object.e_tag.clone())
            .unwrap_or_default();
        let id = job_id(&bucket, &key, &version);
        let outcome = analyze_one(services, &id, &bucket, &key).await?;
        jobs.push(AnalyzedJob {
            job_id: id,
            bucket,
            key,
            outcome: outcome.to_owned(),
        });
    }
    Ok(AnalyzeOutcome { jobs })
}

async fn analyze_one<S, O, X>(
    services: &Services<S, O, X>,
    id: &str,
    bucket: &str,
    key: &str,
) -> Result<&'static str, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore,
    X: ExecutionStarter,
{
    let started = Instant::now();
    let config = &services.config;
    let output = output_key(&config.output_prefix, key, OUTPUT_EXTENSION);
    let record = JobRecord {
        job_id: id.to_owned(),
        status: JobStatus::Created,
        source: format!("s3://{bucket}/{key}"),
        output: format!("s3://{}/{output}", config.output_bucket),
        segments: 0,
        merges: 0,
        segments_done: Default::default(),
        merges_done: Default::default(),
        merge_runs: 0,
        stage_seconds: Default::default(),
        error: None,
        warnings: Vec::new(),
        created_at: now(),
        updated_at: now(),
    };
    if !services.store.create_job(&record).await? {
        // The same upload again. Carry on only if an earlier attempt stopped before starting.
        let existing = services.store.get_job(id).await?;
        if existing.is_some_and(|job| job.status != JobStatus::Created) {
            return Ok("duplicate");
        }
    }
    match prepare(services, id, bucket, key, output).await {
        Ok(manifest) => {
            let input = ExecutionInput {
                job_id: id.to_owned(),
                segments: (0..manifest.plan.segments.len() as u32).collect(),
            };
            let input =
                serde_json::to_string(&input).map_err(|e| HandlerError::media(e.to_string()))?;
            services
                .executions
                .start(id, &input)
                .await
                .map_err(HandlerError::transient)?;
            services
                .store
                .update_job(
                    id,
                    &JobUpdate::Running {
                        segments: manifest.tree.real_leaves,
                        merges: manifest.tree.merges_needed(),
                    },
                    now(),
                )
                .await?;
            services
                .store
                .update_job(
                    id,
                    &JobUpdate::Stage {
                        name: "analyze",
                        seconds: started.elapsed().as_secs_f64(),
                    },
                    now(),
                )
                .await?;
            Ok("started")
        }
        Err(error) => {
            if error.kind != treemux::ErrorKind::Transient {
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

/// Copies the upload to scratch, probes and plans it, writes the manifest and the pair records.
async fn prepare<S, O, X>(
    services: &Services<S, O, X>,
    id: &str,
    bucket: &str,
    key: &str,
    output: String,
) -> Result<JobManifest, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore,
    X: ExecutionStarter,
{
    let config = services.config.clone();
    let paths = JobPaths::new(&config.scratch_root, id);
    tokio::fs::create_dir_all(&paths.dir)
        .await
        .map_err(|e| HandlerError::transient(format!("{}: {e}", paths.dir.display())))?;
    let source = paths.source(&safe_extension(key));
    services.objects.get_to_path(bucket, key, &source).await?;

    let (id_owned, bucket_owned, key_owned) = (id.to_owned(), bucket.to_owned(), key.to_owned());
    let manifest = blocking(move || {
        let info = probe::probe(&source).map_err(|error| HandlerError::from(error).with_source_name(&bucket_owned, &key_owned))?;
        let plan = plan_segments(&info.frames, info.video.time_base, info.video.duration_seconds(), &config.plan)
            .map_err(|e| HandlerError::invalid(format!("s3://{bucket_owned}/{key_owned}: cannot plan segments: {e}")))?;
        let settings = config.settings.for_container(OUTPUT_CONTAINER);
        let (width, height) = convert::output_size(&info.video, &settings);
        let min = config.settings.codec.min_dimension();
        if width < min || height < min {
            return Err(HandlerError::invalid(format!("s3://{bucket_owned}/{key_owned}: {width}x{height} is below the encoder's {min}x{min}")));
        }
        // As the local runner: a height above the source's is refused unless upscaling is allowed.
        let (_, source_height) = convert::output_size(&info.video, &EncodeSettings { height: None, ..config.settings.clone() });
        config.settings.check_upscale(height, source_height).map_err(|problem| HandlerError::invalid(format!("s3://{bucket_owned}/{key_owned}: {problem}")))?;
        let output_path = paths.output(OUTPUT_EXTENSION);
        let audio_actions = audio::plan_audio(&info, OUTPUT_CONTAINER, &output_path)?;
        let tree = MergeTree::new(plan.segments.len() as u32);
        Ok(JobManifest {
            job_id: id_owned,
            source_bucket: bucket_owned,
            source_key: key_owned,
            output_bucket: config.output_bucket.clone(),
            output_key: output,
            output_extension: OUTPUT_EXTENSION.to_owned(),
            settings,
            info,
            plan,
            tree,
            audio_actions,
        })
    })
    .await?;
    let bytes = serde_json::to_vec(&manifest).map_err(|e| HandlerError::media(e.to_string()))?;
    write_atomically(
        &JobPaths::new(&services.config.scratch_root, id).manifest(),
        bytes,
    )
    .await?;
    services.store.create_pairs(id, &manifest.tree).await?;
    Ok(manifest)
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

/// split-audio: every audio track, once, for the whole file.
pub async fn split_audio<S, O, X>(
    services: &Services<S, O, X>,
    task: JobTask,
) -> Result<JobTask, HandlerError>
where
    S: StateStore + JobStore,
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
{
    let started = Instant::now();
    let manifest = read_manifest(&services.config, &task.job_id).await?;
    let path = JobPaths::new(&services.config.scratch_root, &task.job_id).audio();
    blocking(move || {
        audio::extract_audio(&manifest.info, &manifest.audio_actions, &path)
            .map(|_| ())
            .map_err(HandlerError::from)
    })
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    services
        .store
        .update_job(
            &task.job_id,
            &JobUpdate::Stage {
                name: "split_audio",
                seconds,
            },
            now(),
        )
        .await?;
    Ok(task)
}

/// split-and-convert: encode one segment, then decide whether this task merges next.
pub async fn split_and_convert<S, O, X>(
    services: &Services<S, O, X>,
    task: SegmentTask,
) -> Result<StepOutput, HandlerError>
where
    S: StateStore + JobStore,
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
{
    let manifest = read_manifest(&services.config, &task.job_id).await?;
    let segment = *manifest
        .plan
        .segments
        .get(task.segment as usize)
        .ok_or_else(|| {
            HandlerError::invalid(format!("job {}: no segment {}", task.job_id, task.segment))
        })?;
    let leaf = NodeId::leaf(task.segment);
    let path = JobPaths::new(&services.config.scratch_root, &task.job_id).node(leaf);
    let tree = manifest.tree;
    let crashes = services.config.crashes.clone();
    let index = task.segment;
    // A segment file is committed atomically and kept until the job ends, so a repeated task
    // (a retry after a lost answer or a crash, or a duplicate delivery) finds it and does not
    // encode again.
    let seconds = if path.is_file() {
        0.0
    } else {
        crashes.at(CrashPoint::BeforeEncode(index));
        let crashes_while_encoding = crashes.clone();
        let report = blocking(move || {
            let on_frame = |frames: u64| {
                crashes_while_encoding.at(CrashPoint::MidEncode {
                    segment: index,
                    frames,
                });
                ControlFlow::Continue(())
            };
            convert::convert_segment(
                &manifest.info,
                &segment,
                &manifest.settings,
                &path,
                &on_frame,
            )
            .map_err(HandlerError::from)
        })
        .await?;
        crashes.at(CrashPoint::AfterSegment(index));
        report.seconds
    };
    // Recorded on the repeated path too: the attempt that encoded may have died before this.
    let update = JobUpdate::SegmentDone { index, seconds };
    services
        .store
        .update_job(&task.job_id, &update, now())
        .await?;
    let next = after_node_finished(&services.store, &task.job_id, &tree, leaf).await?;
    crashes.at(CrashPoint::AfterConfirm(index));
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
    let paths = JobPaths::new(&services.config.scratch_root, &task.job_id);
    let (left, right) = tree.children(task.node).expect("checked: internal node");
    let (left_path, right_path, target) =
        (paths.node(left), paths.node(right), paths.node(task.node));
    let kind = tree.merge_kind(task.node);
    // The claim is this task's, so a file at the target was committed (atomically) by an earlier
    // attempt of this same task that died before marking the pair: the merge is done already.
    let ran = !target.is_file();
    if ran {
        let (left_for_merge, target_for_merge) = (left_path.clone(), target.clone());
        blocking(move || match kind {
            MergeKind::Concat => {
                merge::concat_segments(&left_for_merge, &right_path, &target_for_merge)
                    .map(|_| ())
                    .map_err(HandlerError::from)
            }
            MergeKind::Rename => std::fs::rename(&left_for_merge, &target_for_merge)
                .map_err(|e| HandlerError::transient(format!("{}: {e}", left_for_merge.display()))),
            MergeKind::Placeholder => Err(HandlerError::invalid(format!(
                "{} is a placeholder and is never merged",
                task.node
            ))),
        })
        .await?;
        eprintln!(
            "merge-video: job {} {} written ({kind:?})",
            task.job_id, task.node
        );
        services.config.crashes.merge_written();
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
    mark_merged(&services.store, &task.job_id, task.node, task.child).await?;
    if kind == MergeKind::Concat && task.node.level > 1 {
        // Merged children are no longer needed once the merge is recorded. Segment files
        // (level 0) stay until the job ends: they are what makes a repeated split-and-convert
        // skip its encode.
        for child in tree
            .children(task.node)
            .into_iter()
            .flat_map(|(l, r)| [l, r])
        {
            let _ = tokio::fs::remove_file(paths.node(child)).await;
        }
    }
    let next = after_node_finished(&services.store, &task.job_id, &tree, task.node).await?;
    Ok(StepOutput {
        job_id: task.job_id,
        next,
    })
}

/// merge-audio: mux the root with the audio, upload the result, mark the job SUCCEEDED and
/// remove its scratch files.
pub async fn merge_audio<S, O, X>(
    services: &Services<S, O, X>,
    task: JobTask,
) -> Result<JobDone, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore,
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
    O: ObjectStore,
{
    let started = Instant::now();
    let manifest = read_manifest(&services.config, &task.job_id).await?;
    let paths = JobPaths::new(&services.config.scratch_root, &task.job_id);
    let root = paths.node(manifest.tree.root());
    if !root.is_file() {
        return Err(HandlerError::media(format!(
            "job {}: the merged video is missing; the merge tree did not finish",
            task.job_id
        )));
    }
    let audio_path = (!manifest.info.audio.is_empty()).then(|| paths.audio());
    let output = paths.output(&manifest.output_extension);
    let (info, output_for_mux) = (manifest.info.clone(), output.clone());
    let settings = manifest.settings.clone();
    // The same decision the local runner makes: what the output keeps, and a warning for the rest.
    let extras = streams::plan(&info, OUTPUT_CONTAINER);
    let warnings = extras.warnings.clone();
    let report = blocking(move || {
        remux::remux(
            &root,
            audio_path.as_deref(),
            &info,
            &settings,
            &extras,
            OUTPUT_CONTAINER,
            &output_for_mux,
        )
        .map_err(HandlerError::from)
    })
    .await?;
    services
        .objects
        .put_from_path(&output, &manifest.output_bucket, &manifest.output_key)
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    services
        .store
        .update_job(
            &task.job_id,
            &JobUpdate::Stage {
                name: "merge_audio",
                seconds,
            },
            now(),
        )
        .await?;
    if !warnings.is_empty() {
        services
            .store
            .update_job(&task.job_id, &JobUpdate::Warnings { warnings }, now())
            .await?;
    }
    services
        .store
        .update_job(&task.job_id, &JobUpdate::Succeeded, now())
        .await?;
    let _ = tokio::fs::remove_dir_all(&paths.dir).await;
    Ok(JobDone {
        job_id: task.job_id,
        output: format!("s3://{}/{}", manifest.output_bucket, manifest.output_key),
        bytes: report.bytes,
    })
}

/// job-failed: the state machine's Catch. Marks the job FAILED with the cause and removes its
/// scratch files. The output is only ever uploaded complete by merge-audio, so there is nothing
/// partial to remove in the bucket.
pub async fn job_failed<S, O, X>(
    services: &Services<S, O, X>,
    task: FailedTask,
) -> Result<JobTask, HandlerError>
where
    S: StateStore + JobStore,
{
    let error = task.error.describe();
    services
        .store
        .update_job(&task.job_id, &JobUpdate::Failed { error }, now())
        .await?;
    if task.job_id.bytes().all(|b| b.is_ascii_hexdigit()) && !task.job_id.is_empty() {
        let _ = tokio::fs::remove_dir_all(
            JobPaths::new(&services.config.scratch_root, &task.job_id).dir,
        )
        .await;
    }
    Ok(JobTask {
        job_id: task.job_id,
    })
}
