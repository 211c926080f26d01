//! The `treemux` command line: a thin adapter over the core (`treemux_core`), plus what only the
//! command line does: measuring against ffmpeg (`bench`), the Lambda model (`model`) and the
//! pictures of a run (`timeline`, `tree_diagram`, `model_chart`).

/// `println!` for a command's output. A reader that stops early (`treemux probe FILE | head`) is
/// no error: the rest of the output is dropped quietly and the command ends as it would have.
/// Any other failure to write ends the process with a one-line error, never a panic.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics: a closed stderr leaves nowhere to report anything.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod bench;
mod bench_cli;
mod model;
mod model_chart;
mod model_input;
mod timeline;
mod tree_diagram;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::ffi::OsString;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use treemux_core::fault::CrashPoint;
use treemux_core::local::{self, ExistingOutput, Progress, TranscodeOptions, TranscodeReport};
use treemux_core::media::probe::{self, MediaInfo};
use treemux_core::media::verify::{self, VerifyOptions, VerifyReport};
use treemux_core::plan::{PlanOptions, SegmentPlan};
use treemux_core::progress::ProgressTally;
use treemux_core::settings::{
    parse_bitrate, preset_help, Container, EncodeSettings, OutputPixels, RateControl, VideoCodec,
};
use treemux_core::summary::RunSummary;
use treemux_core::tree::MergeTree;

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
    /// Draw a finished run's merge tree and timeline (SVG) from its JSON (`transcode --json`).
    Diagram(bench_cli::DiagramArgs),
    /// Other subcommands run `treemux-SUBCOMMAND` (beside this binary or on PATH):
    /// `treemux worker` takes state-machine tasks from SQS (built by the worker crate).
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

#[derive(Args, Debug)]
struct PlanArgs {
    /// Number of segments: `auto`, or a count.
    #[arg(long, default_value = "auto")]
    segments: String,
    /// Segment workers running at once (default: one per CPU core).
    #[arg(long, value_parser = at_least_one)]
    workers: Option<usize>,
}

/// Parses a count that must be at least 1 (`--workers`).
fn at_least_one(text: &str) -> Result<usize, String> {
    text.parse()
        .ok()
        .filter(|&count| count >= 1)
        .ok_or_else(|| "expected a whole number of at least 1".to_owned())
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
    // The help is derived from the accepted ranges (settings.rs), so the two cannot disagree.
    #[arg(long, help = preset_help())]
    preset: Option<String>,
    /// Output height in pixels, as displayed; the width keeps the aspect ratio. At most the
    /// source's height unless --upscale is given.
    #[arg(long)]
    height: Option<u32>,
    /// Allow --height above the source's height (enlarging adds size, not detail).
    #[arg(long, requires = "height")]
    upscale: bool,
    /// Pixel format: `source` keeps the source's bit depth (8/10/12) and chroma (4:2:0, 4:2:2,
    /// 4:4:4) where the encoder can; `yuv420p` makes 8-bit 4:2:0, the most widely playable.
    #[arg(long, default_value = "source", value_name = "source|yuv420p")]
    pix_fmt: String,
    /// Turn the pixels to the source's display rotation in every container (always done for
    /// .mkv and .webm, which cannot carry a rotation); otherwise MP4/MOV keep it as metadata.
    #[arg(long)]
    autorotate: bool,
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
    /// Replace OUTPUT if it exists (by default an existing OUTPUT is refused).
    #[arg(short = 'y', long)]
    overwrite: bool,
    /// Never replace an existing OUTPUT: stop with an error instead (the default unless -y).
    #[arg(short = 'n', long, conflicts_with = "overwrite")]
    no_overwrite: bool,
    /// Print errors and warnings only: no progress, no summary.
    #[arg(short, long)]
    quiet: bool,
    /// Print more: the plan, each segment and merge as it finishes, per-segment timings.
    #[arg(short, long, conflicts_with = "quiet")]
    verbose: bool,
    /// Seconds between progress lines when stderr is not a terminal (logs, pipes, CI).
    #[arg(long, default_value_t = 5.0, value_parser = positive_seconds)]
    stats_period: f64,
}

