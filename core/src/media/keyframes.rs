//! Whether a sample the container calls a keyframe really starts decoding: the check behind the
//! index-only probe of MP4/MOV video.
//!
//! The probe lists MP4/MOV H.264 and HEVC packets from the index without fetching them (see
//! [`super::probe::PacketReads`]); their keyframe flags are then the `stss` sync-sample table's,
//! exactly what libavformat would flag while reading the packets (it parses their headers only
//! when `stss` is empty, a case the probe streams instead). A table can still lie, and a cut at a
//! sample that is no keyframe would decode to damaged or missing frames. So before a plan is
//! used, every keyframe it decodes from is checked here against the sample's own bytes: its
//! first NAL units, a few hundred bytes read at the sample's position (one small ranged read
//! each, of the bytes that segment's worker reads anyway). A keyframe that fails is demoted and
//! the job planned again ([`crate::engine::prepare_job`]), so no cut ever lands on it.
//!
//! A sample starts decoding when its first slice is an H.264 IDR slice, an H.264 I slice after
//! a recovery-point SEI with `recovery_frame_cnt` 0 (an open-GOP keyframe), or an HEVC IRAP
//! picture (BLA, IDR, CRA). Other containers and codecs are not checked: their keyframe flags
//! come from reading every packet, as before.

use super::probe::MediaInfo;
use super::source::{ByteSource, Source};
use super::MediaError;
use crate::plan::SegmentPlan;
use std::collections::BTreeSet;

/// How the video's samples carry their NAL units: length-prefixed (avcC, hvcC), with the
/// prefix size in bytes (1, 2 or 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bitstream {
    H264 { length_bytes: usize },
    Hevc { length_bytes: usize },
}

impl Bitstream {
    /// The framing of `codec` (FFmpeg's name) with codec headers `extradata`, if it is H.264 in
    /// `avcC` or HEVC in `hvcC` form (as MP4/MOV store them).
    pub fn from_extradata(codec: &str, extradata: &[u8]) -> Option<Self> {
        match codec {
            // avcC: configurationVersion 1, ..., lengthSizeMinusOne in the low 2 bits of byte 4.
            "h264" if extradata.len() >= 7 && extradata[0] == 1 => Some(Self::H264 {
                length_bytes: usize::from(extradata[4] & 3) + 1,
            }),
            // hvcC: configurationVersion 1, lengthSizeMinusOne in the low 2 bits of byte 21.
            "hevc" if extradata.len() >= 23 && extradata[0] == 1 => Some(Self::Hevc {
                length_bytes: usize::from(extradata[21] & 3) + 1,
            }),
            _ => None,
        }
    }

    fn length_bytes(self) -> usize {
        match self {
            Self::H264 { length_bytes } | Self::Hevc { length_bytes } => length_bytes,
        }
    }
}

/// What the first bytes of a sample say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Decoding can start here.
    Keyframe,
    /// The first slice depends on earlier pictures (or the sample holds no slice).
    NotKeyframe,
    /// The bytes read end before the first slice's header: read more.
    NeedMore,
}

