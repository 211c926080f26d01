//! The handlers' configuration from the environment the template (or the local stack) sets.

use crate::handlers::{climb_seconds_for, Config};
use crate::job_settings::{self, SettingsLayer, Templates};
use std::path::PathBuf;
use treemux_core::plan::PlanOptions;
use treemux_core::settings::{Container, EncodeSettings, RateControl, VideoCodec};

pub(super) fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
}

pub(super) fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The handlers' configuration from the environment:
/// `TREEMUX_SCRATCH_DIR` (the EFS mount), `TREEMUX_OUTPUT_BUCKET`, `TREEMUX_OUTPUT_PREFIX`
/// (default `transcoded/`), `TREEMUX_CODEC` (h264), `TREEMUX_CRF` or `TREEMUX_BITRATE` (e.g. `2M`),
/// `TREEMUX_PRESET`, `TREEMUX_HEIGHT` (empty or unset: the codec's defaults, the source's height),
/// `TREEMUX_UPSCALE` (`1`: allow a height above the source's),
/// `TREEMUX_CONTAINER` (mp4, mov, mkv or webm; default mp4), `TREEMUX_TEMPLATES` (named
/// settings an upload may choose, a JSON object such as `{"web-720p": {"height": 720, "crf":
/// 23}}`; see [`crate::job_settings`]), `TREEMUX_THREADS` (default: the vCPUs),
/// `TREEMUX_MAX_SEGMENTS` (default 1024), `TREEMUX_MIN_SEGMENT_SECONDS` (default 4),
/// `TREEMUX_FUNCTION_TIMEOUT_SECONDS` (the template's `TimeoutSeconds`, default 900),
/// `TREEMUX_CLIMB_SECONDS` (default: from that timeout, [`climb_seconds_for`]),
/// `TREEMUX_SEGMENT_BUCKET` (where segment files are kept between tasks; empty or unset: on
/// scratch) and `TREEMUX_LOCAL_DIR` (a task's own files; default the temporary directory).
/// Each template is checked at start-up as a job choosing it would be.
pub fn config_from_env() -> Result<Config, String> {
    let settings = encode_settings_from(|name| std::env::var(name).ok())?;
    config_with(settings)
}

/// The encode settings from `TREEMUX_CODEC`, `TREEMUX_CRF`, `TREEMUX_BITRATE`, `TREEMUX_PRESET`
/// and `TREEMUX_HEIGHT` as `var` reads them. An empty value counts as unset: the template passes
/// its empty parameter defaults through, meaning "the codec's default".
fn encode_settings_from(var: impl Fn(&str) -> Option<String>) -> Result<EncodeSettings, String> {
    let set = |name: &str| var(name).filter(|value| !value.trim().is_empty());
    let codec_name = set("TREEMUX_CODEC").unwrap_or_else(|| "h264".to_owned());
    let codec = VideoCodec::parse(&codec_name)
        .ok_or_else(|| format!("TREEMUX_CODEC={codec_name}: expected h264, h265, vp9 or av1"))?;
    let mut settings = EncodeSettings::new(codec);
    match (set("TREEMUX_CRF"), set("TREEMUX_BITRATE")) {
        (Some(crf), Some(bitrate)) => {
            return Err(format!(
                "TREEMUX_CRF={crf} and TREEMUX_BITRATE={bitrate}: set one of them"
            ))
        }
        (Some(crf), None) => {
            settings.rate = RateControl::Crf(
                crf.parse()
                    .map_err(|_| format!("TREEMUX_CRF={crf}: expected a whole number"))?,
            );
        }
        (None, Some(bitrate)) => {
            settings.rate =
                RateControl::Bitrate(treemux_core::settings::parse_bitrate(&bitrate).ok_or_else(
                    || format!("TREEMUX_BITRATE={bitrate}: expected a rate such as 2M or 800k"),
                )?);
        }
        (None, None) => {}
    }
    if let Some(preset) = set("TREEMUX_PRESET") {
        settings.preset = preset;
    }
    if let Some(height) = set("TREEMUX_HEIGHT") {
        settings.height = Some(
            height
                .parse()
                .map_err(|_| format!("TREEMUX_HEIGHT={height}: expected pixels"))?,
        );
    }
    settings.upscale = env_or("TREEMUX_UPSCALE", "0") == "1";
    Ok(settings)
}

