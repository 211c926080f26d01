//! Split-audio: take every audio track out of the source once, for the whole file.
//!
//! Audio is never cut per segment: per-segment AAC would add encoder priming and padding at every
//! joint (tens of milliseconds of drift and a click each). Each track is stream-copied with its
//! original timestamps when the output container can hold its codec; otherwise (AAC into WebM,
//! say) that track alone is re-encoded, once, to the container's usual codec (Opus for WebM, AAC
//! otherwise), keeping its channels and start time. The tracks go into one NUT file that is
//! muxed back beside the merged video at the end.

use super::convert::SEGMENT_MUXER;
use super::probe::{AudioTrack, MediaInfo};
use super::source::Source;
use super::util;
use super::MediaError;
use crate::atomic_file::AtomicFile;
use crate::plan::SeekPoint;
use crate::settings::Container;
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// What happens to one audio track.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioAction {
    /// Stream copy: the container holds the codec.
    Copy,
    /// Re-encode with this FFmpeg encoder (the container cannot hold the codec).
    Encode { encoder: String },
}

/// What extracting the audio did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioReport {
    pub tracks: usize,
    pub actions: Vec<AudioAction>,
    pub packets: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Decides, before any work starts, what happens to each audio track of `info` in `container`,
/// and fails early when a track can be neither copied nor re-encoded.
pub fn plan_audio(
    info: &MediaInfo,
    container: Container,
    output: &Path,
) -> Result<Vec<AudioAction>, MediaError> {
    util::init();
    let Some(format) = output_format(container) else {
        return Err(MediaError::Unsupported {
            path: output.to_owned(),
            reason: format!("muxer {} is missing", container.muxer_name()),
        });
    };
    info.audio
        .iter()
        .enumerate()
        .map(|(position, track)| {
            let codec = codec_id_by_name(&track.codec);
            // SAFETY: `format` points at a static muxer description.
            let fits = container.copies_audio(&track.codec) && codec.is_some_and(|codec| unsafe {
                ffmpeg::ffi::avformat_query_codec(format, codec.into(), ffmpeg::ffi::FF_COMPLIANCE_NORMAL) == 1
            });
            if fits {
                return Ok(AudioAction::Copy);
            }
            let encoder = container.fallback_audio_encoder();
            let unsupported = |reason: String| MediaError::Unsupported { path: output.to_owned(), reason };
            if ffmpeg::encoder::find_by_name(encoder).is_none() {
                return Err(unsupported(format!("audio track {} ({}) needs re-encoding with {encoder}, which this FFmpeg build lacks", position + 1, track.codec)));
            }
            if codec.and_then(ffmpeg::decoder::find).is_none() {
                return Err(unsupported(format!("audio track {} ({}) cannot be decoded, so it cannot be re-encoded for a .{} file", position + 1, track.codec, container.muxer_name())));
            }
            if track.channels == 0 || track.channels > 8 {
                return Err(unsupported(format!("audio track {} has {} channels; re-encoding handles 1 to 8", position + 1, track.channels)));
            }
            Ok(AudioAction::Encode { encoder: encoder.to_owned() })
        })
        .collect()
}

