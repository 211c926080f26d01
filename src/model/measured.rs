//! A measured run's data movement, scaled to the modelled video.

use serde::{Deserialize, Serialize};

/// local-stack data-path benchmark): bytes and requests seen outside the handlers (a counting
/// proxy in front of S3, the worker's I/O counters for scratch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataPathMeasurement {
    pub source_bytes: f64,
    pub output_bytes: f64,
    pub segments: u32,
    pub s3_get_bytes: f64,
    pub s3_get_requests: f64,
    pub s3_put_bytes: f64,
    pub s3_put_requests: f64,
    pub scratch_write_bytes: f64,
    pub scratch_read_bytes: f64,
    /// State transitions of the execution and its Map children; `null` when not counted.
    pub sfn_transitions: Option<f64>,
    /// `s3_get_bytes ÷ source_bytes`, `scratch_write_bytes ÷ output_bytes`,
    /// `s3_put_bytes ÷ output_bytes`.
    pub source_read_ratio: f64,
    pub scratch_write_ratio: f64,
    pub output_upload_ratio: f64,
    /// The segment files kept as objects between tasks (the segment bucket, seen by the same
    /// proxy): bytes and requests each way. Zero in measurements of runs that kept them on
    /// scratch.
    #[serde(default)]
    pub segment_put_bytes: f64,
    #[serde(default)]
    pub segment_put_requests: f64,
    #[serde(default)]
    pub segment_get_bytes: f64,
    #[serde(default)]
    pub segment_get_requests: f64,
}

/// A measurement reduced to what scales to another video: bytes moved as multiples of the
/// source or output size, bytes per request, transitions per segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasuredDataPath {
    /// Where it came from (a file name), printed with the projection.
    pub source: String,
    /// Segments of the measured run.
    pub segments: u32,
    /// S3 bytes read ÷ source bytes.
    pub source_read_ratio: f64,
    /// Scratch (EFS) bytes written and read ÷ output bytes.
    pub scratch_write_ratio: f64,
    pub scratch_read_ratio: f64,
    /// S3 bytes uploaded ÷ output bytes.
    pub output_upload_ratio: f64,
    /// Bytes per S3 GET and per S3 PUT request.
    pub get_bytes_per_request: f64,
    pub put_bytes_per_request: f64,
    /// `None` when the run did not count them: the definition's count is used.
    pub transitions_per_segment: Option<f64>,
    /// Segment-object bytes written and read ÷ output bytes, and requests per segment (PUTs
    /// and GETs).
    #[serde(default)]
    pub segment_write_ratio: f64,
    #[serde(default)]
    pub segment_read_ratio: f64,
    #[serde(default)]
    pub segment_puts_per_segment: f64,
    #[serde(default)]
    pub segment_gets_per_segment: f64,
}

impl DataPathMeasurement {
    /// Checks the counts and reduces them to what scales; `source` names the file in the
    /// projection.
    pub fn scaled(&self, source: &str) -> Result<MeasuredDataPath, ModelError> {
        let positive = [
            ("source_bytes", self.source_bytes),
            ("output_bytes", self.output_bytes),
            ("s3_get_bytes", self.s3_get_bytes),
            ("s3_get_requests", self.s3_get_requests),
            ("s3_put_bytes", self.s3_put_bytes),
            ("s3_put_requests", self.s3_put_requests),
        ];
        for (name, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(ModelError(format!(
                    "data path {name} must be positive, not {value}"
                )));
            }
        }
        let non_negative = [
            ("scratch_write_bytes", self.scratch_write_bytes),
            ("scratch_read_bytes", self.scratch_read_bytes),
            ("source_read_ratio", self.source_read_ratio),
            ("scratch_write_ratio", self.scratch_write_ratio),
            ("output_upload_ratio", self.output_upload_ratio),
            ("sfn_transitions", self.sfn_transitions.unwrap_or(0.0)),
            ("segment_put_bytes", self.segment_put_bytes),
            ("segment_put_requests", self.segment_put_requests),
            ("segment_get_bytes", self.segment_get_bytes),
            ("segment_get_requests", self.segment_get_requests),
        ];
        for (name, value) in non_negative {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ModelError(format!(
                    "data path {name} must be zero or more, not {value}"
                )));
            }
        }
        if self.segments == 0 {
            return Err(ModelError("data path segments must be at least 1".into()));
        }
        Ok(MeasuredDataPath {
            source: source.to_owned(),
            segments: self.segments,
            source_read_ratio: self.source_read_ratio,
            scratch_write_ratio: self.scratch_write_ratio,
            scratch_read_ratio: self.scratch_read_bytes / self.output_bytes,
            output_upload_ratio: self.output_upload_ratio,
            get_bytes_per_request: self.s3_get_bytes / self.s3_get_requests,
            put_bytes_per_request: self.s3_put_bytes / self.s3_put_requests,
            transitions_per_segment: self
                .sfn_transitions
                .map(|transitions| transitions / f64::from(self.segments)),
            segment_write_ratio: self.segment_put_bytes / self.output_bytes,
            segment_read_ratio: self.segment_get_bytes / self.output_bytes,
            segment_puts_per_segment: self.segment_put_requests / f64::from(self.segments),
            segment_gets_per_segment: self.segment_get_requests / f64::from(self.segments),
        })
    }
}

/// Why the inputs cannot be modelled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("model input {0}")]
pub struct ModelError(pub String);
