//! Lambda entry point: split-and-convert. Wires AWS clients from the environment and serves
//! [`treemux_functions::handlers::split_and_convert`].

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use treemux_core::names::Function;
use treemux_functions::{aws, events::SegmentTask, handlers};

#[tokio::main]
async fn main() -> Result<(), Error> {
    treemux_functions::startup::prepare(Function::SplitAndConvert);
    let services = aws::services_from_env().await?;
    run(service_fn(|event: LambdaEvent<SegmentTask>| {
        handlers::split_and_convert(&services, event.payload)
    }))
    .await
}
