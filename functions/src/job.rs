//! A job's identity, its scratch directory and the manifest every task reads.
//!
//! The job id is derived from the upload ([`JobIdentity`]: bucket, key, object version, the
//! upload event, and the settings), so a duplicate S3 event maps to the same job while a new
//! upload of the same bytes, or the same upload under other settings, is a new job. Scratch
//! paths are built from the job id only, never from the S3 key: a key with `../`, spaces or
//! unicode cannot reach outside the job's directory.

use crate::job_settings::Templates;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use treemux_core::engine::{JobSpec, ScratchLayout};
use treemux_core::media::audio::AudioAction;
use treemux_core::media::package::PackageFormat;
use treemux_core::media::probe::MediaInfo;
use treemux_core::plan::SegmentPlan;
use treemux_core::renditions::{rendition_output, KeyframeGrid};
use treemux_core::settings::Container;
use treemux_core::settings::EncodeSettings;
use treemux_core::tree::MergeTree;

/// Everything that makes one job: what is read (bucket, key, exact object version), which
/// upload event asked for it, and the settings it is made with.
///
/// ```
/// use treemux_functions::job::{decode_event_key, JobIdentity, JobPaths};
///
/// let key = decode_event_key("uploads/..%2F..%2Fescape+me.mp4").unwrap();
/// assert_eq!(key, "uploads/../../escape me.mp4");
/// let identity = JobIdentity {
///     bucket: "treemux-input",
///     key: &key,
///     version: "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd",
///     upload: "0055AED6DCD90281E5",
///     settings: "h264 crf 23",
/// };
/// let id = identity.job_id();
/// assert_eq!(id, identity.clone().job_id(), "a duplicate event is the same job");
/// // Scratch paths are built from the id alone, never from the key.
/// let paths = JobPaths::new(std::path::Path::new("/mnt/efs"), &id);
/// assert!(paths.manifest().starts_with("/mnt/efs/jobs"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobIdentity<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    /// The S3 version id, else the ETag (unversioned buckets): the exact bytes.
    pub version: &'a str,
    /// The upload event: S3's `sequencer`, else the event time; empty for a hand-made event.
    /// Two deliveries of one event agree; a second upload of the same bytes does not.
    pub upload: &'a str,
    /// [`settings_fingerprint`] of the configuration the job runs with.
    pub settings: &'a str,
}