/// Judges a sample from its first bytes (`head`, of a sample `sample_size` bytes long).
/// `NeedMore` only while `head` is shorter than the sample.
pub fn judge(bitstream: Bitstream, head: &[u8], sample_size: usize) -> Verdict {
    let length_bytes = bitstream.length_bytes();
    let mut at = 0usize;
    let mut recovery_point = false;
    let more = |needed: usize| {
        if needed > head.len() && head.len() < sample_size {
            Verdict::NeedMore
        } else {
            Verdict::NotKeyframe
        }
    };
    loop {
        if at + length_bytes > sample_size {
            return Verdict::NotKeyframe;
        }
        let Some(prefix) = head.get(at..at + length_bytes) else {
            return more(at + length_bytes);
        };
        let length = prefix
            .iter()
            .fold(0usize, |value, &byte| (value << 8) | usize::from(byte));
        let start = at + length_bytes;
        let end = start.saturating_add(length);
        if length == 0 || end > sample_size {
            return Verdict::NotKeyframe;
        }
        match bitstream {
            Bitstream::H264 { .. } => {
                let Some(&header) = head.get(start) else {
                    return more(start + 1);
                };
                match header & 0x1f {
                    5 => return Verdict::Keyframe,
                    1 => {
                        if !recovery_point {
                            return Verdict::NotKeyframe;
                        }
                        // The slice header: first_mb_in_slice, slice_type (both ue(v)).
                        let Some(slice) = head.get(start + 1..end.min(start + 33)) else {
                            return more(end.min(start + 33));
                        };
                        let mut bits = Bits::new(unescape(slice));
                        let kind = bits.ue().and_then(|_| bits.ue());
                        return match kind {
                            // I and SI slices (5 and up: every slice of the picture is).
                            Some(2 | 4 | 7 | 9) => Verdict::Keyframe,
                            Some(_) => Verdict::NotKeyframe,
                            None if end > head.len() => Verdict::NeedMore,
                            None => Verdict::NotKeyframe,
                        };
                    }
                    2..=4 => return Verdict::NotKeyframe,
                    6 => {
                        let Some(sei) = head.get(start + 1..end) else {
                            return more(end);
                        };
                        recovery_point |= has_exact_recovery_point(&unescape(sei));
                    }
                    _ => {}
                }
            }
            Bitstream::Hevc { .. } => {
                let Some(&header) = head.get(start) else {
                    return more(start + 1);
                };
                match (header >> 1) & 0x3f {
                    16..=21 => return Verdict::Keyframe,
                    0..=31 => return Verdict::NotKeyframe,
                    _ => {}
                }
            }
        }
        at = end;
    }
}

/// True when an H.264 SEI (its RBSP, after the NAL header) holds a recovery point with
/// `recovery_frame_cnt` 0: the picture it precedes is exact when decoding starts there.
fn has_exact_recovery_point(rbsp: &[u8]) -> bool {
    let mut at = 0usize;
    // Each message: payload type and size (runs of 0xFF plus a last byte), then the payload.
    while at < rbsp.len() && rbsp[at] != 0x80 {
        let read_number = |at: &mut usize| {
            let mut value = 0usize;
            while let Some(&byte) = rbsp.get(*at) {
                *at += 1;
                value += usize::from(byte);
                if byte != 0xff {
                    return Some(value);
                }
            }
            None
        };
        let (Some(kind), Some(size)) = (read_number(&mut at), read_number(&mut at)) else {
            return false;
        };
        let Some(payload) = rbsp.get(at..at.saturating_add(size)) else {
            return false;
        };
        if kind == 6 {
            return Bits::new(payload.to_vec()).ue() == Some(0);
        }
        at += size;
    }
    false
}

/// The RBSP of NAL unit bytes: every emulation-prevention byte (the 3 of `00 00 03`) removed.
fn unescape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut zeros = 0;
    for &byte in bytes {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

/// A big-endian bit reader for Exp-Golomb codes.
struct Bits {
    bytes: Vec<u8>,
    at: usize,
}

impl Bits {
    fn new(bytes: Vec<u8>) -> Self {
        Self { bytes, at: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = *self.bytes.get(self.at / 8)?;
        let bit = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u32::from(bit))
    }

    /// An unsigned Exp-Golomb code, ue(v).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let mut value = 0u32;
        for _ in 0..zeros {
            value = (value << 1) | self.bit()?;
        }
        Some((1u32 << zeros) - 1 + value)
    }
}

