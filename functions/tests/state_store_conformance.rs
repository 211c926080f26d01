//! One suite for every state-store implementation: the in-memory store always, DynamoDB on the
//! local stack when it runs (required in CI).

mod common;
mod conformance_cases;
use conformance_cases::*;

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::task::JoinSet;
use treemux_core::settings::{Container, EncodeSettings, JobSettings, RateControl, VideoCodec};
use treemux_core::state::{
    ClaimOutcome, InMemoryStateStore, JobRecord, JobStatus, JobStore, JobUpdate, StateError,
    StateStore,
};
use treemux_core::steps::{after_node_finished, mark_merged, NextStep};
use treemux_core::tree::{MergeTree, NodeId, Side};
use treemux_functions::aws::DynamoStore;

fn record(job_id: &str) -> JobRecord {
    JobRecord {
        job_id: job_id.to_owned(),
        status: JobStatus::Created,
        source: "s3://in/a.mp4".into(),
        source_version: "etag".into(),
        upload: "0055AED6DCD90281E5".into(),
        output: "s3://out/a.mp4".into(),
        segments: 5,
        merges: 4,
        segments_done: BTreeSet::new(),
        merges_done: BTreeSet::new(),
        merge_runs: 0,
        stage_seconds: Default::default(),
        progress: Default::default(),
        error: None,
        superseded_by: None,
        result: Default::default(),
        settings: None,
        settings_from: Default::default(),
        created_at: 1,
        updated_at: 1,
    }
}

