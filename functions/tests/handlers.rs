//! Each handler on real event JSON (fixtures as S3 and Step Functions send them), with the
//! in-memory state store, a local-directory object store and a recording execution starter; and
//! the whole job driven the way the state machine drives it.

use std::path::Path;
use treemux_core::media::verify::{verify, VerifyOptions};
use treemux_core::state::{JobStatus, JobStore};
use treemux_core::steps::NextStep;
use treemux_core::summary::RunOutput;
use treemux_functions::events::{JobFailedInput, MergeTask, S3Event, SegmentTask};
use treemux_functions::handlers::{self};

mod handler_fakes;
use handler_fakes::{
    drive, fixture, job, sample, segment_objects, services, services_for, started_input,
};

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
    // A plain MP4 output with a segment bucket: its segments are kept as objects.
    let manifest: treemux_functions::job::JobManifest = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join("efs/jobs")
                .join(&input.job_id)
                .join("manifest.json"),
        )
        .expect("manifest"),
    )
    .expect("manifest parses");
    assert!(
        manifest.segment_objects.is_some(),
        "segments kept as objects: {:?}",
        manifest.segment_objects
    );

    // The same event again starts nothing.
    let again = handlers::analyze(&services, event)
        .await
        .expect("analyze again");
    assert_eq!(again.jobs[0].outcome, "duplicate");
    assert_eq!(services.executions.started.lock().expect("lock").len(), 1);

    let merges = drive(&services, &input).await;
    assert!(
        merges.is_empty(),
        "every merge inside the split-and-convert task that completed its pair: {merges:?}"
    );
    let record = job(&services.store, &input.job_id).await;
    let output = dir
        .path()
        .join("buckets/treemux-output/transcoded/uploads/café clip.webm.mp4");
    assert_succeeded_merging_each_pair_once(&record, &output);
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
    // Smaller than S3's smallest part: the whole output is the upload's single part.
    let bytes = std::fs::metadata(&output).expect("output").len();
    assert!(
        bytes < treemux_core::output_plan::MIN_PART_BYTES,
        "{bytes} bytes"
    );
    // The record keeps the output as a local run's summary does: its size, and no warnings
    // (this source's streams all fit the MP4).
    let written = std::fs::metadata(&output).expect("output object").len();
    assert_eq!(
        record.result,
        RunOutput {
            output_bytes: written,
            warnings: Vec::new(),
            outputs: Vec::new(),
            thumbnails: Vec::new(),
        }
    );
    assert!(
        !dir.path().join("efs/jobs").join(&input.job_id).exists(),
        "scratch removed"
    );
    assert_eq!(
        segment_objects(&services),
        Vec::<std::path::PathBuf>::new(),
        "segment objects removed"
    );
}

/// With no climbing budget (a task that has used its time), every merge is handed to the state
/// machine as a merge-video task, which merges the same pairs once each: same record, same
/// output.
#[tokio::test]
async fn merges_handed_over_run_as_merge_video_tasks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    services.config.climb_seconds = 0.0;
    let event: S3Event = serde_json::from_str(&fixture("s3-object-created.json")).expect("event");
    handlers::analyze(&services, event).await.expect("analyze");
    let input = started_input(&services);
    let merges = drive(&services, &input).await;
    assert_eq!(merges.len(), 3, "4 segments, 3 merge-video tasks");
    let record = job(&services.store, &input.job_id).await;
    let output = dir
        .path()
        .join("buckets/treemux-output/transcoded/uploads/café clip.webm.mp4");
    assert_succeeded_merging_each_pair_once(&record, &output);
}

/// The four-segment job of sample 06 ended SUCCEEDED with every segment and pair done once
/// (three merges, three merge runs), and its `output` passes verify against the sample.
fn assert_succeeded_merging_each_pair_once(record: &treemux_core::state::JobRecord, output: &Path) {
    assert_eq!(record.status, JobStatus::Succeeded);
    assert_eq!(
        (
            record.segments_done.len(),
            record.merges_done.len(),
            record.merge_runs
        ),
        (4, 3, 3)
    );
    let report = verify(
        &sample("06_bbb_vp9_opus_320x180.webm"),
        output,
        &VerifyOptions::default(),
    )
    .expect("verify");
    assert!(
        report.passed(),
        "{:?}",
        report.failures().collect::<Vec<_>>()
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
async fn state_machine_task_fixtures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut services = services(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    // Merges handed over (no climbing budget), so split-and-convert answers with the `Merge`
    // step the state machine's Choice reads and merge-video's fixture is its task.
    services.config.climb_seconds = 0.0;
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
    assert_eq!(
        segment_objects(&services),
        Vec::<std::path::PathBuf>::new(),
        "segment objects removed"
    );
}
