//! How the local pipeline behaves, on synthetic clips with known content: frame exactness at
//! cuts between keyframes, the eager merge tree, scratch-file hygiene, the JSON summary.

mod common;

use common::*;

/// A single-keyframe source still splits (cuts between keyframes, decoding a lead-in) and every
/// frame comes out once, in place: the worst single frame's PSNR would collapse if one were
/// dropped, duplicated or shifted, because the pattern moves every frame.
#[test]
fn single_keyframe_source_is_split_frame_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("one-keyframe.mp4");
    pattern_clip(&source, 8, 1000);
    let output = dir.path().join("out.mp4");
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--segments",
        "4",
        "--preset",
        "veryfast",
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let summary = json(&result);
    let segments = summary["plan"]["segments"].as_array().expect("segments");
    assert_eq!(
        segments.len(),
        4,
        "the lead-in bound (3× the segment) allows 4 segments"
    );
    assert!(
        segments[1..]
            .iter()
            .all(|s| s["lead_in_frames"].as_u64() > Some(0)),
        "cuts fall between keyframes"
    );
    let encoded: u64 = summary["segments"]
        .as_array()
        .expect("reports")
        .iter()
        .map(|s| s["frames_encoded"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(encoded, 200);

    let report = assert_verifies(&source, &output);
    assert_eq!(report["report"]["output_frames"], 200);
    let worst = report["report"]["min_frame_psnr_db"]
        .as_f64()
        .expect("psnr");
    assert!(
        worst > 30.0,
        "worst frame PSNR {worst} dB: a frame is misplaced"
    );
}

#[test]
fn lead_in_bound_falls_back_to_fewer_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("one-keyframe.mp4");
    pattern_clip(&source, 8, 1000);
    let probe = json(&run(&[
        "probe",
        path(&source),
        "--segments",
        "16",
        "--json",
    ]));
    let segments = probe["plan"]["segments"].as_array().expect("segments");
    assert_eq!(
        segments.len(),
        4,
        "16 asked, but segment k of S needs a lead-in of k·N/S ≤ 3·N/S"
    );
}

/// With more segments than workers, the first finished pair is merged while later segments are
/// still encoding, and every pair is merged exactly once.
#[test]
fn merges_start_while_segments_are_still_encoding() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("gop25.mp4");
    pattern_clip(&source, 16, 25);
    let output = dir.path().join("out.mkv");
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--segments",
        "8",
        "--workers",
        "2",
        "--preset",
        "medium",
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let summary = json(&result);
    let timeline = summary["timeline"].as_array().expect("timeline");
    let last_segment_end = timeline
        .iter()
        .filter(|t| t["kind"] == "segment")
        .map(|t| t["end_seconds"].as_f64().unwrap_or(0.0))
        .fold(0.0, f64::max);
    let merges: Vec<_> = timeline.iter().filter(|t| t["kind"] == "merge").collect();
    assert_eq!(merges.len(), 7, "8 segments need 7 merges");
    let mut targets: Vec<&str> = merges.iter().filter_map(|t| t["target"].as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    assert_eq!(targets.len(), 7, "each pair merged once");
    let early = merges
        .iter()
        .filter(|t| t["start_seconds"].as_f64().unwrap_or(f64::MAX) < last_segment_end)
        .count();
    assert!(
        early >= 1,
        "no merge started before the last segment finished: {timeline:?}"
    );
    let workers: std::collections::BTreeSet<u64> = timeline
        .iter()
        .filter_map(|t| t["worker"].as_u64())
        .collect();
    assert_eq!(workers.len(), 2, "both workers encoded");
    assert_verifies(&source, &output);
}

/// Five segments: three placeholder leaves, renames instead of merges above them.
#[test]
fn placeholders_pad_the_tree_and_are_never_encoded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("gop25.mp4");
    pattern_clip(&source, 10, 25);
    let output = dir.path().join("out.mp4");
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--segments",
        "5",
        "--preset",
        "ultrafast",
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let summary = json(&result);
    assert_eq!(summary["tree"]["leaves"], 8);
    assert_eq!(
        summary["segments"].as_array().map(Vec::len),
        Some(5),
        "only real segments are encoded"
    );
    let kinds: Vec<&str> = summary["merges"]
        .as_array()
        .expect("merges")
        .iter()
        .filter_map(|m| m["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "Concat").count(),
        4,
        "5 real leaves need 4 concatenations"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "Rename").count(),
        2,
        "L1-2 and L2-1 are renames"
    );
    assert_verifies(&source, &output);
}

#[test]
fn scratch_files_are_removed_unless_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("clip.mp4");
    pattern_clip(&source, 4, 25);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).expect("scratch dir");

    let output = dir.path().join("out.mp4");
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--segments",
        "2",
        "--temp-dir",
        path(&scratch),
        "--preset",
        "ultrafast",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(
        entries(&scratch).is_empty(),
        "scratch left behind: {:?}",
        entries(&scratch)
    );

    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--segments",
        "2",
        "--temp-dir",
        path(&scratch),
        "--keep-temp",
        "--preset",
        "ultrafast",
        "--json",
        // The first run wrote this output.
        "-y",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let kept = json(&result)["temp_dir"]
        .as_str()
        .map(std::path::PathBuf::from)
        .expect("temp_dir reported");
    let names = entries(&kept);
    assert!(
        names.contains(&"audio.nut".to_owned()) && names.iter().any(|n| n.starts_with("node-")),
        "{names:?}"
    );
}

