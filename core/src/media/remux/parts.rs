//! Filling one byte range of a laid-out output ([`write_part`]): the header's bytes where it
//! overlaps, each video sample from its segment file (read in file order from the first
//! packet the range needs, converted as the layout sized it), each audio sample from the
//! track's copy by positional reads. Every byte of the range comes from exactly one place, and
//! every video sample is checked against the size the layout gave it.

use crate::media::util;
use crate::media::MediaError;
use crate::nal;
use crate::output_layout::OutputLayout;
use ffmpeg_next as ffmpeg;
use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// The bytes `range` of the output laid out by `layout`: `video` are the segment files of
/// `layout.leaves` (in order), `audio_copies` the audio tracks' copies the layout pass wrote.
/// Precondition: `range` lies within the output.
pub fn write_part(
    layout: &OutputLayout,
    range: Range<u64>,
    video: &[PathBuf],
    audio_copies: &[PathBuf],
) -> Result<Vec<u8>, MediaError> {
    util::init();
    let mut bytes = vec![0u8; (range.end - range.start) as usize];
    let header_end = layout.header_len.min(range.end);
    if range.start < header_end {
        let from = range.start as usize;
        let to = header_end as usize;
        let header = layout
            .header
            .get(from..to)
            .ok_or_else(|| MediaError::Layout {
                path: PathBuf::from("the output's header"),
                reason: format!("bytes {from}..{to} are missing from the header"),
            })?;
        bytes[..to - from].copy_from_slice(header);
    }
    let mut video_reader: Option<VideoReader<'_>> = None;
    let audio_files = audio_copies
        .iter()
        .map(|path| std::fs::File::open(path).map_err(MediaError::io(path)))
        .collect::<Result<Vec<_>, _>>()?;
    for run in layout.runs_in(range.clone()) {
        let from = run.offset.max(range.start);
        let to = run.end().min(range.end);
        let out = &mut bytes[(from - range.start) as usize..(to - range.start) as usize];
        let stream_from = run.stream_offset + (from - run.offset);
        if run.stream == 0 {
            let reader = match video_reader.as_mut() {
                Some(reader) => reader,
                None => video_reader.insert(VideoReader::at(layout, video, stream_from)?),
            };
            reader.copy(stream_from, out)?;
        } else {
            let track = run.stream as usize - 1;
            let (file, path) = audio_files
                .get(track)
                .zip(audio_copies.get(track))
                .ok_or_else(|| MediaError::Layout {
                    path: PathBuf::from("the output's audio"),
                    reason: format!("no copy of audio track {track}"),
                })?;
            file.read_exact_at(out, stream_from)
                .map_err(MediaError::io(path))?;
        }
    }
    Ok(bytes)
}

/// The video's samples as one byte stream (every packet converted to its sample form, one after
/// another over the segment files), read forward from a given packet.
struct VideoReader<'a> {
    layout: &'a OutputLayout,
    files: &'a [PathBuf],
    /// The open segment: its position in `files` and its demuxer.
    current: Option<(usize, ffmpeg::format::context::Input)>,
    /// Packets of the segments before the open one.
    packets_before: u64,
    /// The next packet to read (over all segments), and the bytes of the last one read, which
    /// start at stream byte `sample_start`.
    next_packet: u64,
    sample: Vec<u8>,
    sample_start: u64,
    /// Where each packet's sample starts in the stream, and one past the last.
    starts: Vec<u64>,
}

