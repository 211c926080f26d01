//! **Pure.** A model — not a measurement — of a serverless treemux run, beside EC2 instances
//! running the single-ffmpeg baseline, from measured encode cost and data sizes.
//!
//! The data path modelled is the one where every byte moves once: analyze reads only the
//! source's index (ranged GETs) and shares it on EFS; each split-and-convert reads its own byte
//! range of the source from S3 and writes its segment once to EFS; split-audio reads the audio
//! once; merges combine only small indexes, never video bytes; the root (merge-audio) reads the
//! segments and the audio from EFS once and streams them into one S3 multipart upload. The bytes
//! and requests per job are the design's own counts, or a measured run's scaled to the video
//! ([`DataPathMeasurement`]).
//!
//! Every input is printed with the projection; defaults are documented list prices and
//! throughputs (docs/performance.md gives the sources and the formulas). The model's job is to
//! make the trade-off inspectable, not to promise a number.

use serde::{Deserialize, Serialize};

/// What the model is given. Units are in the names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInputs {
    /// Length of the video.
    pub video_seconds: f64,
    /// Single-thread encode CPU seconds per second of video (measured: `treemux bench`).
    pub encode_cpu_seconds_per_video_second: f64,
    /// Source and output bytes per second of video (the output includes its audio).
    pub source_bytes_per_video_second: f64,
    pub output_bytes_per_video_second: f64,
    /// Bytes of the source's index per second of video (an MP4's sample tables, `moov`): what
    /// analyze reads and shares on EFS, what every segment worker opens, and the size of the
    /// index the merges combine.
    #[serde(default = "default_index_bytes_per_video_second")]
    pub index_bytes_per_video_second: f64,
    /// Audio bytes per second of video, all tracks (read once from the source by split-audio).
    #[serde(default = "default_audio_bytes_per_video_second")]
    pub audio_bytes_per_video_second: f64,
    /// Segments (real ones; the tree pads them to 2^n leaves). [`planned_segments`] gives the
    /// deployed planner's choice for a length.
    pub segments: u32,
    /// The deployed plan's limits: segments at least this long, at most this many
    /// (`TREEMUX_MIN_SEGMENT_SECONDS`, `MaxSegments`).
    #[serde(default = "default_min_segment_seconds")]
    pub min_segment_seconds: f64,
    #[serde(default = "default_max_segments")]
    pub max_segments: u32,
    /// What the stack costs per month with no job running (dollars): the Step Functions VPC
    /// interface endpoint in two zones, 2 × $0.01 per hour × 730 hours.
    #[serde(default = "default_fixed_monthly_dollars")]
    pub fixed_monthly_dollars: f64,
    /// Lambda functions running at once (account quota and the Map's MaxConcurrency).
    pub concurrency: u32,
    /// vCPUs of a split-and-convert function and how well its encoder threads use them (0–1].
    pub function_vcpus: f64,
    pub function_thread_efficiency: f64,
    /// Memory of split-and-convert and of the other functions, for the GB-second price.
    pub convert_memory_mb: f64,
    pub task_memory_mb: f64,
    /// Start-up of a function that is not warm (init of a Rust provided.al2023 bootstrap).
    pub cold_start_seconds: f64,
    /// Step Functions latency per state transition, and distributed-Map child starts per second.
    pub transition_seconds: f64,
    pub map_child_starts_per_second: f64,
    /// Throughput of one S3 stream (connection), and of one function's EFS reads and writes.
    pub s3_bytes_per_second: f64,
    pub efs_client_bytes_per_second: f64,
    /// Time to the first byte of a ranged S3 GET; later ranges are read ahead while the function
    /// works, so each reader pays it once.
    #[serde(default = "default_s3_first_byte_seconds")]
    pub s3_first_byte_seconds: f64,
    /// Parts of the output's multipart upload the root sends at once.
    #[serde(default = "default_upload_streams")]
    pub upload_streams: u32,
    /// The alternative upload (issue 13's sketch): the lowest tree nodes holding at least one
    /// part (`s3_put_bytes_per_request`) each upload their leaves as one part, in parallel; the
    /// root then only writes the header and completes the upload. `false`: the root streams the
    /// whole output.
    #[serde(default)]
    pub upload_by_subtrees: bool,
    /// Bytes per ranged S3 GET (the read-ahead size) and per uploaded part.
    #[serde(default = "default_get_bytes_per_request")]
    pub s3_get_bytes_per_request: f64,
    #[serde(default = "default_put_bytes_per_request")]
    pub s3_put_bytes_per_request: f64,
    /// A measured run's data movement, scaled to this video; `None`: the design's own counts
    /// (see [`project`]).
    #[serde(default)]
    pub measured_data_path: Option<MeasuredDataPath>,
    /// Prices (US dollars).
    pub lambda_per_gb_second: f64,
    pub lambda_per_request: f64,
    pub transition_price: f64,
    pub efs_read_per_gb: f64,
    pub efs_write_per_gb: f64,
    /// S3 Standard GET and PUT (upload part, create, complete) requests, dollars each.
    #[serde(default = "default_s3_get_price")]
    pub s3_get_price: f64,
    #[serde(default = "default_s3_put_price")]
    pub s3_put_price: f64,
    /// EC2 instances for the baseline: name, vCPUs, dollars per hour.
    pub ec2: Vec<Ec2Instance>,
    /// The baseline's measured parallel efficiency (single-thread CPU ÷ (cores × wall)) and the
    /// encoder threads beyond which one ffmpeg stops getting faster.
    pub baseline_efficiency: f64,
    pub baseline_max_useful_threads: f64,
}

fn default_index_bytes_per_video_second() -> f64 {
    600.0
}

