//! Lambda entry point: job-failed (the state machine's Catch, the EventBridge rules, analyze's failure destination). Wires AWS clients from the environment and serves
//! [`treemux_functions::handlers::job_failed`].

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use treemux_core::names::Function;
use treemux_functions::{aws, events::JobFailedInput, handlers};

#[tokio::main]
async fn main() -> Result<(), Error> {
    treemux_functions::startup::prepare(Function::JobFailed);
    let services = aws::services_from_env().await?;
    run(service_fn(|event: LambdaEvent<JobFailedInput>| {
        handlers::job_failed(&services, event.payload)
    }))
    .await
}
