//! An S3 event's uploads and the job each one names: the one derivation of job ids from events,
//! shared by analyze and by job-failed.

use super::{now, now_iso, Config};
use crate::error::HandlerError;
use crate::events::{S3Event, S3EventRecord};
use crate::job::{
    decode_event_key, is_treemux_output, output_key, settings_fingerprint, upload_order,
    JobIdentity,
};
use crate::job_settings::is_job_spec;
use crate::ports::ObjectVersion;
use crate::submit::SubmitRequest;
use treemux_core::state::{JobRecord, JobStatus};
use treemux_core::summary::RunOutput;

/// One upload as an S3 event record announces it.
#[derive(Clone, Debug)]
pub struct Upload {
    pub bucket: String,
    /// Decoded (`+` is a space, `%XX` a byte).
    pub key: String,
    /// Exactly what to read.
    pub version: ObjectVersion,
    /// The event's identity ([`JobIdentity::upload`]).
    pub upload: String,
    /// Rank among uploads of this key ([`upload_order`]); empty for a submitted job, which
    /// takes the key at the order recorded ([`JobStore::take_latest`](treemux_core::state::JobStore::take_latest)).
    pub order: String,
    /// A submitted job's own settings (`treemux submit`), over the object's metadata.
    pub submitted: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Upload {
    /// Reads an event record. Precondition: an `ObjectCreated` record.
    pub fn from_record(record: &S3EventRecord) -> Result<Self, HandlerError> {
        let key = decode_event_key(&record.s3.object.key).map_err(|e| {
            HandlerError::invalid(format!("event key {:?}: {e}", record.s3.object.key))
        })?;
        let object = &record.s3.object;
        // "null" is how S3 names the version of an object written while versioning was off.
        let version_id = object
            .version_id
            .clone()
            .filter(|v| !v.is_empty() && v != "null");
        let e_tag = object
            .e_tag
            .as_deref()
            .map(|e| e.trim_matches('"').to_owned())
            .filter(|e| !e.is_empty());
        let sequencer = object.sequencer.as_deref().filter(|s| !s.is_empty());
        let event_time = record.event_time.as_deref().filter(|t| !t.is_empty());
        Ok(Self {
            bucket: record.s3.bucket.name.clone(),
            key,
            version: ObjectVersion { version_id, e_tag },
            upload: sequencer.or(event_time).unwrap_or("").to_owned(),
            order: upload_order(sequencer, event_time, &now_iso()),
            submitted: None,
        })
    }

    /// The upload a submitted job reads: the object as the submitter found it.
    pub fn from_submit(request: &SubmitRequest) -> Self {
        Self {
            bucket: request.bucket.clone(),
            key: request.key.clone(),
            version: request.version(),
            upload: request.upload(),
            order: String::new(),
            submitted: Some(request.settings.clone()),
        }
    }

    /// The id of this upload's job under `config` (a submitted job's is its request's,
    /// [`SubmitRequest::job_id`]).
    pub fn job_id(&self, config: &Config) -> String {
        let settings = settings_fingerprint(
            &config.settings,
            config.container,
            &config.templates,
            &config.plan,
            &config.output_bucket,
            &config.output_prefix,
        );
        JobIdentity {
            bucket: &self.bucket,
            key: &self.key,
            version: self.version.label(),
            upload: &self.upload,
            settings: &settings,
        }
        .job_id()
    }
}

/// The `ObjectCreated` records of an event (S3 sends only those to treemux; a hand-made event
/// may name none).
fn created_records(event: &S3Event) -> impl Iterator<Item = &S3EventRecord> {
    event
        .records
        .iter()
        .filter(|r| r.event_name.is_empty() || r.event_name.starts_with("ObjectCreated"))
}

/// What analyze makes of one `ObjectCreated` record.
#[derive(Clone, Debug)]
pub enum EventJob {
    /// A key where treemux writes its outputs: no job.
    Refused(Upload),
    /// A job spec (`<key>.treemux.json`), read by the job of the video beside it: no job.
    Spec(Upload),
    /// An upload and the id of its job under the configuration.
    Job { upload: Upload, id: String },
}

/// The jobs an S3 event names, one per `ObjectCreated` record, in order, then its submitted job: the one derivation of
/// job ids from events, used by analyze and by job-failed for the events analyze gave up on.
/// A job spec's upload is not a job. A record whose key cannot be decoded is an error (`TreemuxInvalidInput`).
pub fn event_jobs<'a>(
    config: &'a Config,
    event: &'a S3Event,
) -> impl Iterator<Item = Result<EventJob, HandlerError>> + 'a {
    let uploads = created_records(event)
        .map(|record| Upload::from_record(record).map(|upload| (upload, None)))
        .chain(
            event
                .submit
                .iter()
                .map(|request| Ok((Upload::from_submit(request), Some(request.job_id())))),
        );
    uploads.map(move |upload| {
        let (upload, submitted_id) = upload?;
        Ok(
            if is_treemux_output(
                &config.output_bucket,
                &config.output_prefix,
                &upload.bucket,
                &upload.key,
            ) {
                EventJob::Refused(upload)
            } else if is_job_spec(&upload.key) {
                EventJob::Spec(upload)
            } else {
                let id = submitted_id.unwrap_or_else(|| upload.job_id(config));
                EventJob::Job { upload, id }
            },
        )
    })
}

/// The record analyze creates for `upload`'s job `id`: CREATED, nothing done yet.
pub(super) fn new_job_record(config: &Config, upload: &Upload, id: &str) -> JobRecord {
    let output = output_key(
        &config.output_prefix,
        &upload.key,
        config.container.extension(),
    );
    JobRecord {
        job_id: id.to_owned(),
        status: JobStatus::Created,
        source: format!("s3://{}/{}", upload.bucket, upload.key),
        source_version: upload.version.label().to_owned(),
        upload: upload.upload.clone(),
        output: format!("s3://{}/{output}", config.output_bucket),
        segments: 0,
        merges: 0,
        segments_done: Default::default(),
        merges_done: Default::default(),
        progress: Default::default(),
        merge_runs: 0,
        stage_seconds: Default::default(),
        error: None,
        superseded_by: None,
        result: RunOutput::default(),
        settings: None,
        settings_from: Default::default(),
        created_at: now(),
        updated_at: now(),
    }
}
