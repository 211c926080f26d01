//! The bytes of the source one segment's worker reads, from the probe's packet positions.

use std::ops::Range;

/// The bytes of the source a worker converting `segment` reads: from its first packet (the
/// lead-in's keyframe included; the start of the file for a segment decoded from the start) to
/// the end of its last, in file order. `None` when the probe knows no packet positions. Audio
/// and other packets interleaved between are inside it.
pub fn segment_byte_range(
    info: &crate::media::probe::MediaInfo,
    segment: &crate::plan::Segment,
) -> Option<Range<u64>> {
    let packets = &info.video_packets_at;
    if packets.is_empty() {
        return None;
    }
    let from = segment
        .decode_from
        .map(|point| point.pts.min(segment.start_pts.unwrap_or(point.pts)));
    let inside = |pts: i64| {
        from.is_none_or(|from| pts >= from) && segment.end_pts.is_none_or(|end| pts < end)
    };
    let mut range: Option<Range<u64>> = None;
    for packet in packets.iter().filter(|packet| inside(packet.pts)) {
        let end = packet.position + packet.size;
        range = Some(match range {
            Some(r) => r.start.min(packet.position)..r.end.max(end),
            None => packet.position..end,
        });
    }
    let range = range?;
    let start = if from.is_none() { 0 } else { range.start };
    let end = if segment.end_pts.is_none() {
        info.size_bytes
    } else {
        range.end
    };
    Some(start..end.max(start))
}
