//! One suite for every state-store implementation: the in-memory store always, DynamoDB on the
//! local stack when it runs (required in CI).

mod common;

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
        container: Container::WebM,
        encode,
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

/// The newest job per input key (`claim_latest`): a later upload takes the key and names the
/// job it replaced, an earlier one (delivered late) is told which job is newer, claiming again
/// is harmless, and keys are independent. Also superseding: a final state is never replaced.
async fn latest_jobs<S: StateStore + JobStore>(store: &S) {
    use treemux_core::state::LatestClaim;
    let (bucket, key) = ("in", "uploads/x.mp4");
    assert_eq!(store.latest_job(bucket, key).await.expect("read"), None);
    let claim = |job: &'static str, order: &'static str| async move {
        store
            .claim_latest(bucket, key, job, order)
            .await
            .expect("claim")
    };
    assert_eq!(
        claim("j2", "t2026-12-01T10:00:02.000Z").await,
        LatestClaim::Newest { previous: None }
    );
    assert_eq!(
        claim("j1", "t2026-12-01T10:00:01.000Z").await,
        LatestClaim::Older {
            newest: "j2".into()
        },
        "an older upload delivered late does not take the key"
    );
    assert_eq!(
        claim("j2", "t2026-12-01T10:00:02.000Z").await,
        LatestClaim::Newest { previous: None }
    );
    assert_eq!(
        claim("j3", "t2026-12-01T10:00:03.000Z").await,
        LatestClaim::Newest {
            previous: Some("j2".into())
        }
    );
    assert_eq!(
        claim("j3b", "t2026-12-01T10:00:03.000Z").await,
        LatestClaim::Newest {
            previous: Some("j3".into())
        },
        "the same upload under other settings is the newest job"
    );
    assert_eq!(
        store.latest_job(bucket, key).await.expect("read"),
        Some("j3b".into())
    );
    assert_eq!(
        store
            .latest_job(bucket, "uploads/x.mov")
            .await
            .expect("read"),
        None,
        "another key has no job"
    );
    for (job, status) in [("5a01", JobStatus::Running), ("5a02", JobStatus::Succeeded)] {
        let mut record = record(job);
        record.status = status;
        assert!(store.create_job(&record).await.expect("create"));
        let update = JobUpdate::Superseded {
            by: "j3".into(),
            reason: "a newer upload".into(),
        };
        store.update_job(job, &update, 3).await.expect("supersede");
        store
            .update_job(
                job,
                &JobUpdate::Failed {
                    error: "later".into(),
                },
                4,
            )
            .await
            .expect("fail");
        store
            .update_job(job, &JobUpdate::Succeeded, 5)
            .await
            .expect("succeed");
        let read = store.get_job(job).await.expect("read").expect("record");
        if status == JobStatus::Running {
            assert_eq!(
                read.status,
                JobStatus::Superseded,
                "a running job is superseded for good"
            );
            assert_eq!(read.superseded_by.as_deref(), Some("j3"));
            assert_eq!(read.error.as_deref(), Some("a newer upload"));
        } else {
            assert_eq!(
                read.status,
                JobStatus::Succeeded,
                "a finished job stays finished"
            );
            assert_eq!(read.superseded_by, None);
        }
    }
}

/// Conditional writes hold under concurrency: updates racing on one job record are all kept,
/// two children confirming a pair at once see it complete exactly once between them, and of two
/// claimants racing for a pair exactly one wins.
async fn concurrent_writers<S>(store: Arc<S>, job: &str)
where
    S: StateStore + JobStore + 'static,
{
    const WRITERS: u32 = 60;
    assert!(store.create_job(&record(job)).await.expect("create"));
    let mut updates = JoinSet::new();
    for index in 0..WRITERS {
        let (store, job) = (store.clone(), job.to_owned());
        updates.spawn(async move {
            let update = JobUpdate::SegmentDone {
                index,
                seconds: 1.0,
                frames: 10,
            };
            store.update_job(&job, &update, 2).await.expect("update");
        });
    }
    updates.join_all().await;
    let read = store.get_job(job).await.expect("get").expect("exists");
    assert_eq!(
        read.segments_done,
        (0..WRITERS).collect::<BTreeSet<_>>(),
        "no update was lost"
    );

    let tree = MergeTree::new(64);
    store.create_pairs(job, &tree).await.expect("pairs");
    let mut races = JoinSet::new();
    for index in 0..32 {
        let pair = NodeId { level: 1, index };
        for side in [Side::Left, Side::Right] {
            let (store, job) = (store.clone(), job.to_owned());
            races.spawn(async move {
                let confirmed = store
                    .confirm_child(&job, pair, side)
                    .await
                    .expect("confirm");
                let claim = store
                    .claim_merge(&job, pair, &format!("{side:?}"))
                    .await
                    .expect("claim");
                (pair, confirmed.len(), claim)
            });
        }
    }
    let mut completions = std::collections::BTreeMap::<NodeId, (u32, u32)>::new();
    for (pair, confirmed, claim) in races.join_all().await {
        let entry = completions.entry(pair).or_default();
        entry.0 += u32::from(confirmed == 2);
        entry.1 += u32::from(claim == ClaimOutcome::Won);
    }
    for (pair, (completed, won)) in completions {
        assert_eq!(
            completed, 1,
            "{pair}: exactly one confirmation completes the pair"
        );
        assert_eq!(won, 1, "{pair}: exactly one claimant wins");
    }
}

