//! What moves on the AWS path (issue 13's numbers), measured from outside the handlers: a
//! counting HTTP proxy (`scripts/s3-counting-proxy.py`) between the worker and the local stack's
//! S3 counts GET and PUT bytes per key, and the worker's `/proc/PID/io` counts what it wrote to
//! and read from files (scratch, once the copies in its local directory are taken out: see
//! `data_path`).
//!
//! `data_path` is a measurement, not a test (ignored; `scripts/bench-data-path` runs it): it
//! prints and writes `target/bench/data-path.json`. `the_counting_proxy_counts` proves the proxy
//! counts a known GET and PUT exactly.

mod common;

use common::stack::{Stack, WorkerSetup};
use common::{endpoint, sdk, stack_available};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The proxy process, stopped when dropped.
struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    fn start(dir: &Path) -> Self {
        let port_file = dir.join("proxy.port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/s3-counting-proxy.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(endpoint())
            .arg(&port_file)
            .spawn()
            .expect("proxy starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "the counting proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            url: format!("http://127.0.0.1:{}", port.trim()),
        }
    }

    /// Per `bucket/key`: `get_requests`, `get_bytes`, `put_requests`, `put_bytes`.
    fn stats(&self) -> serde_json::Map<String, serde_json::Value> {
        let output = Command::new("curl")
            .args(["-sf", &format!("{}/__counting_proxy__/stats", self.url)])
            .output()
            .expect("curl");
        assert!(output.status.success(), "proxy stats unreadable");
        serde_json::from_slice(&output.stdout).expect("stats JSON")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sums `field` over the keys `keep` accepts.
fn total(
    stats: &serde_json::Map<String, serde_json::Value>,
    keep: impl Fn(&str) -> bool,
    field: &str,
) -> u64 {
    stats
        .iter()
        .filter(|(key, _)| keep(key))
        .map(|(_, entry)| entry[field].as_u64().unwrap_or(0))
        .sum()
}

fn s3_through(url: &str, config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .endpoint_url(url)
            .force_path_style(true)
            .build(),
    )
}

#[tokio::test]
async fn the_counting_proxy_counts() {
    if !stack_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let proxy = Proxy::start(dir.path());
    let config = sdk().await;
    let client = s3_through(&proxy.url, &config);
    let bucket = format!("proxy-count-{}", std::process::id());
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    client
        .put_object()
        .bucket(&bucket)
        .key("known.bin")
        .body(bytes.clone().into())
        .send()
        .await
        .expect("put");
    let got = client
        .get_object()
        .bucket(&bucket)
        .key("known.bin")
        .range("bytes=1000-4999")
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(
        &got[..],
        &bytes[1000..5000],
        "the proxy passes bytes unchanged"
    );
    let stats = proxy.stats();
    let entry = &stats[&format!("{bucket}/known.bin")];
    assert_eq!(entry["get_requests"], 1);
    assert_eq!(
        entry["get_bytes"], 4000,
        "a 4000-byte range is 4000 bytes read"
    );
    assert_eq!(entry["put_requests"], 1);
    // The body as sent: the object, plus at most the SDK's chunked-checksum framing.
    let put = entry["put_bytes"].as_u64().expect("count");
    assert!(
        (100_000..100_000 + 512).contains(&put),
        "PUT body counted as {put} bytes for a 100000-byte object"
    );
}

/// `/proc/PID/io` of a process: `(rchar, write_bytes)`. `write_bytes` counts what reached the
/// file system (not sockets, which the S3 proxy counts, nor the log pipe); `rchar` what read(2)
/// returned from files (sockets are read with recv(2), which it does not count).
fn io_counters(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/PID/io");
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("rchar"), field("write_bytes"))
}

/// A 64 s 720p clip with a keyframe every 2 s and AAC audio, MP4 with its index at the end
/// (as cameras and most encoders write it).
fn generate_clip(path: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30:duration=64",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=64",
        ])
        .args(["-vf", "noise=alls=12:allf=t"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-b:v", "3M"])
        .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-b:a", "128k"])
        .arg(path)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "ffmpeg could not generate the clip");
}

