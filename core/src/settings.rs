//! Encoding settings and output containers: plain data, shared by the CLI, the functions and the
//! state-machine payloads.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// The video codecs treemux encodes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    H264,
    H265,
    Vp9,
    Av1,
}

impl VideoCodec {
    /// The FFmpeg encoder used for this codec.
    pub fn encoder_name(self) -> &'static str {
        match self {
            Self::H264 => "libx264",
            Self::H265 => "libx265",
            Self::Vp9 => "libvpx-vp9",
            Self::Av1 => "libsvtav1",
        }
    }

    /// Constant-quality value used when neither `--crf` nor `--bitrate` is given: each encoder's
    /// own default or the value its documentation recommends for general use.
    pub fn default_crf(self) -> u32 {
        match self {
            Self::H264 => 23,
            Self::H265 => 28,
            Self::Vp9 => 31,
            Self::Av1 => 35,
        }
    }

    /// Preset used when `--preset` is not given, in the encoder's own vocabulary: x264/x265 preset
    /// names, libvpx `cpu-used`, SVT-AV1 preset number.
    pub fn default_preset(self) -> &'static str {
        match self {
            Self::H264 | Self::H265 => "medium",
            Self::Vp9 => "4",
            Self::Av1 => "8",
        }
    }

    /// Largest constant rate factor the encoder accepts.
    pub fn max_crf(self) -> u32 {
        match self {
            Self::H264 | Self::H265 => 51,
            Self::Vp9 | Self::Av1 => 63,
        }
    }

    /// Smallest frame width and height the encoder accepts, in pixels.
    pub fn min_dimension(self) -> u32 {
        match self {
            // SVT-AV1 refuses anything below 64x64.
            Self::Av1 => 64,
            Self::H264 | Self::H265 | Self::Vp9 => 2,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "h264" | "avc" | "x264" => Some(Self::H264),
            "h265" | "hevc" | "x265" => Some(Self::H265),
            "vp9" => Some(Self::Vp9),
            "av1" => Some(Self::Av1),
            _ => None,
        }
    }
}

impl fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::H264 => "h264",
            Self::H265 => "h265",
            Self::Vp9 => "vp9",
            Self::Av1 => "av1",
        })
    }
}

/// Rate control: constant quality or a target bitrate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateControl {
    /// Constant rate factor (lower is better quality).
    Crf(u32),
    /// Average bitrate in bits per second.
    Bitrate(u64),
}

/// How every segment of a job is encoded. All segments of a job must use identical settings, or
/// their streams could not be concatenated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodeSettings {
    pub codec: VideoCodec,
    pub rate: RateControl,
    /// Encoder preset, in the encoder's own vocabulary (see [`VideoCodec::default_preset`]).
    pub preset: String,
    /// Output height in pixels; width follows the display aspect ratio. `None` keeps the source
    /// size (cropped by one row or column where the source is odd: 4:2:0 needs even sizes).
    pub height: Option<u32>,
    /// Encoder threads per segment worker.
    pub threads: u32,
    /// Bit depth and chroma format of the encoded picture.
    #[serde(default)]
    pub pixel_format: OutputPixels,
    /// Turn the pixels to the source's display rotation (as ffmpeg's autorotate does) instead of
    /// keeping the rotation as metadata. Runners set it for containers that cannot carry a
    /// display matrix ([`Container::carries_rotation`]); users may ask for it everywhere.
    #[serde(default)]
    pub autorotate: bool,
    /// Allow `height` above the source's height (otherwise refused, see
    /// [`EncodeSettings::check_upscale`]).
    #[serde(default)]
    pub upscale: bool,
}

/// Which pixel format the encoder gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputPixels {
    /// The source's bit depth (8, 10, 12) and chroma format (4:2:0, 4:2:2, 4:4:4) where the
    /// encoder can hold them, else the nearest it can (see `media::picture`).
    #[default]
    Source,
    /// 8-bit 4:2:0, the most widely playable format, whatever the source.
    Yuv420p,
}

impl OutputPixels {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "source" | "auto" | "keep" => Some(Self::Source),
            "yuv420p" | "8bit" => Some(Self::Yuv420p),
            _ => None,
        }
    }
}

impl EncodeSettings {
    /// These settings as a job writing `container` uses them: the rotation is turned into the
    /// pixels where the container cannot carry it.
    pub fn for_container(&self, container: Container) -> Self {
        Self {
            autorotate: self.autorotate || !container.carries_rotation(),
            ..self.clone()
        }
    }

