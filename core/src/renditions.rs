//! **Pure.** An ABR ladder: the renditions one job encodes from one decode (`--renditions
//! 1080,720:crf=23,480:bitrate=1M`), each rung's encoder settings from the job's, and the file
//! a single-file output writes each rung to (`out.mp4` → `out_720p.mp4`).

use crate::settings::{parse_bitrate, EncodeSettings, RateControl};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One rung as asked for: its height (pixels, as displayed) and, when given, its own rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendition {
    pub height: u32,
    /// `None`: the ladder's default for the rung (see [`rendition_settings`]).
    pub rate: Option<RateControl>,
}

/// Parses a ladder: comma-separated heights, each optionally followed by `:crf=N` or
/// `:bitrate=RATE` (`2M`, `800k`). Heights must be at least 2 and distinct; errors say what was
/// expected, in the flag's terms.
pub fn parse_renditions(text: &str) -> Result<Vec<Rendition>, String> {
    let mut ladder: Vec<Rendition> = Vec::new();
    for rung in text.split(',').map(str::trim) {
        let mut parts = rung.split(':');
        let height_text = parts.next().unwrap_or_default();
        let height: u32 = height_text
            .trim_end_matches(['p', 'P'])
            .parse()
            .ok()
            .filter(|&height| height >= 2)
            .ok_or_else(|| {
                format!(
                    "--renditions {text}: {rung:?} is not a height (expected e.g. 720 or \
                     720:crf=23)"
                )
            })?;
        let mut rate = None;
        for option in parts {
            let (name, value) = option.split_once('=').unwrap_or((option, ""));
            let parsed = match name {
                "crf" => value.parse().ok().map(RateControl::Crf),
                "bitrate" | "b" => parse_bitrate(value).map(RateControl::Bitrate),
                _ => {
                    return Err(format!(
                        "--renditions {text}: unknown rung setting {option:?} (expected crf=N \
                         or bitrate=RATE)"
                    ))
                }
            };
            rate =
                Some(parsed.ok_or_else(|| {
                    format!("--renditions {text}: {option:?} is not a valid {name}")
                })?);
        }
        if ladder.iter().any(|other| other.height == height) {
            return Err(format!("--renditions {text}: {height} is listed twice"));
        }
        ladder.push(Rendition { height, rate });
    }
    Ok(ladder)
}

/// Each rung's encoder settings, tallest first: the job's settings at the rung's height, with
/// the rung's own rate when given. Otherwise a CRF job keeps its CRF on every rung (constant
/// quality needs no per-size figure), and a bitrate job gives its bitrate to the tallest rung
/// and each smaller one that bitrate scaled by the pixel ratio to the power 0.75 (smaller
/// pictures need more bits per pixel), rounded to kbit/s.
pub fn rendition_settings(base: &EncodeSettings, ladder: &[Rendition]) -> Vec<EncodeSettings> {
    let mut ladder = ladder.to_vec();
    ladder.sort_by_key(|rung| std::cmp::Reverse(rung.height));
    let tallest = ladder.first().map_or(1, |rung| rung.height);
    ladder
        .iter()
        .map(|rung| {
            let rate = rung.rate.unwrap_or(match base.rate {
                RateControl::Crf(crf) => RateControl::Crf(crf),
                RateControl::Bitrate(bits) => {
                    let area = (f64::from(rung.height) / f64::from(tallest)).powi(2);
                    let scaled = (bits as f64 * area.powf(0.75) / 1000.0).round() as u64 * 1000;
                    RateControl::Bitrate(scaled.max(1000))
                }
            });
            EncodeSettings {
                height: Some(rung.height),
                rate,
                ..base.clone()
            }
        })
        .collect()
}

