//! HLS and DASH outputs (`out/master.m3u8`, `out/manifest.mpd`): fMP4 fragments straight from
//! the segments, every rendition frame-exact against the source (HLS through `treemux verify`,
//! DASH through ffprobe over each representation's init segment and fragments), fragments
//! aligned across renditions, the master playlist's attributes; codecs a package cannot hold
//! refused before any work.

mod common;

use common::{assert_verifies, entries, path, pattern_clip, run, stderr};
use std::path::Path;
use std::process::Command;

fn transcode(source: &Path, output: &Path) {
    let result = run(&[
        "transcode",
        path(source),
        path(output),
        "--renditions",
        "240,120",
        "--segments",
        "3",
        "--preset",
        "ultrafast",
        "-q",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
}

/// `#EXTINF` durations of a media playlist.
fn fragment_durations(playlist: &Path) -> Vec<String> {
    std::fs::read_to_string(playlist)
        .expect("media playlist")
        .lines()
        .filter_map(|line| line.strip_prefix("#EXTINF:").map(str::to_owned))
        .collect()
}

#[test]
fn an_hls_ladder_verifies_rendition_by_rendition() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.mp4");
    pattern_clip(&source, 10, 25);
    let out = dir.path().join("out");
    let master = out.join("master.m3u8");
    transcode(&source, &master);

    let text = std::fs::read_to_string(&master).expect("master playlist");
    assert!(
        text.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\""),
        "{text}"
    );
    assert!(text.contains("LANGUAGE=\""), "{text}");
    let variants: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    assert_eq!(variants.len(), 2, "{text}");
    for (variant, size) in variants.iter().zip(["320x240", "160x120"]) {
        assert!(variant.contains(&format!("RESOLUTION={size}")), "{variant}");
        assert!(variant.contains("CODECS=\"avc1."), "{variant}");
        assert!(variant.contains(",mp4a.40.2\""), "{variant}");
        let bandwidth: u64 = variant
            .split("BANDWIDTH=")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|number| number.parse().ok())
            .expect("BANDWIDTH");
        assert!(bandwidth > 0, "{variant}");
    }
    // Fragments cut at the same frames in both renditions: 4 s keyframes over 10 s.
    let first = fragment_durations(&out.join("v0/index.m3u8"));
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(first, fragment_durations(&out.join("v1/index.m3u8")));
    assert_eq!(
        entries(&out),
        ["a0", "master.m3u8", "v0", "v1"],
        "nothing else left"
    );

    let report = assert_verifies(&source, &master);
    let renditions = report["renditions"].as_array().expect("renditions");
    assert_eq!(renditions.len(), 2);
    for rendition in renditions {
        assert_eq!(rendition["report"]["output_frames"], 250);
    }
}

