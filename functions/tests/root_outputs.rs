//! merge-audio's outputs beyond one file, through the handlers with in-memory fakes: an HLS
//! package (`x-amz-meta-treemux-packaging`) uploaded as objects under the output prefix, every
//! one listed with its size on the job record, which verify's `verify_package` passes; a job
//! superseded by a newer upload before its root leaves no manifest and no scratch; a DASH
//! ladder; a ladder's root retried after a failed upload redoes only what is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use treemux_core::media::verify::{verify_package, VerifyOptions};
use treemux_core::state::JobStatus;
use treemux_functions::events::S3Event;
use treemux_functions::handlers;

mod handler_fakes;
use handler_fakes::{drive, drive_to_root, fixture, job, services_for, TestServices};

const BUCKET: &str = "treemux-input";
/// The fixture event's key, decoded.
const KEY: &str = "uploads/café clip.webm";
/// Where the package of `KEY` goes, in the output bucket.
const PREFIX: &str = "transcoded/uploads/café clip.webm/";

/// A 6 s, 25 fps 320x180 H.264/AAC clip by the ffmpeg CLI.
fn clip(dir: &Path) -> PathBuf {
    let path = dir.join("clip.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=25:duration=6",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=6"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made {}", path.display());
    path
}

/// The fixture's event as upload `sequencer` of the key.
fn event(sequencer: &str) -> S3Event {
    let text = fixture("s3-object-created.json").replace("0055AED6DCD90281E5", sequencer);
    serde_json::from_str(&text).expect("event")
}

/// A packaged job's services: the clip as the upload, an HLS ladder in its metadata.
fn packaged(dir: &Path) -> TestServices {
    let services = services_for(dir, &clip(dir));
    let metadata: BTreeMap<String, String> = [
        ("treemux-renditions", "180,120"),
        ("treemux-packaging", "hls"),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect();
    services
        .objects
        .put_metadata(BUCKET, KEY, &metadata)
        .expect("metadata");
    services
}

/// Analyzes upload `sequencer`; returns its job id and the execution input it started.
async fn analyze(
    services: &TestServices,
    sequencer: &str,
) -> (String, treemux_functions::events::ExecutionInput) {
    handlers::analyze(services, event(sequencer))
        .await
        .expect("analyze");
    let id = handlers::event_jobs(&services.config, &event(sequencer))
        .find_map(|job| match job {
            Ok(handlers::EventJob::Job { id, .. }) => Some(id),
            _ => None,
        })
        .expect("a job");
    let started = services.executions.started.lock().expect("lock");
    let input = started
        .iter()
        .find(|(name, _)| *name == id)
        .map(|(_, input)| serde_json::from_str(input).expect("execution input"))
        .expect("an execution for the job");
    (id, input)
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, found);
            } else {
                let relative = path.strip_prefix(root).expect("under the root");
                found.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found);
    found.sort();
    found
}

#[tokio::test]
async fn a_package_is_uploaded_under_the_prefix_and_every_object_is_on_the_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = packaged(dir.path());
    let (id, input) = analyze(&services, "0055AED6DCD90281E5").await;
    drive(&services, &input).await;
    let record = job(&services.store, &id).await;
    assert_eq!(record.status, JobStatus::Succeeded, "{:?}", record.error);
    assert_eq!(
        record.output,
        format!("s3://treemux-output/{PREFIX}master.m3u8")
    );

    let package = dir.path().join("buckets/treemux-output").join(PREFIX);
    let stored = files(&package);
    assert!(stored.contains(&"master.m3u8".to_owned()), "{stored:?}");
    assert!(stored.iter().any(|f| f.ends_with(".m4s")), "{stored:?}");
    // The record lists every object with its size, the manifest first.
    let outputs = &record.result.outputs;
    assert_eq!(
        outputs[0].name,
        format!("s3://treemux-output/{PREFIX}master.m3u8")
    );
    let mut listed: Vec<String> = outputs
        .iter()
        .map(|o| {
            o.name
                .strip_prefix(&format!("s3://treemux-output/{PREFIX}"))
                .expect("under the prefix")
                .to_owned()
        })
        .collect();
    listed.sort();
    assert_eq!(listed, stored, "the record lists what was uploaded");
    for output in outputs {
        let relative = &output.name[format!("s3://treemux-output/{PREFIX}").len()..];
        let bytes = std::fs::metadata(package.join(relative))
            .expect("object")
            .len();
        assert_eq!(output.bytes, bytes, "{}", output.name);
    }
    assert_eq!(
        record.result.output_bytes,
        outputs.iter().map(|o| o.bytes).sum::<u64>()
    );

    let source = dir.path().join("clip.mp4");
    let verdicts = verify_package(
        &source,
        &package.join("master.m3u8"),
        &VerifyOptions::default(),
    )
    .expect("verify runs");
    assert_eq!(verdicts.len(), 2, "both renditions");
    for verdict in &verdicts {
        assert!(
            verdict.report.passed(),
            "{}: {:?}",
            verdict.rendition.display(),
            verdict.report.failures().collect::<Vec<_>>()
        );
    }
    assert!(
        !dir.path().join("efs/jobs").join(&id).exists(),
        "scratch removed"
    );
}

