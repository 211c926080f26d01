//! Lambda entry point: split-audio. Wires AWS clients from the environment and serves
//! [`treemux_functions::handlers::split_audio`].

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use treemux_core::names::Function;
use treemux_functions::{aws, events::JobTask, handlers};

#[tokio::main]
async fn main() -> Result<(), Error> {
    treemux_functions::startup::prepare(Function::SplitAudio);
    let services = aws::services_from_env().await?;
    run(service_fn(|event: LambdaEvent<JobTask>| {
        handlers::split_audio(&services, event.payload)
    }))
    .await
}
