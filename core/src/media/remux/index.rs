//! The MP4/MOV index in front of the media: room reserved in the header from the sample counts
//! (`moov_size`), and the room FFmpeg says it lacked when the trailer does not fit.

use super::Failure;
use crate::extras::ExtrasPlan;
use crate::media::streams::ExtraStreams;
use crate::media::util;
use crate::media::MediaError;
use crate::output_plan::{moov_reserve, IndexContents};
use crate::settings::Container;
use ffmpeg_next as ffmpeg;

/// The header options for `container`: for MP4/MOV, `moov_size` from the samples of the video
/// (`video_samples`), of each audio track (`audio_pts`: one per packet) and a bound for each
/// kept packet stream of `extra_streams`, with `verbatim_bytes` of stream headers and tags
/// (cover pictures, chapters, tags and timecode added here) and `extra_room` added.
pub(super) fn header_options(
    container: Container,
    video_samples: u64,
    audio_pts: &[Vec<i64>],
    extra_streams: &ExtraStreams,
    extras: &ExtrasPlan,
    verbatim_bytes: u64,
    extra_room: u64,
) -> ffmpeg::Dictionary<'static> {
    let mut options = ffmpeg::Dictionary::new();
    if matches!(container, Container::Mp4 | Container::Mov) {
        let mut samples: Vec<u64> = vec![video_samples];
        samples.extend(audio_pts.iter().map(|pts| pts.len() as u64));
        // Subtitle events are not counted ahead; a stream of them has at most a couple
        // per video frame in any real file.
        samples.extend((0..extra_streams.packet_streams()).map(|_| 2 * video_samples + 64));
        let verbatim_bytes = verbatim_bytes
            + extra_streams.picture_bytes()
            + serde_json::to_vec(&(&extras.chapters, &extras.tags, &extras.timecode))
                .map_or(0, |json| json.len() as u64);
        let reserve = moov_reserve(&IndexContents {
            samples_per_track: samples,
            other_tracks: 2 + extras.chapters.len().min(1) as u64,
            verbatim_bytes,
        }) + extra_room;
        options.set("moov_size", &reserve.to_string());
    }
    options
}

/// Writes the trailer; [`Failure::IndexRoom`] when the reserved index room was short (the bytes
/// FFmpeg logged it needed).
pub(super) fn write_trailer(
    muxer: &mut ffmpeg::format::context::Output,
    write_failed: &dyn Fn(ffmpeg::Error) -> MediaError,
) -> Result<(), Failure> {
    util::clear_ffmpeg_error();
    if let Err(source) = muxer.write_trailer() {
        let logged = util::take_ffmpeg_error().unwrap_or_default();
        // "reserved_moov_size is too small, needed N additional"
        if let Some(needed) = logged
            .split("needed ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|_| logged.contains("reserved_moov_size"))
        {
            return Err(Failure::IndexRoom { needed });
        }
        return Err(write_failed(source).into());
    }
    Ok(())
}