/// Writes every audio track of the source into `output` (NUT), copied or re-encoded as `actions`
/// says (one per track, from [`plan_audio`]), in one streaming pass over the source. Returns
/// `None`, writing nothing, when the source has no audio.
///
/// Reads `source` (the bytes `info` was probed from). Other streams are discarded: from
/// MP4/MOV the demuxer then skips the video samples, but ffmpeg-written files interleave an
/// audio frame or two per video frame, so this reads about the whole file; jobs whose segment
/// workers copy the audio instead ([`SegmentAudio`], [`join_audio_pieces`]) never call it.
pub fn extract_audio_from(
    source: &Source,
    info: &MediaInfo,
    actions: &[AudioAction],
    output: &Path,
) -> Result<Option<AudioReport>, MediaError> {
    util::init();
    if info.audio.is_empty() {
        return Ok(None);
    }
    let started = Instant::now();
    let (mut input, failure) = super::source::open(source)?;
    let tracks: Vec<usize> = info.audio.iter().map(|track| track.stream_index).collect();
    if info.timestamp_repair.is_empty() {
        // (A repaired timeline is followed per stream through every packet: keep them all.)
        util::discard_all_but(&mut input, &tracks);
    }
    let mut writer = AudioWriter::create(info, actions, &input, &tracks, output)?;
    let mut repairer = info.timestamp_repair.repairer();
    loop {
        // A fresh packet per read: `Packet::read` does not release the previous one.
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(error) => return Err(failure.read_error(source, error)),
        }
        let Some(position) = tracks.iter().position(|&index| index == packet.stream()) else {
            continue;
        };
        repairer.apply(&mut packet);
        writer.push(position, packet)?;
    }
    let (partial, packets) = writer.finish()?;
    let bytes = std::fs::metadata(partial.path())
        .map_err(MediaError::io(partial.target()))?
        .len();
    partial.commit()?;
    Ok(Some(AudioReport {
        tracks: info.audio.len(),
        actions: actions.to_vec(),
        packets,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    }))
}

/// Where a segment's share of the audio starts or ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareBound {
    FileStart,
    /// Where the worker that decodes from this keyframe starts: each track's first sample at or
    /// after the keyframe's decode time.
    Keyframe(SeekPoint),
    FileEnd,
}

/// The audio one segment worker copies out of the bytes it reads anyway, written by stream copy
/// to `path` (NUT): per track, the samples from the first one at or after the decode time of
/// the keyframe this worker seeks to (`from`; the file's first sample for the first segment)
/// up to the first one at or after the next segment's keyframe (`until`; past the last sample
/// for the last segment). The bounds follow the plan, so the shares of all segments cover
/// every track once: each packet belongs to exactly one segment. A worker sees its whole share:
/// its seek makes the MP4/MOV demuxer hand on every audio sample from that decode time on. It
/// knows from the index which samples its share holds, so it stops reading at the last one,
/// which in an interleaved file lies before the next keyframe: it never fetches the next
/// segment's bytes for a packet it would drop.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentAudio {
    pub path: std::path::PathBuf,
    pub from: ShareBound,
    pub until: ShareBound,
}

impl SegmentAudio {
    /// Segment `index`'s share of `plan` (of the source `info` describes), written to `path`:
    /// from where its worker starts reading to where the next segment's does.
    pub fn of_segment(
        info: &MediaInfo,
        plan: &crate::plan::SegmentPlan,
        index: u32,
        path: std::path::PathBuf,
    ) -> Self {
        // Where a segment's worker starts reading: its keyframe, or the file's start when it
        // decodes from there (the first segment, or a keyframe at the first frame).
        let start = |segment: &crate::plan::Segment| {
            segment
                .decode_from
                .filter(|point| point.pts > info.video.first_pts)
                .map_or(ShareBound::FileStart, ShareBound::Keyframe)
        };
        let segments = &plan.segments;
        Self {
            path,
            from: segments
                .get(index as usize)
                .map_or(ShareBound::FileEnd, start),
            until: segments
                .get(index as usize + 1)
                .map_or(ShareBound::FileEnd, start),
        }
    }
}

/// The index entries `(position, timestamp, flags)` of stream `index` of an open MP4/MOV input,
/// in index (decode) order.
fn index_entries(input: &ffmpeg::format::context::Input, index: usize) -> Vec<(i64, i64, i32)> {
    let Some(stream) = input.stream(index) else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    // SAFETY: the stream belongs to the open `input`; the entries are read before the next
    // packet is, as avformat_index_get_entry requires.
    unsafe {
        let stream_ptr = stream.as_ptr() as *mut ffmpeg::ffi::AVStream;
        let count = ffmpeg::ffi::avformat_index_get_entries_count(stream_ptr);
        for entry in 0..count {
            let entry = ffmpeg::ffi::avformat_index_get_entry(stream_ptr, entry);
            if !entry.is_null() {
                entries.push(((*entry).pos, (*entry).timestamp, (*entry).flags()));
            }
        }
    }
    entries
}

