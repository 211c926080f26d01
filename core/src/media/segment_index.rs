//! The [`NodeIndex`] of one segment file, built from its video packets one at a time: as the
//! convert pass writes them (so no segment is read back from scratch) or as
//! [`super::merge::describe_segment`] reads them from a committed file (old scratch, or a file
//! committed by an attempt that died before recording its index). Both go through
//! [`SegmentIndexer`], so they agree by construction on everything but what the file keeps of
//! each packet; the convert tests check that the two indexes are equal.

use super::util;
use super::MediaError;
use crate::join::{fnv1a, NodeIndex, StreamFacts, VideoSamples};
use ffmpeg_next as ffmpeg;
use std::path::Path;

/// The facts of a segment file's video stream, and its codec headers: from the demuxer's stream
/// of a file being read, or the muxer's stream once its header is written (what the file holds).
pub(crate) fn stream_facts(stream: &ffmpeg::format::stream::Stream<'_>) -> (StreamFacts, Vec<u8>) {
    let parameters = stream.parameters();
    // SAFETY: codecpar of an open stream is valid while its context lives; extradata holds
    // extradata_size bytes when non-null.
    let (width, height, extradata) = unsafe {
        let par = &*parameters.as_ptr();
        let extradata = if par.extradata.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(par.extradata, par.extradata_size.max(0) as usize)
        };
        (par.width, par.height, extradata.to_vec())
    };
    let facts = StreamFacts {
        codec: util::codec_name(parameters.id()),
        width,
        height,
        time_base: util::time_base(stream.time_base()),
        extradata_len: extradata.len(),
        extradata_hash: fnv1a(&extradata),
    };
    (facts, extradata)
}

/// One video packet as the segment file holds it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegmentPacket<'a> {
    /// Presentation timestamp in the file's stream time base.
    pub pts: Option<i64>,
    pub data: &'a [u8],
    pub key: bool,
    /// Flags besides "keyframe" that an MP4 sample cannot carry from an index: the samples
    /// then cannot be laid out from the index alone.
    pub other_flags: bool,
}

/// Builds the index of segment `leaf` from its packets in file (decode) order.
#[derive(Debug)]
pub(crate) struct SegmentIndexer {
    leaf: u32,
    stream: StreamFacts,
    first_pts: i64,
    last_pts: i64,
    packets: u64,
    bytes: u64,
    pts: Vec<i64>,
    samples: Option<VideoSamples>,
    missing_pts: bool,
}

impl SegmentIndexer {
    /// For the stream `stream` describes, whose codec headers are `extradata`.
    pub(crate) fn new(leaf: u32, stream: StreamFacts, extradata: &[u8]) -> Self {
        let samples = crate::nal::sample_form(&stream.codec, extradata).map(|form| VideoSamples {
            form,
            sizes: Vec::new(),
            keyframes: Vec::new(),
            leaf_packets: Vec::new(),
        });
        Self {
            leaf,
            stream,
            first_pts: i64::MAX,
            last_pts: i64::MIN,
            packets: 0,
            bytes: 0,
            pts: Vec::new(),
            samples,
            missing_pts: false,
        }
    }

    /// Records the next packet of the file.
    pub(crate) fn record(&mut self, packet: SegmentPacket<'_>) {
        if let Some(known) = self.samples.as_mut() {
            // An empty payload (FFmpeg gives no data pointer) cannot be sized as a sample.
            let size = Some(packet.data)
                .filter(|data| !data.is_empty())
                .and_then(|data| crate::nal::sample_size(known.form, data))
                .and_then(|size| u32::try_from(size).ok())
                .filter(|_| !packet.other_flags);
            match size {
                Some(size) => {
                    if packet.key {
                        known.keyframes.push(self.packets);
                    }
                    known.sizes.push(size);
                }
                None => self.samples = None,
            }
        }
        match packet.pts {
            Some(pts) => {
                self.first_pts = self.first_pts.min(pts);
                self.last_pts = self.last_pts.max(pts);
                self.pts.push(pts);
            }
            None => self.missing_pts = true,
        }
        self.packets += 1;
        self.bytes += packet.data.len() as u64;
    }

    /// The index; `path` (the segment file) names it in errors: a packet without a pts, or no
    /// packets at all.
    pub(crate) fn finish(mut self, path: &Path) -> Result<NodeIndex, MediaError> {
        if self.missing_pts {
            return Err(MediaError::Unsupported {
                path: path.to_owned(),
                reason: "a packet has no presentation timestamp".into(),
            });
        }
        if self.packets == 0 {
            return Err(MediaError::Unsupported {
                path: path.to_owned(),
                reason: "the segment file holds no frames".into(),
            });
        }
        if let Some(known) = self.samples.as_mut() {
            known.leaf_packets.push(self.packets);
        }
        Ok(NodeIndex {
            leaves: vec![self.leaf],
            stream: self.stream,
            first_pts: self.first_pts,
            last_pts: self.last_pts,
            packets: self.packets,
            bytes: self.bytes,
            pts: self.pts,
            samples: self.samples,
        })
    }
}
