//! The output's chapters and global tags, from the plan, before its header is written.

use crate::extras::ExtrasPlan;
use crate::media::util;
use ffmpeg_next as ffmpeg;
/// Sets the output's chapters and global tags from the plan, before its header is written.
pub(crate) fn write_chapters_and_tags(
    muxer: &mut ffmpeg::format::context::Output,
    plan: &ExtrasPlan,
) -> Result<(), ffmpeg::Error> {
    for chapter in &plan.chapters {
        let mut added = muxer.add_chapter(
            chapter.id,
            util::rational(chapter.time_base),
            chapter.start,
            chapter.end.max(chapter.start),
            chapter.title().unwrap_or_default(),
        )?;
        for (key, value) in &chapter.metadata {
            added.set_metadata(key, value);
        }
    }
    let mut tags = ffmpeg::Dictionary::new();
    for (key, value) in &plan.tags {
        tags.set(key, value);
    }
    muxer.set_metadata(tags);
    Ok(())
}
