//! Lambda entry point: S3 ObjectCreated event. Wires AWS clients from the environment and serves
//! [`treemux_functions::handlers::analyze`].

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use treemux_core::names::Function;
use treemux_functions::{aws, events::S3Event, handlers};

#[tokio::main]
async fn main() -> Result<(), Error> {
    treemux_functions::startup::prepare(Function::Analyze);
    let services = aws::services_from_env().await?;
    run(service_fn(|event: LambdaEvent<S3Event>| {
        handlers::analyze(&services, event.payload)
    }))
    .await
}
