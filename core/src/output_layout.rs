//! **Pure.** The output's layout without its bytes: which samples fill which byte ranges of the
//! MP4, and the multipart parts it is cut into, so that many tasks can each write their own
//! range, every byte once, while the root writes only the header.
//!
//! The layout comes from muxing the output with stand-in payloads of the real sizes (see
//! `media::remux::layout`) and reading its sample table back: each sample's stream, offset and
//! size ([`SampleEntry`]). [`OutputLayout::tile`] accepts them only when they cover the bytes
//! after the header exactly (no gap, no overlap, nothing past the end) and each stream's
//! samples add up to that stream's bytes; anything else is refused, never written.

use crate::join::VideoSamples;
use crate::output_plan::{plan_parts, PartPlanError};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// One sample (or chunk of consecutive samples of one stream) in the output, as its index
/// gives it. Stream 0 is the video, streams 1… the audio tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleEntry {
    pub stream: u32,
    /// Bytes from the start of the file.
    pub offset: u64,
    pub size: u64,
}

/// A contiguous range of the output filled from one stream's bytes: for the video, its
/// packets as samples one after another; for audio track `n` (stream `n + 1`), its packets as
/// the layout pass copied them to scratch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Where it starts in the output.
    pub offset: u64,
    pub len: u64,
    pub stream: u32,
    /// Where it starts in the stream's bytes.
    pub stream_offset: u64,
}

impl Run {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Why a sample table does not lay the output out exactly.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("the samples leave bytes {from}..{to} uncovered")]
    Gap { from: u64, to: u64 },
    #[error("a sample at byte {offset} overlaps the one before, which ends at {previous_end}")]
    Overlap { offset: u64, previous_end: u64 },
    #[error("the samples end at byte {end}, the file at {total}")]
    End { end: u64, total: u64 },
    #[error("stream {stream} has {got} bytes of samples where {expected} were written")]
    StreamBytes {
        stream: u32,
        got: u64,
        expected: u64,
    },
    #[error("video sample {index} is {got} bytes where its packet is {expected}")]
    VideoSample {
        index: usize,
        got: u64,
        expected: u64,
    },
    #[error("the index lists {got} video samples where {expected} packets were written")]
    VideoCount { got: usize, expected: usize },
    #[error("a sample of stream {stream}, which was not written")]
    UnknownStream { stream: u32 },
    #[error("the header ({header} bytes) was not all kept ({kept} bytes)")]
    Header { header: u64, kept: u64 },
}

/// The output laid out: its header (held apart, in [`OutputLayout::header`]), its length, the
/// runs that fill the rest, and what the filling reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputLayout {
    /// The first bytes of the file as the muxer wrote them (`ftyp`, the index, the `mdat`
    /// header): everything before the first sample. Not serialized: stored beside the layout.
    #[serde(skip)]
    pub header: Vec<u8>,
    pub header_len: u64,
    pub total_bytes: u64,
    /// Ascending, contiguous from `header_len` to `total_bytes`.
    pub runs: Vec<Run>,
    /// The segments holding the video, in order, and their samples.
    pub leaves: Vec<u32>,
    pub video: VideoSamples,
    /// Bytes of each audio track's samples (stream `n + 1` is track `n`).
    pub audio_bytes: Vec<u64>,
    /// Packets of the audio tracks together, for the report.
    pub audio_packets: u64,
}

/// One part of the output's multipart upload: its number (from 1, ascending in file order) and
/// the bytes it holds (end exclusive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputPart {
    pub number: i32,
    pub start: u64,
    pub end: u64,
}

impl OutputPart {
    pub fn range(&self) -> Range<u64> {
        self.start..self.end
    }
}

