//! The `treemux` command line: a thin adapter over the library.

mod bench_cli;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use treemux::fault::CrashPoint;
use treemux::local::{self, Progress, TranscodeOptions, TranscodeReport};
use treemux::media::probe::{self, MediaInfo};
use treemux::media::verify::{self, VerifyOptions, VerifyReport};
use treemux::plan::{plan_segments, PlanOptions, SegmentPlan};
use treemux::settings::{parse_bitrate, Container, EncodeSettings, RateControl, VideoCodec};

#[derive(Parser, Debug)]
#[command(
    name = "treemux",
    version,
    about = "Frame-exact parallel video transcoder: split on keyframes, encode segments in parallel, merge along a binary tree"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Transcode INPUT to OUTPUT; the container follows OUTPUT's extension (.mp4, .mov, .mkv, .webm).
    Transcode(TranscodeArgs),
    /// Show streams, keyframes and the segment plan for INPUT.
    Probe(ProbeArgs),
    /// Check OUTPUT against SOURCE: frames, timestamps, duration, audio, rotation, PSNR/SSIM.
    Verify(VerifyArgs),
    /// Measure treemux against one ffmpeg process on this machine: time, CPU, memory, size, quality.
    Bench(bench_cli::BenchArgs),
    /// Project a serverless run and EC2 baselines from measured costs (a model, not a measurement).
    Model(bench_cli::ModelArgs),
    /// Other subcommands run `treemux-SUBCOMMAND` (beside this binary or on PATH):
    /// `treemux worker` takes state-machine tasks from SQS (built by the functions crate).
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

#[derive(Args, Debug)]
struct PlanArgs {
    /// Number of segments: `auto`, or a count.
    #[arg(long, default_value = "auto")]
    segments: String,
    /// Segment workers running at once (default: one per CPU core).
    #[arg(long)]
    workers: Option<usize>,
}

/// How to encode (shared by `transcode` and `bench`).
#[derive(Args, Debug)]
struct EncodeArgs {
    /// Video codec: h264, h265, vp9 or av1 (default: h264, or vp9 for .webm).
    #[arg(long)]
    codec: Option<String>,
    /// Constant rate factor (quality; lower is better). Default depends on the codec.
    #[arg(long, conflicts_with = "bitrate")]
    crf: Option<u32>,
    /// Target bitrate instead of constant quality, e.g. 2M or 800k.
    #[arg(long)]
    bitrate: Option<String>,
    /// Encoder preset: x264/x265 names (medium, fast, …), libvpx cpu-used (0–8), SVT-AV1 preset (0–13).
    #[arg(long)]
    preset: Option<String>,
    /// Output height in pixels; the width keeps the aspect ratio.
    #[arg(long)]
    height: Option<u32>,
}

#[derive(Args, Debug)]
struct TranscodeArgs {
    input: PathBuf,
    output: PathBuf,
    #[command(flatten)]
    encode: EncodeArgs,
    #[command(flatten)]
    plan: PlanArgs,
    /// Keep the scratch directory with segments and merges.
    #[arg(long)]
    keep_temp: bool,
    /// Where to create the scratch directory (default: the system temporary directory).
    #[arg(long)]
    temp_dir: Option<PathBuf>,
    /// Keep finished segments and merges when the run fails or is killed, and reuse them when
    /// the same command is run again with --resume.
    #[arg(long)]
    resume: bool,
    /// Print a JSON summary on stdout instead of progress and text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ProbeArgs {
    input: PathBuf,
    #[command(flatten)]
    plan: PlanArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    source: PathBuf,
    output: PathBuf,
    /// Lowest acceptable average PSNR in dB.
    #[arg(long, default_value_t = VerifyOptions::default().min_psnr_db)]
    min_psnr: f64,
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    treemux::process::ensure_zeroed_heap_or_warn("treemux");
    // SVT-AV1 prints its banner straight to stderr unless told to log errors only. Set before any
    // thread starts.
    if std::env::var_os("SVT_LOG").is_none() {
        std::env::set_var("SVT_LOG", "1");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Transcode(args) => transcode(args),
        Command::Probe(args) => probe_command(args),
        Command::Verify(args) => verify_command(args),
        Command::Bench(args) => bench_cli::bench_command(args),
        Command::Model(args) => bench_cli::model_command(args),
        Command::External(args) => external(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            let causes: Vec<String> = error.chain().map(ToString::to_string).collect();
            eprintln!("treemux: error: {}", dedupe_causes(&causes).join(": "));
            ExitCode::FAILURE
        }
    }
}

