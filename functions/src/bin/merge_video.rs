//! Lambda entry point: merge-video. Wires AWS clients from the environment and serves
//! [`treemux_functions::handlers::merge_video`].

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use treemux_core::names::Function;
use treemux_functions::{aws, events::MergeTask, handlers};

#[tokio::main]
async fn main() -> Result<(), Error> {
    treemux_functions::startup::prepare(Function::MergeVideo);
    let services = aws::services_from_env().await?;
    run(service_fn(|event: LambdaEvent<MergeTask>| {
        handlers::merge_video(&services, event.payload)
    }))
    .await
}