impl OutputLayout {
    /// Checks that `entries` (in any order) tile `header_len..total_bytes` exactly, that the
    /// video's samples (stream 0) are `video.sizes` in order and each audio stream's add up to
    /// `audio_bytes`, and returns the runs: neighbouring samples of one stream merged.
    pub fn tile(
        mut entries: Vec<SampleEntry>,
        header_len: u64,
        total_bytes: u64,
        video: &VideoSamples,
        audio_bytes: &[u64],
    ) -> Result<Vec<Run>, LayoutError> {
        entries.sort_by_key(|entry| entry.offset);
        let mut runs: Vec<Run> = Vec::new();
        let mut stream_offsets = vec![0u64; audio_bytes.len() + 1];
        let mut video_index = 0usize;
        let mut position = header_len;
        for entry in entries {
            if entry.offset > position {
                return Err(LayoutError::Gap {
                    from: position,
                    to: entry.offset,
                });
            }
            if entry.offset < position {
                return Err(LayoutError::Overlap {
                    offset: entry.offset,
                    previous_end: position,
                });
            }
            let stream = entry.stream as usize;
            let Some(stream_offset) = stream_offsets.get_mut(stream) else {
                return Err(LayoutError::UnknownStream {
                    stream: entry.stream,
                });
            };
            if stream == 0 {
                let expected = video.sizes.get(video_index).map_or(0, |&s| u64::from(s));
                if entry.size != expected {
                    return Err(LayoutError::VideoSample {
                        index: video_index,
                        got: entry.size,
                        expected,
                    });
                }
                video_index += 1;
            }
            match runs.last_mut() {
                Some(last)
                    if last.stream == entry.stream
                        && last.stream_offset + last.len == *stream_offset =>
                {
                    last.len += entry.size
                }
                _ => runs.push(Run {
                    offset: entry.offset,
                    len: entry.size,
                    stream: entry.stream,
                    stream_offset: *stream_offset,
                }),
            }
            *stream_offset += entry.size;
            position += entry.size;
        }
        if position != total_bytes {
            return Err(LayoutError::End {
                end: position,
                total: total_bytes,
            });
        }
        if video_index != video.sizes.len() {
            return Err(LayoutError::VideoCount {
                got: video_index,
                expected: video.sizes.len(),
            });
        }
        for (track, &expected) in audio_bytes.iter().enumerate() {
            let got = stream_offsets[track + 1];
            if got != expected {
                return Err(LayoutError::StreamBytes {
                    stream: track as u32 + 1,
                    got,
                    expected,
                });
            }
        }
        Ok(runs)
    }

    /// The runs that hold bytes of `range`, in order.
    pub fn runs_in(&self, range: Range<u64>) -> &[Run] {
        let first = self.runs.partition_point(|run| run.end() <= range.start);
        let last = self.runs.partition_point(|run| run.offset < range.end);
        &self.runs[first..last.max(first)]
    }

    /// The segments (by position in [`Self::leaves`]) whose video samples hold bytes of `range`,
    /// in order: the segment files a writer of that range reads (from the start of the first).
    /// Empty when the range holds no video.
    pub fn segments_in(&self, range: Range<u64>) -> Range<usize> {
        // The video stream's bytes the range holds.
        let mut stream_bytes: Option<Range<u64>> = None;
        for run in self
            .runs_in(range.clone())
            .iter()
            .filter(|run| run.stream == 0)
        {
            let from = run.stream_offset + (run.offset.max(range.start) - run.offset);
            let to = run.stream_offset + (run.end().min(range.end) - run.offset);
            stream_bytes = Some(match stream_bytes {
                Some(bytes) => bytes.start.min(from)..bytes.end.max(to),
                None => from..to,
            });
        }
        let Some(bytes) = stream_bytes.filter(|bytes| bytes.start < bytes.end) else {
            return 0..0;
        };
        // The packets holding its first and last byte, then the segments holding those.
        let (mut first_packet, mut last_packet) = (None, None);
        let mut position = 0u64;
        for (packet, &size) in self.video.sizes.iter().enumerate() {
            let end = position + u64::from(size);
            if first_packet.is_none() && end > bytes.start {
                first_packet = Some(packet as u64);
            }
            if end >= bytes.end {
                last_packet = Some(packet as u64);
                break;
            }
            position = end;
        }
        let (Some(first_packet), Some(last_packet)) = (first_packet, last_packet) else {
            return 0..0;
        };
        let (mut first, mut last) = (None, None);
        let mut packets_before = 0u64;
        for (segment, &count) in self.video.leaf_packets.iter().enumerate() {
            let holds = |packet: u64| packet >= packets_before && packet < packets_before + count;
            if holds(first_packet) {
                first = Some(segment);
            }
            if holds(last_packet) {
                last = Some(segment);
                break;
            }
            packets_before += count;
        }
        match (first, last) {
            (Some(first), Some(last)) => first..last + 1,
            _ => 0..0,
        }
    }

