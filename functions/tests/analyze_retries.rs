//! analyze against the real S3 and DynamoDB stores on the local stack (`scripts/local-stack up`),
//! for what happens between an upload event and analyze reading it (issue 12, items 3 and 4): a
//! retried analyze of a job still CREATED reads exactly the event's object version and never
//! rewrites the manifest an execution may already run on; an upload deleted before analyze reads
//! it ends as a FAILED job with the cause, also where S3 answers 403 (no `s3:ListBucket`).

mod common;

use common::{sdk, stack_available};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use treemux_core::plan::PlanOptions;
use treemux_core::settings::{Container, EncodeSettings, VideoCodec};
use treemux_core::state::{JobStatus, JobStore};
use treemux_functions::aws::{DynamoStore, S3Store};
use treemux_functions::events::{ExecutionInput, S3Event};
use treemux_functions::handlers::{self, Config, Services, Upload};
use treemux_functions::job::{JobManifest, JobPaths};
use treemux_functions::ports::{
    ExecutionStarter, ObjectError, ObjectStore, ObjectVersion, RecordingStarter, StartError,
};

/// Starts executions like [`RecordingStarter`], but refuses while `failing` is set (Step
/// Functions unreachable: analyze stops with a transient error, the job stays CREATED).
#[derive(Debug, Default)]
struct Starter {
    failing: AtomicBool,
    recorded: RecordingStarter,
}

impl ExecutionStarter for Starter {
    async fn start(&self, name: &str, input: &str) -> Result<(), StartError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StartError::Unavailable {
                name: name.to_owned(),
                message: "injected: Step Functions unavailable".into(),
            });
        }
        self.recorded.start(name, input).await
    }
}

type RealServices = Services<DynamoStore, S3Store, Starter>;

struct Setup {
    services: RealServices,
    s3: aws_sdk_s3::Client,
    bucket: String,
    dir: tempfile::TempDir,
}

async fn setup(test: &str) -> Setup {
    let name = format!("analyze-{test}-{}", std::process::id());
    let config = sdk().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    for bucket in [format!("{name}-in"), format!("{name}-out")] {
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
    }
    common::create_table(&dynamodb, &format!("{name}-jobs")).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = EncodeSettings::new(VideoCodec::H264);
    settings.preset = "veryfast".into();
    Setup {
        services: Services {
            store: DynamoStore {
                client: dynamodb,
                table: format!("{name}-jobs"),
                ttl_seconds: 3600,
            },
            objects: S3Store::new(s3.clone()),
            executions: Starter::default(),
            events: Default::default(),
            config: Config {
                scratch_root: dir.path().join("efs"),
                output_bucket: format!("{name}-out"),
                output_prefix: "transcoded/".into(),
                settings,
                container: Container::Mp4,
                templates: Default::default(),
                plan: PlanOptions {
                    max_segments: 4,
                    min_segment_seconds: 0.5,
                    ..PlanOptions::default()
                },
                crashes: Default::default(),
                climb_seconds: treemux_functions::handlers::climb_seconds_for(900.0),
                segment_bucket: None,
                local_dir: std::env::temp_dir(),
            },
        },
        s3,
        bucket: format!("{name}-in"),
        dir,
    }
}

