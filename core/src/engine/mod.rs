//! The one engine both runners drive: job preparation with every check, the scratch layout,
//! "produce a segment", "produce a pair", "extract the audio", "finish the root", what "already
//! done" means for each, and where the crash points sit.
//!
//! The local runner (`core/src/local/`, a thread pool and the in-memory state store) and the Lambda
//! handlers (one task per invocation, DynamoDB) call these same functions, so they cannot drift:
//! the same checks refuse the same jobs, the same files mean the same progress, and a repeated
//! task (a retry, a duplicate delivery, a `--resume`) finds the same work done.
//!
//! # Scratch layout (one directory per job)
//! - `node-0-<i>.nut`: segment `i`, written once by [`produce_segment`] and handed to a
//!   [`SegmentKeeper`]: the local runner's leaves it here; the Lambda runner encodes it in the
//!   task's own directory ([`ScratchLayout::with_segments_in`]) and keeps it as an object, so
//!   the shared scratch never holds video there, and its part writers fetch the segments
//!   [`segments_for_part`] names.
//! - `node-<level>-<index>.json`: the [`NodeIndex`](crate::join::NodeIndex) of a finished node
//!   (a segment, or a merge of two). Its presence is what "done" means; it is written (renamed
//!   into place) last.
//! - `audio-<i>.nut`: segment `i`'s share of every audio track, copied out of the bytes its
//!   worker read anyway, when the segments carry the audio ([`JobSpec::audio_from_segments`]);
//!   written before the segment, so a committed segment has its audio beside it.
//! - `audio.nut` and `audio.json`: every audio track, extracted once (joined from the pieces by
//!   [`finish_audio`], or by one streaming pass, [`extract_audio`]), and its report.
//! - `thumbnails-<i>.raw` and `poster.jpg`: the thumbnail tiles segment `i` took from the
//!   frames it decoded (raw planes, in order) and the poster, by the segment holding its frame
//!   ([`JobSpec::set_thumbnails`]); written before the segment, so a committed segment has them.
//!   `thumbnails/`: the sheets, WebVTT index and poster [`finish_thumbnails`] composed.
//! - `output-header.bin`, `output-layout.json` and `audio-track-<n>.raw`: the output laid out
//!   by [`lay_out_root`] (its header, which samples fill which bytes, each audio track's
//!   samples in order), from which every part of it is filled ([`write_output_part`]).
//!
//! No merge writes video and no file is deleted before the job ends: segments are read once,
//! by the writers of the output's parts ([`write_output_part`]: each reads the segments its
//! bytes come from, from the first packet it needs), or in order by [`finish_root`] where the
//! output cannot be laid out by sizes. Scratch then holds the segments
//! and the audio only (twice: pieces and joined), about the output's size.
//!
//! # The audio (read once)
//! For MP4/MOV sources each segment worker copies its share of every audio track from the
//! packets it demuxes anyway ([`SegmentAudio`](crate::media::audio::SegmentAudio)): per track,
//! the samples from the first at or after the decode time of the keyframe it seeks to, up to the first at or after the next
//! segment's (the first segment from the file's first sample, the last to its end). That is
//! exactly what its seek makes the demuxer hand on, and it knows from the index when it has its
//! share's last sample, so it reads on past its video only for the few audio samples
//! interleaved before the next keyframe. Stream copy, never re-encoded per segment; the shares
//! partition every track, so each packet lands in exactly one piece. [`finish_audio`] joins the
//! pieces once (re-encoding a track once, whole, where the output container needs it) and
//! checks that they hold exactly the packets the probe counted, in order; if not (a file
//! interleaved so that a worker's seek lands after a sample of its share), it falls back to one
//! streaming pass over the source. Other containers (Matroska/WebM, MPEG-TS, AVI: no index to
//! place the shares by) and sources with timestamp jumps keep that one streaming pass
//! ([`extract_audio`]).

mod job;
mod keeper;
mod layout;
mod root;
mod tasks;
mod thumbs;

pub use job::{
    check_output_fits_multipart, frame_costs, plan_at_real_keyframes, plan_for, prepare_job,
    JobSpec,
};
pub use keeper::{KeptInScratch, SegmentKeeper};
pub use layout::{media_bytes, scan_finished, ScratchLayout};
pub use root::{
    finish_root_to_file, finished_layout, finished_layout_without_header, lay_out_root,
    segments_for_layout, segments_for_part, segments_for_root, write_output_part, RootLayout,
};
pub use tasks::{
    extract_audio, finish_audio, finish_package, finish_rendition, finish_root, node_finished,
    produce_pair, produce_segment, Produced,
};
pub use thumbs::{finish_thumbnails, ThumbnailFile};
