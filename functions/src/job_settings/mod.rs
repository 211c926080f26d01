//! Per-job settings: the stack's defaults, overridden per upload.
//!
//! A job's settings are resolved by analyze, before any work, from four layers, each replacing
//! what the one before set:
//!
//! 1. the stack's defaults (`TREEMUX_CODEC`, `TREEMUX_CRF`, … and `TREEMUX_CONTAINER`);
//! 2. a named template from the stack's `TREEMUX_TEMPLATES` (as MediaConvert's job templates),
//!    chosen by the upload's `template` setting (the object metadata's, else the job spec's);
//! 3. the job spec: a JSON object uploaded beside the video as `<key>.treemux.json` (its own
//!    upload starts no job);
//! 4. the upload's object metadata, `x-amz-meta-treemux-<setting>`: bound to the exact bytes
//!    uploaded, so it is the most specific and wins.
//!
//! The settings are named as the CLI's options are: `codec`, `crf`, `bitrate`, `preset`,
//! `height`, `upscale`, `container`, `renditions` (the CLI's ladder, `1080,720:crf=23,480`;
//! `none` for one rendition), `packaging` (`hls`, `dash`, or `none`: files), `poster`
//! (true/false: a poster JPEG beside the output), `thumbnails` (seconds between thumbnail tiles:
//! sprite sheets and a WebVTT index, and the poster) and `template`. A name treemux does not know, or a value
//! it cannot read, is an error naming the setting and where it came from. What the values mean
//! together (a preset the codec's encoder takes, a CRF in its range on every rung, a container
//! that can hold the codec, a package of MP4 holding H.264 or H.265, a height or a rung no
//! taller than the source unless `upscale`) is checked by the core's own
//! checks, the CLI's ([`EncodeSettings::validate`], [`Container::allows`],
//! `treemux_core::engine::prepare_job`).
//!
//! A layer that changes the codec resets what the stack set for its own codec: the preset and
//! the rate control are the new codec's defaults unless a template, the spec or the metadata
//! sets them. A container that cannot hold the stack's codec, with no codec asked for, gets its
//! own default codec (VP9 for WebM), as the CLI's output extension does.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use treemux_core::media::package::PackageFormat;
use treemux_core::renditions::{parse_renditions, rendition_settings, Rendition};
use treemux_core::settings::{
    parse_bitrate, Container, EncodeSettings, JobSettings, RateControl, VideoCodec,
};
use treemux_core::thumbnails::ThumbnailRequest;

/// Object metadata names treemux reads, after S3's `x-amz-meta-` (S3 gives them lowercased).
pub const METADATA_PREFIX: &str = "treemux-";

/// The job spec of `uploads/a.mp4` is `uploads/a.mp4.treemux.json`.
pub const SPEC_SUFFIX: &str = ".treemux.json";

/// Largest job spec treemux reads, in bytes.
pub const SPEC_MAX_BYTES: u64 = 64 * 1024;

/// Every setting name a layer may set (a template cannot name another template).
pub const SETTING_NAMES: [&str; 12] = [
    "codec",
    "crf",
    "bitrate",
    "preset",
    "height",
    "upscale",
    "container",
    "renditions",
    "packaging",
    "poster",
    "thumbnails",
    "template",
];

/// True when `key` is a job spec (its upload starts no job).
pub fn is_job_spec(key: &str) -> bool {
    key.ends_with(SPEC_SUFFIX)
}

/// The key of the job spec beside `key`.
pub fn spec_key(key: &str) -> String {
    format!("{key}{SPEC_SUFFIX}")
}