    /// The multipart parts of the output (see [`cut_into_parts_at`]), cut where a segment's
    /// video starts: a part task then reads each segment file it needs from its start, and no
    /// segment is read by two tasks (a cut inside one makes both read it, the second from its
    /// first packet up to the cut).
    pub fn parts(&self) -> Result<Vec<OutputPart>, PartPlanError> {
        cut_into_parts_at(self.total_bytes, self.header_len, &self.segment_starts())
    }

    /// Output offsets where each segment's first video sample starts, ascending.
    pub fn segment_starts(&self) -> Vec<u64> {
        // Each leaf's first byte in the video stream.
        let mut leaf_starts = Vec::with_capacity(self.video.leaf_packets.len());
        let (mut packet, mut byte) = (0usize, 0u64);
        for &count in &self.video.leaf_packets {
            leaf_starts.push(byte);
            let end = (packet + count as usize).min(self.video.sizes.len());
            byte += self.video.sizes[packet..end]
                .iter()
                .map(|&size| u64::from(size))
                .sum::<u64>();
            packet = end;
        }
        let mut starts = Vec::with_capacity(leaf_starts.len());
        for run in self.runs.iter().filter(|run| run.stream == 0) {
            let stream_end = run.stream_offset + run.len;
            let first = leaf_starts.partition_point(|&start| start < run.stream_offset);
            for &leaf_start in leaf_starts[first..].iter().take_while(|&&s| s < stream_end) {
                starts.push(run.offset + (leaf_start - run.stream_offset));
            }
        }
        starts
    }
}

/// Cuts `total_bytes` into multipart parts: part 1 the header (`header_len` bytes) and the first
/// media bytes up to the plan's first part, then parts of the plan's size ([`plan_parts`]: 8 MiB,
/// larger only when more than 9,000 would be needed), the last one whatever remains. One part
/// when the whole output fits in the first.
pub fn cut_into_parts(total_bytes: u64, header_len: u64) -> Result<Vec<OutputPart>, PartPlanError> {
    cut_into_parts_at(total_bytes, header_len, &[])
}

