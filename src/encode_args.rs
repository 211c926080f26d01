//! The options `transcode`, `probe` and `bench` share: the segment plan and the encoder settings.

use anyhow::{bail, Context as _};
use clap::Args;
use treemux_core::plan::PlanOptions;
use treemux_core::settings::{
    parse_bitrate, preset_help, Container, EncodeSettings, OutputPixels, RateControl, VideoCodec,
};

#[derive(Args, Debug)]
pub(crate) struct PlanArgs {
    /// Number of segments: `auto`, or a count.
    #[arg(long, default_value = "auto")]
    pub(crate) segments: String,
    /// Segment workers running at once (default: one per CPU core).
    #[arg(long, value_parser = at_least_one)]
    pub(crate) workers: Option<usize>,
}

/// Parses a count that must be at least 1 (`--workers`).
pub(crate) fn at_least_one(text: &str) -> Result<usize, String> {
    text.parse()
        .ok()
        .filter(|&count| count >= 1)
        .ok_or_else(|| "expected a whole number of at least 1".to_owned())
}

/// How to encode (shared by `transcode` and `bench`).
#[derive(Args, Debug)]
pub(crate) struct EncodeArgs {
    /// Video codec: h264, h265, vp9 or av1 (default: h264, or vp9 for .webm).
    #[arg(long)]
    pub(crate) codec: Option<String>,
    /// Constant rate factor (quality; lower is better). Default depends on the codec.
    #[arg(long, conflicts_with = "bitrate")]
    pub(crate) crf: Option<u32>,
    /// Target bitrate instead of constant quality, e.g. 2M or 800k.
    #[arg(long)]
    pub(crate) bitrate: Option<String>,
    // The help is derived from the accepted ranges (settings.rs), so the two cannot disagree.
    #[arg(long, help = preset_help())]
    pub(crate) preset: Option<String>,
    /// Output height in pixels, as displayed; the width keeps the aspect ratio. At most the
    /// source's height unless --upscale is given.
    #[arg(long, group = "picture_height")]
    pub(crate) height: Option<u32>,
    /// Allow --height (or a --renditions rung) above the source's height (enlarging adds size,
    /// not detail).
    #[arg(long, requires = "picture_height")]
    pub(crate) upscale: bool,
    /// Pixel format: `source` keeps the source's bit depth (8/10/12) and chroma (4:2:0, 4:2:2,
    /// 4:4:4) where the encoder can; `yuv420p` makes 8-bit 4:2:0, the most widely playable.
    #[arg(long, default_value = "source", value_name = "source|yuv420p")]
    pub(crate) pix_fmt: String,
    /// Turn the pixels to the source's display rotation in every container (always done for
    /// .mkv and .webm, which cannot carry a rotation); otherwise MP4/MOV keep it as metadata.
    #[arg(long)]
    pub(crate) autorotate: bool,
}

pub(crate) fn plan_options(args: &PlanArgs, cores: usize) -> anyhow::Result<PlanOptions> {
    let workers = args.workers.unwrap_or(cores).max(1);
    let exact_segments = match args.segments.as_str() {
        "auto" => None,
        count => {
            let count: u32 = count.parse().ok().filter(|&n| n >= 1).with_context(|| {
                format!("--segments {count}: expected `auto` or a whole number of at least 1")
            })?;
            Some(count)
        }
    };
    // Four segments per worker: longest-first scheduling then balances the workers even when
    // the content's difficulty varies along the video.
    Ok(PlanOptions {
        max_segments: (workers * 4) as u32,
        exact_segments,
        balance_over: workers as u32,
        ..PlanOptions::default()
    })
}

/// Encoder settings from the command line; the codec defaults to the container's.
pub(crate) fn encode_settings(
    args: &EncodeArgs,
    container: Option<Container>,
) -> anyhow::Result<EncodeSettings> {
    let codec = match &args.codec {
        Some(name) => VideoCodec::parse(name)
            .with_context(|| format!("--codec {name}: expected h264, h265, vp9 or av1"))?,
        None => container.map_or(VideoCodec::H264, Container::default_codec),
    };
    let mut settings = EncodeSettings::new(codec);
    if let Some(crf) = args.crf {
        settings.rate = RateControl::Crf(crf);
    }
    if let Some(bitrate) = &args.bitrate {
        settings.rate =
            RateControl::Bitrate(parse_bitrate(bitrate).with_context(|| {
                format!("--bitrate {bitrate}: expected a rate such as 2M or 800k")
            })?);
    }
    if let Some(preset) = &args.preset {
        settings.preset = preset.clone();
    }
    if let Some(height) = args.height {
        if height < 2 {
            bail!("--height {height}: must be at least 2");
        }
        settings.height = Some(height);
    }
    settings.pixel_format = OutputPixels::parse(&args.pix_fmt)
        .with_context(|| format!("--pix-fmt {}: expected source or yuv420p", args.pix_fmt))?;
    settings.autorotate = args.autorotate;
    settings.upscale = args.upscale;
    if let Err(problem) = settings.validate() {
        bail!(problem);
    }
    Ok(settings)
}