/// A setting that could not be read or does not fit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{origin}: unknown setting {name:?} (treemux knows {})", SETTING_NAMES.join(", "))]
    UnknownSetting { origin: String, name: String },
    #[error("{origin}: {name}={value:?}: expected {expected}")]
    BadValue {
        origin: String,
        name: String,
        value: String,
        expected: String,
    },
    #[error("{origin}: crf and bitrate are both set: set one of them")]
    CrfAndBitrate { origin: String },
    #[error("{origin}: template {name:?} is not one of the stack's templates ({known})")]
    UnknownTemplate {
        origin: String,
        name: String,
        known: String,
    },
    #[error("{origin}: not a JSON object of settings: {message}")]
    NotSettings { origin: String, message: String },
    /// The settings together, as the core checks them (the message is the core's, in the
    /// CLI's terms), with where the settings involved came from.
    #[error("job settings: {problem} ({origins})")]
    Invalid { problem: String, origins: String },
}

/// What one layer sets; `None` leaves the setting as the layers before it made it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsLayer {
    pub codec: Option<VideoCodec>,
    pub rate: Option<RateControl>,
    pub preset: Option<String>,
    /// `Some(None)`: the source's height (the value `source`).
    pub height: Option<Option<u32>>,
    pub upscale: Option<bool>,
    pub container: Option<Container>,
    /// `Some(vec![])`: one rendition (the value `none`), over a ladder a layer below asked for.
    pub renditions: Option<Vec<Rendition>>,
    /// `Some(None)`: files (the value `none`).
    pub packaging: Option<Option<PackageFormat>>,
    pub poster: Option<bool>,
    /// Milliseconds between thumbnail tiles (the `thumbnails` setting is in seconds).
    pub thumbnails_ms: Option<u64>,
    pub template: Option<String>,
    /// Where each setting this layer sets came from, by setting name.
    pub from: BTreeMap<String, String>,
}

impl SettingsLayer {
    /// The `treemux-*` entries of an object's metadata (S3's names, without `x-amz-meta-`;
    /// other metadata is not treemux's and is ignored).
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Result<Self, SettingsError> {
        let mut layer = Self::default();
        for (name, value) in metadata {
            let name = name.to_ascii_lowercase();
            let Some(setting) = name.strip_prefix(METADATA_PREFIX) else {
                continue;
            };
            let origin = format!("x-amz-meta-{METADATA_PREFIX}{setting}");
            layer.set(setting, value.trim(), &origin, true)?;
        }
        layer.check_rate(&format!("x-amz-meta-{METADATA_PREFIX}*"))?;
        Ok(layer)
    }

    /// This layer with `top` over it: each setting `top` sets replaces this one's (crf and
    /// bitrate as one rate control).
    pub fn under(mut self, top: &SettingsLayer) -> Self {
        if top.rate.is_some() {
            self.from.remove("crf");
            self.from.remove("bitrate");
            self.rate = top.rate;
        }
        self.codec = top.codec.or(self.codec);
        self.preset = top.preset.clone().or(self.preset);
        self.height = top.height.or(self.height);
        self.upscale = top.upscale.or(self.upscale);
        self.container = top.container.or(self.container);
        self.renditions = top.renditions.clone().or(self.renditions);
        self.packaging = top.packaging.or(self.packaging);
        self.poster = top.poster.or(self.poster);
        self.thumbnails_ms = top.thumbnails_ms.or(self.thumbnails_ms);
        self.template = top.template.clone().or(self.template);
        self.from
            .extend(top.from.iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// A JSON object of settings (`{"codec": "h265", "crf": 26}`): a job spec or one of the
    /// stack's templates. `origin` names it in errors; `template` allows a `template` setting.
    pub fn from_json(
        value: &serde_json::Value,
        origin: &str,
        template: bool,
    ) -> Result<Self, SettingsError> {
        let object = value
            .as_object()
            .ok_or_else(|| SettingsError::NotSettings {
                origin: origin.to_owned(),
                message: format!("found {value}"),
            })?;
        let mut layer = Self::default();
        for (name, value) in object {
            let text = match value {
                serde_json::Value::String(text) => text.trim().to_owned(),
                serde_json::Value::Number(number) => number.to_string(),
                serde_json::Value::Bool(flag) => flag.to_string(),
                other => {
                    return Err(SettingsError::BadValue {
                        origin: origin.to_owned(),
                        name: name.clone(),
                        value: other.to_string(),
                        expected: "a string, a number or true/false".to_owned(),
                    })
                }
            };
            layer.set(name, &text, &format!("{origin}: {name}"), template)?;
        }
        layer.check_rate(origin)?;
        Ok(layer)
    }

    /// [`SettingsLayer::from_json`] of a job spec's bytes.
    pub fn from_spec(bytes: &[u8], origin: &str) -> Result<Self, SettingsError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|error| SettingsError::NotSettings {
                origin: origin.to_owned(),
                message: error.to_string(),
            })?;
        Self::from_json(&value, origin, true)
    }

