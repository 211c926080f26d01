//! merge-audio's outputs beyond rung 0's file: the other rungs of a ladder of files (each
//! muxed by the engine's `finish_rendition` into scratch, then uploaded to its own key), and a
//! job's HLS/DASH package (written by the engine's `finish_package` into scratch, then uploaded
//! as objects under the output prefix, in parallel, the manifest last).
//!
//! Each finished piece leaves a marker on scratch, so a retried merge-audio uploads only what is
//! missing. The key's newest job is checked before each upload and again before a package's
//! manifest: a superseded job never leaves a manifest pointing at its objects.

use super::merge_audio::ensure_newest;
use super::{blocking, job_source, write_once, Services};
use crate::error::HandlerError;
use crate::job::{JobManifest, JobPaths};
use crate::ports::ObjectStore;
use crate::upload::MultipartStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use treemux_core::engine::{self, JobSpec, ScratchLayout};
use treemux_core::local::FRAGMENT_SECONDS;
use treemux_core::media::package::PackageFormat;
use treemux_core::media::remux::MuxTarget;
use treemux_core::state::{JobStore, StateStore};
use treemux_core::summary::OutputFile;

/// Objects of a package uploaded at once (the Lambda's time is bounded; fragments are many).
pub const PACKAGE_UPLOADS: usize = 16;

/// Rungs 1… of a ladder of files, each muxed into scratch and uploaded to its key
/// (`manifest.rendition_keys`), each upload running while the next rung is muxed; returns every rung's object, rung 0's (`rung0_bytes`, already
/// uploaded by parts) first. Empty for a job without a ladder. Precondition: every rung's root
/// and the audio are finished.
pub(super) async fn upload_other_rungs<S, O, X>(
    services: &Services<S, O, X>,
    manifest: &JobManifest,
    job: &JobSpec,
    layout: &ScratchLayout,
    rung0_bytes: u64,
) -> Result<Vec<OutputFile>, HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
{
    if manifest.rendition_keys.len() < 2 {
        return Ok(Vec::new());
    }
    let paths = JobPaths::new(&services.config.scratch_root, &manifest.job_id);
    let bucket = &manifest.output_bucket;
    let name = |key: &str| format!("s3://{bucket}/{key}");
    let mut outputs = vec![OutputFile {
        name: name(&manifest.output_key),
        bytes: rung0_bytes,
    }];
    let mut source = None;
    let mut uploads = tokio::task::JoinSet::new();
    for (rung, key) in (1u32..).zip(&manifest.rendition_keys[1..]) {
        let marker = paths.dir.join(format!("output-{rung}.uploaded"));
        if let Some(bytes) = read_marker(&marker).await {
            outputs.push(OutputFile {
                name: name(key),
                bytes,
            });
            continue;
        }
        let source = match &source {
            Some(source) => source,
            None => source.insert(job_source(services, manifest).await?),
        };
        let file = paths.rendition_output(rung, &manifest.output_extension);
        let (mux_source, mux_job, mux_layout, target) =
            (source.clone(), job.clone(), layout.clone(), file.clone());
        blocking(move || {
            engine::finish_rendition(
                &mux_source,
                &mux_job,
                &mux_layout,
                rung,
                MuxTarget::File(target),
            )
            .map_err(HandlerError::from)
        })
        .await?;
        let bytes = file_size(&file).await?;
        ensure_newest(services, manifest).await?;
        // Uploaded while the next rung is muxed (the Lambda's time is bounded).
        let (objects, upload_bucket, upload_key, job_id) = (
            services.objects.clone(),
            bucket.clone(),
            key.clone(),
            manifest.job_id.clone(),
        );
        uploads.spawn(async move {
            objects
                .put_from_path(&file, &upload_bucket, &upload_key)
                .await?;
            let _ = write_once(&marker, bytes.to_string().into_bytes()).await;
            let _ = tokio::fs::remove_file(&file).await;
            tracing::info!(job_id = %job_id, rung, key = %upload_key, bytes, "merge-audio: rendition uploaded");
            Ok::<_, HandlerError>(())
        });
        outputs.push(OutputFile {
            name: name(key),
            bytes,
        });
    }
    while let Some(done) = uploads.join_next().await {
        done.map_err(|e| HandlerError::internal(format!("a rendition upload stopped: {e}")))??;
    }
    Ok(outputs)
}

