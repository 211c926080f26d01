//! A job's thumbnails in the engine: planned when the job is prepared ([`JobSpec::set_thumbnails`],
//! from the probe's frame list, before any work), taken by the segment workers
//! ([`JobSpec::segment_thumbnails`]), composed by the root once every segment is done
//! ([`finish_thumbnails`]: sheets, the WebVTT index, the poster) into scratch, from where each
//! runner puts them beside its output.

use crate::error::Error;
use crate::media::picture::Orientation;
use crate::media::thumbnail::{self, SegmentThumbnailSpec};
use crate::media::MediaError;
use crate::thumbnails::{plan_thumbnails, vtt_text, ThumbnailNames, ThumbnailRequest};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::{JobSpec, ScratchLayout};

/// One composed thumbnail file: its name beside the output and where the root wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailFile {
    pub name: String,
    pub path: PathBuf,
}

impl JobSpec {
    /// Plans the job's thumbnails (`request`), refusing a bad one naming `input`: the frames
    /// at the poster time and every tile time, at the first rendition's displayed size
    /// (rotation applied, square pixels). Precondition: `info.frames` is the probe's list (as
    /// right after [`super::prepare_job`]).
    pub fn set_thumbnails(
        &mut self,
        request: &ThumbnailRequest,
        input: &Path,
    ) -> Result<(), Error> {
        let video = &self.info.video;
        let plan = plan_thumbnails(
            request,
            &self.info.frames,
            video.time_base,
            video.first_pts,
            video.duration_seconds(),
            self.displayed_size(),
        )
        .map_err(|problem| Error::request(input, problem.to_string()))?;
        self.thumbnails = Some(plan);
        Ok(())
    }

    /// The first rendition's picture as displayed: upright, square pixels, pixels (even).
    fn displayed_size(&self) -> (u32, u32) {
        let video = &self.info.video;
        let orientation = Orientation::from_rotation_degrees(video.rotation_degrees)
            .unwrap_or(Orientation::Upright);
        let (width, height) =
            crate::media::picture::displayed_size(video, &self.settings, orientation);
        let sar = video.sample_aspect_ratio;
        let width = if sar.num > 0 && sar.den > 0 && sar.num != sar.den {
            let aspect = f64::from(sar.num) / f64::from(sar.den);
            // The pixel aspect is along the coded width, which is the shown height when turned.
            let shown = if orientation.swaps_axes() {
                f64::from(width) / aspect
            } else {
                f64::from(width) * aspect
            };
            shown.round() as u32
        } else {
            width
        };
        ((width & !1).max(2), height)
    }

    /// What segment `index`'s worker takes for the thumbnails, `None` when it takes nothing.
    pub fn segment_thumbnails(
        &self,
        layout: &ScratchLayout,
        index: u32,
    ) -> Option<SegmentThumbnailSpec> {
        let plan = self.thumbnails.as_ref()?;
        let segment = self.plan.segments.get(index as usize)?;
        let tiles = plan.tiles_of(segment);
        let poster = plan.has_poster(segment).then_some(plan.poster_pts);
        if tiles.is_empty() && poster.is_none() {
            return None;
        }
        Some(SegmentThumbnailSpec {
            tiles,
            tile_size: plan.tile_size,
            tiles_path: layout.segment_thumbnails(index),
            poster,
            poster_size: plan.poster_size,
            poster_path: layout.poster(),
            crop_to_even: self.settings.height.is_none(),
        })
    }
}

/// Composes the job's thumbnails from every segment's tiles into `layout`'s thumbnail
/// directory, named by `names`: the poster, and with tiles the sheets and the WebVTT index
/// (whose cues name the sheets as `names` does, so they sit beside it). Empty without
/// thumbnails. Precondition: every segment is done. Repeatable: a retry writes the same files.
pub fn finish_thumbnails(
    job: &JobSpec,
    layout: &ScratchLayout,
    names: &ThumbnailNames,
) -> Result<Vec<ThumbnailFile>, Error> {
    let Some(plan) = &job.thumbnails else {
        return Ok(Vec::new());
    };
    let dir = layout.thumbnail_dir();
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let mut files = Vec::new();
    let poster = layout.poster();
    if !poster.is_file() {
        return Err(Error::Media(MediaError::Unsupported {
            path: poster,
            reason: "the poster frame is missing; its segment did not take it".into(),
        }));
    }
    let poster_copy = dir.join(names.poster());
    crate::atomic_file::write_atomically(
        &poster_copy,
        &std::fs::read(&poster).map_err(MediaError::io(&poster))?,
    )?;
    files.push(ThumbnailFile {
        name: names.poster(),
        path: poster_copy,
    });
    if plan.tile_pts.is_empty() {
        return Ok(files);
    }
    let mut tiles = Vec::with_capacity(plan.tile_pts.len());
    for (index, segment) in (0..).zip(&job.plan.segments) {
        let count = plan.tiles_of(segment).len();
        if count > 0 {
            let path = layout.segment_thumbnails(index);
            tiles.extend(thumbnail::read_tiles(&path, count, plan.tile_size)?);
        }
    }
    let grid = plan.grid();
    for sheet in 0..grid.sheets() {
        let placed: Vec<_> = (0..grid.tiles)
            .map(|k| (grid.place(k), &tiles[k as usize]))
            .filter(|(place, _)| place.sheet == sheet)
            .map(|(place, raw)| (place, raw.as_slice()))
            .collect();
        let path = dir.join(names.sheet(sheet));
        thumbnail::write_sheet(&path, grid.sheet_size(sheet), &placed)?;
        files.push(ThumbnailFile {
            name: names.sheet(sheet),
            path,
        });
    }
    let vtt = dir.join(names.index());
    crate::atomic_file::write_atomically(&vtt, vtt_text(plan, names).as_bytes())?;
    files.push(ThumbnailFile {
        name: names.index(),
        path: vtt,
    });
    Ok(files)
}
