//! Thumbnail pixels: a segment worker's tiles and poster, taken from the frames it decodes anyway
//! ([`SegmentThumbnails`], fed by the convert pass), turned upright and scaled to the displayed
//! aspect (rotation applied, pixel aspect made square, odd edges cropped as the output crops
//! them); and the root's sheets composed from every segment's tiles ([`write_sheet`]). Pictures
//! are 4:2:0, full range, BT.601, as JPEG expects; JPEG by FFmpeg's `mjpeg` encoder.
//!
//! Tiles are kept in scratch as raw planes (Y, then U, then V, rows packed), one file per
//! segment holding its tiles in order, so the root composes sheets without a lossy round trip.

use super::picture::{self, Orientation, PixelTraits};
use super::probe::VideoInfo;
use super::MediaError;
use crate::atomic_file::write_atomically;
use crate::thumbnails::TilePlace;
use ffmpeg_next as ffmpeg;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

const PIXEL: ffmpeg::format::Pixel = ffmpeg::format::Pixel::YUV420P;
const BT601: i32 = ffmpeg::ffi::AVColorSpace::AVCOL_SPC_SMPTE170M as i32;
/// The mjpeg encoder's quantiser scale (as `ffmpeg -q:v`): 2 best … 31 worst.
const JPEG_QSCALE: i32 = 3;

/// What one segment takes for the job's thumbnails (from the job's
/// [`ThumbnailPlan`](crate::thumbnails::ThumbnailPlan)).
#[derive(Clone, Debug)]
pub struct SegmentThumbnailSpec {
    /// (tile number, pts) of the segment's tiles, in order.
    pub tiles: Vec<(usize, i64)>,
    pub tile_size: (u32, u32),
    /// Where the tiles go (raw planes, [`tile_bytes`] each, in order).
    pub tiles_path: PathBuf,
    /// The poster's pts, when this segment holds it, its size and where its JPEG goes.
    pub poster: Option<i64>,
    pub poster_size: (u32, u32),
    pub poster_path: PathBuf,
    /// Crop odd edges to even before scaling (the output does when it keeps the source size).
    pub crop_to_even: bool,
}

/// Bytes of one raw tile of `size` (4:2:0 planes, packed). Precondition: even sizes.
pub fn tile_bytes(size: (u32, u32)) -> usize {
    let (w, h) = (size.0 as usize, size.1 as usize);
    w * h + 2 * (w / 2) * (h / 2)
}

/// A decoded frame as displayed, at one size: upright, 4:2:0 full range BT.601.
struct DisplayPicture {
    orientation: Orientation,
    /// Upright size, pixels (even).
    size: (u32, u32),
    crop_to_even: bool,
    source_full_range: bool,
    source_rgb: bool,
    source_space: i32,
    scaler: Option<(
        ffmpeg::software::scaling::Context,
        (ffmpeg::format::Pixel, u32, u32, bool),
    )>,
    scaled: ffmpeg::frame::Video,
    turned: ffmpeg::frame::Video,
}

impl DisplayPicture {
    fn new(video: &VideoInfo, size: (u32, u32), crop_to_even: bool) -> Self {
        let orientation = Orientation::from_rotation_degrees(video.rotation_degrees)
            .unwrap_or(Orientation::Upright);
        let traits = picture::pixel_by_name(&video.pixel_format)
            .and_then(picture::pixel_traits)
            .unwrap_or(PixelTraits::YUV420P8);
        Self {
            orientation,
            size,
            crop_to_even,
            source_full_range: traits.jpeg_range || traits.rgb || video.color.full_range(),
            source_rgb: traits.rgb,
            source_space: video.color.space,
            scaler: None,
            scaled: ffmpeg::frame::Video::empty(),
            turned: ffmpeg::frame::Video::new(PIXEL, size.0, size.1),
        }
    }