    fn check_rate(&self, origin: &str) -> Result<(), SettingsError> {
        let set = |name: &str| self.from.contains_key(name);
        if set("crf") && set("bitrate") {
            return Err(SettingsError::CrfAndBitrate {
                origin: origin.to_owned(),
            });
        }
        Ok(())
    }

    /// Sets `name` from its text `value`; `origin` says where it came from.
    fn set(
        &mut self,
        name: &str,
        value: &str,
        origin: &str,
        template: bool,
    ) -> Result<(), SettingsError> {
        let bad = |expected: String| SettingsError::BadValue {
            origin: origin.to_owned(),
            name: name.to_owned(),
            value: value.to_owned(),
            expected,
        };
        match name {
            "codec" => {
                self.codec = Some(VideoCodec::parse(value).ok_or_else(|| {
                    bad(format!(
                        "one of {}",
                        VideoCodec::ALL.map(|c| c.to_string()).join(", ")
                    ))
                })?)
            }
            "crf" => {
                self.rate = Some(RateControl::Crf(value.parse().map_err(|_| {
                    bad("a whole number (0 to 51 for h264/h265, 0 to 63 for vp9/av1)".to_owned())
                })?))
            }
            "bitrate" => {
                self.rate = Some(RateControl::Bitrate(parse_bitrate(value).ok_or_else(
                    || bad("bits per second such as 2M, 800k or 2500000".to_owned()),
                )?))
            }
            "preset" if !value.is_empty() => self.preset = Some(value.to_owned()),
            "preset" => return Err(bad("the encoder's preset".to_owned())),
            "height" if value.eq_ignore_ascii_case("source") => self.height = Some(None),
            "height" => {
                let height: u32 = value
                    .parse()
                    .map_err(|_| bad("pixels (a whole number above 0), or source".to_owned()))?;
                if height == 0 {
                    return Err(bad("pixels (a whole number above 0), or source".to_owned()));
                }
                self.height = Some(Some(height));
            }
            "upscale" | "poster" => {
                let flag = match value.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    _ => return Err(bad("true or false (1 or 0)".to_owned())),
                };
                if name == "upscale" {
                    self.upscale = Some(flag);
                } else {
                    self.poster = Some(flag);
                }
            }
            "thumbnails" => {
                let request = value
                    .parse::<f64>()
                    .ok()
                    .and_then(|seconds| ThumbnailRequest::from_seconds(Some(seconds), None))
                    .ok_or_else(|| {
                        bad("seconds between thumbnails (a number above 0, e.g. 10)".to_owned())
                    })?;
                self.thumbnails_ms = request.interval_ms;
            }
            "container" => {
                self.container = Some(
                    Container::parse(value)
                        .ok_or_else(|| bad("one of mp4, mov, mkv, webm".to_owned()))?,
                )
            }
            "renditions" if value.is_empty() || value.eq_ignore_ascii_case("none") => {
                self.renditions = Some(Vec::new())
            }
            "renditions" => {
                let ladder = parse_renditions(value).map_err(|problem| {
                    // The parser's words are the flag's (`--renditions 1080,x: …`): keep the why.
                    let why = problem
                        .split_once(": ")
                        .map_or(problem.as_str(), |(_, why)| why);
                    bad(format!(
                        "heights such as 1080,720:crf=23,480 or none ({why})"
                    ))
                })?;
                self.renditions = Some(ladder)
            }
            "packaging" if value.is_empty() || value.eq_ignore_ascii_case("none") => {
                self.packaging = Some(None)
            }
            "packaging" => {
                self.packaging = Some(Some(PackageFormat::parse(value).ok_or_else(|| {
                    bad("hls, dash or none (one file per rendition)".to_owned())
                })?))
            }
            "template" if template && !value.is_empty() => self.template = Some(value.to_owned()),
            "template" if template => return Err(bad("a template's name".to_owned())),
            _ => {
                return Err(SettingsError::UnknownSetting {
                    origin: origin.to_owned(),
                    name: name.to_owned(),
                })
            }
        }
        self.from.insert(name.to_owned(), origin.to_owned());
        Ok(())
    }
}

