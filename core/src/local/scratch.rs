//! A local run's scratch directory: a fresh temporary one, or for `--resume` one named by the
//! run's identity (input, container, settings, plan, audio) and private to this user.

use crate::error::Error;
use crate::media::audio::AudioAction;
use crate::plan::SegmentPlan;
use crate::settings::{Container, EncodeSettings};
use crate::thumbnails::ThumbnailPlan;
use std::path::{Path, PathBuf};

/// The scratch directory: a fresh temporary one, or the named one `--resume` reuses.
pub(super) enum Scratch {
    Temp(tempfile::TempDir),
    Named(PathBuf),
}

impl Scratch {
    pub(super) fn path(&self) -> &Path {
        match self {
            Self::Temp(dir) => dir.path(),
            Self::Named(dir) => dir,
        }
    }

    pub(super) fn keep(self) -> PathBuf {
        match self {
            Self::Temp(dir) => dir.keep(),
            Self::Named(dir) => dir,
        }
    }

    /// Removes the directory, except a resumable one after a failure.
    pub(super) fn finish(self, succeeded: bool) {
        match self {
            Self::Temp(dir) => drop(dir),
            Self::Named(dir) if succeeded => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Self::Named(_) => {}
        }
    }
}

/// A stable 64-bit FNV-1a hash (std's hasher may change between Rust releases).
fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Identifies a run for `--resume`: the same input file (path, size, modification time), the
/// same output container, encoder settings, plan, audio actions and thumbnails give the same key; anything
/// else gives another, so stale work is never reused.
pub(super) fn resume_key(
    input: &Path,
    container: Container,
    rungs: &[EncodeSettings],
    plan: &SegmentPlan,
    audio_actions: &[AudioAction],
    thumbnails: Option<&ThumbnailPlan>,
) -> u64 {
    let file = std::fs::canonicalize(input).unwrap_or_else(|_| input.to_owned());
    let (size, modified) = std::fs::metadata(input).map_or((0, 0), |meta| {
        let modified = meta
            .modified()
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_nanos());
        (meta.len(), modified)
    });
    let identity = format!(
        "{}\n{size}\n{modified}\n{}\n{}\n{}\n{audio_actions:?}",
        file.display(),
        container.muxer_name(),
        match rungs {
            // One rendition: the key such runs have always had.
            [settings] => serde_json::to_string(settings),
            ladder => serde_json::to_string(ladder),
        }
        .unwrap_or_default(),
        serde_json::to_string(&plan.segments).unwrap_or_default(),
    );
    // Thumbnails change what a segment leaves in scratch (runs without keep their old key).
    let identity = match thumbnails {
        Some(plan) => format!(
            "{identity}\n{}",
            serde_json::to_string(plan).unwrap_or_default()
        ),
        None => identity,
    };
    fnv1a(identity.as_bytes(), 0xcbf2_9ce4_8422_2325)
}

/// Creates (or, resuming, accepts) `root/treemux-resume-<key>`, private to this user.
pub(super) fn resume_dir(root: &Path, key: u64) -> Result<PathBuf, Error> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    let dir = root.join(format!("treemux-resume-{key:016x}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(dir),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            // The name is predictable, so only a directory this user made, that nobody else
            // can write, is trusted with work to reuse.
            let meta = std::fs::symlink_metadata(&dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            if meta.is_dir() && meta.uid() == me && meta.mode() & 0o077 == 0 {
                Ok(dir)
            } else {
                Err(Error::request(
                    &dir,
                    "exists but is not a private directory of this user; remove it to resume",
                ))
            }
        }
        Err(source) => Err(Error::Io { path: dir, source }),
    }
}
