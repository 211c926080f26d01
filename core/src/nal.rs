//! **Pure.** How a video packet's payload looks inside an MP4 sample, so that the output's
//! layout can be worked out from sizes alone and its bytes written by many tasks.
//!
//! FFmpeg's mov muxer writes most payloads verbatim, but H.264 and HEVC whose codec headers are
//! Annex B (start codes, what libx264/libx265 give a muxer with global headers, e.g. NUT) are
//! rewritten to length-prefixed NAL units, and a few codecs' payloads are parsed or filtered
//! (AV1 OBUs, E-AC-3, MPEG-2, VC-1, AMR). [`sample_form`] says which video streams the layout
//! path can handle and how; [`length_prefixed`] is the one conversion used both to size a
//! segment's samples (when it is described) and to write their bytes (when a part is filled),
//! so the two cannot disagree.

use serde::{Deserialize, Serialize};

/// How a video packet's payload becomes an MP4 sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SampleForm {
    /// The payload is the sample (length-prefixed H.264/HEVC, VP9, …).
    Verbatim,
    /// Annex B H.264/HEVC: each NAL unit gets a 4-byte big-endian length instead of its start
    /// code ([`length_prefixed`]).
    AnnexB,
}

/// The [`SampleForm`] of a video stream of FFmpeg codec `codec` (its name, e.g. `h264`) with
/// codec headers `extradata`, by the tests FFmpeg 5.1's mov muxer makes
/// (`mov_write_single_packet`); `None` for codecs whose payload the muxer parses, filters or
/// copies into the header (no extradata), which keep the single-stream path.
pub fn sample_form(codec: &str, extradata: &[u8]) -> Option<SampleForm> {
    match codec {
        // avcC starts with configurationVersion 1; anything else is taken for Annex B.
        "h264" => match extradata.first() {
            None => None,
            Some(1) => Some(SampleForm::Verbatim),
            Some(_) => Some(SampleForm::AnnexB),
        },
        "hevc" => {
            if extradata.len() <= 6 {
                return None;
            }
            let annex_b = extradata[..3] == [0, 0, 1] || extradata[..4] == [0, 0, 0, 1];
            Some(if annex_b {
                SampleForm::AnnexB
            } else {
                SampleForm::Verbatim
            })
        }
        "vp9" | "mpeg4" | "prores" => Some(SampleForm::Verbatim),
        _ => None,
    }
}

/// The NAL units of an Annex B payload, each without its start code and trailing zero bytes;
/// `None` when the payload does not start with a start code (after leading zeros) or holds no
/// NAL unit.
fn nal_units(payload: &[u8]) -> Option<Vec<&[u8]>> {
    let leading_zeros = payload.iter().take_while(|&&b| b == 0).count();
    if leading_zeros < 2 || payload.get(leading_zeros) != Some(&1) {
        return None;
    }
    let mut units = Vec::new();
    let mut start = leading_zeros + 1;
    let mut i = start;
    while i + 2 < payload.len() {
        if payload[i] == 0 && payload[i + 1] == 0 && payload[i + 2] == 1 {
            units.push(&payload[start..i]);
            start = i + 3;
            i = start;
        } else {
            i += 1;
        }
    }
    units.push(&payload[start..]);
    let units: Vec<&[u8]> = units
        .into_iter()
        .map(|unit| {
            let end = unit.len() - unit.iter().rev().take_while(|&&b| b == 0).count();
            &unit[..end]
        })
        .filter(|unit| !unit.is_empty())
        .collect();
    (!units.is_empty()).then_some(units)
}

/// An Annex B payload as length-prefixed NAL units (4-byte big-endian lengths), or `None` when
/// it is not Annex B (see [`nal_units`]).
pub fn length_prefixed(payload: &[u8]) -> Option<Vec<u8>> {
    let units = nal_units(payload)?;
    let mut out = Vec::with_capacity(payload.len() + units.len());
    for unit in units {
        out.extend_from_slice(&u32::try_from(unit.len()).ok()?.to_be_bytes());
        out.extend_from_slice(unit);
    }
    Some(out)
}

