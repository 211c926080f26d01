//! `treemux bench`, `treemux model` and `treemux diagram`: command-line adapters over
//! [`crate::bench`], [`crate::model`] (and its chart, [`crate::model_chart`]),
//! [`crate::timeline`] and [`crate::tree_diagram`].

use crate::bench::{self, BenchOptions, BenchReport};
use crate::model::{self, ModelInputs, Projection};
use anyhow::Context as _;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use treemux_core::local::TaskSpan;
use treemux_core::summary::RunSummary;

#[derive(Args, Debug)]
pub struct BenchArgs {
    input: PathBuf,
    #[command(flatten)]
    encode: super::EncodeArgs,
    /// treemux segment workers (default: one per core).
    #[arg(long, value_parser = super::at_least_one)]
    workers: Option<usize>,
    /// Runs of each side, alternating.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Skip the single-thread reference encode (no parallel efficiency then).
    #[arg(long)]
    no_reference: bool,
    /// The ffmpeg for the baseline.
    #[arg(long, default_value = "ffmpeg")]
    ffmpeg: PathBuf,
    /// An ffmpeg built with libvmaf for VMAF scores (default: the `imageio-ffmpeg` Python
    /// wheel's, when installed and built with libvmaf).
    #[arg(long)]
    vmaf_ffmpeg: Option<PathBuf>,
    /// Write the last treemux run's timeline chart here (SVG).
    #[arg(long)]
    timeline: Option<PathBuf>,
    /// Write the last treemux run's merge tree here (SVG).
    #[arg(long, value_name = "FILE")]
    tree: Option<PathBuf>,
    /// Where the outputs go while measuring (default: the system temporary directory).
    #[arg(long)]
    temp_dir: Option<PathBuf>,
    /// Instead: the CPU of one run encoding this ladder from one decode (`transcode
    /// --renditions`) against one run per rung (--codec, --preset, --crf, --workers shared).
    #[arg(long, value_name = "HEIGHTS")]
    renditions: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// A JSON file of model inputs (any subset of the fields `--json` prints under `inputs`).
    #[arg(long)]
    inputs: Option<PathBuf>,
    /// Take the measured encode cost, sizes and baseline efficiency from `treemux bench --json`
    /// output.
    #[arg(long)]
    from_bench: Option<PathBuf>,
    /// Length of the video to project, in seconds.
    #[arg(long, conflicts_with = "input")]
    video_seconds: Option<f64>,
    /// A real video: probed (its index, not decoded) for its duration, size and bitrates, and
    /// its segments planned as the deployed analyze plans them; the projection runs on those.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Segments (default: what the deployed plan makes of the video: with `--input`, the file's
    /// own plan; else of its length, at least `min_segment_seconds` (4 s) each, at most
    /// `max_segments` (1024)).
    #[arg(long)]
    segments: Option<u32>,
    /// Lambda functions at once.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Take the per-job bytes and requests (S3 reads and uploads, EFS writes and reads, Step
    /// Functions transitions) from a measured run, scaled to the modelled video
    /// (`target/bench/data-path.json`, written by the local-stack data-path benchmark).
    #[arg(long, value_name = "FILE")]
    data_path: Option<PathBuf>,
    /// Also draw the model over video lengths from one minute to ten hours (SVG): wall time and
    /// dollars, Lambda (its time stacked by stage) against each EC2 instance.
    #[arg(long, value_name = "FILE")]
    chart: Option<PathBuf>,
    /// Print the projection (inputs, stages, dollars, counts) as one JSON object.
    #[arg(long)]
    json: bool,
}

/// `ffmpeg` from the `imageio-ffmpeg` wheel when it is installed and has libvmaf.
fn imageio_ffmpeg_with_vmaf() -> Option<PathBuf> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
        ])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let filters = std::process::Command::new(&path)
        .args(["-hide_banner", "-filters"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&filters.stdout)
        .contains("libvmaf")
        .then_some(path)
}

