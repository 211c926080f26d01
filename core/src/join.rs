//! **Pure.** What a merge checks and records instead of copying video.
//!
//! A merged node is no file of video: it is a [`NodeIndex`], the ordered list of the segment
//! files (leaves) it covers and the facts its parent's check needs. Two neighbours join when
//! their leaves are contiguous, their video streams are interchangeable (same codec, frame size,
//! time base and codec headers, which encoders produce only when told to make them identical,
//! e.g. x264's `stitchable`) and the right one starts after the left one ends. The video bytes
//! are read once, in leaf order, by whoever writes the output ([`crate::engine::finish_root`]).

use crate::plan::TimeBase;
use serde::{Deserialize, Serialize};

/// The facts of a segment's video stream that must be equal for its packets to share one
/// stream with a neighbour's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFacts {
    /// FFmpeg's codec name, e.g. `h264`.
    pub codec: String,
    /// Coded frame size in pixels.
    pub width: i32,
    pub height: i32,
    /// The stream's time base in the segment file: every pts below is in it.
    pub time_base: TimeBase,
    /// Length in bytes and a 64-bit FNV-1a hash of the codec headers (extradata: SPS/PPS, the
    /// AV1 sequence header, …).
    pub extradata_len: usize,
    pub extradata_hash: u64,
}

/// A finished node of the merge tree: a segment (one leaf) or a merge of neighbours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIndex {
    /// The segments it covers, in presentation order, contiguous (e.g. `[4, 5, 6, 7]`).
    pub leaves: Vec<u32>,
    pub stream: StreamFacts,
    /// Smallest and largest pts of its packets, in `stream.time_base`.
    pub first_pts: i64,
    pub last_pts: i64,
    /// Video packets (frames) and their bytes, summed over the leaves.
    pub packets: u64,
    pub bytes: u64,
    /// Every packet's pts in file (decode) order, the leaves' one after another: what the root
    /// needs to lay out the output's timestamps without reading the segments twice. Empty in
    /// an index written before it was kept (the root then reads the pts from the files).
    #[serde(default)]
    pub pts: Vec<i64>,
    /// What the output's layout needs without reading the video (see
    /// [`crate::output_layout`]); `None` in an index written before it was kept, or when a
    /// leaf's samples cannot be sized from its index (a codec the muxer rewrites).
    #[serde(default)]
    pub samples: Option<VideoSamples>,
}

/// The video packets of a node as MP4 samples: sizes, keyframes and which leaf holds each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoSamples {
    /// How each packet's payload becomes a sample (the same for joined leaves: their codec
    /// headers are identical).
    pub form: crate::nal::SampleForm,
    /// Each packet's size as a sample, in file (decode) order over the leaves.
    pub sizes: Vec<u32>,
    /// Positions (in `sizes`) of the packets flagged as keyframes.
    pub keyframes: Vec<u64>,
    /// Packets of each leaf, in `leaves` order.
    pub leaf_packets: Vec<u64>,
}

impl VideoSamples {
    /// `self` followed by `right`'s packets.
    fn join(&self, right: &VideoSamples) -> Option<VideoSamples> {
        if self.form != right.form {
            return None;
        }
        let offset = self.sizes.len() as u64;
        Some(VideoSamples {
            form: self.form,
            sizes: self.sizes.iter().chain(&right.sizes).copied().collect(),
            keyframes: self
                .keyframes
                .iter()
                .copied()
                .chain(right.keyframes.iter().map(|k| k + offset))
                .collect(),
            leaf_packets: self
                .leaf_packets
                .iter()
                .chain(&right.leaf_packets)
                .copied()
                .collect(),
        })
    }
}

/// Why two nodes cannot be joined. Each one is a defect of the encode (settings differing
/// between segments) or of the scratch files (a wrong or stale file), never of the user's input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("segments {left:?} and {right:?} are not neighbours")]
    NotNeighbours { left: Vec<u32>, right: Vec<u32> },
    #[error("codecs differ ({left} vs {right})")]
    Codec { left: String, right: String },
    #[error("frame sizes differ ({left_width}x{left_height} vs {right_width}x{right_height})")]
    Size {
        left_width: i32,
        left_height: i32,
        right_width: i32,
        right_height: i32,
    },
    #[error("time bases differ ({left:?} vs {right:?})")]
    TimeBase { left: TimeBase, right: TimeBase },
    #[error("codec headers (extradata) differ: the segments were encoded with different settings")]
    Extradata,
    #[error("the right part starts at pts {right_first}, not after the left part's {left_last}")]
    Overlap { left_last: i64, right_first: i64 },
}

