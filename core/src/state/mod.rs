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

mod memory;
pub use memory::InMemoryStateStore;

use crate::names::Stage;
use crate::progress::{Progress, ProgressCounts};
use crate::settings::JobSettings;
use crate::summary::RunOutput;
use crate::tree::{MergeTree, NodeId, Side};
use std::collections::BTreeSet;
use std::future::Future;

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
    #[error("job {job}: no job record")]
    MissingJob { job: String },
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
    /// A stored record cannot be read (or a record cannot be written) as a job record: retrying
    /// reads the same bytes again, so this is never retried.
    #[error("job {job}: unreadable record: {reason}")]
    Corrupt { job: String, reason: String },
    /// The backend refused the request as made (a missing table, a validation error, access
    /// denied): a deployment problem that retrying cannot fix.
    #[error("state store refused the request: {0}")]
    Refused(String),
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

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Recorded by analyze; the execution is not started yet.
    Created,
    Running,
    Succeeded,
    Failed,
    /// A newer upload of the same key replaced this one; the job stopped without an output
    /// (the reason is on the record).
    Superseded,
}

impl JobStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Superseded => "SUPERSEDED",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Created,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Superseded,
        ]
        .into_iter()
        .find(|status| status.name() == name)
    }

    /// True once the job can change no more (succeeded, failed or superseded).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Superseded)
    }
}

/// The job record a user can read while the job runs. Progress is kept as sets of finished
/// items, so a retried task never counts twice.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub status: JobStatus,
    /// Where the upload came from, `s3://bucket/key`.
    pub source: String,
    /// The exact object version the job reads: the S3 version id, else the ETag of the event.
    #[serde(default)]
    pub source_version: String,
    /// Which upload event made the job: S3's `sequencer` (or the event time where there is
    /// none). A duplicate delivery of one event carries the same value; a new upload another.
    #[serde(default)]
    pub upload: String,
    /// Where the result goes, `s3://bucket/key`.
    pub output: String,
    pub segments: u32,
    /// Pair merges the tree needs (concatenations and renames).
    pub merges: u32,
    pub segments_done: BTreeSet<u32>,
    /// Merged nodes, as `L<level>-<index>`.
    pub merges_done: BTreeSet<String>,
    /// Merge files written, including any written again by a duplicate task: equals `merges`
    /// when every pair was merged exactly once.
    pub merge_runs: u32,
    /// Seconds spent per stage (on Lambda: `analyze`, `audio`, `convert`, `merge`, `remux`;
    /// before the names were shared, `audio` and `remux` were `split_audio` and `merge_audio`,
    /// which still read), summed over tasks.
    pub stage_seconds: std::collections::BTreeMap<Stage, f64>,
    /// The job's progress as the command line's bar counts it: segments and merges done out of
    /// their totals, frames encoded (counted per finished segment) and the percentage, kept by
    /// [`apply_job_update`] with [`ProgressCounts::record`], each segment and merge counted once.
    #[serde(default)]
    pub progress: ProgressCounts,
    /// Why the job failed (the error name and its cause), or why it was superseded.
    pub error: Option<String>,
    /// The job of the newer upload that replaced this one ([`JobStatus::Superseded`]).
    #[serde(default)]
    pub superseded_by: Option<String>,
    /// What the output is: its bytes and what of the source it does not keep, recorded by
    /// merge-audio; the [`RunOutput`] a local run's summary holds too. Flattened, so
    /// `output_bytes` and `warnings` are fields (DynamoDB attributes) of the record itself.
    #[serde(flatten)]
    pub result: RunOutput,
    /// The settings the job runs with (its own, resolved by analyze before any work); `None`
    /// until then.
    #[serde(default)]
    pub settings: Option<JobSettings>,
    /// Where each setting that is not the stack's default came from, by setting name (`crf` →
    /// `x-amz-meta-treemux-crf`).
    #[serde(default)]
    pub settings_from: std::collections::BTreeMap<String, String>,
    /// Unix seconds.
    pub created_at: u64,
    pub updated_at: u64,
}