#[tokio::test]
#[ignore = "a measurement: scripts/bench-data-path runs it"]
async fn data_path() {
    assert!(stack_available(), "the local stack is not up");
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("clip.mp4");
    generate_clip(&source);
    let source_bytes = std::fs::metadata(&source).expect("clip").len();
    let proxy = Proxy::start(dir.path());
    let mut setup = WorkerSetup::faults("");
    setup.env = [
        ("AWS_ENDPOINT_URL_S3", proxy.url.as_str()),
        ("TREEMUX_MAX_SEGMENTS", "32"),
        ("TREEMUX_MIN_SEGMENT_SECONDS", "2"),
        ("TREEMUX_WORKER_CONCURRENCY", "2"),
        // Bytes, not encoding speed, are measured: the fastest preset keeps the run short.
        ("TREEMUX_PRESET", "ultrafast"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let stack = Stack::with_worker("bench-data", setup).await;
    // Let the worker start (SDK set-up, queue polls) before taking its baseline counters.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = stack.worker_pid();
    let (read_before, written_before) = io_counters(pid);
    let key = "uploads/clip.mp4";
    stack.upload(key, &source).await;
    let (status, job) = stack.finished_job_within(Duration::from_secs(900)).await;
    assert_eq!(status, "SUCCEEDED", "worker log:\n{}", stack.worker_log());
    let (read_after, written_after) = io_counters(pid);
    let stats = proxy.stats();
    let output = stack.download("transcoded/uploads/clip.mp4.mp4").await;
    let output_bytes = std::fs::metadata(&output).expect("output").len();
    let report = treemux_core::media::verify::verify(&source, &output, &Default::default())
        .expect("verify runs");
    assert!(
        report.passed(),
        "verify failed: {:?}",
        report.failures().collect::<Vec<_>>()
    );

    let input_prefix = format!("{}/", stack.input_bucket);
    let output_prefix = format!("{}/", stack.output_bucket);
    let s3_get_bytes = total(&stats, |k| k.starts_with(&input_prefix), "get_bytes");
    let s3_get_requests = total(&stats, |k| k.starts_with(&input_prefix), "get_requests");
    let s3_put_bytes = total(&stats, |k| k.starts_with(&output_prefix), "put_bytes");
    let s3_put_requests = total(&stats, |k| k.starts_with(&output_prefix), "put_requests");
    let segment_prefix = format!("{}/", stack.segment_bucket);
    let segment = |field| total(&stats, |k| k.starts_with(&segment_prefix), field);
    let (segment_put_bytes, segment_put_requests) = (segment("put_bytes"), segment("put_requests"));
    let (segment_get_bytes, segment_get_requests) = (segment("get_bytes"), segment("get_requests"));
    // The worker's file I/O is scratch (EFS) and its local directory (Lambda's /tmp, not
    // billed by the byte): each segment file is written there once by its encoder and read
    // once to be uploaded (the proxy's PUT bytes), and each fetched copy written once and read
    // once by its part's writer (the proxy's GET bytes). What is left is scratch.
    let (file_write_bytes, file_read_bytes) =
        (written_after - written_before, read_after - read_before);
    let local_bytes = segment_put_bytes + segment_get_bytes;
    let scratch_write_bytes = file_write_bytes.saturating_sub(local_bytes);
    let scratch_read_bytes = file_read_bytes.saturating_sub(local_bytes);
    let sfn_transitions = state_transitions(&stack).await;
    let ratio = |a: u64, b: u64| (a as f64 / b as f64 * 1000.0).round() / 1000.0;
    let result = serde_json::json!({
        "source_bytes": source_bytes,
        "output_bytes": output_bytes,
        "segments": job.segments,
        "s3_get_bytes": s3_get_bytes,
        "s3_get_requests": s3_get_requests,
        "s3_put_bytes": s3_put_bytes,
        "s3_put_requests": s3_put_requests,
        "file_write_bytes": file_write_bytes,
        "file_read_bytes": file_read_bytes,
        "scratch_write_bytes": scratch_write_bytes,
        "scratch_read_bytes": scratch_read_bytes,
        "segment_put_bytes": segment_put_bytes,
        "segment_put_requests": segment_put_requests,
        "segment_get_bytes": segment_get_bytes,
        "segment_get_requests": segment_get_requests,
        "sfn_transitions": sfn_transitions,
        "source_read_ratio": ratio(s3_get_bytes, source_bytes),
        "scratch_write_ratio": ratio(scratch_write_bytes, output_bytes),
        "output_upload_ratio": ratio(s3_put_bytes, output_bytes),
        "segment_write_ratio": ratio(segment_put_bytes, output_bytes),
        "segment_read_ratio": ratio(segment_get_bytes, output_bytes),
    });
    let text = serde_json::to_string_pretty(&result).expect("JSON");
    println!("{text}");
    let out_dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out_dir).expect("target/bench");
    std::fs::write(out_dir.join("data-path.json"), text + "\n").expect("write result");
}

/// State transitions of the stack's one execution: the events that enter a state (Step
/// Functions bills per transition), from the execution history; `None` when the execution ran
/// a distributed Map: its child executions (each segment's and merge's states) are not in the
/// parent's history (on AWS they are executions of their own; moto records none), so the
/// parent's few states would understate the count. The model then takes the definition's.
async fn state_transitions(stack: &Stack) -> Option<u64> {
    let execution = stack
        .sfn
        .list_executions()
        .state_machine_arn(&stack.state_machine)
        .send()
        .await
        .ok()?
        .executions
        .into_iter()
        .next()?;
    let mut entered = 0u64;
    let mut map_runs = 0u64;
    let mut token = None;
    loop {
        let page = stack
            .sfn
            .get_execution_history()
            .execution_arn(&execution.execution_arn)
            .set_next_token(token)
            .max_results(1000)
            .send()
            .await
            .ok()?;
        entered += page
            .events
            .iter()
            .filter(|event| event.r#type.as_str().ends_with("StateEntered"))
            .count() as u64;
        map_runs += page
            .events
            .iter()
            .filter(|event| event.r#type.as_str().starts_with("MapRun"))
            .count() as u64;
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    (entered > 0 && map_runs == 0).then_some(entered)
}
