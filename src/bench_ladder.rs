//! `treemux bench --renditions LADDER`: the CPU of one run encoding every rung from one decode
//! against one single-rendition run per rung (same settings, each at its rung's height and
//! rate), measured with `wait4` as the rest of `bench` measures; medians over the repeats.

use crate::bench::{median, run_measured, BenchError};
use anyhow::Context as _;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use treemux_core::renditions::{parse_renditions, rendition_settings};
use treemux_core::settings::{EncodeSettings, RateControl, VideoCodec};

/// What the comparison measured (seconds; CPU is user + system of the child and its threads).
#[derive(Clone, Debug, Serialize)]
pub struct LadderBench {
    pub ladder: String,
    pub repeat: usize,
    pub ladder_cpu_s: f64,
    pub ladder_wall_s: f64,
    /// The sum over the rungs of each rung's own run.
    pub singles_cpu_s: f64,
    pub singles_wall_s: f64,
    /// `ladder_cpu_s / singles_cpu_s`: below 1 is what one decode saves.
    pub cpu_ratio: f64,
}

/// Runs the comparison on `input`; `common` are the transcode options both sides share
/// (codec, preset, workers), `rate` the job's rate (a rung without its own gets it, as
/// `transcode --renditions` gives it).
pub fn run(
    treemux: &Path,
    input: &Path,
    ladder: &str,
    (common, rate): (&[String], RateControl),
    repeat: usize,
    temp: &Path,
) -> Result<LadderBench, BenchError> {
    let rungs = parse_renditions(ladder).map_err(BenchError::Other)?;
    // Each rung's rate as the ladder run gives it (its own, or the job's, scaled for a bitrate).
    let mut base = EncodeSettings::new(VideoCodec::H264);
    base.rate = rate;
    let rung_settings = rendition_settings(&base, &rungs);
    let transcode = |output: PathBuf, extra: Vec<String>| {
        let mut args = vec![
            "transcode".to_owned(),
            input.display().to_string(),
            output.display().to_string(),
            "-y".to_owned(),
            "-q".to_owned(),
        ];
        args.extend(common.iter().cloned());
        args.extend(extra);
        args
    };
    let (mut ladder_cpu, mut ladder_wall, mut singles_cpu, mut singles_wall) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeat {
        let args = transcode(
            temp.join("ladder.mp4"),
            [
                vec!["--renditions".to_owned(), ladder.to_owned()],
                rate_args(rate),
            ]
            .concat(),
        );
        let (usage, _) = run_measured(treemux, &args, "treemux (ladder)")?;
        ladder_cpu.push(usage.cpu_s);
        ladder_wall.push(usage.wall_s);
        let (mut cpu, mut wall) = (0.0, 0.0);
        for rung in &rung_settings {
            let height = rung.height.unwrap_or_default();
            let args = transcode(
                temp.join(format!("single_{height}.mp4")),
                [
                    vec!["--height".to_owned(), height.to_string()],
                    rate_args(rung.rate),
                ]
                .concat(),
            );
            let (usage, _) = run_measured(treemux, &args, "treemux (one rendition)")?;
            cpu += usage.cpu_s;
            wall += usage.wall_s;
        }
        singles_cpu.push(cpu);
        singles_wall.push(wall);
    }
    let (ladder_cpu_s, singles_cpu_s) = (median(&ladder_cpu), median(&singles_cpu));
    Ok(LadderBench {
        ladder: ladder.to_owned(),
        repeat,
        ladder_cpu_s,
        ladder_wall_s: median(&ladder_wall),
        singles_cpu_s,
        singles_wall_s: median(&singles_wall),
        cpu_ratio: ladder_cpu_s / singles_cpu_s.max(1e-9),
    })
}

fn rate_args(rate: RateControl) -> Vec<String> {
    match rate {
        RateControl::Crf(crf) => vec!["--crf".to_owned(), crf.to_string()],
        RateControl::Bitrate(bits) => vec!["--bitrate".to_owned(), bits.to_string()],
    }
}

/// `bench --renditions`: one ladder run against one run per rung, printed or as JSON.
pub(crate) fn command(
    input: &Path,
    ladder: &str,
    settings: &EncodeSettings,
    (workers, repeat, temp_dir): (Option<usize>, usize, Option<&Path>),
    json: bool,
) -> anyhow::Result<ExitCode> {
    let treemux = std::env::current_exe().context("cannot find the treemux executable")?;
    let temp = tempfile::Builder::new()
        .prefix("treemux-bench-")
        .tempdir_in(temp_dir.map_or_else(std::env::temp_dir, Path::to_owned))?;
    let mut common = vec![
        "--codec".to_owned(),
        settings.codec.to_string(),
        "--preset".to_owned(),
        settings.preset.clone(),
    ];
    if let Some(workers) = workers {
        common.extend(["--workers".to_owned(), workers.to_string()]);
    }
    let report = run(
        &treemux,
        input,
        ladder,
        (&common, settings.rate),
        repeat,
        temp.path(),
    )?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!(
            "{}: ladder {} from one decode: CPU {:.2} s (wall {:.2} s); one run per rung: CPU \
             {:.2} s (wall {:.2} s); ratio {:.3} (median of {})",
            input.display(),
            report.ladder,
            report.ladder_cpu_s,
            report.ladder_wall_s,
            report.singles_cpu_s,
            report.singles_wall_s,
            report.cpu_ratio,
            report.repeat
        );
    }
    Ok(ExitCode::SUCCESS)
}
