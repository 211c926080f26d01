//! AWS implementations of the ports, and the configuration the binaries read.
//!
//! DynamoDB layout (one table, `pk`/`sk` string keys, TTL attribute `expires_at`, and `kind`
//! naming the item type so a scan can filter):
//! - job record: `pk = job#<id>`, `sk = job`, `kind = job`: every [`JobRecord`] field as its
//!   own attribute (`status`, `source`, `output`, `segments`, `segments_done`, `error`, …),
//!   readable with `aws dynamodb get-item`; plus `version` for optimistic updates;
//! - newest job per input key: `pk = key#<bucket>/<key>`, `sk = latest`, `kind = latest`, with
//!   `job_id`, `source` and `upload_order` (see [`JobStore::claim_latest`]);
//! - pair record: `pk = job#<id>`, `sk = pair#<level>#<index>`, `kind = pair`, with
//!   `confirmed` (string set of `left`/`right`), `claimed_by` and `merged`.
//!
//! Every write sets `expires_at` so finished jobs disappear on their own.

use crate::handlers::Config;
use crate::ports::ObjectVersion;
use crate::ports::{ExecutionStarter, ObjectError, ObjectStore, StartError};
use crate::upload::MultipartStore;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use treemux_core::plan::PlanOptions;
use treemux_core::settings::{EncodeSettings, RateControl, VideoCodec};
use treemux_core::state::{
    apply_job_update, ClaimOutcome, JobRecord, JobStore, JobUpdate, LatestClaim, StateError,
    StateStore,
};
use treemux_core::tree::{MergeTree, NodeId, Side};

/// Loads the SDK configuration from the environment (`AWS_ENDPOINT_URL` points every client at
/// a local stack).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// An S3 client; path-style addressing when the endpoint is overridden (local stacks).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build(),
    )
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The handlers' configuration from the environment:
/// `TREEMUX_SCRATCH_DIR` (the EFS mount), `TREEMUX_OUTPUT_BUCKET`, `TREEMUX_OUTPUT_PREFIX`
/// (default `transcoded/`), `TREEMUX_CODEC` (h264), `TREEMUX_CRF` or `TREEMUX_BITRATE` (e.g. `2M`),
/// `TREEMUX_PRESET`, `TREEMUX_HEIGHT` (empty or unset: the codec's defaults, the source's height),
/// `TREEMUX_UPSCALE` (`1`: allow a height above the source's),
/// `TREEMUX_THREADS` (default: the vCPUs), `TREEMUX_MAX_SEGMENTS` (default 1024),
/// `TREEMUX_MIN_SEGMENT_SECONDS` (default 4).
pub fn config_from_env() -> Result<Config, String> {
    let settings = encode_settings_from(|name| std::env::var(name).ok())?;
    config_with(settings)
}

/// The encode settings from `TREEMUX_CODEC`, `TREEMUX_CRF`, `TREEMUX_BITRATE`, `TREEMUX_PRESET`
/// and `TREEMUX_HEIGHT` as `var` reads them. An empty value counts as unset: the template passes
/// its empty parameter defaults through, meaning "the codec's default".
fn encode_settings_from(var: impl Fn(&str) -> Option<String>) -> Result<EncodeSettings, String> {
    let set = |name: &str| var(name).filter(|value| !value.trim().is_empty());
    let codec_name = set("TREEMUX_CODEC").unwrap_or_else(|| "h264".to_owned());
    let codec = VideoCodec::parse(&codec_name)
        .ok_or_else(|| format!("TREEMUX_CODEC={codec_name}: expected h264, h265, vp9 or av1"))?;
    let mut settings = EncodeSettings::new(codec);
    match (set("TREEMUX_CRF"), set("TREEMUX_BITRATE")) {
        (Some(crf), Some(bitrate)) => {
            return Err(format!(
                "TREEMUX_CRF={crf} and TREEMUX_BITRATE={bitrate}: set one of them"
            ))
        }
        (Some(crf), None) => {
            settings.rate = RateControl::Crf(
                crf.parse()
                    .map_err(|_| format!("TREEMUX_CRF={crf}: expected a whole number"))?,
            );
        }
        (None, Some(bitrate)) => {
            settings.rate =
                RateControl::Bitrate(treemux_core::settings::parse_bitrate(&bitrate).ok_or_else(
                    || format!("TREEMUX_BITRATE={bitrate}: expected a rate such as 2M or 800k"),
                )?);
        }
        (None, None) => {}
    }
    if let Some(preset) = set("TREEMUX_PRESET") {
        settings.preset = preset;
    }
    if let Some(height) = set("TREEMUX_HEIGHT") {
        settings.height = Some(
            height
                .parse()
                .map_err(|_| format!("TREEMUX_HEIGHT={height}: expected pixels"))?,
        );
    }
    settings.upscale = env_or("TREEMUX_UPSCALE", "0") == "1";
    Ok(settings)
}

