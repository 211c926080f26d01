//! `treemux bench`: treemux against one ffmpeg process (the "one big machine" baseline) on this
//! machine, back to back and alternating, with quality and size side by side.
//!
//! Both sides run as child processes so wall time, CPU time and peak memory are measured the same
//! way (`wait4`'s resource usage). Timings are medians over the repeats; quality, frame counts and
//! sizes come from the last run of each side (encodes are deterministic, see [`treemux_core::process`]).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use treemux_core::local::{StageSeconds, TaskSpan};
use treemux_core::media::probe::probe;
use treemux_core::media::verify::{verify, VerifyOptions};
use treemux_core::settings::{EncodeSettings, RateControl, VideoCodec};
use treemux_core::summary::RunSummary;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub input: PathBuf,
    pub settings: EncodeSettings,
    /// treemux segment workers (`None`: its default, one per core).
    pub workers: Option<usize>,
    /// Runs of each side.
    pub repeat: usize,
    /// The `treemux` executable to benchmark (normally this one).
    pub treemux: PathBuf,
    /// The `ffmpeg` executable for the baseline.
    pub ffmpeg: PathBuf,
    /// Where outputs go while measuring (a fresh temporary directory inside it).
    pub temp_root: Option<PathBuf>,
    /// Also time a single-thread encode once, for parallel efficiency.
    pub single_thread_reference: bool,
    /// An ffmpeg with libvmaf (e.g. the `imageio-ffmpeg` wheel's) for VMAF scores.
    pub vmaf_ffmpeg: Option<PathBuf>,
}

/// Wall time, CPU time and peak memory of one child process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub wall_s: f64,
    /// User plus system CPU seconds of the process and its threads.
    pub cpu_s: f64,
    pub max_rss_bytes: u64,
}

/// One side's results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SideReport {
    /// Medians over the runs.
    pub wall_s: f64,
    pub cpu_s: f64,
    pub max_rss_mb: f64,
    /// Every run, in order.
    pub runs: Vec<Usage>,
    /// The video stream's bytes (audio left out: the baseline has none).
    pub bytes: u64,
    pub file_bytes: u64,
    pub frames: u64,
    pub psnr_db: f64,
    pub ssim: f64,
    pub vmaf: Option<f64>,
    /// Single-thread CPU seconds of the reference encode ÷ (cores × wall).
    pub parallel_efficiency: Option<f64>,
}

/// treemux's own report of its last run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TreemuxDetail {
    pub segments: usize,
    pub workers: usize,
    /// Median per-stage seconds over the runs.
    pub stages_s: StageSeconds,
    /// Share of wall time outside the segment-encoding window: probe, plan, the merges and
    /// audio left after the last segment, remux.
    pub non_encode_share: f64,
    /// Share of wall time from the first worker out of segments to the last segment's end
    /// ([`crate::timeline::encode_idle_tail`] of the last run ÷ its total).
    #[serde(default)]
    pub idle_tail_share: f64,
    /// Peak memory divided by the workers: an upper bound per worker.
    pub max_rss_per_worker_mb: f64,
    pub timeline: Vec<TaskSpan>,
    pub verify_passed: bool,
}

/// Everything `treemux bench` measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub input: PathBuf,
    pub source_frames: u64,
    pub source_seconds: f64,
    pub width: u32,
    pub height: u32,
    pub codec: String,
    pub rate: String,
    pub preset: String,
    pub cores: usize,
    pub repeat: usize,
    /// The baseline's command line (output path elided).
    pub baseline_command: String,
    pub baseline: SideReport,
    pub treemux: SideReport,
    pub treemux_detail: TreemuxDetail,
    /// treemux wall ÷ baseline wall (medians): below 1 means treemux is faster.
    pub ratio: f64,
    /// treemux's, repeated at the top level for scripts.
    pub parallel_efficiency: Option<f64>,
    pub single_thread_cpu_s: Option<f64>,
}

/// Why a benchmark could not finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{program}: cannot run: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed ({status}): {stderr}")]
    Failed {
        what: String,
        status: String,
        stderr: String,
    },
    #[error("{0}")]
    Other(String),
}