/// Where a single-file output writes the rung `height` pixels tall: `_<height>p` before the
/// extension (`out.mp4` → `out_720p.mp4`).
pub fn rendition_output(output: &Path, height: u32) -> PathBuf {
    let stem = output.file_stem().unwrap_or_default().to_string_lossy();
    let name = match output.extension() {
        Some(extension) => format!("{stem}_{height}p.{}", extension.to_string_lossy()),
        None => format!("{stem}_{height}p"),
    };
    output.with_file_name(name)
}

/// Keyframes forced at a fixed spacing of the source's timeline, so that renditions encoded
/// apart have their keyframes at the same frames: a frame starts a new slot when it is the first
/// at or after `first_pts + k × ticks` (source time base), and each slot's first frame is a
/// keyframe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyframeGrid {
    pub first_pts: i64,
    /// The spacing, in ticks of the source's video time base; at least 1.
    pub ticks: i64,
}

impl KeyframeGrid {
    /// The grid with `seconds` spacing in a time base of `num/den` seconds per tick.
    pub fn every(seconds: f64, first_pts: i64, num: i64, den: i64) -> Self {
        let ticks = (seconds * den as f64 / num.max(1) as f64).round() as i64;
        Self {
            first_pts,
            ticks: ticks.max(1),
        }
    }

    /// The slot holding `pts`.
    pub fn slot(&self, pts: i64) -> i64 {
        (pts - self.first_pts).div_euclid(self.ticks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::VideoCodec;

    #[test]
    fn ladders_parse_with_and_without_rates() {
        assert_eq!(
            parse_renditions("1080,720:crf=23, 480p:bitrate=1M"),
            Ok(vec![
                Rendition {
                    height: 1080,
                    rate: None
                },
                Rendition {
                    height: 720,
                    rate: Some(RateControl::Crf(23))
                },
                Rendition {
                    height: 480,
                    rate: Some(RateControl::Bitrate(1_000_000))
                },
            ])
        );
        for bad in [
            "",
            "abc",
            "720,720",
            "1",
            "720:crf=x",
            "720:speed=3",
            "720:bitrate=0",
        ] {
            let error = parse_renditions(bad).expect_err(bad);
            assert!(error.starts_with("--renditions"), "{bad}: {error}");
        }
    }

    #[test]
    fn rungs_take_the_job_settings_at_their_height() {
        let mut base = EncodeSettings::new(VideoCodec::H264);
        base.rate = RateControl::Crf(20);
        let ladder = parse_renditions("480,1080:crf=18").expect("ladder");
        let rungs = rendition_settings(&base, &ladder);
        assert_eq!(rungs.len(), 2);
        assert_eq!(
            (rungs[0].height, rungs[0].rate),
            (Some(1080), RateControl::Crf(18))
        );
        assert_eq!(
            (rungs[1].height, rungs[1].rate),
            (Some(480), RateControl::Crf(20))
        );
        assert_eq!(rungs[1].preset, base.preset);

        base.rate = RateControl::Bitrate(6_000_000);
        let rungs = rendition_settings(&base, &parse_renditions("1080,540").expect("ladder"));
        assert_eq!(rungs[0].rate, RateControl::Bitrate(6_000_000));
        // A quarter of the pixels: 6 Mbit/s × 0.25^0.75.
        assert_eq!(rungs[1].rate, RateControl::Bitrate(2_121_000));
    }

    #[test]
    fn a_grid_slots_frames_by_time() {
        // 2 s at 1/12800.
        let grid = KeyframeGrid::every(2.0, 512, 1, 12800);
        assert_eq!(grid.ticks, 25600);
        assert_eq!(grid.slot(512), 0);
        assert_eq!(grid.slot(512 + 25599), 0);
        assert_eq!(grid.slot(512 + 25600), 1);
        assert_eq!(grid.slot(0), -1);
    }

    #[test]
    fn single_file_rungs_are_named_by_height() {
        assert_eq!(
            rendition_output(Path::new("/x/out.mp4"), 720),
            PathBuf::from("/x/out_720p.mp4")
        );
        assert_eq!(
            rendition_output(Path::new("out"), 480),
            PathBuf::from("out_480p")
        );
    }
}
