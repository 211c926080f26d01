//! The output path checked before any work: a known container, a writable directory, never
//! the input, and an existing file only when the user said to replace it.

use super::ExistingOutput;
use crate::error::Error;
use crate::media::package::PackageFormat;
use crate::settings::Container;
use std::path::{Path, PathBuf};

/// Checks the output path before any work: a known container, a writable directory, not the
/// input itself (the input is never overwritten), and not an existing file unless `existing`
/// says to replace it.
pub fn check_output_path(
    input: &Path,
    output: &Path,
    existing: ExistingOutput,
) -> Result<Container, Error> {
    // An HLS or DASH package's segments are MP4's (fragmented).
    let container = Container::from_path(output)
        .or_else(|| PackageFormat::from_path(output).map(|_| Container::Mp4))
        .ok_or_else(|| {
            Error::request(
                output,
                "unknown output type: the name must end in .mp4, .m4v, .mov, .mkv or .webm, \
                 or .m3u8 (HLS) or .mpd (DASH)",
            )
        })?;
    if output.is_dir() {
        return Err(Error::request(
            output,
            "is a directory; name an output file",
        ));
    }
    let directory = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    if !directory.is_dir() {
        return Err(Error::request(
            output,
            format!("directory {} does not exist", directory.display()),
        ));
    }
    probe_writable(&directory).map_err(|source| {
        Error::request(
            output,
            format!(
                "cannot write to directory {}: {}",
                directory.display(),
                os_reason(&source)
            ),
        )
    })?;
    let same_file = match (
        std::fs::canonicalize(input),
        std::fs::canonicalize(&directory),
    ) {
        (Ok(input), Ok(directory)) => output
            .file_name()
            .is_some_and(|name| directory.join(name) == input),
        _ => false,
    };
    if same_file || is_same_inode(input, output) {
        return Err(Error::request(
            output,
            "is the input file; choose a different output (treemux never overwrites its input)",
        ));
    }
    // A dangling symbolic link counts as existing: replacing it needs -y as well.
    if std::fs::symlink_metadata(output).is_ok() {
        match existing {
            ExistingOutput::Replace => {}
            ExistingOutput::Refuse => {
                return Err(Error::request(
                    output,
                    "already exists; add -y (--overwrite) to replace it",
                ))
            }
            ExistingOutput::Keep => {
                return Err(Error::request(
                    output,
                    "already exists and -n (--no-overwrite) keeps it; nothing done",
                ))
            }
        }
    }
    Ok(container)
}

/// Creates and removes a file in `directory`, proving that the output can be written there
/// before any work starts. The file's name is never shown: errors carry the OS's reason only.
fn probe_writable(directory: &Path) -> std::io::Result<()> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let mut attempt = 0;
    loop {
        let probe = directory.join(format!(
            ".treemux-write-check.{}.{nanos}.{attempt}",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
        {
            Ok(_) => return std::fs::remove_file(&probe),
            // Left by a killed run with the same process id: try another name.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The operating system's reason for `error` without its `(os error N)` code, e.g.
/// `Permission denied`.
fn os_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(end) if text.ends_with(')') => text[..end].to_owned(),
        _ => text,
    }
}

#[cfg(unix)]
fn is_same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn is_same_inode(_: &Path, _: &Path) -> bool {
    false
}
