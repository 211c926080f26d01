//! S3 as the [`MultipartStore`] the output streams into: create, upload a part, complete,
//! abort, with S3's error codes classified as in [`super::s3`].

use super::s3::{content_type, put_error, put_failure, S3Store};
use crate::ports::ObjectError;
use crate::upload::MultipartStore;

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
            .content_type(content_type(key))
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
