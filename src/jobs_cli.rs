//! `treemux submit`, `status` and `jobs`: jobs on a deployed or local stack
//! ([`crate::stack_cli`]).
//!
//! `submit` sends analyze a [`SubmitRequest`] (the object's exact version from a HEAD, a fresh
//! request id, the settings as a job spec holds them) as an upload's event is sent: Lambda's
//! asynchronous `Invoke` on AWS, the upload queue on the local stack. analyze resolves, checks and
//! records the settings exactly as for an upload; the job id is the request's
//! ([`SubmitRequest::job_id`]), so `submit` prints it at once, then waits for analyze's verdict on
//! the job record: RUNNING, or FAILED with the cause (exit 1). `status` reads the record until
//! the job ends; `jobs` lists the table's newest records. What they print is made by pure
//! functions of the records (tested below).

use crate::stack_cli::{StackArgs, StackClients, SubmitRoute};
use anyhow::{bail, Context as _};
use clap::Args;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use treemux_core::progress::ProgressSnapshot;
use treemux_core::state::{JobRecord, JobStatus, JobStore};
use treemux_functions::events::S3Event;
use treemux_functions::submit::SubmitRequest;

/// A job's settings as `transcode` takes them, plus a stack template and raw settings.
#[derive(Args, Debug, Default, Clone)]
pub(crate) struct SubmitSettings {
    /// Video codec: h264, h265, vp9 or av1.
    #[arg(long)]
    pub(crate) codec: Option<String>,
    /// Constant rate factor (quality; lower is better).
    #[arg(long, conflicts_with = "bitrate")]
    pub(crate) crf: Option<u32>,
    /// Target bitrate instead of constant quality, e.g. 2M or 800k.
    #[arg(long)]
    pub(crate) bitrate: Option<String>,
    /// The encoder's preset (x264/x265 names, libvpx cpu-used, SVT-AV1 preset number).
    #[arg(long)]
    pub(crate) preset: Option<String>,
    /// Output height in pixels (at most the source's unless --upscale).
    #[arg(long)]
    pub(crate) height: Option<u32>,
    /// Allow --height (or a --renditions rung) above the source's height.
    #[arg(long)]
    pub(crate) upscale: bool,
    /// Output container: mp4, mov, mkv or webm.
    #[arg(long)]
    pub(crate) container: Option<String>,
    /// An ABR ladder from one decode, as `transcode --renditions` takes it: heights, each with
    /// an optional rate (1080,720:crf=23,480:bitrate=1M); a file per rung, or a package.
    #[arg(long, value_name = "LADDER")]
    pub(crate) renditions: Option<String>,
    /// hls or dash: a package (master playlist or manifest, playlists, fragments) under the
    /// output prefix instead of one file per rendition.
    #[arg(long, value_name = "hls|dash")]
    pub(crate) packaging: Option<String>,
    /// One of the stack's named templates (its JobTemplates).
    #[arg(long)]
    pub(crate) template: Option<String>,
    /// Any job setting by name, as a job spec or `x-amz-meta-treemux-NAME` sets it.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub(crate) set: Vec<String>,
}

impl SubmitSettings {
    /// The settings as a job spec's JSON object; analyze checks them.
    pub(crate) fn to_spec(&self) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        let mut spec = serde_json::Map::new();
        let mut put = |name: &str, value: serde_json::Value| spec.insert(name.to_owned(), value);
        if let Some(codec) = &self.codec {
            put("codec", codec.as_str().into());
        }
        if let Some(crf) = self.crf {
            put("crf", crf.into());
        }
        if let Some(bitrate) = &self.bitrate {
            put("bitrate", bitrate.as_str().into());
        }
        if let Some(preset) = &self.preset {
            put("preset", preset.as_str().into());
        }
        if let Some(height) = self.height {
            put("height", height.into());
        }
        if self.upscale {
            put("upscale", true.into());
        }
        if let Some(container) = &self.container {
            put("container", container.as_str().into());
        }
        if let Some(renditions) = &self.renditions {
            put("renditions", renditions.as_str().into());
        }
        if let Some(packaging) = &self.packaging {
            put("packaging", packaging.as_str().into());
        }
        if let Some(template) = &self.template {
            put("template", template.as_str().into());
        }
        for setting in &self.set {
            let (name, value) = setting
                .split_once('=')
                .with_context(|| format!("--set {setting}: expected NAME=VALUE"))?;
            put(name.trim(), value.trim().into());
        }
        Ok(spec)
    }
}

