//! S3 as the [`ObjectStore`] (ranged reads of an exact version, puts, multipart file uploads),
//! with S3's error codes classified as retryable or refused. The [`MultipartStore`] the output
//! streams into is in [`super::s3_multipart`].
//!
//! [`MultipartStore`]: crate::upload::MultipartStore

use crate::ports::ObjectVersion;
use crate::ports::{ObjectError, ObjectHead, ObjectStore};
use crate::upload::MultipartStore as _;
use std::path::Path;

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
pub(super) fn put_failure<E, R>(
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

/// The `Content-Type` of an output, by its key's extension (the container it holds), so a
/// browser served the object plays it: MP4, QuickTime, Matroska, WebM; and of its thumbnails
/// (JPEG pictures, the WebVTT index).
pub fn content_type(key: &str) -> &'static str {
    match crate::job::safe_extension(key).as_str() {
        "jpg" => "image/jpeg",
        "vtt" => "text/vtt",
        "mov" => "video/quicktime",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        // An HLS/DASH package's manifests and fragments.
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpd" => "application/dash+xml",
        "m4s" => "video/iso.segment",
        _ => "video/mp4",
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
        // A broken download leaves nothing that could be mistaken for the source.
        let partial = treemux_core::atomic_file::AtomicFile::create(path)?;
        let mut file = tokio::fs::File::from_std(partial.open()?);
        let mut body = response.body.into_async_read();
        let downloaded = async {
            let bytes = tokio::io::copy(&mut body, &mut file).await?;
            tokio::io::AsyncWriteExt::flush(&mut file).await?;
            Ok(bytes)
        }
        .await
        .map_err(local)?;
        partial.commit()?;
        Ok(downloaded)
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
            .content_type(content_type(key))
            .send()
            .await
            .map_err(|e| put_failure(bucket, key, e))?;
        Ok(())
    }

    async fn head(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
    ) -> Result<ObjectHead, ObjectError> {
        let request = match (&version.version_id, &version.e_tag) {
            (Some(version_id), _) => self.client.head_object().version_id(version_id),
            (None, Some(e_tag)) => self
                .client
                .head_object()
                .if_match(format!("\"{}\"", e_tag.trim_matches('"'))),
            (None, None) => self.client.head_object(),
        };
        match request.bucket(bucket).key(key).send().await {
            Ok(head) => Ok(ObjectHead {
                size: head.content_length().unwrap_or(0).max(0) as u64,
                // The SDK gives the names without `x-amz-meta-`; S3 stores them lowercased.
                metadata: head
                    .metadata()
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
                    .collect(),
            }),
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

    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<(), ObjectError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        for batch in keys.chunks(1000) {
            let failed = |message: String| ObjectError::Failed {
                bucket: bucket.into(),
                key: batch.first().cloned().unwrap_or_default(),
                message,
            };
            let objects = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| failed(error.to_string()))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|error| failed(error.to_string()))?;
            let response = self
                .client
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|error| {
                    failed(aws_sdk_s3::error::DisplayErrorContext(error).to_string())
                })?;
            // Quiet mode lists only the keys that were not deleted.
            if let Some(error) = response.errors().first() {
                return Err(ObjectError::Failed {
                    bucket: bucket.into(),
                    key: error.key().unwrap_or_default().to_owned(),
                    message: error.message().unwrap_or("not deleted").to_owned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_typed_by_their_container() {
        assert_eq!(content_type("transcoded/a.mov.mp4"), "video/mp4");
        assert_eq!(content_type("transcoded/a.mp4.mov"), "video/quicktime");
        assert_eq!(content_type("transcoded/a.mp4.mkv"), "video/x-matroska");
        assert_eq!(content_type("transcoded/a.mp4.webm"), "video/webm");
        assert_eq!(
            content_type("transcoded/a.mp4/master.m3u8"),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(content_type("t/a/manifest.mpd"), "application/dash+xml");
        assert_eq!(content_type("transcoded/a.mp4.poster.jpg"), "image/jpeg");
        assert_eq!(
            content_type("transcoded/a.mp4.thumbnails-0.jpg"),
            "image/jpeg"
        );
        assert_eq!(content_type("transcoded/a.mp4.thumbnails.vtt"), "text/vtt");
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
