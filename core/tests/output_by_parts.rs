//! The output written by parts (laid out without its video bytes, each part filled from the
//! scratch files) against the one-pass mux of the same scratch files, judged by properties:
//! every stream's packets and timestamps, `verify`. And the cases that keep the one-pass path or
//! refuse to write a part.

use std::path::{Path, PathBuf};
use std::process::Command;
use treemux_core::engine::{self, RootLayout, ScratchLayout};
use treemux_core::error::ErrorKind;
use treemux_core::local::{self, ExistingOutput, TranscodeOptions};
use treemux_core::media::probe;
use treemux_core::media::remux::MuxTarget;
use treemux_core::media::source::Source;
use treemux_core::media::verify::{verify, VerifyOptions};
use treemux_core::output_layout::OutputPart;
use treemux_core::settings::{Container, EncodeSettings, VideoCodec};

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../samples")
        .join(name)
}

/// Per stream: every packet's pts, dts, duration and size, as ffprobe lists them.
fn packets(file: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .arg("packet=stream_index,pts,dts,duration,size,flags")
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Transcodes `input` to `output` keeping the scratch; the job as the run prepared it.
fn run(input: &Path, output: &Path, segments: u32) -> (engine::JobSpec, ScratchLayout) {
    let mut settings = EncodeSettings::new(VideoCodec::H264);
    settings.preset = "ultrafast".into();
    let mut options = TranscodeOptions::new(settings.clone());
    options.keep_temp = true;
    options.existing_output = ExistingOutput::Replace;
    options.plan.exact_segments = Some(segments);
    options.plan.min_segment_seconds = 0.5;
    options.cores = 2;
    let report = local::transcode(input, output, &options, &|_| {}).expect("transcode");
    let scratch = ScratchLayout::new(report.temp_dir.expect("kept scratch"));
    let container = Container::from_path(output).expect("a container");
    let job = engine::prepare_job(
        &Source::file(input).expect("source"),
        probe::probe(input).expect("probe"),
        input,
        output,
        container,
        &options.settings,
        &options.plan,
    )
    .expect("the same job");
    (job, scratch)
}

#[test]
fn parts_make_the_output_the_one_pass_mux_makes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = sample("10_bbb_rotated90_h264_aac51_1080p.mp4");
    let by_parts = dir.path().join("parts.mp4");
    let (job, scratch) = run(&input, &by_parts, 3);
    let laid_out = engine::finished_layout(&scratch).expect("the run laid the output out");
    assert!(laid_out.runs.len() > 2, "video and audio interleaved");

    // The same scratch files muxed in one pass, as before.
    let one_pass = dir.path().join("one-pass.mp4");
    let source = Source::file(&input).expect("source");
    engine::finish_root(&source, &job, &scratch, MuxTarget::File(one_pass.clone()))
        .expect("one-pass mux");
    let (parts_packets, one_pass_packets) = (packets(&by_parts), packets(&one_pass));
    assert!(parts_packets.len() > 100, "{} packets", parts_packets.len());
    assert_eq!(
        parts_packets, one_pass_packets,
        "every packet's timestamps, size and flags"
    );
    for output in [&by_parts, &one_pass] {
        let report = verify(&input, output, &VerifyOptions::default()).expect("verify runs");
        assert!(report.passed(), "{}: {:?}", output.display(), report.checks);
    }

    // Parts cut anywhere (inside samples, inside the header) fill the same file.
    let whole = std::fs::read(&by_parts).expect("read output");
    assert_eq!(whole.len() as u64, laid_out.total_bytes);
    let total = laid_out.total_bytes;
    let cuts = [
        0,
        laid_out.header_len / 2,
        laid_out.header_len + 7,
        total / 3,
        total / 3 + 1,
        total - 5,
        total,
    ];
    let mut assembled = Vec::new();
    for (number, pair) in cuts.windows(2).enumerate() {
        let part = OutputPart {
            number: number as i32 + 1,
            start: pair[0],
            end: pair[1],
        };
        assembled.extend(engine::write_output_part(&scratch, &laid_out, &part).expect("part"));
    }
    assert!(
        assembled == whole,
        "parts cut elsewhere assemble the same file"
    );

    // A segment that is not the one laid out is refused, never written into a part.
    let (first, second) = (scratch.segment(0), scratch.segment(1));
    let moved = scratch.dir.join("moved.nut");
    std::fs::rename(&first, &moved).expect("move");
    std::fs::copy(&second, &first).expect("copy");
    let whole_part = OutputPart {
        number: 1,
        start: 0,
        end: total,
    };
    let refused = engine::write_output_part(&scratch, &laid_out, &whole_part)
        .expect_err("a wrong segment is refused");
    assert_eq!(refused.kind(), ErrorKind::Internal, "{refused}");
    std::fs::rename(&moved, &first).expect("move back");

    // An index without the samples' sizes (written before they were kept) keeps the one pass.
    std::fs::remove_file(scratch.output_layout()).expect("remove layout");
    let root = scratch.index(job.tree.root());
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&root).expect("root index")).expect("json");
    index["samples"] = serde_json::Value::Null;
    std::fs::write(&root, serde_json::to_vec(&index).expect("json")).expect("write index");
    match engine::lay_out_root(&source, &job, &scratch).expect("lay out") {
        RootLayout::OnePass(reason) => assert!(reason.contains("sized"), "{reason}"),
        RootLayout::Parts(_) => panic!("laid out without the samples' sizes"),
    }
    std::fs::remove_dir_all(&scratch.dir).expect("remove scratch");
}

