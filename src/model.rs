//! **Pure.** A model — not a measurement — of a serverless treemux run, beside EC2 instances
//! running the single-ffmpeg baseline, from measured encode cost and data sizes.
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
    /// Source and output bytes per second of video.
    pub source_bytes_per_video_second: f64,
    pub output_bytes_per_video_second: f64,
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
    /// Throughput of one function's S3 stream and of one function's EFS reads and writes.
    pub s3_bytes_per_second: f64,
    pub efs_client_bytes_per_second: f64,
    /// Prices (US dollars).
    pub lambda_per_gb_second: f64,
    pub lambda_per_request: f64,
    pub transition_price: f64,
    pub efs_read_per_gb: f64,
    pub efs_write_per_gb: f64,
    /// EC2 instances for the baseline: name, vCPUs, dollars per hour.
    pub ec2: Vec<Ec2Instance>,
    /// The baseline's measured parallel efficiency (single-thread CPU ÷ (cores × wall)) and the
    /// encoder threads beyond which one ffmpeg stops getting faster.
    pub baseline_efficiency: f64,
    pub baseline_max_useful_threads: f64,
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

/// Lambda's limit on one invocation, in seconds: a stage longer than this cannot run.
pub const LAMBDA_TIMEOUT_SECONDS: f64 = 900.0;

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
    /// x86_64 list prices.
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
            lambda_per_gb_second: 0.000_016_666_7,
            lambda_per_request: 0.000_000_2,
            transition_price: 0.000_025,
            efs_read_per_gb: 0.03,
            efs_write_per_gb: 0.06,
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

/// Why the inputs cannot be modelled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("model input {0}")]
pub struct ModelError(pub String);

/// The serverless run, stage by stage (seconds) and in dollars.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LambdaProjection {
    pub analyze_seconds: f64,
    pub map_start_seconds: f64,
    /// One segment's function: cold start, read its part of the source, encode, write.
    pub segment_seconds: f64,
    /// Segments one after another on the busiest function slot.
    pub waves: u32,
    pub encode_seconds: f64,
    /// After the last segment: the merges up the tree on the critical path.
    pub merge_tail_seconds: f64,
    pub tree_levels: u32,
    pub merge_audio_seconds: f64,
    pub wall_seconds: f64,
    pub lambda_dollars: f64,
    pub step_functions_dollars: f64,
    pub efs_dollars: f64,
    pub dollars: f64,
    pub state_transitions: f64,
    pub efs_bytes_written: f64,
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
    /// Stages that would exceed Lambda's 900 s limit, one sentence each.
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
        ("cold_start_seconds", inputs.cold_start_seconds),
        ("transition_seconds", inputs.transition_seconds),
        ("lambda_per_gb_second", inputs.lambda_per_gb_second),
        ("lambda_per_request", inputs.lambda_per_request),
        ("transition_price", inputs.transition_price),
        ("efs_read_per_gb", inputs.efs_read_per_gb),
        ("efs_write_per_gb", inputs.efs_write_per_gb),
    ];
    for (name, value) in non_negative {
        if !(value.is_finite() && value >= 0.0) {
            return Err(ModelError(format!(
                "{name} must be zero or more, not {value}"
            )));
        }
    }
    if inputs.segments == 0 || inputs.concurrency == 0 {
        return Err(ModelError(
            "segments and concurrency must be at least 1".into(),
        ));
    }
    if inputs.function_thread_efficiency > 1.0 || inputs.baseline_efficiency > 1.0 {
        return Err(ModelError("efficiencies are at most 1".into()));
    }
    Ok(())
}