/// Parses a positive number of seconds (`--stats-period`).
fn positive_seconds(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .ok_or_else(|| "expected a positive number of seconds".to_owned())
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
    let zeroed_heap = treemux_core::process::ensure_zeroed_heap();
    // SVT-AV1 prints its banner straight to stderr unless told to log errors only. Set before any
    // thread starts.
    if std::env::var_os("SVT_LOG").is_none() {
        std::env::set_var("SVT_LOG", "1");
    }
    let cli = Cli::parse();
    init_logging(match &cli.command {
        Command::Transcode(args) if args.quiet => tracing::Level::WARN,
        Command::Transcode(args) if args.verbose => tracing::Level::DEBUG,
        _ => tracing::Level::INFO,
    });
    treemux_core::process::warn_unless_zeroed(&zeroed_heap);
    let result = match cli.command {
        Command::Transcode(args) => transcode(args),
        Command::Probe(args) => probe_command(args),
        Command::Verify(args) => verify_command(args),
        Command::Bench(args) => bench_cli::bench_command(args),
        Command::Model(args) => bench_cli::model_command(args),
        Command::Diagram(args) => bench_cli::diagram_command(args),
        Command::External(args) => external(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            let causes: Vec<String> = error.chain().map(ToString::to_string).collect();
            errln!("treemux: error: {}", dedupe_causes(&causes).join(": "));
            ExitCode::FAILURE
        }
    }
}

/// Human log lines on stderr for `tracing` events, `warning: MESSAGE field=value…` (`error:`,
/// `info:`, `debug:`), up to `level` (`-q`: warnings and errors; `-v`: debug too). The run's
/// own output (progress, summary, the last-resort error) is not logging and is written directly.
fn init_logging(level: tracing::Level) {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .event_format(HumanLines)
        .try_init();
}

/// The CLI's log line format: the level as a word, then the message and the fields.
struct HumanLines;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for HumanLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG | tracing::Level::TRACE => "debug",
        };
        write!(writer, "{level}: ")?;
        context
            .field_format()
            .format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Writes to stdout for [`outln!`]: a closed pipe discards the rest quietly, any other failure
/// ends the process with an error line.
fn write_stdout(text: std::fmt::Arguments) {
    match std::io::stdout().lock().write_fmt(text) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            errln!("treemux: error: writing the output to stdout: {error}");
            std::process::exit(1);
        }
        _ => {}
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
    settings.pixel_format = OutputPixels::parse(&args.pix_fmt)
        .with_context(|| format!("--pix-fmt {}: expected source or yuv420p", args.pix_fmt))?;
    settings.autorotate = args.autorotate;
    settings.upscale = args.upscale;
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

    options.existing_output = if args.overwrite {
        ExistingOutput::Replace
    } else if args.no_overwrite {
        ExistingOutput::Keep
    } else {
        ExistingOutput::Refuse
    };

    // Progress goes to stderr: a bar on a terminal, a line every --stats-period elsewhere; none
    // with --json (stdout is data, stderr stays for errors) or --quiet.
    let mode = if args.json || args.quiet {
        ProgressMode::Hidden
    } else if std::io::stderr().is_terminal() {
        ProgressMode::Bar
    } else {
        ProgressMode::Lines
    };
    let display = ProgressDisplay::new(mode, args.verbose);
    let period = match mode {
        ProgressMode::Bar => BAR_REDRAW,
        ProgressMode::Lines | ProgressMode::Hidden => Duration::from_secs_f64(args.stats_period),
    };
    let result = std::thread::scope(|scope| {
        let (stop, stopped) = mpsc::channel::<()>();
        if mode != ProgressMode::Hidden {
            let display = &display;
            scope.spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    display.tick();
                }
            });
        }
        let result = local::transcode(&args.input, &args.output, &options, &|event| {
            display.update(event)
        });
        drop(stop);
        result
    });
    display.finish(result.is_ok());
    if result.is_err() && interrupt.load(Ordering::SeqCst) {
        let kept = if args.resume {
            "finished segments kept: run the same command again to continue"
        } else {
            "scratch files removed"
        };
        errln!(
            "treemux: {}: interrupted; no output written, {kept}",
            args.input.display()
        );
        return Ok(ExitCode::from(INTERRUPTED_EXIT_CODE));
    }
    let report = result?;
    for warning in &report.warnings {
        // The whole line is the warning: tests/corpus/judge.py reads it after "warning: ".
        tracing::warn!("{warning}");
    }
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&RunSummary::from(&report))?
        );
    } else if !args.quiet {
        print_transcode_summary(&report, args.verbose);
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

/// Where progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProgressMode {
    /// `--json` or `--quiet`.
    Hidden,
    /// stderr is a terminal: a bar redrawn in place.
    Bar,
    /// stderr is a file or a pipe: one plain line every `--stats-period`.
    Lines,
}