/// One track's share, from its index.
struct TrackShare {
    /// Sample number (decode order) of every sample, by byte position.
    sample_at: std::collections::HashMap<i64, usize>,
    /// The share: samples `[first, end)`.
    first: usize,
    end: usize,
    taken: usize,
}

/// A segment worker's copy of its share of the audio ([`SegmentAudio`]), fed every packet it
/// reads.
pub(crate) struct SegmentAudioCopy {
    tracks: Vec<usize>,
    shares: Vec<TrackShare>,
    /// Per track: every packet of the share is in, or one past it was seen.
    done: Vec<bool>,
    writer: AudioWriter,
}

impl SegmentAudioCopy {
    /// Opens the piece for the audio streams of `input` (the source, opened by the worker,
    /// before any packet is read). `None` when the index does not list every packet of a track
    /// (fragments not read yet): the share cannot be placed, no piece is written (and the
    /// job's audio is then extracted in one pass).
    pub(crate) fn create(
        spec: &SegmentAudio,
        info: &MediaInfo,
        input: &ffmpeg::format::context::Input,
    ) -> Result<Option<Self>, MediaError> {
        let Some(video_base) = input
            .stream(info.video.stream_index)
            .map(|stream| stream.time_base())
        else {
            return Ok(None);
        };
        let tracks: Vec<usize> = info.audio.iter().map(|track| track.stream_index).collect();
        let mut shares = Vec::with_capacity(tracks.len());
        for (&index, track) in tracks.iter().zip(&info.audio) {
            let entries = index_entries(input, index);
            let Some(base) = input.stream(index).map(|stream| stream.time_base()) else {
                return Ok(None);
            };
            if entries.len() as u64 != track.packets {
                return Ok(None);
            }
            // The first sample at or after the keyframe's decode time (exact: cross-multiplied).
            let bound = |bound: ShareBound| match bound {
                ShareBound::FileStart => 0,
                ShareBound::FileEnd => entries.len(),
                ShareBound::Keyframe(point) => {
                    let keyframe = i128::from(point.dts.unwrap_or(point.pts))
                        * i128::from(video_base.numerator())
                        * i128::from(base.denominator());
                    entries.partition_point(|&(_, timestamp, _)| {
                        i128::from(timestamp)
                            * i128::from(base.numerator())
                            * i128::from(video_base.denominator())
                            < keyframe
                    })
                }
            };
            let (first, end) = (bound(spec.from), bound(spec.until));
            shares.push(TrackShare {
                sample_at: entries
                    .iter()
                    .enumerate()
                    .map(|(sample, &(position, _, _))| (position, sample))
                    .collect(),
                first,
                end: end.max(first),
                taken: 0,
            });
        }
        let copy_all = vec![AudioAction::Copy; tracks.len()];
        let writer = AudioWriter::create(info, &copy_all, input, &tracks, &spec.path)?;
        Ok(Some(Self {
            done: shares
                .iter()
                .map(|share| share.first == share.end)
                .collect(),
            shares,
            tracks,
            writer,
        }))
    }

    /// The source stream indices of the audio tracks.
    pub(crate) fn streams(&self) -> &[usize] {
        &self.tracks
    }

    /// Every track's share is in (or a packet past it was seen).
    pub(crate) fn complete(&self) -> bool {
        self.done.iter().all(|&done| done)
    }

    /// Takes `packet` (as read) if it is audio of this segment's share.
    pub(crate) fn offer(&mut self, packet: ffmpeg::Packet) -> Result<(), MediaError> {
        let Some(track) = self
            .tracks
            .iter()
            .position(|&index| index == packet.stream())
        else {
            return Ok(());
        };
        let share = &mut self.shares[track];
        let Some(&sample) = share.sample_at.get(&(packet.position() as i64)) else {
            return Ok(());
        };
        if sample >= share.end {
            self.done[track] = true;
            return Ok(());
        }
        if sample < share.first {
            return Ok(());
        }
        share.taken += 1;
        if share.taken >= share.end - share.first {
            self.done[track] = true;
        }
        self.writer.push(track, packet)
    }