/// The size of `payload` as an MP4 sample in `form`; `None` when it cannot be one.
pub fn sample_size(form: SampleForm, payload: &[u8]) -> Option<u64> {
    match form {
        SampleForm::Verbatim => Some(payload.len() as u64),
        SampleForm::AnnexB => {
            nal_units(payload).map(|units| units.iter().map(|unit| 4 + unit.len() as u64).sum())
        }
    }
}

/// The bytes of `payload` as an MP4 sample in `form`.
pub fn sample_bytes(form: SampleForm, payload: &[u8]) -> Option<Vec<u8>> {
    match form {
        SampleForm::Verbatim => Some(payload.to_vec()),
        SampleForm::AnnexB => length_prefixed(payload),
    }
}

/// A stand-in payload that the mov muxer turns into a sample of exactly `size` bytes without
/// the real bytes: zeros for [`SampleForm::Verbatim`]; for [`SampleForm::AnnexB`] one start
/// code and `size - 4` non-zero bytes (one NAL unit, which gets a 4-byte length). `None` when
/// no stand-in has that size (an Annex B sample is at least 5 bytes).
pub fn stand_in(form: SampleForm, size: u64) -> Option<Vec<u8>> {
    let size = usize::try_from(size).ok()?;
    match form {
        SampleForm::Verbatim => Some(vec![0; size]),
        SampleForm::AnnexB => {
            let body = size.checked_sub(4).filter(|&body| body > 0)?;
            let mut payload = vec![1u8; 3 + body];
            payload[..3].copy_from_slice(&[0, 0, 1]);
            Some(payload)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn annex_b_becomes_length_prefixed_units() {
        let payload = [
            0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88, 0,
        ];
        let out = length_prefixed(&payload).expect("annex b");
        assert_eq!(
            out,
            vec![0, 0, 0, 2, 0x67, 0x42, 0, 0, 0, 2, 0x68, 0xce, 0, 0, 0, 2, 0x65, 0x88]
        );
        assert_eq!(sample_size(SampleForm::AnnexB, &payload), Some(18));
        assert_eq!(length_prefixed(&[0x65, 0x88]), None);
        assert_eq!(length_prefixed(&[0, 0, 1]), None);
    }

    #[test]
    fn the_form_follows_the_codec_headers() {
        assert_eq!(sample_form("h264", &[1, 0x64]), Some(SampleForm::Verbatim));
        assert_eq!(
            sample_form("h264", &[0, 0, 0, 1, 0x67]),
            Some(SampleForm::AnnexB)
        );
        assert_eq!(sample_form("h264", &[]), None);
        assert_eq!(
            sample_form("hevc", &[0, 0, 0, 1, 0x40, 1, 0x0c]),
            Some(SampleForm::AnnexB)
        );
        assert_eq!(
            sample_form("hevc", &[1, 1, 0x60, 0, 0, 0, 0x90]),
            Some(SampleForm::Verbatim)
        );
        assert_eq!(sample_form("av1", &[0x81]), None);
        assert_eq!(sample_form("vp9", &[]), Some(SampleForm::Verbatim));
    }

    proptest! {
        /// What a stand-in becomes is what the muxer's conversion gives a real sample of that
        /// size: 4 bytes of length per unit and the unit.
        #[test]
        fn a_stand_in_converts_to_its_size(size in 5u64..5000) {
            let payload = stand_in(SampleForm::AnnexB, size).expect("stand-in");
            prop_assert_eq!(sample_size(SampleForm::AnnexB, &payload), Some(size));
            prop_assert_eq!(length_prefixed(&payload).map(|b| b.len() as u64), Some(size));
        }

        #[test]
        fn converted_units_keep_their_bytes(units in proptest::collection::vec(
            proptest::collection::vec(1u8..=255, 1..50), 1..8)) {
            let mut payload = Vec::new();
            for unit in &units {
                payload.extend_from_slice(&[0, 0, 0, 1]);
                payload.extend_from_slice(unit);
            }
            let out = length_prefixed(&payload).expect("annex b");
            let mut expected = Vec::new();
            for unit in &units {
                expected.extend_from_slice(&(unit.len() as u32).to_be_bytes());
                expected.extend_from_slice(unit);
            }
            prop_assert_eq!(out, expected);
        }
    }
}