    /// `frame` as displayed (the frame itself is left as it was).
    fn convert(
        &mut self,
        frame: &mut ffmpeg::frame::Video,
    ) -> Result<&ffmpeg::frame::Video, ffmpeg::Error> {
        let (width, height) = (frame.width(), frame.height());
        if self.crop_to_even {
            frame.set_width((width & !1).max(2));
            frame.set_height((height & !1).max(2));
        }
        let result = self.scale(frame);
        frame.set_width(width);
        frame.set_height(height);
        result?;
        if self.orientation == Orientation::Upright {
            return Ok(&self.scaled);
        }
        picture::rotate_frame(&self.scaled, &mut self.turned, self.orientation);
        Ok(&self.turned)
    }

    fn scale(&mut self, frame: &ffmpeg::frame::Video) -> Result<(), ffmpeg::Error> {
        let (w, h) = if self.orientation.swaps_axes() {
            (self.size.1, self.size.0)
        } else {
            self.size
        };
        let full = picture::frame_is_full_range(frame) || self.source_full_range;
        let key = (frame.format(), frame.width(), frame.height(), full);
        // swscale's unscaled YUV-to-YUV paths copy samples without converting their range, so
        // limited-range YUV stays limited here and is expanded below (RGB it converts itself).
        let expand = !full && !self.source_rgb;
        if self
            .scaler
            .as_ref()
            .is_none_or(|(_, current)| *current != key)
        {
            let context = picture::scaler_between(
                (key.0, key.1, key.2),
                (full, self.source_space),
                (PIXEL, w, h),
                (!expand, BT601),
            )?;
            self.scaler = Some((context, key));
        }
        let (scaler, _) = self.scaler.as_mut().expect("scaler was just created");
        scaler.run(frame, &mut self.scaled)?;
        if expand {
            expand_range(&mut self.scaled);
        }
        Ok(())
    }
}

/// Limited-range 4:2:0 samples (luma 16–235, chroma 16–240) stretched to full range in place.
fn expand_range(frame: &mut ffmpeg::frame::Video) {
    let luma: [u8; 256] = std::array::from_fn(|v| {
        ((v as f64 - 16.0) * 255.0 / 219.0)
            .round()
            .clamp(0.0, 255.0) as u8
    });
    let chroma: [u8; 256] = std::array::from_fn(|v| {
        ((v as f64 - 128.0) * 255.0 / 224.0 + 128.0)
            .round()
            .clamp(0.0, 255.0) as u8
    });
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    for (plane, (pw, ph), table) in [
        (0, (w, h), &luma),
        (1, (w.div_ceil(2), h.div_ceil(2)), &chroma),
        (2, (w.div_ceil(2), h.div_ceil(2)), &chroma),
    ] {
        let stride = frame.stride(plane);
        let data = frame.data_mut(plane);
        for row in 0..ph {
            for sample in &mut data[row * stride..row * stride + pw] {
                *sample = table[usize::from(*sample)];
            }
        }
    }
}

/// A segment's thumbnails as its frames are decoded: offered every frame the segment owns, it
/// takes the planned ones; [`Self::commit`] writes them (before the segment is committed).
pub(crate) struct SegmentThumbnails<'a> {
    spec: &'a SegmentThumbnailSpec,
    pending: VecDeque<(usize, i64)>,
    tiles: Vec<u8>,
    poster_pending: Option<i64>,
    poster: Option<Vec<u8>>,
    tile_picture: DisplayPicture,
    poster_picture: DisplayPicture,
    /// A reference to the last frame offered while something is pending: a planned frame the
    /// decoder never showed at its pts (timestamps moved by the gate) is taken from it.
    last: Option<ffmpeg::frame::Video>,
}

impl<'a> SegmentThumbnails<'a> {
    pub fn new(spec: &'a SegmentThumbnailSpec, video: &VideoInfo) -> Self {
        Self {
            spec,
            pending: spec.tiles.iter().copied().collect(),
            tiles: Vec::with_capacity(spec.tiles.len() * tile_bytes(spec.tile_size)),
            poster_pending: spec.poster,
            poster: None,
            tile_picture: DisplayPicture::new(video, spec.tile_size, spec.crop_to_even),
            poster_picture: DisplayPicture::new(video, spec.poster_size, spec.crop_to_even),
            last: None,
        }
    }