/// A `frames`-frame 25 fps clip written by the ffmpeg CLI.
fn clip(dir: &Path, name: &str, frames: u32) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-frames:v", &frames.to_string(), "-c:v", "libx264"])
        .args(["-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    path
}

impl Setup {
    /// Uploads `file` to `key`; returns the event S3 sends for it (ETag, event time).
    async fn upload(&self, key: &str, file: &Path, event_time: &str) -> S3Event {
        let body = aws_sdk_s3::primitives::ByteStream::from_path(file)
            .await
            .expect("read");
        let put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .send()
            .await
            .expect("upload");
        let e_tag = put.e_tag().unwrap_or_default().trim_matches('"').to_owned();
        serde_json::from_value(serde_json::json!({"Records": [{
            "eventName": "ObjectCreated:Put", "eventTime": event_time,
            "s3": {"bucket": {"name": self.bucket}, "object": {"key": key, "eTag": e_tag}}}]}))
        .expect("event")
    }

    fn manifest(&self, job_id: &str) -> JobManifest {
        let path = JobPaths::new(&self.services.config.scratch_root, job_id).manifest();
        serde_json::from_slice(&std::fs::read(path).expect("manifest")).expect("parse")
    }

    fn started(&self) -> Vec<(String, ExecutionInput)> {
        let started = self
            .services
            .executions
            .recorded
            .started
            .lock()
            .expect("lock");
        started
            .iter()
            .map(|(name, input)| (name.clone(), serde_json::from_str(input).expect("input")))
            .collect()
    }
}

/// Frames the job's plan encodes: the upload's frame count.
fn planned_frames(manifest: &JobManifest) -> u64 {
    manifest.plan.segments.iter().map(|s| s.frames).sum()
}

#[tokio::test]
async fn a_retried_analyze_keeps_the_manifest_of_the_events_version() {
    if !stack_available() {
        return;
    }
    let setup = setup("retry").await;
    let (v1, v2) = (
        clip(setup.dir.path(), "v1.mp4", 30),
        clip(setup.dir.path(), "v2.mp4", 80),
    );
    let key = "uploads/clip.mp4";
    let event = setup.upload(key, &v1, "2026-12-01T10:00:00.000Z").await;
    let job_id = Upload::from_record(&event.records[0])
        .expect("upload")
        .job_id(&setup.services.config);

    // The first attempt prepares the job but cannot start it: the job stays CREATED.
    setup
        .services
        .executions
        .failing
        .store(true, Ordering::SeqCst);
    let error = handlers::analyze(&setup.services, event.clone())
        .await
        .expect_err("Step Functions is down");
    assert_eq!(error.name(), "TreemuxTransient");
    let record = setup
        .services
        .store
        .get_job(&job_id)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(record.status, JobStatus::Created);
    assert_eq!(planned_frames(&setup.manifest(&job_id)), 30);

    // The file is replaced, then Lambda retries the first event.
    let _newer = setup.upload(key, &v2, "2026-12-01T10:00:05.000Z").await;
    setup
        .services
        .executions
        .failing
        .store(false, Ordering::SeqCst);
    let outcome = handlers::analyze(&setup.services, event.clone())
        .await
        .expect("the retry starts the job");
    assert_eq!(outcome.jobs[0].outcome, "started");
    assert_eq!(
        planned_frames(&setup.manifest(&job_id)),
        30,
        "the manifest still describes the event's upload, not what the key holds now"
    );
    let started = setup.started();
    assert_eq!(started.len(), 1);
    assert_eq!(
        started[0].1.segments.len(),
        setup.manifest(&job_id).plan.segments.len()
    );

    // Had the first attempt died before writing anything, the retry finds the key replaced:
    // it must not read the newer bytes under this job.
    std::fs::remove_dir_all(JobPaths::new(&setup.services.config.scratch_root, &job_id).dir)
        .expect("remove scratch");
    let other = setup
        .upload("uploads/other.mp4", &v1, "2026-12-01T10:00:10.000Z")
        .await;
    setup
        .upload("uploads/other.mp4", &v2, "2026-12-01T10:00:11.000Z")
        .await;
    let other_job = Upload::from_record(&other.records[0])
        .expect("upload")
        .job_id(&setup.services.config);
    let outcome = handlers::analyze(&setup.services, other)
        .await
        .expect("a replaced upload is no error");
    assert_eq!(outcome.jobs[0].outcome, "superseded");
    let record = setup
        .services
        .store
        .get_job(&other_job)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(record.status, JobStatus::Superseded, "{record:?}");
    assert!(
        record
            .error
            .as_deref()
            .is_some_and(|e| e.contains("replaced by a newer upload")),
        "{record:?}"
    );
    assert_eq!(
        setup.started().len(),
        1,
        "nothing started on the newer bytes"
    );
    assert!(
        !JobPaths::new(&setup.services.config.scratch_root, &other_job)
            .dir
            .exists()
    );
}

#[tokio::test]
async fn an_upload_deleted_before_analyze_fails_its_job_with_the_cause() {
    if !stack_available() {
        return;
    }
    let setup = setup("deleted").await;
    let source = clip(setup.dir.path(), "gone.mp4", 10);
    let key = "uploads/gone.mp4";
    let event = setup.upload(key, &source, "2026-12-01T10:00:00.000Z").await;
    setup
        .s3
        .delete_object()
        .bucket(&setup.bucket)
        .key(key)
        .send()
        .await
        .expect("delete");
    let job_id = Upload::from_record(&event.records[0])
        .expect("upload")
        .job_id(&setup.services.config);
    let error = handlers::analyze(&setup.services, event)
        .await
        .expect_err("nothing to read");
    assert_eq!(
        error.name(),
        "TreemuxInvalidInput",
        "not retried: {}",
        error.message
    );
    let record = setup
        .services
        .store
        .get_job(&job_id)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(record.status, JobStatus::Failed);
    let cause = record.error.unwrap_or_default();
    assert!(
        cause.contains(&format!("s3://{}/{key}", setup.bucket)) && cause.contains("no such object"),
        "{cause}"
    );
    assert!(setup.started().is_empty());
}

/// S3 answers a reader without `s3:ListBucket` 403 AccessDenied for a missing key. moto does not
/// enforce IAM, so a one-request server on 127.0.0.1 answers as S3 does.
#[tokio::test]
async fn access_denied_for_a_missing_key_is_not_found() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let server = std::thread::spawn(move || {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
                    <Message>Access Denied</Message><RequestId>R</RequestId></Error>";
        // The SDK does not retry a 403; a few connections at most, then the thread ends.
        for _ in 0..3 {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut request = [0u8; 8192];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 x-amz-request-id: R\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if request.starts_with(b"GET ") {
                return;
            }
        }
    });
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(format!("http://{address}"))
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .force_path_style(true)
        .build();
    let store = S3Store::new(aws_sdk_s3::Client::from_conf(config));
    let dir = tempfile::tempdir().expect("temp dir");
    let version = ObjectVersion {
        version_id: None,
        e_tag: Some("0123456789abcdef0123456789abcdef".into()),
    };
    let error = store
        .get_to_path("in", "uploads/gone.mp4", &version, &dir.path().join("copy"))
        .await
        .expect_err("403");
    assert!(
        matches!(error, ObjectError::NotFound { .. }),
        "a 403 on a read is a missing upload, not a transient failure: {error:?}"
    );
    assert!(!dir.path().join("copy").exists());
    server.join().expect("server");
}
