//! analyze: an upload → a job record, the probe (by ranged reads), the plan, the manifest,
//! the pair records and the execution.

use super::event_jobs::{new_job_record, EventJob};
use super::{
    announce, blocking, event_jobs, now, object_source, read_existing_manifest, supersede,
    write_once, Services, Upload,
};
use crate::error::HandlerError;
use crate::events::{AnalyzeOutcome, AnalyzedJob, ExecutionInput, S3Event};
use crate::job::{output_key, output_keys, JobManifest, JobPaths};
use crate::job_settings::{self, ResolvedSettings, SettingsError, SettingsLayer};
use crate::ports::{ExecutionStarter, ObjectError, ObjectStore, ObjectVersion};
use crate::segment_objects::SegmentObjects;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use treemux_core::engine::{self, JobSpec};
use treemux_core::local::FRAGMENT_SECONDS;
use treemux_core::media::probe::{self, PacketReads};
use treemux_core::media::source::{self, OverlaySource, Source};
use treemux_core::names::Stage;
use treemux_core::renditions::rendition_settings;
use treemux_core::settings::JobSettings;
use treemux_core::state::{JobStatus, JobStore, JobUpdate, LatestClaim, StateStore};

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
            EventJob::Spec(upload) => {
                // Read by the job of the video beside it when that one is uploaded.
                tracing::info!(
                    bucket = %upload.bucket,
                    key = %upload.key,
                    outcome = "job-spec",
                    "analyze: s3://{}/{} is a job spec: no job of its own",
                    upload.bucket,
                    upload.key
                );
                jobs.push(AnalyzedJob {
                    job_id: String::new(),
                    bucket: upload.bucket,
                    key: upload.key,
                    outcome: "job-spec".to_owned(),
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
    let record = new_job_record(config, upload, id);
    if !services.store.create_job(&record).await? {
        // The same upload again. Carry on only if an earlier attempt stopped before starting.
        let existing = services.store.get_job(id).await?;
        if let Some(job) = existing.filter(|job| job.status != JobStatus::Created) {
            return Ok(("duplicate", job.segments));
        }
    }
    // Newest upload wins: an older one stops here; a newer one stops the key's previous job.
    // A submitted job is the newest when it is analyzed (uploads after it are newer).
    let claim = if upload.submitted.is_some() {
        LatestClaim::Newest {
            previous: services.store.take_latest(bucket, key, id).await?,
        }
    } else {
        services
            .store
            .claim_latest(bucket, key, id, &upload.order)
            .await?
    };
    match claim {
        LatestClaim::Older { newest } => {
            let reason = format!(
                "superseded by job {newest}: a newer upload of s3://{bucket}/{key} came first"
            );
            supersede(services, id, &newest, reason).await?;
            return Ok(("superseded", 0));
        }
        LatestClaim::Newest {
            previous: Some(previous),
        } => {
            let reason = format!(
                "superseded by job {id}: s3://{bucket}/{key} was uploaded again while this job ran"
            );
            supersede(services, &previous, id, reason).await?;
            tracing::info!(job_id = %previous, superseded_by = %id, key, "job superseded");
        }
        LatestClaim::Newest { previous: None } => {}
    }
    let prepared = prepare(services, id, upload).await;
    // The job may have ended while it was prepared: a newer upload superseded it, or job-failed
    // failed it (an earlier attempt's execution was stopped) and removed its scratch, which this
    // attempt may have written again (or failed to write, its directory gone). Checked after the
    // writes, so either job-failed's removal came after them or this check sees the job ended:
    // start nothing, leave nothing behind, and report the end rather than an error to retry.
    let status = services.store.get_job(id).await?.map(|job| job.status);
    if let Some(ended @ (JobStatus::Superseded | JobStatus::Failed)) = status {
        let _ = tokio::fs::remove_dir_all(JobPaths::new(&config.scratch_root, id).dir).await;
        tracing::info!(
            job_id = %id,
            status = ended.name(),
            "analyze: the job ended while it was prepared; nothing started"
        );
        let outcome = if ended == JobStatus::Failed {
            "failed"
        } else {
            "superseded"
        };
        return Ok((outcome, 0));
    }
    match prepared {
        Ok(manifest) => {
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
            announce::state(services, id).await;
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
            supersede(services, id, &newest, error.message.clone()).await?;
            let _ = tokio::fs::remove_dir_all(JobPaths::new(&config.scratch_root, id).dir).await;
            Ok(("superseded", 0))
        }
        Err(error) => {
            if error.kind != treemux_core::ErrorKind::Transient {
                let failure = JobUpdate::Failed {
                    error: format!("{}: {}", error.name(), error.message),
                };
                services.store.update_job(id, &failure, now()).await?;
                announce::state(services, id).await;
                let _ =
                    tokio::fs::remove_dir_all(JobPaths::new(&config.scratch_root, id).dir).await;
            }
            Err(error)
        }
    }
}

/// Resolves the job's own settings (HEAD: the upload's metadata; its job spec, if any) and
/// records them, then probes the upload by ranged reads (no copy), plans it, saves the bytes
/// opening it reads, writes the manifest and the pair records.
///
/// The manifest is written once: a repeated analyze (a retry, a duplicate event) that finds it
/// uses it as it is and reads nothing again, so an execution that may already run on it never
/// sees it change.
async fn prepare<S, O, X>(
    services: &Services<S, O, X>,
    id: &str,
    upload: &Upload,
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
    let head = services.objects.head(bucket, key, &upload.version).await?;
    // The job's own settings, before any work; a bad one fails the job naming it.
    let resolved = job_settings(services, upload, &head.metadata).await?;
    let JobSettings {
        container,
        encode: settings,
        renditions,
        packaging,
        thumbnails,
    } = resolved.settings.clone();
    // Each rung's settings (tallest first) and where its file goes, or the package's manifest.
    let ladder = rendition_settings(&settings, &renditions);
    let heights: Vec<u32> = ladder.iter().filter_map(|rung| rung.height).collect();
    let single = output_key(&config.output_prefix, key, container.extension());
    let rendition_keys = output_keys(&single, &heights, packaging);
    let output = rendition_keys[0].clone();
    let rendition_keys = if packaging.is_some() || ladder.is_empty() {
        Vec::new()
    } else {
        rendition_keys
    };
    let recorded = JobUpdate::Settings {
        settings: resolved.settings.clone(),
        from: resolved.from.clone(),
        output: format!("s3://{}/{output}", config.output_bucket),
    };
    services.store.update_job(id, &recorded, now()).await?;
    let origins = resolved.origins();
    let store = object_source(&services.objects, bucket, key, &upload.version, head.size);

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
        // What the job's settings make of this source (a height above its own without
        // upscale, a frame too small for the encoder) is refused naming where they came from.
        let with_origins = |error: treemux_core::Error| {
            let mut error = HandlerError::from(error);
            if error.kind == treemux_core::ErrorKind::InvalidInput {
                error.message = format!(
                    "{} (job settings: {origins})",
                    job_settings::in_setting_terms(&error.message)
                );
            }
            error
        };
        let mut job = engine::prepare_job(
            &source,
            info,
            &source_name,
            &output_name,
            container,
            &settings,
            &config.plan,
        )
        .map_err(with_origins)?;
        // Every rung checked as the job's own settings are (a rung taller than the source
        // without upscale is refused here), and a package's keyframe grid, as locally.
        job.set_renditions(&ladder, &source_name, &output_name)
            .map_err(with_origins)?;
        if packaging.is_some() {
            job.align_keyframes(FRAGMENT_SECONDS);
        }
        if let Some(request) = &thumbnails {
            job.set_thumbnails(request, &source_name)
                .map_err(with_origins)?;
        }
        // Before any work: an output one multipart upload cannot hold is refused now, not by
        // merge-audio after every segment was encoded.
        engine::check_output_fits_multipart(&job, &source_name).map_err(with_origins)?;
        // A package, and an output written in one pass (another container, kept subtitles,
        // chapters), read every segment at the root: those stay on scratch, not fetched whole
        // into the root's local storage.
        let segment_objects = config
            .segment_bucket
            .as_deref()
            .filter(|_| packaging.is_none() && job.may_be_laid_out())
            .map(|bucket| SegmentObjects::for_job(bucket, &id_owned));
        let JobSpec {
            info,
            settings,
            plan,
            tree,
            audio_actions,
            renditions,
            keyframes,
            thumbnails,
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
                output_extension: container.extension().to_owned(),
                container,
                settings,
                info,
                plan,
                tree,
                audio_actions,
                renditions,
                keyframes,
                packaging,
                rendition_keys,
                thumbnails,
                segment_objects,
            },
            opening,
        ))
    })
    .await?;
    // Before the manifest: a worker that finds the manifest finds this too. (A duplicate
    // analyze writes the same bytes: the first copy stays.)
    write_once(&opening_path, opening.to_compressed_bytes()).await?;
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

