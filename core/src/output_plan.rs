//! **Pure.** Sizing the one write of the output: the room reserved for an MP4's index at the
//! front, and the parts of a multipart upload.
//!
//! The output is muxed once, front to back. For MP4/MOV the index (`moov`) must come first so a
//! player starts at once over HTTP range requests, but it is only known at the end; FFmpeg's mov
//! muxer reserves `moov_size` bytes after `ftyp`, writes the media after them and, at the
//! trailer, the index into the reservation (padded with a `free` box). A reservation that is
//! too small makes the trailer fail (never a silently non-faststart file), so the reservation is
//! a bound: every sample's worst-case table entries, never an average.

/// S3's multipart limits: parts of 5 MiB–5 GiB (the last may be smaller), at most 10,000, and an
/// object of at most 5 TiB.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
pub const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;
pub const MAX_PARTS: u64 = 10_000;
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;
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
    #[error("the output would be about {} GiB ({estimated_bytes} bytes with its index), more than one S3 multipart upload holds (at most 10,000 parts of 5 MiB to 5 GiB, 5 TiB in all)", estimated_bytes.div_ceil(1 << 30))]
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
    if part_bytes > MAX_PART_BYTES
        || first_part_bytes > MAX_PART_BYTES
        || estimated_bytes > MAX_OBJECT_BYTES
    {
        return Err(PartPlanError::TooLarge { estimated_bytes });
    }
    Ok(PartPlan {
        part_bytes,
        first_part_bytes,
    })
}

/// What an output's size is estimated from before anything is encoded: the probe and the job's
/// settings. Sizes in bytes, durations in seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputEstimateInputs {
    /// The video's duration.
    pub duration_seconds: f64,
    /// The source video's compressed bytes (all its packets).
    pub source_video_bytes: u64,
    /// Pixels per frame of the source as coded, and of the output.
    pub source_pixels: u64,
    pub output_pixels: u64,
    /// The job's average video bitrate in bits per second, when it asks for one (else constant
    /// quality).
    pub video_bitrate: Option<u64>,
    /// The source's bytes that are not video (copied audio, subtitles, attachments, container).
    pub other_source_bytes: u64,
    /// Audio tracks re-encoded, each at most [`REENCODED_AUDIO_BITS_PER_SECOND`].
    pub reencoded_audio_tracks: u64,
    /// What the index will describe (its samples: video frames and audio packets).
    pub index: IndexContents,
}

/// The highest bitrate treemux gives a re-encoded audio track (bits per second).
pub const REENCODED_AUDIO_BITS_PER_SECOND: u64 = 512_000;

/// How much larger than the source's (per pixel) a constant-quality encode is assumed to grow
/// at most: re-encoding a heavily compressed source at a finer quality spends more bits on the
/// same content. With a target bitrate, how far above it the encoder is assumed to overshoot.
const VIDEO_GROWTH: f64 = 4.0;
const BITRATE_OVERSHOOT: f64 = 1.5;

/// An output's estimated size: its media and the index written in front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputEstimate {
    pub media_bytes: u64,
    pub header_bytes: u64,
}

/// Estimates the output from `inputs`, generously (an estimate for refusing what cannot fit,
/// not for sizing parts: the root plans its parts again from the real sizes). Video: the target
/// bitrate × the duration with room for overshoot, or the source's video bytes per pixel ×
/// the output's pixels with room for growth; audio and the rest: as in the source, plus every
/// re-encoded track at its highest bitrate; the index: [`moov_reserve`].
pub fn estimate_output(inputs: &OutputEstimateInputs) -> OutputEstimate {
    let seconds = inputs.duration_seconds.max(0.0);
    let video = match inputs.video_bitrate {
        Some(bits_per_second) => bits_per_second as f64 / 8.0 * seconds * BITRATE_OVERSHOOT,
        None => {
            let scale = inputs.output_pixels as f64 / inputs.source_pixels.max(1) as f64;
            inputs.source_video_bytes as f64 * scale * VIDEO_GROWTH
        }
    };
    let audio =
        (inputs.reencoded_audio_tracks * REENCODED_AUDIO_BITS_PER_SECOND) as f64 / 8.0 * seconds;
    // Saturating float-to-int casts: an absurd estimate stays absurd, never wraps.
    OutputEstimate {
        media_bytes: (video + audio) as u64 + inputs.other_source_bytes,
        header_bytes: moov_reserve(&inputs.index),
    }
}