/// The rest of the configuration from the environment, around `settings`.
fn config_with(mut settings: EncodeSettings) -> Result<Config, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    settings.threads = env_or("TREEMUX_THREADS", &cores.to_string())
        .parse()
        .map_err(|_| "TREEMUX_THREADS: expected a number".to_owned())?;
    settings.validate()?;
    let max_segments: u32 = env_or("TREEMUX_MAX_SEGMENTS", "1024")
        .parse()
        .map_err(|_| "TREEMUX_MAX_SEGMENTS: expected a number".to_owned())?;
    let min_segment_seconds: f64 = env_or("TREEMUX_MIN_SEGMENT_SECONDS", "4")
        .parse()
        .map_err(|_| "TREEMUX_MIN_SEGMENT_SECONDS: expected seconds".to_owned())?;
    Ok(Config {
        scratch_root: PathBuf::from(env("TREEMUX_SCRATCH_DIR")?),
        output_bucket: env("TREEMUX_OUTPUT_BUCKET")?,
        output_prefix: env_or("TREEMUX_OUTPUT_PREFIX", "transcoded/"),
        settings,
        plan: PlanOptions {
            max_segments,
            min_segment_seconds,
            ..PlanOptions::default()
        },
        crashes: Default::default(),
    })
}

/// S3 as an [`ObjectStore`].
#[derive(Clone, Debug)]
pub struct S3Store {
    pub client: aws_sdk_s3::Client,
    /// Files larger than this go up as a multipart upload (bytes).
    pub multipart_threshold: u64,
    /// Multipart part size before the 10,000-part limit raises it (bytes; S3's minimum is 5 MiB).
    pub part_bytes: u64,
}

/// Default [`S3Store::multipart_threshold`]: a single PUT is limited to 5 GiB and uses one
/// connection; parts go up four at a time.
pub const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
/// Default [`S3Store::part_bytes`].
pub const PART_BYTES: u64 = 64 * 1024 * 1024;
/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;
/// Parts in flight at once per upload.
const PARALLEL_PARTS: usize = 4;

impl S3Store {
    /// A store with the default multipart settings.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self {
            client,
            multipart_threshold: MULTIPART_THRESHOLD,
            part_bytes: PART_BYTES,
        }
    }

    /// A file in parts, over the same multipart calls the streamed output uses
    /// ([`MultipartStore`]): parts read straight from the file, the upload aborted when it fails.
    async fn put_multipart(
        &self,
        path: &Path,
        size: u64,
        bucket: &str,
        key: &str,
    ) -> Result<(), ObjectError> {
        let upload_id = self.create_upload(bucket, key).await?;
        let completed = match self.upload_parts(path, size, bucket, key, &upload_id).await {
            Ok(parts) => self.complete_upload(bucket, key, &upload_id, &parts).await,
            Err(error) => Err(error),
        };
        if completed.is_err() {
            // Uploaded parts are billed until aborted. Best effort: the bucket's lifecycle rule
            // for incomplete uploads is the backstop.
            let _ = self.abort_upload(bucket, key, &upload_id).await;
        }
        completed
    }

    async fn upload_parts(
        &self,
        path: &Path,
        size: u64,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<(i32, String)>, ObjectError> {
        let ranges = part_ranges(size, self.part_bytes);
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(PARALLEL_PARTS));
        let mut tasks = tokio::task::JoinSet::new();
        for (index, (offset, length)) in ranges.into_iter().enumerate() {
            let part_number = index as i32 + 1;
            let (client, path, bucket, key, upload_id) = (
                self.client.clone(),
                path.to_owned(),
                bucket.to_owned(),
                key.to_owned(),
                upload_id.to_owned(),
            );
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
                let body = aws_sdk_s3::primitives::ByteStream::read_from()
                    .path(&path)
                    .offset(offset)
                    .length(aws_sdk_s3::primitives::Length::Exact(length))
                    .build()
                    .await
                    .map_err(|e| format!("part {part_number}: {e}"))?;
                let response = client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(part_number)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "part {part_number}: {}",
                            aws_sdk_s3::error::DisplayErrorContext(e)
                        )
                    })?;
                Ok::<_, String>((part_number, response.e_tag().unwrap_or_default().to_owned()))
            });
        }
        let mut parts = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let part = joined
                .map_err(|e| e.to_string())
                .and_then(|part| part)
                .map_err(|message| ObjectError::Failed {
                    bucket: bucket.into(),
                    key: key.into(),
                    message,
                })?;
            parts.push(part);
        }
        parts.sort_by_key(|(number, _)| *number);
        Ok(parts)
    }
}

/// The `(offset, length)` byte ranges of a multipart upload of `size` bytes: `part_bytes` each
/// (raised so there are at most 10,000), the last one shorter. Empty for an empty file.
pub fn part_ranges(size: u64, part_bytes: u64) -> Vec<(u64, u64)> {
    let part = part_bytes.max(1).max(size.div_ceil(MAX_PARTS));
    (0..size.div_ceil(part))
        .map(|index| {
            let offset = index * part;
            (offset, part.min(size - offset))
        })
        .collect()
}

