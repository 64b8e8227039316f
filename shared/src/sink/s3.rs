//! [`ObjectSink`] on S3. Encryption at rest is the bucket's default (SSE-S3), so objects are
//! put without a per-object encryption header.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use super::{ObjectMeta, ObjectSink, SinkError};
use crate::aws::classify;

/// The sink on an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Sink {
    client: Client,
    bucket: String,
}

impl S3Sink {
    /// A sink on `bucket` (the stack's `BUCKET`).
    pub fn new(client: Client, bucket: String) -> S3Sink {
        S3Sink { client, bucket }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn err<E>(&self, key: &str, err: &SdkError<E, HttpResponse>) -> SinkError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let c = classify(err);
        let hint = match c.code.as_deref() {
            Some("NoSuchBucket") => ": the bucket does not exist; deploy the stack or set BUCKET",
            Some("AccessDenied") => {
                ": grant s3:PutObject/GetObject/ListBucket on the bucket to the function role"
            }
            _ => "",
        };
        SinkError {
            key: key.to_owned(),
            message: format!("s3://{}: {}{hint}", self.bucket, c.message),
            retryable: c.retryable,
        }
    }
}

impl ObjectSink for S3Sink {
    async fn put(&self, key: &str, body: Bytes, meta: &ObjectMeta) -> Result<(), SinkError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(meta.content_type)
            .set_content_encoding(meta.content_encoding.map(str::to_owned))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.err(key, &e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, SinkError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) => {
                return Ok(None);
            }
            Err(e) => return Err(self.err(key, &e)),
        };
        let body = out.body.collect().await.map_err(|e| SinkError {
            key: key.to_owned(),
            message: format!("s3://{}: reading the object failed: {e}", self.bucket),
            retryable: true,
        })?;
        Ok(Some(body.into_bytes()))
    }

    fn supports_parts(&self) -> bool {
        true
    }

    async fn create_upload(&self, key: &str, meta: &ObjectMeta) -> Result<String, SinkError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(meta.content_type)
            .set_content_encoding(meta.content_encoding.map(str::to_owned))
            .send()
            .await
            .map_err(|e| self.err(key, &e))?;
        out.upload_id().map(str::to_owned).ok_or_else(|| SinkError {
            key: key.to_owned(),
            message: format!(
                "s3://{}: CreateMultipartUpload returned no upload id",
                self.bucket
            ),
            retryable: true,
        })
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String, SinkError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.err(key, &e))?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), SinkError> {
        let parts: Vec<CompletedPart> = parts
            .iter()
            .map(|(n, tag)| CompletedPart::builder().part_number(*n).e_tag(tag).build())
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.err(key, &e))?;
        Ok(())
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) {
        if let Err(e) = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            tracing::warn!(key, error = %self.err(key, &e),
                "aborting a multipart upload failed; the bucket's lifecycle rule removes it");
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, SinkError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.err(prefix, &e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }
}
