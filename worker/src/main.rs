//! `treemux-worker` (also reached as `treemux worker`): runs the handlers from SQS for the local
//! stack or any machine, and renders the state machine definition.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::sync::Arc;
use treemux_functions::{asl, aws};
use treemux_worker::{self as worker, Faults, WorkerOptions};

#[derive(Parser, Debug)]
#[command(
    name = "treemux worker",
    about = "Run treemux's Lambda handlers from SQS, or render the state machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Take tasks from the task queue (and S3 upload notifications) until interrupted. Reads the
    /// handlers' TREEMUX_* environment (see the functions crate docs).
    Run {
        #[arg(long, env = "TREEMUX_TASK_QUEUE_URL")]
        task_queue_url: String,
        #[arg(long, env = "TREEMUX_UPLOAD_QUEUE_URL")]
        upload_queue_url: Option<String>,
        /// Tasks at once (default: CPU cores).
        #[arg(long, env = "TREEMUX_WORKER_CONCURRENCY")]
        concurrency: Option<usize>,
        /// Seconds a task's message stays hidden from other workers, renewed while it runs: how
        /// long a dead worker's task waits before another worker takes it.
        #[arg(long, env = "TREEMUX_WORKER_VISIBILITY_SECONDS", default_value_t = worker::DEFAULT_VISIBILITY_SECONDS)]
        visibility_seconds: u32,
        /// Seconds before the first retry of a failed asynchronous invocation (an upload's
        /// analyze, an EventBridge job-failed), doubling for the second; Lambda waits about a
        /// minute, then two.
        #[arg(
            long,
            env = "TREEMUX_WORKER_ASYNC_RETRY_SECONDS",
            default_value_t = 1.0
        )]
        async_retry_seconds: f64,
        /// Injected faults, e.g. `fail-once:split-and-convert:1,duplicate:merge-video` or
        /// `crash:after-segment:1`.
        #[arg(long, env = "TREEMUX_WORKER_FAULTS", default_value = "")]
        faults: String,
    },
    /// Print the definition for the local stack: Lambda tasks become SQS callback tasks.
    RenderLocal {
        #[arg(long)]
        queue_url: String,
    },
    /// Print the definition as SAM deploys it (`DefinitionUri`): number placeholders unquoted for
    /// CloudFormation's DefinitionSubstitutions (not JSON until substituted).
    RenderTemplate,
    /// Print the definition for AWS with function ARNs `PREFIX<function>` (e.g. for linting).
    RenderLambda {
        #[arg(
            long,
            default_value = "arn:aws:lambda:us-east-1:123456789012:function:treemux-"
        )]
        arn_prefix: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let zeroed_heap = treemux_core::process::ensure_zeroed_heap();
    treemux_functions::startup::init_logging("treemux-worker");
    treemux_core::process::warn_unless_zeroed(&zeroed_heap);
    match Cli::parse().command {
        Command::Run {
            task_queue_url,
            upload_queue_url,
            concurrency,
            visibility_seconds,
            async_retry_seconds,
            faults,
        } => {
            let faults = Faults::parse(&faults)
                .map_err(anyhow::Error::msg)
                .context("TREEMUX_WORKER_FAULTS")?;
            let services = aws::services_from_env().await.map_err(anyhow::Error::msg)?;
            let services = treemux_functions::handlers::Services {
                objects: faults.objects(services.objects),
                config: treemux_functions::handlers::Config {
                    crashes: Arc::new(faults.crash_plan()),
                    ..services.config
                },
                store: services.store,
                executions: services.executions,
                events: services.events,
            };
            let sdk = aws::sdk_config().await;
            let options = WorkerOptions {
                task_queue_url,
                upload_queue_url,
                concurrency: concurrency
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                visibility_seconds,
                async_retry_seconds,
                faults,
            };
            worker::run(
                Arc::new(services),
                aws_sdk_sqs::Client::new(&sdk),
                aws_sdk_sfn::Client::new(&sdk),
                options,
            )
            .await
        }
        Command::RenderLocal { queue_url } => {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &asl::render_for_worker(&queue_url).map_err(anyhow::Error::msg)?
                )?
            );
            Ok(())
        }
        Command::RenderTemplate => {
            print!(
                "{}",
                asl::render_for_template().map_err(anyhow::Error::msg)?
            );
            Ok(())
        }
        Command::RenderLambda { arn_prefix } => {
            let definition = asl::render_for_lambda(|function| format!("{arn_prefix}{function}"))
                .map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&definition)?);
            Ok(())
        }
    }
}
