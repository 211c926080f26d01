//! treemux: frame-exact parallel video transcoding along a binary merge tree.
//!
//! - [`plan`] and [`tree`]: pure planning and merge-tree arithmetic over plain data.
//! - [`state`] and [`steps`]: the state-store port and the shared "a node finished, what next?"
//!   decision used by the local runner and the serverless functions alike.
//! - [`extras`]: what the output keeps of subtitles, cover art, attachments, chapters and tags,
//!   and the warnings for the rest (pure).
//! - [`media`]: probe, split-and-convert, merge, audio, remux and verify over ffmpeg-next.
//! - [`local`]: the whole pipeline on one machine; [`progress`]: its progress as counts, rates
//!   and one report line (pure).
//! - [`bench`], [`model`], [`timeline`]: measuring against one ffmpeg, the Lambda cost and time
//!   model (pure), and the timeline chart (pure); [`model_chart`] and [`tree_diagram`]: the
//!   model over video lengths and a run's merge tree as pictures (pure).
//! - [`process`]: process start-up that keeps encodes repeatable.
//! - [`fault`]: crash points for fault-injection tests (inert unless a test names one).

pub mod atomic_file;
pub mod bench;
pub mod engine;
pub mod error;
pub mod extras;
pub mod fault;
pub mod join;
pub mod local;
pub mod media;
pub mod model;
pub mod model_chart;
pub mod output_plan;
pub mod plan;
pub mod process;
pub mod progress;
pub mod settings;
pub mod state;
pub mod steps;
pub mod timeline;
pub mod timestamps;
pub mod tree;
pub mod tree_diagram;

pub use error::{Error, ErrorKind};
