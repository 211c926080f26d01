//! The handlers' test harness: in-memory state, a local-directory object store and a
//! recording execution starter over a temporary directory, real event fixtures, and a job driven
//! the way the state machine drives it. Shared by `handlers.rs` and `job_settings.rs`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use treemux_core::plan::PlanOptions;
use treemux_core::settings::{Container, EncodeSettings, VideoCodec};
use treemux_core::state::{InMemoryStateStore, JobStore};
use treemux_core::steps::NextStep;
use treemux_functions::events::{ExecutionInput, JobTask, MergeTask, SegmentTask};
use treemux_functions::handlers::{self, Config, Services};
use treemux_functions::job_events::{JobEvents, RecordingSink};
use treemux_functions::ports::{LocalDirStore, RecordingStarter};

pub type TestServices = Services<InMemoryStateStore, LocalDirStore, RecordingStarter>;

/// The "bucket" that keeps segment files between tasks (under `<dir>/buckets`).
pub const SEGMENT_BUCKET: &str = "treemux-segments";

/// Whatever the tasks left in their local directory (nothing: each removes its copies).
pub fn local_copies(services: &TestServices) -> Vec<PathBuf> {
    std::fs::read_dir(&services.config.local_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .collect()
}

/// Every segment object left in `services`' segment bucket: none once a job has ended.
pub fn segment_objects(services: &TestServices) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&services.objects.root.join(SEGMENT_BUCKET), &mut found);
    found
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .expect("fixture")
}

pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../samples")
        .join(name)
}

/// Services over a temporary directory holding the "buckets" and the scratch root, with the
/// fixture's upload in place.
pub fn services(dir: &Path, upload: &str) -> TestServices {
    services_for(dir, &sample(upload))
}

/// [`services`] with any file as the fixture's upload (its content decides what it is).
pub fn services_for(dir: &Path, upload: &Path) -> TestServices {
    let objects = LocalDirStore {
        root: dir.join("buckets"),
    };
    let target = objects.root.join("treemux-input/uploads/café clip.webm");
    std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
    std::fs::copy(upload, &target).expect("upload");
    let mut settings = EncodeSettings::new(VideoCodec::H264);
    settings.preset = "veryfast".into();
    Services {
        store: InMemoryStateStore::new(),
        objects,
        executions: RecordingStarter::default(),
        events: JobEvents::default(),
        config: Config {
            scratch_root: dir.join("efs"),
            output_bucket: "treemux-output".into(),
            output_prefix: "transcoded/".into(),
            settings,
            container: Container::Mp4,
            templates: Default::default(),
            plan: PlanOptions {
                max_segments: 4,
                min_segment_seconds: 1.0,
                ..PlanOptions::default()
            },
            crashes: Default::default(),
            climb_seconds: treemux_functions::handlers::climb_seconds_for(900.0),
            // Segments kept as objects, as the deployed stack keeps them.
            segment_bucket: Some(SEGMENT_BUCKET.into()),
            local_dir: dir.join("local"),
        },
    }
}

/// [`services`] with the job events kept: every event (progress at every change) in the bus,
/// completions in the topic.
pub fn services_with_events(
    dir: &Path,
    upload: &str,
) -> (TestServices, Arc<RecordingSink>, Arc<RecordingSink>) {
    let (bus, topic) = (
        Arc::new(RecordingSink::default()),
        Arc::new(RecordingSink::default()),
    );
    let services = Services {
        events: JobEvents {
            bus: Some(bus.clone()),
            completion: Some(topic.clone()),
            progress_interval: std::time::Duration::ZERO,
        },
        ..services(dir, upload)
    };
    (services, bus, topic)
}

pub fn started_input(services: &TestServices) -> ExecutionInput {
    let started = services.executions.started.lock().expect("lock");
    assert_eq!(started.len(), 1, "one execution started");
    serde_json::from_str(&started[0].1).expect("execution input")
}

/// Runs the job the way the state machine does: audio beside the segments, each segment task
/// climbing while it wins merges, then merge-audio. Returns the tasks that merged.
pub async fn drive(services: &TestServices, input: &ExecutionInput) -> Vec<MergeTask> {
    let (job, merges) = drive_to_root(services, input).await;
    let step = handlers::merge_audio(services, job.clone())
        .await
        .expect("merge-audio");
    if let treemux_functions::events::RootStep::UploadParts { groups, .. } = step {
        for group in groups {
            handlers::upload_parts(services, group)
                .await
                .expect("upload-parts");
        }
        let complete = JobTask {
            complete: true,
            ..job
        };
        handlers::merge_audio(services, complete)
            .await
            .expect("complete merge-audio");
    }
    merges
}

/// [`drive`] up to the root: every task before merge-audio. Returns merge-audio's task and the
/// tasks that merged.
pub async fn drive_to_root(
    services: &TestServices,
    input: &ExecutionInput,
) -> (JobTask, Vec<MergeTask>) {
    // split-audio and merge-audio take the job as Step Functions passes it (fixture).
    let job: JobTask =
        serde_json::from_str(&fixture("task-job.json").replace("JOB_ID", &input.job_id))
            .expect("task");
    handlers::split_audio(services, job.clone())
        .await
        .expect("split-audio");
    let mut merges = Vec::new();
    let mut audio_ready = 0;
    for &segment in input.segments.iter().rev() {
        let mut step = handlers::split_and_convert(
            services,
            SegmentTask {
                job_id: input.job_id.clone(),
                segment,
            },
        )
        .await
        .expect("split-and-convert");
        while let NextStep::Merge { node, child } = step.next {
            let task = MergeTask {
                job_id: input.job_id.clone(),
                node,
                child,
            };
            merges.push(task.clone());
            step = handlers::merge_video(services, task)
                .await
                .expect("merge-video");
        }
        if step.next == NextStep::MergeAudio {
            audio_ready += 1;
        }
    }
    assert_eq!(audio_ready, 1, "exactly one task reaches the root");
    // Every segment is kept where the job's manifest says: as an object each (none on
    // scratch), or on scratch for a package; no task left a local copy.
    let scratch = services
        .config
        .scratch_root
        .join("jobs")
        .join(&input.job_id);
    let manifest: treemux_functions::job::JobManifest =
        serde_json::from_slice(&std::fs::read(scratch.join("manifest.json")).expect("manifest"))
            .expect("manifest parses");
    let on_scratch: Vec<_> = std::fs::read_dir(&scratch)
        .expect("scratch")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("node-0-") && name.ends_with(".nut"))
        .collect();
    let kept = segment_objects(services);
    let (expected_kept, expected_on_scratch) = match manifest.segment_objects {
        Some(_) => (input.segments.len(), 0),
        None => (0, input.segments.len()),
    };
    assert_eq!(kept.len(), expected_kept, "segment objects: {kept:?}");
    assert_eq!(
        on_scratch.len(),
        expected_on_scratch,
        "segments on scratch: {on_scratch:?}"
    );
    assert_eq!(
        local_copies(services),
        Vec::<PathBuf>::new(),
        "local copies left"
    );
    (job, merges)
}

pub async fn job(store: &InMemoryStateStore, id: &str) -> treemux_core::state::JobRecord {
    store.get_job(id).await.expect("read").expect("record")
}
