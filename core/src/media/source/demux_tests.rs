//! The custom I/O against FFmpeg: typed read failures, the same packets as a file opened by
//! path, the index probe against the packet probe, segment byte ranges.

use super::*;
use ffmpeg_next as ffmpeg;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
/// Fails every read from `fail_from` on.
#[derive(Debug)]
struct FailsMidway {
    inner: FileSource,
    fail_from: u64,
}

impl ByteSource for FailsMidway {
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        if offset + buf.len() as u64 > self.fail_from {
            return Err(SourceError {
                kind: SourceErrorKind::Unavailable,
                message: "s3://bucket/clip.mp4: connection reset".into(),
            });
        }
        self.inner.read_at(offset, buf)
    }
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("samples")
        .join(name)
}

#[test]
fn a_source_that_fails_midway_is_a_typed_error() {
    let path = sample("10_bbb_rotated90_h264_aac51_1080p.mp4");
    let inner = FileSource::open(&path).expect("sample");
    let fail_from = inner.size_bytes() / 2;
    let source = Source::new(
        "s3://bucket/clip.mp4",
        Arc::new(FailsMidway { inner, fail_from }),
    );
    let error = super::super::probe::probe_source(&source, super::super::probe::PacketReads::All)
        .expect_err("half a file cannot be probed");
    match &error {
        super::super::probe::ProbeError::Source { source, .. } => {
            assert_eq!(source.kind, SourceErrorKind::Unavailable)
        }
        other => panic!("not a source error: {other}"),
    }
    assert!(error.to_string().contains("connection reset"), "{error}");
    assert_eq!(
        crate::Error::from(error).kind(),
        crate::ErrorKind::Transient,
        "a store that stopped answering is retried"
    );
}

/// Counts the bytes `inner` really delivered.
#[derive(Debug)]
struct Counting {
    inner: FileSource,
    bytes: AtomicU64,
}

impl ByteSource for Counting {
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        let n = self.inner.read_at(offset, buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// (stream, pts, dts, size, flags, position) of every packet, in file order.
fn packets(input: &mut ffmpeg::format::context::Input) -> Vec<(usize, i64, i64, usize, i32, i64)> {
    let mut list = Vec::new();
    loop {
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => return list,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(error) => panic!("read: {error}"),
        }
        // SAFETY: a packet just filled by av_read_frame.
        let flags = unsafe { (*ffmpeg::packet::Ref::as_ptr(&packet)).flags };
        list.push((
            packet.stream(),
            packet.pts().unwrap_or(i64::MIN),
            packet.dts().unwrap_or(i64::MIN),
            packet.size(),
            flags,
            packet.position() as i64,
        ));
    }
}

fn generate(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=3",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:sample_rate=44100:duration=3",
        ])
        .args(args)
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not write {name}");
    path
}

#[test]
fn the_custom_io_demuxes_the_same_packets_as_the_file() {
    super::super::util::init();
    let dir = tempfile::tempdir().expect("temp dir");
    let clips = [
        // MP4 as most encoders write it: the index (moov) after the media.
        generate(
            dir.path(),
            "moov_at_end.mp4",
            &["-c:v", "libx264", "-bf", "2", "-g", "25", "-c:a", "aac"],
        ),
        generate(
            dir.path(),
            "clip.mkv",
            &["-c:v", "libx264", "-g", "25", "-c:a", "libopus"],
        ),
        generate(
            dir.path(),
            "clip.ts",
            &["-c:v", "libx264", "-g", "25", "-c:a", "aac"],
        ),
        generate(
            dir.path(),
            "clip.avi",
            &["-c:v", "mpeg4", "-bf", "2", "-c:a", "libmp3lame"],
        ),
    ];
    for clip in &clips {
        let mut by_path = super::super::util::demux(clip).expect("open by path");
        let expected = packets(&mut by_path);
        let source = Source::file(clip).expect("source");
        let (mut by_source, _) = open(&source).expect("open through the custom I/O");
        assert_eq!(
            by_source.format().name(),
            by_path.format().name(),
            "{}: another demuxer",
            clip.display()
        );
        let got = packets(&mut by_source);
        assert!(expected.len() > 50, "{}: too few packets", clip.display());
        assert_eq!(got, expected, "{}: other packets", clip.display());
        assert!(
            source.fetched().bytes >= source.size_bytes(),
            "{}: the counter counts",
            clip.display()
        );
    }
}