/// The job's HLS/DASH package: the audio joined, the package written into scratch by the
/// engine, every object but the manifest uploaded under the manifest's prefix
/// ([`PACKAGE_UPLOADS`] at once), then the manifest (`manifest.output_key`) last, each only
/// while the job is its key's newest. Returns the package's bytes and its objects (the
/// manifest first).
pub(super) async fn upload_package<S, O, X>(
    services: &Services<S, O, X>,
    manifest: &JobManifest,
    job: &JobSpec,
    layout: &ScratchLayout,
    format: PackageFormat,
) -> Result<(u64, Vec<OutputFile>), HandlerError>
where
    S: StateStore + JobStore,
    O: ObjectStore + MultipartStore + Clone + 'static,
{
    let paths = JobPaths::new(&services.config.scratch_root, &manifest.job_id);
    let marker = paths.dir.join("package-uploaded.json");
    if let Ok(bytes) = tokio::fs::read(&marker).await {
        // An earlier attempt uploaded the manifest and died before recording the job's success.
        let outputs: Vec<OutputFile> = serde_json::from_slice(&bytes)
            .map_err(|e| HandlerError::internal(format!("{}: {e}", marker.display())))?;
        return Ok((outputs.iter().map(|o| o.bytes).sum(), outputs));
    }
    let source = job_source(services, manifest).await?;
    let dir = paths.package_dir();
    // What an earlier attempt left half written is written again.
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let manifest_file = dir.join(format.manifest_name());
    let (package_job, package_layout, target) = (job.clone(), layout.clone(), manifest_file);
    let files = blocking(move || {
        engine::finish_audio(&source, &package_job, &package_layout).map_err(HandlerError::from)?;
        let report = engine::finish_package(
            &package_job,
            &package_layout,
            format,
            &target,
            FRAGMENT_SECONDS,
        )
        .map_err(HandlerError::from)?;
        let dir = target.parent().map(Path::to_owned).unwrap_or_default();
        let mut files = Vec::new();
        list_files(&dir, &dir, &mut files)
            .map_err(|e| HandlerError::media(format!("{}: {e}", dir.display())))?;
        tracing::info!(
            files = report.files,
            bytes = report.bytes,
            renditions = report.renditions.len(),
            "merge-audio: package written"
        );
        Ok(files)
    })
    .await?;
    let bucket = manifest.output_bucket.clone();
    let prefix = manifest
        .output_key
        .rsplit_once('/')
        .map_or(String::new(), |(prefix, _)| format!("{prefix}/"));
    let manifest_name = PathBuf::from(format.manifest_name());
    ensure_newest(services, manifest).await?;
    let limit = Arc::new(tokio::sync::Semaphore::new(PACKAGE_UPLOADS));
    let mut uploads = tokio::task::JoinSet::new();
    let mut outputs = Vec::with_capacity(files.len());
    for (relative, bytes) in files.iter().filter(|(r, _)| *r != manifest_name) {
        let key = format!("{prefix}{}", relative.to_string_lossy());
        let (objects, bucket, path, limit) = (
            services.objects.clone(),
            bucket.clone(),
            dir.join(relative),
            limit.clone(),
        );
        outputs.push(OutputFile {
            name: format!("s3://{bucket}/{key}"),
            bytes: *bytes,
        });
        uploads.spawn(async move {
            let _permit = limit.acquire_owned().await;
            objects.put_from_path(&path, &bucket, &key).await
        });
    }
    while let Some(done) = uploads.join_next().await {
        done.map_err(|e| HandlerError::internal(format!("a package upload stopped: {e}")))??;
    }
    // Last, and only while the job is still its key's newest: a player that finds the manifest
    // finds everything it names.
    ensure_newest(services, manifest).await?;
    let manifest_bytes = files
        .iter()
        .find(|(r, _)| *r == manifest_name)
        .map(|(_, bytes)| *bytes)
        .ok_or_else(|| HandlerError::internal("the package has no manifest"))?;
    services
        .objects
        .put_from_path(&dir.join(&manifest_name), &bucket, &manifest.output_key)
        .await?;
    outputs.sort_by(|a, b| a.name.cmp(&b.name));
    outputs.insert(
        0,
        OutputFile {
            name: format!("s3://{bucket}/{}", manifest.output_key),
            bytes: manifest_bytes,
        },
    );
    let record = serde_json::to_vec(&outputs).map_err(|e| HandlerError::internal(e.to_string()))?;
    let _ = write_once(&marker, record).await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    Ok((outputs.iter().map(|o| o.bytes).sum(), outputs))
}

/// A marker's recorded byte count, if an earlier attempt finished that piece.
async fn read_marker(marker: &Path) -> Option<u64> {
    tokio::fs::read_to_string(marker)
        .await
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn file_size(path: &Path) -> Result<u64, HandlerError> {
    Ok(tokio::fs::metadata(path)
        .await
        .map_err(|e| HandlerError::media(format!("{}: {e}", path.display())))?
        .len())
}

/// Every file under `dir` (recursively) as its path relative to `root`, with its bytes.
fn list_files(root: &Path, dir: &Path, files: &mut Vec<(PathBuf, u64)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_files(root, &path, files)?;
        } else {
            let relative = path.strip_prefix(root).unwrap_or(&path).to_owned();
            files.push((relative, entry.metadata()?.len()));
        }
    }
    Ok(())
}
