//! Jobs that must fail or start nothing, each with its cause on the job record: the S3 test
//! event, a bad upload, an output too large for a multipart upload, analyze giving up on an
//! unavailable store, and an attempt of analyze racing job-failed.

use std::path::Path;
use treemux_core::settings::RateControl;
use treemux_core::state::{InMemoryStateStore, JobStatus, JobStore};
use treemux_functions::events::{JobFailedInput, S3Event};
use treemux_functions::handlers::{self, Services};
use treemux_functions::ports::{LocalDirStore, ObjectError, ObjectStore, RecordingStarter};

mod handler_fakes;
use handler_fakes::{fixture, job, services};

#[tokio::test]
async fn the_s3_test_event_starts_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    let event: S3Event =
        serde_json::from_str(&fixture("s3-test-event.json")).expect("a test event parses");
    let outcome = handlers::analyze(&services, event).await.expect("analyze");
    assert!(outcome.jobs.is_empty());
    assert!(services.executions.started.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn a_bad_upload_fails_the_job_with_its_cause() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    let upload = dir
        .path()
        .join("buckets/treemux-input/uploads/café clip.webm");
    std::fs::write(&upload, "not a video").expect("overwrite upload");
    let event: S3Event = serde_json::from_str(&fixture("s3-object-created.json")).expect("event");
    let error = handlers::analyze(&services, event)
        .await
        .expect_err("a text file is not a video");
    assert_eq!(error.name(), "TreemuxInvalidInput");
    assert!(
        error
            .message
            .contains("s3://treemux-input/uploads/café clip.webm"),
        "{}",
        error.message
    );
    let event: S3Event = serde_json::from_str(&fixture("s3-object-created.json")).expect("event");
    let outcome_job = handlers::Upload::from_record(&event.records[0])
        .expect("upload")
        .job_id(&services.config);
    let record = services
        .store
        .get_job(&outcome_job)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(record.status, JobStatus::Failed);
    assert!(
        record
            .error
            .as_deref()
            .is_some_and(|e| e.contains("cannot open it as media")),
        "{:?}",
        record.error
    );
    assert!(
        services.executions.started.lock().expect("lock").is_empty(),
        "no execution for a bad upload"
    );
    assert_eq!(
        std::fs::read_to_string(&upload).ok().as_deref(),
        Some("not a video"),
        "the upload is untouched"
    );
    assert!(!services
        .objects
        .exists("treemux-output", "transcoded/uploads/café clip.webm.mp4")
        .await
        .expect("exists"));
}

/// A job whose output one multipart upload cannot hold (a 5 s clip at 100 Tbit/s: about
/// 94 TB, beyond S3's 5 TiB object and 10,000 parts of 5 GiB) is refused by analyze, before any
/// work: the job FAILED with the cause naming the upload and the limit, no execution, no
/// manifest.
#[tokio::test]
async fn an_output_too_large_for_a_multipart_upload_is_refused_up_front() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    services.config.settings.rate = RateControl::Bitrate(100_000_000_000_000);
    let event: S3Event = serde_json::from_str(&fixture("s3-object-created.json")).expect("event");
    let error = handlers::analyze(&services, event.clone())
        .await
        .expect_err("too large for S3");
    assert_eq!(error.name(), "TreemuxInvalidInput");
    for part in [
        "s3://treemux-input/uploads/café clip.webm",
        "10,000 parts",
        "5 TiB",
    ] {
        assert!(error.message.contains(part), "{part}: {}", error.message);
    }
    let job_id = handlers::Upload::from_record(&event.records[0])
        .expect("upload")
        .job_id(&services.config);
    let record = services
        .store
        .get_job(&job_id)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(record.status, JobStatus::Failed);
    assert!(
        record
            .error
            .as_deref()
            .is_some_and(|e| e.contains("multipart upload")),
        "{:?}",
        record.error
    );
    assert!(services.executions.started.lock().expect("lock").is_empty());
    assert!(
        !dir.path()
            .join("efs/jobs")
            .join(&job_id)
            .join("manifest.json")
            .exists(),
        "no manifest: nothing to work on"
    );
}

/// An object store that answers every request as S3 answering 503 would: a transient error.
#[derive(Clone, Debug)]
struct UnavailableObjects;

fn unavailable(bucket: &str, key: &str) -> ObjectError {
    ObjectError::Failed {
        bucket: bucket.into(),
        key: key.into(),
        message: "503 Slow Down".into(),
    }
}

impl treemux_functions::upload::MultipartStore for UnavailableObjects {
    async fn create_upload(&self, bucket: &str, key: &str) -> Result<String, ObjectError> {
        Err(unavailable(bucket, key))
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        _upload_id: &str,
        _number: i32,
        _bytes: Vec<u8>,
    ) -> Result<String, ObjectError> {
        Err(unavailable(bucket, key))
    }

