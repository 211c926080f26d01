//! Job events through the handlers with in-memory fakes: a whole job announces STARTED, its
//! progress with growing percentages (rate-limited by the job record's claim) and SUCCEEDED
//! with the output's key and size; a bad upload FAILED with the error's name; completions
//! also go to the topic.

mod handler_fakes;

use handler_fakes::{drive, fixture, services_with_events, started_input};
use treemux_functions::events::S3Event;
use treemux_functions::handlers;
use treemux_functions::job_events::{JobChange, JobEvent};

fn statuses(events: &[JobEvent]) -> Vec<&'static str> {
    events.iter().map(JobEvent::status).collect()
}

#[tokio::test]
async fn a_job_announces_its_start_progress_and_success() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (services, bus, topic) = services_with_events(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    let event: S3Event = serde_json::from_str(&fixture("s3-object-created.json")).expect("event");
    handlers::analyze(&services, event).await.expect("analyze");
    let input = started_input(&services);
    drive(&services, &input).await;

    let events = bus.events();
    let seen = statuses(&events);
    assert_eq!(seen.first(), Some(&"STARTED"), "{seen:?}");
    assert_eq!(seen.last(), Some(&"SUCCEEDED"), "{seen:?}");
    let percents: Vec<u64> = events
        .iter()
        .filter_map(|event| match event.change {
            JobChange::Progress { percent, .. } => Some(percent),
            _ => None,
        })
        .collect();
    assert!(!percents.is_empty(), "{seen:?}");
    assert!(
        percents.windows(2).all(|pair| pair[0] < pair[1]),
        "{percents:?}"
    );
    let JobChange::Started { segments, .. } = events[0].change else {
        unreachable!("checked above")
    };
    assert_eq!(segments, 4);
    let JobChange::Succeeded {
        outputs,
        stage_seconds,
        ..
    } = &events[events.len() - 1].change
    else {
        unreachable!("checked above")
    };
    let object = dir
        .path()
        .join("buckets")
        .join(&outputs[0].bucket)
        .join(&outputs[0].key);
    assert_eq!(outputs[0].key, "transcoded/uploads/café clip.webm.mp4");
    assert_eq!(
        outputs[0].bytes,
        std::fs::metadata(&object).expect("the output").len()
    );
    assert!(stage_seconds.contains_key(&treemux_core::names::Stage::Convert));
    assert!(events.iter().all(|event| event.job_id == input.job_id));
    // Only the completion reaches the topic.
    assert_eq!(statuses(&topic.events()), ["SUCCEEDED"]);
}

#[tokio::test]
async fn a_bad_upload_announces_its_failure_with_the_error_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (services, bus, topic) = services_with_events(dir.path(), "06_bbb_vp9_opus_320x180.webm");
    std::fs::write(
        dir.path()
            .join("buckets/treemux-input/uploads/café clip.webm"),
        "not a video",
    )
    .expect("overwrite upload");
    let event: S3Event = serde_json::from_str(&fixture("s3-object-created.json")).expect("event");
    handlers::analyze(&services, event.clone())
        .await
        .expect_err("a text file is not a video");
    // A retried invocation finds the failed job and says nothing again.
    handlers::analyze(&services, event).await.expect("repeat");
    let events = bus.events();
    assert_eq!(statuses(&events), ["FAILED"]);
    let JobChange::Failed {
        error_name,
        error_message,
    } = &events[0].change
    else {
        unreachable!("checked above")
    };
    assert_eq!(error_name, "TreemuxInvalidInput");
    assert!(
        error_message.contains("s3://treemux-input/uploads/café clip.webm"),
        "{error_message}"
    );
    assert_eq!(statuses(&topic.events()), ["FAILED"]);
}