pub fn bench_command(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let settings = super::encode_settings(&args.encode, None)?;
    if args.repeat == 0 {
        anyhow::bail!("--repeat 0: must be at least 1");
    }
    if let Some(ladder) = &args.renditions {
        return crate::bench_ladder::command(
            &args.input,
            ladder,
            &settings,
            (args.workers, args.repeat, args.temp_dir.as_deref()),
            args.json,
        );
    }
    let options = BenchOptions {
        input: args.input.clone(),
        settings,
        workers: args.workers,
        repeat: args.repeat,
        treemux: std::env::current_exe().context("cannot find the treemux executable")?,
        ffmpeg: args.ffmpeg.clone(),
        temp_root: args.temp_dir.clone(),
        single_thread_reference: !args.no_reference,
        vmaf_ffmpeg: args.vmaf_ffmpeg.clone().or_else(imageio_ffmpeg_with_vmaf),
    };
    let quiet = args.json;
    let report = bench::run(&options, &|line| {
        if !quiet {
            errln!("bench: {line}");
        }
    })
    .with_context(|| format!("{}: benchmark failed", args.input.display()))?;
    if let Some(path) = &args.timeline {
        write_timeline(path, &report)?;
    }
    if let Some(path) = &args.tree {
        let detail = &report.treemux_detail;
        let title = format!(
            "treemux {} {}: {} segments on {} workers",
            report.codec, report.preset, detail.segments, detail.workers
        );
        let segments = u32::try_from(detail.segments.max(1)).context("too many segments")?;
        write_tree(path, &title, segments, &detail.timeline)?;
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_bench(&report);
        if let Some(path) = &args.timeline {
            outln!("timeline chart: {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_timeline(path: &Path, report: &BenchReport) -> anyhow::Result<()> {
    let detail = &report.treemux_detail;
    let title = format!(
        "treemux {} {} {}: {} segments on {} workers, {:.2} s",
        report.codec,
        report.preset,
        report
            .input
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        detail.segments,
        detail.workers,
        detail.stages_s.total
    );
    let svg = crate::timeline::render_svg(&title, &detail.timeline, detail.stages_s.total);
    std::fs::write(path, svg).with_context(|| format!("{}: cannot write the chart", path.display()))
}

fn print_bench(report: &BenchReport) {
    let (b, t) = (&report.baseline, &report.treemux);
    outln!(
        "{} ({}x{}, {} frames, {:.1} s): {} {} preset {}, {} cores, {} runs each (medians)",
        report.input.display(),
        report.width,
        report.height,
        report.source_frames,
        report.source_seconds,
        report.codec,
        report.rate,
        report.preset,
        report.cores,
        report.repeat
    );
    outln!("baseline: {}", report.baseline_command);
    outln!("{:<22} {:>12} {:>12}", "", "baseline", "treemux");
    let row = |name: &str, a: String, b: String| outln!("{name:<22} {a:>12} {b:>12}");
    row(
        "wall s",
        format!("{:.2}", b.wall_s),
        format!("{:.2}", t.wall_s),
    );
    row(
        "CPU s",
        format!("{:.2}", b.cpu_s),
        format!("{:.2}", t.cpu_s),
    );
    row(
        "peak memory MB",
        format!("{:.0}", b.max_rss_mb),
        format!("{:.0}", t.max_rss_mb),
    );
    let efficiency = |e: Option<f64>| e.map_or("-".to_owned(), |e| format!("{e:.2}"));
    row(
        "parallel efficiency",
        efficiency(b.parallel_efficiency),
        efficiency(t.parallel_efficiency),
    );
    row("video bytes", b.bytes.to_string(), t.bytes.to_string());
    row("frames", b.frames.to_string(), t.frames.to_string());
    row(
        "PSNR dB",
        format!("{:.3}", b.psnr_db),
        format!("{:.3}", t.psnr_db),
    );
    row("SSIM", format!("{:.5}", b.ssim), format!("{:.5}", t.ssim));
    let vmaf = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    row("VMAF", vmaf(b.vmaf), vmaf(t.vmaf));
    let detail = &report.treemux_detail;
    let s = &detail.stages_s;
    outln!(
        "ratio treemux/baseline wall: {:.3}; size {:+.2}%; PSNR {:+.3} dB",
        report.ratio,
        (t.bytes as f64 / b.bytes.max(1) as f64 - 1.0) * 100.0,
        t.psnr_db - b.psnr_db
    );
    outln!(
        "treemux: {} segments, {} workers; stages probe {:.2} plan {:.3} convert {:.2} merge {:.2} audio {:.2} remux {:.2} total {:.2} s; non-encode share {:.1}%; idle tail {:.1}%; peak memory per worker ≤ {:.0} MB; verify {}",
        detail.segments,
        detail.workers,
        s.probe,
        s.plan,
        s.convert,
        s.merge,
        s.audio,
        s.remux,
        s.total,
        detail.non_encode_share * 100.0,
        detail.idle_tail_share * 100.0,
        detail.max_rss_per_worker_mb,
        if detail.verify_passed { "passed" } else { "FAILED" }
    );
}

pub fn model_command(args: ModelArgs) -> anyhow::Result<ExitCode> {
    let mut inputs = serde_json::to_value(ModelInputs::default())?;
    let mut segments_given = args.segments.is_some();
    if let Some(path) = &args.inputs {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read model inputs", path.display()))?;
        let overrides: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        let serde_json::Value::Object(overrides) = overrides else {
            anyhow::bail!("{}: expected a JSON object of model inputs", path.display());
        };
        for (key, value) in overrides {
            if inputs.get(&key).is_none() {
                anyhow::bail!("{}: unknown model input {key:?}", path.display());
            }
            segments_given |= key == "segments";
            inputs[key] = value;
        }
    }
    let mut inputs: ModelInputs =
        serde_json::from_value(inputs).context("model inputs have the wrong types")?;
    if let Some(path) = &args.from_bench {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the bench report", path.display()))?;
        let report: BenchReport = serde_json::from_str(&text)
            .with_context(|| format!("{}: not `treemux bench --json` output", path.display()))?;
        apply_bench(&mut inputs, &report)
            .with_context(|| format!("{}: cannot use this report", path.display()))?;
    }
    if let Some(seconds) = args.video_seconds {
        inputs.video_seconds = seconds;
    }
    let planned = match &args.input {
        Some(path) => {
            let planned = crate::model_input::plan_input(path, &inputs)?;
            planned.apply(&mut inputs, segments_given);
            Some(planned)
        }
        None => None,
    };
    if let Some(segments) = args.segments {
        inputs.segments = segments;
    } else if !segments_given && planned.is_none() {
        inputs.segments = model::planned_segments(
            inputs.video_seconds,
            inputs.min_segment_seconds,
            inputs.max_segments,
        );
    }
    if let Some(concurrency) = args.concurrency {
        inputs.concurrency = concurrency;
    }
    if let Some(path) = &args.data_path {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("{}: cannot read the data-path measurement", path.display())
        })?;
        let measurement: model::DataPathMeasurement = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a data-path measurement", path.display()))?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        inputs.measured_data_path = Some(
            measurement
                .scaled(&name)
                .with_context(|| format!("{}: cannot use this measurement", path.display()))?,
        );
    }
    let projection = model::project(&inputs)?;
    if let Some(path) = &args.chart {
        let lengths = model::chart_lengths(25);
        let sweep = model::sweep(&inputs, &lengths)?;
        let svg = crate::model_chart::render_svg(&sweep)
            .with_context(|| format!("{}: cannot draw the chart", path.display()))?;
        std::fs::write(path, svg)
            .with_context(|| format!("{}: cannot write the chart", path.display()))?;
    }
    if args.json {
        let mut json = serde_json::to_value(&projection)?;
        if let (Some(planned), serde_json::Value::Object(fields)) = (&planned, &mut json) {
            fields.insert("input".to_owned(), serde_json::to_value(planned)?);
        }
        outln!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for line in planned.iter().flat_map(|planned| planned.describe()) {
            outln!("{line}");
        }
        print_projection(&projection);
    }
    Ok(ExitCode::SUCCESS)
}

