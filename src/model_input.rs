//! `treemux model --input FILE`: a real video as the model's input. The file is probed (its
//! index, no decoding), its duration, size and bitrates measured, and its segments planned as
//! the deployed analyze plans them (the core's `plan_at_real_keyframes` under the model's plan
//! limits, `min_segment_seconds` and `max_segments`), so the projection runs on the plan the
//! stack would make of this file rather than on a formula of its length.

use crate::model::ModelInputs;
use anyhow::Context as _;
use serde::Serialize;
use std::path::{Path, PathBuf};
use treemux_core::engine;
use treemux_core::media::probe;
use treemux_core::media::source::Source;
use treemux_core::plan::PlanOptions;

/// What the model learnt from the file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedInput {
    pub path: PathBuf,
    pub container: String,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub seconds: f64,
    pub size_bytes: u64,
    /// The whole file's bits per second of video.
    pub bits_per_second: f64,
    /// The video packets' bits per second, where the index gives each packet's size.
    pub video_bits_per_second: Option<f64>,
    /// The rest (audio, other streams, the index and container), bits per second.
    pub other_bits_per_second: Option<f64>,
    pub audio_tracks: usize,
    /// Each planned segment's length in seconds (its frames at the file's mean frame rate), in
    /// presentation order.
    pub segment_seconds: Vec<f64>,
    /// Segments that start between keyframes (decoding a lead-in they drop).
    pub lead_in_segments: usize,
}

/// Probes `path` and plans it under `inputs`' plan limits.
pub fn plan_input(path: &Path, inputs: &ModelInputs) -> anyhow::Result<PlannedInput> {
    let info = probe::probe(path)?;
    let source = Source::file(path)?;
    plan_probed(path, &source, info, inputs)
}

/// Plans `source` (named `path`), probed as `info`, under `inputs`' plan limits: a local file,
/// or an object read by ranges (`treemux submit --dry-run`).
pub fn plan_probed(
    path: &Path,
    source: &Source,
    mut info: treemux_core::media::probe::MediaInfo,
    inputs: &ModelInputs,
) -> anyhow::Result<PlannedInput> {
    let seconds = info.video.duration_seconds();
    if seconds <= 0.0 {
        anyhow::bail!("{}: the video has no duration", path.display());
    }
    let options = PlanOptions {
        max_segments: inputs.max_segments,
        min_segment_seconds: inputs.min_segment_seconds,
        ..PlanOptions::default()
    };
    let plan = engine::plan_at_real_keyframes(source, &mut info, path, &options)
        .with_context(|| format!("{}: cannot plan segments", path.display()))?;
    let frames = plan.frame_count.max(1) as f64;
    let video_bytes: Option<u64> = (!info.video_packets_at.is_empty())
        .then(|| info.video_packets_at.iter().map(|packet| packet.size).sum());
    let rate = |bytes: u64| bytes as f64 * 8.0 / seconds;
    Ok(PlannedInput {
        path: path.to_owned(),
        container: info.container.clone(),
        codec: info.video.codec.clone(),
        width: info.video.width,
        height: info.video.height,
        seconds,
        size_bytes: info.size_bytes,
        bits_per_second: rate(info.size_bytes),
        video_bits_per_second: video_bytes.map(rate),
        other_bits_per_second: video_bytes.map(|video| rate(info.size_bytes.saturating_sub(video))),
        audio_tracks: info.audio.len(),
        segment_seconds: plan
            .segments
            .iter()
            .map(|segment| segment.frames as f64 * seconds / frames)
            .collect(),
        lead_in_segments: plan
            .segments
            .iter()
            .filter(|segment| segment.lead_in_frames > 0)
            .count(),
    })
}

impl PlannedInput {
    /// The model's inputs for this file: its length, its bytes per second, its audio (the bytes
    /// that are not video, an upper bound: they include the index and the container) when it
    /// has audio, and the planned segment count unless `keep_segments`.
    pub fn apply(&self, inputs: &mut ModelInputs, keep_segments: bool) {
        inputs.video_seconds = self.seconds;
        inputs.source_bytes_per_video_second = self.size_bytes as f64 / self.seconds;
        if let (Some(other), true) = (self.other_bits_per_second, self.audio_tracks > 0) {
            inputs.audio_bytes_per_video_second = other / 8.0;
        }
        if !keep_segments {
            inputs.segments = self.segment_seconds.len() as u32;
        }
    }

    /// Three lines: the file, its bitrates, its plan.
    pub fn describe(&self) -> Vec<String> {
        let kbps = |bits: f64| format!("{:.0} kb/s", bits / 1e3);
        let split = match (self.video_bits_per_second, self.other_bits_per_second) {
            (Some(video), Some(other)) => format!(
                " = video {} + audio, index and container {}",
                kbps(video),
                kbps(other)
            ),
            _ => String::new(),
        };
        let (shortest, longest) = self
            .segment_seconds
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), s| {
                (lo.min(*s), hi.max(*s))
            });
        let count = self.segment_seconds.len();
        vec![
            format!(
                "input: {}: {} {} {}x{}, {:.3} s, {} bytes, {} audio track{}",
                self.path.display(),
                self.container,
                self.codec,
                self.width,
                self.height,
                self.seconds,
                self.size_bytes,
                self.audio_tracks,
                if self.audio_tracks == 1 { "" } else { "s" }
            ),
            format!("       {}{split}", kbps(self.bits_per_second)),
            format!(
                "       planned as analyze plans it: {count} segment{} of {shortest:.2}–{longest:.2} s ({} starting between keyframes)",
                if count == 1 { "" } else { "s" },
                self.lead_in_segments
            ),
        ]
    }
}
