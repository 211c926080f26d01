//! job-failed: a failed job's record and clean-up (its output upload aborted, its scratch
//! removed), from the state machine's Catch, the EventBridge rules, or as analyze's failure
//! destination.

use super::event_jobs::{new_job_record, EventJob};
use super::merge_audio::end_unfinished_job;
use super::{event_jobs, now, Config, Services};
use crate::error::HandlerError;
use crate::events::{AsyncInvocationRecord, JobFailedInput};
use crate::job::JobPaths;
use crate::ports::ObjectStore;
use crate::upload::MultipartStore;
use treemux_core::state::{JobRecord, JobStatus, JobStore, JobUpdate, StateStore};

/// What job-failed did: the jobs it was told about.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobFailedOutcome {
    pub job_ids: Vec<String>,
}

/// job-failed: marks a job FAILED with its cause and aborts the output's multipart upload if merge-audio started one
/// (the object never appeared: only a completed upload makes it) and removes its scratch files. Invoked by the state machine's Catch and the EventBridge rules with
/// `{job_id, error}`, and as analyze's `OnFailure` destination with Lambda's invocation record
/// (see [`analyze_gave_up`]). A job that succeeded or was superseded keeps its status.
pub async fn job_failed<S, O, X>(
    services: &Services<S, O, X>,
    input: JobFailedInput,
) -> Result<JobFailedOutcome, HandlerError>
where
    S: StateStore + JobStore,
    O: MultipartStore + ObjectStore,
{
    match input {
        JobFailedInput::Task(task) => {
            let error = task.error.describe();
            services
                .store
                .update_job(
                    &task.job_id,
                    &JobUpdate::Failed {
                        error: error.clone(),
                    },
                    now(),
                )
                .await?;
            // The state machine also runs this for a superseded job's clean-up: say what the
            // record says.
            let status = services
                .store
                .get_job(&task.job_id)
                .await?
                .map(|job| job.status);
            tracing::error!(job_id = %task.job_id, outcome = ?status, cause = %error, "job-failed");
            // The job's end (unless it ended otherwise): job-failed runs once per failed
            // execution (twice at most, when the Catch and a timeout rule both report it).
            if status == Some(JobStatus::Failed) {
                super::announce::state(services, &task.job_id).await;
            }
            remove_scratch(&services.config, &services.objects, &task.job_id).await;
            Ok(JobFailedOutcome {
                job_ids: vec![task.job_id],
            })
        }
        JobFailedInput::Invocation(record) => analyze_gave_up(services, &record).await,
    }
}

/// Removes a job's scratch directory (nothing for an id treemux did not make), after what it
/// holds elsewhere (its output upload, its kept segments: [`end_unfinished_job`]).
async fn remove_scratch<O: MultipartStore + ObjectStore>(
    config: &Config,
    objects: &O,
    job_id: &str,
) {
    if job_id.bytes().all(|b| b.is_ascii_hexdigit()) && !job_id.is_empty() {
        let paths = JobPaths::new(&config.scratch_root, job_id);
        end_unfinished_job(objects, &paths).await;
    }
}

/// job-failed as analyze's failure destination: every attempt of analyze on `record`'s S3 event
/// failed (or the event expired). Each job of the event ([`event_jobs`], as analyze derives
/// them) still CREATED ends FAILED with the last error; one with no record yet gets a FAILED
/// record, so the upload's fate can be looked up; a RUNNING job is left to its execution and a
/// finished or superseded one keeps its status ([`JobUpdate::NeverStarted`]).
pub async fn analyze_gave_up<S, O, X>(
    services: &Services<S, O, X>,
    record: &AsyncInvocationRecord,
) -> Result<JobFailedOutcome, HandlerError>
where
    S: StateStore + JobStore,
    O: MultipartStore + ObjectStore,
{
    let config = &services.config;
    let cause = record.describe();
    let mut job_ids = Vec::new();
    for job in event_jobs(config, &record.request_payload) {
        let (upload, id) = match job {
            Ok(EventJob::Job { upload, id }) => (upload, id),
            Ok(EventJob::Refused(_) | EventJob::Spec(_)) => continue,
            Err(error) => {
                tracing::error!(
                    outcome = "no-job",
                    error = error.name(),
                    message = %error.message,
                    cause = %cause,
                    "job-failed: an upload event analyze gave up on names no job"
                );
                continue;
            }
        };
        let failed = JobRecord {
            status: JobStatus::Failed,
            error: Some(cause.clone()),
            ..new_job_record(config, &upload, &id)
        };
        let before = services.store.get_job(&id).await?.map(|job| job.status);
        if !services.store.create_job(&failed).await? {
            let update = JobUpdate::NeverStarted {
                error: cause.clone(),
            };
            services.store.update_job(&id, &update, now()).await?;
        }
        let status = services.store.get_job(&id).await?.map(|job| job.status);
        if status == Some(JobStatus::Failed) {
            remove_scratch(config, &services.objects, &id).await;
            if before != Some(JobStatus::Failed) {
                super::announce::state(services, &id).await;
            }
        }
        tracing::error!(
            job_id = %id,
            bucket = %upload.bucket,
            key = %upload.key,
            outcome = ?status,
            cause = %cause,
            "job-failed"
        );
        job_ids.push(id);
    }
    Ok(JobFailedOutcome { job_ids })
}
