//! A job made ready to run: every check of the request against the probed source, and the
//! plan, at keyframes whose own bytes say they are keyframes; the up-front refusal of an output
//! one S3 multipart upload cannot hold.

use crate::error::Error;
use crate::extras::ExtrasPlan;
use crate::media::audio::{self, AudioAction, SegmentAudio};
use crate::media::convert;
use crate::media::keyframes;
use crate::media::probe::MediaInfo;
use crate::media::source::Source;
use crate::media::streams;
use crate::output_plan::{self, PartPlan};
use crate::plan::{
    estimate_frame_costs, plan_segments_by_cost, PlanError, PlanOptions, SegmentPlan,
};
use crate::renditions::KeyframeGrid;
use crate::settings::{Container, EncodeSettings, RateControl};
use crate::thumbnails::ThumbnailPlan;
use crate::tree::MergeTree;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

use super::ScratchLayout;

/// A job ready to run: the source's probe, the settings for its container, the plan, the merge
/// tree, the audio plan and what the output keeps of everything else.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSpec {
    pub info: MediaInfo,
    pub container: Container,
    /// Encoder settings for the container; `threads` as the caller gave it.
    pub settings: EncodeSettings,
    pub plan: SegmentPlan,
    pub tree: MergeTree,
    pub audio_actions: Vec<AudioAction>,
    /// Every rendition's settings, tallest first, when the job encodes a ladder (from one
    /// decode, [`convert::convert_segment_renditions`]); `settings` is then the first. Empty:
    /// `settings` alone.
    #[serde(default)]
    pub renditions: Vec<EncodeSettings>,
    /// Keyframes forced at this grid in every rendition (packaged outputs cut their fragments
    /// there, so the renditions' fragments align); `None`: the encoder's own choice within a
    /// segment.
    #[serde(default)]
    pub keyframes: Option<KeyframeGrid>,
    /// The poster and tiles the segment workers take ([`Self::set_thumbnails`]); `None`: none.
    #[serde(default)]
    pub thumbnails: Option<ThumbnailPlan>,
}

impl JobSpec {
    /// The settings of every rendition the job encodes (one without a ladder), tallest first.
    pub fn rungs(&self) -> &[EncodeSettings] {
        if self.renditions.is_empty() {
            std::slice::from_ref(&self.settings)
        } else {
            &self.renditions
        }
    }