fn default_audio_bytes_per_video_second() -> f64 {
    16_000.0
}

fn default_min_segment_seconds() -> f64 {
    4.0
}

fn default_max_segments() -> u32 {
    1024
}

fn default_fixed_monthly_dollars() -> f64 {
    14.6
}

fn default_s3_first_byte_seconds() -> f64 {
    0.1
}

fn default_upload_streams() -> u32 {
    8
}

fn default_get_bytes_per_request() -> f64 {
    8.0 * MIB
}

fn default_put_bytes_per_request() -> f64 {
    16.0 * MIB
}

fn default_s3_get_price() -> f64 {
    0.000_000_4
}

fn default_s3_put_price() -> f64 {
    0.000_005
}

const MIB: f64 = 1024.0 * 1024.0;

/// Lambda's limit on one invocation, in seconds: a stage longer than this cannot run.
pub const LAMBDA_TIMEOUT_SECONDS: f64 = 900.0;

/// S3 multipart limits: at most 10,000 parts of at most 5 GiB each.
pub const MAX_UPLOAD_PARTS: f64 = 10_000.0;
pub const MAX_PART_BYTES: f64 = 5.0 * 1024.0 * MIB;

/// Hours in the month the fixed cost and the always-on instance are priced over.
const HOURS_PER_MONTH: f64 = 730.0;

/// The segments the deployed planner makes of `video_seconds`: as many as fit at
/// `min_segment_seconds` each, at least 1 and at most `max_segments`.
pub fn planned_segments(video_seconds: f64, min_segment_seconds: f64, max_segments: u32) -> u32 {
    let fit = (video_seconds / min_segment_seconds.max(1e-3)).floor();
    (fit.clamp(1.0, f64::from(max_segments.max(1)))) as u32
}

/// One EC2 instance size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ec2Instance {
    pub name: String,
    pub vcpus: f64,
    pub dollars_per_hour: f64,
}

impl Default for ModelInputs {
    /// One hour of 1080p x264 `medium` (2.0 CPU-s per video second, measured on sample 12 here),
    /// segments as the deployed plan makes them (900 of 4 s), 1000 functions at once, us-east-1
    /// x86_64 list prices, the design's own data movement.
    fn default() -> Self {
        let instance = |name: &str, vcpus: f64, dollars_per_hour: f64| Ec2Instance {
            name: name.to_owned(),
            vcpus,
            dollars_per_hour,
        };
        Self {
            video_seconds: 3600.0,
            encode_cpu_seconds_per_video_second: 2.0,
            source_bytes_per_video_second: 1_250_000.0,
            output_bytes_per_video_second: 625_000.0,
            index_bytes_per_video_second: default_index_bytes_per_video_second(),
            audio_bytes_per_video_second: default_audio_bytes_per_video_second(),
            segments: planned_segments(3600.0, 4.0, 1024),
            min_segment_seconds: default_min_segment_seconds(),
            max_segments: default_max_segments(),
            fixed_monthly_dollars: default_fixed_monthly_dollars(),
            concurrency: 1000,
            function_vcpus: 2.0,
            function_thread_efficiency: 0.9,
            convert_memory_mb: 3538.0,
            task_memory_mb: 1769.0,
            cold_start_seconds: 0.5,
            transition_seconds: 0.05,
            map_child_starts_per_second: 100.0,
            s3_bytes_per_second: 90e6,
            efs_client_bytes_per_second: 100e6,
            s3_first_byte_seconds: default_s3_first_byte_seconds(),
            upload_streams: default_upload_streams(),
            upload_by_subtrees: false,
            s3_get_bytes_per_request: default_get_bytes_per_request(),
            s3_put_bytes_per_request: default_put_bytes_per_request(),
            measured_data_path: None,
            lambda_per_gb_second: 0.000_016_666_7,
            lambda_per_request: 0.000_000_2,
            transition_price: 0.000_025,
            efs_read_per_gb: 0.03,
            efs_write_per_gb: 0.06,
            s3_get_price: default_s3_get_price(),
            s3_put_price: default_s3_put_price(),
            ec2: vec![
                instance("c7i.large", 2.0, 0.089_25),
                instance("c7i.4xlarge", 16.0, 0.714),
                instance("c7i.16xlarge", 64.0, 2.856),
            ],
            baseline_efficiency: 0.9,
            baseline_max_useful_threads: 32.0,
        }
    }
}

/// A measured run's per-job counts, as `target/bench/data-path.json` holds them (written by the
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
        })
    }
}

/// Why the inputs cannot be modelled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("model input {0}")]
pub struct ModelError(pub String);

/// The serverless run, stage by stage (seconds), in dollars, and what it moves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LambdaProjection {
    /// Reads the source's index (ranged GETs) and writes it once to EFS.
    pub analyze_seconds: f64,
    /// Reads the audio's byte ranges once and writes them to EFS; runs beside the Map.
    pub split_audio_seconds: f64,
    pub map_start_seconds: f64,
    /// One segment's function: cold start, its byte range of the source from S3, the shared
    /// index from EFS, encode, the segment written once to EFS.
    pub segment_seconds: f64,
    /// Segments one after another on the busiest function slot.
    pub waves: u32,
    pub encode_seconds: f64,
    /// After the last segment: the merges up the tree on the critical path; each combines only
    /// its children's indexes.
    pub merge_tail_seconds: f64,
    pub tree_levels: u32,
    /// The root (merge-audio): reads the segments and the audio from EFS once and streams them
    /// into the output's multipart upload, writes the header, completes the upload.
    pub merge_audio_seconds: f64,
    pub wall_seconds: f64,
    pub lambda_dollars: f64,
    pub step_functions_dollars: f64,
    pub efs_dollars: f64,
    pub s3_request_dollars: f64,
    pub dollars: f64,
    pub state_transitions: f64,
    pub s3_get_bytes: f64,
    pub s3_get_requests: f64,
    pub s3_put_bytes: f64,
    pub s3_put_requests: f64,
    /// Parts of the output's multipart upload.
    pub output_parts: f64,
    pub efs_bytes_written: f64,
    pub efs_bytes_read: f64,
    /// `design` or the measurement the counts were scaled from.
    pub counts_from: String,
}

