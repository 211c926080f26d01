//! `treemux probe` (streams, keyframes, the segment plan and its merge tree) and `treemux
//! verify` (an output checked against its source).

use crate::{count, plan_options, PlanArgs};
use anyhow::Context as _;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use treemux_core::media::package::PackageFormat;
use treemux_core::media::probe::{self, MediaInfo};
use treemux_core::media::verify::{self, VerifyOptions, VerifyReport};
use treemux_core::plan::SegmentPlan;
use treemux_core::tree::MergeTree;

#[derive(Args, Debug)]
pub(crate) struct ProbeArgs {
    input: PathBuf,
    #[command(flatten)]
    plan: PlanArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The file the output was made from.
    source: PathBuf,
    /// The output file, or an HLS master playlist (out/master.m3u8) or DASH manifest
    /// (out/manifest.mpd): every rendition is checked with the audio tracks.
    output: PathBuf,
    /// Lowest acceptable average PSNR in dB.
    #[arg(long, default_value_t = VerifyOptions::default().min_psnr_db)]
    min_psnr: f64,
    #[arg(long)]
    json: bool,
}

pub(crate) fn probe_command(args: ProbeArgs) -> anyhow::Result<ExitCode> {
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

pub(crate) fn verify_command(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let options = VerifyOptions {
        min_psnr_db: args.min_psnr,
        ..VerifyOptions::default()
    };
    if PackageFormat::from_path(&args.output).is_some() {
        return verify_package(&args, &options);
    }
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

/// `verify SOURCE out/master.m3u8` (or `out/manifest.mpd`): every rendition of the package, each with the package's
/// audio; passes when all do.
fn verify_package(args: &VerifyArgs, options: &VerifyOptions) -> anyhow::Result<ExitCode> {
    let verdicts = verify::verify_package(&args.source, &args.output, options)?;
    let passed = verdicts.iter().all(|verdict| verdict.report.passed());
    if args.json {
        let json = serde_json::json!({ "passed": passed, "renditions": verdicts });
        outln!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for verdict in &verdicts {
            print_verify(&verdict.rendition, &verdict.report);
        }
    }
    if passed {
        return Ok(ExitCode::SUCCESS);
    }
    for verdict in verdicts.iter().filter(|verdict| !verdict.report.passed()) {
        let failed: Vec<&str> = verdict
            .report
            .failures()
            .map(|check| check.name.as_str())
            .collect();
        errln!(
            "treemux: error: {}: verification failed: {}",
            verdict.rendition.display(),
            failed.join(", ")
        );
    }
    Ok(ExitCode::FAILURE)
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