    /// Writes the piece and commits it: a NUT file, or an empty file when the share holds no
    /// packet (a NUT file without packets does not open again).
    pub(crate) fn commit(self) -> Result<(), MediaError> {
        let (partial, packets) = self.writer.finish()?;
        if packets == 0 {
            std::fs::write(partial.path(), b"").map_err(MediaError::io(partial.target()))?;
        }
        partial.commit().map_err(MediaError::from)
    }
}

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
        loop {
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(source) => {
                    return Err(MediaError::Read {
                        path: piece.clone(),
                        source,
                    })
                }
            }
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

/// One NUT file of audio tracks being written: each track copied or re-encoded, fed packets in
/// their input stream's time base with the source's timestamps (the intermediate offset is
/// added here).
pub(crate) struct AudioWriter {
    partial: AtomicFile,
    muxer: ffmpeg::format::context::Output,
    /// Per track, in track order.
    routes: Vec<Route>,
    output_time_bases: Vec<ffmpeg::Rational>,
    offsets: Vec<i64>,
    packets: u64,
}

impl AudioWriter {
    /// Opens `output` for the tracks of `info`, whose streams are `streams[t]` of `input` (the
    /// source, or a piece holding the same tracks), each handled as `actions[t]` says.
    pub(crate) fn create(
        info: &MediaInfo,
        actions: &[AudioAction],
        input: &ffmpeg::format::context::Input,
        streams: &[usize],
        output: &Path,
    ) -> Result<Self, MediaError> {
        let partial = AtomicFile::create(output)?;
        let write_failed = |source| MediaError::Write {
            path: partial.target().to_owned(),
            source,
        };
        let mut muxer = util::open_output(&partial, SEGMENT_MUXER)?;
        let global_header = muxer
            .format()
            .flags()
            .contains(ffmpeg::format::Flags::GLOBAL_HEADER);
        let mut routes = Vec::with_capacity(streams.len());
        for (position, ((track, action), &index)) in
            info.audio.iter().zip(actions).zip(streams).enumerate()
        {
            let stream = input.stream(index).ok_or_else(|| MediaError::Unsupported {
                path: info.path.clone(),
                reason: format!("audio stream #{} is gone", track.stream_index),
            })?;
            let route = match action {
                AudioAction::Copy => {
                    let mut added = muxer
                        .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
                        .map_err(write_failed)?;
                    added.set_parameters(stream.parameters());
                    added.set_time_base(stream.time_base());
                    Route {
                        input_time_base: stream.time_base(),
                        transcoder: None,
                    }
                }
                AudioAction::Encode { encoder } => {
                    let transcoder =
                        AudioTranscoder::open(info, track, &stream, encoder, global_header)?;
                    let mut added = muxer
                        .add_stream(transcoder.encoder.codec())
                        .map_err(write_failed)?;
                    added.set_parameters(&transcoder.encoder);
                    added.set_time_base(transcoder.encoder.time_base());
                    Route {
                        input_time_base: stream.time_base(),
                        transcoder: Some(transcoder),
                    }
                }
            };
            routes.push(route);
            util::clear_codec_tag(&mut muxer, position, 0);
        }
        util::write_intermediate_header(&mut muxer).map_err(write_failed)?;
        let output_time_bases: Vec<ffmpeg::Rational> =
            muxer.streams().map(|s| s.time_base()).collect();
        let offsets = output_time_bases
            .iter()
            .map(|&time_base| util::offset_ticks(info.intermediate_offset_seconds, time_base))
            .collect();
        Ok(Self {
            partial,
            muxer,
            routes,
            output_time_bases,
            offsets,
            packets: 0,
        })
    }

    fn write(
        &mut self,
        mut packet: ffmpeg::Packet,
        position: usize,
        from: ffmpeg::Rational,
    ) -> Result<(), MediaError> {
        packet.rescale_ts(from, self.output_time_bases[position]);
        util::shift_packet(&mut packet, self.offsets[position]);
        packet.set_stream(position);
        packet.set_position(-1);
        self.packets += 1;
        packet
            .write_interleaved(&mut self.muxer)
            .map_err(|source| MediaError::Write {
                path: self.partial.target().to_owned(),
                source,
            })
    }