impl LambdaProjection {
    /// The wall time as consecutive stages on the critical path, summing to `wall_seconds`:
    /// analyze, Map start, encode, merge tail, the part of split-audio that outlasts the Map
    /// (usually none), merge-audio.
    pub fn critical_path(&self) -> [(&'static str, f64); 6] {
        let map = self.map_start_seconds + self.encode_seconds + self.merge_tail_seconds;
        [
            ("analyze", self.analyze_seconds),
            ("Map start", self.map_start_seconds),
            ("encode", self.encode_seconds),
            ("merge tail", self.merge_tail_seconds),
            (
                "split-audio beyond the Map",
                (self.split_audio_seconds - map).max(0.0),
            ),
            ("merge-audio (root)", self.merge_audio_seconds),
        ]
    }
}

/// The baseline on one EC2 instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ec2Projection {
    pub name: String,
    pub vcpus: f64,
    pub wall_seconds: f64,
    pub dollars: f64,
    /// The instance left running all month (dollars).
    pub always_on_monthly_dollars: f64,
}

/// Inputs and both projections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub note: String,
    pub inputs: ModelInputs,
    pub lambda: LambdaProjection,
    pub ec2: Vec<Ec2Projection>,
    /// Stages that would exceed Lambda's 900 s limit, and uploads beyond S3's multipart limits,
    /// one sentence each.
    pub warnings: Vec<String>,
    /// Serverless against the fastest EC2 instance, e.g. `Lambda: 1.2× faster than c7i.16xlarge
    /// at 12.8× the cost per job`.
    pub verdict: String,
    /// Jobs per month below which the stack (fixed cost + per-job cost) is cheaper than keeping
    /// the fastest instance running all month; `None` when a job costs more on Lambda than a
    /// month of the instance.
    pub break_even_jobs_per_month: Option<f64>,
}

fn check(inputs: &ModelInputs) -> Result<(), ModelError> {
    let positive = [
        ("video_seconds", inputs.video_seconds),
        (
            "encode_cpu_seconds_per_video_second",
            inputs.encode_cpu_seconds_per_video_second,
        ),
        ("function_vcpus", inputs.function_vcpus),
        (
            "function_thread_efficiency",
            inputs.function_thread_efficiency,
        ),
        (
            "map_child_starts_per_second",
            inputs.map_child_starts_per_second,
        ),
        ("s3_bytes_per_second", inputs.s3_bytes_per_second),
        (
            "efs_client_bytes_per_second",
            inputs.efs_client_bytes_per_second,
        ),
        ("s3_get_bytes_per_request", inputs.s3_get_bytes_per_request),
        ("s3_put_bytes_per_request", inputs.s3_put_bytes_per_request),
        ("convert_memory_mb", inputs.convert_memory_mb),
        ("task_memory_mb", inputs.task_memory_mb),
        ("baseline_efficiency", inputs.baseline_efficiency),
        (
            "baseline_max_useful_threads",
            inputs.baseline_max_useful_threads,
        ),
    ];
    for (name, value) in positive {
        if !(value.is_finite() && value > 0.0) {
            return Err(ModelError(format!("{name} must be positive, not {value}")));
        }
    }
    let non_negative = [
        (
            "source_bytes_per_video_second",
            inputs.source_bytes_per_video_second,
        ),
        (
            "output_bytes_per_video_second",
            inputs.output_bytes_per_video_second,
        ),
        (
            "index_bytes_per_video_second",
            inputs.index_bytes_per_video_second,
        ),
        (
            "audio_bytes_per_video_second",
            inputs.audio_bytes_per_video_second,
        ),
        ("cold_start_seconds", inputs.cold_start_seconds),
        ("transition_seconds", inputs.transition_seconds),
        ("s3_first_byte_seconds", inputs.s3_first_byte_seconds),
        ("lambda_per_gb_second", inputs.lambda_per_gb_second),
        ("lambda_per_request", inputs.lambda_per_request),
        ("transition_price", inputs.transition_price),
        ("efs_read_per_gb", inputs.efs_read_per_gb),
        ("efs_write_per_gb", inputs.efs_write_per_gb),
        ("s3_get_price", inputs.s3_get_price),
        ("s3_put_price", inputs.s3_put_price),
    ];
    for (name, value) in non_negative {
        if !(value.is_finite() && value >= 0.0) {
            return Err(ModelError(format!(
                "{name} must be zero or more, not {value}"
            )));
        }
    }
    if inputs.segments == 0 || inputs.concurrency == 0 || inputs.upload_streams == 0 {
        return Err(ModelError(
            "segments, concurrency and upload_streams must be at least 1".into(),
        ));
    }
    if inputs.function_thread_efficiency > 1.0 || inputs.baseline_efficiency > 1.0 {
        return Err(ModelError("efficiencies are at most 1".into()));
    }
    if let Some(measured) = &inputs.measured_data_path {
        let values = [
            ("source_read_ratio", measured.source_read_ratio),
            ("scratch_write_ratio", measured.scratch_write_ratio),
            ("scratch_read_ratio", measured.scratch_read_ratio),
            ("output_upload_ratio", measured.output_upload_ratio),
            ("get_bytes_per_request", measured.get_bytes_per_request),
            ("put_bytes_per_request", measured.put_bytes_per_request),
            (
                "transitions_per_segment",
                measured.transitions_per_segment.unwrap_or(1.0),
            ),
        ];
        for (name, value) in values {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ModelError(format!(
                    "measured_data_path.{name} must be zero or more, not {value}"
                )));
            }
        }
        if measured.get_bytes_per_request <= 0.0 || measured.put_bytes_per_request <= 0.0 {
            return Err(ModelError(
                "measured_data_path bytes per request must be positive".into(),
            ));
        }
    }
    Ok(())
}

