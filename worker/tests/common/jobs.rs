//! What several local-stack tests do around one job: a generated source clip, and waiting for
//! the newest job of an upload's key to end.

use super::stack::Stack;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use treemux_core::state::{JobRecord, JobStore};

/// A `seconds`-long 25 fps `width`x`height` clip with a 440 Hz tone (x264 ultrafast, a
/// keyframe every second, AAC), written by the ffmpeg CLI to `dir/name`.
pub fn tone_clip(dir: &Path, name: &str, seconds: u32, (width, height): (u32, u32)) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "testsrc2=size={width}x{height}:rate=25:duration={seconds}"
        ))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={seconds}"
        ))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made {}", path.display());
    path
}

/// Waits (at most `limit`) for the newest job of upload `key` to reach a final status, and
/// returns its record; fails the test with the worker's log when it does not.
pub async fn newest_final_job(stack: &Stack, key: &str, limit: Duration) -> JobRecord {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(id) = stack
            .store
            .latest_job(&stack.input_bucket, key)
            .await
            .expect("read")
        {
            let record = stack
                .store
                .get_job(&id)
                .await
                .expect("read")
                .expect("record");
            if record.status.is_final() {
                return record;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{key}: no finished job; worker log:\n{}",
            stack.worker_log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