/// The rest of the configuration from the environment, around `settings`.
fn config_with(mut settings: EncodeSettings) -> Result<Config, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    settings.threads = env_or("TREEMUX_THREADS", &cores.to_string())
        .parse()
        .map_err(|_| "TREEMUX_THREADS: expected a number".to_owned())?;
    settings.validate()?;
    let (container, templates) = job_defaults_from(|name| std::env::var(name).ok(), &settings)?;
    let max_segments: u32 = env_or("TREEMUX_MAX_SEGMENTS", "1024")
        .parse()
        .map_err(|_| "TREEMUX_MAX_SEGMENTS: expected a number".to_owned())?;
    let min_segment_seconds: f64 = env_or("TREEMUX_MIN_SEGMENT_SECONDS", "4")
        .parse()
        .map_err(|_| "TREEMUX_MIN_SEGMENT_SECONDS: expected seconds".to_owned())?;
    let timeout_seconds: f64 = env_or("TREEMUX_FUNCTION_TIMEOUT_SECONDS", "900")
        .parse()
        .map_err(|_| "TREEMUX_FUNCTION_TIMEOUT_SECONDS: expected seconds".to_owned())?;
    let climb_seconds = match std::env::var("TREEMUX_CLIMB_SECONDS") {
        Ok(seconds) => seconds
            .parse()
            .map_err(|_| format!("TREEMUX_CLIMB_SECONDS={seconds}: expected seconds"))?,
        Err(_) => climb_seconds_for(timeout_seconds),
    };
    Ok(Config {
        scratch_root: PathBuf::from(env("TREEMUX_SCRATCH_DIR")?),
        output_bucket: env("TREEMUX_OUTPUT_BUCKET")?,
        output_prefix: env_or("TREEMUX_OUTPUT_PREFIX", "transcoded/"),
        settings,
        container,
        templates,
        plan: PlanOptions {
            max_segments,
            min_segment_seconds,
            ..PlanOptions::default()
        },
        crashes: Default::default(),
        climb_seconds,
        segment_bucket: std::env::var("TREEMUX_SEGMENT_BUCKET")
            .ok()
            .filter(|bucket| !bucket.trim().is_empty()),
        local_dir: std::env::var_os("TREEMUX_LOCAL_DIR")
            .map_or_else(std::env::temp_dir, PathBuf::from),
    })
}