impl<'a> VideoReader<'a> {
    /// A reader positioned at the packet holding stream byte `stream_offset`.
    fn at(
        layout: &'a OutputLayout,
        files: &'a [PathBuf],
        stream_offset: u64,
    ) -> Result<Self, MediaError> {
        if files.len() != layout.video.leaf_packets.len() {
            return Err(MediaError::Layout {
                path: files.first().cloned().unwrap_or_default(),
                reason: format!(
                    "{} segment files for {} laid-out segments",
                    files.len(),
                    layout.video.leaf_packets.len()
                ),
            });
        }
        let mut starts = Vec::with_capacity(layout.video.sizes.len() + 1);
        let mut position = 0u64;
        for &size in &layout.video.sizes {
            starts.push(position);
            position += u64::from(size);
        }
        starts.push(position);
        // The packet whose sample holds `stream_offset`.
        let packet = starts
            .partition_point(|&start| start <= stream_offset)
            .saturating_sub(1) as u64;
        let mut reader = Self {
            layout,
            files,
            current: None,
            packets_before: 0,
            next_packet: packet,
            sample: Vec::new(),
            sample_start: 0,
            starts,
        };
        // Open the segment holding it and skip the packets before it there.
        let mut first_of_leaf = 0u64;
        for (leaf, &count) in layout.video.leaf_packets.iter().enumerate() {
            if packet < first_of_leaf + count {
                let path = &files[leaf];
                let mut input = util::open_input(path)?;
                for _ in first_of_leaf..packet {
                    util::read_packet(path, &mut input)?;
                }
                reader.current = Some((leaf, input));
                reader.packets_before = first_of_leaf;
                break;
            }
            first_of_leaf += count;
        }
        Ok(reader)
    }

    /// Reads the next packet's sample into `sample`.
    fn advance(&mut self) -> Result<(), MediaError> {
        let index = self.next_packet as usize;
        loop {
            let Some((leaf, input)) = self.current.as_mut() else {
                return Err(MediaError::Layout {
                    path: self.files.last().cloned().unwrap_or_default(),
                    reason: format!("the segments end before video sample {index}"),
                });
            };
            let path: &Path = &self.files[*leaf];
            if let Some(packet) = util::read_packet(path, input)? {
                let expected = self.layout.video.sizes.get(index).copied().map(u64::from);
                let sample = packet
                    .data()
                    .and_then(|data| nal::sample_bytes(self.layout.video.form, data));
                match (sample, expected) {
                    (Some(sample), Some(expected)) if sample.len() as u64 == expected => {
                        self.sample = sample;
                        self.sample_start = self.starts[index];
                        self.next_packet += 1;
                        return Ok(());
                    }
                    (sample, expected) => {
                        return Err(MediaError::Layout {
                            path: path.to_owned(),
                            reason: format!(
                            "video sample {index} is {:?} bytes where {expected:?} were laid out",
                            sample.map(|s| s.len())
                        ),
                        })
                    }
                }
            }
            let next = *leaf + 1;
            let finished = self
                .layout
                .video
                .leaf_packets
                .get(*leaf)
                .copied()
                .unwrap_or(0);
            if self.packets_before + finished != self.next_packet {
                return Err(MediaError::Layout {
                    path: path.to_owned(),
                    reason: format!(
                        "the segment holds another number of packets than its {finished}"
                    ),
                });
            }
            self.packets_before += finished;
            self.current = match self.files.get(next) {
                Some(path) => Some((next, util::open_input(path)?)),
                None => None,
            };
        }
    }

    /// Copies the stream's bytes from `stream_offset` into `out` (ascending calls).
    fn copy(&mut self, mut stream_offset: u64, mut out: &mut [u8]) -> Result<(), MediaError> {
        while !out.is_empty() {
            let sample_end = self.sample_start + self.sample.len() as u64;
            if self.sample.is_empty() || stream_offset >= sample_end {
                self.advance()?;
                continue;
            }
            if stream_offset < self.sample_start {
                return Err(MediaError::Layout {
                    path: self.files[0].clone(),
                    reason: format!("video byte {stream_offset} was asked for after a later one"),
                });
            }
            let from = (stream_offset - self.sample_start) as usize;
            let n = (self.sample.len() - from).min(out.len());
            out[..n].copy_from_slice(&self.sample[from..from + n]);
            out = &mut out[n..];
            stream_offset += n as u64;
        }
        Ok(())
    }
}
