//! Each handler on real event JSON (fixtures as S3 and Step Functions send them), with the
//! in-memory state store, a local-directory object store and a recording execution starter; and
//! the whole job driven the way the state machine drives it.

use std::path::Path;
use treemux_core::media::verify::{verify, VerifyOptions};
use treemux_core::settings::RateControl;
use treemux_core::state::{InMemoryStateStore, JobStatus, JobStore};
use treemux_core::steps::NextStep;
use treemux_core::summary::RunOutput;
use treemux_functions::events::{JobFailedInput, MergeTask, S3Event, SegmentTask};
use treemux_functions::handlers::{self, Services};
use treemux_functions::ports::{ObjectError, ObjectStore, RecordingStarter};

mod handler_fakes;
use handler_fakes::{drive, fixture, job, sample, services, services_for, started_input};

#[tokio::test]
async fn analyze_the_real_s3_event_then_run_the_whole_job() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    let event: S3Event = serde_json::from_str(&fixture("s3-object-created.json")).expect("event");
    let outcome = handlers::analyze(&services, event.clone())
        .await
        .expect("analyze");
    assert_eq!(outcome.jobs.len(), 1);
    assert_eq!(
        outcome.jobs[0].key, "uploads/café clip.webm",
        "the key is URL-decoded"
    );
    assert_eq!(outcome.jobs[0].outcome, "started");
    let input = started_input(&services);
    assert_eq!(input.segments, vec![0, 1, 2, 3]);

    // The same event again starts nothing.
    let again = handlers::analyze(&services, event)
        .await
        .expect("analyze again");
    assert_eq!(again.jobs[0].outcome, "duplicate");
    assert_eq!(services.executions.started.lock().expect("lock").len(), 1);

    let merges = drive(&services, &input).await;
    assert_eq!(merges.len(), 3, "4 segments, 3 merges");
    let record = services
        .store
        .get_job(&input.job_id)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(record.status, JobStatus::Succeeded);
    assert_eq!(
        (
            record.segments_done.len(),
            record.merges_done.len(),
            record.merge_runs
        ),
        (4, 3, 3)
    );
    // The progress as the command line's bar counts it: all done.
    let progress = record.progress;
    assert_eq!((progress.segments_done, progress.segments_total), (4, 4));
    assert_eq!((progress.merges_done, progress.merges_total), (3, 3));
    assert_eq!(progress.frames_done, progress.frames_total);
    assert_eq!(progress.percent(), Some(100));
    // Every function of the pipeline timed its stage.
    for stage in treemux_core::names::Function::ALL
        .iter()
        .filter_map(|function| function.stage())
    {
        assert!(
            record.stage_seconds.get(&stage).is_some_and(|s| *s > 0.0),
            "stage {stage} timed: {:?}",
            record.stage_seconds
        );
    }
    assert_eq!(
        record.output,
        "s3://treemux-output/transcoded/uploads/café clip.webm.mp4"
    );
    let output = dir
        .path()
        .join("buckets/treemux-output/transcoded/uploads/café clip.webm.mp4");
    // Smaller than S3's smallest part: the whole output is the upload's single part.
    let bytes = std::fs::metadata(&output).expect("output").len();
    assert!(
        bytes < treemux_core::output_plan::MIN_PART_BYTES,
        "{bytes} bytes"
    );
    let report = verify(
        &sample("06_bbb_vp9_opus_320x180.webm"),
        &output,
        &VerifyOptions::default(),
    )
    .expect("verify");
    assert!(
        report.passed(),
        "{:?}",
        report.failures().collect::<Vec<_>>()
    );
    // The record keeps the output as a local run's summary does: its size, and no warnings
    // (this source's streams all fit the MP4).
    let written = std::fs::metadata(&output).expect("output object").len();
    assert_eq!(
        record.result,
        RunOutput {
            output_bytes: written,
            warnings: Vec::new()
        }
    );
    assert!(
        !dir.path().join("efs/jobs").join(&input.job_id).exists(),
        "scratch removed"
    );
}

fn ffmpeg(args: &[&str]) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg {args:?}");
}

