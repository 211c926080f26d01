//! The segments' audio pieces joined once ([`join_audio_pieces`]), with per-track packet counts
//! and decode order checked across the joints.

use super::{AudioAction, AudioReport, AudioWriter};
use crate::media::probe::MediaInfo;
use crate::media::util;
use crate::media::MediaError;
use ffmpeg_next as ffmpeg;
use std::path::Path;
use std::time::Instant;
/// What joining the segments' audio pieces found.
#[derive(Debug)]
pub enum JoinedAudio {
    Written(AudioReport),
    /// The pieces do not hold every packet of the source exactly once (the reason says what is
    /// off): nothing was written.
    Mismatch(String),
}

/// Joins the segment workers' audio pieces (in segment order) into `output` (NUT): each track's
/// packets in order, copied, or re-encoded once for the whole track where `actions` says. Checks
/// that the pieces hold exactly the packets the probe counted per track, in increasing decode
/// order across the joints; otherwise writes nothing and says why ([`JoinedAudio::Mismatch`]).
pub fn join_audio_pieces(
    info: &MediaInfo,
    actions: &[AudioAction],
    pieces: &[std::path::PathBuf],
    output: &Path,
) -> Result<JoinedAudio, MediaError> {
    util::init();
    let started = Instant::now();
    if let Some(missing) = pieces.iter().find(|piece| !piece.is_file()) {
        return Ok(JoinedAudio::Mismatch(format!(
            "{} is missing",
            missing.display()
        )));
    }
    // An empty file is a share without packets.
    let holds_packets =
        |piece: &&std::path::PathBuf| std::fs::metadata(piece).is_ok_and(|meta| meta.len() > 0);
    let Some(first) = pieces.iter().find(holds_packets) else {
        return Ok(JoinedAudio::Mismatch("no audio piece holds packets".into()));
    };
    let tracks: Vec<usize> = (0..info.audio.len()).collect();
    let template = util::open_input(first)?;
    if template.streams().count() != tracks.len() {
        return Ok(JoinedAudio::Mismatch(format!(
            "{} holds {} streams for {} tracks",
            first.display(),
            template.streams().count(),
            tracks.len()
        )));
    }
    let time_bases: Vec<ffmpeg::Rational> = template.streams().map(|s| s.time_base()).collect();
    let offsets: Vec<i64> = time_bases
        .iter()
        .map(|&base| util::offset_ticks(info.intermediate_offset_seconds, base))
        .collect();
    let mut writer = AudioWriter::create(info, actions, &template, &tracks, output)?;
    drop(template);
    let mut counts = vec![0u64; tracks.len()];
    let mut last_dts: Vec<Option<i64>> = vec![None; tracks.len()];
    for piece in pieces.iter().filter(holds_packets) {
        let mut input = util::open_input(piece)?;
        let bases: Vec<ffmpeg::Rational> = input.streams().map(|s| s.time_base()).collect();
        if bases != time_bases {
            return Ok(JoinedAudio::Mismatch(format!(
                "{} has other time bases",
                piece.display()
            )));
        }
        let mut first_of_piece = vec![true; tracks.len()];
        while let Some(mut packet) = util::read_packet(piece, &mut input)? {
            let position = packet.stream();
            if position >= tracks.len() {
                return Ok(JoinedAudio::Mismatch(format!(
                    "{} holds a stream beyond the tracks",
                    piece.display()
                )));
            }
            let dts = packet.dts().or(packet.pts());
            if first_of_piece[position] {
                first_of_piece[position] = false;
                if let (Some(last), Some(dts)) = (last_dts[position], dts) {
                    if dts <= last {
                        return Ok(JoinedAudio::Mismatch(format!(
                            "track {} of {} starts at {dts}, not after {last}",
                            position + 1,
                            piece.display()
                        )));
                    }
                }
            }
            if dts.is_some() {
                last_dts[position] = dts;
            }
            if counts[position] == 0 && matches!(actions[position], AudioAction::Encode { .. }) {
                // The demuxer marked the source's first packet with its priming; the piece
                // lost the mark, and the decoder that re-encodes the track must drop it.
                util::mark_skip_samples(&mut packet, info.audio[position].priming_samples);
            }
            counts[position] += 1;
            // Pieces carry the intermediate offset; the writer adds it again.
            util::shift_packet(&mut packet, -offsets[position]);
            writer.push(position, packet)?;
        }
    }
    for (position, track) in info.audio.iter().enumerate() {
        if counts[position] != track.packets {
            return Ok(JoinedAudio::Mismatch(format!(
                "track {} has {} packets in the pieces and {} in the source",
                position + 1,
                counts[position],
                track.packets
            )));
        }
    }
    let (partial, packets) = writer.finish()?;
    let bytes = std::fs::metadata(partial.path())
        .map_err(MediaError::io(partial.target()))?
        .len();
    partial.commit()?;
    Ok(JoinedAudio::Written(AudioReport {
        tracks: info.audio.len(),
        actions: actions.to_vec(),
        packets,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    }))
}
