//! RFC 6381 codec strings (HLS `CODECS`) from a stream's codec headers: H.264 `avc1.PPCCLL`
//! and H.265 `hvc1.P.C.TL.B` from the SPS (Annex B or avcC/hvcC extradata), AAC
//! `mp4a.40.<object type>` from the AudioSpecificConfig, and the fixed names of other audio.

use ffmpeg_next as ffmpeg;

/// The video codec string, `None` for a codec or header this cannot describe.
pub(super) fn video_codec_string(id: ffmpeg::codec::Id, extradata: &[u8]) -> Option<String> {
    match id {
        ffmpeg::codec::Id::H264 => {
            let sps = if extradata.first() == Some(&1) {
                // avcC: version, profile, compatibility, level.
                extradata.get(1..4)?.to_vec()
            } else {
                let nal = annex_b_units(extradata)
                    .find(|unit| unit.first().is_some_and(|byte| byte & 0x1f == 7))?;
                nal.get(1..4)?.to_vec()
            };
            Some(format!("avc1.{:02x}{:02x}{:02x}", sps[0], sps[1], sps[2]))
        }
        ffmpeg::codec::Id::HEVC => {
            // profile_tier_level's first 12 bytes: from hvcC (byte 1 on) or the SPS after its
            // two-byte NAL header and one byte of ids.
            let ptl: Vec<u8> = if extradata.first() == Some(&1) {
                extradata.get(1..13)?.to_vec()
            } else {
                let nal = annex_b_units(extradata)
                    .find(|unit| unit.first().is_some_and(|byte| (byte >> 1) & 0x3f == 33))?;
                unescape(nal).get(3..15)?.to_vec()
            };
            let profile_space = ["", "A", "B", "C"][usize::from(ptl[0] >> 6)];
            let tier = if ptl[0] & 0x20 != 0 { 'H' } else { 'L' };
            let profile = ptl[0] & 0x1f;
            let compatibility = u32::from_be_bytes([ptl[1], ptl[2], ptl[3], ptl[4]]).reverse_bits();
            let level = ptl[11];
            let mut constraints: Vec<u8> = ptl[5..11].to_vec();
            while constraints.last() == Some(&0) {
                constraints.pop();
            }
            let mut text = format!("hvc1.{profile_space}{profile}.{compatibility:x}.{tier}{level}");
            for byte in constraints {
                text.push_str(&format!(".{byte:X}"));
            }
            Some(text)
        }
        _ => None,
    }
}

/// The audio codec string, `None` for a codec HLS names no string for here.
pub(super) fn audio_codec_string(id: ffmpeg::codec::Id, extradata: &[u8]) -> Option<String> {
    Some(match id {
        ffmpeg::codec::Id::AAC => {
            let object_type = extradata.first().map_or(2, |byte| byte >> 3);
            format!("mp4a.40.{}", if object_type == 0 { 2 } else { object_type })
        }
        ffmpeg::codec::Id::MP3 => "mp4a.40.34".to_owned(),
        ffmpeg::codec::Id::AC3 => "ac-3".to_owned(),
        ffmpeg::codec::Id::EAC3 => "ec-3".to_owned(),
        ffmpeg::codec::Id::OPUS => "opus".to_owned(),
        ffmpeg::codec::Id::FLAC => "fLaC".to_owned(),
        ffmpeg::codec::Id::ALAC => "alac".to_owned(),
        _ => return None,
    })
}

/// The NAL units of an Annex B byte stream (start codes removed).
fn annex_b_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at + 3 <= data.len() {
        if data[at..at + 3] == [0, 0, 1] {
            starts.push(at + 3);
            at += 3;
        } else {
            at += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&start| {
            // A four-byte start code leaves one zero before the three-byte one.
            let end = start - 3;
            if end > 0 && data[end - 1] == 0 {
                end - 1
            } else {
                end
            }
        })
        .chain(std::iter::once(data.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .map(move |(start, end)| &data[start..end.max(start)])
}

/// A NAL unit's payload without its emulation prevention bytes (`00 00 03` → `00 00`).
fn unescape(unit: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(unit.len());
    let mut zeros = 0;
    for &byte in unit {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_from_annex_b_and_avcc() {
        let annex_b = [
            0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac, 0, 0, 1, 0x68, 0xeb,
        ];
        assert_eq!(
            video_codec_string(ffmpeg::codec::Id::H264, &annex_b).as_deref(),
            Some("avc1.64001f")
        );
        let avcc = [1, 0x42, 0xc0, 0x1e, 0xff];
        assert_eq!(
            video_codec_string(ffmpeg::codec::Id::H264, &avcc).as_deref(),
            Some("avc1.42c01e")
        );
    }

    #[test]
    fn hevc_main_from_its_sps() {
        // SPS NAL header 42 01, ids 01, then Main profile, compatibility 0x60000000,
        // progressive+frame-only constraint flags (0x90), level 93 (3.1).
        let sps = [
            0, 0, 0, 1, 0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x03,
            0x00, 0x00, 0x03, 0x00, 0x5d, 0xa0,
        ];
        assert_eq!(
            video_codec_string(ffmpeg::codec::Id::HEVC, &sps).as_deref(),
            Some("hvc1.1.6.L93.90")
        );
    }

    #[test]
    fn aac_object_type_from_its_config() {
        assert_eq!(
            audio_codec_string(ffmpeg::codec::Id::AAC, &[0x12, 0x10]).as_deref(),
            Some("mp4a.40.2")
        );
        assert_eq!(
            audio_codec_string(ffmpeg::codec::Id::AAC, &[0x2b, 0x92]).as_deref(),
            Some("mp4a.40.5")
        );
        assert_eq!(audio_codec_string(ffmpeg::codec::Id::PCM_S16LE, &[]), None);
    }
}