/// As [`cut_into_parts`], each cut moved on to the first of `boundaries` (ascending output
/// offsets) at or after it, unless that would make the part larger than S3 allows: parts are
/// never smaller than the plan's, so never more of them.
pub fn cut_into_parts_at(
    total_bytes: u64,
    header_len: u64,
    boundaries: &[u64],
) -> Result<Vec<OutputPart>, PartPlanError> {
    let plan = plan_parts(total_bytes, header_len)?;
    let mut parts = Vec::new();
    let mut start = 0;
    let mut size = plan.first_part_bytes;
    while start < total_bytes || parts.is_empty() {
        let cut = start + size;
        let snapped = boundaries
            .get(boundaries.partition_point(|&b| b < cut))
            .copied()
            .filter(|&b| b - start <= crate::output_plan::MAX_PART_BYTES);
        let end = snapped.unwrap_or(cut).min(total_bytes);
        parts.push(OutputPart {
            number: parts.len() as i32 + 1,
            start,
            end,
        });
        start = end;
        size = plan.part_bytes;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nal::SampleForm;
    use crate::output_plan::{MAX_PARTS, MAX_PART_BYTES, MIN_PART_BYTES};
    use proptest::prelude::*;

    fn video(sizes: &[u32]) -> VideoSamples {
        VideoSamples {
            form: SampleForm::Verbatim,
            sizes: sizes.to_vec(),
            keyframes: vec![0],
            leaf_packets: vec![sizes.len() as u64],
        }
    }

    fn entry(stream: u32, offset: u64, size: u64) -> SampleEntry {
        SampleEntry {
            stream,
            offset,
            size,
        }
    }

    #[test]
    fn parts_are_cut_where_a_segment_starts() {
        const MIB: u64 = 1024 * 1024;
        // Segments start every 3 MiB after a 1 KiB header; 40 MiB in all.
        let boundaries: Vec<u64> = (1..14).map(|i| 1024 + i * 3 * MIB).collect();
        let parts = cut_into_parts_at(40 * MIB, 1024, &boundaries).expect("parts");
        let plain = cut_into_parts(40 * MIB, 1024).expect("parts");
        assert!(parts.len() <= plain.len(), "never more parts");
        for (part, next) in parts.iter().zip(parts.iter().skip(1)) {
            assert_eq!(part.end, next.start, "contiguous");
            assert!(
                boundaries.contains(&part.end),
                "{part:?} ends where a segment starts"
            );
            assert!(
                part.end - part.start >= 8 * MIB,
                "{part:?} at least the plan's size"
            );
        }
        assert_eq!(parts.last().map(|p| p.end), Some(40 * MIB));
        // No boundary after a cut: the plan's cut.
        assert_eq!(
            cut_into_parts_at(40 * MIB, 1024, &[]).expect("parts"),
            plain
        );
    }

    #[test]
    fn a_byte_range_reads_the_segments_whose_video_it_holds() {
        // Three segments of 2, 1 and 2 samples (20+10 | 30 | 5+5), audio between: video
        // 100..130, audio 130..145, video 145..185.
        let samples = VideoSamples {
            leaf_packets: vec![2, 1, 2],
            ..video(&[20, 10, 30, 5, 5])
        };
        let entries = vec![
            entry(0, 100, 20),
            entry(0, 120, 10),
            entry(1, 130, 15),
            entry(0, 145, 30),
            entry(0, 175, 5),
            entry(0, 180, 5),
        ];
        let runs = OutputLayout::tile(entries, 100, 185, &samples, &[15]).expect("tiles");
        let layout = OutputLayout {
            header: vec![0; 100],
            header_len: 100,
            total_bytes: 185,
            runs,
            leaves: vec![4, 5, 6],
            video: samples,
            audio_bytes: vec![15],
            audio_packets: 1,
        };
        assert_eq!(layout.segments_in(0..185), 0..3, "everything");
        assert_eq!(layout.segments_in(0..100), 0..0, "the header alone");
        assert_eq!(layout.segments_in(130..145), 0..0, "audio alone");
        assert_eq!(layout.segments_in(0..130), 0..1, "the first segment");
        assert_eq!(
            layout.segments_in(125..146),
            0..2,
            "the end of one, the start of the next"
        );
        assert_eq!(layout.segments_in(145..175), 1..2, "the second exactly");
        assert_eq!(layout.segments_in(174..176), 1..3);
        assert_eq!(layout.segments_in(180..185), 2..3, "the last sample");
        // Cuts inside a segment make both sides read it; cuts where one starts do not.
        let mut read = Vec::new();
        for range in [0..120, 120..145, 145..180, 180..185] {
            read.extend(layout.segments_in(range));
        }
        assert_eq!(read, vec![0, 0, 1, 2, 2]);
        let starts = layout.segment_starts();
        assert_eq!(starts, vec![100, 145, 175]);
        let mut read = Vec::new();
        for range in [0..145, 145..175, 175..185] {
            read.extend(layout.segments_in(range));
        }
        assert_eq!(read, vec![0, 1, 2]);
    }

    #[test]
    fn interleaved_samples_become_runs() {
        let entries = vec![
            entry(1, 130, 10),
            entry(0, 100, 20),
            entry(0, 120, 10),
            entry(1, 140, 5),
            entry(0, 145, 30),
        ];
        let runs =
            OutputLayout::tile(entries, 100, 175, &video(&[20, 10, 30]), &[15]).expect("tiles");
        assert_eq!(
            runs,
            vec![
                Run {
                    offset: 100,
                    len: 30,
                    stream: 0,
                    stream_offset: 0
                },
                Run {
                    offset: 130,
                    len: 15,
                    stream: 1,
                    stream_offset: 0
                },
                Run {
                    offset: 145,
                    len: 30,
                    stream: 0,
                    stream_offset: 30
                },
            ]
        );
    }

    #[test]
    fn anything_but_an_exact_tiling_is_refused() {
        let v = video(&[20, 10]);
        let tile =
            |entries: Vec<SampleEntry>, total| OutputLayout::tile(entries, 100, total, &v, &[5]);
        assert!(matches!(
            tile(
                vec![entry(0, 100, 20), entry(0, 121, 10), entry(1, 131, 5)],
                136
            ),
            Err(LayoutError::Gap { from: 120, to: 121 })
        ));
        assert!(matches!(
            tile(
                vec![entry(0, 100, 20), entry(0, 119, 10), entry(1, 129, 5)],
                134
            ),
            Err(LayoutError::Overlap { .. })
        ));
        assert!(matches!(
            tile(
                vec![entry(0, 100, 20), entry(0, 120, 10), entry(1, 130, 5)],
                140
            ),
            Err(LayoutError::End {
                end: 135,
                total: 140
            })
        ));
        assert!(matches!(
            tile(
                vec![entry(0, 100, 20), entry(0, 120, 11), entry(1, 131, 5)],
                136
            ),
            Err(LayoutError::VideoSample { index: 1, .. })
        ));
        assert!(matches!(
            tile(
                vec![entry(0, 100, 20), entry(0, 120, 10), entry(1, 130, 4)],
                134
            ),
            Err(LayoutError::StreamBytes { stream: 1, .. })
        ));
        assert!(matches!(
            tile(
                vec![entry(0, 100, 20), entry(0, 120, 10), entry(2, 130, 5)],
                135
            ),
            Err(LayoutError::UnknownStream { stream: 2 })
        ));
        assert!(matches!(
            tile(vec![entry(0, 100, 20), entry(1, 120, 5)], 125),
            Err(LayoutError::VideoCount {
                got: 1,
                expected: 2
            })
        ));
    }

    #[test]
    fn a_header_beyond_a_part_is_refused() {
        assert!(cut_into_parts(100 << 30, 6 << 30).is_err());
    }

    #[test]
    fn a_small_output_is_one_part() {
        let parts = cut_into_parts(3_000_000, 40_000).expect("fits");
        assert_eq!(
            parts,
            vec![OutputPart {
                number: 1,
                start: 0,
                end: 3_000_000
            }]
        );
    }

    proptest! {
        #[test]
        fn parts_tile_the_file_within_s3_limits(
            total in 1u64..400_000_000_000,
            header_fraction in 0.0f64..0.05,
        ) {
            // Headers stay far below a part's 5 GiB (an hour's index is about 12 MiB).
            let header = ((total as f64 * header_fraction) as u64).min(total).min(1 << 30);
            let parts = cut_into_parts(total, header).expect("fits");
            prop_assert!(parts.len() as u64 <= MAX_PARTS);
            prop_assert_eq!(parts[0].start, 0);
            prop_assert!(parts[0].end >= header);
            prop_assert_eq!(parts.last().map(|p| p.end), Some(total));
            for (i, pair) in parts.windows(2).enumerate() {
                prop_assert_eq!(pair[0].end, pair[1].start);
                prop_assert_eq!(pair[0].number + 1, pair[1].number);
                prop_assert_eq!(pair[0].number, i as i32 + 1);
            }
            for (i, part) in parts.iter().enumerate() {
                let size = part.end - part.start;
                prop_assert!(size <= MAX_PART_BYTES);
                if i + 1 < parts.len() {
                    prop_assert!(size >= MIN_PART_BYTES);
                }
            }
        }

        #[test]
        fn runs_in_finds_exactly_the_overlapping_runs(
            lens in proptest::collection::vec(1u64..100, 1..50),
            start in 0u64..3000,
            len in 1u64..500,
        ) {
            let mut offset = 10;
            let runs: Vec<Run> = lens.iter().enumerate().map(|(i, &len)| {
                let run = Run { offset, len, stream: (i % 2) as u32, stream_offset: 0 };
                offset += len;
                run
            }).collect();
            let layout = OutputLayout {
                header: Vec::new(),
                header_len: 10,
                total_bytes: offset,
                runs: runs.clone(),
                leaves: vec![0],
                video: video(&[]),
                audio_bytes: vec![],
                audio_packets: 0,
            };
            let found = layout.runs_in(start..start + len);
            let expected: Vec<Run> = runs.into_iter()
                .filter(|run| run.offset < start + len && run.end() > start)
                .collect();
            prop_assert_eq!(found.to_vec(), expected);
        }
    }
}