/// Each frame's time from the first, in seconds, as `ffmpeg -fps_mode passthrough` decodes and
/// shows them (ffmpeg's own timestamp repair included): the outside view of a file.
fn ffmpeg_frame_times(path: &Path) -> Vec<f64> {
    let output = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-nostats", "-i"])
        .arg(path)
        .args([
            "-map",
            "0:V:0",
            "-vf",
            "showinfo",
            "-fps_mode",
            "passthrough",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(output.status.success(), "ffmpeg decodes {}", path.display());
    let log = String::from_utf8_lossy(&output.stderr);
    let times: Vec<f64> = log
        .split("pts_time:")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    let first = times.first().copied().unwrap_or(0.0);
    times.iter().map(|time| time - first).collect()
}

/// Issue 11 items 11 and 12 on the Lambda path: sources whose timestamps need repair go through
/// the handlers, several segments each, to the frames ffmpeg shows at the times it shows them:
/// two MPEG-TS recordings joined with `cat` (the clock starts again; the first has no B-frames,
/// the second has) and H.264 with B-frames in AVI (decode times only).
#[tokio::test]
async fn sources_whose_timestamps_need_repair_come_out_as_ffmpeg_shows_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let made = |name: &str| dir.path().join(name);
    let tone = "sine=f=440:r=48000:d=3";
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x240:r=25:d=3",
        "-f",
        "lavfi",
        "-i",
        tone,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "25",
        "-c:a",
        "aac",
        "-f",
        "mpegts",
        made("first.ts").to_str().expect("utf-8"),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "smptebars=s=320x240:r=25:d=3",
        "-f",
        "lavfi",
        "-i",
        tone,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-bf",
        "2",
        "-g",
        "25",
        "-c:a",
        "aac",
        "-f",
        "mpegts",
        made("second.ts").to_str().expect("utf-8"),
    ]);
    let joined = [
        std::fs::read(made("first.ts")).expect("first"),
        std::fs::read(made("second.ts")).expect("second"),
    ]
    .concat();
    std::fs::write(made("joined.ts"), joined).expect("joined");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x240:r=25:d=4",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-bf",
        "3",
        "-g",
        "25",
        made("bframes.avi").to_str().expect("utf-8"),
    ]);

    for source in [made("joined.ts"), made("bframes.avi")] {
        let work = tempfile::tempdir().expect("temp dir");
        let services = services_for(work.path(), &source);
        let event: S3Event =
            serde_json::from_str(&fixture("s3-object-created.json")).expect("event");
        handlers::analyze(&services, event).await.expect("analyze");
        let input = started_input(&services);
        assert!(
            input.segments.len() > 1,
            "{}: several segments",
            source.display()
        );
        drive(&services, &input).await;
        let output = work
            .path()
            .join("buckets/treemux-output/transcoded/uploads/café clip.webm.mp4");
        let expected = ffmpeg_frame_times(&source);
        let got = ffmpeg_frame_times(&output);
        assert_eq!(got.len(), expected.len(), "{}: frames", source.display());
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 0.0015,
            "{}: a frame is {worst} s off",
            source.display()
        );
        let report = verify(&source, &output, &VerifyOptions::default()).expect("verify");
        assert!(
            report.passed(),
            "{:?}",
            report.failures().collect::<Vec<_>>()
        );
    }
}

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

/// The Step Functions task fixtures, with the job id of a real analyzed job substituted, run
/// through split-and-convert, merge-video (a retried task walks on instead of merging twice)
/// and job-failed.
#[tokio::test]
async fn state_machine_task_fixtures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    let event: S3Event = serde_json::from_str(&fixture("s3-object-created.json")).expect("event");
    handlers::analyze(&services, event).await.expect("analyze");
    let job_id = started_input(&services).job_id;
    let task = |name: &str| fixture(name).replace("JOB_ID", &job_id);

    let first = handlers::split_and_convert(
        &services,
        SegmentTask {
            job_id: job_id.clone(),
            segment: 0,
        },
    )
    .await
    .expect("segment 0");
    assert_eq!(first.next, NextStep::Done, "its sibling is not finished");
    let convert: SegmentTask =
        serde_json::from_str(&task("task-split-and-convert.json")).expect("task");
    let second = handlers::split_and_convert(&services, convert)
        .await
        .expect("segment 1");
    let merge: MergeTask = serde_json::from_str(&task("task-merge-video.json")).expect("task");
    assert_eq!(
        second.next,
        NextStep::Merge {
            node: merge.node,
            child: merge.child
        },
        "the fixture is what the handler returns"
    );
    assert_eq!(
        serde_json::to_value(&second).expect("json")["next"],
        "Merge"
    );

    let merged = handlers::merge_video(&services, merge.clone())
        .await
        .expect("merge");
    assert_eq!(merged.next, NextStep::Done, "the other half is not done");
    let repeated = handlers::merge_video(&services, merge)
        .await
        .expect("a retried merge");
    assert_eq!(repeated.next, NextStep::Done);
    let record = services
        .store
        .get_job(&job_id)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(record.merges_done.len(), 1);

    let failed: JobFailedInput = serde_json::from_str(&task("task-job-failed.json")).expect("task");
    assert!(matches!(failed, JobFailedInput::Task(_)), "{failed:?}");
    handlers::job_failed(&services, failed)
        .await
        .expect("job-failed");
    let record = services
        .store
        .get_job(&job_id)
        .await
        .expect("read")
        .expect("record");
    assert_eq!(record.status, JobStatus::Failed);
    assert_eq!(
        record.error.as_deref(),
        Some("TreemuxMediaFailure: encoder libx264 failed: Invalid argument")
    );
    assert!(
        !dir.path().join("efs/jobs").join(&job_id).exists(),
        "scratch removed"
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