/// The top-level boxes of an MP4 file, in order, with their offsets.
fn top_level_boxes(path: &std::path::Path) -> Vec<(String, u64)> {
    let bytes = std::fs::read(path).expect("read output");
    let mut boxes = Vec::new();
    let mut offset = 0u64;
    while offset + 8 <= bytes.len() as u64 {
        let at = offset as usize;
        let mut size = u64::from(u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4")));
        let kind = String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned();
        if size == 1 {
            size = u64::from_be_bytes(bytes[at + 8..at + 16].try_into().expect("8"));
        }
        assert!(size >= 8, "box {kind} at {offset} has size {size}");
        boxes.push((kind, offset));
        offset += size;
    }
    assert_eq!(offset, bytes.len() as u64, "boxes cover the whole file");
    boxes
}

/// No merge copies video: with the scratch kept, it holds the segments (written once), their
/// indexes and the audio, and nothing else of size; the output is written once with its index
/// in front of the media (no faststart second pass), interleaved for playback from the start.
#[test]
fn merges_write_indexes_only_and_the_output_is_written_once_with_its_index_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("clip.mp4");
    pattern_clip(&source, 4, 25);
    let output = dir.path().join("out.mp4");
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--segments",
        "4",
        "--keep-temp",
        "--preset",
        "ultrafast",
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let summary = json(&result);
    let kept = summary["temp_dir"]
        .as_str()
        .map(std::path::PathBuf::from)
        .expect("temp_dir reported");
    let names = entries(&kept);
    let video_files: Vec<&String> = names
        .iter()
        // Segments' video is `node-0-<i>.nut`; `audio-<i>.nut` are their audio pieces.
        .filter(|n| n.starts_with("node-") && n.ends_with(".nut"))
        .collect();
    assert_eq!(
        video_files.len(),
        4,
        "one video file per segment, no merged ones: {names:?}"
    );
    assert!(
        video_files.iter().all(|n| n.starts_with("node-0-")),
        "{names:?}"
    );
    for node in ["node-1-0.json", "node-1-1.json", "node-2-0.json"] {
        assert!(
            names.contains(&node.to_owned()),
            "merge index {node} missing: {names:?}"
        );
    }
    let scratch_bytes: u64 = names
        .iter()
        .map(|n| std::fs::metadata(kept.join(n)).expect("meta").len())
        .sum();
    let output_bytes = std::fs::metadata(&output).expect("output").len();
    assert!(
        scratch_bytes as f64 <= 1.25 * output_bytes as f64,
        "scratch {scratch_bytes} bytes for an output of {output_bytes}"
    );
    let boxes = top_level_boxes(&output);
    let position = |kind: &str| boxes.iter().position(|(k, _)| k == kind);
    let (moov, mdat) = (
        position("moov").expect("moov"),
        position("mdat").expect("mdat"),
    );
    assert!(moov < mdat, "the index comes before the media: {boxes:?}");
    // Interleaved: the first audio packet is stored near the first video packet, not after the
    // whole video.
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pos",
            "-of",
            "csv=p=0",
        ])
        .arg(&output)
        .output()
        .expect("ffprobe");
    let listing = String::from_utf8_lossy(&probe.stdout).into_owned();
    let first_pos = |stream: &str| {
        listing
            .lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&stream))
            .and_then(|fields| fields.get(1).and_then(|pos| pos.trim().parse::<u64>().ok()))
            .expect("a packet of the stream")
    };
    let (video, audio) = (first_pos("0"), first_pos("1"));
    assert!(
        video.abs_diff(audio) < output_bytes / 4,
        "first video packet at {video}, first audio at {audio}, of {output_bytes} bytes"
    );
    assert_verifies(&source, &output);
    std::fs::remove_dir_all(&kept).expect("remove kept scratch");
}

#[test]
fn json_summary_has_plan_stages_and_output_facts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = bundled("06_bbb_vp9_opus_320x180.webm");
    let output = dir.path().join("out.mp4");
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--json",
        "--preset",
        "ultrafast",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(
        result.stderr.is_empty(),
        "--json prints nothing on stderr: {}",
        stderr(&result)
    );
    let summary = json(&result);
    for stage in [
        "probe", "plan", "convert", "merge", "audio", "remux", "total",
    ] {
        assert!(
            summary["stages_seconds"][stage]
                .as_f64()
                .is_some_and(|s| s >= 0.0),
            "stage {stage}"
        );
    }
    assert_eq!(
        summary["output_bytes"].as_u64(),
        std::fs::metadata(&output).ok().map(|m| m.len())
    );
    assert_eq!(summary["source"]["video"]["frame_count"], 120);
    assert_eq!(summary["settings"]["codec"], "h264");
}