/// The ffmpeg command line that encodes `input`'s video like treemux does: same encoder and
/// options, 8-bit 4:2:0 at even size, timestamps passed through, rotation kept as metadata, no
/// audio; encoder threads left to ffmpeg (every core). `threads = Some(1)` makes the
/// single-thread reference.
pub fn baseline_args(
    input: &Path,
    output: &Path,
    settings: &EncodeSettings,
    threads: Option<u32>,
) -> Vec<String> {
    let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    args.extend([
        "-noautorotate".into(),
        "-i".into(),
        input.display().to_string(),
    ]);
    args.extend(
        [
            "-map",
            "0:v:0",
            "-an",
            "-sn",
            "-dn",
            "-fps_mode",
            "passthrough",
            "-vf",
            "crop=trunc(iw/2)*2:trunc(ih/2)*2",
            "-pix_fmt",
            "yuv420p",
        ]
        .map(str::to_owned),
    );
    let crf = match settings.rate {
        RateControl::Crf(crf) => Some(crf.to_string()),
        RateControl::Bitrate(_) => None,
    };
    let mut push = |pairs: &[(&str, String)]| {
        for (key, value) in pairs {
            args.push((*key).to_owned());
            args.push(value.clone());
        }
    };
    match settings.codec {
        VideoCodec::H264 => push(&[
            ("-c:v", "libx264".into()),
            ("-preset", settings.preset.clone()),
        ]),
        VideoCodec::H265 => push(&[
            ("-c:v", "libx265".into()),
            ("-preset", settings.preset.clone()),
            ("-x265-params", "log-level=error".into()),
        ]),
        VideoCodec::Vp9 => push(&[
            ("-c:v", "libvpx-vp9".into()),
            ("-deadline", "good".into()),
            ("-cpu-used", settings.preset.clone()),
            ("-row-mt", "1".into()),
        ]),
        VideoCodec::Av1 => push(&[
            ("-c:v", "libsvtav1".into()),
            ("-preset", settings.preset.clone()),
        ]),
    }
    match (&crf, settings.rate) {
        (Some(crf), _) => {
            push(&[("-crf", crf.clone())]);
            if settings.codec == VideoCodec::Vp9 {
                push(&[("-b:v", "0".into())]);
            }
        }
        (None, RateControl::Bitrate(bits)) => push(&[("-b:v", bits.to_string())]),
        (None, RateControl::Crf(_)) => {}
    }
    if let Some(threads) = threads {
        match settings.codec {
            // libx265 and SVT-AV1 take their thread counts in their own parameters.
            VideoCodec::H265 => push(&[(
                "-x265-params",
                format!("log-level=error:pools={threads}:frame-threads={threads}"),
            )]),
            VideoCodec::Av1 => push(&[("-svtav1-params", format!("lp={threads}"))]),
            _ => push(&[("-threads", threads.to_string())]),
        }
    }
    args.push(output.display().to_string());
    args
}

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    // `+ 0.0` turns a -0.0 (a tiny negative stage time rounded) into 0.0 for display.
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2] + 0.0,
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 + 0.0,
    }
}