/// What a failed GetObject means to treemux.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetFailure {
    /// Nothing to read: 404 (`NoSuchKey`, `NoSuchVersion`), or 403, which is what S3 answers
    /// for a missing key to a reader without `s3:ListBucket` (the functions are not granted it).
    /// Permanent: retrying cannot bring the upload back.
    NotFound,
    /// 412 `PreconditionFailed`: the key holds other bytes than the event announced.
    Changed,
    /// Anything else (throttling, 5xx, network): worth retrying.
    Other,
}

/// Classifies a failed GetObject by HTTP status and S3 error code.
pub fn classify_get_failure(status: Option<u16>, code: Option<&str>) -> GetFailure {
    match (status, code) {
        (_, Some("NoSuchKey" | "NoSuchVersion" | "AccessDenied")) | (Some(403 | 404), _) => {
            GetFailure::NotFound
        }
        (_, Some("PreconditionFailed")) | (Some(412), _) => GetFailure::Changed,
        _ => GetFailure::Other,
    }
}

/// S3 error codes of a write that retrying cannot change: the output bucket is missing, or the
/// role may not write there.
pub const REFUSED_PUT_CODES: [&str; 5] = [
    "NoSuchBucket",
    "AccessDenied",
    "InvalidBucketName",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
];

/// A failed write to `s3://bucket/key` as an [`ObjectError`], by S3's error code.
pub fn put_error(bucket: &str, key: &str, code: Option<&str>, message: String) -> ObjectError {
    let (bucket, key) = (bucket.to_owned(), key.to_owned());
    if code.is_some_and(|code| REFUSED_PUT_CODES.contains(&code)) {
        ObjectError::Refused {
            bucket,
            key,
            message,
        }
    } else {
        ObjectError::Failed {
            bucket,
            key,
            message,
        }
    }
}

/// [`put_error`] of an SDK error.
fn put_failure<E, R>(
    bucket: &str,
    key: &str,
    error: aws_sdk_s3::error::SdkError<E, R>,
) -> ObjectError
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = error
        .as_service_error()
        .and_then(|e| e.code())
        .map(str::to_owned);
    put_error(
        bucket,
        key,
        code.as_deref(),
        aws_sdk_s3::error::DisplayErrorContext(error).to_string(),
    )
}

/// The [`ObjectError`] for a failed read of `version`.
fn object_error(
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    failure: GetFailure,
    message: String,
) -> ObjectError {
    match failure {
        GetFailure::NotFound => ObjectError::NotFound {
            bucket: bucket.into(),
            key: key.into(),
        },
        GetFailure::Changed => ObjectError::Changed {
            bucket: bucket.into(),
            key: key.into(),
            expected: version.label().to_owned(),
        },
        GetFailure::Other => ObjectError::Failed {
            bucket: bucket.into(),
            key: key.into(),
            message,
        },
    }
}

impl ObjectStore for S3Store {
    async fn get_to_path(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
        path: &Path,
    ) -> Result<u64, ObjectError> {
        let failed = |message: String| ObjectError::Failed {
            bucket: bucket.into(),
            key: key.into(),
            message,
        };
        // Exactly the announced object: its version id where the bucket is versioned, else
        // only while the key still holds the announced ETag.
        let request = match (&version.version_id, &version.e_tag) {
            (Some(version_id), _) => self.client.get_object().version_id(version_id),
            (None, Some(e_tag)) => self
                .client
                .get_object()
                .if_match(format!("\"{}\"", e_tag.trim_matches('"'))),
            (None, None) => self.client.get_object(),
        };
        let response = match request.bucket(bucket).key(key).send().await {
            Ok(response) => response,
            Err(error) => {
                use aws_sdk_s3::error::ProvideErrorMetadata as _;
                let status = error.raw_response().map(|r| r.status().as_u16());
                let code = error.as_service_error().and_then(|e| e.code());
                return Err(match classify_get_failure(status, code) {
                    GetFailure::NotFound => ObjectError::NotFound {
                        bucket: bucket.into(),
                        key: key.into(),
                    },
                    GetFailure::Changed => ObjectError::Changed {
                        bucket: bucket.into(),
                        key: key.into(),
                        expected: version.label().to_owned(),
                    },
                    GetFailure::Other => {
                        failed(aws_sdk_s3::error::DisplayErrorContext(error).to_string())
                    }
                });
            }
        };
        let local = |source| ObjectError::Local {
            path: path.to_owned(),
            source,
        };
        let (file, partial) = crate::ports::partial_beside(path).map_err(local)?;
        let mut file = tokio::fs::File::from_std(file);
        let mut body = response.body.into_async_read();
        let downloaded = async {
            let bytes = tokio::io::copy(&mut body, &mut file).await?;
            tokio::io::AsyncWriteExt::flush(&mut file).await?;
            tokio::fs::rename(&partial, path).await?;
            Ok(bytes)
        }
        .await;
        if downloaded.is_err() {
            // A broken download leaves nothing that could be mistaken for the source.
            let _ = tokio::fs::remove_file(&partial).await;
        }
        downloaded.map_err(local)
    }