#[test]
fn probe_lists_streams_keyframes_and_plan() {
    let result = run(&[
        "probe",
        path(&bundled("15_DERIVED_bbb_h264_3audio_aac51_aac51_opus.mkv")),
        "--json",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let probe = json(&result);
    assert_eq!(probe["keyframes_seconds"].as_array().map(Vec::len), Some(5));
    let languages: Vec<&str> = probe["source"]["audio"]
        .as_array()
        .expect("audio")
        .iter()
        .filter_map(|a| a["metadata"]["language"].as_str())
        .collect();
    assert_eq!(languages, ["eng", "fra", "deu"]);
    let text = run(&[
        "probe",
        path(&bundled("15_DERIVED_bbb_h264_3audio_aac51_aac51_opus.mkv")),
    ]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("plan:"));
}

/// verify must be able to fail: the output of one clip checked against another source.
#[test]
fn verify_fails_on_the_wrong_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out.mp4");
    let result = run(&[
        "transcode",
        path(&bundled("08_quicktime_h264_aac_640x465_oddsize.mov")),
        path(&output),
        "--preset",
        "ultrafast",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let verdict = run(&[
        "verify",
        path(&bundled("06_bbb_vp9_opus_320x180.webm")),
        path(&output),
    ]);
    assert!(!verdict.status.success());
    assert!(
        stderr(&verdict).contains("verification failed: frame count"),
        "{}",
        stderr(&verdict)
    );
}

/// libx264 reads heap memory it never wrote, so an encode in a process whose heap holds other
/// data could come out different (one segment in about a hundred did on the local AWS stack).
/// treemux restarts itself with zeroed allocations; `MALLOC_PERTURB_=1` fills every allocation
/// with garbage unless that worked. Without the restart the segments of this clip differ.
#[test]
fn encodes_do_not_depend_on_what_the_heap_held_before() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = bundled("06_bbb_vp9_opus_320x180.webm");
    let transcode = |name: &str, perturb: Option<&str>| {
        let output = dir.path().join(name);
        let mut command = treemux();
        command.env_remove("GLIBC_TUNABLES").args([
            "transcode",
            path(&source),
            path(&output),
            "--segments",
            "4",
            "--preset",
            "medium",
        ]);
        if let Some(byte) = perturb {
            command.env("MALLOC_PERTURB_", byte);
        }
        let result = command.output().expect("treemux runs");
        assert!(result.status.success(), "{}", stderr(&result));
        treemux_core::media::verify::decoded_frame_hashes(&output).expect("frame hashes")
    };
    let clean = transcode("clean.mp4", None);
    let garbage = transcode("garbage.mp4", Some("1"));
    assert!(!clean.is_empty());
    let differing: Vec<usize> = (0..clean.len())
        .filter(|&i| clean.get(i) != garbage.get(i))
        .collect();
    assert_eq!(clean.len(), garbage.len());
    assert!(differing.is_empty(), "frames {differing:?} differ");
}

/// verify reports the streams and tags of the source: those the output's container holds must be
/// there (a copy that dropped the subtitles fails), those it cannot hold are listed as not kept.
#[test]
fn verify_fails_on_dropped_subtitles_and_reports_what_the_container_cannot_hold() {
    let dir = tempfile::tempdir().expect("temp dir");
    let subtitles = dir.path().join("subtitles.srt");
    std::fs::write(&subtitles, "1\n00:00:00,000 --> 00:00:01,000\nHello\n").expect("srt");
    let source = dir.path().join("source.mkv");
    ffmpeg_clip(
        &source,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x240:r=25:d=1",
            "-i",
            path(&subtitles),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-metadata",
            "custom_tag=mkv only",
        ],
    );
    let bare = dir.path().join("bare.mkv");
    ffmpeg_clip(&bare, &["-i", path(&source), "-map", "0:v", "-c", "copy"]);
    let verdict = run(&["verify", path(&source), path(&bare)]);
    assert!(!verdict.status.success());
    assert!(
        stderr(&verdict).contains("verification failed: streams and tags"),
        "{}",
        stderr(&verdict)
    );
    assert!(
        String::from_utf8_lossy(&verdict.stdout)
            .contains("missing from the output: stream #1 (subtitle ass)"),
        "{}",
        String::from_utf8_lossy(&verdict.stdout)
    );

    let output = dir.path().join("out.mp4");
    let result = run(&[
        "transcode",
        path(&source),
        path(&output),
        "--preset",
        "ultrafast",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let report = json(&run(&["verify", "--json", path(&source), path(&output)]));
    assert_eq!(report["passed"], true, "{report:#}");
    let not_kept = report["report"]["not_kept"].as_array().expect("not_kept");
    assert!(
        not_kept.len() == 1
            && not_kept[0]
                .as_str()
                .unwrap_or("")
                .starts_with("tag CUSTOM_TAG=\"mkv only\" is not kept"),
        "{not_kept:?}"
    );
}