    /// Writes one packet of track `position` (copied, or fed to its encoder).
    pub(crate) fn push(
        &mut self,
        position: usize,
        packet: ffmpeg::Packet,
    ) -> Result<(), MediaError> {
        let from = self.routes[position].input_time_base;
        let Some(transcoder) = self.routes[position].transcoder.as_mut() else {
            return self.write(packet, position, from);
        };
        let encoder_base = transcoder.encoder.time_base();
        for encoded in transcoder.push(Some(&packet))? {
            self.write(encoded, position, encoder_base)?;
        }
        Ok(())
    }

    /// Flushes the encoders and writes the trailer: the file, still under its partial name, and
    /// the packets written.
    pub(crate) fn finish(mut self) -> Result<(AtomicFile, u64), MediaError> {
        for position in 0..self.routes.len() {
            if let Some(transcoder) = &mut self.routes[position].transcoder {
                let encoder_base = transcoder.encoder.time_base();
                let encoded = transcoder.push(None)?;
                for packet in encoded {
                    self.write(packet, position, encoder_base)?;
                }
            }
        }
        self.muxer
            .write_trailer()
            .map_err(|source| MediaError::Write {
                path: self.partial.target().to_owned(),
                source,
            })?;
        let Self {
            partial,
            muxer,
            packets,
            ..
        } = self;
        drop(muxer);
        Ok((partial, packets))
    }
}

/// How one track is written: its input time base, and its encoder when it is re-encoded.
struct Route {
    input_time_base: ffmpeg::Rational,
    transcoder: Option<AudioTranscoder>,
}

/// Decode → resample → encode for one track. libswresample buffers the converted samples, so
/// the encoder can be fed frames of exactly its frame size.
struct AudioTranscoder {
    path: std::path::PathBuf,
    decoder: ffmpeg::decoder::Audio,
    encoder: ffmpeg::encoder::Audio,
    resampler: *mut ffmpeg::ffi::SwrContext,
    layout: ffmpeg::ChannelLayout,
    /// Samples per encoder frame.
    frame_size: usize,
    /// Next output pts in samples (encoder time base 1/rate); set from the first decoded frame so
    /// the track keeps its start time.
    next_pts: Option<i64>,
    decoded: ffmpeg::frame::Audio,
}

// SAFETY: the resampler is owned by this value and only touched through `&mut self`.
unsafe impl Send for AudioTranscoder {}

impl Drop for AudioTranscoder {
    fn drop(&mut self) {
        // SAFETY: the pointer came from swr_alloc_set_opts and is freed once here.
        unsafe { ffmpeg::ffi::swr_free(&mut self.resampler) };
    }
}

