//! The audio checks: every track kept, copied tracks packet for packet, re-encoded ones with
//! their channels and length, languages, dispositions and the A/V offset.

use super::VerifyOptions;
use crate::media::probe::{AudioTrack, MediaInfo};
use ffmpeg_next as ffmpeg;

/// How much a re-encoded audio track's length may change: one codec frame of padding either way
/// (AAC 1024 samples, Opus 20 ms) plus resampling rounding.
const REENCODED_LENGTH_TOLERANCE_SECONDS: f64 = 0.05;

/// The audio checks: as many tracks in the output, and each one kept (or re-encoded for the
/// container) with its layout, length, language, disposition and place against the video.
pub(super) fn check_audio(
    source: &MediaInfo,
    output: &MediaInfo,
    options: &VerifyOptions,
    check: &mut impl FnMut(&str, bool, String),
) {
    check(
        "audio tracks",
        source.audio.len() == output.audio.len(),
        format!(
            "source {} tracks, output {}",
            source.audio.len(),
            output.audio.len()
        ),
    );
    for (index, (before, after)) in source.audio.iter().zip(&output.audio).enumerate() {
        check_track(index + 1, (source, before), (output, after), options, check);
    }
}

/// The checks of audio track `number` (from 1): `before` in `source`, `after` in `output`.
fn check_track(
    number: usize,
    (source, before): (&MediaInfo, &AudioTrack),
    (output, after): (&MediaInfo, &AudioTrack),
    options: &VerifyOptions,
    check: &mut impl FnMut(&str, bool, String),
) {
    let video_start = |info: &MediaInfo| info.video.time_base.seconds(info.video.first_pts);
    if before.codec == after.codec {
        check(
            &format!("audio {number} codec and layout"),
            before.channels == after.channels && before.sample_rate == after.sample_rate,
            format!(
                "{} {} ch {} Hz, output {} ch {} Hz",
                before.codec,
                before.channels,
                before.sample_rate,
                after.channels,
                after.sample_rate
            ),
        );
        check(
            &format!("audio {number} packets"),
            before.packets == after.packets,
            format!(
                "source {} packets, output {}",
                before.packets, after.packets
            ),
        );
    } else {
        // Re-encoded for the container: the channels and the length must survive.
        let (length_before, length_after) = (
            before.audible_duration_seconds().unwrap_or(0.0),
            after.audible_duration_seconds().unwrap_or(0.0),
        );
        check(
            &format!("audio {number} re-encoded"),
            before.channels == after.channels && (length_before - length_after).abs() <= REENCODED_LENGTH_TOLERANCE_SECONDS,
            format!(
                "{} {} ch {length_before:.3} s → {} {} ch {length_after:.3} s (length tolerance {REENCODED_LENGTH_TOLERANCE_SECONDS} s)",
                before.codec, before.channels, after.codec, after.channels
            ),
        );
    }
    // An unset language and "und" mean the same; a muxer that insists on a default track may
    // mark one where the source marked none.
    let language = |track: &AudioTrack| track.language().unwrap_or("und").to_owned();
    let source_has_default = source
        .audio
        .iter()
        .any(|track| track.disposition & ffmpeg::ffi::AV_DISPOSITION_DEFAULT != 0);
    let default_bit = if source_has_default {
        ffmpeg::ffi::AV_DISPOSITION_DEFAULT
    } else {
        0
    };
    let comparable =
        |bits: i32| disposition_core(bits) & !(ffmpeg::ffi::AV_DISPOSITION_DEFAULT & !default_bit);
    check(
        &format!("audio {number} language and disposition"),
        language(before) == language(after)
            && comparable(before.disposition) == comparable(after.disposition),
        format!(
            "source {:?} disposition {:#x}, output {:?} disposition {:#x}",
            before.language(),
            before.disposition,
            after.language(),
            after.disposition
        ),
    );
    // A copied track must keep its packets where they were relative to the video (priming
    // included: not every container can signal it, but the samples are the same). A
    // re-encoded track has new priming, so its audible start is what must stay.
    let start = |track: &AudioTrack| {
        if before.codec == after.codec {
            track.first_pts.map(|pts| track.time_base.seconds(pts))
        } else {
            track.audible_start_seconds()
        }
    };
    if let (Some(start_before), Some(start_after)) = (start(before), start(after)) {
        let offset_before = start_before - video_start(source);
        let offset_after = start_after - video_start(output);
        check(
            &format!("audio {number} A/V offset"),
            (offset_before - offset_after).abs() <= options.max_av_offset_seconds,
            format!("audio starts {offset_before:+.4} s from the first frame in the source, {offset_after:+.4} s in the output"),
        );
    }
}

/// The disposition bits a container can be expected to keep (default, forced, …): some muxers
/// add or drop bookkeeping bits of their own.
fn disposition_core(bits: i32) -> i32 {
    let default = ffmpeg::ffi::AV_DISPOSITION_DEFAULT;
    let forced = ffmpeg::ffi::AV_DISPOSITION_FORCED;
    let dub = ffmpeg::ffi::AV_DISPOSITION_DUB;
    let commentary = ffmpeg::ffi::AV_DISPOSITION_COMMENT;
    let impaired =
        ffmpeg::ffi::AV_DISPOSITION_HEARING_IMPAIRED | ffmpeg::ffi::AV_DISPOSITION_VISUAL_IMPAIRED;
    bits & (default | forced | dub | commentary | impaired)
}