    /// Takes `frame` (at `pts`, the source's time base; offered in increasing pts) for every
    /// tile, and the poster, planned at or before `pts` and not yet taken.
    pub fn offer(&mut self, frame: &mut ffmpeg::frame::Video, pts: i64) -> Result<(), MediaError> {
        let failed = |source| MediaError::Encode {
            encoder: "swscale (thumbnails)".into(),
            source,
        };
        if self.pending.front().is_some_and(|&(_, at)| at <= pts) {
            let picture = self.tile_picture.convert(frame).map_err(failed)?;
            while self.pending.front().is_some_and(|&(_, at)| at <= pts) {
                self.pending.pop_front();
                append_planes(picture, &mut self.tiles);
            }
        }
        if self.poster_pending.is_some_and(|at| at <= pts) {
            self.poster_pending = None;
            let picture = self.poster_picture.convert(frame).map_err(failed)?;
            self.poster = Some(encode_jpeg(picture)?);
        }
        if !self.pending.is_empty() || self.poster_pending.is_some() {
            let last = self.last.get_or_insert_with(ffmpeg::frame::Video::empty);
            // SAFETY: both frames are valid; `av_frame_ref` shares the decoded buffers (reference
            // counted) after `av_frame_unref` released the previous ones.
            let status = unsafe {
                ffmpeg::ffi::av_frame_unref(last.as_mut_ptr());
                ffmpeg::ffi::av_frame_ref(last.as_mut_ptr(), frame.as_ptr())
            };
            if status < 0 {
                self.last = None;
            }
        }
        Ok(())
    }

    /// Whatever is still pending at the segment's end, taken from its last frame (its planned
    /// frames arrived under other timestamps); false when there is no frame to take it from.
    fn take_rest_from_last(&mut self) -> Result<bool, MediaError> {
        if self.pending.is_empty() && self.poster_pending.is_none() {
            return Ok(true);
        }
        let Some(mut last) = self.last.take() else {
            return Ok(false);
        };
        tracing::debug!(
            tiles = self.pending.len(),
            poster = self.poster_pending.is_some(),
            "thumbnail frames not shown at their planned pts: taken from the segment's last frame"
        );
        let last_pts = i64::MAX;
        self.offer(&mut last, last_pts)?;
        Ok(true)
    }

    /// Writes the tiles and the poster (each complete or not at all). Fails, naming `source`,
    /// when a planned frame never came (the segment's frames differ from the plan's).
    pub fn commit(mut self, source: &Path) -> Result<(), MediaError> {
        if !self.take_rest_from_last()? {
            return Err(MediaError::Unsupported {
                path: source.to_owned(),
                reason: format!(
                    "{} thumbnail frames of the plan were not decoded",
                    self.pending.len() + usize::from(self.poster_pending.is_some())
                ),
            });
        }
        if !self.spec.tiles.is_empty() {
            write_atomically(&self.spec.tiles_path, &self.tiles)?;
        }
        if let Some(poster) = &self.poster {
            write_atomically(&self.spec.poster_path, poster)?;
        }
        Ok(())
    }
}

/// Appends `frame`'s planes (4:2:0) packed row by row.
fn append_planes(frame: &ffmpeg::frame::Video, out: &mut Vec<u8>) {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    for (plane, (pw, ph)) in [(w, h), (w / 2, h / 2), (w / 2, h / 2)]
        .into_iter()
        .enumerate()
    {
        let (data, stride) = (frame.data(plane), frame.stride(plane));
        for row in 0..ph {
            out.extend_from_slice(&data[row * stride..row * stride + pw]);
        }
    }
}

/// Reads `count` raw tiles of `size` from `path` (as [`SegmentThumbnails::commit`] wrote them).
pub fn read_tiles(path: &Path, count: usize, size: (u32, u32)) -> Result<Vec<Vec<u8>>, MediaError> {
    let bytes = std::fs::read(path).map_err(MediaError::io(path))?;
    let each = tile_bytes(size);
    if bytes.len() != count * each {
        return Err(MediaError::Unsupported {
            path: path.to_owned(),
            reason: format!(
                "holds {} bytes where {count} tiles of {}x{} need {}",
                bytes.len(),
                size.0,
                size.1,
                count * each
            ),
        });
    }
    Ok(bytes.chunks(each).map(<[u8]>::to_vec).collect())
}

