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
mod bench_ladder;
mod dry_run;
mod encode_args;
mod inspect_cli;
mod jobs_cli;
mod model;
mod model_chart;
mod model_input;
mod progress_bar;
mod stack_cli;
mod timeline;
mod transcode_cli;
mod tree_diagram;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

pub(crate) use encode_args::{at_least_one, encode_settings, plan_options, EncodeArgs, PlanArgs};

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
    Transcode(transcode_cli::TranscodeArgs),
    /// Show streams, keyframes and the segment plan for INPUT.
    Probe(inspect_cli::ProbeArgs),
    /// Check OUTPUT against SOURCE: frames, timestamps, duration, audio, rotation, PSNR/SSIM.
    Verify(inspect_cli::VerifyArgs),
    /// Measure treemux against one ffmpeg process on this machine: time, CPU, memory, size, quality.
    Bench(bench_cli::BenchArgs),
    /// Project a serverless run and EC2 baselines from measured costs (a model, not a measurement).
    Model(bench_cli::ModelArgs),
    /// Draw a finished run's merge tree and timeline (SVG) from its JSON (`transcode --json`).
    Diagram(bench_cli::DiagramArgs),
    /// Start a job on a deployed or local stack for s3://bucket/key (no re-upload); prints its id.
    Submit(jobs_cli::SubmitArgs),
    /// Follow a job (by id, or s3://bucket/key for the key's newest) to its end: progress, then
    /// outputs and timings.
    Status(jobs_cli::StatusArgs),
    /// List a stack's recent jobs: state, age, input, output.
    Jobs(jobs_cli::JobsArgs),
    /// Other subcommands run `treemux-SUBCOMMAND` (beside this binary or on PATH):
    /// `treemux worker` takes state-machine tasks from SQS (built by the worker crate).
    #[command(external_subcommand)]
    External(Vec<OsString>),
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
        Command::Transcode(args) => transcode_cli::transcode(args),
        Command::Probe(args) => inspect_cli::probe_command(args),
        Command::Verify(args) => inspect_cli::verify_command(args),
        Command::Bench(args) => bench_cli::bench_command(args),
        Command::Model(args) => bench_cli::model_command(args),
        Command::Diagram(args) => bench_cli::diagram_command(args),
        Command::Submit(args) => jobs_cli::submit_command(args),
        Command::Status(args) => jobs_cli::status_command(args),
        Command::Jobs(args) => jobs_cli::jobs_command(args),
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

/// `1 segment`, `2 segments`.
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