/// The contract, exercised through the trait only.
async fn conformance<S: StateStore + JobStore>(store: &S, job: &str) {
    // Jobs: created once, updated by rules that tolerate repeats.
    assert!(store.create_job(&record(job)).await.expect("create"));
    assert!(
        !store.create_job(&record(job)).await.expect("create again"),
        "a second create is refused"
    );
    store
        .update_job(
            job,
            &JobUpdate::Running {
                segments: 5,
                merges: 4,
                frames: 500,
            },
            2,
        )
        .await
        .expect("running");
    // The job's own settings, read back as written (DynamoDB: a map attribute).
    let mut encode = EncodeSettings::new(VideoCodec::Vp9);
    (encode.rate, encode.height, encode.upscale) =
        (RateControl::Bitrate(1_500_000), Some(720), true);
    let settings = JobSettings {
        renditions: treemux_core::renditions::parse_renditions("720,360:crf=40")
            .expect("the test's ladder is valid"),
        thumbnails: Some(treemux_core::thumbnails::ThumbnailRequest {
            interval_ms: Some(2500),
            poster_at_ms: None,
        }),
        ..JobSettings::new(Container::WebM, encode)
    };
    let from = BTreeMap::from([(
        "bitrate".to_owned(),
        "x-amz-meta-treemux-bitrate".to_owned(),
    )]);
    let update = JobUpdate::Settings {
        settings: settings.clone(),
        from: from.clone(),
        output: "s3://out/a.mp4.webm".into(),
    };
    store.update_job(job, &update, 2).await.expect("settings");
    let read = store.get_job(job).await.expect("read").expect("record");
    assert_eq!(
        (read.settings, read.settings_from, read.output.as_str()),
        (Some(settings), from, "s3://out/a.mp4.webm")
    );
    for _ in 0..2 {
        store
            .update_job(
                job,
                &JobUpdate::SegmentDone {
                    index: 3,
                    seconds: 1.5,
                    frames: 100,
                },
                3,
            )
            .await
            .expect("segment");
    }
    // L1-0 merged, then its task retried and found the file (not a second run); L1-1 written by
    // an attempt that died before recording it, found by the retry (one run); L2-0 written by a
    // task and again by a duplicate of it (two runs).
    for (level, index, ran) in [
        (1, 0, true),
        (1, 0, false),
        (1, 1, false),
        (1, 1, false),
        (2, 0, true),
        (2, 0, true),
    ] {
        store
            .update_job(
                job,
                &JobUpdate::Merged {
                    node: NodeId { level, index },
                    seconds: 0.5,
                    ran,
                },
                4,
            )
            .await
            .expect("merged");
    }
    store
        .update_job(
            job,
            &JobUpdate::Failed {
                error: "TreemuxMediaFailure: first".into(),
            },
            5,
        )
        .await
        .expect("failed");
    store
        .update_job(
            job,
            &JobUpdate::Failed {
                error: "States.Generic: later".into(),
            },
            6,
        )
        .await
        .expect("failed again");
    let read = store.get_job(job).await.expect("get").expect("exists");
    assert_eq!(read.status, JobStatus::Failed);
    assert_eq!(
        read.error.as_deref(),
        Some("TreemuxMediaFailure: first"),
        "the first cause is kept"
    );
    assert_eq!(
        read.segments_done,
        BTreeSet::from([3]),
        "a repeated confirmation counts once"
    );
    assert_eq!(read.merges_done.len(), 3);
    assert_eq!(
        read.merge_runs, 4,
        "runs found on retry are not counted twice"
    );
    assert_eq!(
        read.stage_seconds.get(&treemux_core::names::Stage::Convert),
        Some(&3.0)
    );
    // The progress the command line's bar would show: each segment and merge counted once.
    assert_eq!(
        read.progress,
        treemux_core::progress::ProgressCounts {
            frames_done: 100,
            frames_total: 500,
            segments_done: 1,
            segments_total: 5,
            merges_done: 3,
            merges_total: 4,
        }
    );
    assert_eq!(read.progress.percent(), Some(20));
    assert!(store
        .get_job(&format!("{job}-missing"))
        .await
        .expect("get")
        .is_none());
    assert!(matches!(
        store
            .update_job(
                &format!("{job}-missing"),
                &JobUpdate::Running {
                    segments: 1,
                    merges: 0,
                    frames: 10,
                },
                1,
            )
            .await,
        Err(StateError::MissingJob { .. })
    ));

    // Pairs: five real segments, three placeholders.
    let tree = MergeTree::new(5);
    store.create_pairs(job, &tree).await.expect("pairs");
    store.create_pairs(job, &tree).await.expect("pairs again");
    let pair = NodeId { level: 1, index: 0 };
    assert_eq!(
        store
            .confirm_child(job, pair, Side::Left)
            .await
            .expect("confirm"),
        BTreeSet::from([Side::Left])
    );
    assert_eq!(
        store
            .confirm_child(job, pair, Side::Left)
            .await
            .expect("confirm"),
        BTreeSet::from([Side::Left]),
        "idempotent"
    );
    assert_eq!(
        store
            .confirm_child(job, pair, Side::Right)
            .await
            .expect("confirm"),
        BTreeSet::from([Side::Left, Side::Right])
    );
    assert_eq!(
        store.claim_merge(job, pair, "a").await.expect("claim"),
        ClaimOutcome::Won
    );
    assert_eq!(
        store.claim_merge(job, pair, "a").await.expect("claim"),
        ClaimOutcome::Won,
        "the holder may claim again"
    );
    assert_eq!(
        store.claim_merge(job, pair, "b").await.expect("claim"),
        ClaimOutcome::Lost { holder: "a".into() }
    );
    assert!(
        store.mark_merged(job, pair, "b").await.is_err(),
        "only the holder marks"
    );
    store.mark_merged(job, pair, "a").await.expect("mark");
    assert_eq!(
        store.claim_merge(job, pair, "a").await.expect("claim"),
        ClaimOutcome::AlreadyMerged
    );

    // The placeholder confirmations are in place: leaf 4's parent has its right side already.
    let with_placeholder = NodeId { level: 1, index: 2 };
    assert_eq!(
        store
            .confirm_child(job, with_placeholder, Side::Left)
            .await
            .expect("confirm"),
        BTreeSet::from([Side::Left, Side::Right])
    );

    // A whole tree through the shared step logic, leaves finishing out of order.
    let walk = format!("{job}-walk");
    store.create_pairs(&walk, &tree).await.expect("pairs");
    let mut merges = 0;
    let mut roots = 0;
    for leaf in [3, 0, 4, 2, 1] {
        let mut finished = NodeId::leaf(leaf);
        loop {
            match after_node_finished(store, &walk, &tree, finished)
                .await
                .expect("step")
            {
                NextStep::Merge { node, child } => {
                    merges += 1;
                    mark_merged(store, &walk, node, child).await.expect("mark");
                    finished = node;
                }
                NextStep::MergeAudio => {
                    roots += 1;
                    break;
                }
                NextStep::Done => break,
            }
        }
    }
    // 5 segments in an 8-leaf tree: 7 pairs, one all-placeholder; 4 concatenations, 2 renames.
    assert_eq!(
        (merges, roots),
        (6, 1),
        "every real pair merged once, the root once"
    );
}