    async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        _upload_id: &str,
        _parts: &[(i32, String)],
    ) -> Result<(), ObjectError> {
        Err(unavailable(bucket, key))
    }

    async fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        _upload_id: &str,
    ) -> Result<(), ObjectError> {
        Err(unavailable(bucket, key))
    }
}

impl ObjectStore for UnavailableObjects {
    async fn head(
        &self,
        bucket: &str,
        key: &str,
        _version: &treemux_functions::ports::ObjectVersion,
    ) -> Result<treemux_functions::ports::ObjectHead, ObjectError> {
        Err(unavailable(bucket, key))
    }

    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        _version: &treemux_functions::ports::ObjectVersion,
        _offset: u64,
        _len: u64,
    ) -> Result<Vec<u8>, ObjectError> {
        Err(unavailable(bucket, key))
    }

    async fn get_to_path(
        &self,
        bucket: &str,
        key: &str,
        _version: &treemux_functions::ports::ObjectVersion,
        _path: &Path,
    ) -> Result<u64, ObjectError> {
        Err(ObjectError::Failed {
            bucket: bucket.into(),
            key: key.into(),
            message: "503 Slow Down".into(),
        })
    }

    async fn put_from_path(
        &self,
        _path: &Path,
        bucket: &str,
        key: &str,
    ) -> Result<(), ObjectError> {
        Err(ObjectError::Failed {
            bucket: bucket.into(),
            key: key.into(),
            message: "503 Slow Down".into(),
        })
    }

    async fn exists(&self, _bucket: &str, _key: &str) -> Result<bool, ObjectError> {
        Ok(false)
    }
    async fn delete_objects(&self, bucket: &str, _keys: &[String]) -> Result<(), ObjectError> {
        Err(unavailable(bucket, "(several)"))
    }
}

/// analyze's failure destination: Lambda's invocation record (fixture) after every attempt of
/// analyze failed transiently once the job record existed. The job, found from the record's S3
/// event as analyze finds it, ends FAILED with the last error; without a record it gets a
/// FAILED one; a superseded, running or succeeded job keeps its status.
#[tokio::test]
async fn analyze_giving_up_fails_its_created_job_with_the_cause() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    let services = Services {
        store: base.store,
        objects: UnavailableObjects,
        executions: base.executions,
        events: base.events,
        config: base.config,
    };
    let event: S3Event = serde_json::from_str(&fixture("s3-object-created.json")).expect("event");
    for _ in 0..3 {
        let error = handlers::analyze(&services, event.clone())
            .await
            .expect_err("S3 is unavailable");
        assert_eq!(error.name(), "TreemuxTransient", "{error}");
    }
    let job_id = handlers::Upload::from_record(&event.records[0])
        .expect("upload")
        .job_id(&services.config);
    assert_eq!(
        job(&services.store, &job_id).await.status,
        JobStatus::Created,
        "without the destination the job would stay CREATED until its TTL"
    );
    let input: JobFailedInput =
        serde_json::from_str(&fixture("analyze-invocation-failure.json")).expect("record");
    assert!(matches!(input, JobFailedInput::Invocation(_)), "{input:?}");
    let outcome = handlers::job_failed(&services, input.clone())
        .await
        .expect("job-failed");
    assert_eq!(outcome.job_ids, std::slice::from_ref(&job_id));
    let failed = job(&services.store, &job_id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    let cause = failed.error.unwrap_or_default();
    for part in [
        "TreemuxTransient",
        "connection reset by peer",
        "3 attempts",
        "RetriesExhausted",
    ] {
        assert!(cause.contains(part), "{part:?} in the cause: {cause}");
    }
    assert!(
        !dir.path().join("efs/jobs").join(&job_id).exists(),
        "scratch removed"
    );

    // No record yet (analyze failed before writing it): a FAILED one, findable by the user.
    let fresh = InMemoryStateStore::new();
    let services = Services {
        store: fresh,
        ..services
    };
    handlers::job_failed(&services, input.clone())
        .await
        .expect("job-failed");
    let created = job(&services.store, &job_id).await;
    assert_eq!(created.status, JobStatus::Failed);
    assert_eq!(created.source, "s3://treemux-input/uploads/café clip.webm");
    assert!(created
        .error
        .as_ref()
        .is_some_and(|e| e.contains("TreemuxTransient")));

    // Jobs that left CREATED keep their status.
    for status in [
        JobStatus::Superseded,
        JobStatus::Running,
        JobStatus::Succeeded,
    ] {
        let services = Services {
            store: InMemoryStateStore::new(),
            objects: UnavailableObjects,
            executions: RecordingStarter::default(),
            events: Default::default(),
            config: services.config.clone(),
        };
        let mut record = created.clone();
        record.status = status;
        record.error = None;
        assert!(services.store.create_job(&record).await.expect("create"));
        handlers::job_failed(&services, input.clone())
            .await
            .expect("job-failed");
        let kept = job(&services.store, &job_id).await;
        assert_eq!(kept.status, status, "{kept:?}");
        assert_eq!(kept.error, None, "{kept:?}");
    }
}