/// A change to a job record.
#[derive(Clone, Debug, PartialEq)]
pub enum JobUpdate {
    /// The execution started, for a plan of `frames` frames in `segments` segments whose tree
    /// needs `merges` pair merges (placeholder pairs excluded).
    Running {
        segments: u32,
        merges: u32,
        frames: u64,
    },
    /// Segment `index`, of `frames` frames, is done.
    SegmentDone {
        index: u32,
        seconds: f64,
        frames: u64,
    },
    /// A pair's file is in place (a concatenation, or a rename when the right child is a
    /// placeholder). `ran` says this task wrote it; false when a retried task found the file an
    /// earlier attempt of the same claim had written before dying. That earlier run is counted
    /// then, unless it was recorded before the attempt died.
    Merged {
        node: NodeId,
        seconds: f64,
        ran: bool,
    },
    /// Time spent in a stage other than convert and merge.
    Stage {
        stage: Stage,
        seconds: f64,
    },
    /// The output of the final mux: its size and warnings (replacing any an earlier attempt
    /// recorded).
    Output(RunOutput),
    Succeeded,
    /// The job's own settings, where each came from, and the output they make (its extension
    /// follows the container); recorded by analyze before any work.
    Settings {
        settings: JobSettings,
        from: std::collections::BTreeMap<String, String>,
        output: String,
    },
    /// Never replaces a success or a supersession; the first cause recorded is kept.
    Failed {
        error: String,
    },
    /// analyze gave up on the job (its asynchronous invocation failed on every attempt) before
    /// an execution took it over: FAILED with `error` if the job is still CREATED. Any other
    /// status is kept: a RUNNING job belongs to its execution, whose own Catch, timeout or
    /// success ends it, and a final one stays as it is.
    NeverStarted {
        error: String,
    },
    /// A newer upload of the same key (job `by`, empty when not known yet) replaced this job's
    /// input. Never replaces a success or a failure.
    Superseded {
        by: String,
        reason: String,
    },
}

/// What [`JobStore::claim_latest`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LatestClaim {
    /// The job is now the newest for its key; `previous` is the job it replaced, if any.
    Newest { previous: Option<String> },
    /// A newer upload's job (`newest`) is already recorded for the key.
    Older { newest: String },
}

/// Job records: created once per upload (a duplicate event finds the record and stops),
/// updated by every task.
pub trait JobStore: Send + Sync {
    /// Creates the record unless one with the same id exists; true when this call created it.
    fn create_job(
        &self,
        record: &JobRecord,
    ) -> impl Future<Output = Result<bool, StateError>> + Send;

    fn get_job(
        &self,
        job_id: &str,
    ) -> impl Future<Output = Result<Option<JobRecord>, StateError>> + Send;

