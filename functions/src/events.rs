//! Payloads: the S3 event analyze receives, and the JSON each state-machine task takes and
//! returns. Plain serde types; the fixtures under functions/tests/fixtures hold real examples.

use serde::{Deserialize, Serialize};
use treemux_core::steps::NextStep;
use treemux_core::tree::NodeId;

/// An S3 event notification (the fields treemux reads). S3 also sends a one-off
/// `s3:TestEvent` message with no `Records` when a notification is configured; it parses as an
/// event with no records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct S3Event {
    #[serde(rename = "Records", default)]
    pub records: Vec<S3EventRecord>,
    /// A job submitted for an object already stored (`treemux submit`), beside or instead of
    /// the records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit: Option<Box<crate::submit::SubmitRequest>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3EventRecord {
    #[serde(default)]
    pub event_name: String,
    /// ISO 8601 UTC, e.g. `1970-01-01T00:00:00.000Z`.
    #[serde(default)]
    pub event_time: Option<String>,
    pub s3: S3Entity,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct S3Entity {
    pub bucket: S3Bucket,
    pub object: S3Object,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct S3Bucket {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Object {
    /// URL-encoded as in every S3 event (`+` for a space).
    pub key: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default, rename = "eTag")]
    pub e_tag: Option<String>,
    #[serde(default)]
    pub version_id: Option<String>,
    #[serde(default)]
    pub sequencer: Option<String>,
}

/// What analyze did with each record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyzeOutcome {
    pub jobs: Vec<AnalyzedJob>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyzedJob {
    pub job_id: String,
    pub bucket: String,
    pub key: String,
    /// `started`; `duplicate` when the job already existed; `superseded` when a newer upload
    /// of the key came first (or replaced it before it was read); `refused-output` (with no job)
    /// for a key where treemux writes outputs.
    pub outcome: String,
}

/// The state machine's input, written by analyze.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionInput {
    pub job_id: String,
    /// Segment indices, the items of the Map.
    pub segments: Vec<u32>,
}

/// Input of split-audio, merge-audio and job-done steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTask {
    pub job_id: String,
    /// merge-audio only: complete the output's upload, whose parts the upload-parts tasks
    /// uploaded (the root's second task kind), rather than finish the root.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub complete: bool,
}

/// Input of upload-parts: parts `first..=last` of the job's output (numbers from 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartGroup {
    pub job_id: String,
    pub first: i32,
    pub last: i32,
}

/// What upload-parts reports: the parts it uploaded and their bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartsUploaded {
    pub parts: u32,
    pub bytes: u64,
}

/// Input of split-and-convert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentTask {
    pub job_id: String,
    pub segment: u32,
}

/// Input of merge-video: the node to produce and the child whose name holds the claim (the
/// output of the previous step, passed on as is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeTask {
    pub job_id: String,
    pub node: NodeId,
    pub child: NodeId,
}

/// Output of split-and-convert and merge-video: the job and the next step, which the state
/// machine's Choice reads from `$.next` (`Merge`, `Done` or `MergeAudio`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutput {
    pub job_id: String,
    #[serde(flatten)]
    pub next: NextStep,
}

/// Input of job-failed: the job and the error caught by the state machine's Catch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedTask {
    pub job_id: String,
    pub error: CaughtError,
}

/// What job-failed is invoked with: the state machine's Catch (or an EventBridge rule) naming a
/// job, or Lambda's record of an asynchronous invocation of analyze whose every attempt failed
/// (analyze's `OnFailure` destination). Told apart by `requestPayload`, which only the
/// invocation record has.
#[derive(Clone, Debug, PartialEq)]
pub enum JobFailedInput {
    Task(FailedTask),
    Invocation(AsyncInvocationRecord),
}

impl From<FailedTask> for JobFailedInput {
    fn from(task: FailedTask) -> Self {
        Self::Task(task)
    }
}

impl From<AsyncInvocationRecord> for JobFailedInput {
    fn from(record: AsyncInvocationRecord) -> Self {
        Self::Invocation(record)
    }
}

