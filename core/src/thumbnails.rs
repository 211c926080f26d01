//! **Pure.** Thumbnails of a job: a poster frame and, on request, one tile every N seconds
//! composed into sprite sheets with a WebVTT index. This module decides which frame each tile
//! and the poster show, which segment's worker takes them, how tiles sit on sheets, the files'
//! names and the VTT text; the pixels are `media::thumbnail`'s and the engine's.
//!
//! A thumbnail at time `t` (seconds from the video's first frame) shows the first frame at or
//! after `t` (as `ffmpeg -ss t -i SRC -frames:v 1` does), or the last frame when none is. The
//! frames are chosen once, from the probe's frame list, when the job is prepared; a segment's
//! worker takes exactly the chosen frames its segment holds, so retries and resumed runs take
//! the same frames and every tile belongs to exactly one segment.

use crate::plan::{FrameInfo, Segment, TimeBase};
use serde::{Deserialize, Serialize};

/// Tiles per sheet row, and rows per sheet at most.
pub const SHEET_COLUMNS: u32 = 10;
pub const SHEET_ROWS: u32 = 10;
/// Width of a tile, pixels (its height follows the displayed aspect, rounded to even).
pub const TILE_WIDTH: u32 = 160;
/// Poster time by default: this share into the video (clips under
/// [`SHORT_CLIP_SECONDS`] use their first frame).
pub const POSTER_SHARE: f64 = 0.1;
pub const SHORT_CLIP_SECONDS: f64 = 2.0;

/// What the user asked for (milliseconds, so that a job's settings compare and hash exactly).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ThumbnailRequest {
    /// A tile every this many milliseconds (above 0), as well as the poster; `None`: the poster
    /// only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// The poster's time, milliseconds from the first frame; `None`: [`POSTER_SHARE`] into the
    /// video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster_at_ms: Option<u64>,
}

impl ThumbnailRequest {
    /// From seconds as the user gives them: `None` when `interval` is not a positive number of
    /// seconds or `poster_at` not one at or after 0 (both rounded to milliseconds, and an
    /// interval must round to at least one).
    pub fn from_seconds(interval: Option<f64>, poster_at: Option<f64>) -> Option<Self> {
        let millis = |seconds: f64| {
            (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).round() as u64)
        };
        let interval_ms = match interval {
            Some(seconds) => Some(millis(seconds).filter(|&ms| ms > 0)?),
            None => None,
        };
        let poster_at_ms = match poster_at {
            Some(seconds) => Some(millis(seconds)?),
            None => None,
        };
        Some(Self {
            interval_ms,
            poster_at_ms,
        })
    }
}

/// Why a request cannot be planned (the caller names the input or the option).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ThumbnailError {
    #[error("thumbnail interval must be a positive number of seconds, not {0} ms")]
    Interval(u64),
    #[error("poster time {at} s is outside the video (0 to {duration:.3} s)")]
    PosterAt { at: f64, duration: f64 },
    #[error("the video has no frames to take a thumbnail from")]
    NoFrames,
}

/// The frames a job's thumbnails show and their sizes: plain data, carried by the job to every
/// segment worker (which has no frame list of its own).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThumbnailPlan {
    /// Seconds between tiles; `None`: no tiles, the poster only.
    pub interval_seconds: Option<f64>,
    /// The video's duration, seconds (the last cue ends there).
    pub duration_seconds: f64,
    /// Tile `k` (time `k × interval`) shows the frame with this pts (stream time base).
    pub tile_pts: Vec<i64>,
    /// The poster's frame (pts, stream time base) and its time, seconds.
    pub poster_pts: i64,
    pub poster_seconds: f64,
    /// Tile size, pixels, displayed (upright, square pixels), both even.
    pub tile_size: (u32, u32),
    /// Poster size, pixels, displayed (upright, square pixels), both even.
    pub poster_size: (u32, u32),
}