/// Every MP4/MOV in samples/ and ../shared/samples.
fn mp4_samples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found: Vec<PathBuf> = [root.join("samples"), root.join("../shared/samples")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "mp4" | "mov" | "m4v"))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn the_index_probe_of_mp4_and_mov_equals_the_packet_probe() {
    use super::super::probe::{probe_source, PacketReads};
    let samples = mp4_samples();
    assert!(samples.len() >= 4, "samples missing: {samples:?}");
    for path in samples {
        let counted = || {
            Arc::new(Counting {
                inner: FileSource::open(&path).expect("sample"),
                bytes: AtomicU64::new(0),
            })
        };
        let (all, indexed) = (counted(), counted());
        let by_packets =
            probe_source(&Source::new(&path, all.clone()), PacketReads::All).expect("packet probe");
        let by_index = probe_source(
            &Source::new(&path, indexed.clone()),
            PacketReads::IndexWherePossible,
        )
        .expect("index probe");
        assert_eq!(
            serde_json::to_value(&by_index).expect("json"),
            serde_json::to_value(&by_packets).expect("json"),
            "{}: another probe result",
            path.display()
        );
        assert_eq!(by_index.frames, by_packets.frames, "{}", path.display());
        assert_eq!(
            by_index.video_packets_at,
            by_packets.video_packets_at,
            "{}",
            path.display()
        );
        let (read_all, read_indexed) = (
            all.bytes.load(Ordering::Relaxed),
            indexed.bytes.load(Ordering::Relaxed),
        );
        println!(
            "{}: {read_indexed} bytes read, {read_all} by packets",
            path.display()
        );
        assert!(read_indexed <= read_all, "{}", path.display());
        if by_packets.audio.iter().any(|track| track.codec == "aac") {
            assert!(
                read_indexed < read_all,
                "{}: the AAC packets were read",
                path.display()
            );
        }
        // H.264 with a sync-sample table, in a file larger than what opening it reads (the
        // index, the first packets): its video packets are not fetched either.
        let video = &by_packets.video;
        if video.codec == "h264"
            && video.keyframe_count < video.frame_count
            && by_packets.size_bytes > 2 * 1024 * 1024
        {
            assert!(
                read_indexed * 10 < by_packets.size_bytes,
                "{}: {read_indexed} bytes read to list it",
                path.display()
            );
        }
    }
}

#[test]
fn segment_ranges_cover_their_packets() {
    let path = sample("10_bbb_rotated90_h264_aac51_1080p.mp4");
    let info = super::super::probe::probe(&path).expect("probe");
    let plan = crate::plan::plan_segments(
        &info.frames,
        info.video.time_base,
        info.video.duration_seconds(),
        &crate::plan::PlanOptions {
            max_segments: 4,
            min_segment_seconds: 0.5,
            ..Default::default()
        },
    )
    .expect("plan");
    assert!(plan.segments.len() > 1);
    for segment in &plan.segments {
        let range = segment_byte_range(&info, segment).expect("positions known");
        for packet in info
            .video_packets_at
            .iter()
            .filter(|p| segment.contains(p.pts))
        {
            assert!(range.start <= packet.position && packet.position + packet.size <= range.end);
        }
        assert!(range.end <= info.size_bytes);
    }
}