#[test]
fn matroska_and_kept_subtitles_keep_the_one_pass_mux() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Matroska: not an MP4 layout.
    let mkv = dir.path().join("out.mkv");
    let (job, scratch) = run(
        &sample("08_quicktime_h264_aac_640x465_oddsize.mov"),
        &mkv,
        2,
    );
    assert!(engine::finished_layout(&scratch).is_none());
    let source =
        Source::file(&sample("08_quicktime_h264_aac_640x465_oddsize.mov")).expect("source");
    match engine::lay_out_root(&source, &job, &scratch).expect("lay out") {
        RootLayout::OnePass(reason) => assert!(reason.contains("muxer"), "{reason}"),
        RootLayout::Parts(_) => panic!("Matroska laid out as MP4"),
    }
    std::fs::remove_dir_all(&scratch.dir).expect("remove scratch");

    // Subtitles kept in an MP4: the muxer adds their samples, so one pass.
    let with_subtitles = dir.path().join("subs.mkv");
    let cues = dir.path().join("cues.srt");
    std::fs::write(
        &cues,
        "1\n00:00:00,500 --> 00:00:01,500\none\n\n2\n00:00:02,000 --> 00:00:02,800\ntwo\n",
    )
    .expect("write cues");
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=25:duration=3",
        ])
        .args(["-f", "lavfi", "-i", "sine=duration=3"])
        .arg("-i")
        .arg(&cues)
        .args([
            "-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264", "-g", "25", "-c:a", "aac",
            "-c:s", "srt",
        ])
        .arg(&with_subtitles)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let mp4 = dir.path().join("subs.mp4");
    let (job, scratch) = run(&with_subtitles, &mp4, 2);
    assert!(
        engine::finished_layout(&scratch).is_none(),
        "no layout with subtitles"
    );
    let source = Source::file(&with_subtitles).expect("source");
    match engine::lay_out_root(&source, &job, &scratch).expect("lay out") {
        RootLayout::OnePass(reason) => assert!(reason.contains("streams"), "{reason}"),
        RootLayout::Parts(_) => panic!("subtitles laid out by sizes"),
    }
    std::fs::remove_dir_all(&scratch.dir).expect("remove scratch");
}