/// Measured encode cost, sizes and baseline efficiency from a bench report.
fn apply_bench(inputs: &mut ModelInputs, report: &BenchReport) -> anyhow::Result<()> {
    let single = report
        .single_thread_cpu_s
        .context("the report has no single-thread reference (run bench without --no-reference)")?;
    if report.source_seconds <= 0.0 {
        anyhow::bail!("the source has no duration");
    }
    inputs.encode_cpu_seconds_per_video_second = single / report.source_seconds;
    inputs.output_bytes_per_video_second = report.treemux.bytes as f64 / report.source_seconds;
    let source_bytes = std::fs::metadata(&report.input)
        .map(|m| m.len())
        .unwrap_or(0);
    if source_bytes > 0 {
        inputs.source_bytes_per_video_second = source_bytes as f64 / report.source_seconds;
    }
    if let Some(efficiency) = report.baseline.parallel_efficiency {
        inputs.baseline_efficiency = efficiency.clamp(0.05, 1.0);
    }
    Ok(())
}

pub(crate) fn print_projection(projection: &Projection) {
    let (inputs, lambda) = (&projection.inputs, &projection.lambda);
    outln!("{}", projection.note);
    outln!(
        "inputs: {:.0} s of video; {:.3} CPU-s per video second (single thread); source {:.2} MB/s, output {:.2} MB/s, index {:.0} B/s, audio {:.0} kB/s of video",
        inputs.video_seconds,
        inputs.encode_cpu_seconds_per_video_second,
        inputs.source_bytes_per_video_second / 1e6,
        inputs.output_bytes_per_video_second / 1e6,
        inputs.index_bytes_per_video_second,
        inputs.audio_bytes_per_video_second / 1e3
    );
    outln!(
        "        {} segment{}, {} functions at once, {} vCPUs × {:.2} efficiency at {} MB; cold start {:.2} s; {:.3} s per transition; {:.0} Map children/s",
        inputs.segments,
        if inputs.segments == 1 { "" } else { "s" },
        inputs.concurrency,
        inputs.function_vcpus,
        inputs.function_thread_efficiency,
        inputs.convert_memory_mb,
        inputs.cold_start_seconds,
        inputs.transition_seconds,
        inputs.map_child_starts_per_second
    );
    outln!(
        "        S3 {:.0} MB/s per stream ({:.2} s to first byte), EFS {:.0} MB/s per function; output uploaded {}; ${}/GB-s, ${}/transition, EFS ${}/GB read, ${}/GB written",
        inputs.s3_bytes_per_second / 1e6,
        inputs.s3_first_byte_seconds,
        inputs.efs_client_bytes_per_second / 1e6,
        if inputs.upload_by_subtrees {
            "a part per subtree, in parallel".to_owned()
        } else {
            format!("by the root, {} parts at once", inputs.upload_streams)
        },
        inputs.lambda_per_gb_second,
        inputs.transition_price,
        inputs.efs_read_per_gb,
        inputs.efs_write_per_gb
    );
    outln!(
        "Lambda: {:.0} s wall = analyze {:.1} s + Map start {:.1} s + {} wave(s) × {:.1} s per segment + merge tail {:.1} s ({} levels) + merge-audio {:.1} s (split-audio {:.1} s beside the Map)",
        lambda.wall_seconds,
        lambda.analyze_seconds,
        lambda.map_start_seconds,
        lambda.waves,
        lambda.segment_seconds,
        lambda.merge_tail_seconds,
        lambda.tree_levels,
        lambda.merge_audio_seconds,
        lambda.split_audio_seconds
    );
    outln!(
        "        ${:.2} = Lambda ${:.2} + Step Functions ${:.2} ({:.0} transitions) + EFS ${:.2} ({:.2} GB written, {:.2} GB read) + S3 requests ${:.3}",
        lambda.dollars,
        lambda.lambda_dollars,
        lambda.step_functions_dollars,
        lambda.state_transitions,
        lambda.efs_dollars,
        lambda.efs_bytes_written / 1e9,
        lambda.efs_bytes_read / 1e9,
        lambda.s3_request_dollars
    );
    let counts_from = match &inputs.measured_data_path {
        Some(measured) => format!(
            "scaled from {} ({} segments: source read {:.2}×, scratch written {:.2}× and read {:.2}× the output, segments kept {:.2}× and read {:.2}×, uploaded {:.2}×)",
            measured.source,
            measured.segments,
            measured.source_read_ratio,
            measured.scratch_write_ratio,
            measured.scratch_read_ratio,
            measured.segment_write_ratio,
            measured.segment_read_ratio,
            measured.output_upload_ratio
        ),
        None => "the design's own counts (no --data-path)".to_owned(),
    };
    outln!(
        "        moved: S3 {:.2} GB read in {:.0} GETs, {:.2} GB uploaded in {:.0} PUTs ({:.0} parts); segments kept in S3 {:.2} GB ({:.0} requests); {counts_from}",
        lambda.s3_get_bytes / 1e9,
        lambda.s3_get_requests,
        lambda.s3_put_bytes / 1e9,
        lambda.s3_put_requests,
        lambda.output_parts,
        lambda.segment_object_bytes / 1e9,
        lambda.segment_object_requests
    );
    for ec2 in &projection.ec2 {
        outln!(
            "EC2 {:<14} {:>4} vCPUs: {:>8.0} s wall, ${:.2} (baseline efficiency {:.2}, at most {} useful threads)",
            ec2.name,
            ec2.vcpus,
            ec2.wall_seconds,
            ec2.dollars,
            inputs.baseline_efficiency,
            inputs.baseline_max_useful_threads
        );
    }
    for warning in &projection.warnings {
        outln!("warning: {warning}");
    }
    outln!("{}", projection.verdict);
    match projection.break_even_jobs_per_month {
        Some(jobs) => outln!(
            "fixed: the stack costs ${:.2}/month with no job; cheaper than keeping the fastest instance running all month below {:.0} jobs/month",
            inputs.fixed_monthly_dollars,
            jobs
        ),
        None => outln!(
            "fixed: the stack costs ${:.2}/month with no job; one job costs more than a month of the fastest instance",
            inputs.fixed_monthly_dollars
        ),
    }
}