/// A submitted job takes its key at the order recorded (`take_latest`): it replaces the key's
/// job, a later upload replaces it, an earlier one does not; on a key with no job it is the
/// newest, and any upload after it is newer.
async fn submitted_jobs_take_the_key<S: JobStore>(store: &S) {
    use treemux_core::state::LatestClaim;
    let (bucket, key) = ("in", "uploads/submitted.mp4");
    let order = "s0000000000000000000000000000000000000002";
    assert_eq!(
        store
            .claim_latest(bucket, key, "u1", order)
            .await
            .expect("claim"),
        LatestClaim::Newest { previous: None }
    );
    assert_eq!(
        store.take_latest(bucket, key, "sub1").await.expect("take"),
        Some("u1".to_owned())
    );
    assert_eq!(
        store.take_latest(bucket, key, "sub1").await.expect("again"),
        None
    );
    assert_eq!(
        store
            .latest_job(bucket, key)
            .await
            .expect("read")
            .as_deref(),
        Some("sub1")
    );
    assert_eq!(
        store
            .claim_latest(
                bucket,
                key,
                "u0",
                "s0000000000000000000000000000000000000001"
            )
            .await
            .expect("claim"),
        LatestClaim::Older {
            newest: "sub1".to_owned()
        },
        "an older upload delivered late"
    );
    assert_eq!(
        store
            .claim_latest(
                bucket,
                key,
                "u3",
                "s0000000000000000000000000000000000000003"
            )
            .await
            .expect("claim"),
        LatestClaim::Newest {
            previous: Some("sub1".to_owned())
        }
    );
    let fresh = "uploads/never-uploaded.mp4";
    assert_eq!(
        store
            .take_latest(bucket, fresh, "sub2")
            .await
            .expect("take"),
        None
    );
    assert_eq!(
        store
            .claim_latest(bucket, fresh, "u4", "t2026-01-01T00:00:00.000Z")
            .await
            .expect("claim"),
        LatestClaim::Newest {
            previous: Some("sub2".to_owned())
        }
    );
}

/// The claim behind the progress events' rate limit: the first claim wins, then at most one per
/// interval and only at a higher percentage; the record's own updates are untouched by it and
/// do not reset it; a job without a record has no claim.
async fn progress_event_claims<S: JobStore>(store: &S, job: &str) {
    assert!(store.create_job(&record(job)).await.expect("create"));
    let claim = |percent, at| store.claim_progress_event(job, percent, at, 10_000);
    assert!(claim(10, 1_000).await.expect("claim"), "the first claim");
    assert!(!claim(20, 5_000).await.expect("claim"), "too soon");
    assert!(claim(20, 11_000).await.expect("claim"), "due");
    let update = JobUpdate::SegmentDone {
        index: 0,
        seconds: 1.0,
        frames: 10,
    };
    store.update_job(job, &update, 2).await.expect("update");
    assert!(!claim(20, 30_000).await.expect("claim"), "no growth");
    assert!(claim(30, 30_000).await.expect("claim"), "grown and due");
    let read = store.get_job(job).await.expect("get").expect("exists");
    assert_eq!(
        read.segments_done,
        BTreeSet::from([0]),
        "the record is intact"
    );
    assert!(matches!(
        store.claim_progress_event("0fff", 1, 0, 0).await,
        Err(StateError::MissingJob { .. })
    ));
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
