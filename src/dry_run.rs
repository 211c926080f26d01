//! `treemux submit --dry-run`: the real object's plan and projected cost, nothing started. The
//! object is probed as analyze probes it (the index only, by ranged reads of the exact bytes,
//! `PacketReads::IndexWherePossible`), planned by the engine as `treemux model --input` plans a
//! file (`crate::model_input`), and projected by the model beside EC2.

use crate::jobs_cli::SubmitArgs;
use crate::model::{self, ModelInputs};
use crate::stack_cli::StackClients;
use anyhow::Context as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use treemux_core::media::probe::{self, PacketReads};
use treemux_core::media::source::Source;
use treemux_functions::aws::S3Store;
use treemux_functions::ports::{ObjectSource, ObjectVersion};

/// Plans `s3://bucket/key` (`size` bytes, from the HEAD) and prints the plan and the projection.
pub(crate) async fn dry_run(
    stack: &StackClients,
    bucket: &str,
    key: &str,
    size: u64,
    args: &SubmitArgs,
) -> anyhow::Result<ExitCode> {
    let name = format!("s3://{bucket}/{key}");
    let bytes = Arc::new(ObjectSource {
        store: S3Store::new(stack.s3.clone()),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version: ObjectVersion::default(),
        size,
        runtime: tokio::runtime::Handle::current(),
    });
    let mut inputs = ModelInputs::default();
    let model_inputs = inputs.clone();
    let source_name = name.clone();
    let planned = tokio::task::spawn_blocking(move || {
        let source = Source::new(&source_name, bytes);
        let info = probe::probe_source(&source, PacketReads::IndexWherePossible)?;
        crate::model_input::plan_probed(&PathBuf::from(&source_name), &source, info, &model_inputs)
    })
    .await
    .context("the probe stopped abnormally")?
    .with_context(|| format!("{name}: cannot plan it"))?;
    planned.apply(&mut inputs, false);
    // The ladder and packaging asked for, as analyze will read them (checked there, with
    // everything else, before any work).
    let spec = args.settings.to_spec()?;
    let shown = |name: &str| {
        spec.get(name)
            .map(|value| value.as_str().map_or(value.to_string(), str::to_owned))
    };
    let (renditions, packaging) = (shown("renditions"), shown("packaging"));
    let projection = model::project(&inputs)?;
    if args.json {
        let mut json = serde_json::to_value(&projection)?;
        if let serde_json::Value::Object(fields) = &mut json {
            fields.insert("input".to_owned(), serde_json::to_value(&planned)?);
            fields.insert("dry_run".to_owned(), true.into());
            fields.insert("renditions".to_owned(), renditions.clone().into());
            fields.insert("packaging".to_owned(), packaging.clone().into());
        }
        outln!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        outln!("dry run on the {}: nothing is started", stack.target.label);
        for line in planned.describe() {
            outln!("{line}");
        }
        outln!(
            "renditions: {}; packaging: {}",
            renditions.as_deref().unwrap_or("one (no ladder)"),
            packaging
                .as_deref()
                .unwrap_or("none (a file per rendition)")
        );
        crate::bench_cli::print_projection(&projection);
    }
    Ok(ExitCode::SUCCESS)
}
