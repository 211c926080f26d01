//! Which stack `submit`, `status` and `jobs` talk to: a deployed one by its CloudFormation stack
//! name (its outputs name the buckets, the table and analyze), or the local stack by its env
//! file (`scripts/local-stack up` writes `target/local-stack/env`). Reading either is pure
//! ([`StackTarget::from_outputs`], [`StackTarget::from_env_file`]); only [`StackArgs::resolve`]
//! talks to AWS.

use anyhow::{bail, Context as _};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use treemux_functions::aws::DynamoStore;

/// The env file `scripts/local-stack up` writes.
pub(crate) const LOCAL_ENV_FILE: &str = "target/local-stack/env";

#[derive(Args, Debug, Clone)]
pub(crate) struct StackArgs {
    /// A deployed stack: its CloudFormation stack name (AWS credentials and region from the
    /// usual places).
    #[arg(long, value_name = "NAME", conflicts_with = "local")]
    pub(crate) stack: Option<String>,
    /// The local stack: its env file [default: target/local-stack/env]. The default when
    /// neither is given and TREEMUX_LOCAL_STACK_ENDPOINT is set (that endpoint is used).
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = LOCAL_ENV_FILE)]
    pub(crate) local: Option<PathBuf>,
}

/// How a submitted job reaches analyze: the same asynchronous invocation an upload's event is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SubmitRoute {
    /// Lambda `Invoke` (`InvocationType=Event`) of the stack's analyze function.
    AnalyzeFunction(String),
    /// The local stack's upload queue, which the worker runs analyze on.
    UploadQueue(String),
}

/// A stack as the commands need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StackTarget {
    /// Shown in messages: `stack NAME` or `local stack PATH`.
    pub(crate) label: String,
    pub(crate) table: String,
    pub(crate) input_bucket: Option<String>,
    pub(crate) output_bucket: Option<String>,
    pub(crate) submit: SubmitRoute,
    /// The local stack's endpoint and region (`None`: AWS as configured).
    pub(crate) endpoint: Option<String>,
    pub(crate) region: Option<String>,
}

impl StackTarget {
    /// A deployed stack from its CloudFormation outputs (`JobTableName`, `AnalyzeFunctionName`,
    /// `InputBucketName`, `OutputBucketName`).
    pub(crate) fn from_outputs(
        name: &str,
        outputs: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let output = |key: &str| {
            outputs.get(key).cloned().with_context(|| {
                format!(
                    "stack {name}: no output {key} (deployed from an older template? redeploy it)"
                )
            })
        };
        Ok(Self {
            label: format!("stack {name}"),
            table: output("JobTableName")?,
            input_bucket: outputs.get("InputBucketName").cloned(),
            output_bucket: outputs.get("OutputBucketName").cloned(),
            submit: SubmitRoute::AnalyzeFunction(output("AnalyzeFunctionName")?),
            endpoint: None,
            region: None,
        })
    }