impl AudioTranscoder {
    fn open(
        info: &MediaInfo,
        track: &AudioTrack,
        stream: &ffmpeg::format::stream::Stream,
        encoder_name: &str,
        global_header: bool,
    ) -> Result<Self, MediaError> {
        let decode_failed = |source| MediaError::Decode {
            path: info.path.clone(),
            codec: track.codec.clone(),
            source,
        };
        let encode_failed = |source| MediaError::Encode {
            encoder: encoder_name.to_owned(),
            source,
        };
        let decoder = ffmpeg::codec::Context::from_parameters(stream.parameters())
            .map_err(decode_failed)?
            .decoder()
            .audio()
            .map_err(decode_failed)?;
        let codec = ffmpeg::encoder::find_by_name(encoder_name).ok_or_else(|| {
            MediaError::EncoderMissing {
                encoder: encoder_name.to_owned(),
            }
        })?;
        let audio_codec = codec.audio().map_err(encode_failed)?;

        let channels = track.channels.clamp(1, 8) as i32;
        let layout = match decoder.channel_layout() {
            layout if layout.channels() == channels => layout,
            _ => ffmpeg::ChannelLayout::default(channels),
        };
        let supports_source_rate = audio_codec
            .rates()
            .is_none_or(|mut rates| rates.any(|r| r == track.sample_rate as i32));
        let rate = if supports_source_rate && track.sample_rate > 0 {
            track.sample_rate as i32
        } else {
            48_000
        };
        let format = audio_codec
            .formats()
            .and_then(|mut formats| formats.next())
            .unwrap_or(ffmpeg::format::Sample::F32(
                ffmpeg::format::sample::Type::Planar,
            ));

        let mut encoder = ffmpeg::codec::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(encode_failed)?;
        encoder.set_rate(rate);
        encoder.set_channel_layout(layout);
        encoder.set_format(format);
        encoder.set_time_base(ffmpeg::Rational::new(1, rate));
        // 64 kb/s per channel is transparent for AAC-LC and generous for Opus.
        encoder.set_bit_rate((64_000 * channels as usize).min(512_000));
        if global_header {
            encoder.set_flags(ffmpeg::codec::Flags::GLOBAL_HEADER);
        }
        let encoder = encoder
            .open_as(codec)
            .map_err(|source| MediaError::EncoderOpen {
                encoder: encoder_name.to_owned(),
                settings: format!("{rate} Hz, {channels} channels"),
                source,
            })?;
        let frame_size = match encoder.frame_size() {
            0 => 1024,
            size => size as usize,
        };
        Ok(Self {
            path: info.path.clone(),
            decoder,
            encoder,
            resampler: std::ptr::null_mut(),
            layout,
            frame_size,
            next_pts: None,
            decoded: ffmpeg::frame::Audio::empty(),
        })
    }

    /// Feeds one source packet (`None` at the end) and returns the packets encoded so far.
    fn push(&mut self, packet: Option<&ffmpeg::Packet>) -> Result<Vec<ffmpeg::Packet>, MediaError> {
        let decode_failed = |source| MediaError::Decode {
            path: self.path.clone(),
            codec: String::from("audio"),
            source,
        };
        match packet {
            Some(packet) => match self.decoder.send_packet(packet) {
                Ok(()) | Err(ffmpeg::Error::InvalidData) => {}
                Err(error) => return Err(decode_failed(error)),
            },
            None => self.decoder.send_eof().map_err(decode_failed)?,
        }
        let mut encoded = Vec::new();
        while self.decoder.receive_frame(&mut self.decoded).is_ok() {
            self.resample_decoded()?;
            self.encode_ready(false, &mut encoded)?;
        }
        if packet.is_none() {
            self.encode_ready(true, &mut encoded)?;
            self.encoder
                .send_eof()
                .map_err(|source| MediaError::Encode {
                    encoder: self.encoder_name(),
                    source,
                })?;
            self.drain(&mut encoded);
        }
        Ok(encoded)
    }

    fn encoder_name(&self) -> String {
        self.encoder
            .codec()
            .map(|c| c.name().to_owned())
            .unwrap_or_default()
    }

    /// Pushes the decoded frame into the resampler's buffer.
    fn resample_decoded(&mut self) -> Result<(), MediaError> {
        let failed = |source| MediaError::Encode {
            encoder: String::from("swresample"),
            source,
        };
        if self.resampler.is_null() {
            let source_layout = match self.decoded.channel_layout() {
                layout
                    if layout.channels() == i32::from(self.decoded.channels())
                        && !layout.is_empty() =>
                {
                    layout
                }
                _ => ffmpeg::ChannelLayout::default(i32::from(self.decoded.channels())),
            };
            // SAFETY: plain constructor over valid enum values; the result is checked for null.
            self.resampler = unsafe {
                ffmpeg::ffi::swr_alloc_set_opts(
                    std::ptr::null_mut(),
                    self.layout.bits() as i64,
                    self.encoder.format().into(),
                    self.encoder.rate() as i32,
                    source_layout.bits() as i64,
                    self.decoded.format().into(),
                    self.decoded.rate() as i32,
                    0,
                    std::ptr::null_mut(),
                )
            };
            // SAFETY: non-null contexts from swr_alloc_set_opts may be initialised.
            if self.resampler.is_null() || unsafe { ffmpeg::ffi::swr_init(self.resampler) } < 0 {
                return Err(failed(ffmpeg::Error::InvalidData));
            }
            if self.next_pts.is_none() {
                let start = self.decoded.timestamp().or(self.decoded.pts()).unwrap_or(0);
                let time_base = self.decoder.time_base();
                let time_base = if time_base.denominator() > 0 {
                    time_base
                } else {
                    ffmpeg::Rational::new(1, self.decoded.rate() as i32)
                };
                use ffmpeg::Rescale as _;
                self.next_pts = Some(start.rescale(time_base, self.encoder.time_base()));
            }
        }
        // SAFETY: the frame's extended_data holds `samples` samples per channel; a zero-sized
        // output makes swr buffer everything.
        let status = unsafe {
            let frame = self.decoded.as_ptr();
            ffmpeg::ffi::swr_convert(
                self.resampler,
                std::ptr::null_mut(),
                0,
                (*frame).extended_data as *mut *const u8,
                (*frame).nb_samples,
            )
        };
        if status < 0 {
            return Err(failed(ffmpeg::Error::from(status)));
        }
        Ok(())
    }