/// Runs `treemux-NAME` with the remaining arguments, as git and cargo do.
fn external(args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let (name, rest) = args.split_first().context("no subcommand")?;
    let program = format!("treemux-{}", name.to_string_lossy());
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&program)))
        .filter(|path| path.is_file());
    let status = std::process::Command::new(beside.as_deref().unwrap_or(Path::new(&program)))
        .args(rest)
        .status()
        .with_context(|| format!("unknown subcommand {:?}: {program} is not beside treemux or on PATH (build it with `cargo build -p treemux-functions`)", name))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Drops causes already quoted in full by the message before them, so the one line stays readable.
fn dedupe_causes(causes: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for cause in causes {
        if !kept
            .last()
            .is_some_and(|previous| previous.contains(cause.as_str()))
        {
            kept.push(cause.clone());
        }
    }
    kept
}

fn plan_options(args: &PlanArgs, cores: usize) -> anyhow::Result<PlanOptions> {
    let workers = args.workers.unwrap_or(cores).max(1);
    let exact_segments = match args.segments.as_str() {
        "auto" => None,
        count => {
            let count: u32 = count.parse().ok().filter(|&n| n >= 1).with_context(|| {
                format!("--segments {count}: expected `auto` or a whole number of at least 1")
            })?;
            Some(count)
        }
    };
    // Four segments per worker: longest-first scheduling then balances the workers even when
    // the content's difficulty varies along the video.
    Ok(PlanOptions {
        max_segments: (workers * 4) as u32,
        exact_segments,
        balance_over: workers as u32,
        ..PlanOptions::default()
    })
}

/// Encoder settings from the command line; the codec defaults to the container's.
fn encode_settings(
    args: &EncodeArgs,
    container: Option<Container>,
) -> anyhow::Result<EncodeSettings> {
    let codec = match &args.codec {
        Some(name) => VideoCodec::parse(name)
            .with_context(|| format!("--codec {name}: expected h264, h265, vp9 or av1"))?,
        None => container.map_or(VideoCodec::H264, Container::default_codec),
    };
    let mut settings = EncodeSettings::new(codec);
    if let Some(crf) = args.crf {
        settings.rate = RateControl::Crf(crf);
    }
    if let Some(bitrate) = &args.bitrate {
        settings.rate =
            RateControl::Bitrate(parse_bitrate(bitrate).with_context(|| {
                format!("--bitrate {bitrate}: expected a rate such as 2M or 800k")
            })?);
    }
    if let Some(preset) = &args.preset {
        settings.preset = preset.clone();
    }
    if let Some(height) = args.height {
        if height < 2 {
            bail!("--height {height}: must be at least 2");
        }
        settings.height = Some(height);
    }
    if let Err(problem) = settings.validate() {
        bail!(problem);
    }
    Ok(settings)
}