impl<'de> Deserialize<'de> for JobFailedInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let value = serde_json::Value::deserialize(deserializer)?;
        if value.get("requestPayload").is_some() {
            serde_json::from_value(value)
                .map(Self::Invocation)
                .map_err(|e| D::Error::custom(format!("an asynchronous invocation record: {e}")))
        } else {
            serde_json::from_value(value)
                .map(Self::Task)
                .map_err(|e| D::Error::custom(format!("a failed task ({{job_id, error}}): {e}")))
        }
    }
}

impl Serialize for JobFailedInput {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Task(task) => task.serialize(serializer),
            Self::Invocation(record) => record.serialize(serializer),
        }
    }
}

/// The record Lambda sends to an asynchronous invocation's `OnFailure` destination after the
/// last attempt failed (or the event grew older than `MaximumEventAgeInSeconds`): the original
/// event and the last error. The fields treemux reads; a real one is in
/// `functions/tests/fixtures/analyze-invocation-failure.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsyncInvocationRecord {
    #[serde(default)]
    pub version: Option<String>,
    /// ISO 8601 UTC.
    #[serde(default)]
    pub timestamp: Option<String>,
    pub request_context: InvocationContext,
    /// The event the function was invoked with: for analyze, the S3 event.
    pub request_payload: S3Event,
    /// The last attempt's error; absent when no attempt ran (`EventAgeExceeded`).
    #[serde(default)]
    pub response_payload: Option<InvocationError>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationContext {
    #[serde(default)]
    pub request_id: String,
    #[serde(default)]
    pub function_arn: String,
    /// `RetriesExhausted` or `EventAgeExceeded`.
    #[serde(default)]
    pub condition: String,
    /// Attempts made (1 + the retries).
    #[serde(default)]
    pub approximate_invoke_count: u32,
}

/// A Lambda function error as the runtime reports it (`Diagnostic`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationError {
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
}

impl AsyncInvocationRecord {
    /// The cause to record on the job: the last error, how many attempts, and why Lambda gave
    /// up, e.g. `TreemuxTransient: s3://b/k: … (analyze gave up after 3 attempts: RetriesExhausted)`.
    pub fn describe(&self) -> String {
        let context = &self.request_context;
        let gave_up = format!(
            "analyze gave up after {} attempts: {}",
            context.approximate_invoke_count,
            if context.condition.is_empty() {
                "unknown condition"
            } else {
                &context.condition
            }
        );
        match &self.response_payload {
            Some(InvocationError {
                error_type,
                error_message,
            }) => format!(
                "{}: {} ({gave_up})",
                error_type.as_deref().unwrap_or("UnknownError"),
                error_message.as_deref().unwrap_or("")
            ),
            None => format!("analyze never finished the upload event ({gave_up})"),
        }
    }
}

/// What a Catch puts at its ResultPath. Either field may be missing or null.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaughtError {
    #[serde(rename = "Error", default)]
    pub error: Option<String>,
    #[serde(rename = "Cause", default)]
    pub cause: Option<String>,
}

impl CaughtError {
    /// `Error: message`, with the message taken out of a Lambda error's JSON cause.
    pub fn describe(&self) -> String {
        let error = self
            .error
            .clone()
            .unwrap_or_else(|| "UnknownError".to_owned());
        let cause = self.cause.clone().unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&cause)
            .ok()
            .and_then(|parsed| {
                parsed
                    .get("errorMessage")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or(cause);
        if message.is_empty() {
            error
        } else {
            format!("{error}: {message}")
        }
    }
}

/// What merge-audio reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobDone {
    pub job_id: String,
    pub output: String,
    pub bytes: u64,
}

/// What merge-audio's root task says comes next (`next` in the state machine's Choice): the job
/// is done, or the output is laid out, its part 1 uploaded, and the other parts, in groups, go
/// to upload-parts tasks before a completing merge-audio task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "next")]
pub enum RootStep {
    Done(JobDone),
    UploadParts {
        job_id: String,
        groups: Vec<PartGroup>,
    },
}