/// How often the terminal bar is redrawn.
const BAR_REDRAW: Duration = Duration::from_millis(200);

/// Width of a progress line on a log: fits an 80-column terminal or viewer.
const LINE_WIDTH: usize = 80;

/// Progress on stderr, from the counts in a [`ProgressTally`]: the same frames, rate, speed,
/// segments, merges and ETA as a bar on a terminal or as plain lines elsewhere.
struct ProgressDisplay {
    mode: ProgressMode,
    verbose: bool,
    tally: ProgressTally,
    started: Instant,
    bar: ProgressBar,
}

impl ProgressDisplay {
    fn new(mode: ProgressMode, verbose: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if mode == ProgressMode::Bar {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        if let Ok(style) = ProgressStyle::with_template("[{bar:20}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        Self {
            mode,
            verbose,
            tally: ProgressTally::new(),
            started: Instant::now(),
            bar,
        }
    }

    /// Counts `event` (from any worker); with --verbose, says what finished.
    fn update(&self, event: Progress) {
        self.tally.record(event);
        if !self.verbose || self.mode == ProgressMode::Hidden {
            return;
        }
        let snapshot = self.tally.snapshot(self.started.elapsed().as_secs_f64());
        let detail = match event {
            Progress::Planned {
                frames,
                segments,
                merges,
                duration_seconds,
            } => format!(
                "plan: {} over {duration_seconds:.3} s in {}, {}",
                count(frames, "frame"),
                count(u64::from(segments), "segment"),
                count(u64::from(merges), "merge")
            ),
            Progress::FrameEncoded => return,
            Progress::SegmentDone { index } => format!(
                "segment {index} encoded ({}/{})",
                snapshot.segments_done, snapshot.segments_total
            ),
            Progress::MergeDone { node } => format!(
                "merge {node} done ({}/{})",
                snapshot.merges_done, snapshot.merges_total
            ),
            Progress::AudioDone => "audio done".to_owned(),
            Progress::Muxing => "writing the output".to_owned(),
        };
        self.say(&format!("treemux: {detail}"));
    }

    /// Shows the progress now: redraws the bar, or prints a line once the plan is known.
    fn tick(&self) {
        let snapshot = self.tally.snapshot(self.started.elapsed().as_secs_f64());
        if snapshot.segments_total == 0 {
            return; // still probing: nothing to count yet
        }
        match self.mode {
            ProgressMode::Bar => {
                self.bar.set_length(snapshot.frames_total);
                self.bar.set_position(snapshot.frames_done);
                // The bar and its brackets take 23 columns.
                self.bar.set_message(snapshot.line(LINE_WIDTH - 23));
            }
            ProgressMode::Lines => errln!("{}", snapshot.line(LINE_WIDTH)),
            ProgressMode::Hidden => {}
        }
    }

    fn say(&self, line: &str) {
        match self.mode {
            ProgressMode::Bar => self.bar.println(line),
            ProgressMode::Lines => errln!("{line}"),
            ProgressMode::Hidden => {}
        }
    }

    /// Ends the display; on a log, a finished run's last line gives its final rate and speed
    /// (as ffmpeg's last stats line does).
    fn finish(&self, succeeded: bool) {
        self.bar.finish_and_clear();
        if succeeded && self.mode == ProgressMode::Lines {
            self.tick();
        }
    }
}

/// `1 segment`, `2 segments`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn print_transcode_summary(report: &TranscodeReport, verbose: bool) {
    let stages = &report.stages;
    let frames: u64 = report.segments.iter().map(|s| s.frames_encoded).sum();
    let speed = report.source.video.duration_seconds() / stages.total.max(1e-9);
    outln!(
        "{} -> {}: {} in {} ({} × {}), {:.1} s total ({:.1} fps, speed={speed:.1}x)",
        report.input.display(),
        report.output.display(),
        count(frames, "frame"),
        count(report.segments.len() as u64, "segment"),
        count(report.workers as u64, "worker"),
        count(u64::from(report.settings.threads), "thread"),
        stages.total,
        frames as f64 / stages.total.max(1e-9)
    );
    outln!(
        "  probe {:.2} s, plan {:.3} s, convert {:.2} s, merge {:.2} s, audio {:.2} s, remux {:.2} s; output {} bytes",
        stages.probe, stages.plan, stages.convert, stages.merge, stages.audio, stages.remux, report.output_bytes
    );
    if verbose {
        for segment in &report.segments {
            outln!(
                "  segment {}: {} ({} lead-in dropped), {:.2} s, {} bytes",
                segment.index,
                count(segment.frames_encoded, "frame"),
                segment.lead_in_dropped,
                segment.seconds,
                segment.bytes
            );
        }
    }
    if let Some(dir) = &report.temp_dir {
        outln!("  scratch kept in {}", dir.display());
    }
}

