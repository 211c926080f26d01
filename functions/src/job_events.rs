//! Job events: what a job's record says at each state change, announced as EventBridge events
//! (as MediaConvert announces its jobs) and, for completions, on an optional SNS topic.
//!
//! Every event has source [`EVENT_SOURCE`] and detail-type [`DETAIL_TYPE`]; its detail is a
//! [`JobEvent`] whose `status` says which change it is: `STARTED` (the execution started, with
//! the plan's counts), `PROGRESS` (about every [`DEFAULT_PROGRESS_INTERVAL`], with the
//! percentage), `SUCCEEDED` (the output objects, their sizes and the timings), `FAILED` (the
//! error name and message) or `SUPERSEDED` (a newer upload of the key replaced the job). Events
//! are delivered at least once and may arrive out of order (a consumer keys on `job_id` and
//! `status`; progress carries the time it was claimed). The job record stays the truth: an event
//! that cannot be sent is logged and the job goes on.
//!
//! The port is [`EventSink`] (one event to one destination); [`JobEvents`] sends each event to
//! the bus and completions to the topic. Implementations: EventBridge and SNS
//! ([`crate::aws::events`]) and [`RecordingSink`] for tests.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use treemux_core::names::Stage;
use treemux_core::progress::ProgressCounts;
use treemux_core::state::{JobRecord, JobStatus};

/// The events' `source`.
pub const EVENT_SOURCE: &str = "treemux";

/// The events' `detail-type`.
pub const DETAIL_TYPE: &str = "Treemux Job State Change";

/// How often a running job announces its progress, at most (`TREEMUX_PROGRESS_EVENT_SECONDS`).
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// An event's detail: the job, its input and output, and the change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: String,
    /// The upload, `s3://bucket/key`.
    pub input: String,
    /// Where the output goes, `s3://bucket/key`.
    pub output: String,
    #[serde(flatten)]
    pub change: JobChange,
}

/// What changed, tagged by `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobChange {
    /// The execution started for a plan of `segments` segments, `merges` pair merges, `frames`
    /// frames.
    Started {
        segments: u32,
        merges: u32,
        frames: u64,
    },
    /// `percent` (0–100) of the frames are encoded; `progress` has every count. `claimed_at_ms`
    /// (Unix milliseconds) orders a job's progress events.
    Progress {
        percent: u64,
        progress: ProgressCounts,
        claimed_at_ms: u64,
    },
    /// The output is complete.
    Succeeded {
        outputs: Vec<OutputObject>,
        /// Seconds per stage, summed over tasks.
        stage_seconds: BTreeMap<Stage, f64>,
        /// From the job's record to its success, seconds.
        elapsed_seconds: u64,
        warnings: Vec<String>,
    },
    /// The job failed: the stable error name (`TreemuxInvalidInput`, …) and the message.
    Failed {
        error_name: String,
        error_message: String,
    },
    /// A newer upload of the same key replaced this one.
    Superseded {
        superseded_by: Option<String>,
        reason: String,
    },
}

/// One object a job wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputObject {
    pub bucket: String,
    pub key: String,
    pub bytes: u64,
}

impl JobEvent {
    /// The event of `record` as it stands (`None` for a status no event announces, or a
    /// success whose output is not an `s3://` address).
    pub fn of_record(record: &JobRecord) -> Option<Self> {
        let change = match record.status {
            JobStatus::Created => return None,
            JobStatus::Running => JobChange::Started {
                segments: record.segments,
                merges: record.merges,
                frames: record.progress.frames_total,
            },
            JobStatus::Succeeded => {
                let object = |name: &str, bytes: u64| {
                    let (bucket, key) = name.strip_prefix("s3://")?.split_once('/')?;
                    Some(OutputObject {
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                        bytes,
                    })
                };
                // Every rendition's object, or every object of a package; else the one output.
                let outputs = if record.result.outputs.is_empty() {
                    vec![object(&record.output, record.result.output_bytes)?]
                } else {
                    record
                        .result
                        .outputs
                        .iter()
                        .map(|file| object(&file.name, file.bytes))
                        .collect::<Option<Vec<_>>>()?
                };
                // Then the output's thumbnails.
                let mut outputs = outputs;
                for file in &record.result.thumbnails {
                    outputs.push(object(&file.name, file.bytes)?);
                }
                JobChange::Succeeded {
                    outputs,
                    stage_seconds: record.stage_seconds.clone(),
                    elapsed_seconds: record.updated_at.saturating_sub(record.created_at),
                    warnings: record.result.warnings.clone(),
                }
            }
            JobStatus::Failed => {
                let (error_name, error_message) = split_error(record.error.as_deref());
                JobChange::Failed {
                    error_name,
                    error_message,
                }
            }
            JobStatus::Superseded => JobChange::Superseded {
                superseded_by: record.superseded_by.clone(),
                reason: record.error.clone().unwrap_or_default(),
            },
        };
        Some(Self {
            job_id: record.job_id.clone(),
            input: record.source.clone(),
            output: record.output.clone(),
            change,
        })
    }

