//! What every function binary does before it serves Lambda events.

use std::path::Path;
use treemux_core::local::{transcode, TranscodeOptions};
use treemux_core::names::Function;
use treemux_core::settings::{EncodeSettings, VideoCodec};

/// Process start-up for `function`'s binary: restarts with zeroed allocations (see
/// [`treemux_core::process`]), installs the log output ([`init_logging`]), then, when the binary was started as `bootstrap --self-test INPUT
/// OUTPUT`, transcodes INPUT to OUTPUT with the media core and exits instead of serving.
///
/// The self-test is how `layer/check` proves, without AWS, that a function binary and the FFmpeg
/// layer work with only the libraries Lambda provides; after a deploy it runs the same way in a
/// Lambda console shell or container. It prints one JSON line and exits 0, or prints the error and
/// exits 1.
pub fn prepare(function: Function) {
    let zeroed_heap = treemux_core::process::ensure_zeroed_heap();
    let name = function.name();
    init_logging(name);
    treemux_core::process::warn_unless_zeroed(&zeroed_heap);
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
                tracing::error!(function = name, error = %error, "self-test failed");
                1
            }
        },
        _ => {
            tracing::error!(function = name, "usage: {name} --self-test INPUT OUTPUT");
            2
        }
    };
    std::process::exit(code);
}

fn self_test(input: &Path, output: &Path) -> Result<serde_json::Value, treemux_core::Error> {
    let mut settings = EncodeSettings::new(VideoCodec::H264);
    settings.preset = "veryfast".to_owned();
    let mut options = TranscodeOptions::new(settings);
    options.plan.exact_segments = Some(2);
    // Thumbnails too: the layer must hold the mjpeg encoder they are written with.
    options.thumbnails = Some(treemux_core::thumbnails::ThumbnailRequest {
        interval_ms: Some(1000),
        poster_at_ms: None,
    });
    let report = transcode(input, output, &options, &|_| {})?;
    let (codec_version, configuration) = treemux_core::media::codec_library();
    Ok(serde_json::json!({
        "self_test": "passed",
        "input": input,
        "output": output,
        "segments": report.segments.len(),
        "frames": report.segments.iter().map(|s| s.frames_encoded).sum::<u64>(),
        "output_bytes": report.output_bytes,
        "thumbnails": report.thumbnails,
        "libavcodec": { "version": codec_version, "configuration": configuration },
    }))
}

/// Installs the structured log output of the handlers' `tracing` events (job id, key, segments,
/// outcome): one JSON object per line on Lambda (`AWS_LAMBDA_FUNCTION_NAME` is set, and
/// CloudWatch Logs Insights reads the fields) or when `TREEMUX_LOG_FORMAT=json`; one text line
/// per event otherwise. Written to stderr; `RUST_LOG`-style filtering is not needed, the
/// handlers log one line per task. Calling it twice keeps the first subscriber.
pub fn init_logging(name: &str) {
    let json = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        || std::env::var("TREEMUX_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let installed = if json {
        // The span list is empty (the handlers log events, not spans); the current span would
        // repeat the fields.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    if installed.is_err() {
        // The subscriber installed first receives this.
        tracing::warn!(function = name, "a log subscriber was installed already");
    }
}
