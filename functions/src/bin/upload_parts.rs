//! Lambda entry point: upload-parts. Wires AWS clients from the environment and serves
//! [`treemux_functions::handlers::upload_parts`].

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use treemux_core::names::Function;
use treemux_functions::{aws, events::PartGroup, handlers};

#[tokio::main]
async fn main() -> Result<(), Error> {
    treemux_functions::startup::prepare(Function::UploadParts);
    let services = aws::services_from_env().await?;
    run(service_fn(|event: LambdaEvent<PartGroup>| {
        handlers::upload_parts(&services, event.payload)
    }))
    .await
}
