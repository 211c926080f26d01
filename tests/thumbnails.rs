//! `transcode --poster` / `--thumbnails N`: the poster and the sprite sheets at the displayed
//! size and aspect (ffprobe), every tile the source frame at its time (PSNR against
//! `ffmpeg -ss T -i SRC -frames:v 1` scaled alike), the WebVTT index parsed (contiguous cues
//! covering the video, each `#xywh=` inside its sheet); a rotated sample; an HLS package; a
//! crashed run resumed; the existing-output rules; bad options refused before any work.

mod common;

use common::{ffmpeg_clip, path, run, shared_samples, stderr};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A cue of the index: start and end (seconds), sheet file, rectangle.
#[derive(Debug)]
struct Cue {
    start: f64,
    end: f64,
    sheet: String,
    rect: (u32, u32, u32, u32),
}

fn vtt_seconds(text: &str) -> f64 {
    let parts: Vec<f64> = text
        .split(':')
        .map(|part| part.parse().unwrap_or_else(|_| panic!("VTT time {text}")))
        .collect();
    assert_eq!(parts.len(), 3, "VTT time {text} is HH:MM:SS.mmm");
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

/// Parses a WebVTT file of thumbnail cues (panics on anything else).
fn parse_vtt(file: &Path) -> Vec<Cue> {
    let text = std::fs::read_to_string(file).expect("the VTT file reads");
    let mut blocks = text.split("\n\n");
    assert_eq!(blocks.next().map(str::trim), Some("WEBVTT"), "{text}");
    blocks
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let lines: Vec<&str> = block.trim().lines().collect();
            assert_eq!(
                lines.len(),
                2,
                "a cue is a timing line and a payload: {block}"
            );
            let (start, end) = lines[0].split_once(" --> ").expect("timing line");
            let (sheet, rect) = lines[1].split_once("#xywh=").expect("#xywh= fragment");
            let numbers: Vec<u32> = rect
                .split(',')
                .map(|n| n.parse().expect("xywh numbers"))
                .collect();
            assert_eq!(numbers.len(), 4, "{rect}");
            Cue {
                start: vtt_seconds(start),
                end: vtt_seconds(end),
                sheet: sheet.to_owned(),
                rect: (numbers[0], numbers[1], numbers[2], numbers[3]),
            }
        })
        .collect()
}

/// Width and height of a picture or of a video's first stream as displayed (ffprobe; the
/// display matrix's quarter turns swap them).
fn displayed_size(file: &Path) -> (u32, u32) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let stream = &json["streams"][0];
    let (w, h) = (
        stream["width"].as_u64().expect("width") as u32,
        stream["height"].as_u64().expect("height") as u32,
    );
    let rotation = stream["side_data_list"]
        .as_array()
        .and_then(|list| list.iter().find_map(|d| d["rotation"].as_f64()))
        .unwrap_or(0.0);
    if (rotation.abs() - 90.0).abs() < 1.0 {
        (h, w)
    } else {
        (w, h)
    }
}

/// A video stream's `duration` or `start_time`, seconds (ffprobe).
fn stream_seconds(file: &Path, entry: &str) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", &format!("stream={entry}"), "-of", "json"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    json["streams"][0][entry]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("{}: no video {entry}", file.display()))
}

fn duration(file: &Path) -> f64 {
    stream_seconds(file, "duration")
}

