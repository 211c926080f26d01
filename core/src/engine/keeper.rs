//! Where a segment's encoded file is kept between the task that encodes it and the tasks that
//! read it (the writers of the output's parts, or the root's one pass).

use crate::error::Error;
use std::path::Path;

/// Keeps segment files for the tasks that read them later. The local runner's scratch is
/// shared by all its tasks, so a file stays where it was committed ([`KeptInScratch`]); a
/// Lambda task encodes into a directory of its own (see
/// [`ScratchLayout::with_segments_in`](super::ScratchLayout::with_segments_in)) and keeps the
/// file as an object, so the video never passes through the shared file system.
pub trait SegmentKeeper: Sync {
    /// Keeps segment `index`'s committed file `file` (rung 0's). Called before the segment is
    /// recorded done, so a segment that is done is kept; a repeated task keeps it again, which
    /// must replace the copy kept before.
    fn keep(&self, index: u32, file: &Path) -> Result<(), Error>;
}

/// The local runner's keeper: the file stays in scratch, where every task reads it.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeptInScratch;

impl SegmentKeeper for KeptInScratch {
    fn keep(&self, _index: u32, _file: &Path) -> Result<(), Error> {
        Ok(())
    }
}