/// Refuses up front an output that no multipart upload can hold: the part plan for the
/// [`estimate_output`] of `inputs`, or why there is none.
pub fn check_fits_multipart(inputs: &OutputEstimateInputs) -> Result<PartPlan, PartPlanError> {
    let estimate = estimate_output(inputs);
    plan_parts(
        estimate.media_bytes.saturating_add(estimate.header_bytes),
        estimate.header_bytes,
    )
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
        // Above 5 TiB no object can hold it; 60 TB cannot be cut into 10,000 parts of 5 GiB.
        assert!(plan_parts(MAX_OBJECT_BYTES + 1, 0).is_err());
        assert!(plan_parts(MAX_OBJECT_BYTES, 0).is_ok());
        assert_eq!(
            plan_parts(60_000_000_000_000, 0),
            Err(PartPlanError::TooLarge {
                estimated_bytes: 60_000_000_000_000
            })
        );
    }

    fn hour_of_1080p() -> OutputEstimateInputs {
        OutputEstimateInputs {
            duration_seconds: 3600.0,
            source_video_bytes: 2_700_000_000,
            source_pixels: 1920 * 1080,
            output_pixels: 1920 * 1080,
            video_bitrate: None,
            other_source_bytes: 60_000_000,
            reencoded_audio_tracks: 0,
            index: IndexContents {
                samples_per_track: vec![108_000, 168_750],
                other_tracks: 0,
                verbatim_bytes: 100,
            },
        }
    }

    #[test]
    fn the_estimate_scales_the_source_by_pixels_or_follows_the_bitrate() {
        let same = estimate_output(&hour_of_1080p());
        assert_eq!(same.media_bytes, 4 * 2_700_000_000 + 60_000_000);
        assert_eq!(same.header_bytes, moov_reserve(&hour_of_1080p().index));
        let halved = estimate_output(&OutputEstimateInputs {
            output_pixels: 960 * 540,
            ..hour_of_1080p()
        });
        assert_eq!(halved.media_bytes, 2_700_000_000 + 60_000_000);
        let by_bitrate = estimate_output(&OutputEstimateInputs {
            video_bitrate: Some(8_000_000),
            reencoded_audio_tracks: 2,
            ..hour_of_1080p()
        });
        // 8 Mbit/s × 3600 s × 1.5, two tracks at 512 kbit/s, the rest as in the source.
        assert_eq!(
            by_bitrate.media_bytes,
            5_400_000_000 + 2 * 230_400_000 + 60_000_000
        );
    }

    #[test]
    fn an_output_that_cannot_fit_is_refused_and_a_small_one_is_one_part() {
        assert!(check_fits_multipart(&hour_of_1080p()).is_ok());
        // A 10-second clip of a few MiB: one part, held back whole until the trailer.
        let clip = OutputEstimateInputs {
            duration_seconds: 10.0,
            source_video_bytes: 700_000,
            source_pixels: 320 * 180,
            output_pixels: 320 * 180,
            other_source_bytes: 90_000,
            index: IndexContents {
                samples_per_track: vec![240, 470],
                other_tracks: 0,
                verbatim_bytes: 50,
            },
            ..OutputEstimateInputs::default()
        };
        let plan = check_fits_multipart(&clip).expect("fits");
        let estimate = estimate_output(&clip);
        assert!(estimate.media_bytes + estimate.header_bytes < MIN_PART_BYTES);
        assert!(plan.first_part_bytes >= estimate.media_bytes + estimate.header_bytes);
        // An hour at 20 Gbit/s: 13.5 TB, beyond S3's 5 TiB object.
        let huge_bitrate = OutputEstimateInputs {
            video_bitrate: Some(20_000_000_000),
            ..hour_of_1080p()
        };
        let refused = check_fits_multipart(&huge_bitrate).expect_err("too large");
        assert!(
            matches!(refused, PartPlanError::TooLarge { estimated_bytes } if estimated_bytes > MAX_OBJECT_BYTES)
        );
        assert!(refused.to_string().contains("10,000 parts"), "{refused}");
        // Upscaling 8× in each direction a long, large source: 64× its pixels.
        let upscaled = OutputEstimateInputs {
            source_video_bytes: 40_000_000_000,
            output_pixels: 64 * 1920 * 1080,
            ..hour_of_1080p()
        };
        assert!(check_fits_multipart(&upscaled).is_err());
        // An index beyond 5 GiB cannot be held in part 1.
        let endless_index = OutputEstimateInputs {
            index: IndexContents {
                samples_per_track: vec![130_000_000],
                other_tracks: 0,
                verbatim_bytes: 0,
            },
            ..hour_of_1080p()
        };
        assert!(check_fits_multipart(&endless_index).is_err());
    }
}