#[tokio::test]
async fn in_memory_store() {
    conformance(&InMemoryStateStore::new(), "0a1b").await;
    latest_jobs(&InMemoryStateStore::new()).await;
    progress_event_claims(&InMemoryStateStore::new(), "0e1f").await;
    submitted_jobs_take_the_key(&InMemoryStateStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_store_under_concurrent_writers() {
    concurrent_writers(Arc::new(InMemoryStateStore::new()), "0c1d").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_store_under_concurrent_writers() {
    if !common::stack_available() {
        return;
    }
    let client = aws_sdk_dynamodb::Client::new(&common::sdk().await);
    let table = format!("conformance-concurrent-{}", std::process::id());
    common::create_table(&client, &table).await;
    let store = DynamoStore {
        client,
        table,
        ttl_seconds: 3600,
    };
    concurrent_writers(Arc::new(store), "0c1d").await;
}

#[tokio::test]
async fn dynamodb_store_on_the_local_stack() {
    if !common::stack_available() {
        return;
    }
    let client = aws_sdk_dynamodb::Client::new(&common::sdk().await);
    let table = format!("conformance-{}", std::process::id());
    common::create_table(&client, &table).await;
    let store = DynamoStore {
        client: client.clone(),
        table: table.clone(),
        ttl_seconds: 3600,
    };
    conformance(&store, "0a1b").await;
    latest_jobs(&store).await;
    progress_event_claims(&store, "0e1f").await;
    submitted_jobs_take_the_key(&store).await;
    // The record is readable as it is with `aws dynamodb get-item` (docs/deploy.md): one
    // attribute per field, not JSON inside a string.
    let item = client
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("job#0a1b".into()))
        .key("sk", AttributeValue::S("job".into()))
        .send()
        .await
        .expect("get-item")
        .item
        .expect("the job item");
    let job = store.get_job("0a1b").await.expect("read").expect("record");
    assert_eq!(
        item.get("status").and_then(|v| v.as_s().ok()),
        Some(&job.status.name().to_owned())
    );
    assert_eq!(
        item.get("source").and_then(|v| v.as_s().ok()),
        Some(&job.source)
    );
    assert_eq!(
        item.get("segments").and_then(|v| v.as_n().ok()),
        Some(&job.segments.to_string())
    );
    assert_eq!(
        item.get("kind")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("job")
    );
    assert!(!item.contains_key("record"), "no JSON blob: {item:?}");
    // The newest job of an input key, found with one get-item on `key#<bucket>/<key>`.
    let latest = client
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("key#in/uploads/x.mp4".into()))
        .key("sk", AttributeValue::S("latest".into()))
        .send()
        .await
        .expect("get-item")
        .item
        .expect("the key's item");
    assert_eq!(
        latest
            .get("job_id")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("j3b")
    );
    // Every item carries a TTL.
    let items = client
        .scan()
        .table_name(&table)
        .send()
        .await
        .expect("scan")
        .items
        .unwrap_or_default();
    assert!(items.len() >= 5, "{} items", items.len());
    assert!(
        items
            .iter()
            .all(|item| item.get("expires_at").and_then(|v| v.as_n().ok()).is_some()),
        "an item without TTL"
    );
}
