//! The first frame the decoder shows: decoded once at probe time, so an undecodable stream is
//! refused before any worker starts, and frames before it are not listed.

use super::ProbeError;
use crate::media::clock::{DtsOnlyClock, TimestampRepair};
use crate::media::picture::HdrStatic;
use crate::media::source::{self, Source};
use crate::media::MediaError;
use ffmpeg_next as ffmpeg;

/// Decodes the video from the start of the file until the first frame comes out and returns its
/// presentation timestamp, so a stream the decoder cannot handle is reported now rather than in
/// every worker. Packets are fed in file order, as every worker does (an MP4 edit list that
/// starts after the first keyframe, or a recording that starts mid-GOP, needs several before
/// anything is shown). `None` when the frame has no timestamp. Also returns the HDR10 static
/// metadata the first frame (or the stream) carries.
pub(super) fn first_shown_pts(
    source: &Source,
    video_index: usize,
    repair: &TimestampRepair,
) -> Result<(Option<i64>, HdrStatic), ProbeError> {
    /// Packets fed before giving up: far more than any decoder's delay or the longest GOP
    /// before a first keyframe that a real recording has.
    const MAX_PACKETS: usize = 4096;
    let path = source.name();
    let fail = |reason: String| ProbeError::FirstFrame {
        path: path.to_owned(),
        reason,
    };
    let (mut input, failure) = source::open(source).map_err(|e| match e {
        MediaError::Source { path, source } => ProbeError::Source { path, source },
        other => fail(other.to_string()),
    })?;
    let stream = input
        .stream(video_index)
        .ok_or_else(|| fail("stream vanished".into()))?;
    let context = ffmpeg::codec::Context::from_parameters(stream.parameters())
        .map_err(|e| fail(e.to_string()))?;
    let mut decoder = context.decoder().video().map_err(|e| fail(e.to_string()))?;
    let mut frame = ffmpeg::frame::Video::empty();
    let mut repairer = repair.repairer();
    let mut clock = DtsOnlyClock::default();
    let shown = |frame: &ffmpeg::frame::Video,
                 input: &ffmpeg::format::context::Input,
                 clock: &mut DtsOnlyClock|
     -> Result<(Option<i64>, HdrStatic), ProbeError> {
        if frame.width() == 0 || frame.height() == 0 {
            return Err(ProbeError::FirstFrame {
                path: path.to_owned(),
                reason: "decoded frame has no size".into(),
            });
        }
        let hdr = input
            .stream(video_index)
            .map(|stream| HdrStatic::read(frame, &stream))
            .unwrap_or_default();
        Ok((clock.pts_of(frame), hdr))
    };
    let mut last_error: Option<String> = None;
    let mut fed = 0usize;
    while fed < MAX_PACKETS {
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(error) => {
                return Err(match failure.take() {
                    Some(cause) => ProbeError::Source {
                        path: path.to_owned(),
                        source: cause,
                    },
                    None => fail(error.to_string()),
                })
            }
        }
        if packet.stream() != video_index {
            continue;
        }
        fed += 1;
        repairer.apply(&mut packet);
        if let Err(error) = decoder.send_packet(&packet) {
            // Packets before the first keyframe may not decode; a later one will.
            last_error = Some(error.to_string());
            continue;
        }
        clock.fed(&packet);
        if decoder.receive_frame(&mut frame).is_ok() {
            return shown(&frame, &input, &mut clock);
        }
    }
    decoder.send_eof().map_err(|e| fail(e.to_string()))?;
    match decoder.receive_frame(&mut frame) {
        Ok(()) => shown(&frame, &input, &mut clock),
        Err(error) => Err(fail(last_error.unwrap_or_else(|| error.to_string()))),
    }
}