    /// The local stack from its env file's text (`KEY=VALUE` lines); `endpoint` overrides the
    /// file's (`TREEMUX_LOCAL_STACK_ENDPOINT`).
    pub(crate) fn from_env_file(
        path: &Path,
        text: &str,
        endpoint: Option<String>,
    ) -> anyhow::Result<Self> {
        let values: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let value = |key: &str| {
            values.get(key).map(|v| (*v).to_owned()).with_context(|| {
                format!("{}: no {key} (not a local-stack env file?)", path.display())
            })
        };
        Ok(Self {
            label: format!("local stack {}", path.display()),
            table: value("TREEMUX_TABLE")?,
            input_bucket: value("TREEMUX_INPUT_BUCKET").ok(),
            output_bucket: value("TREEMUX_OUTPUT_BUCKET").ok(),
            submit: SubmitRoute::UploadQueue(value("TREEMUX_UPLOAD_QUEUE_URL")?),
            endpoint: Some(match endpoint {
                Some(endpoint) => endpoint,
                None => value("AWS_ENDPOINT_URL")?,
            }),
            region: Some(value("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned())),
        })
    }
}

/// The clients of one stack.
#[derive(Debug, Clone)]
pub(crate) struct StackClients {
    pub(crate) target: StackTarget,
    pub(crate) sdk: aws_config::SdkConfig,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) store: DynamoStore,
}

impl StackArgs {
    /// Finds the stack and builds its clients.
    pub(crate) async fn resolve(&self) -> anyhow::Result<StackClients> {
        let local_endpoint = std::env::var("TREEMUX_LOCAL_STACK_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty());
        let (target, sdk) = match (&self.stack, &self.local) {
            (Some(name), _) => {
                let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                let described = aws_sdk_cloudformation::Client::new(&sdk)
                    .describe_stacks()
                    .stack_name(name)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("{}", aws_sdk_cloudformation::error::DisplayErrorContext(e))
                    })
                    .with_context(|| format!("stack {name}: cannot describe it"))?;
                let outputs = described
                    .stacks()
                    .first()
                    .with_context(|| format!("stack {name}: no such stack"))?
                    .outputs()
                    .iter()
                    .filter_map(|o| {
                        Some((o.output_key()?.to_owned(), o.output_value()?.to_owned()))
                    })
                    .collect();
                (StackTarget::from_outputs(name, &outputs)?, sdk)
            }
            (None, local) => {
                let path = match (local, &local_endpoint) {
                    (Some(path), _) => path.clone(),
                    (None, Some(_)) => PathBuf::from(LOCAL_ENV_FILE),
                    (None, None) => bail!(
                        "which stack? --stack NAME (a deployed one) or --local [ENV_FILE] (scripts/local-stack up)"
                    ),
                };
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!("{}: cannot read the local stack's env file (scripts/local-stack up writes it)", path.display())
                })?;
                let target = StackTarget::from_env_file(&path, &text, local_endpoint)?;
                let sdk = local_sdk(&target).await;
                (target, sdk)
            }
        };
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(target.endpoint.is_some())
                .build(),
        );
        let store = DynamoStore {
            client: aws_sdk_dynamodb::Client::new(&sdk),
            table: target.table.clone(),
            ttl_seconds: 0,
        };
        Ok(StackClients {
            target,
            sdk,
            s3,
            store,
        })
    }
}

/// The SDK configuration of the local stack: its endpoint, its region, moto's test credentials.
async fn local_sdk(target: &StackTarget) -> aws_config::SdkConfig {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).credentials_provider(
            aws_sdk_s3::config::Credentials::new("test", "test", None, None, "treemux-local-stack"),
        );
    if let Some(endpoint) = &target.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = &target.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployed_stack_from_its_outputs() {
        let outputs = BTreeMap::from([
            ("JobTableName".to_owned(), "t".to_owned()),
            ("AnalyzeFunctionName".to_owned(), "a".to_owned()),
            ("InputBucketName".to_owned(), "in".to_owned()),
        ]);
        let target = StackTarget::from_outputs("prod", &outputs).expect("target");
        assert_eq!(target.table, "t");
        assert_eq!(target.submit, SubmitRoute::AnalyzeFunction("a".to_owned()));
        assert_eq!(target.input_bucket.as_deref(), Some("in"));
        let missing = StackTarget::from_outputs("old", &BTreeMap::new()).expect_err("no outputs");
        assert!(
            missing
                .to_string()
                .contains("stack old: no output JobTableName"),
            "{missing}"
        );
    }

    #[test]
    fn the_local_stack_from_its_env_file() {
        let text = "AWS_ENDPOINT_URL=http://127.0.0.1:5055\nTREEMUX_TABLE=jobs\n\
                    TREEMUX_UPLOAD_QUEUE_URL=http://q/uploads\nAWS_REGION=eu-west-1\n";
        let path = Path::new("env");
        let target = StackTarget::from_env_file(path, text, None).expect("target");
        assert_eq!(target.endpoint.as_deref(), Some("http://127.0.0.1:5055"));
        assert_eq!(target.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            target.submit,
            SubmitRoute::UploadQueue("http://q/uploads".to_owned())
        );
        let moved = StackTarget::from_env_file(path, text, Some("http://127.0.0.1:6000".into()))
            .expect("target");
        assert_eq!(moved.endpoint.as_deref(), Some("http://127.0.0.1:6000"));
        let bad = StackTarget::from_env_file(path, "X=1\n", None).expect_err("not an env file");
        assert!(bad.to_string().contains("env: no TREEMUX_TABLE"), "{bad}");
    }
}
