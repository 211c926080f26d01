//! Pairing the two videos frame by frame: both decoded in full, the i-th output frame compared
//! with the i-th source frame (frame exactness makes it that frame's encoding), after bringing
//! both to one comparable picture (8-bit 4:2:0 limited range at the output's even size, the
//! source turned as it is shown when the output holds the turned picture).

use super::decode::DecodedFrames;
use super::levels::LevelFit;
use super::metrics::{psnr, squared_error_yuv, ssim_luma};
use crate::media::picture::{self, Orientation};
use crate::media::probe::MediaInfo;
use crate::media::MediaError;
use crate::plan::TimeBase;
use ffmpeg_next as ffmpeg;

/// What pairing the frames measured.
pub(super) struct FrameComparison {
    /// Output luma fitted against source luma over all frames (both normalised to limited
    /// range by their own tags): slope and the difference of means, in 8-bit levels.
    pub levels: Option<(f64, f64)>,
    /// The source's display rotation was found turned into the output's pixels.
    pub rotation_applied: bool,
    pub source_frames: u64,
    pub output_frames: u64,
    /// Output frames whose timestamp is not after their predecessor's.
    pub non_increasing: u64,
    /// Largest difference between a frame's time in the output and its source frame's, each
    /// from its file's first frame, in seconds.
    pub max_timing_error_seconds: f64,
    /// Average PSNR over all frames and planes, in dB.
    pub psnr_db: f64,
    pub min_frame_psnr_db: f64,
    /// Average luma SSIM.
    pub ssim: f64,
}

/// Decodes `source` and `output` in full and compares them frame by frame.
pub(super) fn compare_frames(
    source: &MediaInfo,
    output: &MediaInfo,
) -> Result<FrameComparison, MediaError> {
    let (width, height) = (output.video.width & !1, output.video.height & !1);
    // An output without the source's display rotation must hold the turned picture (treemux turns
    // the pixels for containers that cannot carry a rotation): compare against the source as shown.
    let turn = if output.video.rotation_degrees.abs() < 0.5 {
        Orientation::from_rotation_degrees(source.video.rotation_degrees)
            .unwrap_or(Orientation::Upright)
    } else {
        Orientation::Upright
    };
    let source_size = if turn.swaps_axes() {
        (height, width)
    } else {
        (width, height)
    };
    let mut source_side = ComparedStream::open(source, source_size)?;
    let mut output_side = ComparedStream::open(output, (width, height))?;
    let mut turned = (turn != Orientation::Upright)
        .then(|| ffmpeg::frame::Video::new(ffmpeg::format::Pixel::YUV420P, width, height));
    let mut order = TimestampOrder::default();
    let mut totals = Totals::default();
    loop {
        let source_frame = source_side.next()?;
        let output_frame = output_side.next()?;
        if let Some(frame) = &output_frame {
            order.see(frame);
        }
        let (mut source_frame, mut output_frame) = match (source_frame, output_frame) {
            (None, None) => break,
            // An unpaired frame only counts: the frame-count check reports the difference.
            (Some(_), None) | (None, Some(_)) => continue,
            (Some(source_frame), Some(output_frame)) => (source_frame, output_frame),
        };
        if let (Some(source_seconds), Some(output_seconds)) = (
            source_side.seconds_from_first(&source_frame),
            output_side.seconds_from_first(&output_frame),
        ) {
            totals.max_timing_error = totals
                .max_timing_error
                .max((source_seconds - output_seconds).abs());
        }
        let a = source_side.comparable(&mut source_frame)?;
        let a: &ffmpeg::frame::Video = match turned.as_mut() {
            Some(turned) => {
                picture::rotate_frame(a, turned, turn);
                turned
            }
            None => a,
        };
        let b = output_side.comparable(&mut output_frame)?;
        totals.add(a, b, width, height);
    }
    Ok(totals.finish(
        turn != Orientation::Upright,
        (source_side.frames, output_side.frames),
        order.non_increasing,
    ))
}

/// One side of the comparison (the source or the output): its decoded frames, where its
/// timeline starts, and the conversion of its frames to the compared picture.
struct ComparedStream {
    frames_in: DecodedFrames,
    time_base: TimeBase,
    /// Presentation time of the file's first frame, in seconds: frame times are compared from
    /// each file's first frame; where that frame sits is the "video start" check's business.
    origin_seconds: f64,
    /// Size this side's frames are brought to (for the source, before it is turned).
    size: (u32, u32),
    scaler: Option<ComparableScaler>,
    converted: ffmpeg::frame::Video,
    /// Frames decoded so far.
    frames: u64,
}

impl ComparedStream {
    fn open(info: &MediaInfo, size: (u32, u32)) -> Result<Self, MediaError> {
        Ok(Self {
            frames_in: DecodedFrames::open(info)?,
            time_base: info.video.time_base,
            origin_seconds: info.video.time_base.seconds(info.video.first_pts),
            size,
            scaler: None,
            converted: ffmpeg::frame::Video::empty(),
            frames: 0,
        })
    }

    /// The next frame, counted; `None` (again and again) once the stream has ended.
    fn next(&mut self) -> Result<Option<ffmpeg::frame::Video>, MediaError> {
        let frame = self.frames_in.next()?;
        if frame.is_some() {
            self.frames += 1;
        }
        Ok(frame)
    }