impl NodeIndex {
    /// The node made of `self` followed by `right`, if they join (see the module docs).
    pub fn join(&self, right: &NodeIndex) -> Result<NodeIndex, JoinError> {
        let contiguous = match (self.leaves.last(), right.leaves.first()) {
            (Some(&last), Some(&first)) => last.checked_add(1) == Some(first),
            _ => false,
        };
        if !contiguous {
            return Err(JoinError::NotNeighbours {
                left: self.leaves.clone(),
                right: right.leaves.clone(),
            });
        }
        let (a, b) = (&self.stream, &right.stream);
        if a.codec != b.codec {
            return Err(JoinError::Codec {
                left: a.codec.clone(),
                right: b.codec.clone(),
            });
        }
        if (a.width, a.height) != (b.width, b.height) {
            return Err(JoinError::Size {
                left_width: a.width,
                left_height: a.height,
                right_width: b.width,
                right_height: b.height,
            });
        }
        if a.time_base != b.time_base {
            return Err(JoinError::TimeBase {
                left: a.time_base,
                right: b.time_base,
            });
        }
        if (a.extradata_len, a.extradata_hash) != (b.extradata_len, b.extradata_hash) {
            return Err(JoinError::Extradata);
        }
        if self.last_pts >= right.first_pts {
            return Err(JoinError::Overlap {
                left_last: self.last_pts,
                right_first: right.first_pts,
            });
        }
        Ok(NodeIndex {
            leaves: self.leaves.iter().chain(&right.leaves).copied().collect(),
            stream: a.clone(),
            first_pts: self.first_pts,
            last_pts: right.last_pts,
            packets: self.packets + right.packets,
            bytes: self.bytes + right.bytes,
            pts: self.pts.iter().chain(&right.pts).copied().collect(),
            samples: match (&self.samples, &right.samples) {
                (Some(left), Some(right)) => left.join(right),
                _ => None,
            },
        })
    }
}

/// A stable 64-bit FNV-1a hash (std's hasher may change between Rust releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(index: u32, first_pts: i64, last_pts: i64) -> NodeIndex {
        NodeIndex {
            leaves: vec![index],
            stream: StreamFacts {
                codec: "h264".into(),
                width: 64,
                height: 48,
                time_base: TimeBase { num: 1, den: 25 },
                extradata_len: 30,
                extradata_hash: fnv1a(b"sps pps"),
            },
            first_pts,
            last_pts,
            packets: (last_pts - first_pts + 1) as u64,
            bytes: 1000,
            pts: (first_pts..=last_pts).collect(),
            samples: Some(VideoSamples {
                form: crate::nal::SampleForm::AnnexB,
                sizes: vec![40; (last_pts - first_pts + 1) as usize],
                keyframes: vec![0],
                leaf_packets: vec![(last_pts - first_pts + 1) as u64],
            }),
        }
    }

    #[test]
    fn neighbours_join_into_one_index_of_both() {
        let joined = leaf(2, 0, 24).join(&leaf(3, 25, 49)).expect("they join");
        assert_eq!(joined.leaves, vec![2, 3]);
        assert_eq!((joined.first_pts, joined.last_pts), (0, 49));
        assert_eq!((joined.packets, joined.bytes), (50, 2000));
        let four = joined
            .join(&leaf(4, 50, 74).join(&leaf(5, 75, 99)).expect("join"))
            .expect("join");
        assert_eq!(four.leaves, vec![2, 3, 4, 5]);
        let samples = four.samples.expect("all four have samples");
        assert_eq!(samples.keyframes, vec![0, 25, 50, 75]);
        assert_eq!(samples.leaf_packets, vec![25; 4]);
        assert_eq!(samples.sizes.len(), 100);
        let mut unsized_leaf = leaf(6, 100, 124);
        unsized_leaf.samples = None;
        let joined = leaf(5, 75, 99).join(&unsized_leaf).expect("join");
        assert_eq!(joined.samples, None);
    }

    #[test]
    fn every_difference_is_refused_with_its_reason() {
        let left = leaf(0, 0, 24);
        assert!(matches!(
            left.join(&leaf(2, 25, 49)),
            Err(JoinError::NotNeighbours { .. })
        ));
        assert!(matches!(
            left.join(&leaf(1, 24, 49)),
            Err(JoinError::Overlap {
                left_last: 24,
                right_first: 24
            })
        ));
        let mut other = leaf(1, 25, 49);
        other.stream.extradata_hash ^= 1;
        assert_eq!(left.join(&other), Err(JoinError::Extradata));
        let mut other = leaf(1, 25, 49);
        other.stream.codec = "hevc".into();
        assert!(matches!(left.join(&other), Err(JoinError::Codec { .. })));
        let mut other = leaf(1, 25, 49);
        other.stream.width = 66;
        assert!(matches!(left.join(&other), Err(JoinError::Size { .. })));
        let mut other = leaf(1, 25, 49);
        other.stream.time_base = TimeBase { num: 1, den: 90000 };
        assert!(matches!(left.join(&other), Err(JoinError::TimeBase { .. })));
    }
}
