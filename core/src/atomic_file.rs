//! Files that appear complete or not at all: the one way treemux writes a file others may read
//! (media outputs, node indexes, reports, downloads, scratch copies).
//!
//! An [`AtomicFile`] is written under a hidden temporary name in its target's directory and
//! renamed (or hard-linked) to the target when complete; dropped without being committed, it is
//! removed. The temporary file is created exclusively (`O_EXCL`), under a random name and readable
//! by the owner only: in a shared directory such as `/tmp` nobody can plant a symbolic link at the
//! name or read the half-written file, and a task and a duplicate of it writing the same target
//! at once each get their own, so neither can truncate what the other renames. It gets ordinary
//! permissions (those of a new file under the process's umask) when it is committed.

use std::fs::File;
use std::path::{Path, PathBuf};

/// A failed step of writing `path` (the target's name, never the hidden one).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}", path = .path.display())]
pub struct AtomicFileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// A file being written under a temporary name beside its target (see the module docs).
#[derive(Debug)]
pub struct AtomicFile {
    partial: PathBuf,
    target: PathBuf,
    finished: bool,
}

impl AtomicFile {
    /// A new, empty, owner-only file beside `target`, under a name that holds this process's id
    /// (so [`AtomicFile::remove_stale`] can recognise a killed process's debris). The directory
    /// must exist.
    pub fn create(target: &Path) -> Result<Self, AtomicFileError> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (_, partial) = tempfile::Builder::new()
            .prefix(&format!(".{name}.{}.", std::process::id()))
            .suffix(".partial")
            .tempfile_in(directory_of(target))
            .and_then(|file| file.keep().map_err(|e| e.error))
            .map_err(|source| AtomicFileError {
                path: target.to_owned(),
                source,
            })?;
        Ok(Self {
            partial,
            target: target.to_owned(),
            finished: false,
        })
    }

    /// Where the file is being written (a hidden name: open or write it, never show it to the
    /// user; errors name [`AtomicFile::target`]).
    pub fn path(&self) -> &Path {
        &self.partial
    }

    /// The name the file gets when committed: the one errors show.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The file opened for writing from its start, for writers that take a handle rather than
    /// a path.
    pub fn open(&self) -> Result<File, AtomicFileError> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.partial)
            .map_err(|source| self.error(source))
    }

    /// The error of a failed step on this file, naming its target.
    pub fn error(&self, source: std::io::Error) -> AtomicFileError {
        AtomicFileError {
            path: self.target.clone(),
            source,
        }
    }

    /// The bytes written so far.
    pub fn len(&self) -> Result<u64, AtomicFileError> {
        std::fs::metadata(&self.partial)
            .map(|m| m.len())
            .map_err(|source| self.error(source))
    }

    /// True when nothing has been written yet.
    pub fn is_empty(&self) -> Result<bool, AtomicFileError> {
        self.len().map(|len| len == 0)
    }

    /// Gives the finished file ordinary permissions and renames it to its target name, replacing
    /// any file there (atomic on one file system).
    pub fn commit(mut self) -> Result<(), AtomicFileError> {
        self.publishable()?;
        std::fs::rename(&self.partial, &self.target).map_err(|source| self.error(source))?;
        self.finished = true;
        Ok(())
    }

    /// Like [`AtomicFile::commit`], but never replaces an existing target (a hard link, unlike a
    /// rename, refuses to): true when this call published the file, false when the target
    /// already existed (this file is then discarded).
    pub fn commit_unless_exists(self) -> Result<bool, AtomicFileError> {
        self.publishable()?;
        match std::fs::hard_link(&self.partial, &self.target) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(source) => Err(self.error(source)),
        }
        // Dropping `self` removes the temporary name; a published file lives on under the target.
    }

    fn publishable(&self) -> Result<(), AtomicFileError> {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = 0o666 & !process_umask();
        std::fs::set_permissions(&self.partial, std::fs::Permissions::from_mode(mode))
            .map_err(|source| self.error(source))
    }

    /// Removes what [`AtomicFile`]s for `target` left behind when their process was killed
    /// (SIGKILL, power loss: nothing of the process ran to remove them), recognised by their name
    /// and the process id in it no longer running. For a local directory only: on storage shared
    /// between machines (EFS) another machine's live process can carry an id that is free here.
    /// Returns how many files it removed.
    pub fn remove_stale(target: &Path) -> usize {
        let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return 0;
        };
        let prefix = format!(".{name}.");
        let Ok(entries) = std::fs::read_dir(directory_of(target)) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = file_name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".partial"))
                .and_then(|middle| middle.split_once('.'))
                .and_then(|(pid, _)| pid.parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            if pid != std::process::id() as libc::pid_t
                && !process_is_running(pid)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // After a commit the temporary name is gone (renamed) or a second link (hard-linked).
        if !self.finished || self.partial.exists() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Writes `bytes` to `target` complete or not at all, replacing what was there.
pub fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), AtomicFileError> {
    let partial = AtomicFile::create(target)?;
    std::fs::write(partial.path(), bytes).map_err(|source| partial.error(source))?;
    partial.commit()
}

