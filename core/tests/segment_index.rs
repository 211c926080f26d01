//! A segment's index is built while its file is written (no read back from scratch); it must
//! equal what `describe_segment` reads from the committed file, field by field, for every
//! encoder, a renditions run and real samples whose encodes have B-frames. And a committed
//! segment without an index (an attempt that died in between) is described from its file.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use treemux_core::engine::{self, JobSpec, Produced, ScratchLayout};
use treemux_core::fault::CrashPlan;
use treemux_core::join::NodeIndex;
use treemux_core::media::merge::describe_segment;
use treemux_core::media::probe;
use treemux_core::media::source::Source;
use treemux_core::plan::PlanOptions;
use treemux_core::renditions::{rendition_settings, KeyframeGrid, Rendition};
use treemux_core::settings::{Container, EncodeSettings, VideoCodec};
use treemux_core::tree::NodeId;

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../samples")
        .join(name)
}

/// The job for `input` into `output` in `segments` segments, with `ladder` rungs when given.
fn job(
    input: &Path,
    output: &Path,
    settings: &EncodeSettings,
    segments: u32,
    ladder: &[u32],
) -> JobSpec {
    let options = PlanOptions {
        exact_segments: Some(segments),
        min_segment_seconds: 0.5,
        ..PlanOptions::default()
    };
    let mut job = engine::prepare_job(
        &Source::file(input).expect("source"),
        probe::probe(input).expect("probe"),
        input,
        output,
        Container::from_path(output).expect("a container"),
        settings,
        &options,
    )
    .expect("job");
    if !ladder.is_empty() {
        let rungs: Vec<Rendition> = ladder
            .iter()
            .map(|&height| Rendition { height, rate: None })
            .collect();
        job.set_renditions(&rendition_settings(settings, &rungs), input, output)
            .expect("renditions");
        let time_base = job.info.video.time_base;
        job.keyframes = Some(KeyframeGrid::every(
            1.0,
            job.info.video.first_pts,
            i64::from(time_base.num),
            i64::from(time_base.den),
        ));
    }
    job
}

/// Field by field, so a difference names the field.
fn assert_same(built: &NodeIndex, described: &NodeIndex, what: &str) {
    assert_eq!(built.leaves, described.leaves, "{what}: leaves");
    assert_eq!(built.stream, described.stream, "{what}: stream facts");
    assert_eq!(built.first_pts, described.first_pts, "{what}: first pts");
    assert_eq!(built.last_pts, described.last_pts, "{what}: last pts");
    assert_eq!(built.packets, described.packets, "{what}: packets");
    assert_eq!(built.bytes, described.bytes, "{what}: bytes");
    assert_eq!(built.pts, described.pts, "{what}: every pts");
    match (&built.samples, &described.samples) {
        (Some(b), Some(d)) => {
            assert_eq!(b.form, d.form, "{what}: sample form");
            assert_eq!(b.sizes, d.sizes, "{what}: sample sizes");
            assert_eq!(b.keyframes, d.keyframes, "{what}: keyframes");
            assert_eq!(b.leaf_packets, d.leaf_packets, "{what}: leaf packets");
        }
        (b, d) => assert_eq!(b, d, "{what}: samples"),
    }
    assert_eq!(built, described, "{what}: the whole index");
}

/// Encodes segment `index` of `job` (rung files under `dir`), then checks each rung's recorded
/// index against its file; then removes the indexes and checks that the task, finding the files
/// committed, records the described ones. Returns rung 0's index.
/// A keeper that records what it was given, checking that the file is there and that the
/// segment is not yet recorded done (keeping comes first).
struct RecordingKeeper {
    layout: ScratchLayout,
    kept: std::sync::Mutex<Vec<(u32, PathBuf)>>,
}

impl RecordingKeeper {
    /// What was kept since the last call.
    fn taken(&self) -> Vec<(u32, PathBuf)> {
        std::mem::take(&mut *self.kept.lock().expect("lock"))
    }
}

impl engine::SegmentKeeper for RecordingKeeper {
    fn keep(&self, index: u32, file: &Path) -> Result<(), treemux_core::Error> {
        assert!(file.is_file(), "{} is kept once committed", file.display());
        assert!(
            self.layout.finished(NodeId::leaf(index)).is_none(),
            "segment {index} is kept before it is recorded done"
        );
        self.kept
            .lock()
            .expect("lock")
            .push((index, file.to_owned()));
        Ok(())
    }
}