/// Chooses the frames: `frames` sorted by pts (the probe's list), `first_pts` the video's first
/// pts and `duration_seconds` its length; `displayed` the output's displayed size (upright,
/// square pixels; the tile and poster sizes follow it).
pub fn plan_thumbnails(
    request: &ThumbnailRequest,
    frames: &[FrameInfo],
    time_base: TimeBase,
    first_pts: i64,
    duration_seconds: f64,
    displayed: (u32, u32),
) -> Result<ThumbnailPlan, ThumbnailError> {
    if request.interval_ms == Some(0) {
        return Err(ThumbnailError::Interval(0));
    }
    if frames.is_empty() {
        return Err(ThumbnailError::NoFrames);
    }
    let seconds = |ms: u64| ms as f64 / 1000.0;
    let interval_seconds = request.interval_ms.map(seconds);
    let poster_seconds = match request.poster_at_ms.map(seconds) {
        Some(at) if at > duration_seconds => {
            return Err(ThumbnailError::PosterAt {
                at,
                duration: duration_seconds,
            })
        }
        Some(at) => at,
        None if duration_seconds < SHORT_CLIP_SECONDS => 0.0,
        None => duration_seconds * POSTER_SHARE,
    };
    let pts: Vec<i64> = frames.iter().map(|frame| frame.pts).collect();
    let at = |seconds: f64| frame_at(&pts, time_base, first_pts, seconds);
    let tile_pts = match interval_seconds {
        Some(interval) => tile_times(interval, duration_seconds)
            .into_iter()
            .map(at)
            .collect(),
        None => Vec::new(),
    };
    Ok(ThumbnailPlan {
        interval_seconds,
        duration_seconds,
        tile_pts,
        poster_pts: at(poster_seconds),
        poster_seconds,
        tile_size: fit_width(displayed, TILE_WIDTH),
        poster_size: (even(displayed.0), even(displayed.1)),
    })
}

/// Tile times, seconds: `0, interval, 2 × interval, …` before `duration_seconds` (at least one).
pub fn tile_times(interval: f64, duration_seconds: f64) -> Vec<f64> {
    let count = (duration_seconds / interval).ceil().max(1.0) as usize;
    (0..count).map(|k| k as f64 * interval).collect()
}

/// The pts of the first frame at or after `seconds` from `first_pts` (the last frame when none
/// is). Precondition: `pts` sorted, not empty.
fn frame_at(pts: &[i64], time_base: TimeBase, first_pts: i64, seconds: f64) -> i64 {
    // A frame within a microsecond of the time counts as at it (rounding of `seconds`).
    let wanted = |frame: i64| time_base.seconds(frame - first_pts) >= seconds - 1e-6;
    let index = pts.partition_point(|&frame| !wanted(frame));
    pts[index.min(pts.len() - 1)]
}

fn even(value: u32) -> u32 {
    (value & !1).max(2)
}

/// `size` scaled to `width` (or kept, if narrower), height following, both even.
fn fit_width(size: (u32, u32), width: u32) -> (u32, u32) {
    let (w, h) = (size.0.max(1), size.1.max(1));
    let width = width.min(w);
    let height = (f64::from(width) * f64::from(h) / f64::from(w)).round() as u32;
    (even(width), even(height))
}

impl ThumbnailPlan {
    /// The tiles segment `segment` takes: (tile number, pts), in order.
    pub fn tiles_of(&self, segment: &Segment) -> Vec<(usize, i64)> {
        self.tile_pts
            .iter()
            .enumerate()
            .filter(|(_, &pts)| segment.contains(pts))
            .map(|(k, &pts)| (k, pts))
            .collect()
    }

    /// True when segment `segment` takes the poster.
    pub fn has_poster(&self, segment: &Segment) -> bool {
        segment.contains(self.poster_pts)
    }

    /// Where every tile sits.
    pub fn grid(&self) -> SheetGrid {
        SheetGrid::new(self.tile_pts.len() as u32, self.tile_size)
    }
}

