//! Job events on the local AWS stack: the worker sends them to the stack's EventBridge bus in
//! moto, a rule matching treemux's source and detail-type delivers them to an SQS queue, and the
//! test reads them there: a real job's STARTED, its PROGRESS with growing percentages and its
//! SUCCEEDED naming the output object with its size; a job that fails in a segment task FAILED
//! with the error's name and message.

mod common;

use common::stack::Stack;
use common::stack_available;
use std::path::Path;
use treemux_functions::job_events::{JobChange, JobEvent};

fn statuses(events: &[JobEvent]) -> Vec<&'static str> {
    events.iter().map(JobEvent::status).collect()
}

#[tokio::test]
async fn a_job_announces_its_start_progress_and_success() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("events", "").await;
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/06_bbb_vp9_opus_320x180.webm");
    stack.upload("uploads/a.webm", &source).await;
    let (status, job) = stack.finished_job().await;
    assert_eq!(status, "SUCCEEDED", "worker log:\n{}", stack.worker_log());
    let events = stack.job_events.received().await;
    let seen = statuses(&events);
    assert!(
        events.iter().all(|event| event.job_id == job.job_id),
        "{events:?}"
    );
    assert_eq!(seen.first(), Some(&"STARTED"), "{seen:?}");
    assert_eq!(
        seen.iter().filter(|s| **s == "STARTED").count(),
        1,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|s| **s == "SUCCEEDED").count(),
        1,
        "{seen:?}"
    );
    // Progress: at least one event, percentages growing in the order they were claimed.
    let mut progress: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|event| match event.change {
            JobChange::Progress {
                percent,
                claimed_at_ms,
                ..
            } => Some((claimed_at_ms, percent)),
            _ => None,
        })
        .collect();
    progress.sort_unstable();
    assert!(!progress.is_empty(), "{seen:?}");
    assert!(
        progress.windows(2).all(|pair| pair[0].1 < pair[1].1),
        "{progress:?}"
    );
    assert!(progress
        .iter()
        .all(|(_, percent)| (1..=100).contains(percent)));
    let succeeded = events
        .iter()
        .find_map(|event| match &event.change {
            JobChange::Succeeded {
                outputs,
                stage_seconds,
                ..
            } => Some((outputs.clone(), stage_seconds.clone())),
            _ => None,
        })
        .expect("a SUCCEEDED event");
    let (outputs, stage_seconds) = succeeded;
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].bucket, stack.output_bucket);
    assert_eq!(stack.output_keys().await, [outputs[0].key.clone()]);
    let head = stack
        .s3
        .head_object()
        .bucket(&outputs[0].bucket)
        .key(&outputs[0].key)
        .send()
        .await
        .expect("the output object");
    assert_eq!(head.content_length(), Some(outputs[0].bytes as i64));
    assert!(stage_seconds.contains_key(&treemux_core::names::Stage::Convert));
}

#[tokio::test]
async fn a_failing_job_announces_the_cause() {
    if !stack_available() {
        return;
    }
    let stack = Stack::new("events-failed", "fail-always:split-and-convert:1").await;
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/06_bbb_vp9_opus_320x180.webm");
    stack.upload("uploads/b.webm", &source).await;
    let (status, job) = stack.finished_job().await;
    assert_eq!(status, "FAILED", "worker log:\n{}", stack.worker_log());
    let events = stack.job_events.received().await;
    let seen = statuses(&events);
    assert_eq!(seen.first(), Some(&"STARTED"), "{seen:?}");
    assert!(!seen.contains(&"SUCCEEDED"), "{seen:?}");
    let (name, message) = events
        .iter()
        .find_map(|event| match &event.change {
            JobChange::Failed {
                error_name,
                error_message,
            } => Some((error_name.clone(), error_message.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("a FAILED event: {seen:?}"));
    assert_eq!(name, "TreemuxMediaFailure");
    assert!(message.contains("injected fault"), "{message}");
    assert_eq!(
        job.error.as_deref(),
        Some(format!("{name}: {message}").as_str())
    );
}
