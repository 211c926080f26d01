//! **Pure.** A model — not a measurement — of a serverless treemux run, beside EC2 instances
//! running the single-ffmpeg baseline, from measured encode cost and data sizes.
//!
//! The data path modelled is the one where every byte moves once: analyze reads only the
//! source's index (ranged GETs) and shares it on EFS; each split-and-convert reads its own byte
//! range of the source from S3 and writes its segment once to EFS; split-audio reads the audio
//! once; merges combine only small indexes, never video bytes; the root (merge-audio) reads the
//! segments and the audio from EFS once and streams them into one S3 multipart upload. The bytes
//! and requests per job are the design's own counts, or a measured run's scaled to the video
//! ([`DataPathMeasurement`]).
//!
//! Every input is printed with the projection; defaults are documented list prices and
//! throughputs (docs/performance.md gives the sources and the formulas). The model's job is to
//! make the trade-off inspectable, not to promise a number.
//!
//! `inputs` holds what the model is given and its sourced defaults, `measured` a measured run's
//! data movement, `project` the formulas.

mod inputs;
mod measured;
mod project;
#[cfg(test)]
mod tests;

pub use inputs::*;
pub use measured::*;
pub use project::*;