#[derive(Args, Debug)]
pub(crate) struct SubmitArgs {
    /// The video, already in the stack's reach: s3://bucket/key.
    pub(crate) input: String,
    #[command(flatten)]
    pub(crate) settings: SubmitSettings,
    #[command(flatten)]
    pub(crate) stack: StackArgs,
    /// Print the plan and the projected time and cost (beside EC2) from the object's index,
    /// and start nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Return once the request is sent, without waiting for analyze's verdict.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// How long to wait for analyze's verdict, seconds.
    #[arg(long, default_value_t = 300)]
    pub(crate) wait_seconds: u64,
    /// JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// A job id, or s3://bucket/key (the key's newest job).
    pub(crate) job: String,
    #[command(flatten)]
    pub(crate) stack: StackArgs,
    /// Read the record once instead of following the job to its end.
    #[arg(long)]
    pub(crate) once: bool,
    /// Seconds between reads while following.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) interval: f64,
    /// The job record as JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct JobsArgs {
    #[command(flatten)]
    pub(crate) stack: StackArgs,
    /// How many of the newest jobs.
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: usize,
    /// The job records as a JSON array instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `s3://bucket/key` as (bucket, key).
pub(crate) fn parse_s3_uri(uri: &str) -> anyhow::Result<(String, String)> {
    uri.strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .map(|(bucket, key)| (bucket.to_owned(), key.to_owned()))
        .with_context(|| format!("{uri}: expected s3://bucket/key"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A request id unique to this submission: the time in nanoseconds and the process id.
fn request_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}", std::process::id())
}

pub(crate) fn submit_command(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(submit(args))
}

async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let (bucket, key) = parse_s3_uri(&args.input)?;
    let stack = args.stack.resolve().await?;
    let head = match stack
        .s3
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
    {
        Ok(head) => head,
        Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => {
            bail!(
                "s3://{bucket}/{key}: no such object on the {}",
                stack.target.label
            )
        }
        Err(error) => bail!(
            "s3://{bucket}/{key}: cannot read the object on the {}: {}",
            stack.target.label,
            aws_sdk_s3::error::DisplayErrorContext(error)
        ),
    };
    if args.dry_run {
        let size = head.content_length().unwrap_or(0).max(0) as u64;
        return crate::dry_run::dry_run(&stack, &bucket, &key, size, &args).await;
    }
    let request = SubmitRequest {
        bucket: bucket.clone(),
        key: key.clone(),
        version_id: head.version_id().map(str::to_owned),
        e_tag: head.e_tag().map(str::to_owned),
        request_id: request_id(),
        settings: args.settings.to_spec()?,
    };
    let job_id = request.job_id();
    let event = serde_json::to_string(&S3Event {
        submit: Some(Box::new(request)),
        ..S3Event::default()
    })?;
    send(&stack, &event).await?;
    if !args.json {
        outln!("{job_id}");
    }
    if args.no_wait {
        if args.json {
            outln!(
                "{}",
                serde_json::json!({ "job_id": job_id, "status": "SUBMITTED" })
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let record = wait_for_verdict(&stack, &job_id, Duration::from_secs(args.wait_seconds)).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&record)?);
    }
    match record.status {
        JobStatus::Failed => {
            errln!(
                "treemux: error: job {job_id} FAILED before any work: {}",
                record.error.as_deref().unwrap_or("no cause recorded")
            );
            Ok(ExitCode::FAILURE)
        }
        status => {
            if !args.json {
                errln!(
                    "job {job_id} {}: {} segments, {} merges; follow it with `treemux status {job_id}`",
                    status.name(),
                    record.segments,
                    record.merges
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Sends analyze the event the way the stack invokes it for an upload.
async fn send(stack: &StackClients, event: &str) -> anyhow::Result<()> {
    match &stack.target.submit {
        SubmitRoute::AnalyzeFunction(function) => {
            aws_sdk_lambda::Client::new(&stack.sdk)
                .invoke()
                .function_name(function)
                .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
                .payload(aws_sdk_lambda::primitives::Blob::new(event.as_bytes()))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_lambda::error::DisplayErrorContext(e)))
                .with_context(|| format!("{}: cannot invoke {function}", stack.target.label))?;
        }
        SubmitRoute::UploadQueue(queue) => {
            aws_sdk_sqs::Client::new(&stack.sdk)
                .send_message()
                .queue_url(queue)
                .message_body(event)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))
                .with_context(|| format!("{}: cannot send to {queue}", stack.target.label))?;
        }
    }
    Ok(())
}

/// Reads the job record until analyze has decided (the job is past CREATED).
async fn wait_for_verdict(
    stack: &StackClients,
    job_id: &str,
    limit: Duration,
) -> anyhow::Result<JobRecord> {
    let started = Instant::now();
    loop {
        if let Some(record) = stack.store.get_job(job_id).await? {
            if record.status != JobStatus::Created {
                return Ok(record);
            }
        }
        if started.elapsed() > limit {
            bail!(
                "job {job_id}: analyze has not decided within {} s (is the {} running its worker?); `treemux status {job_id}` reads it later",
                limit.as_secs(),
                stack.target.label
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(crate) fn status_command(args: StatusArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(status(args))
}

async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let stack = args.stack.resolve().await?;
    let job_id = if args.job.starts_with("s3://") {
        let (bucket, key) = parse_s3_uri(&args.job)?;
        stack
            .store
            .latest_job(&bucket, &key)
            .await?
            .with_context(|| format!("s3://{bucket}/{key}: no job on the {}", stack.target.label))?
    } else {
        args.job.clone()
    };
    let read = |id: String| {
        let store = stack.store.clone();
        let label = stack.target.label.clone();
        async move {
            store
                .get_job(&id)
                .await?
                .with_context(|| format!("job {id}: no such job on the {label}"))
        }
    };
    let interval = Duration::from_secs_f64(args.interval.max(0.2));
    let mut record = read(job_id.clone()).await?;
    let mut last_line = String::new();
    while !args.once && !record.status.is_final() {
        if !args.json {
            let line = progress_line(&record, now());
            if line != last_line {
                errln!("{line}");
                last_line = line;
            }
        }
        tokio::time::sleep(interval).await;
        record = read(job_id.clone()).await?;
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        for line in summary(&record, now()) {
            outln!("{line}");
        }
    }
    Ok(match record.status {
        JobStatus::Failed | JobStatus::Superseded => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

pub(crate) fn jobs_command(args: JobsArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let stack = args.stack.resolve().await?;
        let jobs = stack.store.recent_jobs(args.limit).await?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&jobs)?);
        } else {
            for line in jobs_table(&jobs, now()) {
                outln!("{line}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A running job's line: state, segments, merges, percentage, ETA (the command line's
/// progress line over the record's counts, timed from the record's creation).
pub(crate) fn progress_line(record: &JobRecord, now: u64) -> String {
    let snapshot = ProgressSnapshot {
        counts: record.progress,
        duration_seconds: 0.0,
        elapsed_seconds: now.saturating_sub(record.created_at) as f64,
        muxing: false,
    };
    format!("{} {}", record.status.name(), snapshot.line(120))
}

/// What `status` prints at the end (or with `--once`): the job, its state, its output and
/// timings, or why it stopped.
pub(crate) fn summary(record: &JobRecord, now: u64) -> Vec<String> {
    let mut lines = vec![format!(
        "job {} {}: {} -> {}",
        record.job_id,
        record.status.name(),
        record.source,
        record.output
    )];
    match record.status {
        JobStatus::Succeeded => {
            if record.result.outputs.is_empty() {
                lines.push(format!(
                    "output: {} ({} bytes)",
                    record.output, record.result.output_bytes
                ));
            } else {
                // Every rendition's object, or every object of a package (the manifest first).
                lines.push(format!(
                    "outputs: {} objects, {} bytes",
                    record.result.outputs.len(),
                    record.result.output_bytes
                ));
                lines.extend(
                    record
                        .result
                        .outputs
                        .iter()
                        .map(|o| format!("  {} ({} bytes)", o.name, o.bytes)),
                );
            }
            lines.extend(
                record
                    .result
                    .thumbnails
                    .iter()
                    .map(|file| format!("thumbnail: {} ({} bytes)", file.name, file.bytes)),
            );
            lines.extend(
                record
                    .result
                    .warnings
                    .iter()
                    .map(|w| format!("warning: {w}")),
            );
        }
        JobStatus::Failed | JobStatus::Superseded => {
            lines.push(format!(
                "cause: {}",
                record.error.as_deref().unwrap_or("none recorded")
            ));
        }
        JobStatus::Created | JobStatus::Running => lines.push(progress_line(record, now)),
    }
    if !record.stage_seconds.is_empty() {
        let stages: Vec<String> = record
            .stage_seconds
            .iter()
            .map(|(stage, seconds)| format!("{} {seconds:.1} s", stage.name()))
            .collect();
        lines.push(format!(
            "timings: {}; {} s from submission to the last change",
            stages.join(", "),
            record.updated_at.saturating_sub(record.created_at)
        ));
    }
    lines
}

/// `jobs`' table: job, state, input, output, age.
pub(crate) fn jobs_table(jobs: &[JobRecord], now: u64) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<24}  {:<10}  {:>6}  {} -> {}",
        "JOB", "STATE", "AGE", "INPUT", "OUTPUT"
    )];
    lines.extend(jobs.iter().map(|job| {
        format!(
            "{:<24}  {:<10}  {:>6}  {} -> {}",
            job.job_id,
            job.status.name(),
            age(now.saturating_sub(job.created_at)),
            job.source,
            job.output
        )
    }));
    lines
}

/// `42s`, `5m`, `3h`, `2d`.
fn age(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use treemux_core::names::Stage;
    use treemux_core::progress::ProgressCounts;

    fn record(status: JobStatus) -> JobRecord {
        let mut record: JobRecord = serde_json::from_value(serde_json::json!({
            "job_id": "ab12", "status": "RUNNING", "source": "s3://in/a.mp4",
            "output": "s3://out/transcoded/a.mp4.mp4", "segments": 4, "merges": 3,
            "segments_done": [], "merges_done": [], "merge_runs": 0, "stage_seconds": {},
            "error": null, "created_at": 1000, "updated_at": 1030
        }))
        .expect("a record");
        record.status = status;
        record
    }

    #[test]
    fn the_settings_become_a_job_spec() {
        let settings = SubmitSettings {
            crf: Some(20),
            height: Some(720),
            upscale: true,
            template: Some("web".into()),
            renditions: Some("720,480:crf=30".into()),
            packaging: Some("hls".into()),
            set: vec!["colour = red".into()],
            ..SubmitSettings::default()
        };
        let spec = settings.to_spec().expect("spec");
        assert_eq!(
            serde_json::Value::Object(spec),
            serde_json::json!({"crf": 20, "height": 720, "upscale": true, "template": "web",
                "renditions": "720,480:crf=30", "packaging": "hls", "colour": "red"})
        );
        let bad = SubmitSettings {
            set: vec!["colour".into()],
            ..SubmitSettings::default()
        };
        assert!(bad.to_spec().is_err());
    }

    #[test]
    fn uris_name_a_bucket_and_a_key() {
        assert_eq!(
            parse_s3_uri("s3://in/uploads/a b.mp4").expect("uri"),
            ("in".to_owned(), "uploads/a b.mp4".to_owned())
        );
        for bad in ["in/a.mp4", "s3://in", "s3:///a.mp4", "s3://in/"] {
            assert!(parse_s3_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_running_job_shows_segments_merges_percent_and_eta() {
        let mut running = record(JobStatus::Running);
        running.progress = ProgressCounts {
            frames_done: 50,
            frames_total: 100,
            segments_done: 2,
            segments_total: 4,
            merges_done: 1,
            merges_total: 3,
        };
        let line = progress_line(&running, 1010);
        for part in [
            "RUNNING",
            "frame 50/100",
            "50%",
            "seg 2/4",
            "merge 1/3",
            "ETA 0:00:10",
        ] {
            assert!(line.contains(part), "{part:?} in {line:?}");
        }
    }

    #[test]
    fn a_finished_job_shows_its_output_and_timings() {
        let mut done = record(JobStatus::Succeeded);
        done.result.output_bytes = 12345;
        done.stage_seconds.insert(Stage::Convert, 12.5);
        let lines = summary(&done, 2000);
        assert!(lines[0].contains("SUCCEEDED"), "{lines:?}");
        assert!(lines[1].contains("(12345 bytes)"), "{lines:?}");
        assert!(
            lines[2].contains("convert 12.5 s") && lines[2].contains("30 s"),
            "{lines:?}"
        );
        // A ladder or a package: every object with its size.
        done.result.outputs = vec![
            treemux_core::summary::OutputFile {
                name: "s3://out/t/a.mp4/master.m3u8".into(),
                bytes: 345,
            },
            treemux_core::summary::OutputFile {
                name: "s3://out/t/a.mp4/v0/init.mp4".into(),
                bytes: 12000,
            },
        ];
        let lines = summary(&done, 2000);
        assert_eq!(lines[1], "outputs: 2 objects, 12345 bytes");
        assert_eq!(lines[2], "  s3://out/t/a.mp4/master.m3u8 (345 bytes)");
        assert_eq!(lines[3], "  s3://out/t/a.mp4/v0/init.mp4 (12000 bytes)");
        let mut failed = record(JobStatus::Failed);
        failed.error = Some("TreemuxInvalidInput: bad".into());
        assert_eq!(summary(&failed, 2000)[1], "cause: TreemuxInvalidInput: bad");
    }

    #[test]
    fn the_jobs_table_has_state_input_output_and_age() {
        let lines = jobs_table(&[record(JobStatus::Running)], 1000 + 7200);
        assert!(lines[0].starts_with("JOB"));
        for part in ["ab12", "RUNNING", "2h", "s3://in/a.mp4 -> s3://out/"] {
            assert!(lines[1].contains(part), "{part:?} in {:?}", lines[1]);
        }
    }
}
