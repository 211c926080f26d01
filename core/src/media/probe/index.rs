//! The MP4/MOV index listing: which packets [`super::PacketReads::IndexWherePossible`] need not
//! fetch (their timestamps, sizes and positions come from the index), and the keyframes the
//! sync-sample table gives.

use ffmpeg_next as ffmpeg;
/// Codecs whose MP4/MOV packets FFmpeg passes on exactly as the index lists them, without
/// looking inside, so their bytes need not be read to list them. Not MP2/MP3, AC-3, E-AC-3,
/// MPEG-1, VC-1, VP8, VP9 (FFmpeg 5.1's mov demuxer asks for them to be parsed) or EIA-608 and
/// DV (inspected). H.264/HEVC video qualifies only with a sync-sample table
/// ([`listed_by_sync_table`]), and its keyframes are then taken from the index.
fn index_only_codec(id: ffmpeg::codec::Id) -> bool {
    use ffmpeg::codec::Id;
    matches!(
        id,
        Id::PRORES
            | Id::AAC
            | Id::ALAC
            | Id::PCM_S16LE
            | Id::PCM_S16BE
            | Id::PCM_S24LE
            | Id::PCM_S24BE
            | Id::PCM_F32LE
    )
}

/// True for H.264/HEVC video whose MP4/MOV index entries (`flags`, one per sample) hold at
/// least one sample that is not a keyframe: the track has a sync-sample table with entries,
/// which the index's keyframe flags are. (With an empty `stss` FFmpeg 5.1's mov demuxer marks
/// every sample a keyframe and parses the packets for the real ones; without `stss` every
/// sample is one: either way the table says nothing, and the packets are read.)
fn listed_by_sync_table(id: ffmpeg::codec::Id, flags: &[i32]) -> bool {
    use ffmpeg::codec::Id;
    matches!(id, Id::H264 | Id::HEVC)
        && flags
            .iter()
            .any(|flags| flags & ffmpeg::ffi::AVINDEX_KEYFRAME == 0)
}

/// What [`super::PacketReads::IndexWherePossible`] takes from the MP4/MOV index instead of the
/// packets' bytes.
#[derive(Debug, Default)]
pub(super) struct IndexListing {
    /// Byte ranges of packets not fetched (sorted, merged).
    pub(super) ranges: Vec<std::ops::Range<u64>>,
    /// For video [`listed_by_sync_table`]: (stream index, sample position) → keyframe, from the
    /// sync-sample table.
    keyframes: std::collections::HashMap<(usize, u64), bool>,
}

impl IndexListing {
    /// Whether the index calls the sample of `stream` at byte `position` a keyframe; `None`
    /// when that stream's keyframes are not taken from the index (or the sample is not in it).
    pub(super) fn keyframe_at(&self, stream: usize, position: u64) -> Option<bool> {
        self.keyframes.get(&(stream, position)).copied()
    }
}

/// What [`super::PacketReads::IndexWherePossible`] need not fetch: for the MP4/MOV demuxer, the index
/// entries of streams with an [`index_only_codec`] and of video [`listed_by_sync_table`] (whose
/// keyframe flags it keeps). Empty for any other container. (Fragments the demuxer finds later
/// are not in the index yet: they are read.)
pub(super) fn index_listing(input: &ffmpeg::format::context::Input) -> IndexListing {
    let mut listing = IndexListing::default();
    if !input.format().name().starts_with("mov,") {
        return listing;
    }
    let mut ranges = Vec::new();
    for stream in input.streams() {
        let id = stream.parameters().id();
        let video = stream.parameters().medium() == ffmpeg::media::Type::Video;
        let coded_video = video && matches!(id, ffmpeg::codec::Id::H264 | ffmpeg::codec::Id::HEVC);
        if !(index_only_codec(id) || coded_video) {
            continue;
        }
        // (position, size, flags) of every index entry.
        let mut entries: Vec<(i64, i32, i32)> = Vec::new();
        // SAFETY: the stream belongs to the open `input`; the entries are read before any other
        // call on the context, as avformat_index_get_entry requires.
        unsafe {
            let stream_ptr = stream.as_ptr() as *mut ffmpeg::ffi::AVStream;
            let count = ffmpeg::ffi::avformat_index_get_entries_count(stream_ptr);
            for index in 0..count {
                let entry = ffmpeg::ffi::avformat_index_get_entry(stream_ptr, index);
                if !entry.is_null() {
                    entries.push(((*entry).pos, (*entry).size(), (*entry).flags()));
                }
            }
        }
        if !index_only_codec(id) {
            let flags: Vec<i32> = entries.iter().map(|entry| entry.2).collect();
            // SAFETY: codecpar of an open stream is valid while `input` lives; extradata holds
            // extradata_size bytes when non-null.
            let configured = unsafe {
                let par = &*stream.parameters().as_ptr();
                !par.extradata.is_null() && par.extradata_size > 0 && *par.extradata == 1
            };
            // Length-prefixed samples with their decoder configuration (avcC/hvcC) only:
            // anything else is read.
            if !configured || !listed_by_sync_table(id, &flags) {
                continue;
            }
            for &(position, _, flags) in &entries {
                if let Ok(position) = u64::try_from(position) {
                    listing.keyframes.insert(
                        (stream.index(), position),
                        flags & ffmpeg::ffi::AVINDEX_KEYFRAME != 0,
                    );
                }
            }
        }
        for (position, size, _) in entries {
            let (Ok(position), Ok(size)) = (u64::try_from(position), u64::try_from(size)) else {
                continue;
            };
            if size > 0 {
                ranges.push(position..position + size);
            }
        }
    }
    ranges.sort_by_key(|range| range.start);
    for range in ranges {
        match listing.ranges.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => listing.ranges.push(range),
        }
    }
    listing
}
