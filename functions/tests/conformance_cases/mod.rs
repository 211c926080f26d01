//! The job-store cases of the state-store conformance suite beyond the basic one: the newest job
//! per key, concurrent writers, submitted jobs taking the key, progress-event claims. Run over
//! both stores by `state_store_conformance.rs`.

use super::*;

/// The newest job per input key (`claim_latest`): a later upload takes the key and names the
/// job it replaced, an earlier one (delivered late) is told which job is newer, claiming again
/// is harmless, and keys are independent. Also superseding: a final state is never replaced.
pub(crate) async fn latest_jobs<S: StateStore + JobStore>(store: &S) {
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
pub(crate) async fn concurrent_writers<S>(store: Arc<S>, job: &str)
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
pub(crate) async fn submitted_jobs_take_the_key<S: JobStore>(store: &S) {
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
pub(crate) async fn progress_event_claims<S: JobStore>(store: &S, job: &str) {
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
