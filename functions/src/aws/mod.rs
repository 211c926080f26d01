//! AWS implementations of the ports, and the configuration the binaries read.
//!
//! - [`config`]: the handlers' configuration from the environment (encode settings, plan limits).
//! - [`s3`]: S3 as the object store, with error classification; [`s3_multipart`]: S3 as the
//!   multipart-upload store the output streams into.
//! - [`dynamo`]: DynamoDB as the state store (pair records) and the job store (job records).
//! - [`sfn`]: Step Functions as the execution starter.
//! - [`events`]: EventBridge and SNS as the job events' destinations.
//! - `job_list.rs`: the table's recent job records (`treemux jobs`).
//!
//! [`services_from_env`] wires them into the handlers' [`Services`](crate::handlers::Services).

pub mod config;
pub mod dynamo;
pub mod events;
mod job_list;
pub mod s3;
pub mod s3_multipart;
pub mod sfn;

pub use config::config_from_env;
pub use dynamo::{store_error, DynamoStore, REFUSED_DYNAMODB_CODES};
pub use s3::{
    classify_get_failure, part_ranges, put_error, GetFailure, S3Store, MULTIPART_THRESHOLD,
    PART_BYTES, REFUSED_PUT_CODES,
};
pub use sfn::{start_error, SfnStarter, REFUSED_START_CODES};

use crate::job_events::{EventSink, JobEvents};
use config::{env, env_or};
use std::sync::Arc;

/// Loads the SDK configuration from the environment (`AWS_ENDPOINT_URL` points every client at
/// a local stack).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// An S3 client; path-style addressing when the endpoint is overridden (local stacks).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build(),
    )
}

/// The handlers' services on AWS.
pub type AwsServices = crate::handlers::Services<DynamoStore, S3Store, SfnStarter>;

/// Builds the services from the environment: the handler configuration ([`config_from_env`]),
/// `TREEMUX_TABLE`, `TREEMUX_TTL_DAYS` (default 7) and, for analyze,
/// `TREEMUX_STATE_MACHINE_ARN`; the job events' destinations ([`job_events_from_env`]).
pub async fn services_from_env() -> Result<AwsServices, String> {
    let sdk = sdk_config().await;
    let ttl_days: u64 = env_or("TREEMUX_TTL_DAYS", "7")
        .parse()
        .map_err(|_| "TREEMUX_TTL_DAYS: expected days".to_owned())?;
    Ok(crate::handlers::Services {
        store: DynamoStore {
            client: aws_sdk_dynamodb::Client::new(&sdk),
            table: env("TREEMUX_TABLE")?,
            ttl_seconds: ttl_days * 86_400,
        },
        objects: S3Store::new(s3_client(&sdk)),
        executions: SfnStarter {
            client: aws_sdk_sfn::Client::new(&sdk),
            state_machine_arn: env_or("TREEMUX_STATE_MACHINE_ARN", ""),
        },
        events: job_events_from_env(&sdk)?,
        config: {
            let config = config_from_env()?;
            // A process serving tasks starts with no segment copies: what a crashed one left
            // (Lambda keeps /tmp across a runtime restart) goes now.
            crate::segment_objects::clear_local_copies(&config.local_dir);
            config
        },
    })
}

/// Where job events go: `TREEMUX_EVENT_BUS` (an EventBridge bus, its name or ARN),
/// `TREEMUX_COMPLETION_TOPIC_ARN` (an SNS topic for successes and failures), each off when
/// empty; `TREEMUX_PROGRESS_EVENT_SECONDS` (default 10), the least time between a job's
/// progress events.
pub fn job_events_from_env(sdk: &aws_config::SdkConfig) -> Result<JobEvents, String> {
    let seconds = env_or("TREEMUX_PROGRESS_EVENT_SECONDS", "");
    let seconds: f64 = Some(seconds.as_str())
        .filter(|text| !text.is_empty())
        .unwrap_or("10")
        .parse()
        .ok()
        .filter(|seconds: &f64| seconds.is_finite() && *seconds >= 0.0)
        .ok_or_else(|| "TREEMUX_PROGRESS_EVENT_SECONDS: expected seconds".to_owned())?;
    let bus = env_or("TREEMUX_EVENT_BUS", "");
    let topic = env_or("TREEMUX_COMPLETION_TOPIC_ARN", "");
    Ok(JobEvents {
        bus: (!bus.is_empty()).then(|| {
            Arc::new(events::EventBridgeSink {
                client: aws_sdk_eventbridge::Client::new(sdk),
                bus,
            }) as Arc<dyn EventSink>
        }),
        completion: (!topic.is_empty()).then(|| {
            Arc::new(events::SnsSink {
                client: aws_sdk_sns::Client::new(sdk),
                topic_arn: topic,
            }) as Arc<dyn EventSink>
        }),
        progress_interval: std::time::Duration::from_secs_f64(seconds),
    })
}