/// The stack's named templates: name → settings.
pub type Templates = BTreeMap<String, SettingsLayer>;

/// Reads `TREEMUX_TEMPLATES`: a JSON object of template name → settings object.
pub fn parse_templates(text: &str) -> Result<Templates, SettingsError> {
    let origin = "TREEMUX_TEMPLATES";
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|error| SettingsError::NotSettings {
            origin: origin.to_owned(),
            message: error.to_string(),
        })?;
    let object = value
        .as_object()
        .ok_or_else(|| SettingsError::NotSettings {
            origin: origin.to_owned(),
            message: "expected an object of template name → settings".to_owned(),
        })?;
    object
        .iter()
        .map(|(name, settings)| {
            let layer =
                SettingsLayer::from_json(settings, &format!("{origin} template {name}"), false)?;
            Ok((name.clone(), layer))
        })
        .collect()
}

/// A job's settings and where each one that is not the stack's came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedSettings {
    pub settings: JobSettings,
    pub from: BTreeMap<String, String>,
}

impl ResolvedSettings {
    /// "height from x-amz-meta-treemux-height, codec from …", or "the stack's defaults".
    pub fn origins(&self) -> String {
        if self.from.is_empty() {
            return "all the stack's defaults".to_owned();
        }
        self.from
            .iter()
            .map(|(name, origin)| format!("{name} from {origin}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The settings of one job: `defaults` and `container` (the stack's), then the chosen template,
/// then `spec`, then `metadata` (see the module's documentation), checked as the CLI checks
/// its options (what needs the source, its height, is checked by the engine after the probe).
pub fn resolve(
    defaults: &EncodeSettings,
    container: Container,
    templates: &Templates,
    spec: Option<&SettingsLayer>,
    metadata: &SettingsLayer,
) -> Result<ResolvedSettings, SettingsError> {
    let chosen = match (&metadata.template, spec.and_then(|s| s.template.as_ref())) {
        (Some(name), _) => Some((name, metadata.from["template"].clone())),
        (None, Some(name)) => spec.map(|s| (name, s.from["template"].clone())),
        (None, None) => None,
    };
    let template = match chosen {
        Some((name, origin)) => {
            Some(
                templates
                    .get(name)
                    .ok_or_else(|| SettingsError::UnknownTemplate {
                        origin,
                        name: name.clone(),
                        known: if templates.is_empty() {
                            "the stack has none".to_owned()
                        } else {
                            templates.keys().cloned().collect::<Vec<_>>().join(", ")
                        },
                    })?,
            )
        }
        None => None,
    };
    let layers: Vec<&SettingsLayer> = template.into_iter().chain(spec).chain([metadata]).collect();
    let last = |pick: &dyn Fn(&SettingsLayer) -> bool| layers.iter().rev().find(|l| pick(l));
    let mut from = BTreeMap::new();
    for layer in &layers {
        from.extend(layer.from.clone());
    }
    // The template was chosen by a layer, not set by one: say which.
    if let Some(origin) = [Some(metadata), spec]
        .into_iter()
        .flatten()
        .find_map(|layer| layer.from.get("template"))
    {
        from.insert("template".to_owned(), origin.clone());
    }
    // crf and bitrate are one setting (rate control): the last layer's wins.
    if let Some(layer) = last(&|l| l.rate.is_some()) {
        let (name, drop) = match layer.rate {
            Some(RateControl::Crf(_)) => ("crf", "bitrate"),
            _ => ("bitrate", "crf"),
        };
        from.remove(drop);
        from.insert(name.to_owned(), layer.from[name].clone());
    }
    let container = last(&|l| l.container.is_some())
        .and_then(|l| l.container)
        .unwrap_or(container);
    let codec = match last(&|l| l.codec.is_some()).and_then(|l| l.codec) {
        Some(codec) => codec,
        None if container.allows(defaults.codec) => defaults.codec,
        None => {
            from.insert(
                "codec".to_owned(),
                format!("the {} container's default", container.extension()),
            );
            container.default_codec()
        }
    };
    let mut encode = if codec == defaults.codec {
        defaults.clone()
    } else {
        EncodeSettings {
            rate: RateControl::Crf(codec.default_crf()),
            preset: codec.default_preset().to_owned(),
            codec,
            ..defaults.clone()
        }
    };
    if let Some(rate) = last(&|l| l.rate.is_some()).and_then(|l| l.rate) {
        encode.rate = rate;
    }
    if let Some(preset) = last(&|l| l.preset.is_some()).and_then(|l| l.preset.clone()) {
        encode.preset = preset;
    }
    if let Some(height) = last(&|l| l.height.is_some()).and_then(|l| l.height) {
        encode.height = height;
    }
    if let Some(upscale) = last(&|l| l.upscale.is_some()).and_then(|l| l.upscale) {
        encode.upscale = upscale;
    }
    let renditions = last(&|l| l.renditions.is_some())
        .and_then(|l| l.renditions.clone())
        .unwrap_or_default();
    let packaging = last(&|l| l.packaging.is_some()).and_then(|l| l.packaging.flatten());
    // Tiles come with the poster; the poster alone when asked for.
    let interval_ms = last(&|l| l.thumbnails_ms.is_some()).and_then(|l| l.thumbnails_ms);
    let poster = last(&|l| l.poster.is_some()).and_then(|l| l.poster) == Some(true);
    let thumbnails = (interval_ms.is_some() || poster).then_some(ThumbnailRequest {
        interval_ms,
        poster_at_ms: None,
    });
    let resolved = ResolvedSettings {
        settings: JobSettings {
            renditions,
            packaging,
            thumbnails,
            ..JobSettings::new(container, encode)
        },
        from,
    };
    resolved.check()?;
    Ok(resolved)
}

/// A message of the core's checks (worded for the command line: `--height 720 …; add
/// --upscale …`) in the job settings' terms: each `--<setting>` named as the setting, and how to
/// allow upscaling on AWS.
pub fn in_setting_terms(message: &str) -> String {
    let mut message = message.replace(
        "add --upscale",
        "set upscale (x-amz-meta-treemux-upscale: true, \"upscale\": true in the job spec, or treemux submit --upscale)",
    );
    for name in SETTING_NAMES {
        message = message.replace(&format!("--{name} "), &format!("{name} "));
        message = message.replace(&format!("--{name}"), name);
    }
    message
}

impl ResolvedSettings {
    /// The core's checks that need no source: the preset and rate for the codec (on every
    /// rung), a container that can hold it, and a package that can.
    fn check(&self) -> Result<(), SettingsError> {
        let JobSettings {
            container,
            encode,
            renditions,
            packaging,
            ..
        } = &self.settings;
        let invalid = |problem: String| SettingsError::Invalid {
            problem: in_setting_terms(&problem),
            origins: self.origins(),
        };
        if !container.allows(encode.codec) {
            return Err(invalid(format!(
                "a .{} file cannot hold {} video",
                container.extension(),
                encode.codec
            )));
        }
        if let Some(format) = packaging {
            format
                .check(*container, encode.codec)
                .map_err(|problem| invalid(format!("packaging {}: {problem}", format.name())))?;
        }
        encode.validate().map_err(invalid)?;
        for rung in rendition_settings(encode, renditions) {
            rung.validate().map_err(|problem| {
                invalid(format!(
                    "rendition {}p: {problem}",
                    rung.height.unwrap_or_default()
                ))
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