    /// Makes the job encode every rung of `renditions` (tallest first; from
    /// [`crate::renditions::rendition_settings`]), each checked as [`prepare_job`] checks the
    /// job's own settings (container, settings, size, no upscaling unless allowed) before any
    /// work; `settings` becomes the first rung's.
    pub fn set_renditions(
        &mut self,
        renditions: &[EncodeSettings],
        input: &Path,
        output: &Path,
    ) -> Result<(), Error> {
        let checked = renditions
            .iter()
            .map(|rung| {
                check_settings(
                    &self.info,
                    self.container,
                    rung,
                    input,
                    output,
                    "--renditions rung",
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(first) = checked.first() {
            self.settings = first.clone();
        }
        self.renditions = checked;
        Ok(())
    }

    /// Forces keyframes every `seconds` of the source's timeline in every rendition (an HLS or
    /// DASH package cuts its fragments there, so the renditions' fragments align).
    pub fn align_keyframes(&mut self, seconds: f64) {
        let time_base = self.info.video.time_base;
        self.keyframes = Some(KeyframeGrid::every(
            seconds,
            self.info.video.first_pts,
            i64::from(time_base.num),
            i64::from(time_base.den),
        ));
    }

    /// What the output keeps of subtitles, cover art, chapters and tags (and warnings for the
    /// rest): decided from the probe, the same in every runner.
    pub fn extras(&self) -> ExtrasPlan {
        streams::plan(&self.info, self.container)
    }

    /// True unless the output is known, before any work, to be written in one pass from every
    /// segment in order rather than laid out by sizes and filled by parts (see
    /// [`crate::media::remux::refusal_before_work`]). A runner that moves segments between
    /// machines keeps those jobs' segments where the one pass can read them.
    pub fn may_be_laid_out(&self) -> bool {
        crate::media::remux::refusal_before_work(&self.extras(), self.container).is_none()
    }

    /// True when the segment workers copy the audio out of the bytes they read
    /// ([`convert::convert_segment_from`]'s `audio`) and
    /// [`finish_audio`](super::finish_audio) joins their pieces: MP4/MOV sources with audio and
    /// without timestamp jumps (the mov demuxer positions every stream by time when a worker
    /// seeks, so each worker sees all of its share). Otherwise one streaming pass extracts the
    /// audio ([`extract_audio`](super::extract_audio)).
    pub fn audio_from_segments(&self) -> bool {
        !self.info.audio.is_empty()
            && self.info.container.starts_with("mov,")
            && self.info.timestamp_repair.is_empty()
    }

    /// What segment `index` copies of the audio, when [`Self::audio_from_segments`].
    pub fn segment_audio(&self, layout: &ScratchLayout, index: u32) -> Option<SegmentAudio> {
        (self.audio_from_segments() && (index as usize) < self.plan.segments.len()).then(|| {
            SegmentAudio::of_segment(&self.info, &self.plan, index, layout.segment_audio(index))
        })
    }

    /// One line per thing of the source the output does not keep.
    pub fn warnings(&self) -> Vec<String> {
        self.extras()
            .warnings
            .into_iter()
            .chain(self.info.video.hdr.not_kept_warning(self.settings.codec))
            .collect()
    }
}

/// Checks a probed source against the job's settings and plans it: the container can hold the
/// codec, the settings are valid, the audio has a plan, the frame size suits the encoder and no
/// upscaling happens unless allowed, and the frames can be cut into segments, at keyframes
/// whose own bytes say they are (see [`plan_at_real_keyframes`]; `source` holds the bytes
/// `info` was probed from).
///
/// Errors name `output` for what concerns the output (container, settings) and `input` for
/// what concerns the source, in the user's terms.
pub fn prepare_job(
    source: &Source,
    info: MediaInfo,
    input: &Path,
    output: &Path,
    container: Container,
    settings: &EncodeSettings,
    plan_options: &PlanOptions,
) -> Result<JobSpec, Error> {
    let job_settings = check_settings(&info, container, settings, input, output, "--height")?;
    let audio_actions = audio::plan_audio(&info, container, output)?;
    let mut info = info;
    let plan = plan_at_real_keyframes(source, &mut info, input, plan_options)?;
    let tree = MergeTree::new(plan.segments.len() as u32);
    Ok(JobSpec {
        info,
        container,
        settings: job_settings,
        plan,
        tree,
        audio_actions,
        renditions: Vec::new(),
        keyframes: None,
        thumbnails: None,
    })
}

/// The checks of one rendition's settings against the source: the container holds the codec,
/// the settings are valid, the frame size suits the encoder, no upscaling unless allowed.
/// Returns the settings for the container. `height_flag` names the height in errors.
fn check_settings(
    info: &MediaInfo,
    container: Container,
    settings: &EncodeSettings,
    input: &Path,
    output: &Path,
    height_flag: &str,
) -> Result<EncodeSettings, Error> {
    if !container.allows(settings.codec) {
        return Err(Error::request(
            output,
            format!(
                "a .{} file cannot hold {} video",
                container.muxer_name(),
                settings.codec
            ),
        ));
    }
    settings
        .validate()
        .map_err(|problem| Error::request(output, problem))?;
    let job_settings = settings.for_container(container);
    let (width, height) = convert::output_size(&info.video, &job_settings);
    // The source's height as it would be encoded without --height (whatever orientation and
    // rounding output_size applies).
    let (_, source_height) = convert::output_size(
        &info.video,
        &EncodeSettings {
            height: None,
            ..job_settings.clone()
        },
    );
    settings
        .check_upscale(height, source_height)
        .map_err(|problem| problem.replacen("--height", height_flag, 1))
        .map_err(|problem| Error::request(input, problem))?;
    let min = settings.codec.min_dimension();
    if width < min || height < min {
        return Err(Error::request(
            input,
            format!(
                "{} needs frames of at least {min}x{min}; this video would be {width}x{height}",
                settings.codec.encoder_name()
            ),
        ));
    }
    Ok(job_settings)
}

/// The source's segment plan, balanced by estimated encode cost where the probe gave every
/// frame's packet size ([`frame_costs`]), else by frame count. What `transcode` runs and
/// `probe --segments` shows.
pub fn plan_for(info: &MediaInfo, options: &PlanOptions) -> Result<SegmentPlan, PlanError> {
    let costs = frame_costs(info);
    plan_segments_by_cost(
        &info.frames,
        costs.as_deref(),
        info.video.time_base,
        info.video.duration_seconds(),
        options,
    )
}

/// Each frame's estimated encode cost ([`estimate_frame_costs`]) from its packet's size in the
/// source, matched by pts; `None` when a frame's packet has no known position and size (a
/// container without byte positions) or two packets share a pts.
pub fn frame_costs(info: &MediaInfo) -> Option<Vec<u64>> {
    let mut size_by_pts = std::collections::HashMap::with_capacity(info.video_packets_at.len());
    for packet in &info.video_packets_at {
        if size_by_pts.insert(packet.pts, packet.size).is_some() {
            return None;
        }
    }
    let sizes: Option<Vec<u64>> = info
        .frames
        .iter()
        .map(|frame| size_by_pts.get(&frame.pts).copied())
        .collect();
    estimate_frame_costs(&info.frames, &sizes?)
}

/// Refuses, before any work, a job whose output cannot be one S3 multipart upload (at most
/// 10,000 parts of 5 MiB–5 GiB, 5 TiB): the output estimated from the probe and the settings
/// ([`output_plan::estimate_output`]: the source's video bytes per pixel scaled to the output's
/// size, or the target bitrate; the audio; the index). Returns the part plan that estimate
/// gets; errors name `input`. For runners that upload the output (the Lambda path); a local
/// file has no such limit.
pub fn check_output_fits_multipart(job: &JobSpec, input: &Path) -> Result<PartPlan, Error> {
    let info = &job.info;
    let (width, height) = convert::output_size(&info.video, &job.settings);
    let reencoded = job
        .audio_actions
        .iter()
        .filter(|action| matches!(action, AudioAction::Encode { .. }))
        .count() as u64;
    // A re-encoded track's packets are not known yet: twice the source's leaves room for an
    // encoder with shorter frames (AAC's 1024 samples against Opus's 960 at 48 kHz).
    let audio_samples =
        info.audio
            .iter()
            .zip(&job.audio_actions)
            .map(|(track, action)| match action {
                AudioAction::Copy => track.packets,
                AudioAction::Encode { .. } => 2 * track.packets,
            });
    let inputs = output_plan::OutputEstimateInputs {
        duration_seconds: info.video.duration_seconds(),
        source_video_bytes: info.video.packet_bytes,
        source_pixels: u64::from(info.video.width) * u64::from(info.video.height),
        output_pixels: u64::from(width) * u64::from(height),
        video_bitrate: match job.settings.rate {
            RateControl::Bitrate(bits_per_second) => Some(bits_per_second),
            RateControl::Crf(_) => None,
        },
        other_source_bytes: info.size_bytes.saturating_sub(info.video.packet_bytes),
        reencoded_audio_tracks: reencoded,
        index: output_plan::IndexContents {
            samples_per_track: std::iter::once(info.frames.len() as u64)
                .chain(audio_samples)
                .collect(),
            other_tracks: info.other_streams.len() as u64,
            verbatim_bytes: 0,
        },
    };
    output_plan::check_fits_multipart(&inputs).map_err(|source| Error::OutputTooLarge {
        path: input.to_owned(),
        source,
    })
}

/// Rounds of planning, checking the plan's keyframes and demoting the false ones, before every
/// keyframe not yet checked is demoted at once (which the next plan cannot cut at).
const KEYFRAME_CHECK_ROUNDS: usize = 8;

/// Plans `info`'s frames so that every keyframe a segment decodes from starts decoding by its
/// own bytes ([`keyframes::false_cut_points`]: MP4/MOV H.264 and HEVC, whose keyframes the
/// probe lists from the sync-sample table). A keyframe that does not is demoted in
/// `info.frames` (with a warning) and the frames are planned again; after
/// [`KEYFRAME_CHECK_ROUNDS`] rounds every unchecked keyframe is demoted, so the plan decodes
/// only from checked keyframes or the start: a cut never lands on a false keyframe.
pub fn plan_at_real_keyframes(
    source: &Source,
    info: &mut MediaInfo,
    input: &Path,
    plan_options: &PlanOptions,
) -> Result<SegmentPlan, Error> {
    let plan_once = |info: &MediaInfo| {
        plan_for(info, plan_options).map_err(|source| Error::Plan {
            path: input.to_owned(),
            source,
        })
    };
    let bitstream = keyframes::video_bitstream(source, &*info)?;
    let mut checked = BTreeSet::new();
    for round in 1.. {
        let plan = plan_once(&*info)?;
        let false_points =
            keyframes::false_cut_points(source, &*info, &plan, bitstream, &mut checked)?;
        if false_points.is_empty() {
            return Ok(plan);
        }
        let last_round = round >= KEYFRAME_CHECK_ROUNDS;
        tracing::warn!(
            source = %input.display(),
            false_keyframes = false_points.len(),
            round,
            "the index calls {} samples keyframes that are not; planning again without {}",
            false_points.len(),
            if last_round { "any unchecked keyframe" } else { "them" }
        );
        let first_pts = info.video.first_pts;
        for frame in &mut info.frames {
            let unchecked = frame.pts > first_pts && !checked.contains(&frame.pts);
            if frame.key && (false_points.contains(&frame.pts) || (last_round && unchecked)) {
                frame.key = false;
            }
        }
        info.video.keyframe_count = info.frames.iter().filter(|frame| frame.key).count() as u64;
    }
    unreachable!("the rounds end with a plan that decodes from checked keyframes only")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::probe::{probe_source, PacketReads};
    use std::path::PathBuf;

    /// 100 frames at 25 fps, no B-frames (sample n is frame n-1), a keyframe every 25 frames;
    /// then, if `lie`, the sync-sample table's last entry (sample 76, a keyframe) moved to
    /// sample 74, a P frame, without changing the box's size.
    fn clip(dir: &Path, lie: bool) -> PathBuf {
        let path = dir.join(if lie { "lying.mp4" } else { "honest.mp4" });
        let status = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=160x120:rate=25:duration=4")
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0"])
            .args(["-g", "25", "-keyint_min", "25", "-sc_threshold", "0"])
            .arg(&path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg could not write the clip");
        if lie {
            let mut data = std::fs::read(&path).expect("clip");
            let at = data
                .windows(4)
                .position(|w| w == b"stss")
                .expect("a sync-sample table");
            // type, version+flags, count, then the entries.
            let entries: Vec<u32> = (0..4)
                .map(|i| {
                    let from = at + 12 + 4 * i;
                    u32::from_be_bytes(data[from..from + 4].try_into().expect("4 bytes"))
                })
                .collect();
            assert_eq!(entries, [1, 26, 51, 76], "the clip's keyframes");
            data[at + 24..at + 28].copy_from_slice(&74u32.to_be_bytes());
            std::fs::write(&path, data).expect("patched");
        }
        path
    }

    fn four_segments() -> PlanOptions {
        PlanOptions {
            exact_segments: Some(4),
            min_segment_seconds: 0.5,
            ..PlanOptions::default()
        }
    }

    #[test]
    fn a_false_keyframe_in_the_index_is_never_cut_at() {
        crate::media::init();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = clip(dir.path(), true);
        let source = Source::file(&path).expect("source");
        let mut info = probe_source(&source, PacketReads::IndexWherePossible).expect("probe");
        assert!(info.frames[73].key, "the index calls frame 73 a keyframe");
        assert!(!info.frames[75].key, "and frame 75 none");
        // Planned on the index's word, segment 3 would decode from frame 73.
        let trusting = plan_for(&info, &four_segments()).expect("plan");
        assert_eq!(
            trusting.segments[3].decode_from.map(|point| point.pts),
            Some(info.frames[73].pts)
        );
        let plan = plan_at_real_keyframes(&source, &mut info, &path, &four_segments())
            .expect("checked plan");
        assert!(!info.frames[73].key, "the false keyframe is demoted");
        let starts: Vec<Option<i64>> = plan
            .segments
            .iter()
            .map(|segment| segment.decode_from.map(|point| point.pts))
            .collect();
        let real = |frame: usize| Some(info.frames[frame].pts);
        assert_eq!(starts[1..], [real(25), real(50), real(50)]);
    }

    #[test]
    fn an_honest_index_is_planned_as_it_says() {
        crate::media::init();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = clip(dir.path(), false);
        let source = Source::file(&path).expect("source");
        let mut info = probe_source(&source, PacketReads::IndexWherePossible).expect("probe");
        let before = info.frames.clone();
        let plan =
            plan_at_real_keyframes(&source, &mut info, &path, &four_segments()).expect("plan");
        assert_eq!(info.frames, before, "nothing demoted");
        assert_eq!(
            plan,
            plan_for(&info, &four_segments()).expect("plan"),
            "the plan the index gives"
        );
    }
}