/// Writes `bytes` to `target` complete or not at all, unless `target` exists: true when this
/// call wrote it (two writers racing for one name: exactly one wins, the other changes nothing).
pub fn write_atomically_unless_exists(
    target: &Path,
    bytes: &[u8],
) -> Result<bool, AtomicFileError> {
    let partial = AtomicFile::create(target)?;
    std::fs::write(partial.path(), bytes).map_err(|source| partial.error(source))?;
    partial.commit_unless_exists()
}

fn directory_of(target: &Path) -> &Path {
    match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// True unless the kernel says no process `pid` exists (a process of another user counts as
/// running).
fn process_is_running(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    alive || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The process's file-creation mask, read without changing it (Linux reports it in
/// `/proc/self/status`); the common `022` when it cannot be read.
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Umask:"))
                .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    fn entries(dir: &Path) -> usize {
        std::fs::read_dir(dir).expect("list").count()
    }

    #[test]
    fn partial_files_are_private_unique_and_public_once_committed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("out.mp4");
        let (first, second) = (
            AtomicFile::create(&target).expect("create"),
            AtomicFile::create(&target).expect("create"),
        );
        assert_ne!(first.path(), second.path(), "unique names");
        for partial in [&first, &second] {
            assert_eq!(partial.path().parent(), Some(dir.path()));
            assert_eq!(mode(partial.path()), 0o600, "owner only while written");
        }
        let abandoned = second.path().to_owned();
        drop(second);
        assert!(!abandoned.exists(), "an abandoned partial file is removed");
        first.commit().expect("commit");
        assert_eq!(mode(&target), 0o666 & !process_umask());
        assert_eq!(entries(dir.path()), 1, "only the committed file is left");
        // Debris of killed processes is recognised; a running process's file is not touched.
        let dead = dir.path().join(".out.mp4.2147483646.abc123.partial");
        let running = dir
            .path()
            .join(format!(".out.mp4.{}.def456.partial", std::process::id()));
        let unrelated = dir.path().join(".other.mp4.2147483646.abc123.partial");
        for path in [&dead, &running, &unrelated] {
            std::fs::write(path, b"x").expect("write");
        }
        assert_eq!(AtomicFile::remove_stale(&target), 1);
        assert!(!dead.exists() && running.exists() && unrelated.exists());
    }

    #[test]
    fn commit_replaces_and_commit_unless_exists_keeps_the_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("index.json");
        write_atomically(&target, b"first").expect("write");
        write_atomically(&target, b"second").expect("replace");
        assert_eq!(std::fs::read(&target).expect("read"), b"second");

        let once = dir.path().join("marker");
        let a = AtomicFile::create(&once).expect("create");
        std::io::Write::write_all(&mut a.open().expect("open"), b"a").expect("write");
        let b = AtomicFile::create(&once).expect("create");
        std::fs::write(b.path(), b"b").expect("write");
        assert!(a.commit_unless_exists().expect("publish"));
        assert!(!b.commit_unless_exists().expect("second publish"));
        assert_eq!(
            std::fs::read(&once).expect("read"),
            b"a",
            "the first one stays"
        );
        assert_eq!(entries(dir.path()), 2, "no temporary names are left");
    }
}