/// Writes a sheet of `size` (pixels, even) to `path` as JPEG: black, with each raw tile at its
/// place. Precondition: every place lies inside the sheet; tiles are [`tile_bytes`] long.
pub fn write_sheet(
    path: &Path,
    size: (u32, u32),
    tiles: &[(TilePlace, &[u8])],
) -> Result<(), MediaError> {
    let mut sheet = ffmpeg::frame::Video::new(PIXEL, size.0, size.1);
    // Full-range black: Y 0, chroma neutral.
    for (plane, value) in [(0, 0u8), (1, 128), (2, 128)] {
        sheet.data_mut(plane).fill(value);
    }
    for (place, raw) in tiles {
        let (w, h) = (place.w as usize, place.h as usize);
        let mut offset = 0;
        for (plane, shift) in [(0, 0), (1, 1), (2, 1)] {
            let (pw, ph) = (w >> shift, h >> shift);
            let (x, y) = ((place.x as usize) >> shift, (place.y as usize) >> shift);
            let stride = sheet.stride(plane);
            let data = sheet.data_mut(plane);
            for row in 0..ph {
                let to = (y + row) * stride + x;
                data[to..to + pw].copy_from_slice(&raw[offset..offset + pw]);
                offset += pw;
            }
        }
    }
    let jpeg = encode_jpeg(&sheet)?;
    Ok(write_atomically(path, &jpeg)?)
}

/// One picture (4:2:0 full range) as a baseline JPEG, by FFmpeg's `mjpeg` encoder.
pub fn encode_jpeg(picture: &ffmpeg::frame::Video) -> Result<Vec<u8>, MediaError> {
    super::util::init();
    let failed = |source| MediaError::Encode {
        encoder: "mjpeg".into(),
        source,
    };
    let codec = ffmpeg::encoder::find(ffmpeg::codec::Id::MJPEG).ok_or_else(|| {
        MediaError::EncoderMissing {
            encoder: "mjpeg".into(),
        }
    })?;
    let mut encoder = ffmpeg::codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(failed)?;
    encoder.set_width(picture.width());
    encoder.set_height(picture.height());
    encoder.set_format(PIXEL);
    encoder.set_time_base(ffmpeg::Rational::new(1, 25));
    encoder.set_color_range(ffmpeg::color::Range::JPEG);
    encoder.set_colorspace(ffmpeg::color::Space::BT470BG);
    encoder.set_flags(ffmpeg::codec::Flags::QSCALE);
    let lambda = JPEG_QSCALE * ffmpeg::ffi::FF_QP2LAMBDA;
    encoder.set_global_quality(lambda);
    let mut encoder = encoder
        .open_as(codec)
        .map_err(|source| MediaError::EncoderOpen {
            encoder: "mjpeg".into(),
            settings: format!(
                "{}x{} yuv420p full range",
                picture.width(),
                picture.height()
            ),
            source,
        })?;
    let mut frame = picture.clone();
    frame.set_pts(Some(0));
    frame.set_color_range(ffmpeg::color::Range::JPEG);
    // SAFETY: the frame is valid and owned; `quality` is a plain field the encoder reads as the
    // picture's lambda under `QSCALE` (what `ffmpeg -q:v` sets).
    unsafe { (*frame.as_mut_ptr()).quality = lambda };
    encoder.send_frame(&frame).map_err(failed)?;
    encoder.send_eof().map_err(failed)?;
    let mut packet = ffmpeg::Packet::empty();
    let mut bytes = Vec::new();
    while encoder.receive_packet(&mut packet).is_ok() {
        bytes.extend_from_slice(packet.data().unwrap_or_default());
    }
    if bytes.is_empty() {
        return Err(failed(ffmpeg::Error::InvalidData));
    }
    Ok(bytes)
}
