//! The picture metrics, computed as FFmpeg's filters do so the numbers agree with theirs
//! (tests/verify_metrics.rs): PSNR over all planes weighted by plane size (`psnr`), SSIM of luma
//! over 8×8 windows at a stride of 4 (`ssim`). Both take 8-bit 4:2:0 frames of one size.

use ffmpeg_next as ffmpeg;

/// PSNR in dB for 8-bit samples; identical input is reported as 100 dB.
pub(super) fn psnr(squared_error: f64, samples: f64) -> f64 {
    if samples == 0.0 || squared_error == 0.0 {
        return 100.0;
    }
    let mse = squared_error / samples;
    (10.0 * (255.0f64 * 255.0 / mse).log10()).min(100.0)
}

/// Sum of squared sample differences over the Y, U and V planes of two 8-bit 4:2:0 frames of
/// `width`×`height` (even), and the number of samples summed: `(squared error, samples)`.
pub(super) fn squared_error_yuv(
    a: &ffmpeg::frame::Video,
    b: &ffmpeg::frame::Video,
    width: u32,
    height: u32,
) -> (f64, f64) {
    let mut total = 0u64;
    let mut samples = 0u64;
    for plane in 0..3 {
        let (plane_width, plane_height) = if plane == 0 {
            (width as usize, height as usize)
        } else {
            (width as usize / 2, height as usize / 2)
        };
        let (data_a, data_b) = (a.data(plane), b.data(plane));
        let (stride_a, stride_b) = (a.stride(plane), b.stride(plane));
        for row in 0..plane_height {
            let row_a = &data_a[row * stride_a..row * stride_a + plane_width];
            let row_b = &data_b[row * stride_b..row * stride_b + plane_width];
            total += row_a
                .iter()
                .zip(row_b)
                .map(|(&x, &y)| u64::from(x.abs_diff(y)).pow(2))
                .sum::<u64>();
        }
        samples += (plane_width * plane_height) as u64;
    }
    (total as f64, samples as f64)
}

/// Mean SSIM of the luma planes over 8×8 windows at a stride of 4, computed as FFmpeg's `ssim`
/// filter (and x264) do, so the two agree (tests/verify_metrics.rs): its constants are scaled for
/// sums over the 64 samples of a window, which weights the luminance term's C1 64 times less than
/// the textbook formula on means; on noisy pictures the textbook value differs by 0.003.
pub(super) fn ssim_luma(
    a: &ffmpeg::frame::Video,
    b: &ffmpeg::frame::Video,
    width: usize,
    height: usize,
) -> f64 {
    let (blocks_x, blocks_y) = (width / 4, height / 4);
    if blocks_x < 2 || blocks_y < 2 {
        return 1.0;
    }
    let (data_a, data_b, stride_a, stride_b) = (a.data(0), b.data(0), a.stride(0), b.stride(0));
    // Sums over each 4×4 block: Σa, Σb, Σa², Σb², Σab.
    let mut blocks = vec![[0u64; 5]; blocks_x * blocks_y];
    for by in 0..blocks_y {
        for bx in 0..blocks_x {
            let sums = &mut blocks[by * blocks_x + bx];
            for row in by * 4..by * 4 + 4 {
                for column in bx * 4..bx * 4 + 4 {
                    let x = u64::from(data_a[row * stride_a + column]);
                    let y = u64::from(data_b[row * stride_b + column]);
                    sums[0] += x;
                    sums[1] += y;
                    sums[2] += x * x;
                    sums[3] += y * y;
                    sums[4] += x * y;
                }
            }
        }
    }
    // FFmpeg's `ssim_c1` and `ssim_c2` (libavfilter/vf_ssim.c), in the units of 64-sample sums.
    let c1 = (0.01f64 * 0.01 * 255.0 * 255.0 * 64.0 + 0.5) as i64;
    let c2 = (0.03f64 * 0.03 * 255.0 * 255.0 * 64.0 * 63.0 + 0.5) as i64;
    let mut total = 0.0;
    for by in 0..blocks_y - 1 {
        for bx in 0..blocks_x - 1 {
            let mut sums = [0u64; 5];
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let block = &blocks[(by + dy) * blocks_x + bx + dx];
                for (total, value) in sums.iter_mut().zip(block) {
                    *total += value;
                }
            }
            // Sums over one window of 64 samples: at most 64 × 255² each, so i64 holds every
            // product below exactly.
            let [s1, s2, ssa, ssb, s12] = sums.map(|sum| sum as i64);
            let variances = (ssa + ssb) * 64 - s1 * s1 - s2 * s2;
            let covariance = s12 * 64 - s1 * s2;
            total += ((2 * s1 * s2 + c1) as f64 * (2 * covariance + c2) as f64)
                / ((s1 * s1 + s2 * s2 + c1) as f64 * (variances + c2) as f64);
        }
    }
    total / ((blocks_x - 1) * (blocks_y - 1)) as f64
}