/// Bytes a job moves and the requests it makes.
struct DataMovement {
    s3_get_bytes: f64,
    s3_get_requests: f64,
    s3_put_bytes: f64,
    s3_put_requests: f64,
    efs_written: f64,
    efs_read: f64,
    /// What the root reads from EFS and uploads.
    root_read: f64,
    root_upload: f64,
    /// What one segment reads from S3 and writes to EFS.
    segment_get: f64,
    segment_write: f64,
    transitions: f64,
    put_bytes_per_request: f64,
}

/// The design's own counts, or a measurement's ratios scaled to this video.
fn data_movement(inputs: &ModelInputs, tree_levels: u32) -> DataMovement {
    let n = f64::from(inputs.segments);
    let levels = f64::from(tree_levels);
    let v = inputs.video_seconds;
    let (source, output) = (
        inputs.source_bytes_per_video_second * v,
        inputs.output_bytes_per_video_second * v,
    );
    let (index, audio) = (
        inputs.index_bytes_per_video_second * v,
        inputs.audio_bytes_per_video_second * v,
    );
    // The definition's transitions: three per Map child (convert, choice, end), two per merge,
    // ten for the job around them.
    let definition_transitions = 3.0 * n + 2.0 * (n - 1.0) + 10.0;
    match &inputs.measured_data_path {
        None => {
            // Analyze reads the index, the segment workers their byte ranges (the whole source
            // once between them), split-audio the audio's ranges.
            let s3_get_bytes = index + source + audio;
            let per_request = inputs.s3_get_bytes_per_request;
            let s3_get_requests = (index / per_request).ceil()
                + n * (source / n / per_request).ceil()
                + (audio / per_request).ceil();
            let s3_put_bytes = output;
            let parts = (output / inputs.s3_put_bytes_per_request).ceil().max(1.0);
            DataMovement {
                s3_get_bytes,
                s3_get_requests,
                s3_put_bytes,
                // The parts, plus creating and completing the upload.
                s3_put_requests: parts + 2.0,
                // Segments and audio once (together the output), the shared index, and each
                // tree level's combined indexes (the whole index once per level).
                efs_written: output + index * (1.0 + levels),
                // The root reads the output's bytes once; every worker opens the shared index;
                // each level's merges read their children's indexes.
                efs_read: output + index * (n + levels + 1.0),
                root_read: output + index,
                root_upload: output,
                segment_get: source / n,
                segment_write: (output - audio).max(0.0) / n,
                transitions: definition_transitions,
                put_bytes_per_request: inputs.s3_put_bytes_per_request,
            }
        }
        Some(measured) => {
            let s3_get_bytes = measured.source_read_ratio * source;
            let s3_put_bytes = measured.output_upload_ratio * output;
            let efs_written = measured.scratch_write_ratio * output;
            let efs_read = measured.scratch_read_ratio * output;
            DataMovement {
                s3_get_bytes,
                s3_get_requests: (s3_get_bytes / measured.get_bytes_per_request)
                    .ceil()
                    .max(n),
                s3_put_bytes,
                s3_put_requests: (s3_put_bytes / measured.put_bytes_per_request)
                    .ceil()
                    .max(1.0),
                efs_written,
                efs_read,
                // Conservative: every byte read from scratch is read by the root, every byte
                // written is written by the segments.
                root_read: efs_read,
                root_upload: s3_put_bytes,
                segment_get: s3_get_bytes / n,
                segment_write: efs_written / n,
                transitions: measured
                    .transitions_per_segment
                    .map_or(definition_transitions, |per_segment| per_segment * n),
                put_bytes_per_request: measured.put_bytes_per_request,
            }
        }
    }
}