/// Tiles on sheets: row by row, [`SHEET_COLUMNS`] (or fewer, when there are fewer tiles) per
/// row, at most [`SHEET_ROWS`] rows per sheet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SheetGrid {
    pub tiles: u32,
    pub tile_size: (u32, u32),
    pub columns: u32,
}

/// One tile's place: its sheet and its rectangle there (pixels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TilePlace {
    pub sheet: u32,
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl SheetGrid {
    pub fn new(tiles: u32, tile_size: (u32, u32)) -> Self {
        Self {
            tiles,
            tile_size,
            columns: tiles.clamp(1, SHEET_COLUMNS),
        }
    }

    fn per_sheet(&self) -> u32 {
        self.columns * SHEET_ROWS
    }

    pub fn sheets(&self) -> u32 {
        self.tiles.div_ceil(self.per_sheet())
    }

    /// Tile `k`'s place. Precondition: `k < tiles`.
    pub fn place(&self, k: u32) -> TilePlace {
        let (sheet, within) = (k / self.per_sheet(), k % self.per_sheet());
        TilePlace {
            sheet,
            x: (within % self.columns) * self.tile_size.0,
            y: (within / self.columns) * self.tile_size.1,
            w: self.tile_size.0,
            h: self.tile_size.1,
        }
    }

    /// Sheet `sheet`'s size, pixels: full rows, the last sheet only as many rows as it fills.
    pub fn sheet_size(&self, sheet: u32) -> (u32, u32) {
        let on_sheet = (self.tiles - sheet * self.per_sheet()).min(self.per_sheet());
        let rows = on_sheet.div_ceil(self.columns);
        (self.columns * self.tile_size.0, rows * self.tile_size.1)
    }
}

/// The files' names, in one directory: beside a file output named by its stem
/// (`out.mp4` → `out.poster.jpg`, `out.thumbnails.vtt`, `out.thumbnails-0.jpg`), inside a
/// package directory without one (`poster.jpg`, `thumbnails.vtt`, `thumbnails-0.jpg`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailNames {
    prefix: String,
}

impl ThumbnailNames {
    /// `stem`: the output file's name without its extension; `None` inside a package directory.
    pub fn new(stem: Option<&str>) -> Self {
        Self {
            prefix: stem.map(|stem| format!("{stem}.")).unwrap_or_default(),
        }
    }

    pub fn poster(&self) -> String {
        format!("{}poster.jpg", self.prefix)
    }

    pub fn index(&self) -> String {
        format!("{}thumbnails.vtt", self.prefix)
    }

    pub fn sheet(&self, sheet: u32) -> String {
        format!("{}thumbnails-{sheet}.jpg", self.prefix)
    }
}

/// WebVTT time, `HH:MM:SS.mmm`.
fn vtt_time(seconds: f64) -> String {
    let millis = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000
    )
}

/// The WebVTT index: one cue per tile, `k × interval` to the next tile's time (the last to the
/// video's end), pointing at its sheet with a `#xywh=` fragment. Empty without tiles.
pub fn vtt_text(plan: &ThumbnailPlan, names: &ThumbnailNames) -> String {
    let (Some(interval), grid) = (plan.interval_seconds, plan.grid()) else {
        return String::new();
    };
    let mut text = String::from("WEBVTT\n");
    for k in 0..grid.tiles {
        let start = f64::from(k) * interval;
        let end = if k + 1 == grid.tiles {
            plan.duration_seconds
        } else {
            f64::from(k + 1) * interval
        };
        let place = grid.place(k);
        text.push_str(&format!(
            "\n{} --> {}\n{}#xywh={},{},{},{}\n",
            vtt_time(start),
            vtt_time(end),
            names.sheet(place.sheet),
            place.x,
            place.y,
            place.w,
            place.h
        ));
    }
    text
}

#[cfg(test)]
#[path = "thumbnails_tests.rs"]
mod tests;
