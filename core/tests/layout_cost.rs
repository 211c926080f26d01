//! A measurement, not a check (ignored; run by hand): the root's layout pass over the kept
//! scratch of a `treemux transcode --keep-temp` run, for the model's root stage. Its cost grows
//! with the samples (a stand-in mux of every video and audio sample), so an hour of video at a
//! low resolution measures what an hour of 1080p costs there.
//!
//! ```sh
//! treemux transcode hour.mp4 out.mp4 --preset ultrafast --keep-temp --json   # note temp_dir
//! TREEMUX_LAYOUT_INPUT=hour.mp4 TREEMUX_LAYOUT_OUTPUT=out.mp4 TREEMUX_LAYOUT_SCRATCH=/tmp/treemux-… \
//!   cargo test -p treemux-core --test layout_cost -- --ignored --nocapture
//! ```

use std::path::PathBuf;
use std::time::Instant;
use treemux_core::engine::{self, RootLayout, ScratchLayout};
use treemux_core::media::probe;
use treemux_core::media::source::Source;
use treemux_core::plan::PlanOptions;
use treemux_core::settings::{Container, EncodeSettings, VideoCodec};

/// CPU seconds (user + system) of this process so far (the layout pass is the only work running).
fn thread_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[test]
#[ignore = "a measurement over a kept scratch directory (see the module's doc)"]
fn layout_pass_cost() {
    let var = |name: &str| PathBuf::from(std::env::var(name).unwrap_or_else(|_| panic!("{name}")));
    let (input, output, scratch) = (
        var("TREEMUX_LAYOUT_INPUT"),
        var("TREEMUX_LAYOUT_OUTPUT"),
        var("TREEMUX_LAYOUT_SCRATCH"),
    );
    let mut settings = EncodeSettings::new(VideoCodec::H264);
    settings.preset = std::env::var("TREEMUX_LAYOUT_PRESET").unwrap_or_else(|_| "ultrafast".into());
    let job = engine::prepare_job(
        &Source::file(&input).expect("source"),
        probe::probe(&input).expect("probe"),
        &input,
        &output,
        Container::from_path(&output).expect("a container"),
        &settings,
        &PlanOptions::default(),
    )
    .expect("the run's job");
    let layout = ScratchLayout::new(&scratch);
    // The layout is recorded once laid out: remove it so the pass runs again.
    for done in [layout.output_layout(), layout.output_header()] {
        let _ = std::fs::remove_file(done);
    }
    let source = Source::file(&input).expect("source");
    let (cpu, wall) = (thread_cpu_seconds(), Instant::now());
    let laid = engine::lay_out_root(&source, &job, &layout).expect("layout");
    let (cpu, wall) = (thread_cpu_seconds() - cpu, wall.elapsed().as_secs_f64());
    let RootLayout::Parts(output_layout) = laid else {
        panic!("the output is laid out by parts");
    };
    let json = std::fs::metadata(layout.output_layout())
        .expect("layout JSON")
        .len();
    let header = std::fs::metadata(layout.output_header())
        .expect("header")
        .len();
    let parts = output_layout.parts().expect("parts").len();
    println!(
        "{}",
        serde_json::json!({
            "video_samples": output_layout.video.sizes.len(),
            "audio_packets": output_layout.audio_packets,
            "runs": output_layout.runs.len(),
            "parts": parts,
            "output_bytes": output_layout.total_bytes,
            "layout_cpu_seconds": cpu,
            "layout_wall_seconds": wall,
            "layout_json_bytes": json,
            "header_bytes": header,
        })
    );
}