/// Frames ffprobe decodes from representation `id`: its init segment and fragments in order.
fn representation_frames(dir: &Path, id: u32) -> (u64, usize) {
    let mut chunks: Vec<String> = entries(dir)
        .into_iter()
        .filter(|name| name.starts_with(&format!("chunk-{id}-")))
        .collect();
    chunks.sort();
    let mut bytes = std::fs::read(dir.join(format!("init-{id}.m4s"))).expect("init segment");
    for chunk in &chunks {
        bytes.extend(std::fs::read(dir.join(chunk)).expect("fragment"));
    }
    let joined = dir.join(format!("../representation-{id}.mp4"));
    std::fs::write(&joined, bytes).expect("joined");
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries"])
        .args(["stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(&joined)
        .output()
        .expect("ffprobe runs");
    let frames = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    (frames, chunks.len())
}

#[test]
fn a_dash_ladder_decodes_frame_exact_per_representation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.mp4");
    pattern_clip(&source, 10, 25);
    let out = dir.path().join("out");
    let manifest = out.join("manifest.mpd");
    transcode(&source, &manifest);
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    assert_eq!(text.matches("mimeType=\"video/mp4\"").count(), 2, "{text}");
    assert_eq!(text.matches("contentType=\"audio\"").count(), 1, "{text}");
    let (frames_0, fragments_0) = representation_frames(&out, 0);
    let (frames_1, fragments_1) = representation_frames(&out, 1);
    assert_eq!((frames_0, frames_1), (250, 250));
    assert_eq!(fragments_0, 3);
    assert_eq!(fragments_0, fragments_1, "fragments aligned");

    // verify reads the manifest: every representation judged with the audio.
    let report = assert_verifies(&source, &manifest);
    assert_eq!(report["renditions"].as_array().map(Vec::len), Some(2));
    // A package missing a fragment is refused, naming it.
    std::fs::remove_file(out.join("chunk-1-00002.m4s")).expect("remove a fragment");
    let result = run(&["verify", path(&source), path(&manifest)]);
    assert!(!result.status.success());
    assert!(
        stderr(&result).contains("chunk-1-00002.m4s"),
        "{}",
        stderr(&result)
    );
}

#[test]
fn a_widescreen_dash_ladder_keeps_its_aspect_in_one_adaptation_set() {
    // 640x360 at 240 lines is 426.7 pixels wide, rounded to 426: the pixel aspect makes up for
    // it (as FFmpeg's scale filter does), so both rungs show 16:9 and a player can switch
    // between them (the dash muxer refuses a set whose aspects differ).
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("wide.mp4");
    common::ffmpeg_clip(
        &source,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=640x360:r=25:d=4",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    let out = dir.path().join("out");
    let manifest = out.join("manifest.mpd");
    let result = run(&[
        "transcode",
        path(&source),
        path(&manifest),
        "--renditions",
        "360,240",
        "--segments",
        "2",
        "--preset",
        "ultrafast",
        "-q",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    assert_eq!(text.matches("contentType=\"video\"").count(), 1, "{text}");
    assert_eq!(text.matches("mimeType=\"video/mp4\"").count(), 2, "{text}");
    assert!(text.contains("par=\"16:9\""), "{text}");
    let (frames, _) = representation_frames(&out, 1);
    assert_eq!(frames, 100);
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args([
            "stream=width,height,sample_aspect_ratio,display_aspect_ratio",
            "-of",
            "csv=p=0",
        ])
        .arg(dir.path().join("representation-1.mp4"))
        .output()
        .expect("ffprobe runs");
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout).trim(),
        "426,240,640:639,16:9"
    );
}

#[test]
fn a_multi_track_hls_package_keeps_each_tracks_language_default_and_sync() {
    // Sample 15: three audio tracks (AAC 5.1 eng default, AAC 5.1 fra, Opus deu), the Opus one
    // re-encoded to AAC for the fMP4 renditions.
    let dir = tempfile::tempdir().expect("temp dir");
    let source = common::bundled("15_DERIVED_bbb_h264_3audio_aac51_aac51_opus.mkv");
    let master = dir.path().join("out/master.m3u8");
    let result = run(&[
        "transcode",
        path(&source),
        path(&master),
        "--segments",
        "2",
        "--preset",
        "ultrafast",
        "-q",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let text = std::fs::read_to_string(&master).expect("master playlist");
    let media: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:"))
        .collect();
    assert_eq!(media.len(), 3, "{text}");
    for (line, (language, default)) in
        media
            .iter()
            .zip([("eng", "YES"), ("fra", "NO"), ("deu", "NO")])
    {
        assert!(line.contains(&format!("LANGUAGE=\"{language}\"")), "{line}");
        assert!(line.contains(&format!("DEFAULT={default}")), "{line}");
    }
    assert_verifies(&source, &master);
}

#[test]
fn a_codec_a_package_cannot_hold_is_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.mp4");
    pattern_clip(&source, 1, 25);
    let master = dir.path().join("out/master.m3u8");
    let result = run(&["transcode", path(&source), path(&master), "--codec", "vp9"]);
    assert!(!result.status.success());
    assert!(
        stderr(&result).contains("h264 or h265"),
        "{}",
        stderr(&result)
    );
    assert_eq!(entries(dir.path()), ["source.mp4"], "no directory left");
}