    async fn put_from_path(&self, path: &Path, bucket: &str, key: &str) -> Result<(), ObjectError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|source| ObjectError::Local {
                path: path.to_owned(),
                source,
            })?
            .len();
        if size > self.multipart_threshold {
            return self.put_multipart(path, size, bucket, key).await;
        }
        let body = aws_sdk_s3::primitives::ByteStream::from_path(path)
            .await
            .map_err(|e| ObjectError::Failed {
                bucket: bucket.into(),
                key: key.into(),
                message: e.to_string(),
            })?;
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .content_type("video/mp4")
            .send()
            .await
            .map_err(|e| put_failure(bucket, key, e))?;
        Ok(())
    }

    async fn size(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
    ) -> Result<u64, ObjectError> {
        let request = match (&version.version_id, &version.e_tag) {
            (Some(version_id), _) => self.client.head_object().version_id(version_id),
            (None, Some(e_tag)) => self
                .client
                .head_object()
                .if_match(format!("\"{}\"", e_tag.trim_matches('"'))),
            (None, None) => self.client.head_object(),
        };
        match request.bucket(bucket).key(key).send().await {
            Ok(head) => Ok(head.content_length().unwrap_or(0).max(0) as u64),
            Err(error) => {
                let status = error.raw_response().map(|r| r.status().as_u16());
                Err(object_error(
                    bucket,
                    key,
                    version,
                    classify_get_failure(status, None),
                    aws_sdk_s3::error::DisplayErrorContext(error).to_string(),
                ))
            }
        }
    }

    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ObjectError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        // The same exact version as a whole read: its version id, else only while the key
        // still holds the announced ETag (412 otherwise).
        let request = match (&version.version_id, &version.e_tag) {
            (Some(version_id), _) => self.client.get_object().version_id(version_id),
            (None, Some(e_tag)) => self
                .client
                .get_object()
                .if_match(format!("\"{}\"", e_tag.trim_matches('"'))),
            (None, None) => self.client.get_object(),
        };
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let response = match request.bucket(bucket).key(key).range(range).send().await {
            Ok(response) => response,
            Err(error) => {
                use aws_sdk_s3::error::ProvideErrorMetadata as _;
                let status = error.raw_response().map(|r| r.status().as_u16());
                // A range past the end: nothing there.
                if status == Some(416) {
                    return Ok(Vec::new());
                }
                let code = error.as_service_error().and_then(|e| e.code());
                let failure = classify_get_failure(status, code);
                return Err(object_error(
                    bucket,
                    key,
                    version,
                    failure,
                    aws_sdk_s3::error::DisplayErrorContext(error).to_string(),
                ));
            }
        };
        let bytes = response
            .body
            .collect()
            .await
            .map_err(|e| ObjectError::Failed {
                bucket: bucket.into(),
                key: key.into(),
                message: e.to_string(),
            })?
            .into_bytes();
        // A store that ignored the range would hand back the whole object.
        let mut bytes = bytes.to_vec();
        bytes.truncate(len as usize);
        Ok(bytes)
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, ObjectError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            Err(error) => Err(ObjectError::Failed {
                bucket: bucket.into(),
                key: key.into(),
                message: aws_sdk_s3::error::DisplayErrorContext(error).to_string(),
            }),
        }
    }
}

/// Step Functions as an [`ExecutionStarter`].
#[derive(Clone, Debug)]
pub struct SfnStarter {
    pub client: aws_sdk_sfn::Client,
    pub state_machine_arn: String,
}

/// Step Functions' `StartExecution` error codes that retrying the same request cannot change:
/// the state machine, the name, the input or the role is wrong. Anything else (throttling,
/// `ExecutionLimitExceeded`, service and network errors) is worth retrying.
pub const REFUSED_START_CODES: [&str; 9] = [
    "InvalidArn",
    "InvalidExecutionInput",
    "InvalidName",
    "StateMachineDoesNotExist",
    "StateMachineDeleting",
    "ValidationException",
    "AccessDeniedException",
    "KmsAccessDeniedException",
    "KmsInvalidStateException",
];

/// DynamoDB error codes that retrying the same request cannot change: a missing table, a
/// malformed request, a role without the permission. (Conditional check failures are answers,
/// handled where they are expected; throttling and service errors are worth retrying.)
pub const REFUSED_DYNAMODB_CODES: [&str; 5] = [
    "ValidationException",
    "ResourceNotFoundException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "SerializationException",
];

/// A failed `StartExecution` as a [`StartError`], by the service's error code.
pub fn start_error(name: &str, code: Option<&str>, message: String) -> StartError {
    let name = name.to_owned();
    if code.is_some_and(|code| REFUSED_START_CODES.contains(&code)) {
        StartError::Refused { name, message }
    } else {
        StartError::Unavailable { name, message }
    }
}

