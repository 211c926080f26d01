//! Helpers for the worker's tests on the local AWS stack: the functions crate's local-stack
//! helpers (endpoint, `stack_available`, SDK config, table, the seeded generator) and [`stack`],
//! one test's own stack with a `treemux-worker` process.
#![allow(dead_code)]

#[path = "../../../functions/tests/common/mod.rs"]
mod functions_common;
pub use functions_common::*;

pub mod job_events;
pub mod jobs;
pub mod stack;
