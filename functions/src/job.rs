//! A job's identity, its scratch directory and the manifest every task reads.
//!
//! The job id is derived from the upload (bucket, key, and version or ETag), so a duplicate S3
//! event maps to the same job. Scratch paths are built from the job id only, never from the S3
//! key: a key with `../`, spaces or unicode cannot reach outside the job's directory.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use treemux::media::audio::AudioAction;
use treemux::media::probe::MediaInfo;
use treemux::plan::SegmentPlan;
use treemux::settings::EncodeSettings;
use treemux::tree::{MergeTree, NodeId};

/// The id of the job for one uploaded object version: 24 hex digits of a SHA-256.
///
/// ```
/// use treemux_functions::job::{decode_event_key, job_id, JobPaths};
///
/// let key = decode_event_key("uploads/..%2F..%2Fescape+me.mp4").unwrap();
/// assert_eq!(key, "uploads/../../escape me.mp4");
/// let id = job_id("treemux-input", &key, "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd");
/// assert_eq!(id, job_id("treemux-input", &key, "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd"), "a duplicate event is the same job");
/// // Scratch paths are built from the id alone, never from the key.
/// let paths = JobPaths::new(std::path::Path::new("/mnt/efs"), &id);
/// assert!(paths.manifest().starts_with("/mnt/efs/jobs"));
/// ```
pub fn job_id(bucket: &str, key: &str, version: &str) -> String {
    let mut hash = Sha256::new();
    for part in [bucket, key, version] {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    hash.finalize()
        .iter()
        .take(12)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Decodes an S3 event key: `+` is a space, `%XX` a byte (AWS documents keys in events as
/// URL-encoded this way).
pub fn decode_event_key(key: &str) -> Result<String, std::str::Utf8Error> {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
}

/// A file extension safe to use in a path: lowercase ASCII letters and digits, at most 8, or
/// `bin`. Only a hint for FFmpeg's probing; the content decides.
pub fn safe_extension(key: &str) -> String {
    let extension = key
        .rsplit_once('.')
        .map(|(_, extension)| extension)
        .unwrap_or("");
    if !extension.is_empty()
        && extension.len() <= 8
        && extension.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        extension.to_ascii_lowercase()
    } else {
        "bin".to_owned()
    }
}

/// The output key for an upload: `prefix` + the key without its extension + `.extension`, with
/// empty, `.` and `..` path segments dropped so keys stay tidy.
pub fn output_key(prefix: &str, key: &str, extension: &str) -> String {
    let stem = key
        .rsplit_once('.')
        .filter(|(stem, _)| !stem.is_empty() && !stem.ends_with('/'))
        .map_or(key, |(stem, _)| stem);
    let segments: Vec<&str> = stem
        .split('/')
        .filter(|segment| !segment.is_empty() && *segment != "." && *segment != "..")
        .collect();
    let name = if segments.is_empty() {
        "video".to_owned()
    } else {
        segments.join("/")
    };
    format!("{prefix}{name}.{extension}")
}

/// Files of one job under the scratch root (EFS in AWS).
#[derive(Clone, Debug)]
pub struct JobPaths {
    pub dir: PathBuf,
}

impl JobPaths {
    /// Precondition: `job_id` is one made by [`job_id`] (hex digits only).
    pub fn new(scratch_root: &Path, job_id: &str) -> Self {
        debug_assert!(
            job_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "job ids are hex"
        );
        Self {
            dir: scratch_root.join("jobs").join(job_id),
        }
    }

    pub fn source(&self, extension: &str) -> PathBuf {
        self.dir.join(format!("source.{extension}"))
    }

    pub fn manifest(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }

    pub fn node(&self, node: NodeId) -> PathBuf {
        self.dir
            .join(format!("node-{}-{}.nut", node.level, node.index))
    }

    pub fn audio(&self) -> PathBuf {
        self.dir.join("audio.nut")
    }

    pub fn output(&self, extension: &str) -> PathBuf {
        self.dir.join(format!("output.{extension}"))
    }
}

/// Everything the tasks of a job need, written once by analyze next to the source.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobManifest {
    pub job_id: String,
    pub source_bucket: String,
    pub source_key: String,
    pub output_bucket: String,
    pub output_key: String,
    pub output_extension: String,
    pub settings: EncodeSettings,
    /// The probe of the source copy in the scratch directory (without the frame list).
    pub info: MediaInfo,
    pub plan: SegmentPlan,
    pub tree: MergeTree,
    pub audio_actions: Vec<AudioAction>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_depend_on_every_part() {
        let id = job_id("in", "a.mp4", "v1");
        assert_eq!(id.len(), 24);
        assert_eq!(id, job_id("in", "a.mp4", "v1"));
        assert_ne!(id, job_id("in", "a.mp4", "v2"));
        assert_ne!(
            job_id("in", "ab", "c"),
            job_id("in", "a", "bc"),
            "parts are separated"
        );
    }

    #[test]
    fn event_keys_are_decoded_as_aws_documents() {
        assert_eq!(
            decode_event_key("videos%2Fa+b.mp4").as_deref(),
            Ok("videos/a b.mp4")
        );
        assert_eq!(
            decode_event_key("caf%C3%A9+%2B1.mov").as_deref(),
            Ok("café +1.mov")
        );
    }

    #[test]
    fn hostile_keys_stay_inside_the_job_directory() {
        let paths = JobPaths::new(Path::new("/efs"), &job_id("b", "../../etc/passwd", "v"));
        let source = paths.source(&safe_extension("../../etc/passwd"));
        assert!(source.starts_with("/efs/jobs/"));
        assert_eq!(
            source.file_name().and_then(|n| n.to_str()),
            Some("source.bin")
        );
        assert_eq!(safe_extension("clip.M%2F4"), "bin");
        assert_eq!(safe_extension("clip.MOV"), "mov");
        assert_eq!(
            output_key("out/", "../../a b/../x.mov", "mp4"),
            "out/a b/x.mp4"
        );
        assert_eq!(output_key("out/", "..", "mp4"), "out/video.mp4");
    }
}