/// A failed DynamoDB request as a [`StateError`], by the service's error code.
pub fn store_error(code: Option<&str>, message: String) -> StateError {
    if code.is_some_and(|code| REFUSED_DYNAMODB_CODES.contains(&code)) {
        StateError::Refused(message)
    } else {
        StateError::Unavailable(message)
    }
}

impl ExecutionStarter for SfnStarter {
    async fn start(&self, name: &str, input: &str) -> Result<(), StartError> {
        match self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Same name, same input: the execution is already there.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_execution_already_exists()) =>
            {
                Ok(())
            }
            Err(error) => {
                use aws_sdk_sfn::error::ProvideErrorMetadata as _;
                let code = error
                    .as_service_error()
                    .and_then(|e| e.code())
                    .map(str::to_owned);
                let message = aws_sdk_sfn::error::DisplayErrorContext(error).to_string();
                Err(start_error(name, code.as_deref(), message))
            }
        }
    }
}

/// DynamoDB as the [`StateStore`] and [`JobStore`].
#[derive(Clone, Debug)]
pub struct DynamoStore {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
    /// How long items live after their last write, in seconds.
    pub ttl_seconds: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Left => "left",
        Side::Right => "right",
    }
}

/// A DynamoDB request's failure, classified by [`store_error`].
fn unavailable<E, R>(error: SdkError<E, R>) -> StateError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = error
        .as_service_error()
        .and_then(|e| e.code())
        .map(str::to_owned);
    store_error(
        code.as_deref(),
        aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string(),
    )
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

impl DynamoStore {
    fn job_key(job: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(format!("job#{job}"))),
            ("sk".to_owned(), s("job")),
        ])
    }

    fn pair_key(job: &str, pair: NodeId) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(format!("job#{job}"))),
            (
                "sk".to_owned(),
                s(format!("pair#{}#{}", pair.level, pair.index)),
            ),
        ])
    }

    fn expires(&self) -> AttributeValue {
        n(now() + self.ttl_seconds)
    }

    async fn add_confirmation(
        &self,
        job: &str,
        pair: NodeId,
        side: Side,
    ) -> Result<BTreeSet<Side>, StateError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::pair_key(job, pair)))
            .update_expression("ADD confirmed :side SET expires_at = :expires, kind = :kind")
            .expression_attribute_values(
                ":side",
                AttributeValue::Ss(vec![side_name(side).to_owned()]),
            )
            .expression_attribute_values(":kind", s("pair"))
            .expression_attribute_values(":expires", self.expires())
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(unavailable)?;
        let confirmed = output
            .attributes()
            .and_then(|a| a.get("confirmed"))
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default();
        Ok(confirmed
            .iter()
            .filter_map(|name| match name.as_str() {
                "left" => Some(Side::Left),
                "right" => Some(Side::Right),
                _ => None,
            })
            .collect())
    }
}

impl StateStore for DynamoStore {
    async fn create_pairs(&self, job: &str, tree: &MergeTree) -> Result<(), StateError> {
        // Pair records appear with their first confirmation; only the placeholder confirmations
        // are written ahead (at most one per level).
        for (pair, side) in tree.initial_confirmations() {
            self.add_confirmation(job, pair, side).await?;
        }
        Ok(())
    }

    async fn confirm_child(
        &self,
        job: &str,
        pair: NodeId,
        side: Side,
    ) -> Result<BTreeSet<Side>, StateError> {
        self.add_confirmation(job, pair, side).await
    }

    async fn claim_merge(
        &self,
        job: &str,
        pair: NodeId,
        claimant: &str,
    ) -> Result<ClaimOutcome, StateError> {
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::pair_key(job, pair)))
            .update_expression("SET claimed_by = :claimant, expires_at = :expires")
            .condition_expression("(attribute_not_exists(claimed_by) OR claimed_by = :claimant) AND attribute_not_exists(merged)")
            .expression_attribute_values(":claimant", s(claimant))
            .expression_attribute_values(":expires", self.expires())
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(ClaimOutcome::Won),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let item = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(Self::pair_key(job, pair)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(unavailable)?;
                let attributes = item.item().cloned().unwrap_or_default();
                if attributes
                    .get("merged")
                    .and_then(|v| v.as_bool().ok())
                    .copied()
                    .unwrap_or(false)
                {
                    Ok(ClaimOutcome::AlreadyMerged)
                } else {
                    let holder = attributes
                        .get("claimed_by")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default();
                    Ok(ClaimOutcome::Lost { holder })
                }
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn mark_merged(&self, job: &str, pair: NodeId, claimant: &str) -> Result<(), StateError> {
        let marked = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::pair_key(job, pair)))
            .update_expression("SET merged = :yes, expires_at = :expires")
            .condition_expression("claimed_by = :claimant")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":claimant", s(claimant))
            .expression_attribute_values(":expires", self.expires())
            .send()
            .await;
        match marked {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StateError::NotClaimant {
                    job: job.to_owned(),
                    pair,
                    by: claimant.to_owned(),
                    holder: None,
                })
            }
            Err(error) => Err(unavailable(error)),
        }
    }
}