/// Projects a serverless run and the EC2 baselines. See docs/performance.md for the formulas.
pub fn project(inputs: &ModelInputs) -> Result<Projection, ModelError> {
    check(inputs)?;
    let n = f64::from(inputs.segments);
    let source_bytes = inputs.source_bytes_per_video_second * inputs.video_seconds;
    let output_bytes = inputs.output_bytes_per_video_second * inputs.video_seconds;
    let index_bytes = inputs.index_bytes_per_video_second * inputs.video_seconds;
    let audio_bytes = inputs.audio_bytes_per_video_second * inputs.video_seconds;
    let (s3, efs) = (
        inputs.s3_bytes_per_second,
        inputs.efs_client_bytes_per_second,
    );
    let (cold, first_byte, transition) = (
        inputs.cold_start_seconds,
        inputs.s3_first_byte_seconds,
        inputs.transition_seconds,
    );
    let tree_levels = inputs.segments.next_power_of_two().trailing_zeros();
    let moved = data_movement(inputs, tree_levels);

    // Function durations (billed), then the transitions around them (not billed).
    let analyze_billed = cold + first_byte + index_bytes / s3 + index_bytes / efs;
    let split_audio_billed = cold + first_byte + audio_bytes / s3 + audio_bytes / efs;
    let encode_cpu = inputs.encode_cpu_seconds_per_video_second * inputs.video_seconds / n;
    let segment_billed = cold
        + first_byte
        + moved.segment_get / s3
        + index_bytes / efs
        + encode_cpu / (inputs.function_vcpus * inputs.function_thread_efficiency)
        + moved.segment_write / efs;
    // A merge at level l reads its children's indexes (together the index of 2^l segments) and
    // writes their combination.
    let merge_billed = |level: u32| {
        let combined = (index_bytes * f64::from(1u32 << level) / n).min(index_bytes);
        cold + 2.0 * combined / efs
    };
    // Where the output's bytes go up: from the root, or from the nodes at `part_level`, each
    // reading its leaves from EFS and uploading them as one part.
    let part_level = inputs.upload_by_subtrees.then(|| {
        let leaves_per_part =
            (moved.put_bytes_per_request * n / moved.root_upload.max(1.0)).max(1.0);
        (leaves_per_part.log2().ceil() as u32).min(tree_levels)
    });
    let part_upload_billed = |level: u32| {
        let share = f64::from(1u32 << level) / n;
        cold + (moved.root_read * share).min(moved.root_read) / efs.min(s3) + first_byte
    };
    // Reading scratch and uploading parts are pipelined: the slower of the two sets the pace.
    let root_stream = if part_level.is_some() {
        0.0
    } else {
        (moved.root_read / efs).max(moved.root_upload / (f64::from(inputs.upload_streams) * s3))
    };
    let root_billed = cold + root_stream + index_bytes / s3 + first_byte;

    let analyze_seconds = analyze_billed + 2.0 * transition;
    let split_audio_seconds = split_audio_billed + 2.0 * transition;
    let map_start_seconds =
        f64::from(inputs.concurrency.min(inputs.segments)) / inputs.map_child_starts_per_second;
    let segment_seconds = segment_billed + 2.0 * transition;
    let waves = inputs.segments.div_ceil(inputs.concurrency);
    let encode_seconds = f64::from(waves) * segment_seconds;
    // Merges run as soon as both halves exist, so only the path above the last segment to finish
    // is left: one merge per level.
    let merge_tail_seconds = (1..=tree_levels)
        .map(|level| merge_billed(level) + 2.0 * transition)
        .sum::<f64>()
        + part_level.map_or(0.0, |level| part_upload_billed(level) - cold);
    let merge_audio_seconds = root_billed + 2.0 * transition;
    let wall_seconds = analyze_seconds
        + split_audio_seconds.max(map_start_seconds + encode_seconds + merge_tail_seconds)
        + merge_audio_seconds;

    // Cost. About n − 1 merges, 2^(L − l) of them at level l, each moving a little index.
    let gb = |mb: f64| mb / 1024.0;
    let merges_billed = (1..=tree_levels)
        .map(|level| {
            let at_level = (n / f64::from(1u32 << level)).ceil();
            at_level * merge_billed(level)
        })
        .sum::<f64>()
        + part_level.map_or(0.0, |level| {
            (n / f64::from(1u32 << level)).ceil() * (part_upload_billed(level) - cold)
        });
    let lambda_dollars = inputs.lambda_per_gb_second
        * (n * segment_billed * gb(inputs.convert_memory_mb)
            + (analyze_billed + split_audio_billed + merges_billed + root_billed)
                * gb(inputs.task_memory_mb))
        + inputs.lambda_per_request * (2.0 * n + 4.0);
    let step_functions_dollars = moved.transitions * inputs.transition_price;
    let efs_dollars = moved.efs_written / 1e9 * inputs.efs_write_per_gb
        + moved.efs_read / 1e9 * inputs.efs_read_per_gb;
    let s3_request_dollars =
        moved.s3_get_requests * inputs.s3_get_price + moved.s3_put_requests * inputs.s3_put_price;
    let output_parts = part_level.map_or_else(
        || {
            (moved.root_upload / moved.put_bytes_per_request)
                .ceil()
                .max(1.0)
        },
        |level| (n / f64::from(1u32 << level)).ceil(),
    );

    let ec2 = inputs
        .ec2
        .iter()
        .map(|instance| {
            let useful = instance.vcpus.min(inputs.baseline_max_useful_threads);
            let wall_seconds = source_bytes / s3
                + inputs.encode_cpu_seconds_per_video_second * inputs.video_seconds
                    / (useful * inputs.baseline_efficiency)
                + output_bytes / s3;
            Ec2Projection {
                name: instance.name.clone(),
                vcpus: instance.vcpus,
                wall_seconds,
                // Per-second billing with a one-minute minimum.
                dollars: instance.dollars_per_hour * wall_seconds.max(60.0) / 3600.0,
                always_on_monthly_dollars: instance.dollars_per_hour * HOURS_PER_MONTH,
            }
        })
        .collect::<Vec<Ec2Projection>>();

    let dollars = lambda_dollars + step_functions_dollars + efs_dollars + s3_request_dollars;
    let mut warnings: Vec<String> = [
        ("analyze", analyze_billed),
        ("split-audio", split_audio_billed),
        ("one split-and-convert", segment_billed),
        ("merge-audio (the root's upload)", root_billed),
    ]
    .into_iter()
    .filter(|(_, seconds)| *seconds > LAMBDA_TIMEOUT_SECONDS)
    .map(|(stage, seconds)| {
        format!(
            "{stage} would take {seconds:.0} s, beyond Lambda's {LAMBDA_TIMEOUT_SECONDS:.0} s limit: the job would fail"
        )
    })
    .collect();
    if output_parts > MAX_UPLOAD_PARTS {
        warnings.push(format!(
            "the output's upload would need {output_parts:.0} parts of {:.0} MiB, beyond S3's {MAX_UPLOAD_PARTS:.0}: larger parts are needed",
            moved.put_bytes_per_request / MIB
        ));
    }
    if moved.put_bytes_per_request > MAX_PART_BYTES {
        warnings.push(format!(
            "parts of {:.1} GiB are beyond S3's 5 GiB per part",
            moved.put_bytes_per_request / (1024.0 * MIB)
        ));
    }
    let fastest = ec2
        .iter()
        .min_by(|a, b| a.wall_seconds.total_cmp(&b.wall_seconds));
    let verdict = fastest.map_or_else(
        || "Lambda: no EC2 instance to compare with".to_owned(),
        |instance| {
            let speed = instance.wall_seconds / wall_seconds;
            let cost = dollars / instance.dollars;
            let speed_words = if speed >= 1.0 {
                format!("{speed:.1}× faster than")
            } else {
                format!("{:.1}× slower than", 1.0 / speed)
            };
            let cost_words = if cost >= 1.0 {
                format!("{cost:.1}× the cost per job")
            } else {
                format!("{:.0}% of the cost per job", cost * 100.0)
            };
            format!("Lambda: {speed_words} {} at {cost_words}", instance.name)
        },
    );
    let break_even_jobs_per_month = fastest
        .map(|instance| {
            (instance.always_on_monthly_dollars - inputs.fixed_monthly_dollars) / dollars
        })
        .filter(|jobs| *jobs >= 1.0);

    Ok(Projection {
        note: "MODEL, not a measurement: projected from the inputs shown".to_owned(),
        warnings,
        verdict,
        break_even_jobs_per_month,
        inputs: inputs.clone(),
        lambda: LambdaProjection {
            analyze_seconds,
            split_audio_seconds,
            map_start_seconds,
            segment_seconds,
            waves,
            encode_seconds,
            merge_tail_seconds,
            tree_levels,
            merge_audio_seconds,
            wall_seconds,
            lambda_dollars,
            step_functions_dollars,
            efs_dollars,
            s3_request_dollars,
            dollars,
            state_transitions: moved.transitions,
            s3_get_bytes: moved.s3_get_bytes,
            s3_get_requests: moved.s3_get_requests,
            s3_put_bytes: moved.s3_put_bytes,
            s3_put_requests: moved.s3_put_requests,
            output_parts,
            efs_bytes_written: moved.efs_written,
            efs_bytes_read: moved.efs_read,
            counts_from: inputs
                .measured_data_path
                .as_ref()
                .map_or_else(|| "design".to_owned(), |m| m.source.clone()),
        },
        ec2,
    })
}

