//! Where a local run's thumbnails go: beside a file output, named by its stem
//! (`out.mp4` → `out.poster.jpg`, `out.thumbnails.vtt`, `out.thumbnails-0.jpg`), or inside a
//! package's directory (`poster.jpg`, …); checked against the existing-output rule before any
//! work and put in place, each complete, only after the output is.

use super::ExistingOutput;
use crate::engine::ThumbnailFile;
use crate::error::Error;
use crate::thumbnails::{ThumbnailNames, ThumbnailPlan};
use std::path::{Path, PathBuf};

/// The directory and names of a run's thumbnail files.
pub(super) struct ThumbnailTargets {
    dir: PathBuf,
    pub(super) names: ThumbnailNames,
}

impl ThumbnailTargets {
    /// For the output `output`; `package`: it is an HLS/DASH manifest (the files go in its
    /// directory, unprefixed).
    pub(super) fn new(output: &Path, package: bool) -> Self {
        let dir = match output.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let stem = output.file_stem().map(|stem| stem.to_string_lossy());
        let names = ThumbnailNames::new(if package { None } else { stem.as_deref() });
        Self { dir, names }
    }

    /// Every file `plan` makes, where it goes.
    fn paths(&self, plan: &ThumbnailPlan) -> Vec<PathBuf> {
        let mut names = vec![self.names.poster()];
        if !plan.tile_pts.is_empty() {
            names.push(self.names.index());
            names.extend((0..plan.grid().sheets()).map(|sheet| self.names.sheet(sheet)));
        }
        names.into_iter().map(|name| self.dir.join(name)).collect()
    }

    /// Refuses, before any work, a thumbnail file that exists unless `existing` replaces it
    /// (the output's own rule, in its words).
    pub(super) fn check(
        &self,
        plan: &ThumbnailPlan,
        existing: ExistingOutput,
    ) -> Result<(), Error> {
        for path in self.paths(plan) {
            if std::fs::symlink_metadata(&path).is_err() {
                crate::atomic_file::AtomicFile::remove_stale(&path);
                continue;
            }
            match existing {
                ExistingOutput::Replace => {}
                ExistingOutput::Refuse => {
                    return Err(Error::request(
                        &path,
                        "already exists; add -y (--overwrite) to replace it",
                    ))
                }
                ExistingOutput::Keep => {
                    return Err(Error::request(
                        &path,
                        "already exists and -n (--no-overwrite) keeps it; nothing done",
                    ))
                }
            }
        }
        Ok(())
    }

    /// Puts every composed file in place (each written complete, then renamed); on a failure
    /// the ones already placed are removed again. Returns their paths.
    pub(super) fn place(&self, files: &[ThumbnailFile]) -> Result<Vec<PathBuf>, Error> {
        let mut placed = Vec::with_capacity(files.len());
        for file in files {
            let target = self.dir.join(&file.name);
            let written = std::fs::read(&file.path)
                .map_err(|source| Error::Io {
                    path: file.path.clone(),
                    source,
                })
                .and_then(|bytes| Ok(crate::atomic_file::write_atomically(&target, &bytes)?));
            if let Err(error) = written {
                remove_all(&placed);
                return Err(error);
            }
            placed.push(target);
        }
        Ok(placed)
    }
}

/// Removes `paths` (a failed run's thumbnails), ignoring any already gone.
pub(super) fn remove_all(paths: &[PathBuf]) {
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}