fn check_segment(input: &Path, job: &JobSpec, dir: &Path, index: u32, what: &str) -> NodeIndex {
    std::fs::create_dir_all(dir).expect("scratch dir");
    let layout = ScratchLayout::new(dir).with_renditions(job.rungs().len());
    let source = Source::file(input).expect("source");
    let settings = EncodeSettings {
        threads: 2,
        ..job.settings.clone()
    };
    let none = CrashPlan::default();
    let go_on = |_| ControlFlow::Continue(());
    let leaf = NodeId::leaf(index);
    let keeper = RecordingKeeper {
        layout: layout.clone(),
        kept: Default::default(),
    };
    let produced = engine::produce_segment(
        &source, job, &settings, &layout, index, &none, &keeper, &go_on,
    )
    .expect("segment");
    assert!(matches!(produced, Produced::Made(_)), "{what}: encoded");
    assert_eq!(
        keeper.taken(),
        vec![(index, layout.segment(index))],
        "{what}: rung 0's file is kept once, before the segment is recorded done"
    );
    let mut built = Vec::new();
    for rung in 0..layout.renditions() {
        let rung_layout = layout.rendition(rung);
        let recorded = rung_layout.finished(leaf).expect("index recorded");
        let described = describe_segment(&rung_layout.segment(index), index).expect("describe");
        assert_same(&recorded, &described, &format!("{what}, rung {rung}"));
        assert!(recorded.packets > 0, "{what}: frames");
        if let Some(samples) = &recorded.samples {
            assert_eq!(
                samples.keyframes.first(),
                Some(&0),
                "{what}: starts with a keyframe"
            );
            assert_eq!(
                samples.sizes.len() as u64,
                recorded.packets,
                "{what}: a size per packet"
            );
        }
        built.push(recorded);
    }
    for rung in 0..layout.renditions() {
        std::fs::remove_file(layout.rendition(rung).index(leaf)).expect("remove index");
    }
    let again = engine::produce_segment(
        &source, job, &settings, &layout, index, &none, &keeper, &go_on,
    )
    .expect("segment again");
    assert!(
        matches!(again, Produced::Found),
        "{what}: the committed file is kept"
    );
    assert_eq!(
        keeper.taken(),
        vec![(index, layout.segment(index))],
        "{what}: a repeated task that records a committed file keeps it again"
    );
    let done = engine::produce_segment(
        &source, job, &settings, &layout, index, &none, &keeper, &go_on,
    )
    .expect("segment done");
    assert!(matches!(done, Produced::Found), "{what}: done");
    assert!(
        keeper.taken().is_empty(),
        "{what}: a segment already done is not kept again"
    );
    for (rung, built) in built.iter().enumerate() {
        let described = layout
            .rendition(rung as u32)
            .finished(leaf)
            .expect("described");
        assert_same(
            built,
            &described,
            &format!("{what}, rung {rung} described on resume"),
        );
    }
    built.swap_remove(0)
}

fn settings(codec: VideoCodec, preset: &str, height: Option<u32>) -> EncodeSettings {
    let mut settings = EncodeSettings::new(codec);
    settings.preset = preset.into();
    settings.height = height;
    settings
}

/// Whether decode order differs from presentation order (B-frames).
fn reordered(index: &NodeIndex) -> bool {
    index.pts.windows(2).any(|pair| pair[1] < pair[0])
}

#[test]
fn x264_with_b_frames_from_a_real_sample() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = sample("10_bbb_rotated90_h264_aac51_1080p.mp4");
    let job = job(
        &input,
        &dir.path().join("out.mp4"),
        &settings(VideoCodec::H264, "medium", Some(360)),
        3,
        &[],
    );
    // The middle segment: a seek, a lead-in decoded and dropped.
    let index = check_segment(&input, &job, &dir.path().join("scratch"), 1, "x264 medium");
    assert!(reordered(&index), "x264 medium encodes B-frames");
    assert!(
        index.samples.is_some(),
        "H.264 samples sized from the index"
    );
}

#[test]
fn x265_from_a_real_hevc_sample() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = sample("12_hevc_aac51_1080p.ts");
    let job = job(
        &input,
        &dir.path().join("out.mp4"),
        &settings(VideoCodec::H265, "fast", Some(240)),
        2,
        &[],
    );
    let index = check_segment(&input, &job, &dir.path().join("scratch"), 1, "x265");
    assert!(reordered(&index), "x265 fast encodes B-frames");
}

#[test]
fn vp9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = sample("06_bbb_vp9_opus_320x180.webm");
    let job = job(
        &input,
        &dir.path().join("out.webm"),
        &settings(VideoCodec::Vp9, "8", None),
        2,
        &[],
    );
    check_segment(&input, &job, &dir.path().join("scratch"), 1, "vp9");
}

#[test]
fn av1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = sample("08_quicktime_h264_aac_640x465_oddsize.mov");
    let job = job(
        &input,
        &dir.path().join("out.mp4"),
        &settings(VideoCodec::Av1, "10", Some(240)),
        2,
        &[],
    );
    check_segment(&input, &job, &dir.path().join("scratch"), 0, "av1");
}

#[test]
fn renditions_from_one_decode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = sample("10_bbb_rotated90_h264_aac51_1080p.mp4");
    let job = job(
        &input,
        &dir.path().join("out.mp4"),
        &settings(VideoCodec::H264, "veryfast", None),
        3,
        &[360, 240],
    );
    assert_eq!(job.rungs().len(), 2, "two rungs");
    check_segment(&input, &job, &dir.path().join("scratch"), 2, "renditions");
}
