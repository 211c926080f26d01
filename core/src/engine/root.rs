//! Finishing the root by parts: the output laid out once without its video bytes
//! ([`lay_out_root`], kept on scratch so every part's writer reads the same layout), each part
//! filled from the segments and the audio copies ([`write_output_part`]), the parts of a local
//! run written into the file in parallel ([`finish_root_to_file`]). Outputs that cannot be laid
//! out by sizes (see `media::remux::layout`) keep the one-pass mux ([`super::finish_root`]).

use crate::error::Error;
use crate::media::remux::{self, Laid, LayoutInputs, MuxTarget, RemuxReport};
use crate::media::source::Source;
use crate::output_layout::{OutputLayout, OutputPart};
use rayon::prelude::*;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::layout::write_json_atomically;
use super::{JobSpec, ScratchLayout};

/// How the root's output is written.
#[derive(Debug)]
pub enum RootLayout {
    /// By parts, from this layout.
    Parts(OutputLayout),
    /// In one pass (today's mux), for this reason.
    OnePass(String),
}

/// The layout of a previous attempt, if it finished (the layout is written last).
pub fn finished_layout(layout: &ScratchLayout) -> Option<OutputLayout> {
    let mut found = finished_layout_without_header(layout)?;
    found.header = std::fs::read(layout.output_header()).ok()?;
    (found.header.len() as u64 == found.header_len).then_some(found)
}

/// As [`finished_layout`] with the header left empty (not read from scratch): for the tasks
/// that write parts after the first, which never hold header bytes (part 1 is at least the
/// header and a MiB more). Writing a range that needs the header then fails, naming it.
pub fn finished_layout_without_header(layout: &ScratchLayout) -> Option<OutputLayout> {
    let json = std::fs::read(layout.output_layout()).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Lays the root's output out (unless an earlier attempt did): the mux with stand-in video
/// packets, the audio tracks' bytes copied to scratch on the way, the header and the layout
/// stored on scratch. [`RootLayout::OnePass`] when the output cannot be laid out by sizes.
/// Precondition: the root is done and, when the source has audio, so is the audio.
pub fn lay_out_root(
    source: &Source,
    job: &JobSpec,
    layout: &ScratchLayout,
) -> Result<RootLayout, Error> {
    if let Some(found) = finished_layout(layout) {
        return Ok(RootLayout::Parts(found));
    }
    let index = super::tasks::root_index(job, layout)?;
    let Some(samples) = index.samples.as_ref() else {
        return Ok(RootLayout::OnePass(
            "the segments' samples cannot be sized from their index".into(),
        ));
    };
    if index.pts.len() as u64 != index.packets || samples.sizes.len() as u64 != index.packets {
        return Ok(RootLayout::OnePass(
            "the root's index does not list every packet".into(),
        ));
    }
    let video: Vec<PathBuf> = index.leaves.iter().map(|&i| layout.segment(i)).collect();
    let audio = super::tasks::job_audio(job, layout)?;
    let audio_copies: Vec<PathBuf> = (0..job.info.audio.len())
        .map(|track| layout.audio_copy(track))
        .collect();
    let inputs = LayoutInputs {
        leaves: &index.leaves,
        video: &video,
        samples,
        video_pts: &index.pts,
        audio: audio.as_deref(),
        audio_copies: if audio.is_some() { &audio_copies } else { &[] },
    };
    let laid = remux::lay_out_output(
        source,
        &inputs,
        &job.info,
        &job.settings,
        &job.extras(),
        job.container,
        &layout.output_layout(),
    )?;
    match laid {
        Laid::Out(output) => {
            crate::atomic_file::write_atomically(&layout.output_header(), &output.header)?;
            write_json_atomically(&layout.output_layout(), &output)?;
            Ok(RootLayout::Parts(output))
        }
        Laid::Refused(reason) => Ok(RootLayout::OnePass(reason)),
    }
}

/// The segments (leaf numbers) [`lay_out_root`] reads: none when an earlier attempt laid the
/// output out, else the root's first (for the video's codec parameters; the rest of the pass
/// uses only the index). For a runner whose segment files are fetched before each step.
pub fn segments_for_layout(job: &JobSpec, layout: &ScratchLayout) -> Result<Vec<u32>, Error> {
    // The same test lay_out_root makes: a layout without its header is laid out again.
    if finished_layout(layout).is_some() {
        return Ok(Vec::new());
    }
    let index = super::tasks::root_index(job, layout)?;
    Ok(index.leaves.first().copied().into_iter().collect())
}

/// The segments (leaf numbers) [`write_output_part`] reads for `part`: those its video bytes
/// come from, in order.
pub fn segments_for_part(output: &OutputLayout, part: &OutputPart) -> Vec<u32> {
    output
        .leaves
        .get(output.segments_in(part.range()))
        .map(<[u32]>::to_vec)
        .unwrap_or_default()
}

/// The segments (leaf numbers) [`super::finish_root`] reads: every one of the root's, in order.
pub fn segments_for_root(job: &JobSpec, layout: &ScratchLayout) -> Result<Vec<u32>, Error> {
    Ok(super::tasks::root_index(job, layout)?.leaves)
}

/// The bytes of `part` of the output laid out by `output` (see
/// [`remux::write_part`]), from the job's scratch files in `layout`.
pub fn write_output_part(
    layout: &ScratchLayout,
    output: &OutputLayout,
    part: &OutputPart,
) -> Result<Vec<u8>, Error> {
    let video: Vec<PathBuf> = output.leaves.iter().map(|&i| layout.segment(i)).collect();
    let audio_copies: Vec<PathBuf> = (0..output.audio_bytes.len())
        .map(|track| layout.audio_copy(track))
        .collect();
    Ok(remux::write_part(
        output,
        part.range(),
        &video,
        &audio_copies,
    )?)
}

/// Writes the root's output to the file `output`, complete or not at all: by parts when it can
/// be laid out (every part filled in parallel and written at its offset), else in one pass.
/// The same layout and part filling the Lambda runner uploads. Precondition: as
/// [`lay_out_root`].
pub fn finish_root_to_file(
    source: &Source,
    job: &JobSpec,
    layout: &ScratchLayout,
    output: &Path,
) -> Result<RemuxReport, Error> {
    let started = Instant::now();
    let laid_out = match lay_out_root(source, job, layout)? {
        RootLayout::Parts(laid_out) => laid_out,
        RootLayout::OnePass(reason) => {
            tracing::debug!(output = %output.display(), reason, "the output is written in one pass");
            return super::finish_root(source, job, layout, MuxTarget::File(output.to_owned()));
        }
    };
    let parts = laid_out.parts().map_err(|source| Error::OutputTooLarge {
        path: output.to_owned(),
        source,
    })?;
    let partial = crate::atomic_file::AtomicFile::create(output)?;
    let file = partial.open()?;
    file.set_len(laid_out.total_bytes)
        .map_err(|source| partial.error(source))?;
    parts.par_iter().try_for_each(|part| {
        let bytes = write_output_part(layout, &laid_out, part)?;
        file.write_all_at(&bytes, part.start)
            .map_err(|source| Error::from(partial.error(source)))
    })?;
    file.sync_all().map_err(|source| partial.error(source))?;
    drop(file);
    partial.commit()?;
    tracing::debug!(
        output = %output.display(),
        parts = parts.len(),
        bytes = laid_out.total_bytes,
        "the output was written by parts"
    );
    Ok(RemuxReport {
        video_packets: laid_out.video.sizes.len() as u64,
        audio_packets: laid_out.audio_packets,
        extra_packets: 0,
        bytes: laid_out.total_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}