/// The default container (`TREEMUX_CONTAINER`) and the templates (`TREEMUX_TEMPLATES`) as
/// `var` reads them, each template checked on `settings` as a job choosing it would be.
fn job_defaults_from(
    var: impl Fn(&str) -> Option<String>,
    settings: &EncodeSettings,
) -> Result<(Container, Templates), String> {
    let set = |name: &str| var(name).filter(|value| !value.trim().is_empty());
    let container = match set("TREEMUX_CONTAINER") {
        Some(name) => Container::parse(name.trim()).ok_or_else(|| {
            format!("TREEMUX_CONTAINER={name}: expected one of mp4, mov, mkv, webm")
        })?,
        None => Container::Mp4,
    };
    if !container.allows(settings.codec) {
        return Err(format!(
            "TREEMUX_CONTAINER={}: a .{} file cannot hold {} video (TREEMUX_CODEC)",
            container.extension(),
            container.extension(),
            settings.codec
        ));
    }
    let templates = match set("TREEMUX_TEMPLATES") {
        Some(text) => job_settings::parse_templates(&text).map_err(|e| e.to_string())?,
        None => Templates::new(),
    };
    for name in templates.keys() {
        let choose = SettingsLayer {
            template: Some(name.clone()),
            from: [("template".to_owned(), "TREEMUX_TEMPLATES".to_owned())].into(),
            ..SettingsLayer::default()
        };
        job_settings::resolve(settings, container, &templates, None, &choose)
            .map_err(|e| format!("TREEMUX_TEMPLATES template {name}: {e}"))?;
    }
    Ok((container, templates))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encode settings for an environment of `(name, value)` pairs, validated.
    fn settings_for(vars: &[(&str, &str)]) -> Result<EncodeSettings, String> {
        let settings = encode_settings_from(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })?;
        settings.validate()?;
        Ok(settings)
    }

    #[test]
    fn empty_template_parameters_mean_the_codecs_defaults() {
        // What the template passes with its defaults: empty Crf, Bitrate, Preset and Height.
        let empty = [
            ("TREEMUX_CRF", ""),
            ("TREEMUX_BITRATE", ""),
            ("TREEMUX_PRESET", ""),
            ("TREEMUX_HEIGHT", ""),
        ];
        for (codec, preset, crf) in [("h264", "medium", 23), ("vp9", "4", 31), ("av1", "8", 35)] {
            let mut vars = empty.to_vec();
            vars.push(("TREEMUX_CODEC", codec));
            let settings = settings_for(&vars).expect(codec);
            assert_eq!(settings.preset, preset, "{codec}");
            assert_eq!(settings.rate, RateControl::Crf(crf), "{codec}");
            assert_eq!(settings.height, None);
        }
    }

    #[test]
    fn bitrate_and_height_are_read_and_crf_excludes_bitrate() {
        let settings = settings_for(&[
            ("TREEMUX_CODEC", "h265"),
            ("TREEMUX_BITRATE", "2.5M"),
            ("TREEMUX_CRF", ""),
            ("TREEMUX_HEIGHT", "720"),
        ])
        .expect("settings");
        assert_eq!(settings.rate, RateControl::Bitrate(2_500_000));
        assert_eq!(settings.height, Some(720));
        let both = settings_for(&[("TREEMUX_CRF", "20"), ("TREEMUX_BITRATE", "2M")]);
        assert!(both.is_err_and(|e| e.contains("set one of them")));
        let bad = settings_for(&[("TREEMUX_BITRATE", "fast")]);
        assert!(bad.is_err_and(|e| e.contains("TREEMUX_BITRATE=fast")));
        let vp9_medium = settings_for(&[("TREEMUX_CODEC", "vp9"), ("TREEMUX_PRESET", "medium")]);
        assert!(vp9_medium.is_err(), "refused at start-up too");
    }

    fn job_defaults_for(vars: &[(&str, &str)]) -> Result<(Container, Templates), String> {
        let settings = settings_for(vars)?;
        job_defaults_from(
            |name| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            },
            &settings,
        )
    }

    #[test]
    fn the_container_and_templates_are_checked_at_start_up() {
        let (container, templates) = job_defaults_for(&[
            ("TREEMUX_CONTAINER", "mkv"),
            (
                "TREEMUX_TEMPLATES",
                r#"{"web-720p": {"height": 720, "crf": 23}}"#,
            ),
        ])
        .expect("defaults");
        assert_eq!(container, Container::Matroska);
        assert_eq!(templates["web-720p"].height, Some(Some(720)));
        let empty = job_defaults_for(&[("TREEMUX_CONTAINER", ""), ("TREEMUX_TEMPLATES", "")]);
        assert!(empty.is_ok_and(|(c, t)| c == Container::Mp4 && t.is_empty()));
        let webm = job_defaults_for(&[("TREEMUX_CONTAINER", "webm")]);
        assert!(webm.is_err_and(|e| e.contains("cannot hold h264")));
        let bad = job_defaults_for(&[("TREEMUX_TEMPLATES", r#"{"x": {"preset": "sluggish"}}"#)]);
        assert!(bad.is_err_and(|e| e.contains("template x")
            && e.contains("preset sluggish")
            && !e.contains("--preset")));
        let typo = job_defaults_for(&[("TREEMUX_TEMPLATES", r#"{"x": {"heigth": 720}}"#)]);
        assert!(typo.is_err_and(|e| e.contains("unknown setting \"heigth\"")));
    }
}