    /// Applies `update` at `now` (Unix seconds).
    fn update_job(
        &self,
        job_id: &str,
        update: &JobUpdate,
        now: u64,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// Records `job_id` as the newest job for input `bucket`/`key` unless a job of a later
    /// upload is recorded already. `order` ranks uploads of one key: a later upload has a
    /// greater string (S3 sequencers padded to one width). An equal order is the same upload
    /// event under other settings (a redeploy): the job analyzed last takes the key. Atomic;
    /// claiming again with the same job is harmless.
    fn claim_latest(
        &self,
        bucket: &str,
        key: &str,
        job_id: &str,
        order: &str,
    ) -> impl Future<Output = Result<LatestClaim, StateError>> + Send;

    /// Records `job_id` as the newest job for input `bucket`/`key` now, at the upload order
    /// recorded for the key (the lowest when none is): a job submitted for an object already
    /// stored (`treemux submit`) replaces the key's job, and any later upload replaces it in
    /// turn. Atomic; returns the job it replaced, if another.
    fn take_latest(
        &self,
        bucket: &str,
        key: &str,
        job_id: &str,
    ) -> impl Future<Output = Result<Option<String>, StateError>> + Send;

    /// The newest job recorded for input `bucket`/`key`.
    fn latest_job(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, StateError>> + Send;

    /// Claims the right to announce job `job_id` at `percent` now (`now_ms`, Unix milliseconds):
    /// true when no progress event was claimed yet, or the last one was claimed at least
    /// `interval_ms` before and at a lower percentage. Atomic, so of many tasks finishing
    /// together one announces, at most once per interval, with percentages that only grow.
    fn claim_progress_event(
        &self,
        job_id: &str,
        percent: u64,
        now_ms: u64,
        interval_ms: u64,
    ) -> impl Future<Output = Result<bool, StateError>> + Send;
}

/// The rule of [`JobStore::claim_progress_event`] over the last claim `(ms, percent)`, shared by
/// every store.
pub fn progress_event_due(
    last: Option<(u64, u64)>,
    percent: u64,
    now_ms: u64,
    interval_ms: u64,
) -> bool {
    last.is_none_or(|(at, last_percent)| {
        at.saturating_add(interval_ms) <= now_ms && last_percent < percent
    })
}

/// The rule of [`JobStore::claim_latest`] over the recorded `(job, order)`, shared by every store.
pub fn latest_claim(recorded: Option<(&str, &str)>, job_id: &str, order: &str) -> LatestClaim {
    match recorded {
        Some((job, _)) if job == job_id => LatestClaim::Newest { previous: None },
        Some((job, recorded_order)) if recorded_order > order => LatestClaim::Older {
            newest: job.to_owned(),
        },
        Some((job, _)) => LatestClaim::Newest {
            previous: Some(job.to_owned()),
        },
        None => LatestClaim::Newest { previous: None },
    }
}

/// Applies an update to a record in memory; the DynamoDB store expresses the same rules as
/// update expressions.
pub fn apply_job_update(record: &mut JobRecord, update: &JobUpdate, now: u64) {
    record.updated_at = now;
    let mut add_seconds =
        |stage: Stage, seconds: f64| *record.stage_seconds.entry(stage).or_default() += seconds;
    match update {
        JobUpdate::Running {
            segments,
            merges,
            frames,
        } => {
            (record.segments, record.merges) = (*segments, *merges);
            record.progress.record(&Progress::Planned {
                frames: *frames,
                segments: *segments,
                merges: *merges,
                duration_seconds: 0.0,
            });
            if record.status == JobStatus::Created {
                record.status = JobStatus::Running;
            }
        }
        JobUpdate::SegmentDone {
            index,
            seconds,
            frames,
        } => {
            add_seconds(Stage::Convert, *seconds);
            // A retried task reports its segment again: counted once.
            if record.segments_done.insert(*index) {
                record.progress.record(&Progress::SegmentDone {
                    index: *index,
                    unreported_frames: *frames,
                });
            }
        }
        JobUpdate::Merged { node, seconds, ran } => {
            add_seconds(Stage::Merge, *seconds);
            let first_record = record.merges_done.insert(node.to_string());
            if first_record {
                record.progress.record(&Progress::MergeDone { node: *node });
            }
            if *ran || first_record {
                record.merge_runs += 1;
            }
        }
        JobUpdate::Stage { stage, seconds } => add_seconds(*stage, *seconds),
        JobUpdate::Succeeded => {
            if record.status != JobStatus::Superseded {
                record.status = JobStatus::Succeeded;
            }
        }
        JobUpdate::Output(output) => record.result.clone_from(output),
        JobUpdate::Settings {
            settings,
            from,
            output,
        } => {
            record.settings = Some(settings.clone());
            record.settings_from.clone_from(from);
            record.output.clone_from(output);
        }
        JobUpdate::Failed { error } => {
            // The first cause is the specific one; a later, generic report (the Map giving up
            // after a child failed) must not replace it. A superseded job's tasks stop with an
            // error too; the job stays superseded.
            if !matches!(record.status, JobStatus::Succeeded | JobStatus::Superseded) {
                record.status = JobStatus::Failed;
                record.error.get_or_insert_with(|| error.clone());
            }
        }
        JobUpdate::NeverStarted { error } => {
            if record.status == JobStatus::Created {
                record.status = JobStatus::Failed;
                record.error.get_or_insert_with(|| error.clone());
            }
        }
        JobUpdate::Superseded { by, reason } => {
            if !record.status.is_final() {
                record.status = JobStatus::Superseded;
                // Empty when the newer upload's job is not known yet (its event is on the way).
                record.superseded_by = Some(by.clone()).filter(|by| !by.is_empty());
                record.error = Some(reason.clone());
            }
        }
    }
}
