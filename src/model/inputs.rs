//! What the model is given, with sourced defaults (docs/performance.md).

use super::MeasuredDataPath;
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
    /// The shared index as analyze stores it on EFS, compressed (zlib), over its plain bytes:
    /// what each segment worker reads of it.
    #[serde(default = "default_saved_index_ratio")]
    pub saved_index_ratio: f64,
    /// CPU seconds of the root's layout pass per second of video: a stand-in mux of every
    /// sample, so it grows with the samples (video frames and audio packets), on one thread.
    #[serde(default = "default_layout_cpu_seconds_per_video_second")]
    pub layout_cpu_seconds_per_video_second: f64,
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

/// Measured (`core/tests/layout_cost.rs`, 2026-12-02): 0.52 CPU-s for one hour at 25 fps with
/// 48 kHz AAC (90,000 video samples, 168,751 audio packets: 2.0 µs a sample).
fn default_layout_cpu_seconds_per_video_second() -> f64 {
    0.52 / 3600.0
}

/// Measured (`core/src/media/source/demux_tests.rs`'s clip, 2026-12-02): a ten-minute x264
/// (B-frames) and AAC `moov` of 465 kB deflates to 165 kB (0.35); the opening also holds
/// FFmpeg's read-ahead into the media, which does not shrink, hence 0.4.
fn default_saved_index_ratio() -> f64 {
    0.4
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

pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// Lambda's limit on one invocation, in seconds: a stage longer than this cannot run.
pub const LAMBDA_TIMEOUT_SECONDS: f64 = 900.0;

/// S3 multipart limits: at most 10,000 parts of at most 5 GiB each.
pub const MAX_UPLOAD_PARTS: f64 = 10_000.0;
pub const MAX_PART_BYTES: f64 = 5.0 * 1024.0 * MIB;

/// Hours in the month the fixed cost and the always-on instance are priced over.
pub(crate) const HOURS_PER_MONTH: f64 = 730.0;

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
            saved_index_ratio: default_saved_index_ratio(),
            layout_cpu_seconds_per_video_second: default_layout_cpu_seconds_per_video_second(),
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