    /// The progress event of `record`, claimed at `claimed_at_ms`.
    pub fn progress(record: &JobRecord, claimed_at_ms: u64) -> Self {
        Self {
            job_id: record.job_id.clone(),
            input: record.source.clone(),
            output: record.output.clone(),
            change: JobChange::Progress {
                percent: record.progress.percent().unwrap_or(0),
                progress: record.progress,
                claimed_at_ms,
            },
        }
    }

    /// True for a job's end that the completion topic announces (succeeded or failed).
    pub fn is_completion(&self) -> bool {
        matches!(
            self.change,
            JobChange::Succeeded { .. } | JobChange::Failed { .. }
        )
    }

    /// `STARTED`, `PROGRESS`, …: the detail's `status`.
    pub fn status(&self) -> &'static str {
        match self.change {
            JobChange::Started { .. } => "STARTED",
            JobChange::Progress { .. } => "PROGRESS",
            JobChange::Succeeded { .. } => "SUCCEEDED",
            JobChange::Failed { .. } => "FAILED",
            JobChange::Superseded { .. } => "SUPERSEDED",
        }
    }
}

/// A record's `error` (`"TreemuxInvalidInput: s3://…: …"`) as the error name and the message;
/// a cause without a name is `TreemuxInternal`'s.
fn split_error(error: Option<&str>) -> (String, String) {
    let error = error.unwrap_or("");
    match error.split_once(": ") {
        Some((name, message))
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') =>
        {
            (name.to_owned(), message.to_owned())
        }
        _ => (
            treemux_core::ErrorKind::Internal.name().to_owned(),
            error.to_owned(),
        ),
    }
}

/// Why an event was not sent.
#[derive(Debug, thiserror::Error)]
#[error("{destination}: {message}")]
pub struct EventError {
    pub destination: String,
    pub message: String,
}

/// A boxed future: [`EventSink`] is used as a trait object (one bus, an optional topic).
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), EventError>> + Send + 'a>>;

/// One destination of job events.
pub trait EventSink: Send + Sync + Debug {
    fn send<'a>(&'a self, event: &'a JobEvent) -> SendFuture<'a>;
}

/// Where the handlers send job events: every event to the bus, completions also to the topic;
/// either may be absent (events off).
#[derive(Clone, Debug)]
pub struct JobEvents {
    pub bus: Option<Arc<dyn EventSink>>,
    pub completion: Option<Arc<dyn EventSink>>,
    /// At most one progress event per job per interval.
    pub progress_interval: Duration,
}

impl Default for JobEvents {
    /// No destination: nothing is sent.
    fn default() -> Self {
        Self {
            bus: None,
            completion: None,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
        }
    }
}

impl JobEvents {
    /// Sends `event`; a destination that refuses it is logged, never the job's failure.
    pub async fn emit(&self, event: &JobEvent) {
        let completion = self.completion.as_ref().filter(|_| event.is_completion());
        for sink in self.bus.iter().chain(completion) {
            match sink.send(event).await {
                Ok(()) => tracing::info!(
                    job_id = %event.job_id,
                    status = event.status(),
                    "job event sent"
                ),
                Err(error) => tracing::warn!(
                    job_id = %event.job_id,
                    status = event.status(),
                    error = %error,
                    "job event not sent"
                ),
            }
        }
    }
}

/// Events kept in memory, for tests.
#[derive(Debug, Default)]
pub struct RecordingSink {
    pub events: Mutex<Vec<JobEvent>>,
}

impl RecordingSink {
    pub fn events(&self) -> Vec<JobEvent> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl EventSink for RecordingSink {
    fn send<'a>(&'a self, event: &'a JobEvent) -> SendFuture<'a> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(event.clone());
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_splits_into_its_name_and_message() {
        assert_eq!(
            split_error(Some(
                "TreemuxInvalidInput: s3://in/a.mp4: upscale: expected"
            )),
            (
                "TreemuxInvalidInput".to_owned(),
                "s3://in/a.mp4: upscale: expected".to_owned()
            )
        );
        assert_eq!(
            split_error(Some("States.Timeout: the execution timed out")).0,
            "States.Timeout"
        );
        assert_eq!(
            split_error(Some("no name here")),
            ("TreemuxInternal".to_owned(), "no name here".to_owned())
        );
    }

    #[test]
    fn the_detail_is_tagged_by_status() {
        let event = JobEvent {
            job_id: "ab".to_owned(),
            input: "s3://in/a.mp4".to_owned(),
            output: "s3://out/a.mp4".to_owned(),
            change: JobChange::Failed {
                error_name: "TreemuxMediaFailure".to_owned(),
                error_message: "bad".to_owned(),
            },
        };
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(json["status"], "FAILED");
        assert_eq!(json["error_name"], "TreemuxMediaFailure");
        assert!(event.is_completion());
        let back: JobEvent = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, event);
    }
}
