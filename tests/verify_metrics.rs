//! The PSNR and SSIM of `treemux_core::media::verify`, in process, against FFmpeg's own `psnr` and
//! `ssim` filters (the ffmpeg CLI) on generated clips with known distortions.
//!
//! Tolerances: PSNR within 0.001 dB and SSIM within 0.0001 of FFmpeg's printed values (it prints
//! six decimals; both sides sum the same integers, so only float rounding separates them).
//! Before verify's SSIM took FFmpeg's formula it differed by up to 0.003 here (on the noise clip).

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use treemux_core::media::verify::{verify, VerifyOptions};

const PSNR_TOLERANCE_DB: f64 = 0.001;
const SSIM_TOLERANCE: f64 = 0.0001;

/// A lossless 2 s test pattern of `size` (x264 `-qp 0`, 4:2:0): the reference.
fn reference(path: &Path, size: &str) {
    ffmpeg_clip(
        path,
        &[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=s={size}:r=25:d=2"),
            "-c:v",
            "libx264",
            "-qp",
            "0",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ],
    );
}

/// `source` through `encode` (ffmpeg output options, e.g. a filter and an encoder).
fn distorted(source: &Path, path: &Path, encode: &[&str]) {
    let mut args = vec!["-i", path_str(source)];
    args.extend_from_slice(encode);
    ffmpeg_clip(path, &args);
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// FFmpeg's verdict on `distorted` against `reference`: the `psnr` filter's `average` (all
/// planes) and the `ssim` filter's `Y` (luma), as it logs them. `None` for an infinite PSNR.
fn ffmpeg_metrics(distorted: &Path, reference: &Path) -> (Option<f64>, f64) {
    let output = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostats",
            "-i",
            path_str(distorted),
            "-i",
            path_str(reference),
        ])
        .args([
            "-lavfi",
            "[0:v]split[a0][a1];[1:v]split[b0][b1];[a0][b0]psnr;[a1][b1]ssim",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("the ffmpeg CLI runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let log = String::from_utf8_lossy(&output.stderr);
    let field = |line_marker: &str, key: &str| -> String {
        let line = log
            .lines()
            .find(|line| line.contains(line_marker))
            .unwrap_or_else(|| panic!("no {line_marker} line in ffmpeg's log:\n{log}"));
        let (_, rest) = line
            .split_once(key)
            .unwrap_or_else(|| panic!("no {key} in {line}"));
        rest.split_whitespace()
            .next()
            .expect("a value after the key")
            .to_owned()
    };
    let psnr = field("PSNR y:", "average:");
    let ssim = field("SSIM Y:", "SSIM Y:");
    (
        (psnr != "inf").then(|| psnr.parse().expect("a PSNR number")),
        ssim.parse().expect("an SSIM number"),
    )
}

/// verify's PSNR (all planes) and SSIM (luma) of `distorted` against `reference`.
fn treemux_metrics(reference: &Path, distorted: &Path) -> (f64, f64) {
    let options = VerifyOptions {
        min_psnr_db: 0.0,
        ..VerifyOptions::default()
    };
    let report = verify(reference, distorted, &options).expect("verify runs");
    assert_eq!(report.source_frames, 50, "both sides decode all 50 frames");
    assert_eq!(report.output_frames, 50);
    (report.psnr_db, report.ssim)
}

fn assert_agree(case: &str, reference: &Path, distorted: &Path) -> (f64, f64) {
    let (psnr, ssim) = treemux_metrics(reference, distorted);
    let (ffmpeg_psnr, ffmpeg_ssim) = ffmpeg_metrics(distorted, reference);
    let ffmpeg_psnr = ffmpeg_psnr.unwrap_or_else(|| panic!("{case}: ffmpeg saw no distortion"));
    assert!(
        (psnr - ffmpeg_psnr).abs() <= PSNR_TOLERANCE_DB,
        "{case}: PSNR {psnr} dB, ffmpeg's psnr filter {ffmpeg_psnr} dB"
    );
    assert!(
        (ssim - ffmpeg_ssim).abs() <= SSIM_TOLERANCE,
        "{case}: SSIM {ssim}, ffmpeg's ssim filter {ffmpeg_ssim}"
    );
    (psnr, ssim)
}

#[test]
fn psnr_and_ssim_agree_with_ffmpegs_filters() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.mkv");
    reference(&source, "320x240");

    // Luma raised by 4 everywhere (no sample clips: testsrc2 stays within 16–235), chroma
    // untouched: luma MSE 16 on two thirds of the samples, so PSNR = 10 log10(255² / (16 · 2/3)).
    let brighter = dir.path().join("brighter.mkv");
    distorted(
        &source,
        &brighter,
        &[
            "-vf",
            "lutyuv=y=val+4",
            "-c:v",
            "libx264",
            "-qp",
            "0",
            "-preset",
            "ultrafast",
        ],
    );
    let (psnr, ssim) = assert_agree("luma +4", &source, &brighter);
    let expected = 10.0 * (255.0f64 * 255.0 / (16.0 * 2.0 / 3.0)).log10();
    assert!(
        (psnr - expected).abs() < 0.001,
        "{psnr} against {expected} dB"
    );
    assert!(ssim > 0.99, "a uniform shift keeps the structure: {ssim}");

    // Temporal noise, stored losslessly: low SSIM, where the two formulas differed most.
    let noisy = dir.path().join("noisy.mkv");
    distorted(
        &source,
        &noisy,
        &[
            "-vf",
            "noise=alls=20:allf=t",
            "-c:v",
            "libx264",
            "-qp",
            "0",
            "-preset",
            "ultrafast",
        ],
    );
    let (noisy_psnr, noisy_ssim) = assert_agree("noise", &source, &noisy);
    assert!(
        noisy_ssim < 0.7 && noisy_psnr < psnr,
        "{noisy_psnr} dB, {noisy_ssim}"
    );

    // Real coding loss: x264 at CRF 45.
    let coarse = dir.path().join("coarse.mkv");
    distorted(
        &source,
        &coarse,
        &["-c:v", "libx264", "-crf", "45", "-preset", "ultrafast"],
    );
    assert_agree("x264 CRF 45", &source, &coarse);

    // Identical pictures: FFmpeg says inf, verify reports its ceiling of 100 dB and SSIM 1.
    let (psnr, ssim) = treemux_metrics(&source, &source);
    let (ffmpeg_psnr, ffmpeg_ssim) = ffmpeg_metrics(&source, &source);
    assert_eq!((psnr, ffmpeg_psnr), (100.0, None));
    assert!((ssim - 1.0).abs() < 1e-12 && (ffmpeg_ssim - 1.0).abs() < 1e-6);
}

#[test]
fn the_window_grid_matches_ffmpeg_at_sizes_not_a_multiple_of_eight() {
    // 350×198: 87 × 49 blocks of 4×4, a partial block column and row left out on both sides.
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.mkv");
    reference(&source, "350x198");
    let coarse = dir.path().join("coarse.mkv");
    distorted(
        &source,
        &coarse,
        &["-c:v", "libx264", "-crf", "40", "-preset", "ultrafast"],
    );
    assert_agree("350×198 at CRF 40", &source, &coarse);
}