/// The job record is kept as one attribute per field (so `aws dynamodb get-item` shows it as
/// it is), updated by read-modify-write with an optimistic `version` check, so the rules of
/// [`apply_job_update`] are the only rules.
impl JobStore for DynamoStore {
    async fn create_job(&self, record: &JobRecord) -> Result<bool, StateError> {
        let item = self.job_item(record, 0)?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn get_job(&self, job_id: &str) -> Result<Option<JobRecord>, StateError> {
        Ok(self.read_job(job_id).await?.map(|(record, _)| record))
    }

    async fn update_job(
        &self,
        job_id: &str,
        update: &JobUpdate,
        now: u64,
    ) -> Result<(), StateError> {
        // Concurrent tasks update the same record; retry the optimistic write a bounded number
        // of times (each attempt re-reads), backing off with full jitter so that a crowd of
        // tasks finishing together (a wide Map) spreads out instead of colliding again.
        for attempt in 0..UPDATE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(update_backoff(attempt)).await;
            }
            let Some((mut record, version)) = self.read_job(job_id).await? else {
                return Err(StateError::MissingJob {
                    job: job_id.to_owned(),
                });
            };
            apply_job_update(&mut record, update, now);
            // UpdateItem, not PutItem: the task functions are granted only UpdateItem on the
            // table (infra/template.yaml). Every field is set; none is ever removed.
            let mut fields = self.job_item(&record, version + 1)?;
            fields.remove("pk");
            fields.remove("sk");
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::job_key(job_id)))
                .condition_expression("#version = :version")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":version", n(version));
            let mut assignments = Vec::with_capacity(fields.len());
            for (index, (name, value)) in fields.into_iter().enumerate() {
                assignments.push(format!("#f{index} = :f{index}"));
                request = request
                    .expression_attribute_names(format!("#f{index}"), name)
                    .expression_attribute_values(format!(":f{index}"), value);
            }
            let written = request
                .update_expression(format!("SET {}", assignments.join(", ")))
                .send()
                .await;
            match written {
                Ok(_) => return Ok(()),
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    continue
                }
                Err(error) => return Err(unavailable(error)),
            }
        }
        Err(StateError::Unavailable(format!(
            "job {job_id}: the record kept changing under {UPDATE_ATTEMPTS} attempts to update it"
        )))
    }

    async fn claim_latest(
        &self,
        bucket: &str,
        key: &str,
        job_id: &str,
        order: &str,
    ) -> Result<LatestClaim, StateError> {
        let mut item = Self::latest_key(bucket, key);
        item.insert("kind".into(), s("latest"));
        item.insert("job_id".into(), s(job_id));
        item.insert("source".into(), s(format!("s3://{bucket}/{key}")));
        item.insert("upload_order".into(), s(order));
        item.insert("expires_at".into(), self.expires());
        // The rule of treemux_core::state::latest_claim, as one conditional write.
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR upload_order <= :order OR job_id = :job",
            )
            .expression_attribute_values(":order", s(order))
            .expression_attribute_values(":job", s(job_id))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match put {
            Ok(output) => {
                let previous = output
                    .attributes()
                    .and_then(|a| a.get("job_id"))
                    .and_then(|v| v.as_s().ok())
                    .filter(|previous| previous.as_str() != job_id)
                    .cloned();
                Ok(LatestClaim::Newest { previous })
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let newest = self.latest_job(bucket, key).await?.unwrap_or_default();
                Ok(LatestClaim::Older { newest })
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn latest_job(&self, bucket: &str, key: &str) -> Result<Option<String>, StateError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::latest_key(bucket, key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(item
            .item()
            .and_then(|a| a.get("job_id"))
            .and_then(|v| v.as_s().ok())
            .cloned())
    }
}

/// Attributes of the job item that are not [`JobRecord`] fields.
const JOB_ITEM_EXTRAS: [&str; 5] = ["pk", "sk", "kind", "version", "expires_at"];

/// A JSON value as a DynamoDB attribute: objects become maps, arrays lists, numbers numbers.
fn to_attribute(value: &serde_json::Value) -> AttributeValue {
    use serde_json::Value;
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(number) => AttributeValue::N(number.to_string()),
        Value::String(text) => AttributeValue::S(text.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attribute).collect()),
        Value::Object(fields) => AttributeValue::M(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), to_attribute(value)))
                .collect(),
        ),
    }
}

/// The inverse of [`to_attribute`] (string and number sets read as lists).
fn from_attribute(value: &AttributeValue) -> serde_json::Value {
    use serde_json::Value;
    let number = |text: &str| {
        text.parse::<u64>()
            .map(Value::from)
            .or_else(|_| text.parse::<i64>().map(Value::from))
            .or_else(|_| text.parse::<f64>().map(Value::from))
            .unwrap_or(Value::Null)
    };
    match value {
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(text) => number(text),
        AttributeValue::S(text) => Value::String(text.clone()),
        AttributeValue::L(items) => Value::Array(items.iter().map(from_attribute).collect()),
        AttributeValue::M(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), from_attribute(value)))
                .collect(),
        ),
        AttributeValue::Ss(items) => Value::Array(items.iter().cloned().map(Value::from).collect()),
        AttributeValue::Ns(items) => Value::Array(items.iter().map(|n| number(n)).collect()),
        _ => Value::Null,
    }
}