/// The local object store, except that its first `head` (analyze reading the upload's
/// metadata, after it found its job CREATED) waits until `release` is notified, having
/// notified `reached`: so a test can run another handler at exactly that point.
#[derive(Clone, Debug)]
struct GatedObjects {
    inner: LocalDirStore,
    gate: std::sync::Arc<Gate>,
}

#[derive(Debug)]
struct Gate {
    first: std::sync::atomic::AtomicBool,
    reached: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl GatedObjects {
    async fn gate(&self) {
        let gate = &self.gate;
        if gate.first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            gate.reached.notify_one();
            gate.release.notified().await;
        }
    }
}

impl treemux_functions::upload::MultipartStore for GatedObjects {
    async fn create_upload(&self, bucket: &str, key: &str) -> Result<String, ObjectError> {
        self.inner.create_upload(bucket, key).await
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Vec<u8>,
    ) -> Result<String, ObjectError> {
        self.inner
            .upload_part(bucket, key, upload_id, number, bytes)
            .await
    }

    async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), ObjectError> {
        self.inner
            .complete_upload(bucket, key, upload_id, parts)
            .await
    }

    async fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectError> {
        self.inner.abort_upload(bucket, key, upload_id).await
    }
}

impl ObjectStore for GatedObjects {
    async fn head(
        &self,
        bucket: &str,
        key: &str,
        version: &treemux_functions::ports::ObjectVersion,
    ) -> Result<treemux_functions::ports::ObjectHead, ObjectError> {
        self.gate().await;
        self.inner.head(bucket, key, version).await
    }

    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        version: &treemux_functions::ports::ObjectVersion,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ObjectError> {
        self.inner
            .read_range(bucket, key, version, offset, len)
            .await
    }

    async fn get_to_path(
        &self,
        bucket: &str,
        key: &str,
        version: &treemux_functions::ports::ObjectVersion,
        path: &Path,
    ) -> Result<u64, ObjectError> {
        self.inner.get_to_path(bucket, key, version, path).await
    }

    async fn put_from_path(&self, path: &Path, bucket: &str, key: &str) -> Result<(), ObjectError> {
        self.inner.put_from_path(path, bucket, key).await
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, ObjectError> {
        self.inner.exists(bucket, key).await
    }
    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<(), ObjectError> {
        self.inner.delete_objects(bucket, keys).await
    }
}

/// An attempt of analyze that found its job CREATED, while job-failed fails the job (an
/// earlier attempt's execution was stopped) and removes its scratch: the attempt writes the
/// manifest and the saved opening again, then sees the job ended. It starts nothing and
/// leaves no scratch behind, and the job stays FAILED with job-failed's cause.
#[tokio::test]
async fn an_analyze_racing_job_failed_leaves_no_scratch_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    let services = Services {
        store: base.store,
        objects: GatedObjects {
            inner: base.objects,
            gate: std::sync::Arc::new(Gate {
                first: true.into(),
                reached: Default::default(),
                release: Default::default(),
            }),
        },
        executions: base.executions,
        events: base.events,
        config: base.config,
    };
    let event: S3Event = serde_json::from_str(&fixture("s3-object-created.json")).expect("event");
    let job_id = handlers::Upload::from_record(&event.records[0])
        .expect("upload")
        .job_id(&services.config);
    let stopped = async {
        services.objects.gate.reached.notified().await;
        assert_eq!(
            job(&services.store, &job_id).await.status,
            JobStatus::Created
        );
        let input: JobFailedInput = serde_json::from_value(serde_json::json!({
            "job_id": job_id,
            "error": {"Error": "States.Aborted", "Cause": "the execution was stopped"},
        }))
        .expect("job-failed input");
        handlers::job_failed(&services, input)
            .await
            .expect("job-failed");
        services.objects.gate.release.notify_one();
    };
    let (analyzed, ()) = tokio::join!(handlers::analyze(&services, event), stopped);
    let outcome = analyzed.expect("analyze");
    assert_eq!(outcome.jobs.len(), 1);
    assert_eq!(outcome.jobs[0].outcome, "failed");
    let record = job(&services.store, &job_id).await;
    assert_eq!(record.status, JobStatus::Failed);
    assert!(
        record
            .error
            .as_deref()
            .is_some_and(|e| e.contains("States.Aborted")),
        "{:?}",
        record.error
    );
    assert!(
        services.executions.started.lock().expect("lock").is_empty(),
        "no execution for a job that ended"
    );
    assert!(
        !dir.path().join("efs/jobs").join(&job_id).exists(),
        "no scratch left behind"
    );
}
