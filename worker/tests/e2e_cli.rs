//! The command line on the local stack: `treemux submit` of an object already in a bucket
//! (with settings, no upload event) runs to SUCCEEDED as `treemux status` follows it, the output
//! checked with ffprobe; a submission with a setting treemux does not know fails before any
//! work (non-zero exit naming the setting, the job record FAILED); `treemux jobs --json` lists
//! both; `submit --dry-run` plans the object and projects its cost but starts no job.
//!
//! The `treemux` binary is the workspace's `target/debug/treemux` beside this package's
//! `treemux-worker` (`cargo build --workspace` builds both; `scripts/test` does).

mod common;

use common::stack::Stack;
use common::stack_available;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use treemux_core::state::{JobRecord, JobStatus, JobStore};

fn treemux_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_treemux-worker")).with_file_name("treemux");
    assert!(
        path.is_file(),
        "{}: not built; run `cargo build --workspace` (or `cargo build --bin treemux`) first",
        path.display()
    );
    path
}

fn treemux(env_file: &Path, args: &[&str]) -> Output {
    Command::new(treemux_binary())
        .args(args)
        .arg("--local")
        .arg(env_file)
        .output()
        .expect("treemux runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ffprobe(path: &Path) -> String {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
        .args([
            "-show_entries",
            "stream=codec_name,height,nb_read_frames:format=format_name",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(output.status.success(), "ffprobe {}", path.display());
    text(&output.stdout)
}

#[tokio::test]
async fn submit_status_jobs_and_a_dry_run() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("cli", "").await;
    let env = stack.write_env_file();
    // The object sits outside the watched bucket: only `submit` makes a job of it.
    let sample =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/06_bbb_vp9_opus_320x180.webm");
    stack
        .s3
        .put_object()
        .bucket(&stack.output_bucket)
        .key("sources/clip.webm")
        .body(std::fs::read(&sample).expect("sample").into())
        .send()
        .await
        .expect("put");
    let uri = format!("s3://{}/sources/clip.webm", stack.output_bucket);

    // A dry run plans the object and starts nothing.
    let dry = treemux(
        &env,
        &[
            "submit",
            &uri,
            "--dry-run",
            "--renditions",
            "180,120:crf=30",
            "--packaging",
            "hls",
        ],
    );
    let dry_out = text(&dry.stdout);
    assert!(dry.status.success(), "{dry_out}{}", text(&dry.stderr));
    for part in [
        "nothing is started",
        "planned as analyze plans it",
        "segment",
        "EC2",
        "renditions: 180,120:crf=30; packaging: hls",
    ] {
        assert!(dry_out.contains(part), "{part:?} in {dry_out}");
    }
    let listed = treemux(&env, &["jobs", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let none: Vec<JobRecord> = serde_json::from_slice(&listed.stdout).expect("jobs JSON");
    assert!(none.is_empty(), "a dry run made a job: {none:?}");

    // A submission with settings runs to the end.
    let submitted = treemux(
        &env,
        &[
            "submit",
            &uri,
            "--codec",
            "h265",
            "--container",
            "mkv",
            "--height",
            "120",
            "--crf",
            "30",
        ],
    );
    assert!(
        submitted.status.success(),
        "{}{}\nworker log:\n{}",
        text(&submitted.stdout),
        text(&submitted.stderr),
        stack.worker_log()
    );
    let job_id = text(&submitted.stdout).trim().to_owned();
    assert_eq!(job_id.len(), 24, "the job id: {job_id:?}");
    let status = treemux(&env, &["status", &job_id, "--json"]);
    assert!(
        status.status.success(),
        "{}\nworker log:\n{}",
        text(&status.stderr),
        stack.worker_log()
    );
    let record: JobRecord = serde_json::from_slice(&status.stdout).expect("the record");
    assert_eq!(record.status, JobStatus::Succeeded);
    assert_eq!(record.settings_from["codec"], "treemux submit: codec");
    let key = record
        .output
        .strip_prefix(&format!("s3://{}/", stack.output_bucket))
        .expect("an output in the output bucket");
    assert!(key.ends_with(".mkv"), "{key}");
    let probed = ffprobe(&stack.download(key).await);
    for line in ["codec_name=hevc", "height=120", "format_name=matroska,webm"] {
        assert!(probed.contains(line), "{line} in {probed}");
    }
    let human = treemux(
        &env,
        &[
            "status",
            &format!("s3://{}/sources/clip.webm", stack.output_bucket),
            "--once",
        ],
    );
    let human_out = text(&human.stdout);
    assert!(human.status.success(), "{}", text(&human.stderr));
    assert!(
        human_out.contains("SUCCEEDED") && human_out.contains("bytes)"),
        "{human_out}"
    );
    assert!(human_out.contains("timings: "), "{human_out}");

    // An unknown setting: refused before any work, naming it.
    let bad = treemux(&env, &["submit", &uri, "--set", "colour=red"]);
    let bad_err = text(&bad.stderr);
    assert!(!bad.status.success(), "{bad_err}");
    assert!(
        bad_err.contains("unknown setting \"colour\"") && bad_err.contains("treemux submit"),
        "{bad_err}"
    );
    let bad_id = text(&bad.stdout).trim().to_owned();
    let failed = stack
        .store
        .get_job(&bad_id)
        .await
        .expect("read")
        .expect("the failed job's record");
    assert_eq!(failed.status, JobStatus::Failed);
    assert!(
        failed.segments_done.is_empty() && failed.segments == 0,
        "no work"
    );

    let listed = treemux(&env, &["jobs", "--json"]);
    let jobs: Vec<JobRecord> = serde_json::from_slice(&listed.stdout).expect("jobs JSON");
    let states: Vec<(&str, JobStatus)> =
        jobs.iter().map(|j| (j.job_id.as_str(), j.status)).collect();
    assert_eq!(
        states,
        [
            (bad_id.as_str(), JobStatus::Failed),
            (job_id.as_str(), JobStatus::Succeeded)
        ],
        "newest first"
    );
    let table = text(&treemux(&env, &["jobs"]).stdout);
    assert!(
        table.contains(&job_id) && table.contains("SUCCEEDED"),
        "{table}"
    );
}