/// Optimistic writes of one job record before giving up with a transient error.
const UPDATE_ATTEMPTS: u32 = 50;

/// How long to wait before optimistic write `attempt` (from 1): uniformly random up to an
/// exponentially growing cap (5 ms doubling, at most 1 s).
fn update_backoff(attempt: u32) -> std::time::Duration {
    use std::hash::{BuildHasher as _, Hasher as _};
    let cap_ms = 5u64 << attempt.min(8);
    // std's per-instance random hash keys are the only randomness needed here.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    std::time::Duration::from_millis(random % cap_ms.min(1_000) + 1)
}

impl DynamoStore {
    fn latest_key(bucket: &str, key: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(format!("key#{bucket}/{key}"))),
            ("sk".to_owned(), s("latest")),
        ])
    }

    /// The whole job item: key, every record field, `version` and `expires_at`.
    fn job_item(
        &self,
        record: &JobRecord,
        version: u64,
    ) -> Result<HashMap<String, AttributeValue>, StateError> {
        let serde_json::Value::Object(fields) =
            serde_json::to_value(record).map_err(|e| StateError::Corrupt {
                job: record.job_id.clone(),
                reason: e.to_string(),
            })?
        else {
            unreachable!("a JobRecord serializes as an object");
        };
        let mut item = Self::job_key(&record.job_id);
        item.extend(
            fields
                .iter()
                .filter(|(name, _)| !JOB_ITEM_EXTRAS.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), to_attribute(value))),
        );
        item.insert("kind".into(), s("job"));
        item.insert("version".into(), n(version));
        item.insert("expires_at".into(), self.expires());
        Ok(item)
    }

    async fn read_job(&self, job_id: &str) -> Result<Option<(JobRecord, u64)>, StateError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::job_key(job_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(attributes) = item.item() else {
            return Ok(None);
        };
        let unreadable = |e: serde_json::Error| StateError::Corrupt {
            job: job_id.to_owned(),
            reason: e.to_string(),
        };
        let record: JobRecord = match attributes.get("record").and_then(|v| v.as_s().ok()) {
            // Records written before the fields had attributes of their own held JSON here.
            Some(json) => serde_json::from_str(json).map_err(unreadable)?,
            None => serde_json::from_value(serde_json::Value::Object(
                attributes
                    .iter()
                    .filter(|(name, _)| !JOB_ITEM_EXTRAS.contains(&name.as_str()))
                    .map(|(name, value)| (name.clone(), from_attribute(value)))
                    .collect(),
            ))
            .map_err(unreadable)?,
        };
        let version = attributes
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Some((record, version)))
    }
}

/// The handlers' services on AWS.
pub type AwsServices = crate::handlers::Services<DynamoStore, S3Store, SfnStarter>;

/// Builds the services from the environment: the handler configuration ([`config_from_env`]),
/// `TREEMUX_TABLE`, `TREEMUX_TTL_DAYS` (default 7) and, for analyze,
/// `TREEMUX_STATE_MACHINE_ARN`.
pub async fn services_from_env() -> Result<AwsServices, String> {
    let sdk = sdk_config().await;
    let ttl_days: u64 = env_or("TREEMUX_TTL_DAYS", "7")
        .parse()
        .map_err(|_| "TREEMUX_TTL_DAYS: expected days".to_owned())?;
    Ok(crate::handlers::Services {
        store: DynamoStore {
            client: aws_sdk_dynamodb::Client::new(&sdk),
            table: env("TREEMUX_TABLE")?,
            ttl_seconds: ttl_days * 86_400,
        },
        objects: S3Store::new(s3_client(&sdk)),
        executions: SfnStarter {
            client: aws_sdk_sfn::Client::new(&sdk),
            state_machine_arn: env_or("TREEMUX_STATE_MACHINE_ARN", ""),
        },
        config: config_from_env()?,
    })
}