#[derive(Args, Debug)]
pub struct DiagramArgs {
    /// A run's JSON: `treemux transcode --json` output (or `treemux bench --json`, for its last
    /// treemux run).
    run: PathBuf,
    /// Draw the merge tree here (SVG): segments → pairs → root, placeholders, the order in which
    /// the merges finished.
    #[arg(long, value_name = "FILE", required_unless_present = "timeline")]
    tree: Option<PathBuf>,
    /// Draw the timeline chart here (SVG): a lane per worker, a bar per task.
    #[arg(long, value_name = "FILE")]
    timeline: Option<PathBuf>,
}

/// What the diagrams need of a run's JSON.
struct RunRecord {
    title: String,
    segments: u32,
    timeline: Vec<TaskSpan>,
    total_seconds: f64,
}

/// Reads a [`RunSummary`] (`transcode --json`) or a [`BenchReport`] (`bench --json`, told apart
/// by its `treemux_detail`), each by its type.
fn run_record(path: &Path) -> anyhow::Result<RunRecord> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the run's JSON", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let file_name = |path: &Path| {
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    let (segments, timeline, total_seconds, title) = if json.get("treemux_detail").is_some() {
        let report: BenchReport = serde_json::from_value(json)
            .with_context(|| format!("{}: not `treemux bench --json` output", path.display()))?;
        let detail = report.treemux_detail;
        (
            u64::try_from(detail.segments).ok(),
            detail.timeline,
            detail.stages_s.total,
            format!(
                "treemux {} {} {}",
                report.codec,
                report.preset,
                file_name(&report.input)
            ),
        )
    } else {
        let run: RunSummary = serde_json::from_value(json).with_context(|| {
            format!(
                "{}: not `treemux transcode --json` or `treemux bench --json` output",
                path.display()
            )
        })?;
        (
            Some(u64::from(run.tree.real_segments)),
            run.timeline,
            run.stages_seconds.total,
            format!(
                "treemux {} → {}",
                file_name(&run.input),
                file_name(&run.output)
            ),
        )
    };
    let segments = segments
        .filter(|&n| (1..=1 << treemux_core::tree::MAX_LEVELS).contains(&n))
        .with_context(|| {
            format!(
                "{}: no segment count (expected `treemux transcode --json` or `treemux bench --json` output)",
                path.display()
            )
        })? as u32;
    Ok(RunRecord {
        title: format!("{title}: {segments} segments, {total_seconds:.2} s"),
        segments,
        timeline,
        total_seconds,
    })
}

pub fn diagram_command(args: DiagramArgs) -> anyhow::Result<ExitCode> {
    let record = run_record(&args.run)?;
    if let Some(path) = &args.tree {
        write_tree(path, &record.title, record.segments, &record.timeline)?;
        outln!("merge tree: {}", path.display());
    }
    if let Some(path) = &args.timeline {
        let svg =
            crate::timeline::render_svg(&record.title, &record.timeline, record.total_seconds);
        std::fs::write(path, svg)
            .with_context(|| format!("{}: cannot write the chart", path.display()))?;
        outln!("timeline chart: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn write_tree(
    path: &Path,
    title: &str,
    segments: u32,
    timeline: &[TaskSpan],
) -> anyhow::Result<()> {
    let tree = treemux_core::tree::MergeTree::new(segments);
    let svg = crate::tree_diagram::render_svg(title, &tree, timeline)
        .with_context(|| format!("{}: cannot draw the merge tree", path.display()))?;
    std::fs::write(path, svg)
        .with_context(|| format!("{}: cannot write the merge tree", path.display()))
}
