//! The job events the handlers send ([`crate::job_events`]): each one says what the job record
//! says right after the change, read back from the store, so an event never claims more than
//! the record holds.

use super::Services;
use crate::job_events::JobEvent;
use std::time::{SystemTime, UNIX_EPOCH};
use treemux_core::state::JobStore;

/// Announces `job_id`'s status as its record has it (started, succeeded, failed, superseded).
/// A record that cannot be read is logged: events never fail a job.
pub(super) async fn state<S: JobStore, O, X>(services: &Services<S, O, X>, job_id: &str) {
    match services.store.get_job(job_id).await {
        Ok(Some(record)) => {
            if let Some(event) = JobEvent::of_record(&record) {
                services.events.emit(&event).await;
            }
        }
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(job_id, error = %error, "job event not sent: the record is unreadable")
        }
    }
}

/// Announces `job_id`'s progress if no progress event of the job was claimed within the
/// interval and the percentage grew since ([`JobStore::claim_progress_event`]): of many tasks
/// finishing together, one announces.
pub(super) async fn progress<S: JobStore, O, X>(services: &Services<S, O, X>, job_id: &str) {
    if services.events.bus.is_none() {
        return;
    }
    let record = match services.store.get_job(job_id).await {
        Ok(Some(record)) => record,
        Ok(None) => return,
        Err(error) => {
            return tracing::warn!(job_id, error = %error, "progress event not sent: the record is unreadable")
        }
    };
    let Some(percent) = record.progress.percent() else {
        return;
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let interval_ms = services.events.progress_interval.as_millis() as u64;
    match services
        .store
        .claim_progress_event(job_id, percent, now_ms, interval_ms)
        .await
    {
        Ok(true) => {
            services
                .events
                .emit(&JobEvent::progress(&record, now_ms))
                .await
        }
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(job_id, error = %error, "progress event not sent: no claim")
        }
    }
}