fn probe_command(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let info = probe::probe(&args.input)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = plan_options(&args.plan, cores)?;
    let plan = treemux_core::engine::plan_for(&info, &options)
        .with_context(|| format!("{}: cannot plan segments", args.input.display()))?;
    if args.json {
        let json = serde_json::json!({ "source": info, "keyframes_seconds": info.keyframe_seconds(), "plan": plan });
        outln!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_probe(&args.input, &info, &plan);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_probe(path: &Path, info: &MediaInfo, plan: &SegmentPlan) {
    let video = &info.video;
    outln!(
        "{}: {} ({} bytes)",
        path.display(),
        info.container,
        info.size_bytes
    );
    outln!(
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
    outln!(
        "  keyframes ({}): {}",
        keyframes.len(),
        abbreviate(&keyframes, 12)
    );
    for track in &info.audio {
        outln!(
            "  audio #{}: {} {} Hz {} ch, language {}, {} packets",
            track.stream_index,
            track.codec,
            track.sample_rate,
            track.channels,
            track.language().unwrap_or("-"),
            track.packets
        );
    }
    outln!("  plan: {}", count(plan.segments.len() as u64, "segment"));
    outln!(
        "    {:>4} {:>12} {:>12} {:>8} {:>8}",
        "seg",
        "start s",
        "end s",
        "frames",
        "lead-in"
    );
    let seconds = |pts: Option<i64>, default: i64| {
        video
            .time_base
            .seconds(pts.unwrap_or(default) - video.first_pts)
    };
    for segment in &plan.segments {
        outln!(
            "    {:>4} {:>12.3} {:>12.3} {:>8} {:>8}",
            segment.index,
            seconds(segment.start_pts, video.first_pts),
            seconds(segment.end_pts, video.end_pts),
            segment.frames,
            segment.lead_in_frames
        );
    }
    // Segments are merged pairwise up this tree as soon as both neighbours exist.
    outln!("  merge tree:");
    let tree = MergeTree::new(plan.segments.len() as u32);
    for line in tree.outline(|index| {
        let segment = &plan.segments[index as usize];
        format!(
            "segment {index}: {:.3}–{:.3} s, {}",
            seconds(segment.start_pts, video.first_pts),
            seconds(segment.end_pts, video.end_pts),
            count(segment.frames, "frame")
        )
    }) {
        outln!("    {line}");
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
        outln!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_verify(&args.output, &report);
    }
    if report.passed() {
        Ok(ExitCode::SUCCESS)
    } else {
        let failed: Vec<&str> = report.failures().map(|check| check.name.as_str()).collect();
        errln!(
            "treemux: error: {}: verification failed: {}",
            args.output.display(),
            failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

fn print_verify(output: &Path, report: &VerifyReport) {
    outln!(
        "{}: {} frames, PSNR {:.2} dB, SSIM {:.4}, {} bytes",
        output.display(),
        report.output_frames,
        report.psnr_db,
        report.ssim,
        report.output_bytes
    );
    for check in &report.checks {
        outln!(
            "  [{}] {}: {}",
            if check.passed { "ok" } else { "FAIL" },
            check.name,
            check.detail
        );
    }
    for dropped in &report.not_kept {
        outln!("  [not kept] {dropped}");
    }
}