    /// The codec's default quality and preset, one thread.
    pub fn new(codec: VideoCodec) -> Self {
        Self {
            codec,
            rate: RateControl::Crf(codec.default_crf()),
            preset: codec.default_preset().to_owned(),
            height: None,
            threads: 1,
            pixel_format: OutputPixels::Source,
            autorotate: false,
            upscale: false,
        }
    }
}

/// x264 and x265 preset names, fastest first.
pub const X26X_PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

/// What `--preset` accepts for one encoder, in the encoder's own vocabulary. The one source of the
/// ranges that `--help`, the README and the errors state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresetRange {
    /// One of these names, fastest first (x264, x265).
    Names(&'static [&'static str]),
    /// A whole number from `min` to `max` inclusive, called `what` by the encoder (libvpx
    /// `cpu-used`, SVT-AV1 preset number).
    Numbers {
        what: &'static str,
        min: i32,
        max: i32,
    },
}

impl PresetRange {
    /// True when `preset` is in the range.
    pub fn accepts(self, preset: &str) -> bool {
        match self {
            Self::Names(names) => names.contains(&preset),
            Self::Numbers { min, max, .. } => preset
                .parse::<i32>()
                .is_ok_and(|value| (min..=max).contains(&value)),
        }
    }
}

impl fmt::Display for PresetRange {
    /// `ultrafast … placebo` or `cpu-used -8 to 8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Names(names) => match (names.first(), names.last()) {
                (Some(first), Some(last)) => write!(f, "{first} … {last}"),
                _ => Ok(()),
            },
            Self::Numbers { what, min, max } => write!(f, "{what} {min} to {max}"),
        }
    }
}

impl VideoCodec {
    /// Every codec treemux encodes to, in the order help texts list them.
    pub const ALL: [Self; 4] = [Self::H264, Self::H265, Self::Vp9, Self::Av1];

    /// What `--preset` accepts for this codec's encoder.
    pub fn preset_range(self) -> PresetRange {
        match self {
            Self::H264 | Self::H265 => PresetRange::Names(&X26X_PRESETS),
            // libvpx-vp9's cpu-used: negative values trade speed the same way as positive ones.
            Self::Vp9 => PresetRange::Numbers {
                what: "cpu-used",
                min: -8,
                max: 8,
            },
            // SVT-AV1's presets; -1 is FFmpeg's "the encoder's default".
            Self::Av1 => PresetRange::Numbers {
                what: "preset",
                min: -1,
                max: 13,
            },
        }
    }
}

/// The `--preset` help text, derived from [`VideoCodec::preset_range`] and
/// [`VideoCodec::default_preset`], so that the help cannot disagree with what is accepted.
pub fn preset_help() -> String {
    let x26x = VideoCodec::H264;
    let described = |codec: VideoCodec, who: &str| {
        format!(
            "{who} {} (default {})",
            codec.preset_range(),
            codec.default_preset()
        )
    };
    format!(
        "Encoder preset, in the encoder's own terms: {}, {}, {}",
        described(x26x, "x264/x265"),
        described(VideoCodec::Vp9, "libvpx"),
        described(VideoCodec::Av1, "SVT-AV1"),
    )
}

impl EncodeSettings {
    /// Checks the settings before any work starts, so that a typo is reported as such rather
    /// than as an encoder failure in every worker.
    pub fn validate(&self) -> Result<(), String> {
        let range = self.codec.preset_range();
        if !range.accepts(&self.preset) {
            return Err(match range {
                PresetRange::Names(names) => format!(
                    "--preset {}: {} takes one of {}",
                    self.preset,
                    self.codec.encoder_name(),
                    names.join(", ")
                ),
                PresetRange::Numbers { .. } => format!(
                    "--preset {}: {} takes {range}",
                    self.preset,
                    self.codec.encoder_name(),
                ),
            });
        }
        match self.rate {
            RateControl::Crf(crf) if crf > self.codec.max_crf() => Err(format!(
                "--crf {crf}: {} takes 0 to {}",
                self.codec,
                self.codec.max_crf()
            )),
            RateControl::Bitrate(0) => Err("--bitrate must be positive".to_owned()),
            _ => Ok(()),
        }
    }