/// The settings of `upload`'s job: the stack's, a template, its job spec (`<key>.treemux.json`
/// beside it, read at any version: it is not part of the upload), its object `metadata`
/// ([`crate::job_settings`]) and, for a submitted job, the submitter's settings over them. A setting that cannot be read or does not fit is
/// `TreemuxInvalidInput` naming the upload and the setting.
async fn job_settings<S, O, X>(
    services: &Services<S, O, X>,
    upload: &Upload,
    metadata: &BTreeMap<String, String>,
) -> Result<ResolvedSettings, HandlerError>
where
    O: ObjectStore,
{
    let config = &services.config;
    let (bucket, key) = (upload.bucket.as_str(), upload.key.as_str());
    let invalid =
        |error: SettingsError| HandlerError::invalid(format!("s3://{bucket}/{key}: {error}"));
    let mut metadata = SettingsLayer::from_metadata(metadata).map_err(invalid)?;
    if let Some(submitted) = &upload.submitted {
        let value = serde_json::Value::Object(submitted.clone());
        let submitted = SettingsLayer::from_json(&value, crate::submit::SUBMIT_ORIGIN, true)
            .map_err(invalid)?;
        metadata = metadata.under(&submitted);
    }
    let spec_key = job_settings::spec_key(key);
    let any = ObjectVersion::default();
    let spec = match services.objects.head(bucket, &spec_key, &any).await {
        Ok(head) if head.size > job_settings::SPEC_MAX_BYTES => {
            return Err(HandlerError::invalid(format!(
                "s3://{bucket}/{spec_key}: a job spec of {} bytes; treemux reads at most {}",
                head.size,
                job_settings::SPEC_MAX_BYTES
            )))
        }
        Ok(head) => {
            let bytes = services
                .objects
                .read_range(bucket, &spec_key, &any, 0, head.size)
                .await?;
            let origin = format!("s3://{bucket}/{spec_key}");
            Some(SettingsLayer::from_spec(&bytes, &origin).map_err(invalid)?)
        }
        Err(ObjectError::NotFound { .. }) => None,
        Err(error) => return Err(error.into()),
    };
    job_settings::resolve(
        &config.settings,
        config.container,
        &config.templates,
        spec.as_ref(),
        &metadata,
    )
    .map_err(invalid)
}

/// Most bytes analyze saves of what opening the source reads (an hour's MP4 `moov` is a few MiB).
const OPENING_CAP: u64 = 64 * 1024 * 1024;

impl HandlerError {
    /// Names the upload instead of the scratch copy in a probe error.
    fn with_source_name(mut self, bucket: &str, key: &str) -> Self {
        if let Some((_, cause)) = self.message.split_once(": ") {
            self.message = format!("s3://{bucket}/{key}: {cause}");
        }
        self
    }
}