/// Projects a serverless run and the EC2 baselines. See docs/performance.md for the formulas.
pub fn project(inputs: &ModelInputs) -> Result<Projection, ModelError> {
    check(inputs)?;
    let n = f64::from(inputs.segments);
    let source_bytes = inputs.source_bytes_per_video_second * inputs.video_seconds;
    let output_bytes = inputs.output_bytes_per_video_second * inputs.video_seconds;
    let efs = inputs.efs_client_bytes_per_second;
    let transition = inputs.transition_seconds;

    // analyze: S3 → EFS copy (one stream each way), then a probe that reads the copy once.
    let analyze_seconds = inputs.cold_start_seconds
        + source_bytes / inputs.s3_bytes_per_second.min(efs)
        + source_bytes / efs
        + 2.0 * transition;
    let map_start_seconds =
        f64::from(inputs.concurrency.min(inputs.segments)) / inputs.map_child_starts_per_second;

    let encode_cpu = inputs.encode_cpu_seconds_per_video_second * inputs.video_seconds / n;
    let segment_seconds = inputs.cold_start_seconds
        + source_bytes / n / efs
        + encode_cpu / (inputs.function_vcpus * inputs.function_thread_efficiency)
        + output_bytes / n / efs
        + 2.0 * transition;
    let waves = inputs.segments.div_ceil(inputs.concurrency);
    let encode_seconds = f64::from(waves) * segment_seconds;

    // Merges run as soon as both halves exist, so only the path above the last segment to finish
    // is left: one merge per level, each reading two halves and writing their sum.
    let tree_levels = inputs.segments.next_power_of_two().trailing_zeros();
    let merge_tail_seconds = (1..=tree_levels)
        .map(|level| {
            let merged = output_bytes * f64::from(1u32 << level) / n.max(1.0);
            inputs.cold_start_seconds + 2.0 * merged.min(output_bytes) / efs + 2.0 * transition
        })
        .sum::<f64>();
    let merge_audio_seconds = inputs.cold_start_seconds
        + 2.0 * output_bytes / efs
        + output_bytes / (4.0 * inputs.s3_bytes_per_second)
        + 2.0 * transition;
    let wall_seconds = analyze_seconds
        + map_start_seconds
        + encode_seconds
        + merge_tail_seconds
        + merge_audio_seconds;

    // Cost. Every level of the tree rewrites the whole video once.
    let gb = |mb: f64| mb / 1024.0;
    let merge_seconds_total = f64::from(tree_levels)
        * (inputs.cold_start_seconds + 2.0 * output_bytes / efs)
        + (n - 1.0) * 2.0 * transition;
    let lambda_dollars = inputs.lambda_per_gb_second
        * (n * segment_seconds * gb(inputs.convert_memory_mb)
            + (analyze_seconds + merge_seconds_total + merge_audio_seconds)
                * gb(inputs.task_memory_mb))
        + inputs.lambda_per_request * (2.0 * n + 4.0);
    let state_transitions = 3.0 * n + 2.0 * (n - 1.0) + 10.0;
    let step_functions_dollars = state_transitions * inputs.transition_price;
    let efs_bytes_written = source_bytes + output_bytes * (f64::from(tree_levels) + 2.0);
    let efs_bytes_read = 2.0 * source_bytes + output_bytes * (f64::from(tree_levels) + 1.0);
    let efs_dollars = efs_bytes_written / 1e9 * inputs.efs_write_per_gb
        + efs_bytes_read / 1e9 * inputs.efs_read_per_gb;

    let ec2 = inputs
        .ec2
        .iter()
        .map(|instance| {
            let useful = instance.vcpus.min(inputs.baseline_max_useful_threads);
            let wall_seconds = source_bytes / inputs.s3_bytes_per_second
                + inputs.encode_cpu_seconds_per_video_second * inputs.video_seconds
                    / (useful * inputs.baseline_efficiency)
                + output_bytes / inputs.s3_bytes_per_second;
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

    let dollars = lambda_dollars + step_functions_dollars + efs_dollars;
    // The root merge moves the most: both halves of the whole video.
    let root_merge_seconds = inputs.cold_start_seconds + 2.0 * output_bytes / efs;
    let warnings = [
        ("analyze", analyze_seconds),
        ("one split-and-convert", segment_seconds),
        ("the root merge", root_merge_seconds),
        ("merge-audio", merge_audio_seconds),
    ]
    .into_iter()
    .filter(|(_, seconds)| *seconds > LAMBDA_TIMEOUT_SECONDS)
    .map(|(stage, seconds)| {
        format!(
            "{stage} would take {seconds:.0} s, beyond Lambda's {LAMBDA_TIMEOUT_SECONDS:.0} s limit: the job would fail"
        )
    })
    .collect();
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
            dollars,
            state_transitions,
            efs_bytes_written,
        },
        ec2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_default_hour_of_1080p() {
        let projection = project(&ModelInputs::default()).expect("valid defaults");
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
        assert!(lambda.wall_seconds < 300.0, "{lambda:?}");
        let small = &projection.ec2[0];
        assert!(
            (small.wall_seconds - 7200.0 / (2.0 * 0.9)).abs() < 200.0,
            "{small:?}"
        );
        assert!(projection.note.contains("MODEL"));
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
    fn a_stage_beyond_lambdas_limit_is_named() {
        // Ten hours: analyze copies the whole source to EFS before anything else.
        let inputs = ModelInputs {
            video_seconds: 36_000.0,
            segments: planned_segments(36_000.0, 4.0, 1024),
            ..ModelInputs::default()
        };
        let projection = project(&inputs).expect("valid");
        assert!(
            projection
                .warnings
                .iter()
                .any(|w| w.starts_with("analyze would take")),
            "{:?}",
            projection.warnings
        );
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
    }

    proptest! {
        #[test]
        fn more_concurrency_is_never_slower_and_costs_stay_positive(
            segments in 1u32..2048,
            concurrency in 1u32..1000,
            extra in 1u32..1000,
            minutes in 1.0f64..600.0,
        ) {
            let base = ModelInputs {
                segments,
                concurrency,
                video_seconds: minutes * 60.0,
                ..ModelInputs::default()
            };
            let more = ModelInputs { concurrency: concurrency + extra, ..base.clone() };
            let (a, b) = (project(&base).expect("valid"), project(&more).expect("valid"));
            prop_assert!(b.lambda.encode_seconds <= a.lambda.encode_seconds + 1e-9);
            prop_assert!(a.lambda.dollars > 0.0 && a.lambda.wall_seconds > 0.0);
            prop_assert!(a.ec2.iter().all(|e| e.dollars > 0.0 && e.wall_seconds > 0.0));
            // Encoding cost does not depend on how many functions run at once.
            prop_assert!((a.lambda.lambda_dollars - b.lambda.lambda_dollars).abs() < 1e-6 * a.lambda.lambda_dollars.max(1.0));
        }
    }
}
