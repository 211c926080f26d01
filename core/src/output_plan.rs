//! **Pure.** Sizing the one write of the output: the room reserved for an MP4's index at the
//! front, and the parts of a multipart upload.
//!
//! The output is muxed once, front to back. For MP4/MOV the index (`moov`) must come first so a
//! player starts at once over HTTP range requests, but it is only known at the end; FFmpeg's mov
//! muxer reserves `moov_size` bytes after `ftyp`, writes the media after them and, at the
//! trailer, the index into the reservation (padded with a `free` box). A reservation that is
//! too small makes the trailer fail (never a silently non-faststart file), so the reservation is
//! a bound: every sample's worst-case table entries, never an average.

/// S3's multipart limits: parts of 5 MiB–5 GiB (the last may be smaller), at most 10,000.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
pub const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;
pub const MAX_PARTS: u64 = 10_000;
/// The part size treemux uses unless the output needs larger parts to fit in [`MAX_PARTS`].
pub const DEFAULT_PART_BYTES: u64 = 8 * 1024 * 1024;

/// Worst-case bytes of sample tables per sample in a non-fragmented MP4: `stsz` 4, `stts` 8,
/// `ctts` 8, `stss` 4, `sdtp` 1, and a chunk per sample at worst (`stsc` 12, `co64` 8).
const TABLE_BYTES_PER_SAMPLE: u64 = 45;
/// Fixed boxes of one track (`trak`, `tkhd`, `mdia`, `hdlr`, `stsd`, `edts`, …) before its codec
/// headers, with room to spare.
const BYTES_PER_TRACK: u64 = 4096;
/// `mvhd`, `udta`, `iods`, … and the margin that keeps the bound safe.
const BASE_BYTES: u64 = 64 * 1024;

/// What the index will have to describe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexContents {
    /// Samples (packets) of each track written with packets.
    pub samples_per_track: Vec<u64>,
    /// Tracks without counted samples (timecode, chapters).
    pub other_tracks: u64,
    /// Bytes the index holds verbatim: codec headers, cover art, chapter titles, tags.
    pub verbatim_bytes: u64,
}

/// Bytes to reserve for the index of an output holding `contents`: a bound, rounded up to 4 KiB.
pub fn moov_reserve(contents: &IndexContents) -> u64 {
    let tracks = contents.samples_per_track.len() as u64 + contents.other_tracks;
    let samples: u64 = contents.samples_per_track.iter().sum();
    let bound = BASE_BYTES
        + tracks * BYTES_PER_TRACK
        + samples * TABLE_BYTES_PER_SAMPLE
        // Twice: atoms wrap verbatim data with headers and some is written twice (chapters
        // as a `chpl` list and as a text track).
        + 2 * contents.verbatim_bytes;
    bound.div_ceil(4096) * 4096
}

/// How an output of about `estimated_bytes` is cut into multipart parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartPlan {
    /// Size of every part but the last, in bytes.
    pub part_bytes: u64,
    /// Bytes held back in memory as part 1 until the trailer is written: the reserved index and
    /// the boxes around it are rewritten then. At least `part_bytes`.
    pub first_part_bytes: u64,
}

/// Why no part plan fits S3's limits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartPlanError {
    #[error("an output of about {estimated_bytes} bytes needs parts above S3's 5 GiB or more than 10,000 parts")]
    TooLarge { estimated_bytes: u64 },
}

/// The part plan for an output of about `estimated_bytes` (a bound: segments, audio and
/// `header_bytes`) whose first `header_bytes` are rewritten at the end. Parts grow past
/// [`DEFAULT_PART_BYTES`] in whole MiB when the output would otherwise need more than
/// [`MAX_PARTS`]; the room for growth beyond the estimate is kept by planning for 9,000 parts.
pub fn plan_parts(estimated_bytes: u64, header_bytes: u64) -> Result<PartPlan, PartPlanError> {
    const MIB: u64 = 1024 * 1024;
    let needed = estimated_bytes.div_ceil(MAX_PARTS - 1000);
    let part_bytes = needed.div_ceil(MIB).max(1) * MIB;
    let part_bytes = part_bytes.max(DEFAULT_PART_BYTES);
    let first_part_bytes = part_bytes.max((header_bytes + MIB).div_ceil(MIB) * MIB);
    if part_bytes > MAX_PART_BYTES || first_part_bytes > MAX_PART_BYTES {
        return Err(PartPlanError::TooLarge { estimated_bytes });
    }
    Ok(PartPlan {
        part_bytes,
        first_part_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reservation_bounds_every_sample_and_grows_with_them() {
        let small = moov_reserve(&IndexContents {
            samples_per_track: vec![100, 200],
            other_tracks: 1,
            verbatim_bytes: 50,
        });
        assert_eq!(small % 4096, 0);
        assert!(small >= 300 * 45 + 3 * 4096 + 100);
        let large = moov_reserve(&IndexContents {
            samples_per_track: vec![108_000, 168_750],
            other_tracks: 0,
            verbatim_bytes: 0,
        });
        assert!(large > 276_750 * 45 && large < 16 * 1024 * 1024, "{large}");
    }

    #[test]
    fn parts_stay_within_s3_limits() {
        let small = plan_parts(3 * 1024 * 1024, 100_000).expect("fits");
        assert_eq!(small.part_bytes, DEFAULT_PART_BYTES);
        assert!(small.first_part_bytes >= small.part_bytes);
        // 1 TB: parts grow so that fewer than 10,000 are needed.
        let big = plan_parts(1_000_000_000_000, 50_000_000).expect("fits");
        assert!(big.part_bytes >= MIN_PART_BYTES && big.part_bytes <= MAX_PART_BYTES);
        assert!(1_000_000_000_000_u64.div_ceil(big.part_bytes) < MAX_PARTS);
        assert!(big.first_part_bytes >= 50_000_000);
        // 60 TB cannot be cut into 10,000 parts of at most 5 GiB.
        assert_eq!(
            plan_parts(60_000_000_000_000, 0),
            Err(PartPlanError::TooLarge {
                estimated_bytes: 60_000_000_000_000
            })
        );
    }
}