fn transcode(args: TranscodeArgs) -> anyhow::Result<ExitCode> {
    let settings = encode_settings(&args.encode, Container::from_path(&args.output))?;
    let mut options = TranscodeOptions::new(settings);
    options.plan = plan_options(&args.plan, options.cores)?;
    options.workers = args.plan.workers;
    options.keep_temp = args.keep_temp;
    options.temp_root = args.temp_dir.clone();
    options.resume = args.resume;
    // Fault injection for the robustness tests: crash on purpose at a named point.
    if let Ok(fault) = std::env::var("TREEMUX_FAULT") {
        options.fault =
            Some(CrashPoint::parse(&fault).with_context(|| {
                format!("TREEMUX_FAULT={fault}: expected {}", CrashPoint::SYNTAX)
            })?);
    }

    let interrupt = stop_on_signals()?;
    options.interrupt = Some(interrupt.clone());

    let show_progress = !args.json && std::io::stderr().is_terminal();
    let display = ProgressDisplay::new(show_progress);
    let result = local::transcode(&args.input, &args.output, &options, &|event| {
        display.update(event)
    });
    display.finish();
    if result.is_err() && interrupt.load(Ordering::SeqCst) {
        let kept = if args.resume {
            "finished segments kept: run the same command again to continue"
        } else {
            "scratch files removed"
        };
        eprintln!(
            "treemux: {}: interrupted; no output written, {kept}",
            args.input.display()
        );
        return Ok(ExitCode::from(INTERRUPTED_EXIT_CODE));
    }
    let report = result?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary_json(&report))?);
    } else {
        print_transcode_summary(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// The exit status of a run stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report it).
const INTERRUPTED_EXIT_CODE: u8 = 130;

/// SIGINT and SIGTERM set the returned flag, which the run polls to stop cleanly; a second
/// signal ends the process at once.
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(
            signal,
            i32::from(INTERRUPTED_EXIT_CODE),
            flag.clone(),
        )
        .context("installing a signal handler")?;
        signal_hook::flag::register(signal, flag.clone()).context("installing a signal handler")?;
    }
    Ok(flag)
}

/// Terminal progress: frames with rate and ETA, segments and merges done.
struct ProgressDisplay {
    bar: ProgressBar,
    segments: (AtomicU32, AtomicU32),
    merges: (AtomicU32, AtomicU32),
}

