//! Orientation: the quarter turn a display rotation asks for (ffmpeg's autorotate rule), and
//! lossless rotation of decoded frames by quarter turns, for containers that cannot carry a
//! display matrix.

use super::pixels::{pixel_traits, PixelTraits};
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};

/// A quarter-turn orientation applied to the pixels, clockwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Orientation {
    Upright,
    Clockwise90,
    Clockwise180,
    Clockwise270,
}

impl Orientation {
    /// The turn that shows a picture the way a display matrix with counter-clockwise rotation
    /// `degrees` (as `av_display_rotation_get` reports it) says it is shown, the rule of ffmpeg's
    /// autorotate. `None` when the angle is not a quarter turn.
    pub fn from_rotation_degrees(degrees: f64) -> Option<Self> {
        let clockwise = (-degrees).rem_euclid(360.0);
        let near = |target: f64| (clockwise - target).abs() < 1.0;
        if near(0.0) || near(360.0) {
            Some(Self::Upright)
        } else if near(90.0) {
            Some(Self::Clockwise90)
        } else if near(180.0) {
            Some(Self::Clockwise180)
        } else if near(270.0) {
            Some(Self::Clockwise270)
        } else {
            None
        }
    }

    /// True when the turn swaps width and height.
    pub fn swaps_axes(self) -> bool {
        matches!(self, Self::Clockwise90 | Self::Clockwise270)
    }

    /// Where output sample `(row, column)` of a `width`×`height` input plane comes from, for a
    /// rotated plane of size `(height, width)` (quarter turns) or `(width, height)` (half turn).
    fn source_of(self, row: usize, column: usize, width: usize, height: usize) -> (usize, usize) {
        match self {
            Self::Upright => (row, column),
            Self::Clockwise90 => (height - 1 - column, row),
            Self::Clockwise180 => (height - 1 - row, width - 1 - column),
            Self::Clockwise270 => (column, width - 1 - row),
        }
    }
}

/// Turns `input` by `orientation` into `output`, which must be allocated with the same pixel
/// format and the turned size. Lossless: samples are moved, never resampled.
pub fn rotate_frame(
    input: &ffmpeg::frame::Video,
    output: &mut ffmpeg::frame::Video,
    orientation: Orientation,
) {
    let traits = pixel_traits(input.format()).unwrap_or(PixelTraits::YUV420P8);
    let bytes = if traits.depth > 8 { 2 } else { 1 };
    for plane in 0..input.planes().min(output.planes()) {
        let shift = if plane == 0 || plane == 3 {
            (0, 0)
        } else {
            traits.chroma_shift
        };
        let ceil_shift = |value: u32, by: u8| ((value + (1 << by) - 1) >> by) as usize;
        let width = ceil_shift(input.width(), shift.0);
        let height = ceil_shift(input.height(), shift.1);
        let (in_stride, out_stride) = (input.stride(plane), output.stride(plane));
        let (out_width, out_height) = if orientation.swaps_axes() {
            (height, width)
        } else {
            (width, height)
        };
        let source = input.data(plane);
        let target = output.data_mut(plane);
        rotate_plane(
            source,
            in_stride,
            (width, height),
            target,
            out_stride,
            (out_width, out_height),
            bytes,
            orientation,
        );
    }
}

/// Rotates one plane of `size` = (width, height) samples of `bytes` bytes each.
#[allow(clippy::too_many_arguments)]
fn rotate_plane(
    source: &[u8],
    source_stride: usize,
    size: (usize, usize),
    target: &mut [u8],
    target_stride: usize,
    target_size: (usize, usize),
    bytes: usize,
    orientation: Orientation,
) {
    let (width, height) = size;
    for row in 0..target_size.1 {
        for column in 0..target_size.0 {
            let (from_row, from_column) = orientation.source_of(row, column, width, height);
            let from = from_row * source_stride + from_column * bytes;
            let to = row * target_stride + column * bytes;
            target[to..to + bytes].copy_from_slice(&source[from..from + bytes]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orientations_follow_ffmpeg_autorotate() {
        // A display matrix of -90° (counter-clockwise) is a phone held upright: turn clockwise.
        assert_eq!(
            Orientation::from_rotation_degrees(-90.0),
            Some(Orientation::Clockwise90)
        );
        assert_eq!(
            Orientation::from_rotation_degrees(90.0),
            Some(Orientation::Clockwise270)
        );
        assert_eq!(
            Orientation::from_rotation_degrees(180.0),
            Some(Orientation::Clockwise180)
        );
        assert_eq!(
            Orientation::from_rotation_degrees(-180.0),
            Some(Orientation::Clockwise180)
        );
        assert_eq!(
            Orientation::from_rotation_degrees(0.0),
            Some(Orientation::Upright)
        );
        assert_eq!(Orientation::from_rotation_degrees(45.0), None);
    }

    #[test]
    fn rotating_a_plane_moves_each_sample_where_it_is_shown() {
        // 3 wide, 2 high:  a b c / d e f
        let source = b"abcdef";
        let mut target = [0u8; 6];
        rotate_plane(
            source,
            3,
            (3, 2),
            &mut target,
            2,
            (2, 3),
            1,
            Orientation::Clockwise90,
        );
        assert_eq!(&target, b"daebfc");
        rotate_plane(
            source,
            3,
            (3, 2),
            &mut target,
            2,
            (2, 3),
            1,
            Orientation::Clockwise270,
        );
        assert_eq!(&target, b"cfbead");
        rotate_plane(
            source,
            3,
            (3, 2),
            &mut target,
            3,
            (3, 2),
            1,
            Orientation::Clockwise180,
        );
        assert_eq!(&target, b"fedcba");
        // Two-byte samples move as units.
        let wide = [1u8, 2, 3, 4];
        let mut turned = [0u8; 4];
        rotate_plane(
            &wide,
            4,
            (2, 1),
            &mut turned,
            2,
            (1, 2),
            2,
            Orientation::Clockwise90,
        );
        assert_eq!(turned, [1, 2, 3, 4]);
        rotate_plane(
            &wide,
            4,
            (2, 1),
            &mut turned,
            2,
            (1, 2),
            2,
            Orientation::Clockwise270,
        );
        assert_eq!(turned, [3, 4, 1, 2]);
    }
}
