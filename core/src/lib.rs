//! treemux's core: frame-exact parallel video transcoding along a binary merge tree — the
//! pipeline, its ports and the media steps, with no command-line or AWS code (the `treemux` CLI,
//! the Lambda functions and the SQS worker are crates of their own over this one).
//!
//! - [`plan`] and [`tree`]: pure planning and merge-tree arithmetic over plain data.
//! - [`state`] and [`steps`]: the state-store port and the shared "a node finished, what next?"
//!   decision used by the local runner and the serverless functions alike.
//! - [`extras`]: what the output keeps of subtitles, cover art, attachments, chapters and tags,
//!   and the warnings for the rest (pure).
//! - [`media`]: probe, split-and-convert, merge, audio, remux and verify over ffmpeg-next.
//! - [`local`]: the whole pipeline on one machine; [`progress`]: a run's progress events and
//!   counts (the CLI's bar and the Lambda job record alike), rates and one report line (pure).
//! - [`names`]: the stages, timeline task kinds and Lambda functions both runners name alike.
//! - [`summary`]: a finished run as plain data (`transcode --json`, read by bench and diagram;
//!   its output part is kept by the Lambda job record too).
//! - [`thumbnails`]: which frames a job's poster and thumbnail tiles show, their sheets, names
//!   and WebVTT index (pure; the pixels are `media::thumbnail`'s).
//! - [`process`]: process start-up that keeps encodes repeatable.
//! - [`fault`]: crash points for fault-injection tests (inert unless a test names one).

pub mod atomic_file;
pub mod engine;
pub mod error;
pub mod extras;
pub mod fault;
pub mod join;
pub mod local;
pub mod media;
pub mod nal;
pub mod names;
pub mod output_layout;
pub mod output_plan;
pub mod plan;
pub mod process;
pub mod progress;
pub mod renditions;
pub mod settings;
pub mod state;
pub mod steps;
pub mod summary;
pub mod thumbnails;
pub mod timestamps;
pub mod tree;

pub use error::{Error, ErrorKind};
