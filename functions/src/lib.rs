//! treemux on AWS: the Lambda handlers and their adapters.
//!
//! - [`handlers`]: analyze, split-audio, split-and-convert, merge-video, merge-audio and
//!   job-failed, generic over the ports so tests use fakes.
//! - [`ports`]: the object store and execution starter ports, with local implementations.
//! - [`aws`]: DynamoDB (state and job records), S3 and Step Functions implementations, and the
//!   configuration read from the environment.
//! - [`asl`]: renders the state machine definition for deployment or for the local stack.
//! - [`startup`]: process start-up shared by every function binary, with its self-test.
//! - [`worker`]: runs the same handlers from SQS (the local stack, or any machine).

pub mod asl;
pub mod aws;
pub mod error;
pub mod events;
pub mod handlers;
pub mod job;
pub mod ports;
pub mod startup;
pub mod upload;
pub mod worker;