/// S3's multipart upload API. A part or an upload S3 no longer knows (`NoSuchUpload`: completed
/// or aborted) is [`ObjectError::NotFound`].
impl MultipartStore for S3Store {
    async fn create_upload(&self, bucket: &str, key: &str) -> Result<String, ObjectError> {
        let failed = |message: String| ObjectError::Failed {
            bucket: bucket.into(),
            key: key.into(),
            message,
        };
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type("video/mp4")
            .send()
            .await
            .map_err(|e| put_failure(bucket, key, e))?;
        upload
            .upload_id()
            .map(str::to_owned)
            .ok_or_else(|| failed("S3 returned no upload id".into()))
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Vec<u8>,
    ) -> Result<String, ObjectError> {
        let response = self
            .client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| multipart_error(bucket, key, &format!("part {number}"), e))?;
        Ok(response.e_tag().unwrap_or_default().to_owned())
    }

    async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), ObjectError> {
        let parts = parts
            .iter()
            .map(|(number, e_tag)| {
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(*number)
                    .e_tag(e_tag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| multipart_error(bucket, key, "completing the upload", e))
    }

    async fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| multipart_error(bucket, key, "aborting the upload", e))
        {
            Ok(_) | Err(ObjectError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// An S3 error of a multipart call; `NoSuchUpload` (and a 404) as [`ObjectError::NotFound`].
fn multipart_error<E, R>(
    bucket: &str,
    key: &str,
    what: &str,
    error: aws_sdk_s3::error::SdkError<E, R>,
) -> ObjectError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    let code = error.code().map(str::to_owned);
    if code.as_deref() == Some("NoSuchUpload") {
        return ObjectError::NotFound {
            bucket: bucket.into(),
            key: key.into(),
        };
    }
    put_error(
        bucket,
        key,
        code.as_deref(),
        format!("{what}: {}", aws_sdk_s3::error::DisplayErrorContext(error)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encode settings for an environment of `(name, value)` pairs, validated.
    fn settings_for(vars: &[(&str, &str)]) -> Result<EncodeSettings, String> {
        let settings = encode_settings_from(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })?;
        settings.validate()?;
        Ok(settings)
    }

    #[test]
    fn empty_template_parameters_mean_the_codecs_defaults() {
        // What the template passes with its defaults: empty Crf, Bitrate, Preset and Height.
        let empty = [
            ("TREEMUX_CRF", ""),
            ("TREEMUX_BITRATE", ""),
            ("TREEMUX_PRESET", ""),
            ("TREEMUX_HEIGHT", ""),
        ];
        for (codec, preset, crf) in [("h264", "medium", 23), ("vp9", "4", 31), ("av1", "8", 35)] {
            let mut vars = empty.to_vec();
            vars.push(("TREEMUX_CODEC", codec));
            let settings = settings_for(&vars).expect(codec);
            assert_eq!(settings.preset, preset, "{codec}");
            assert_eq!(settings.rate, RateControl::Crf(crf), "{codec}");
            assert_eq!(settings.height, None);
        }
    }

    #[test]
    fn bitrate_and_height_are_read_and_crf_excludes_bitrate() {
        let settings = settings_for(&[
            ("TREEMUX_CODEC", "h265"),
            ("TREEMUX_BITRATE", "2.5M"),
            ("TREEMUX_CRF", ""),
            ("TREEMUX_HEIGHT", "720"),
        ])
        .expect("settings");
        assert_eq!(settings.rate, RateControl::Bitrate(2_500_000));
        assert_eq!(settings.height, Some(720));
        let both = settings_for(&[("TREEMUX_CRF", "20"), ("TREEMUX_BITRATE", "2M")]);
        assert!(both.is_err_and(|e| e.contains("set one of them")));
        let bad = settings_for(&[("TREEMUX_BITRATE", "fast")]);
        assert!(bad.is_err_and(|e| e.contains("TREEMUX_BITRATE=fast")));
        let vp9_medium = settings_for(&[("TREEMUX_CODEC", "vp9"), ("TREEMUX_PRESET", "medium")]);
        assert!(vp9_medium.is_err(), "refused at start-up too");
    }

    #[test]
    fn update_backoff_is_jittered_and_bounded() {
        for attempt in 1..UPDATE_ATTEMPTS {
            let cap = std::time::Duration::from_millis((5u64 << attempt.min(8)).min(1_000) + 1);
            let waits: Vec<_> = (0..20).map(|_| update_backoff(attempt)).collect();
            assert!(waits
                .iter()
                .all(|w| *w >= std::time::Duration::from_millis(1) && *w <= cap));
            if attempt >= 3 {
                assert!(
                    waits.iter().any(|w| *w != waits[0]),
                    "attempt {attempt}: jittered"
                );
            }
        }
    }

    #[test]
    fn part_ranges_cover_the_file_within_s3_limits() {
        const MIB: u64 = 1024 * 1024;
        for size in [
            0,
            1,
            5 * MIB,
            64 * MIB,
            64 * MIB + 1,
            1_000 * MIB + 7,
            5 * 1024 * 1024 * MIB, // 5 TiB, S3's object limit
        ] {
            let ranges = part_ranges(size, 64 * MIB);
            assert!(ranges.len() as u64 <= MAX_PARTS, "{size}: too many parts");
            let mut next = 0;
            for (index, &(offset, length)) in ranges.iter().enumerate() {
                assert_eq!(offset, next, "{size}: parts are contiguous");
                assert!(length > 0);
                if index + 1 < ranges.len() {
                    assert!(length >= 64 * MIB, "{size}: only the last part is short");
                }
                next = offset + length;
            }
            assert_eq!(next, size, "{size}: parts cover the file");
        }
    }
}
