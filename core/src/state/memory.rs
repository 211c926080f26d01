//! [`InMemoryStateStore`]: both state ports in process memory, for the local runner and tests
//! (the same conformance suite as DynamoDB, `functions/tests/state_store_conformance.rs`).

use super::*;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Clone, Debug, Default)]
struct PairRecord {
    confirmed: BTreeSet<Side>,
    claimed_by: Option<Claimant>,
    merged: bool,
}

/// A [`StateStore`] and [`JobStore`] in process memory, for the local runner and tests.
#[derive(Debug, Default)]
pub struct InMemoryStateStore {
    pairs: Mutex<HashMap<(String, NodeId), PairRecord>>,
    jobs: Mutex<HashMap<String, JobRecord>>,
    /// Newest job per input `(bucket, key)`: `(job, order)`.
    latest: Mutex<HashMap<(String, String), (String, String)>>,
    /// The last progress event claimed per job: `(unix milliseconds, percent)`.
    progress_events: Mutex<HashMap<String, (u64, u64)>>,
}

impl InMemoryStateStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_pair<T>(
        &self,
        job: &str,
        pair: NodeId,
        f: impl FnOnce(&mut PairRecord) -> T,
    ) -> Result<T, StateError> {
        // A poisoned lock means a panic elsewhere while holding it; the map itself is still whole
        // because every update below is a single assignment.
        let mut pairs = self
            .pairs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let record =
            pairs
                .get_mut(&(job.to_owned(), pair))
                .ok_or_else(|| StateError::MissingPair {
                    job: job.to_owned(),
                    pair,
                })?;
        Ok(f(record))
    }
}

impl StateStore for InMemoryStateStore {
    async fn create_pairs(&self, job: &str, tree: &MergeTree) -> Result<(), StateError> {
        let mut pairs = self
            .pairs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pairs.contains_key(&(job.to_owned(), tree.root())) || tree.levels == 0 {
            return Ok(());
        }
        for node in tree
            .internal_nodes()
            .filter(|&node| !tree.is_placeholder(node))
        {
            pairs.insert((job.to_owned(), node), PairRecord::default());
        }
        for (pair, side) in tree.initial_confirmations() {
            if let Some(record) = pairs.get_mut(&(job.to_owned(), pair)) {
                record.confirmed.insert(side);
            }
        }
        Ok(())
    }

    async fn confirm_child(
        &self,
        job: &str,
        pair: NodeId,
        side: Side,
    ) -> Result<BTreeSet<Side>, StateError> {
        self.with_pair(job, pair, |record| {
            record.confirmed.insert(side);
            record.confirmed.clone()
        })
    }

    async fn claim_merge(
        &self,
        job: &str,
        pair: NodeId,
        claimant: &str,
    ) -> Result<ClaimOutcome, StateError> {
        self.with_pair(job, pair, |record| {
            if record.merged {
                return ClaimOutcome::AlreadyMerged;
            }
            match &record.claimed_by {
                Some(holder) if holder != claimant => ClaimOutcome::Lost {
                    holder: holder.clone(),
                },
                _ => {
                    record.claimed_by = Some(claimant.to_owned());
                    ClaimOutcome::Won
                }
            }
        })
    }

    async fn mark_merged(&self, job: &str, pair: NodeId, claimant: &str) -> Result<(), StateError> {
        self.with_pair(job, pair, |record| {
            if record.claimed_by.as_deref() == Some(claimant) {
                record.merged = true;
                Ok(())
            } else {
                Err(StateError::NotClaimant {
                    job: job.to_owned(),
                    pair,
                    by: claimant.to_owned(),
                    holder: record.claimed_by.clone(),
                })
            }
        })?
    }
}

impl JobStore for InMemoryStateStore {
    async fn create_job(&self, record: &JobRecord) -> Result<bool, StateError> {
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if jobs.contains_key(&record.job_id) {
            return Ok(false);
        }
        jobs.insert(record.job_id.clone(), record.clone());
        Ok(true)
    }

    async fn get_job(&self, job_id: &str) -> Result<Option<JobRecord>, StateError> {
        Ok(self
            .jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(job_id)
            .cloned())
    }

    async fn update_job(
        &self,
        job_id: &str,
        update: &JobUpdate,
        now: u64,
    ) -> Result<(), StateError> {
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let record = jobs.get_mut(job_id).ok_or_else(|| StateError::MissingJob {
            job: job_id.to_owned(),
        })?;
        apply_job_update(record, update, now);
        Ok(())
    }

    async fn claim_latest(
        &self,
        bucket: &str,
        key: &str,
        job_id: &str,
        order: &str,
    ) -> Result<LatestClaim, StateError> {
        let mut latest = self
            .latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = (bucket.to_owned(), key.to_owned());
        let recorded = latest.get(&slot);
        let claim = latest_claim(
            recorded.map(|(job, order)| (job.as_str(), order.as_str())),
            job_id,
            order,
        );
        if matches!(claim, LatestClaim::Newest { .. }) {
            latest.insert(slot, (job_id.to_owned(), order.to_owned()));
        }
        Ok(claim)
    }

    async fn claim_progress_event(
        &self,
        job_id: &str,
        percent: u64,
        now_ms: u64,
        interval_ms: u64,
    ) -> Result<bool, StateError> {
        if !self
            .jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(job_id)
        {
            return Err(StateError::MissingJob {
                job: job_id.to_owned(),
            });
        }
        let mut claims = self
            .progress_events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = progress_event_due(claims.get(job_id).copied(), percent, now_ms, interval_ms);
        if due {
            claims.insert(job_id.to_owned(), (now_ms, percent));
        }
        Ok(due)
    }

    async fn take_latest(
        &self,
        bucket: &str,
        key: &str,
        job_id: &str,
    ) -> Result<Option<String>, StateError> {
        let mut latest = self
            .latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = latest
            .entry((bucket.to_owned(), key.to_owned()))
            .or_insert_with(|| (job_id.to_owned(), String::new()));
        let previous = std::mem::replace(&mut slot.0, job_id.to_owned());
        Ok(Some(previous).filter(|previous| previous != job_id))
    }

    async fn latest_job(&self, bucket: &str, key: &str) -> Result<Option<String>, StateError> {
        Ok(self
            .latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|(job, _)| job.clone()))
    }
}
