//! Decoding timestamps derived from presentation timestamps: a pure function.
//!
//! Intermediate files (NUT) store only presentation timestamps; the demuxer leaves the dts of the
//! first packets of a B-frame stream unset and guesses the rest. A muxer needs dts that strictly
//! increase and never exceed the pts. Given the packets' pts in decode order, this assigns such a
//! sequence: with `D` the stream's reorder depth (how many packets, at most, are decoded before a
//! packet that is shown earlier), packet `i` gets the `(i − D)`-th smallest pts, and the first `D`
//! packets get the ticks just before the smallest pts. That is exactly what an encoder with a
//! `D`-frame delay produces, and it needs no knowledge of the codec.

/// Assigns a decoding timestamp to each packet, given their presentation timestamps in decode
/// order and the stream's end (one past the last frame), all in one time base.
///
/// With reorder depth `D`, packet `i ≥ D` gets the `(i − D)`-th smallest pts. The first `D`
/// packets are spaced before the smallest pts by the durations of the last `D` frames, as a
/// constant-rate encoder does implicitly, so that the dts gaps (which MP4 stores as sample
/// durations) add up to the video's duration for VFR sources too.
///
/// Preconditions: the pts are distinct and `end` is greater than every pts. Guarantees: the dts
/// strictly increase and `dts[i] ≤ pts[i]`.
pub fn decode_timestamps(pts_in_decode_order: &[i64], end: i64) -> Vec<i64> {
    let count = pts_in_decode_order.len();
    if count == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by_key(|&i| pts_in_decode_order[i]);
    let sorted: Vec<i64> = order.iter().map(|&i| pts_in_decode_order[i]).collect();
    let mut rank = vec![0usize; count];
    for (position, &packet) in order.iter().enumerate() {
        rank[packet] = position;
    }
    let depth = (0..count)
        .map(|i| i.saturating_sub(rank[i]))
        .max()
        .unwrap_or(0);
    // The k-th smallest pts, with the end standing for k = count.
    let presentation = |k: usize| sorted.get(k).copied().unwrap_or(end);
    let gap = |k: usize| (presentation(k + 1) - presentation(k)).max(1);
    let mut next = sorted[0] - (count - depth..count).map(gap).sum::<i64>();
    (0..count)
        .map(|i| {
            if i >= depth {
                next = sorted[i - depth];
            }
            let dts = next;
            if i < depth {
                next += gap(count - depth + i);
            }
            dts
        })
        .collect()
}

/// Each packet's duration: the gap to the next pts in presentation order; the last packet lasts
/// until `end` (exclusive end of the stream, same time base). Returned in decode order.
pub fn frame_durations(pts_in_decode_order: &[i64], end: i64) -> Vec<i64> {
    let mut sorted: Vec<i64> = pts_in_decode_order.to_vec();
    sorted.sort_unstable();
    pts_in_decode_order
        .iter()
        .map(|&pts| {
            let position = sorted.partition_point(|&p| p <= pts);
            let next = sorted.get(position).copied().unwrap_or(end);
            (next - pts).max(1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn b_pyramid_gets_the_encoder_dts() {
        // Decode order of I0 P4 B2 b1 b3 P8 …, frame duration 1.
        assert_eq!(
            decode_timestamps(&[0, 4, 2, 1, 3, 8, 6, 5, 7], 9),
            vec![-2, -1, 0, 1, 2, 3, 4, 5, 6]
        );
        assert_eq!(
            decode_timestamps(&[10, 20, 30], 40),
            vec![10, 20, 30],
            "no reordering: dts = pts"
        );
        assert!(decode_timestamps(&[], 0).is_empty());
    }

    #[test]
    fn variable_frame_rate_spaces_the_first_dts_by_the_last_frames() {
        // I0 P30 B10, then the end at 100: the long last frame (30..100) spaces the first dts.
        assert_eq!(decode_timestamps(&[0, 30, 10], 100), vec![-70, 0, 10]);
    }

    #[test]
    fn durations_follow_presentation_order() {
        assert_eq!(frame_durations(&[0, 4, 2, 1, 3], 5), vec![1, 1, 1, 1, 1]);
        assert_eq!(frame_durations(&[0, 10, 25], 40), vec![10, 15, 15]);
    }

    proptest! {
        #[test]
        fn dts_increase_and_never_pass_pts(
            pts in prop::collection::hash_set(-1000i64..1000, 0..200).prop_map(|set| set.into_iter().collect::<Vec<_>>()).prop_shuffle(),
            tail in 1i64..500,
        ) {
            let end = pts.iter().max().map_or(0, |max| max + tail);
            let dts = decode_timestamps(&pts, end);
            prop_assert_eq!(dts.len(), pts.len());
            prop_assert!(dts.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(dts.iter().zip(&pts).all(|(d, p)| d <= p));
            let durations = frame_durations(&pts, end);
            prop_assert!(durations.iter().all(|&d| d > 0));
            prop_assert_eq!(durations.iter().sum::<i64>(), pts.iter().min().map_or(0, |min| end - min));
        }
    }
}