/// Video lengths from one minute to ten hours, evenly spaced on a log axis (`points` ≥ 2 of
/// them, both ends included), for [`sweep`].
pub fn chart_lengths(points: usize) -> Vec<f64> {
    let points = points.max(2);
    let (low, high) = (60f64.ln(), 36_000f64.ln());
    (0..points)
        .map(|i| match i {
            // Exact ends: exp(ln 60) is a hair under 60, which the planner would floor.
            0 => 60.0,
            i if i == points - 1 => 36_000.0,
            i => (low + (high - low) * i as f64 / (points - 1) as f64).exp(),
        })
        .collect()
}

/// The projection at each of `lengths` (seconds of video), everything else as in `inputs`,
/// with the segments the deployed plan makes of each length.
pub fn sweep(inputs: &ModelInputs, lengths: &[f64]) -> Result<Vec<Projection>, ModelError> {
    lengths
        .iter()
        .map(|&video_seconds| {
            project(&ModelInputs {
                video_seconds,
                segments: planned_segments(
                    video_seconds,
                    inputs.min_segment_seconds,
                    inputs.max_segments,
                ),
                ..inputs.clone()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The fixture of a measured run (`target/bench/data-path.json`'s fields): 64 s of 720p in
    /// 32 segments on the local stack.
    fn measured() -> MeasuredDataPath {
        let measurement: DataPathMeasurement =
            serde_json::from_str(include_str!("../tests/fixtures/data-path.json"))
                .expect("the fixture parses");
        measurement.scaled("data-path.json").expect("valid")
    }

    #[test]
    fn the_default_hour_of_1080p() {
        let inputs = ModelInputs::default();
        let projection = project(&inputs).expect("valid defaults");
        let lambda = &projection.lambda;
        assert_eq!(
            projection.inputs.segments, 900,
            "one hour in segments of 4 s"
        );
        assert_eq!(lambda.tree_levels, 10);
        assert_eq!(lambda.waves, 1, "900 segments on 1000 functions");
        // 7200 CPU-s / 900 segments / (2 × 0.9) ≈ 4.4 s of encoding per segment.
        assert!((lambda.segment_seconds - 4.4).abs() < 1.0, "{lambda:?}");
        assert!(projection.warnings.is_empty(), "{:?}", projection.warnings);
        assert!(
            projection.verdict.starts_with("Lambda: ")
                && projection.verdict.contains("c7i.16xlarge"),
            "{}",
            projection.verdict
        );
        let jobs = projection
            .break_even_jobs_per_month
            .expect("an always-on instance costs more");
        assert!(jobs > 1.0);
        let small = &projection.ec2[0];
        assert!(
            (small.wall_seconds - 7200.0 / (2.0 * 0.9)).abs() < 200.0,
            "{small:?}"
        );
        assert!(projection.note.contains("MODEL"));
        assert_eq!(lambda.counts_from, "design");

        // Every byte moves once: the source read once (plus its index and the audio's ranges),
        // the output written to EFS once (plus the small indexes) and uploaded once.
        let source = inputs.source_bytes_per_video_second * inputs.video_seconds;
        let output = inputs.output_bytes_per_video_second * inputs.video_seconds;
        let index = inputs.index_bytes_per_video_second * inputs.video_seconds;
        let audio = inputs.audio_bytes_per_video_second * inputs.video_seconds;
        assert!((lambda.s3_get_bytes - (source + index + audio)).abs() < 1.0);
        assert!((lambda.efs_bytes_written - (output + 11.0 * index)).abs() < 1.0);
        assert!((lambda.s3_put_bytes - output).abs() < 1.0);
        assert!(lambda.s3_get_bytes < 1.02 * source && lambda.efs_bytes_written < 1.02 * output);
        // Merges move indexes, not video: the tail is cold starts and transitions.
        assert!(
            lambda.merge_tail_seconds < 10.0 * (0.5 + 0.1) + 1.0,
            "{lambda:?}"
        );
        // The root streams the 2.25 GB output at EFS speed: the longest stage.
        assert!((lambda.merge_audio_seconds - (0.6 + 2.25e9 / 100e6 + 0.1)).abs() < 0.2);
        assert!(
            lambda.wall_seconds < 60.0 && lambda.dollars < 1.0,
            "{lambda:?}"
        );
        assert_eq!(lambda.output_parts, (2.25e9 / (16.0 * MIB)).ceil());
    }

    #[test]
    fn the_stages_add_up_to_the_wall_time() {
        let projection = project(&ModelInputs::default()).expect("valid");
        let sum: f64 = projection
            .lambda
            .critical_path()
            .iter()
            .map(|(_, s)| s)
            .sum();
        assert!((sum - projection.lambda.wall_seconds).abs() < 1e-9);
        let lambda = &projection.lambda;
        let services = lambda.lambda_dollars
            + lambda.step_functions_dollars
            + lambda.efs_dollars
            + lambda.s3_request_dollars;
        assert!((services - lambda.dollars).abs() < 1e-12);
    }

    #[test]
    fn measured_counts_scale_to_the_modelled_video() {
        let inputs = ModelInputs {
            measured_data_path: Some(measured()),
            ..ModelInputs::default()
        };
        let projection = project(&inputs).expect("valid");
        let lambda = &projection.lambda;
        let source = inputs.source_bytes_per_video_second * inputs.video_seconds;
        let output = inputs.output_bytes_per_video_second * inputs.video_seconds;
        assert_eq!(lambda.counts_from, "data-path.json");
        assert!((lambda.s3_get_bytes - 1.07 * source).abs() < 1.0);
        assert!((lambda.s3_put_bytes - 1.01 * output).abs() < 1.0);
        assert!((lambda.efs_bytes_written - 1.12 * output).abs() < 1.0);
        // 16,588,800 read ÷ 15,360,000 output.
        assert!((lambda.efs_bytes_read - 1.08 * output).abs() < 1.0);
        // 170 transitions over 32 segments, for 900.
        assert!((lambda.state_transitions - 170.0 / 32.0 * 900.0).abs() < 1e-6);
        // Requests at the measured bytes per request: 21,913,600 / 104 per GET.
        let per_get = 21_913_600.0 / 104.0;
        assert_eq!(lambda.s3_get_requests, (1.07 * source / per_get).ceil());
        let per_put = 15_513_600.0 / 5.0;
        assert_eq!(lambda.s3_put_requests, (1.01 * output / per_put).ceil());

        // Without the transitions counted, the definition's count stands in.
        let mut uncounted = measured();
        uncounted.transitions_per_segment = None;
        let projection = project(&ModelInputs {
            measured_data_path: Some(uncounted),
            ..ModelInputs::default()
        })
        .expect("valid");
        assert_eq!(projection.lambda.state_transitions, 5.0 * 900.0 + 8.0);
    }

    #[test]
    fn a_broken_measurement_is_named() {
        let mut measurement: DataPathMeasurement =
            serde_json::from_str(include_str!("../tests/fixtures/data-path.json"))
                .expect("the fixture parses");
        measurement.s3_get_requests = 0.0;
        let error = measurement.scaled("x.json").expect_err("no requests");
        assert!(error.to_string().contains("s3_get_requests"), "{error}");
        measurement.s3_get_requests = 10.0;
        measurement.scratch_write_ratio = f64::NAN;
        let error = measurement.scaled("x.json").expect_err("not a number");
        assert!(error.to_string().contains("scratch_write_ratio"), "{error}");
        let missing = serde_json::from_str::<DataPathMeasurement>(r#"{"source_bytes": 1}"#);
        assert!(missing.is_err(), "every field is required");
    }

    #[test]
    fn uploading_a_part_per_subtree_takes_the_root_off_the_critical_path() {
        let root = project(&ModelInputs::default()).expect("valid");
        let subtrees = project(&ModelInputs {
            upload_by_subtrees: true,
            ..ModelInputs::default()
        })
        .expect("valid");
        // 2.25 GB in 900 segments: 2.5 MB each, so a 16 MiB part holds 8 leaves (level 3).
        assert_eq!(subtrees.lambda.output_parts, (900.0f64 / 8.0).ceil());
        assert!(
            subtrees.lambda.merge_audio_seconds < 1.0,
            "{:?}",
            subtrees.lambda
        );
        assert!(subtrees.lambda.wall_seconds < root.lambda.wall_seconds - 15.0);
        // The same bytes move either way.
        assert_eq!(subtrees.lambda.efs_bytes_read, root.lambda.efs_bytes_read);
        assert_eq!(subtrees.lambda.s3_put_bytes, root.lambda.s3_put_bytes);
    }

    #[test]
    fn segments_follow_the_deployed_plan() {
        assert_eq!(planned_segments(60.0, 4.0, 1024), 15);
        assert_eq!(
            planned_segments(2.0, 4.0, 1024),
            1,
            "a short clip is one segment"
        );
        assert_eq!(planned_segments(36_000.0, 4.0, 1024), 1024, "capped");
    }

    #[test]
    fn limits_beyond_lambda_and_s3_are_named() {
        // A hundred hours: the root would stream 225 GB, and in 16 MiB parts that is more than
        // S3's 10,000.
        let inputs = ModelInputs {
            video_seconds: 360_000.0,
            segments: planned_segments(360_000.0, 4.0, 1024),
            ..ModelInputs::default()
        };
        let projection = project(&inputs).expect("valid");
        assert!(
            projection
                .warnings
                .iter()
                .any(|w| w.starts_with("merge-audio (the root's upload) would take")),
            "{:?}",
            projection.warnings
        );
        assert!(
            projection.warnings.iter().any(|w| w.contains("parts")),
            "{:?}",
            projection.warnings
        );
        // Ten hours fit: nothing reads or copies the whole source in one function any more.
        let ten_hours = project(&ModelInputs {
            video_seconds: 36_000.0,
            segments: 1024,
            ..ModelInputs::default()
        })
        .expect("valid");
        assert!(ten_hours.warnings.is_empty(), "{:?}", ten_hours.warnings);
    }

    #[test]
    fn bad_inputs_are_named() {
        let inputs = ModelInputs {
            segments: 0,
            ..ModelInputs::default()
        };
        assert!(project(&inputs).is_err());
        let inputs = ModelInputs {
            efs_client_bytes_per_second: 0.0,
            ..ModelInputs::default()
        };
        let error = project(&inputs).expect_err("zero throughput");
        assert!(error.to_string().contains("efs_client_bytes_per_second"));
        let mut broken = measured();
        broken.put_bytes_per_request = 0.0;
        let error = project(&ModelInputs {
            measured_data_path: Some(broken),
            ..ModelInputs::default()
        })
        .expect_err("zero bytes per request");
        assert!(error.to_string().contains("measured_data_path"), "{error}");
    }

    #[test]
    fn the_sweep_spans_one_minute_to_ten_hours() {
        let lengths = chart_lengths(5);
        assert_eq!(lengths.len(), 5);
        assert!((lengths[0] - 60.0).abs() < 1e-9 && (lengths[4] - 36_000.0).abs() < 1e-6);
        let projections = sweep(&ModelInputs::default(), &lengths).expect("valid");
        assert_eq!(
            projections[0].inputs.segments, 15,
            "the plan at each length"
        );
        assert!(projections
            .windows(2)
            .all(|pair| pair[0].lambda.dollars < pair[1].lambda.dollars));
    }

    proptest! {
        #[test]
        fn more_concurrency_is_never_slower_and_costs_stay_positive(
            segments in 1u32..2048,
            concurrency in 1u32..1000,
            extra in 1u32..1000,
            minutes in 1.0f64..600.0,
            subtrees in any::<bool>(),
            use_measured in any::<bool>(),
        ) {
            let base = ModelInputs {
                segments,
                concurrency,
                video_seconds: minutes * 60.0,
                upload_by_subtrees: subtrees,
                measured_data_path: use_measured.then(measured),
                ..ModelInputs::default()
            };
            let more = ModelInputs { concurrency: concurrency + extra, ..base.clone() };
            let (a, b) = (project(&base).expect("valid"), project(&more).expect("valid"));
            prop_assert!(b.lambda.encode_seconds <= a.lambda.encode_seconds + 1e-9);
            prop_assert!(a.lambda.dollars > 0.0 && a.lambda.wall_seconds > 0.0);
            prop_assert!(a.ec2.iter().all(|e| e.dollars > 0.0 && e.wall_seconds > 0.0));
            // Encoding cost does not depend on how many functions run at once.
            prop_assert!((a.lambda.lambda_dollars - b.lambda.lambda_dollars).abs() < 1e-6 * a.lambda.lambda_dollars.max(1.0));
            let sum: f64 = a.lambda.critical_path().iter().map(|(_, s)| s).sum();
            prop_assert!((sum - a.lambda.wall_seconds).abs() < 1e-9 * sum.max(1.0));
            prop_assert!(a.lambda.critical_path().iter().all(|(_, s)| *s >= 0.0));
            prop_assert!(a.lambda.output_parts >= 1.0);
        }

        #[test]
        fn moving_more_bytes_never_costs_less(
            minutes in 1.0f64..600.0,
            read in 1.0f64..3.0,
            write in 1.0f64..10.0,
            more in 0.01f64..2.0,
        ) {
            let mut measured = measured();
            measured.source_read_ratio = read;
            measured.scratch_write_ratio = write;
            let video_seconds = minutes * 60.0;
            let base = ModelInputs {
                video_seconds,
                segments: planned_segments(video_seconds, 4.0, 1024),
                measured_data_path: Some(measured.clone()),
                ..ModelInputs::default()
            };
            let a = project(&base).expect("valid");
            for change in [
                MeasuredDataPath { source_read_ratio: read + more, ..measured.clone() },
                MeasuredDataPath { scratch_write_ratio: write + more, ..measured.clone() },
                MeasuredDataPath { scratch_read_ratio: measured.scratch_read_ratio + more, ..measured.clone() },
                MeasuredDataPath { output_upload_ratio: measured.output_upload_ratio + more, ..measured.clone() },
            ] {
                let b = project(&ModelInputs { measured_data_path: Some(change), ..base.clone() }).expect("valid");
                prop_assert!(b.lambda.dollars >= a.lambda.dollars - 1e-12);
                prop_assert!(b.lambda.wall_seconds >= a.lambda.wall_seconds - 1e-9);
            }
        }
    }
}
