//! The state-store port: the pair records that drive the merge tree.
//!
//! One record per internal node of the [`MergeTree`]. A finished child *confirms* itself to its
//! parent's record (a set of sides, so a repeated confirmation changes nothing); the child whose
//! confirmation completes the set then *claims* the merge. The claim is conditional: the first
//! claimant wins, the same claimant may claim again (a retried task), anyone else loses. Once the
//! merged file exists the winner *marks* the record merged, so a task repeated after that point
//! skips the merge instead of doing it twice.
//!
//! Implementations: [`InMemoryStateStore`] here (the local runner and tests) and, for AWS, a
//! DynamoDB store with the same semantics. The methods are async because real stores are remote.

use crate::tree::{MergeTree, NodeId, Side};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Mutex;

/// Who claims a merge: a name that stays the same when the same task runs again.
pub type Claimant = String;

/// What a store says about a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The caller holds the claim and must (re)do the merge.
    Won,
    /// Another task holds the claim.
    Lost { holder: Claimant },
    /// The merge is already done; the caller carries on above it.
    AlreadyMerged,
}

/// Errors from a state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("job {job}: no record for pair {pair}")]
    MissingPair { job: String, pair: NodeId },
    #[error("job {job}: pair {pair} marked merged by {by}, but the claim is held by {holder:?}")]
    NotClaimant {
        job: String,
        pair: NodeId,
        by: Claimant,
        holder: Option<Claimant>,
    },
    /// The backend failed in a way worth retrying (throttling, a network error).
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

/// The operations the merge tree needs from a store. Each one is atomic per pair record.
pub trait StateStore: Send + Sync {
    /// Creates the pair records of a job with the placeholder confirmations already in place.
    /// Idempotent: creating the same job twice leaves the first records untouched.
    fn create_pairs(
        &self,
        job: &str,
        tree: &MergeTree,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// Records that child `side` of `pair` is finished and returns the sides confirmed so far.
    /// Idempotent.
    fn confirm_child(
        &self,
        job: &str,
        pair: NodeId,
        side: Side,
    ) -> impl Future<Output = Result<BTreeSet<Side>, StateError>> + Send;

    /// Claims the right to merge `pair`.
    fn claim_merge(
        &self,
        job: &str,
        pair: NodeId,
        claimant: &str,
    ) -> impl Future<Output = Result<ClaimOutcome, StateError>> + Send;

    /// Marks `pair` merged. Only the claim holder may do so; repeating it is harmless.
    fn mark_merged(
        &self,
        job: &str,
        pair: NodeId,
        claimant: &str,
    ) -> impl Future<Output = Result<(), StateError>> + Send;
}

#[derive(Clone, Debug, Default)]
struct PairRecord {
    confirmed: BTreeSet<Side>,
    claimed_by: Option<Claimant>,
    merged: bool,
}

/// A [`StateStore`] in process memory, for the local runner and tests.
#[derive(Debug, Default)]
pub struct InMemoryStateStore {
    pairs: Mutex<HashMap<(String, NodeId), PairRecord>>,
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
        for node in tree.internal_nodes() {
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
