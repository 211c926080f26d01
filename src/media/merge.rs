//! Merge-video: concatenate two neighbouring segment files by stream copy.
//!
//! Segments keep the source's presentation timestamps, so the right file's timestamps already
//! follow the left file's: nothing is offset. Decoding timestamps are not copied: NUT does not
//! store them, and with B-frames each segment's first dts would reach back before the previous
//! segment's last. They are derived afresh from the pts of the joined sequence
//! ([`decode_timestamps`]), which keeps decode order and every pts intact. That takes two reads
//! of each file (pts first, then packets); merging is demuxing only, so this stays cheap.

use super::convert::SEGMENT_MUXER;
use super::util::{self, PartialFile};
use super::MediaError;
use crate::timestamps::decode_timestamps;
use ffmpeg_next as ffmpeg;
use ffmpeg_next::Rescale as _;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// What one concatenation did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeReport {
    pub packets: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Writes `left` followed by `right` (segment or merge files) to `output`.
///
/// Preconditions: both files hold one video stream encoded with the same settings, and every pts
/// in `right` is after every pts in `left`. The output appears only when complete.
pub fn concat_segments(
    left: &Path,
    right: &Path,
    output: &Path,
) -> Result<MergeReport, MediaError> {
    util::init();
    let started = Instant::now();
    let incompatible = |reason: &str| MediaError::Incompatible {
        left: left.to_owned(),
        right: right.to_owned(),
        reason: reason.to_owned(),
    };
    let left_input = util::open_input(left)?;
    let right_input = util::open_input(right)?;
    check_compatible(left, &left_input, right, &right_input)?;

    let partial = PartialFile::create(output)?;
    let write_failed = |source| MediaError::Write {
        path: partial.target().to_owned(),
        source,
    };
    let mut muxer = util::open_output(&partial, SEGMENT_MUXER)?;
    let left_stream = left_input.stream(0).expect("checked in check_compatible");
    let time_base = left_stream.time_base();
    {
        let mut stream = muxer
            .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
            .map_err(write_failed)?;
        stream.set_parameters(left_stream.parameters());
        stream.set_time_base(time_base);
    }
    util::clear_codec_tag(&mut muxer, 0, 0);
    util::write_intermediate_header(&mut muxer).map_err(write_failed)?;
    let output_time_base = muxer.stream(0).map(|s| s.time_base()).unwrap_or(time_base);

    // Pass 1: every packet's pts in decode order, in the output time base.
    let mut pts = Vec::new();
    let mut boundary = 0;
    for (path, mut input) in [(left, left_input), (right, right_input)] {
        let input_time_base = input.stream(0).map(|s| s.time_base()).unwrap_or(time_base);
        let file_pts = util::read_packet_pts(path, &mut input)?;
        pts.extend(
            file_pts
                .into_iter()
                .map(|p| p.rescale(input_time_base, output_time_base)),
        );
        if boundary == 0 {
            boundary = pts.len();
        }
    }
    let left_last = pts[..boundary].iter().max();
    let right_first = pts[boundary..].iter().min();
    if let (Some(left_last), Some(right_first)) = (left_last, right_first) {
        if left_last >= right_first {
            return Err(incompatible(&format!(
                "the right file starts at pts {right_first}, not after the left file's {left_last}"
            )));
        }
    }
    let end = pts.iter().max().map_or(0, |max| max + 1);
    let dts = decode_timestamps(&pts, end);

    // Pass 2: copy the packets with those timestamps.
    let mut written = 0usize;
    for path in [left, right] {
        let mut input = util::open_input(path)?;
        loop {
            // A fresh packet per read: `Packet::read` does not release the previous one.
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(source) => {
                    return Err(MediaError::Read {
                        path: path.to_owned(),
                        source,
                    })
                }
            }
            let (Some(&packet_pts), Some(&packet_dts)) = (pts.get(written), dts.get(written))
            else {
                return Err(incompatible("a file changed while it was being merged"));
            };
            packet.set_pts(Some(packet_pts));
            packet.set_dts(Some(packet_dts));
            packet.set_stream(0);
            packet.set_position(-1);
            packet.write(&mut muxer).map_err(write_failed)?;
            written += 1;
        }
    }
    muxer.write_trailer().map_err(write_failed)?;
    drop(muxer);
    let bytes = std::fs::metadata(partial.path())
        .map_err(MediaError::io(partial.target()))?
        .len();
    partial.commit()?;
    Ok(MergeReport {
        packets: written as u64,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Both files must carry one video stream with the same codec, size and codec headers, or their
/// packets cannot share one stream.
fn check_compatible(
    left: &Path,
    left_input: &ffmpeg::format::context::Input,
    right: &Path,
    right_input: &ffmpeg::format::context::Input,
) -> Result<(), MediaError> {
    let incompatible = |reason: String| MediaError::Incompatible {
        left: left.to_owned(),
        right: right.to_owned(),
        reason,
    };
    let (Some(left_stream), Some(right_stream)) = (left_input.stream(0), right_input.stream(0))
    else {
        return Err(incompatible("a file has no stream".into()));
    };
    let (left_parameters, right_parameters) = (left_stream.parameters(), right_stream.parameters());
    // SAFETY: codecpar of open streams is valid while the inputs live; extradata holds
    // extradata_size bytes when non-null.
    let (left_facts, right_facts) = unsafe {
        let facts = |par: *const ffmpeg::ffi::AVCodecParameters| {
            let par = &*par;
            let extradata = if par.extradata.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(par.extradata, par.extradata_size.max(0) as usize)
                    .to_vec()
            };
            (par.codec_id, par.width, par.height, extradata)
        };
        (
            facts(left_parameters.as_ptr()),
            facts(right_parameters.as_ptr()),
        )
    };
    if left_facts.0 != right_facts.0 {
        return Err(incompatible(format!(
            "codecs differ ({:?} vs {:?})",
            left_facts.0, right_facts.0
        )));
    }
    if (left_facts.1, left_facts.2) != (right_facts.1, right_facts.2) {
        return Err(incompatible(format!(
            "frame sizes differ ({}x{} vs {}x{})",
            left_facts.1, left_facts.2, right_facts.1, right_facts.2
        )));
    }
    if left_facts.3 != right_facts.3 {
        return Err(incompatible(
            "codec headers (extradata) differ: the segments were encoded with different settings"
                .into(),
        ));
    }
    Ok(())
}