impl ProgressDisplay {
    fn new(visible: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} frames {per_sec} ETA {eta} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self {
            bar,
            segments: (AtomicU32::new(0), AtomicU32::new(0)),
            merges: (AtomicU32::new(0), AtomicU32::new(0)),
        }
    }

    fn update(&self, event: Progress) {
        match event {
            Progress::Planned {
                frames,
                segments,
                merges,
            } => {
                self.bar.set_length(frames);
                self.segments.1.store(segments, Ordering::Relaxed);
                self.merges.1.store(merges, Ordering::Relaxed);
            }
            Progress::FrameEncoded => {
                self.bar.inc(1);
                return;
            }
            Progress::SegmentDone { .. } => {
                self.segments.0.fetch_add(1, Ordering::Relaxed);
            }
            Progress::MergeDone { .. } => {
                self.merges.0.fetch_add(1, Ordering::Relaxed);
            }
            Progress::AudioDone => {}
            Progress::Muxing => {
                self.bar.set_message("muxing");
                return;
            }
        }
        self.bar.set_message(format!(
            "segments {}/{} merges {}/{}",
            self.segments.0.load(Ordering::Relaxed),
            self.segments.1.load(Ordering::Relaxed),
            self.merges.0.load(Ordering::Relaxed),
            self.merges.1.load(Ordering::Relaxed)
        ));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn summary_json(report: &TranscodeReport) -> serde_json::Value {
    serde_json::json!({
        "input": report.input,
        "output": report.output,
        "output_bytes": report.output_bytes,
        "settings": report.settings,
        "workers": report.workers,
        "source": report.source,
        "plan": report.plan,
        "tree": { "levels": report.tree.levels, "leaves": report.tree.leaf_count(), "real_segments": report.tree.real_leaves },
        "segments": report.segments,
        "merges": report.merges.iter().map(|(node, kind, merge)| serde_json::json!({"node": node, "kind": kind, "report": merge})).collect::<Vec<_>>(),
        "audio": report.audio,
        "remux": report.remux,
        "warnings": report.warnings,
        "stages_seconds": report.stages,
        "timeline": report.timeline,
        "reused": report.reused,
        "temp_dir": report.temp_dir,
    })
}

fn print_transcode_summary(report: &TranscodeReport) {
    let stages = &report.stages;
    let frames: u64 = report.segments.iter().map(|s| s.frames_encoded).sum();
    println!(
        "{} -> {}: {} frames in {} segments ({} workers × {} threads), {:.1} s total ({:.1} fps)",
        report.input.display(),
        report.output.display(),
        frames,
        report.segments.len(),
        report.workers,
        report.settings.threads,
        stages.total,
        frames as f64 / stages.total.max(1e-9)
    );
    println!(
        "  probe {:.2} s, plan {:.3} s, convert {:.2} s, merge {:.2} s, audio {:.2} s, remux {:.2} s; output {} bytes",
        stages.probe, stages.plan, stages.convert, stages.merge, stages.audio, stages.remux, report.output_bytes
    );
    if let Some(dir) = &report.temp_dir {
        println!("  scratch kept in {}", dir.display());
    }
}

fn probe_command(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let info = probe::probe(&args.input)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = plan_options(&args.plan, cores)?;
    let plan = plan_segments(
        &info.frames,
        info.video.time_base,
        info.video.duration_seconds(),
        &options,
    )
    .with_context(|| format!("{}: cannot plan segments", args.input.display()))?;
    if args.json {
        let json = serde_json::json!({ "source": info, "keyframes_seconds": info.keyframe_seconds(), "plan": plan });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_probe(&args.input, &info, &plan);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_probe(path: &Path, info: &MediaInfo, plan: &SegmentPlan) {
    let video = &info.video;
    println!(
        "{}: {} ({} bytes)",
        path.display(),
        info.container,
        info.size_bytes
    );
    println!(
        "  video #{}: {} {}x{} {} {:.3} fps, time base {}/{}, {} frames, {:.3} s, rotation {}°",
        video.stream_index,
        video.codec,
        video.width,
        video.height,
        video.pixel_format,
        video.frame_rate.fps(),
        video.time_base.num,
        video.time_base.den,
        video.frame_count,
        video.duration_seconds(),
        video.rotation_degrees
    );
    let keyframes: Vec<String> = info
        .keyframe_seconds()
        .iter()
        .map(|s| format!("{s:.3}"))
        .collect();
    println!(
        "  keyframes ({}): {}",
        keyframes.len(),
        abbreviate(&keyframes, 12)
    );
    for track in &info.audio {
        println!(
            "  audio #{}: {} {} Hz {} ch, language {}, {} packets",
            track.stream_index,
            track.codec,
            track.sample_rate,
            track.channels,
            track.language().unwrap_or("-"),
            track.packets
        );
    }
    println!("  plan: {} segments", plan.segments.len());
    println!(
        "    {:>4} {:>12} {:>12} {:>8} {:>8}",
        "seg", "start s", "end s", "frames", "lead-in"
    );
    let seconds = |pts: Option<i64>, default: i64| {
        video
            .time_base
            .seconds(pts.unwrap_or(default) - video.first_pts)
    };
    for segment in &plan.segments {
        println!(
            "    {:>4} {:>12.3} {:>12.3} {:>8} {:>8}",
            segment.index,
            seconds(segment.start_pts, video.first_pts),
            seconds(segment.end_pts, video.end_pts),
            segment.frames,
            segment.lead_in_frames
        );
    }
}

fn abbreviate(items: &[String], keep: usize) -> String {
    if items.len() <= keep {
        items.join(" ")
    } else {
        format!(
            "{} … {}",
            items[..keep - 2].join(" "),
            items[items.len() - 2..].join(" ")
        )
    }
}

fn verify_command(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let options = VerifyOptions {
        min_psnr_db: args.min_psnr,
        ..VerifyOptions::default()
    };
    let report = verify::verify(&args.source, &args.output, &options)?;
    if args.json {
        let json = serde_json::json!({ "passed": report.passed(), "report": report });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_verify(&args.output, &report);
    }
    if report.passed() {
        Ok(ExitCode::SUCCESS)
    } else {
        let failed: Vec<&str> = report.failures().map(|check| check.name.as_str()).collect();
        eprintln!(
            "treemux: error: {}: verification failed: {}",
            args.output.display(),
            failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

fn print_verify(output: &Path, report: &VerifyReport) {
    println!(
        "{}: {} frames, PSNR {:.2} dB, SSIM {:.4}, {} bytes",
        output.display(),
        report.output_frames,
        report.psnr_db,
        report.ssim,
        report.output_bytes
    );
    for check in &report.checks {
        println!(
            "  [{}] {}: {}",
            if check.passed { "ok" } else { "FAIL" },
            check.name,
            check.detail
        );
    }
}