/// The framing of the video's samples, for an MP4/MOV source with H.264 or HEVC video (`None`
/// otherwise): opens `source` for its codec headers (on AWS served from the opening bytes
/// analyze saved).
pub fn video_bitstream(source: &Source, info: &MediaInfo) -> Result<Option<Bitstream>, MediaError> {
    if !info.container.starts_with("mov,") || !matches!(info.video.codec.as_str(), "h264" | "hevc")
    {
        return Ok(None);
    }
    let (input, _) = super::source::open(source)?;
    let Some(stream) = input.stream(info.video.stream_index) else {
        return Ok(None);
    };
    // SAFETY: codecpar of an open stream is valid while `input` lives; extradata holds
    // extradata_size bytes when non-null.
    let extradata = unsafe {
        let par = &*stream.parameters().as_ptr();
        if par.extradata.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(par.extradata, par.extradata_size.max(0) as usize).to_vec()
        }
    };
    Ok(Bitstream::from_extradata(&info.video.codec, &extradata))
}

/// Bytes read at a sample's start before reading on: the codec headers and SEI that precede the
/// first slice fit in this in every encoder's output seen.
const FIRST_READ: usize = 1024;
/// The most bytes of one sample read to judge it.
const MOST_READ: usize = 256 * 1024;

/// The keyframes `plan` decodes from (MP4/MOV H.264 and HEVC only) that are not keyframes by
/// their own bytes, as presentation timestamps (video time base). `checked` holds the pts of
/// keyframes already found good, which are not read again; every keyframe found good here is
/// added to it. Empty for other containers and codecs. Reads the source's bytes directly (a
/// few small reads per keyframe, no read-ahead).
pub fn false_cut_points(
    source: &Source,
    info: &MediaInfo,
    plan: &SegmentPlan,
    bitstream: Option<Bitstream>,
    checked: &mut BTreeSet<i64>,
) -> Result<Vec<i64>, MediaError> {
    let Some(bitstream) = bitstream.filter(|_| info.container.starts_with("mov,")) else {
        return Ok(Vec::new());
    };
    let mut false_points = Vec::new();
    for point in plan
        .segments
        .iter()
        .filter_map(|segment| segment.decode_from)
        .filter(|point| point.pts > info.video.first_pts)
    {
        if checked.contains(&point.pts) {
            continue;
        }
        let Some(span) = info.video_packets_at.iter().find(|p| p.pts == point.pts) else {
            // The probe knows no position: nothing to read, so nothing to trust.
            false_points.push(point.pts);
            continue;
        };
        let size = usize::try_from(span.size).unwrap_or(usize::MAX);
        if is_keyframe(source.bytes().as_ref(), bitstream, span.position, size).map_err(
            |source_error| MediaError::Source {
                path: source.name().to_owned(),
                source: source_error,
            },
        )? {
            checked.insert(point.pts);
        } else {
            false_points.push(point.pts);
        }
    }
    Ok(false_points)
}