    /// Encodes every full frame the resampler holds (and, at the end, the last partial one).
    fn encode_ready(
        &mut self,
        at_end: bool,
        encoded: &mut Vec<ffmpeg::Packet>,
    ) -> Result<(), MediaError> {
        if self.resampler.is_null() {
            return Ok(());
        }
        let encoder_name = self.encoder_name();
        let failed = |source| MediaError::Encode {
            encoder: encoder_name.clone(),
            source,
        };
        loop {
            // SAFETY: the resampler is initialised.
            let buffered =
                unsafe { ffmpeg::ffi::swr_get_out_samples(self.resampler, 0) }.max(0) as usize;
            if buffered == 0 || (buffered < self.frame_size && !at_end) {
                return Ok(());
            }
            let mut frame =
                ffmpeg::frame::Audio::new(self.encoder.format(), self.frame_size, self.layout);
            // SAFETY: the frame was allocated for frame_size samples of the encoder's format and
            // layout; swr writes at most that many.
            let written = unsafe {
                let raw = frame.as_mut_ptr();
                ffmpeg::ffi::swr_convert(
                    self.resampler,
                    (*raw).extended_data,
                    self.frame_size as i32,
                    std::ptr::null_mut(),
                    0,
                )
            };
            if written < 0 {
                return Err(failed(ffmpeg::Error::from(written)));
            }
            if written == 0 {
                return Ok(());
            }
            frame.set_samples(written as usize);
            frame.set_rate(self.encoder.rate());
            let pts = self.next_pts.unwrap_or(0);
            frame.set_pts(Some(pts));
            self.next_pts = Some(pts + i64::from(written));
            self.encoder.send_frame(&frame).map_err(failed)?;
            self.drain(encoded);
        }
    }

    fn drain(&mut self, encoded: &mut Vec<ffmpeg::Packet>) {
        let mut packet = ffmpeg::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            encoded.push(std::mem::replace(&mut packet, ffmpeg::Packet::empty()));
        }
    }
}

pub(crate) fn output_format(container: Container) -> Option<*const ffmpeg::ffi::AVOutputFormat> {
    let name = std::ffi::CString::new(container.muxer_name()).ok()?;
    // SAFETY: av_guess_format only reads the NUL-terminated name and returns a static description.
    let format =
        unsafe { ffmpeg::ffi::av_guess_format(name.as_ptr(), std::ptr::null(), std::ptr::null()) };
    (!format.is_null()).then_some(format)
}

fn codec_id_by_name(name: &str) -> Option<ffmpeg::codec::Id> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: avcodec_descriptor_get_by_name reads the NUL-terminated name; the result is static.
    let descriptor = unsafe { ffmpeg::ffi::avcodec_descriptor_get_by_name(name.as_ptr()) };
    // SAFETY: a non-null descriptor is a valid static struct.
    (!descriptor.is_null()).then(|| ffmpeg::codec::Id::from(unsafe { (*descriptor).id }))
}