    /// A frame's presentation time from the file's first frame, in seconds.
    fn seconds_from_first(&self, frame: &ffmpeg::frame::Video) -> Option<f64> {
        frame
            .pts()
            .or(frame.timestamp())
            .map(|pts| self.time_base.seconds(pts) - self.origin_seconds)
    }

    /// `frame` as the compared picture at this side's size (see [`to_comparable`]).
    fn comparable<'a>(
        &'a mut self,
        frame: &'a mut ffmpeg::frame::Video,
    ) -> Result<&'a ffmpeg::frame::Video, MediaError> {
        to_comparable(
            frame,
            self.size.0,
            self.size.1,
            &mut self.scaler,
            &mut self.converted,
        )
    }
}

/// Counts output frames whose timestamp is not after the last one seen.
#[derive(Default)]
struct TimestampOrder {
    last_pts: Option<i64>,
    non_increasing: u64,
}

impl TimestampOrder {
    fn see(&mut self, frame: &ffmpeg::frame::Video) {
        let pts = frame.pts().or(frame.timestamp());
        if let (Some(pts), Some(last)) = (pts, self.last_pts) {
            if pts <= last {
                self.non_increasing += 1;
            }
        }
        self.last_pts = pts.or(self.last_pts);
    }
}

/// Running totals over the paired frames.
struct Totals {
    /// Sum of squared errors and number of samples over every plane of every frame.
    squared_error: f64,
    samples: f64,
    min_frame_psnr: f64,
    ssim_total: f64,
    ssim_frames: u64,
    levels: LevelFit,
    max_timing_error: f64,
}

impl Default for Totals {
    fn default() -> Self {
        Self {
            squared_error: 0.0,
            samples: 0.0,
            // No frame yet: any frame's PSNR is lower.
            min_frame_psnr: f64::INFINITY,
            ssim_total: 0.0,
            ssim_frames: 0,
            levels: LevelFit::default(),
            max_timing_error: 0.0,
        }
    }
}

impl Totals {
    /// Adds one pair of comparable frames of `width`×`height`.
    fn add(&mut self, a: &ffmpeg::frame::Video, b: &ffmpeg::frame::Video, width: u32, height: u32) {
        let (frame_error, frame_samples) = squared_error_yuv(a, b, width, height);
        self.squared_error += frame_error;
        self.samples += frame_samples;
        self.min_frame_psnr = self.min_frame_psnr.min(psnr(frame_error, frame_samples));
        self.ssim_total += ssim_luma(a, b, width as usize, height as usize);
        self.levels.add(a, b, width as usize, height as usize);
        self.ssim_frames += 1;
    }

    fn finish(
        self,
        rotation_applied: bool,
        (source_frames, output_frames): (u64, u64),
        non_increasing: u64,
    ) -> FrameComparison {
        FrameComparison {
            levels: self.levels.fit(),
            rotation_applied,
            source_frames,
            output_frames,
            non_increasing,
            max_timing_error_seconds: self.max_timing_error,
            psnr_db: psnr(self.squared_error, self.samples),
            min_frame_psnr_db: if self.min_frame_psnr.is_finite() {
                self.min_frame_psnr
            } else {
                psnr(0.0, 0.0)
            },
            ssim: if self.ssim_frames > 0 {
                self.ssim_total / self.ssim_frames as f64
            } else {
                0.0
            },
        }
    }
}

/// A scaler and the frame format, size and range it was made for.
type ComparableScaler = (
    ffmpeg::software::scaling::Context,
    (ffmpeg::format::Pixel, u32, u32, bool),
);

/// Brings a decoded frame to 8-bit 4:2:0 limited range at `width`×`height`, reading its samples
/// in the range they are tagged with (so a full-range file and a limited one showing the same
/// picture compare equal, and one whose samples do not match its tag does not): a crop when it
/// is the same picture with an odd row or column more, a bicubic scale otherwise.
fn to_comparable<'a>(
    frame: &'a mut ffmpeg::frame::Video,
    width: u32,
    height: u32,
    scaler: &mut Option<ComparableScaler>,
    converted: &'a mut ffmpeg::frame::Video,
) -> Result<&'a ffmpeg::frame::Video, MediaError> {
    let full_range = picture::frame_is_full_range(frame);
    let same_picture = frame.width() & !1 == width && frame.height() & !1 == height;
    if same_picture {
        frame.set_width(width);
        frame.set_height(height);
        if frame.format() == ffmpeg::format::Pixel::YUV420P && !full_range {
            return Ok(frame);
        }
    }
    let key = (frame.format(), frame.width(), frame.height(), full_range);
    if scaler.as_ref().is_none_or(|(_, current)| *current != key) {
        let context = picture::scaler(
            (key.0, key.1, key.2),
            full_range,
            (ffmpeg::format::Pixel::YUV420P, width, height),
            false,
            frame_color_space(frame),
        )
        .map_err(|source| MediaError::Encode {
            encoder: "swscale".into(),
            source,
        })?;
        *scaler = Some((context, key));
    }
    let (context, _) = scaler.as_mut().expect("scaler was just created");
    context
        .run(frame, converted)
        .map_err(|source| MediaError::Encode {
            encoder: "swscale".into(),
            source,
        })?;
    Ok(converted)
}

/// The frame's colour matrix as FFmpeg's raw value (RGB sources are converted with BT.601, as the
/// encoder side does).
fn frame_color_space(frame: &ffmpeg::frame::Video) -> i32 {
    // SAFETY: the frame is a valid decoded frame.
    unsafe { (*frame.as_ptr()).colorspace as i32 }
}