/// Reads the first bytes of the sample at `position` (`size` bytes) until [`judge`] decides.
fn is_keyframe(
    bytes: &dyn ByteSource,
    bitstream: Bitstream,
    position: u64,
    size: usize,
) -> Result<bool, super::source::SourceError> {
    let mut head: Vec<u8> = Vec::new();
    let mut want = FIRST_READ.min(size);
    loop {
        let from = head.len();
        head.resize(want, 0);
        let mut filled = from;
        while filled < want {
            let n = bytes.read_at(position + filled as u64, &mut head[filled..want])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        head.truncate(filled);
        match judge(bitstream, &head, size) {
            Verdict::Keyframe => return Ok(true),
            Verdict::NotKeyframe => return Ok(false),
            Verdict::NeedMore if filled < want || want >= size.min(MOST_READ) => return Ok(false),
            Verdict::NeedMore => want = (want * 4).min(size).min(MOST_READ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nal(header: &[u8], body: &[u8]) -> Vec<u8> {
        let mut unit = Vec::new();
        unit.extend_from_slice(&((header.len() + body.len()) as u32).to_be_bytes());
        unit.extend_from_slice(header);
        unit.extend_from_slice(body);
        unit
    }

    const H264: Bitstream = Bitstream::H264 { length_bytes: 4 };
    const HEVC: Bitstream = Bitstream::Hevc { length_bytes: 4 };

    fn judged(bitstream: Bitstream, sample: &[u8]) -> Verdict {
        judge(bitstream, sample, sample.len())
    }

    #[test]
    fn h264_idr_and_p_slices() {
        // SEI (user data), then an IDR slice.
        let idr = [
            nal(&[0x06], &[0x05, 0x02, 0xaa, 0xbb, 0x80]),
            nal(&[0x65], &[0x88, 0x84]),
        ]
        .concat();
        assert_eq!(judged(H264, &idr), Verdict::Keyframe);
        // A P slice: first_mb 0 (1), slice_type 0 (1) -> 0b11.
        let p = nal(&[0x41], &[0b1100_0000]);
        assert_eq!(judged(H264, &p), Verdict::NotKeyframe);
        // Only parameter sets: no slice at all.
        assert_eq!(
            judged(H264, &nal(&[0x67], &[0x64, 0, 0x1f])),
            Verdict::NotKeyframe
        );
        // Cut short: the IDR's header is past what was read.
        assert_eq!(judge(H264, &idr[..8], idr.len()), Verdict::NeedMore);
    }

    #[test]
    fn h264_open_gop_i_slice_after_an_exact_recovery_point() {
        // Recovery point SEI: type 6, size 1, recovery_frame_cnt 0 = ue '1', then trailing bits.
        let sei = nal(&[0x06], &[0x06, 0x01, 0b1100_0000, 0x80]);
        // Non-IDR I slice: first_mb 0 ('1'), slice_type 7 ('0001000') -> 1000 1000.
        let i_slice = nal(&[0x21], &[0b1000_1000]);
        assert_eq!(
            judged(H264, &[sei.clone(), i_slice.clone()].concat()),
            Verdict::Keyframe
        );
        // The same I slice without the SEI is no keyframe; nor with a gradual refresh (cnt 3).
        assert_eq!(judged(H264, &i_slice), Verdict::NotKeyframe);
        let gradual = nal(&[0x06], &[0x06, 0x01, 0b0010_0000, 0x80]);
        assert_eq!(
            judged(H264, &[gradual, i_slice].concat()),
            Verdict::NotKeyframe
        );
    }

    #[test]
    fn hevc_irap_pictures() {
        // IDR_W_RADL (19), CRA (21), TRAIL_R (1), after a prefix SEI (39).
        let sei = nal(&[39 << 1, 1], &[0x01, 0x80]);
        for (kind, verdict) in [
            (19u8, Verdict::Keyframe),
            (21, Verdict::Keyframe),
            (1, Verdict::NotKeyframe),
        ] {
            let sample = [sei.clone(), nal(&[kind << 1, 1], &[0xaf])].concat();
            assert_eq!(judged(HEVC, &sample), verdict, "NAL type {kind}");
        }
    }

    #[test]
    fn lengths_past_the_sample_are_no_keyframe() {
        let mut sample = nal(&[0x65], &[0x88]);
        sample[3] = 200;
        assert_eq!(judged(H264, &sample), Verdict::NotKeyframe);
        assert_eq!(judged(H264, &[]), Verdict::NotKeyframe);
    }

    #[test]
    fn extradata_gives_the_length_prefix() {
        let avcc = [1, 0x64, 0, 0x1f, 0xfe, 0xe1, 0];
        assert_eq!(
            Bitstream::from_extradata("h264", &avcc),
            Some(Bitstream::H264 { length_bytes: 3 })
        );
        // Annex B (start codes), as in MPEG-TS: not length-prefixed.
        assert_eq!(
            Bitstream::from_extradata("h264", &[0, 0, 0, 1, 0x67, 0, 0]),
            None
        );
        assert_eq!(Bitstream::from_extradata("vp9", &avcc), None);
    }
}