    /// Refuses an encoded height `output_height` above the source's `source_height` (pixels, both
    /// as encoded: the same orientation and the same rounding to even sizes) unless `upscale`
    /// allows it: enlarging adds no detail, only size, so it must be asked for.
    pub fn check_upscale(&self, output_height: u32, source_height: u32) -> Result<(), String> {
        if output_height <= source_height || self.upscale {
            return Ok(());
        }
        Err(format!(
            "--height {} is above the source's height of {source_height} pixels; \
             add --upscale to enlarge it, or choose at most {source_height}",
            self.height.unwrap_or(output_height)
        ))
    }
}

/// Output containers, chosen by the output file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// MP4 (`.mp4`, `.m4v`), written with the index at the front (faststart).
    Mp4,
    /// QuickTime (`.mov`).
    Mov,
    /// Matroska (`.mkv`).
    Matroska,
    /// WebM (`.webm`): VP9 or AV1 video, Opus or Vorbis audio.
    WebM,
}

impl Container {
    /// The container for `path`'s extension, if treemux writes it.
    pub fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "mp4" | "m4v" => Some(Self::Mp4),
            "mov" => Some(Self::Mov),
            "mkv" => Some(Self::Matroska),
            "webm" => Some(Self::WebM),
            _ => None,
        }
    }

    /// The container named `name` (`mp4`, `m4v`, `mov`, `mkv` or `matroska`, `webm`; any case).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "matroska" => Some(Self::Matroska),
            other => Self::from_path(Path::new(&format!("output.{other}"))),
        }
    }

    /// The file extension treemux gives outputs in this container.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4",
            Self::Mov => "mov",
            Self::Matroska => "mkv",
            Self::WebM => "webm",
        }
    }

    /// FFmpeg muxer name.
    pub fn muxer_name(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4",
            Self::Mov => "mov",
            Self::Matroska => "matroska",
            Self::WebM => "webm",
        }
    }

    /// The video codec used when the user names none.
    pub fn default_codec(self) -> VideoCodec {
        match self {
            Self::WebM => VideoCodec::Vp9,
            Self::Mp4 | Self::Mov | Self::Matroska => VideoCodec::H264,
        }
    }

    /// True when this container can carry `codec`. QuickTime (FFmpeg 5.1's `mov` muxer) has no
    /// sample entry for VP9 or AV1; WebM holds only VP8/VP9/AV1.
    pub fn allows(self, codec: VideoCodec) -> bool {
        !matches!(
            (self, codec),
            (Self::WebM, VideoCodec::H264 | VideoCodec::H265)
                | (Self::Mov, VideoCodec::Vp9 | VideoCodec::Av1)
        )
    }

    /// True when the container keeps a display matrix (rotation) for players. FFmpeg 5.1's
    /// Matroska and WebM muxers drop it, so there the rotation must be applied to the pixels.
    pub fn carries_rotation(self) -> bool {
        matches!(self, Self::Mp4 | Self::Mov)
    }

    /// True when an audio track of codec `name` (FFmpeg's codec name) may be copied into this
    /// container. Beyond what the muxer accepts at all, MP4/MOV get no Opus or FLAC: FFmpeg 5.1
    /// writes them to MP4 only as an experimental feature and not at all to QuickTime, and the
    /// ffmpeg CLI re-encodes them to AAC there too.
    pub fn copies_audio(self, name: &str) -> bool {
        !matches!(
            (self, name),
            (Self::Mp4 | Self::Mov, "opus" | "flac" | "vorbis")
        )
    }

    /// FFmpeg name of the audio encoder used when a source audio track cannot be copied into this
    /// container.
    pub fn fallback_audio_encoder(self) -> &'static str {
        match self {
            Self::WebM => "libopus",
            Self::Mp4 | Self::Mov | Self::Matroska => "aac",
        }
    }
}

/// What one job is made with: its output container and encoder settings, its ladder and its
/// packaging (recorded on the job record of a job on AWS).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSettings {
    pub container: Container,
    pub encode: EncodeSettings,
    /// The ABR ladder as asked for (`--renditions`), in the order given; empty: one rendition
    /// with `encode` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renditions: Vec<crate::renditions::Rendition>,
    /// An HLS or DASH package instead of one file per rendition; `None`: files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packaging: Option<crate::media::package::PackageFormat>,
    /// A poster and, with an interval, thumbnail sheets beside the output; `None`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnails: Option<crate::thumbnails::ThumbnailRequest>,
}

