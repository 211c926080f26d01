//! What every function binary does before it serves Lambda events.

use std::path::Path;
use treemux::local::{transcode, TranscodeOptions};
use treemux::settings::{EncodeSettings, VideoCodec};

/// Process start-up for the function `name`: restarts with zeroed allocations (see
/// [`treemux::process`]), then, when the binary was started as `bootstrap --self-test INPUT
/// OUTPUT`, transcodes INPUT to OUTPUT with the media core and exits instead of serving.
///
/// The self-test is how `layer/check` proves, without AWS, that a function binary and the FFmpeg
/// layer work with only the libraries Lambda provides; after a deploy it runs the same way in a
/// Lambda console shell or container. It prints one JSON line and exits 0, or prints the error and
/// exits 1.
pub fn prepare(name: &str) {
    treemux::process::ensure_zeroed_heap_or_warn(name);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("--self-test") {
        return;
    }
    let code = match args.as_slice() {
        [_, input, output] => match self_test(Path::new(input), Path::new(output)) {
            Ok(summary) => {
                println!("{summary}");
                0
            }
            Err(error) => {
                eprintln!("{name}: self-test failed: {error}");
                1
            }
        },
        _ => {
            eprintln!("usage: {name} --self-test INPUT OUTPUT");
            2
        }
    };
    std::process::exit(code);
}

fn self_test(input: &Path, output: &Path) -> Result<serde_json::Value, treemux::Error> {
    let mut settings = EncodeSettings::new(VideoCodec::H264);
    settings.preset = "veryfast".to_owned();
    let mut options = TranscodeOptions::new(settings);
    options.plan.exact_segments = Some(2);
    let report = transcode(input, output, &options, &|_| {})?;
    let (codec_version, configuration) = treemux::media::codec_library();
    Ok(serde_json::json!({
        "self_test": "passed",
        "input": input,
        "output": output,
        "segments": report.segments.len(),
        "frames": report.segments.iter().map(|s| s.frames_encoded).sum::<u64>(),
        "output_bytes": report.output_bytes,
        "libavcodec": { "version": codec_version, "configuration": configuration },
    }))
}
