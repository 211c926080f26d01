//! A segment worker's share of the audio: the bounds the plan gives it ([`SegmentAudio`]) and
//! its copy of those packets out of the bytes it reads anyway ([`SegmentAudioCopy`]).

use super::{AudioAction, AudioWriter};
use crate::media::probe::MediaInfo;
use crate::media::MediaError;
use crate::plan::SeekPoint;
use ffmpeg_next as ffmpeg;
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