/// Luma of one picture as raw 8-bit samples, through the ffmpeg CLI: `input_args` then `-vf`.
fn luma(input_args: &[&str], filter: &str) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(input_args)
        .args([
            "-frames:v",
            "1",
            "-vf",
            filter,
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg: {}", stderr(&out));
    out.stdout
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "pictures of one size");
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        100.0
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// The source frame `seconds` after its first (thumbnail times count from there) as
/// `ffmpeg -ss` finds it (autorotated), scaled to `w`x`h`.
fn source_frame(source: &Path, seconds: f64, (w, h): (u32, u32)) -> Vec<u8> {
    let at = stream_seconds(source, "start_time") + seconds;
    luma(
        &["-ss", &format!("{at:.4}"), "-i", path(source)],
        &format!("scale={w}:{h}:flags=bicubic"),
    )
}

/// Checks the index and every sheet against the source: cues contiguous from 0 to the output's
/// duration, every rectangle inside its sheet and of the tile size, each tile the source frame
/// at its cue's start (PSNR ≥ `min_psnr`), and better matched than a frame `shift` cues away.
/// Returns the number of cues.
fn check_thumbnails(
    source: &Path,
    output: &Path,
    vtt: &Path,
    interval: f64,
    tile: (u32, u32),
    min_psnr: f64,
) -> usize {
    let dir = vtt.parent().expect("the index has a directory");
    let cues = parse_vtt(vtt);
    assert!(!cues.is_empty());
    assert_eq!(cues[0].start, 0.0);
    for (k, pair) in cues.windows(2).enumerate() {
        assert_eq!(
            pair[0].end, pair[1].start,
            "cue {k} and the next are contiguous"
        );
        assert!(
            (pair[0].end - pair[0].start - interval).abs() < 0.0015,
            "cue {k} lasts N s"
        );
    }
    let last = cues.last().expect("cues");
    let video = duration(output);
    assert!(
        (last.end - video).abs() < 0.05 && last.end > last.start,
        "the last cue ends at the video's end ({} vs {video})",
        last.end
    );
    for (k, cue) in cues.iter().enumerate() {
        let sheet = dir.join(&cue.sheet);
        let (sw, sh) = displayed_size(&sheet);
        let (x, y, w, h) = cue.rect;
        assert_eq!((w, h), tile, "cue {k}: the tile size");
        assert!(
            x + w <= sw && y + h <= sh,
            "cue {k}: {:?} inside {sw}x{sh}",
            cue.rect
        );
        let tile_luma = luma(&["-i", path(&sheet)], &format!("crop={w}:{h}:{x}:{y}"));
        let wanted = psnr(&tile_luma, &source_frame(source, cue.start, tile));
        assert!(
            wanted >= min_psnr,
            "cue {k} at {} s: PSNR {wanted:.1} dB against the source frame",
            cue.start
        );
        // The measure tells frames apart: the tile is further from a frame two cues away.
        if cues.len() > 2 && k % 3 == 0 {
            let other = cues[(k + 2) % cues.len()].start;
            let elsewhere = psnr(&tile_luma, &source_frame(source, other, tile));
            assert!(
                elsewhere < wanted - 3.0,
                "cue {k}: {wanted:.1} dB at its time, {elsewhere:.1} dB at {other} s"
            );
        }
    }
    cues.len()
}

/// 320x180 at 25 fps, 13 s, moving pattern with its own clock, 2 s keyframes.
fn clip(dir: &Path) -> PathBuf {
    let source = dir.join("clock.mp4");
    ffmpeg_clip(
        &source,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=25:d=13",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    source
}

#[test]
fn poster_and_sheets_show_the_source_frames_at_their_times() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip(dir.path());
    let output = dir.path().join("out.mp4");
    // 0.1 s tiles: 130 of them, two sheets (100 + 30).
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--thumbnails",
        "0.1",
        "--segments",
        "4",
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let summary = common::json(&result);
    let listed: Vec<String> = summary["thumbnails"]
        .as_array()
        .expect("the summary lists the thumbnails")
        .iter()
        .map(|f| f["name"].as_str().expect("name").to_owned())
        .collect();
    let names = [
        "out.poster.jpg",
        "out.thumbnails-0.jpg",
        "out.thumbnails-1.jpg",
        "out.thumbnails.vtt",
    ];
    for name in names {
        assert!(dir.path().join(name).is_file(), "{name} written");
        assert!(
            listed.iter().any(|f| f.ends_with(name)),
            "{name} in {listed:?}"
        );
    }
    assert_eq!(listed.len(), names.len());
    assert_eq!(
        displayed_size(&dir.path().join("out.thumbnails-0.jpg")),
        (1600, 900)
    );
    assert_eq!(
        displayed_size(&dir.path().join("out.thumbnails-1.jpg")),
        (1600, 270)
    );
    let cues = check_thumbnails(
        &source,
        &output,
        &dir.path().join("out.thumbnails.vtt"),
        0.1,
        (160, 90),
        30.0,
    );
    assert_eq!(cues, 130);
    // The poster: the displayed size, the frame 10% in (1.3 s).
    let poster = dir.path().join("out.poster.jpg");
    assert_eq!(displayed_size(&poster), (320, 180));
    let poster_luma = luma(&["-i", path(&poster)], "null");
    assert!(psnr(&poster_luma, &source_frame(&source, 1.3, (320, 180))) >= 32.0);
    assert!(psnr(&poster_luma, &source_frame(&source, 2.3, (320, 180))) < 25.0);
    // No scratch left behind: only the source, the output and its thumbnails.
    assert_eq!(common::entries(dir.path()).len(), 1 + 1 + names.len());
}

#[test]
fn rotated_sample_thumbnails_are_upright_at_the_displayed_aspect() {
    let Some(samples) = shared_samples() else {
        return;
    };
    let source = samples.join("10_bbb_rotated90_h264_aac51_1080p.mp4");
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("rot.mp4");
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--thumbnails",
        "0.25",
        "--height",
        "360",
        "--poster-at",
        "1",
        "--segments",
        "2",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    // Shown as 202x360 (stored 360x202, turned by the display matrix).
    let shown = displayed_size(&output);
    assert_eq!(shown, (202, 360));
    let poster = dir.path().join("rot.poster.jpg");
    assert_eq!(displayed_size(&poster), shown);
    let poster_luma = luma(&["-i", path(&poster)], "null");
    let at_one = psnr(&poster_luma, &source_frame(&source, 1.0, shown));
    assert!(at_one >= 29.0, "poster PSNR {at_one:.1} dB");
    // Turned the right way: the stored frame turned the other way (upside down from upright)
    // matches worse.
    let wrong_way = luma(
        &[
            "-noautorotate",
            "-ss",
            &format!("{:.4}", stream_seconds(&source, "start_time") + 1.0),
            "-i",
            path(&source),
        ],
        "transpose=2,scale=202:360",
    );
    let wrong = psnr(&poster_luma, &wrong_way);
    assert!(
        wrong < at_one - 3.0,
        "{wrong:.1} dB turned the wrong way, {at_one:.1} dB upright"
    );
    // 160 wide, the height following the displayed aspect: 160 × 360 / 202 = 285 → 284.
    check_thumbnails(
        &source,
        &output,
        &dir.path().join("rot.thumbnails.vtt"),
        0.25,
        (160, 284),
        28.0,
    );
}

#[test]
fn a_package_gets_its_thumbnails_inside_its_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip(dir.path());
    let manifest = dir.path().join("pkg").join("master.m3u8");
    let result = run(&[
        "transcode",
        path(&source),
        path(&manifest),
        "--renditions",
        "180,90",
        "--thumbnails",
        "2",
        "--segments",
        "3",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let pkg = dir.path().join("pkg");
    for name in ["poster.jpg", "thumbnails.vtt", "thumbnails-0.jpg"] {
        assert!(pkg.join(name).is_file(), "{name} in the package");
    }
    // One set, from the source picture at the tallest rung's displayed size.
    assert_eq!(displayed_size(&pkg.join("poster.jpg")), (320, 180));
    let cues = parse_vtt(&pkg.join("thumbnails.vtt"));
    assert_eq!(cues.len(), 7);
    assert_eq!(cues[3].sheet, "thumbnails-0.jpg");
    assert_eq!(cues[3].rect, (480, 0, 160, 90));
}

#[test]
fn a_crashed_run_resumes_with_every_tile_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip(dir.path());
    let output = dir.path().join("out.mp4");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("scratch root");
    let args = [
        "transcode",
        path(&source),
        path(&output),
        "--thumbnails",
        "0.5",
        "--segments",
        "4",
        "--workers",
        "1",
        "--resume",
        "--temp-dir",
        path(&scratch),
    ];
    let crashed = common::treemux()
        .args(args)
        .env("TREEMUX_FAULT", "after-segment:2")
        .output()
        .expect("treemux runs");
    assert!(!crashed.status.success(), "the crash point fired");
    for name in [
        "out.mp4",
        "out.poster.jpg",
        "out.thumbnails.vtt",
        "out.thumbnails-0.jpg",
    ] {
        assert!(
            !dir.path().join(name).exists(),
            "{name} not written by the crashed run"
        );
    }
    let resumed = run(&[&args[..], &["--json"]].concat());
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let reused = common::json(&resumed)["reused"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(
        reused > 0,
        "the resumed run reused the crashed run's segments"
    );
    let cues = check_thumbnails(
        &source,
        &output,
        &dir.path().join("out.thumbnails.vtt"),
        0.5,
        (160, 90),
        30.0,
    );
    assert_eq!(cues, 26);
}

#[test]
fn existing_thumbnail_files_follow_the_output_rules() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip(dir.path());
    let output = dir.path().join("out.mp4");
    let poster = dir.path().join("out.poster.jpg");
    std::fs::write(&poster, b"not mine").expect("a file in the way");
    for flag in [None, Some("-n")] {
        let mut args = vec!["transcode", path(&source), path(&output), "--poster"];
        args.extend(flag);
        let refused = run(&args);
        assert!(!refused.status.success());
        let said = stderr(&refused);
        assert!(
            said.contains("out.poster.jpg") && said.contains("already exists"),
            "{said}"
        );
        assert!(!output.exists(), "nothing done ({flag:?})");
    }
    assert_eq!(std::fs::read(&poster).expect("kept"), b"not mine");
    let replaced = run(&["transcode", path(&source), path(&output), "--poster", "-y"]);
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    assert_eq!(displayed_size(&poster), (320, 180));
}

#[test]
fn bad_thumbnail_options_are_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = clip(dir.path());
    let output = dir.path().join("out.mp4");
    for (args, says) in [
        (vec!["--thumbnails", "0"], "--thumbnails"),
        (vec!["--thumbnails=-2"], "--thumbnails"),
        (vec!["--thumbnails", "often"], "--thumbnails"),
        (vec!["--poster-at=-1"], "--poster-at"),
        (
            vec!["--poster-at", "14"],
            "poster time 14 s is outside the video",
        ),
        (
            vec!["--thumbnails", "1", "--poster-at", "13.5"],
            "clock.mp4",
        ),
    ] {
        let mut all = vec!["transcode", path(&source), path(&output)];
        all.extend(&args);
        let refused = run(&all);
        assert!(!refused.status.success(), "{args:?} refused");
        let said = stderr(&refused);
        assert!(said.contains(says), "{args:?}: {said}");
        assert_eq!(
            common::entries(dir.path()),
            vec!["clock.mp4".to_owned()],
            "{args:?}: nothing written"
        );
    }
}