/// Prints what each reader of `TREEMUX_IO_CLIP` fetches (diagnosis; not run by default).
#[test]
#[ignore = "diagnosis: TREEMUX_IO_CLIP=clip.mp4"]
fn fetched_per_reader() {
    use super::super::probe::{probe_source, PacketReads};
    let path = PathBuf::from(std::env::var("TREEMUX_IO_CLIP").expect("TREEMUX_IO_CLIP"));
    let counted = || {
        Arc::new(Counting {
            inner: FileSource::open(&path).expect("clip"),
            bytes: AtomicU64::new(0),
        })
    };
    let size = FileSource::open(&path).expect("clip").size_bytes();
    let c = counted();
    let opening = opening_reads(&Source::new(&path, c.clone()), 1 << 26).expect("opening");
    println!(
        "opening: {} fetched, {} saved",
        c.bytes.load(Ordering::Relaxed),
        opening.total_bytes()
    );
    let c = counted();
    let overlay = |c: Arc<Counting>| {
        Source::new(
            &path,
            Arc::new(OverlaySource {
                saved: opening.clone(),
                inner: c,
            }),
        )
    };
    let mut info =
        probe_source(&overlay(c.clone()), PacketReads::IndexWherePossible).expect("probe");
    println!("probe: {} of {size}", c.bytes.load(Ordering::Relaxed));
    let c = counted();
    let options = crate::plan::PlanOptions {
        max_segments: 32,
        min_segment_seconds: 2.0,
        ..Default::default()
    };
    let plan =
        crate::engine::plan_at_real_keyframes(&overlay(c.clone()), &mut info, &path, &options)
            .expect("plan");
    println!(
        "keyframe check of {} segments: {}",
        plan.segments.len(),
        c.bytes.load(Ordering::Relaxed)
    );
    let dir = tempfile::tempdir().expect("dir");
    let actions = super::super::audio::plan_audio(
        &info,
        crate::settings::Container::Mp4,
        &dir.path().join("o.mp4"),
    )
    .expect("plan");
    let c = counted();
    super::super::audio::extract_audio_from(
        &overlay(c.clone()),
        &info,
        &actions,
        &dir.path().join("a.nut"),
    )
    .expect("audio");
    println!("audio in one pass: {}", c.bytes.load(Ordering::Relaxed));
    let mut settings = crate::settings::EncodeSettings::new(crate::settings::VideoCodec::H264);
    settings.preset = "ultrafast".into();
    let mut total = 0;
    let mut pieces = Vec::new();
    for segment in &plan.segments {
        let c = counted();
        let range = segment_byte_range(&info, segment);
        let audio = (!info.audio.is_empty()).then(|| {
            super::super::audio::SegmentAudio::of_segment(
                &info,
                &plan,
                segment.index,
                dir.path().join(format!("a{}.nut", segment.index)),
            )
        });
        pieces.extend(audio.as_ref().map(|audio| audio.path.clone()));
        super::super::convert::convert_segment_from(
            &overlay(c.clone()).with_hint(range.clone()),
            &info,
            segment,
            &settings,
            &dir.path().join(format!("s{}.nut", segment.index)),
            audio.as_ref(),
            &|_| std::ops::ControlFlow::Continue(()),
        )
        .expect("convert");
        let got = c.bytes.load(Ordering::Relaxed);
        total += got;
        println!(
            "segment {}: {got} for range {:?} ({} bytes)",
            segment.index,
            range,
            range.as_ref().map_or(0, |r| r.end - r.start)
        );
    }
    if !pieces.is_empty() {
        let joined = super::super::audio::join_audio_pieces(
            &info,
            &actions,
            &pieces,
            &dir.path().join("joined.nut"),
        )
        .expect("join");
        println!("audio joined from the segments' pieces: {joined:?}");
    }
    println!("segments: {total} of {size}");
}

/// The opening analyze saves for every worker (an MP4's `moov` and what FFmpeg reads around it)
/// survives compression exactly, serves the same probe, and is stored in well under the plain
/// form's bytes; a truncated compressed file is refused, not half read.
#[test]
fn a_compressed_opening_is_the_same_opening_in_fewer_bytes() {
    use super::super::probe::{probe_source, PacketReads};
    // Ten minutes of a small picture: 15,000 video samples with B-frames and 28,000 AAC
    // packets, so the sample tables, not FFmpeg's read-ahead into the media, make the opening.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("long.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=160x96:rate=25:duration=600")
        .args(["-f", "lavfi", "-i", "sine=frequency=300:duration=600"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "40",
            "-g",
            "50",
        ])
        .args([
            "-bf",
            "2",
            "-c:a",
            "aac",
            "-b:a",
            "24k",
            "-movflags",
            "+faststart",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(
        status.success(),
        "ffmpeg could not write {}",
        path.display()
    );
    let file = || Arc::new(FileSource::open(&path).expect("sample"));
    let opening = opening_reads(&Source::new(&path, file()), 1 << 26).expect("opening");
    assert!(opening.total_bytes() > 0, "the opening read something");
    let (plain, compressed) = (opening.to_bytes(), opening.to_compressed_bytes());
    assert_eq!(SavedRanges::from_bytes(&compressed), Some(opening.clone()));
    assert!(
        compressed.len() * 10 < plain.len() * 7,
        "{} compressed bytes for {} plain",
        compressed.len(),
        plain.len()
    );
    assert_eq!(
        SavedRanges::from_bytes(&compressed[..compressed.len() - 9]),
        None
    );
    let from_saved = |saved: SavedRanges| {
        let source = Source::new(
            &path,
            Arc::new(OverlaySource {
                saved,
                inner: file(),
            }),
        );
        probe_source(&source, PacketReads::IndexWherePossible).expect("probe")
    };
    let decompressed = SavedRanges::from_bytes(&compressed).expect("parses");
    assert_eq!(
        serde_json::to_value(from_saved(decompressed)).expect("json"),
        serde_json::to_value(from_saved(opening)).expect("json")
    );
}