/// Runs `program args` to completion and measures it; fails on a non-zero exit.
pub fn run_measured(
    program: &Path,
    args: &[String],
    what: &str,
) -> Result<(Usage, String), BenchError> {
    use std::os::unix::process::ExitStatusExt as _;
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| BenchError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    // Read the pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; the pointers are valid locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_s = started.elapsed().as_secs_f64();
    if waited != pid {
        return Err(BenchError::Other(format!(
            "{what}: waiting for the process failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let exit = std::process::ExitStatus::from_raw(status);
    if !exit.success() {
        return Err(BenchError::Failed {
            what: what.to_owned(),
            status: exit.to_string(),
            stderr: stderr.trim().lines().last().unwrap_or("").to_owned(),
        });
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        Usage {
            wall_s,
            cpu_s: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            // Linux reports ru_maxrss in kilobytes.
            max_rss_bytes: (usage.ru_maxrss.max(0) as u64) * 1024,
        },
        stdout,
    ))
}

fn rate_text(rate: RateControl) -> String {
    match rate {
        RateControl::Crf(crf) => format!("crf {crf}"),
        RateControl::Bitrate(bits) => format!("{bits} b/s"),
    }
}

fn treemux_args(options: &BenchOptions, output: &Path) -> Vec<String> {
    let settings = &options.settings;
    let mut args = vec![
        "transcode".to_owned(),
        options.input.display().to_string(),
        output.display().to_string(),
        // Every run writes the same output path: replace the previous run's.
        "--overwrite".to_owned(),
        "--json".to_owned(),
        "--codec".to_owned(),
        settings.codec.to_string(),
        "--preset".to_owned(),
        settings.preset.clone(),
    ];
    match settings.rate {
        RateControl::Crf(crf) => args.extend(["--crf".to_owned(), crf.to_string()]),
        RateControl::Bitrate(bits) => args.extend(["--bitrate".to_owned(), bits.to_string()]),
    }
    if let Some(workers) = options.workers {
        args.extend(["--workers".to_owned(), workers.to_string()]);
    }
    if let Some(root) = &options.temp_root {
        args.extend(["--temp-dir".to_owned(), root.display().to_string()]);
    }
    args
}

/// VMAF of `distorted` against `reference` with an ffmpeg that has libvmaf.
fn vmaf(ffmpeg: &Path, distorted: &Path, reference: &Path) -> Option<f64> {
    let output = Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-noautorotate", "-i"])
        .arg(distorted)
        .args(["-noautorotate", "-i"])
        .arg(reference)
        .args([
            "-lavfi",
            "[0:v]setpts=PTS-STARTPTS,format=yuv420p[d];[1:v]setpts=PTS-STARTPTS,crop=trunc(iw/2)*2:trunc(ih/2)*2,format=yuv420p[r];[d][r]libvmaf",
            "-f",
            "null",
            "-",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stderr);
    text.lines()
        .filter_map(|line| line.split("VMAF score:").nth(1))
        .find_map(|score| score.trim().parse().ok())
}

/// Runs the benchmark. `progress` receives one line per finished run.
pub fn run(options: &BenchOptions, progress: &dyn Fn(&str)) -> Result<BenchReport, BenchError> {
    let info = probe(&options.input).map_err(|e| BenchError::Other(e.to_string()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let scratch = match &options.temp_root {
        Some(root) => tempfile::Builder::new()
            .prefix("treemux-bench-")
            .tempdir_in(root),
        None => tempfile::Builder::new().prefix("treemux-bench-").tempdir(),
    }
    .map_err(|e| BenchError::Other(format!("cannot create a scratch directory: {e}")))?;
    let extension = if options.settings.codec == VideoCodec::Vp9 {
        "webm"
    } else {
        "mp4"
    };
    let baseline_output = scratch.path().join(format!("baseline.{extension}"));
    let treemux_output = scratch.path().join(format!("treemux.{extension}"));
    let baseline_arguments =
        baseline_args(&options.input, &baseline_output, &options.settings, None);

    let (mut baseline_runs, mut treemux_runs, mut stage_runs) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut last_summary: Option<RunSummary> = None;
    for round in 1..=options.repeat.max(1) {
        // Alternate which side goes first so drift on a shared machine hits both alike.
        let treemux_first = round % 2 == 0;
        for side in if treemux_first { [1, 0] } else { [0, 1] } {
            if side == 0 {
                let (usage, _) =
                    run_measured(&options.ffmpeg, &baseline_arguments, "baseline ffmpeg")?;
                progress(&format!(
                    "round {round}: baseline {:.2} s wall, {:.2} s CPU",
                    usage.wall_s, usage.cpu_s
                ));
                baseline_runs.push(usage);
            } else {
                let (usage, stdout) = run_measured(
                    &options.treemux,
                    &treemux_args(options, &treemux_output),
                    "treemux transcode",
                )?;
                progress(&format!(
                    "round {round}: treemux  {:.2} s wall, {:.2} s CPU",
                    usage.wall_s, usage.cpu_s
                ));
                treemux_runs.push(usage);
                let summary: RunSummary = serde_json::from_str(&stdout)
                    .map_err(|e| BenchError::Other(format!("treemux --json output: {e}")))?;
                stage_runs.push(summary.stages_seconds.clone());
                last_summary = Some(summary);
            }
        }
    }

    let single_thread_cpu_s = if options.single_thread_reference {
        let reference = scratch.path().join(format!("reference.{extension}"));
        let (usage, _) = run_measured(
            &options.ffmpeg,
            &baseline_args(&options.input, &reference, &options.settings, Some(1)),
            "single-thread reference ffmpeg",
        )?;
        progress(&format!(
            "single-thread reference: {:.2} s CPU",
            usage.cpu_s
        ));
        Some(usage.cpu_s)
    } else {
        None
    };

    let side = |runs: &[Usage], output: &Path| -> Result<SideReport, BenchError> {
        let report = verify(&options.input, output, &VerifyOptions::default())
            .map_err(|e| BenchError::Other(e.to_string()))?;
        let video = probe(output).map_err(|e| BenchError::Other(e.to_string()))?;
        let wall_s = median(&runs.iter().map(|u| u.wall_s).collect::<Vec<_>>());
        Ok(SideReport {
            wall_s,
            cpu_s: median(&runs.iter().map(|u| u.cpu_s).collect::<Vec<_>>()),
            max_rss_mb: median(
                &runs
                    .iter()
                    .map(|u| u.max_rss_bytes as f64 / 1e6)
                    .collect::<Vec<_>>(),
            ),
            runs: runs.to_vec(),
            bytes: video.video.packet_bytes,
            file_bytes: video.size_bytes,
            frames: report.output_frames,
            psnr_db: report.psnr_db,
            ssim: report.ssim,
            vmaf: options
                .vmaf_ffmpeg
                .as_deref()
                .and_then(|ffmpeg| vmaf(ffmpeg, output, &options.input)),
            parallel_efficiency: single_thread_cpu_s.map(|cpu| cpu / (cores as f64 * wall_s)),
        })
    };
    let baseline = side(&baseline_runs, &baseline_output)?;
    let treemux = side(&treemux_runs, &treemux_output)?;
    let treemux_verified = verify(&options.input, &treemux_output, &VerifyOptions::default())
        .is_ok_and(|report| report.passed());

    let median_of =
        |pick: fn(&StageSeconds) -> f64| median(&stage_runs.iter().map(pick).collect::<Vec<_>>());
    let stages_s = StageSeconds {
        probe: median_of(|s| s.probe),
        plan: median_of(|s| s.plan),
        convert: median_of(|s| s.convert),
        merge: median_of(|s| s.merge),
        audio: median_of(|s| s.audio),
        remux: median_of(|s| s.remux),
        total: median_of(|s| s.total),
    };
    let last_summary = last_summary.expect("every bench runs treemux at least once (repeat >= 1)");
    let workers = last_summary.workers.max(1);
    let treemux_detail = TreemuxDetail {
        segments: last_summary.segments.len(),
        workers,
        non_encode_share: if stages_s.total > 0.0 {
            ((stages_s.total - stages_s.convert) / stages_s.total).max(0.0)
        } else {
            0.0
        },
        max_rss_per_worker_mb: treemux.max_rss_mb / workers as f64,
        // Of the last run, whose timeline this is.
        idle_tail_share: match (
            crate::timeline::encode_idle_tail(&last_summary.timeline),
            stage_runs.last().map(|stages| stages.total),
        ) {
            (Some(tail), Some(total)) if total > 0.0 => tail / total,
            _ => 0.0,
        },
        stages_s,
        timeline: last_summary.timeline,
        verify_passed: treemux_verified,
    };
    Ok(BenchReport {
        input: options.input.clone(),
        source_frames: info.video.frame_count,
        source_seconds: info.video.duration_seconds(),
        width: info.video.width,
        height: info.video.height,
        codec: options.settings.codec.to_string(),
        rate: rate_text(options.settings.rate),
        preset: options.settings.preset.clone(),
        cores,
        repeat: options.repeat.max(1),
        baseline_command: format!(
            "ffmpeg {}",
            baseline_arguments[..baseline_arguments.len() - 1].join(" ")
        ),
        ratio: if baseline.wall_s > 0.0 {
            treemux.wall_s / baseline.wall_s
        } else {
            f64::NAN
        },
        parallel_efficiency: treemux.parallel_efficiency,
        single_thread_cpu_s,
        baseline,
        treemux,
        treemux_detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 2.0]), 2.0);
    }

    #[test]
    fn the_baseline_encodes_like_treemux() {
        let mut settings = EncodeSettings::new(VideoCodec::H264);
        settings.preset = "medium".into();
        let args = baseline_args(Path::new("in.mov"), Path::new("out.mp4"), &settings, None);
        let joined = args.join(" ");
        for expected in [
            "-noautorotate -i in.mov",
            "-map 0:v:0 -an",
            "-fps_mode passthrough",
            "-pix_fmt yuv420p",
            "-c:v libx264 -preset medium -crf 23",
        ] {
            assert!(
                joined.contains(expected),
                "{expected:?} missing from {joined}"
            );
        }
        assert!(!joined.contains("-threads"), "the baseline uses every core");
        assert_eq!(args.last().map(String::as_str), Some("out.mp4"));

        let vp9 = EncodeSettings::new(VideoCodec::Vp9);
        let joined = baseline_args(Path::new("a"), Path::new("b.webm"), &vp9, Some(1)).join(" ");
        assert!(
            joined.contains("-c:v libvpx-vp9 -deadline good -cpu-used 4 -row-mt 1 -crf 31 -b:v 0"),
            "{joined}"
        );
        assert!(joined.contains("-threads 1"));
        let av1 = EncodeSettings::new(VideoCodec::Av1);
        let joined = baseline_args(Path::new("a"), Path::new("b.mkv"), &av1, Some(1)).join(" ");
        assert!(joined.contains("-svtav1-params lp=1"), "{joined}");
    }
}
