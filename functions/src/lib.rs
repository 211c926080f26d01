//! treemux on AWS: the Lambda handlers and their adapters.
//!
//! - [`handlers`]: analyze, split-audio, split-and-convert, merge-video, merge-audio and
//!   job-failed, generic over the ports so tests use fakes.
//! - [`job_settings`]: a job's own settings: the stack's defaults, a named template, a job spec
//!   beside the upload and the upload's object metadata.
//! - [`job_events`]: the events announcing each job's state changes, and their port.
//! - [`ports`]: the object store and execution starter ports, with local implementations.
//! - [`aws`]: DynamoDB (state and job records), S3 and Step Functions implementations, and the
//!   configuration read from the environment.
//! - [`asl`]: renders the state machine definition for deployment or for the local stack.
//! - [`submit`]: a job submitted for an object already stored (`treemux submit`).
//! - [`startup`]: process start-up shared by every function binary, with its self-test.
//!
//! The SQS worker that runs these handlers without Lambda is the `treemux-worker` crate, so no
//! Lambda binary links the SQS client.

pub mod asl;
pub mod aws;
pub mod error;
pub mod events;
pub mod handlers;
pub mod job;
pub mod job_events;
pub mod job_settings;
pub mod ports;
pub mod segment_objects;
pub mod startup;
pub mod submit;
pub mod upload;