#[tokio::test]
async fn a_job_superseded_before_its_root_leaves_no_manifest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = packaged(dir.path());
    let (id, input) = analyze(&services, "0055AED6DCD90281E5").await;
    let (root, _) = drive_to_root(&services, &input).await;
    // The key uploaded again while the first job's root waits: the newer upload's job wins.
    let (newer, _) = analyze(&services, "0055AED6DCD90281F0").await;
    assert_ne!(newer, id);
    let error = handlers::merge_audio(&services, root)
        .await
        .expect_err("a superseded root writes nothing");
    assert_eq!(error.name(), "TreemuxSuperseded", "{}", error.message);
    let record = job(&services.store, &id).await;
    assert_eq!(record.status, JobStatus::Superseded);
    let output = dir.path().join("buckets/treemux-output");
    let written = files(&output);
    assert!(
        !written.iter().any(|f| f.ends_with(".m3u8")),
        "no playlist of the superseded job: {written:?}"
    );
    assert!(
        !dir.path().join("efs/jobs").join(&id).exists(),
        "the superseded job's scratch removed"
    );
}

#[tokio::test]
async fn a_dash_package_has_its_manifest_and_every_representation_decodes_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = packaged(dir.path());
    let metadata: BTreeMap<String, String> = [
        ("treemux-renditions", "180,120"),
        ("treemux-packaging", "dash"),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect();
    services
        .objects
        .put_metadata(BUCKET, KEY, &metadata)
        .expect("metadata");
    let (id, input) = analyze(&services, "0055AED6DCD90281E5").await;
    drive(&services, &input).await;
    let record = job(&services.store, &id).await;
    assert_eq!(record.status, JobStatus::Succeeded, "{:?}", record.error);
    let manifest = format!("s3://treemux-output/{PREFIX}manifest.mpd");
    assert_eq!(record.output, manifest);
    assert_eq!(
        record.result.outputs[0].name, manifest,
        "the manifest first"
    );
    let package = dir.path().join("buckets/treemux-output").join(PREFIX);
    assert_eq!(
        files(&package).len(),
        record.result.outputs.len(),
        "every object on the record"
    );
    // Each representation, its init segment and fragments joined, decodes every one of the
    // 150 frames at its height.
    let stored = files(&package);
    for (id, height) in [(0, "180"), (1, "120")] {
        let mut bytes = std::fs::read(package.join(format!("init-{id}.m4s"))).expect("init");
        for chunk in stored
            .iter()
            .filter(|f| f.starts_with(&format!("chunk-{id}-")))
        {
            bytes.extend(std::fs::read(package.join(chunk)).expect("fragment"));
        }
        let joined = dir.path().join(format!("representation-{id}.mp4"));
        std::fs::write(&joined, bytes).expect("joined");
        let output = Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-show_entries"])
            .args(["stream=height,nb_read_frames", "-of", "csv=p=0"])
            .arg(&joined)
            .output()
            .expect("ffprobe runs");
        let probed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert_eq!(probed, format!("{height},150"), "representation {id}");
    }
}

#[tokio::test]
async fn a_ladder_root_retried_after_a_failed_upload_finishes_only_what_is_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = services_for(dir.path(), &clip(dir.path()));
    let metadata: BTreeMap<String, String> = [("treemux-renditions", "120,180")]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    services
        .objects
        .put_metadata(BUCKET, KEY, &metadata)
        .expect("metadata");
    let (id, input) = analyze(&services, "0055AED6DCD90281E5").await;
    let (root, _) = drive_to_root(&services, &input).await;
    // The 120p object cannot be written (a directory holds its name): the root fails
    // transiently after rung 0's object is complete.
    let out = dir.path().join("buckets/treemux-output/transcoded/uploads");
    let blocker = out.join("café clip.webm_120p.mp4");
    std::fs::create_dir_all(blocker.join("in-the-way")).expect("blocker");
    let error = handlers::merge_audio(&services, root.clone())
        .await
        .expect_err("the 120p upload fails");
    assert_eq!(error.name(), "TreemuxTransient", "{}", error.message);
    let rung_0 = out.join("café clip.webm_180p.mp4");
    let first = std::fs::metadata(&rung_0)
        .expect("rung 0 uploaded")
        .modified()
        .expect("a modification time");
    assert_eq!(job(&services.store, &id).await.status, JobStatus::Running);

    // Retried (as Step Functions retries a transient error): rung 0 found complete, the 120p
    // rung muxed and uploaded, the job done.
    std::fs::remove_dir_all(&blocker).expect("blocker removed");
    handlers::merge_audio(&services, root)
        .await
        .expect("the retried root");
    let record = job(&services.store, &id).await;
    assert_eq!(record.status, JobStatus::Succeeded, "{:?}", record.error);
    assert_eq!(
        std::fs::metadata(&rung_0)
            .and_then(|m| m.modified())
            .expect("rung 0"),
        first,
        "rung 0 is not uploaded again"
    );
    let source = dir.path().join("clip.mp4");
    for (file, height) in [(&rung_0, 180), (&blocker, 120)] {
        let report = treemux_core::media::verify::verify(&source, file, &VerifyOptions::default())
            .expect("verify runs");
        assert!(
            report.passed(),
            "{}: {:?}",
            file.display(),
            report.failures().collect::<Vec<_>>()
        );
        let named = record
            .result
            .outputs
            .iter()
            .find(|o| o.name.ends_with(&format!("_{height}p.mp4")))
            .expect("on the record");
        assert_eq!(named.bytes, std::fs::metadata(file).expect("object").len());
    }
    assert!(
        !dir.path().join("efs/jobs").join(&id).exists(),
        "scratch removed"
    );
}
