//! The root's thumbnails on AWS: composed once every segment is done (the core's
//! `engine::finish_thumbnails`, from the tiles the segment workers left in the job's EFS
//! scratch) and uploaded beside the output key (`videos/a.mp4` → `videos/a.poster.jpg`,
//! `videos/a.thumbnails.vtt`, `videos/a.thumbnails-0.jpg`, …; inside an HLS/DASH package's
//! prefix `poster.jpg`, …), as the job record lists them.

use super::{blocking, Services};
use crate::error::HandlerError;
use crate::job::{JobManifest, JobPaths};
use crate::ports::ObjectStore;
use treemux_core::engine;
use treemux_core::summary::OutputFile;
use treemux_core::thumbnails::ThumbnailNames;

/// The directory part of `key` (with its `/`) and the file name's stem.
fn beside(key: &str) -> (&str, &str) {
    let (dir, file) = match key.rfind('/') {
        Some(slash) => key.split_at(slash + 1),
        None => ("", key),
    };
    let stem = file.rsplit_once('.').map_or(file, |(stem, _)| stem);
    (dir, stem)
}

/// Composes the job's thumbnails and uploads each beside its output key; empty when the job
/// asked for none. Repeatable: a retried root composes and puts the same objects again.
/// Precondition: every segment is done and the job's scratch is still there.
pub(super) async fn upload_thumbnails<S, O, X>(
    services: &Services<S, O, X>,
    manifest: &JobManifest,
    paths: &JobPaths,
) -> Result<Vec<OutputFile>, HandlerError>
where
    O: ObjectStore,
{
    let job = manifest.job();
    if job.thumbnails.is_none() {
        return Ok(Vec::new());
    }
    let (bucket, key) = (&manifest.output_bucket, &manifest.output_key);
    let (dir, stem) = beside(key);
    // Inside a package's prefix unprefixed, as locally inside its directory.
    let names = ThumbnailNames::new(manifest.packaging.is_none().then_some(stem));
    let layout = paths.layout();
    let files = blocking(move || {
        engine::finish_thumbnails(&job, &layout, &names).map_err(HandlerError::from)
    })
    .await?;
    let mut uploaded = Vec::with_capacity(files.len());
    for file in files {
        let object = format!("{dir}{}", file.name);
        let bytes = tokio::fs::metadata(&file.path)
            .await
            .map_err(|e| HandlerError::transient(format!("{}: {e}", file.path.display())))?
            .len();
        services
            .objects
            .put_from_path(&file.path, bucket, &object)
            .await?;
        uploaded.push(OutputFile {
            name: format!("s3://{bucket}/{object}"),
            bytes,
        });
    }
    Ok(uploaded)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_go_beside_the_output_key() {
        assert_eq!(super::beside("videos/a.mp4"), ("videos/", "a"));
        assert_eq!(super::beside("a.b.mkv"), ("", "a.b"));
        assert_eq!(super::beside("out/x"), ("out/", "x"));
    }
}
