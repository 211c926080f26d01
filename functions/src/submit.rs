//! A job submitted directly (`treemux submit s3://bucket/key`): an object already in a bucket,
//! no re-upload. The request travels as analyze's event (`S3Event::submit`), invoked
//! asynchronously exactly as an upload's event is (Lambda's `Event` invocation on AWS, the upload
//! queue on the local stack), so the same retries, failure destination, validation and records
//! apply. Its job id is known to the submitter before analyze runs ([`SubmitRequest::job_id`]).

use crate::job::JobIdentity;
use crate::ports::ObjectVersion;
use serde::{Deserialize, Serialize};

/// Where a submitted job's settings come from, in errors and in the record's `settings_from`.
pub const SUBMIT_ORIGIN: &str = "treemux submit";

/// One submission.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SubmitRequest {
    pub bucket: String,
    pub key: String,
    /// The exact object version the job reads (the HEAD the submitter made).
    #[serde(default)]
    pub version_id: Option<String>,
    #[serde(default)]
    pub e_tag: Option<String>,
    /// Unique per submission: a repeated delivery of the request is the same job, a second
    /// submission another.
    pub request_id: String,
    /// The job's settings as a job spec holds them (`{"crf": 20, "template": "web"}`), over the
    /// object's metadata and job spec; checked by analyze like any other layer.
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl SubmitRequest {
    pub fn version(&self) -> ObjectVersion {
        ObjectVersion {
            version_id: self
                .version_id
                .clone()
                .filter(|v| !v.is_empty() && v != "null"),
            e_tag: self
                .e_tag
                .as_deref()
                .map(|e| e.trim_matches('"').to_owned())
                .filter(|e| !e.is_empty()),
        }
    }

    /// The upload identity of the job record: `submit:<request id>`.
    pub fn upload(&self) -> String {
        format!("submit:{}", self.request_id)
    }

    /// The job id: the object, its version, the request and its settings (not the stack's
    /// configuration: the request is unique, and the submitter computes the id itself).
    pub fn job_id(&self) -> String {
        let settings = serde_json::to_string(&self.settings).unwrap_or_default();
        JobIdentity {
            bucket: &self.bucket,
            key: &self.key,
            version: self.version().label(),
            upload: &self.upload(),
            settings: &settings,
        }
        .job_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_follows_the_request() {
        let request = SubmitRequest {
            bucket: "in".into(),
            key: "a.mp4".into(),
            e_tag: Some("\"abc\"".into()),
            request_id: "r1".into(),
            ..SubmitRequest::default()
        };
        assert_eq!(request.job_id(), request.clone().job_id());
        assert_eq!(request.job_id().len(), 24);
        let other = SubmitRequest {
            request_id: "r2".into(),
            ..request.clone()
        };
        assert_ne!(request.job_id(), other.job_id());
        let mut settings = request.clone();
        settings.settings.insert("crf".into(), 20.into());
        assert_ne!(request.job_id(), settings.job_id());
        assert_eq!(request.version().label(), "abc");
    }
}