impl JobSettings {
    /// One rendition in one file: `encode` in `container`.
    pub fn new(container: Container, encode: EncodeSettings) -> Self {
        Self {
            container,
            encode,
            renditions: Vec::new(),
            packaging: None,
            thumbnails: None,
        }
    }
}

/// Parses a bitrate such as `2500000`, `800k` or `2.5M` into bits per second.
pub fn parse_bitrate(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, multiplier) = match text.chars().last()? {
        'k' | 'K' => (&text[..text.len() - 1], 1e3),
        'm' | 'M' => (&text[..text.len() - 1], 1e6),
        'g' | 'G' => (&text[..text.len() - 1], 1e9),
        _ => (text, 1.0),
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value > 0.0).then(|| (value * multiplier).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates_parse_with_suffixes() {
        assert_eq!(parse_bitrate("800k"), Some(800_000));
        assert_eq!(parse_bitrate("2.5M"), Some(2_500_000));
        assert_eq!(parse_bitrate("1200"), Some(1200));
        assert_eq!(parse_bitrate("fast"), None);
        assert_eq!(parse_bitrate("-1M"), None);
        assert_eq!(parse_bitrate(""), None);
    }

    #[test]
    fn presets_and_quality_are_checked_per_codec() {
        let mut settings = EncodeSettings::new(VideoCodec::H264);
        assert_eq!(settings.validate(), Ok(()));
        settings.preset = "sluggish".into();
        assert!(settings.validate().is_err_and(|e| e.contains("ultrafast")));
        let mut vp9 = EncodeSettings::new(VideoCodec::Vp9);
        assert_eq!(vp9.validate(), Ok(()));
        vp9.preset = "medium".into();
        assert!(vp9.validate().is_err());
        let mut av1 = EncodeSettings::new(VideoCodec::Av1);
        av1.rate = RateControl::Crf(64);
        assert!(av1.validate().is_err_and(|e| e.contains("0 to 63")));
    }

    #[test]
    fn preset_help_and_errors_state_the_accepted_ranges() {
        let help = preset_help();
        for codec in VideoCodec::ALL {
            let range = codec.preset_range().to_string();
            assert!(help.contains(&range), "{help} lacks {range}");
            assert!(codec.preset_range().accepts(codec.default_preset()));
        }
        assert!(help.contains("cpu-used -8 to 8") && help.contains("preset -1 to 13"));
        let mut vp9 = EncodeSettings::new(VideoCodec::Vp9);
        for (preset, ok) in [("-8", true), ("8", true), ("9", false), ("-9", false)] {
            vp9.preset = preset.into();
            assert_eq!(vp9.validate().is_ok(), ok, "vp9 preset {preset}");
        }
        vp9.preset = "9".into();
        assert!(vp9
            .validate()
            .is_err_and(|e| e.contains(&VideoCodec::Vp9.preset_range().to_string())));
    }

    #[test]
    fn heights_above_the_source_need_upscale() {
        let mut settings = EncodeSettings::new(VideoCodec::H264);
        assert_eq!(settings.check_upscale(240, 240), Ok(()));
        settings.height = Some(120);
        assert_eq!(settings.check_upscale(120, 240), Ok(()));
        settings.height = Some(480);
        assert!(settings
            .check_upscale(480, 240)
            .is_err_and(|e| e.contains("--height 480")
                && e.contains("--upscale")
                && e.contains("240")));
        settings.upscale = true;
        assert_eq!(settings.check_upscale(480, 240), Ok(()));
    }

    #[test]
    fn containers_follow_extensions_and_refuse_unfit_codecs() {
        assert_eq!(
            Container::from_path(Path::new("a/b.MP4")),
            Some(Container::Mp4)
        );
        assert_eq!(
            Container::from_path(Path::new("b.webm")).map(Container::default_codec),
            Some(VideoCodec::Vp9)
        );
        assert_eq!(Container::from_path(Path::new("b.avi")), None);
        assert!(!Container::WebM.allows(VideoCodec::H264));
        for container in [
            Container::Mp4,
            Container::Mov,
            Container::Matroska,
            Container::WebM,
        ] {
            assert_eq!(Container::parse(container.extension()), Some(container));
        }
        assert_eq!(Container::parse("Matroska"), Some(Container::Matroska));
        assert_eq!(Container::parse("avi"), None);
        assert!(Container::Matroska.allows(VideoCodec::Av1));
    }
}