impl JobIdentity<'_> {
    /// The job id: 24 hex digits of a SHA-256 over every part.
    pub fn job_id(&self) -> String {
        let mut hash = Sha256::new();
        for part in [
            self.bucket,
            self.key,
            self.version,
            self.upload,
            self.settings,
        ] {
            hash.update(part.as_bytes());
            hash.update([0u8]);
        }
        hash.finalize()
            .iter()
            .take(12)
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// A stable text of everything in the stack's configuration that changes a job's output: the
/// default encoder settings and container, the templates an upload may choose, the plan options
/// and where the output goes. Part of the job identity, so a stack with new settings makes a
/// new job of a repeated event. An upload's own settings (its object metadata, its job spec)
/// are not: they belong to that upload, whose event (`upload`) and version already separate
/// it from any other, and they are read only once the job's record exists, so that a bad one
/// fails that record (job-failed derives the same ids without reading the object).
pub fn settings_fingerprint(
    settings: &EncodeSettings,
    container: Container,
    templates: &Templates,
    plan: &treemux_core::plan::PlanOptions,
    output_bucket: &str,
    output_prefix: &str,
) -> String {
    format!(
        "{}|{}|{}|{}|{output_bucket}|{output_prefix}",
        serde_json::to_string(settings).unwrap_or_default(),
        container.extension(),
        serde_json::to_string(templates).unwrap_or_default(),
        serde_json::to_string(plan).unwrap_or_default(),
    )
}

/// Ranks uploads of one key, for [`treemux_core::state::JobStore::claim_latest`]: a later upload
/// gives a greater string. S3's `sequencer` is hexadecimal and, as AWS documents, compared after
/// padding the shorter one with leading zeros; events without one (moto, hand-made events) fall
/// back to the event time (ISO 8601 UTC, which sorts as text), then to `fallback` (the time
/// analyze ran, in the same format).
pub fn upload_order(sequencer: Option<&str>, event_time: Option<&str>, fallback: &str) -> String {
    match (
        sequencer.filter(|s| !s.is_empty()),
        event_time.filter(|t| !t.is_empty()),
    ) {
        (Some(sequencer), _) => format!("s{:0>40}", sequencer.to_ascii_uppercase()),
        (None, Some(time)) => format!("t{time}"),
        (None, None) => format!("t{fallback}"),
    }
}

/// True when `bucket`/`key` is where treemux writes its outputs: the output bucket under the
/// output prefix. analyze refuses such keys, so an output configured inside the watched input
/// prefix cannot feed itself back as a new upload, generation after generation.
pub fn is_treemux_output(
    output_bucket: &str,
    output_prefix: &str,
    bucket: &str,
    key: &str,
) -> bool {
    bucket == output_bucket && key.starts_with(output_prefix)
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

/// The output key for an upload: `prefix` + the whole key (its extension kept) + `.extension`,
/// with empty, `.` and `..` path segments dropped so keys stay tidy. Keeping the input's
/// extension keeps outputs apart: `uploads/x.mov` → `prefix/uploads/x.mov.mp4` and
/// `uploads/x.mp4` → `prefix/uploads/x.mp4.mp4`. Distinct tidy keys map to distinct outputs.
pub fn output_key(prefix: &str, key: &str, extension: &str) -> String {
    let segments: Vec<&str> = key
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
/// The keys of a job's outputs: with `packaging`, the package's manifest under a prefix named
/// as the single output without its extension (`out/a.mp4.mp4` → `out/a.mp4/master.m3u8`,
/// the playlists and fragments beside it); else one key per rung of `heights` (tallest
/// first), named as the local runner names its files (`out/a.mp4_720p.mp4`), or `output`
/// itself without a ladder. The first key is the job's `output_key`.
pub fn output_keys(output: &str, heights: &[u32], packaging: Option<PackageFormat>) -> Vec<String> {
    if let Some(format) = packaging {
        let stem = output.rsplit_once('.').map_or(output, |(stem, _)| stem);
        return vec![format!("{stem}/{}", format.manifest_name())];
    }
    if heights.is_empty() {
        return vec![output.to_owned()];
    }
    heights
        .iter()
        .map(|&height| {
            rendition_output(Path::new(output), height)
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct JobPaths {
    pub dir: PathBuf,
}

impl JobPaths {
    /// Precondition: `job_id` is one made by [`JobIdentity::job_id`] (hex digits only).
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

    /// The bytes FFmpeg read while opening the source (an MP4's `moov`, a Matroska header and
    /// its cues), saved by analyze so that workers do not fetch them again
    /// (`treemux_core::media::source::SavedRanges`).
    pub fn source_opening(&self) -> PathBuf {
        self.dir.join("source-opening.bin")
    }

    /// Segments, node indexes and the audio: the layout the core's engine defines (for one
    /// rendition; [`Self::layout_of`] for the job's own).
    pub fn layout(&self) -> ScratchLayout {
        ScratchLayout::new(&self.dir)
    }

    /// The layout of `manifest`'s job, with a directory per rendition of its ladder.
    pub fn layout_of(&self, manifest: &JobManifest) -> ScratchLayout {
        self.layout().with_renditions(manifest.renditions.len())
    }

    /// Where merge-audio writes rung `rung`'s file (`rung` ≥ 1) before uploading it.
    pub fn rendition_output(&self, rung: u32, extension: &str) -> PathBuf {
        self.dir.join(format!("output-{rung}.{extension}"))
    }

    /// Where merge-audio writes the job's HLS/DASH package before uploading it.
    pub fn package_dir(&self) -> PathBuf {
        self.dir.join("package")
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
    /// The object version read ([`crate::ports::ObjectVersion::label`]).
    #[serde(default)]
    pub source_version: String,
    /// The exact version every reader reads: its version id (versioned buckets)…
    #[serde(default)]
    pub source_version_id: Option<String>,
    /// …else its ETag.
    #[serde(default)]
    pub source_e_tag: Option<String>,
    /// Per segment, the bytes `[start, end)` of the source its worker reads (from the probe's
    /// packet positions), bounding its read-ahead; empty when unknown.
    #[serde(default)]
    pub segment_bytes: Vec<Option<[u64; 2]>>,
    pub output_bucket: String,
    pub output_key: String,
    pub output_extension: String,
    /// The job's output container (its own setting; MP4 in manifests from before there were
    /// per-job settings).
    #[serde(default = "mp4")]
    pub container: Container,
    pub settings: EncodeSettings,
    /// The probe of the source, named `s3://bucket/key` (without the frame list).
    pub info: MediaInfo,
    pub plan: SegmentPlan,
    pub tree: MergeTree,
    pub audio_actions: Vec<AudioAction>,
    /// Every rendition's settings, tallest first, for a job with a ladder (empty: `settings`
    /// alone); `settings` is then the first.
    #[serde(default)]
    pub renditions: Vec<EncodeSettings>,
    /// The keyframe grid of a packaged job (so the renditions' fragments align).
    #[serde(default)]
    pub keyframes: Option<KeyframeGrid>,
    /// An HLS/DASH package whose manifest is `output_key`; `None`: a file per rendition.
    #[serde(default)]
    pub packaging: Option<PackageFormat>,
    /// Each rendition's output key, for a ladder of files (the first is `output_key`).
    #[serde(default)]
    pub rendition_keys: Vec<String>,
    /// The job's thumbnails, planned by analyze (its `poster`/`thumbnails` settings); absent
    /// when it asked for none (and in manifests from before thumbnails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnails: Option<treemux_core::thumbnails::ThumbnailPlan>,
    /// Where rung 0's segment files are kept between tasks ([`crate::segment_objects`]);
    /// `None`: on scratch (a stack without a segment bucket, a package, older manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_objects: Option<crate::segment_objects::SegmentObjects>,
}

fn mp4() -> Container {
    Container::Mp4
}

impl JobManifest {
    /// The job as the core's engine runs it.
    pub fn job(&self) -> JobSpec {
        JobSpec {
            info: self.info.clone(),
            container: self.container,
            settings: self.settings.clone(),
            plan: self.plan.clone(),
            tree: self.tree,
            audio_actions: self.audio_actions.clone(),
            renditions: self.renditions.clone(),
            keyframes: self.keyframes,
            thumbnails: self.thumbnails.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_id(bucket: &str, key: &str, version: &str) -> String {
        JobIdentity {
            bucket,
            key,
            version,
            upload: "",
            settings: "",
        }
        .job_id()
    }

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
            "out/a b/x.mov.mp4"
        );
        assert_eq!(output_key("out/", "..", "mp4"), "out/video.mp4");
    }

    #[test]
    fn renditions_and_packages_are_named_as_the_local_runner_names_them() {
        let output = output_key("out/", "up/x.mov", "mp4");
        assert_eq!(output_keys(&output, &[], None), ["out/up/x.mov.mp4"]);
        assert_eq!(
            output_keys(&output, &[1080, 720], None),
            ["out/up/x.mov_1080p.mp4", "out/up/x.mov_720p.mp4"]
        );
        assert_eq!(
            output_keys(&output, &[720, 480], Some(PackageFormat::Hls)),
            ["out/up/x.mov/master.m3u8"]
        );
        assert_eq!(
            output_keys(&output, &[], Some(PackageFormat::Dash)),
            ["out/up/x.mov/manifest.mpd"]
        );
    }

    #[test]
    fn inputs_differing_only_in_extension_get_distinct_outputs() {
        let keys = ["up/x.mov", "up/x.mp4", "up/x", "up/x.MOV", "up/x.tar.gz"];
        let outputs: std::collections::BTreeSet<String> =
            keys.iter().map(|k| output_key("t/", k, "mp4")).collect();
        assert_eq!(outputs.len(), keys.len(), "{outputs:?}");
        assert_eq!(output_key("t/", "up/x.mov", "mp4"), "t/up/x.mov.mp4");
        assert_eq!(output_key("t/", "up/x", "mp4"), "t/up/x.mp4");
    }

    #[test]
    fn identity_parts_each_make_a_new_job() {
        let base = JobIdentity {
            bucket: "in",
            key: "a.mp4",
            version: "etag1",
            upload: "0055AED6DCD90281E5",
            settings: "crf23",
        };
        let id = base.job_id();
        assert_eq!(
            id,
            base.clone().job_id(),
            "a duplicate event is the same job"
        );
        for other in [
            JobIdentity {
                version: "etag2",
                ..base.clone()
            },
            JobIdentity {
                upload: "0055AED6DCD90281E6",
                ..base.clone()
            },
            JobIdentity {
                settings: "crf30",
                ..base.clone()
            },
        ] {
            assert_ne!(other.job_id(), id, "{other:?}");
        }
    }

    #[test]
    fn uploads_are_ordered_as_s3_documents_sequencers() {
        // AWS: compare sequencers after padding the shorter with leading zeros.
        assert!(upload_order(Some("FF"), None, "") < upload_order(Some("100"), None, ""));
        assert!(
            upload_order(None, Some("2026-12-01T10:00:00.100Z"), "")
                < upload_order(None, Some("2026-12-01T10:00:00.200Z"), "")
        );
        assert_eq!(upload_order(Some(""), None, "X"), "tX");
    }

    #[test]
    fn outputs_inside_the_input_are_recognised() {
        assert!(is_treemux_output(
            "b",
            "uploads/transcoded/",
            "b",
            "uploads/transcoded/x.mp4.mp4"
        ));
        assert!(!is_treemux_output(
            "b",
            "uploads/transcoded/",
            "b",
            "uploads/x.mp4"
        ));
        assert!(!is_treemux_output(
            "out",
            "transcoded/",
            "in",
            "transcoded/x.mp4"
        ));
    }
}
