//! Where collected objects are written.
//!
//! Adapters: [`S3Sink`] (AWS) and [`FolderSink`] (local runs; also the tests' in-memory check).

use std::future::Future;

use bytes::Bytes;

mod folder;
mod s3;

pub use folder::FolderSink;
pub use s3::S3Sink;

/// Metadata of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// MIME type, e.g. `application/x-ndjson`.
    pub content_type: &'static str,
    /// `gzip` when compressed.
    pub content_encoding: Option<&'static str>,
}

/// Errors of the sink.
#[derive(Debug, thiserror::Error)]
#[error("writing object {key} failed: {message}")]
pub struct SinkError {
    /// The object key.
    pub key: String,
    /// What the backend said.
    pub message: String,
    /// Retrying later may succeed.
    pub retryable: bool,
}

/// Durable object storage.
pub trait ObjectSink: Send + Sync {
    /// Writes an object; idempotent (writing the same key again replaces it whole, never
    /// duplicates). Returns once the object is durable.
    ///
    /// # Errors
    /// [`SinkError`].
    fn put(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Reads an object back (for checks and tooling); `None` when absent.
    ///
    /// # Errors
    /// [`SinkError`].
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, SinkError>> + Send;

    /// Keys under a prefix, sorted.
    ///
    /// # Errors
    /// [`SinkError`].
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, SinkError>> + Send;

    /// True when the sink can take an object in parts ([`ObjectSink::create_upload`] …);
    /// otherwise [`ObjectWriter`] buffers the object and [`ObjectSink::put`]s it whole.
    fn supports_parts(&self) -> bool {
        false
    }

    /// Starts an object written in parts (an S3 multipart upload); returns the upload id.
    ///
    /// # Errors
    /// [`SinkError`].
    fn create_upload(
        &self,
        key: &str,
        _meta: &ObjectMeta,
    ) -> impl Future<Output = Result<String, SinkError>> + Send {
        let key = key.to_owned();
        async move { Err(no_parts(&key)) }
    }

    /// Adds part `number` (1, 2, … in order; every part but the last at least [`MIN_PART`]
    /// bytes); returns its tag for [`ObjectSink::complete_upload`].
    ///
    /// # Errors
    /// [`SinkError`].
    fn upload_part(
        &self,
        key: &str,
        _upload_id: &str,
        _number: i32,
        _body: Bytes,
    ) -> impl Future<Output = Result<String, SinkError>> + Send {
        let key = key.to_owned();
        async move { Err(no_parts(&key)) }
    }

    /// Makes the object whole and durable from its parts `(number, tag)`; until then readers
    /// see the previous object (or none).
    ///
    /// # Errors
    /// [`SinkError`].
    fn complete_upload(
        &self,
        key: &str,
        _upload_id: &str,
        _parts: &[(i32, String)],
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        let key = key.to_owned();
        async move { Err(no_parts(&key)) }
    }

    /// Drops an unfinished upload (best effort; the bucket's lifecycle rule removes what is
    /// left after a crash).
    fn abort_upload(&self, _key: &str, _upload_id: &str) -> impl Future<Output = ()> + Send {
        async {}
    }
}

fn no_parts(key: &str) -> SinkError {
    SinkError {
        key: key.to_owned(),
        message: "this sink does not take objects in parts".into(),
        retryable: false,
    }
}

/// Smallest part of a multipart upload but the last (S3's limit).
pub const MIN_PART: usize = 5 * 1024 * 1024;

/// Part size used by [`ObjectWriter`]: objects smaller than this are put in one request.
pub const PART_SIZE: usize = MIN_PART;

/// Writes one object piece by piece with memory bounded by the part size: the first
/// [`PART_SIZE`] bytes are held, and past that the object goes up as a multipart upload.
/// Nothing is visible under the key until [`ObjectWriter::finish`] returns.
pub struct ObjectWriter<'a, K: ObjectSink> {
    sink: &'a K,
    key: String,
    meta: ObjectMeta,
    part_size: usize,
    buf: Vec<u8>,
    upload: Option<(String, Vec<(i32, String)>)>,
    bytes: u64,
}

impl<K: ObjectSink> std::fmt::Debug for ObjectWriter<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("key", &self.key)
            .field("bytes", &self.bytes)
            .field("parts", &self.upload.as_ref().map(|(_, p)| p.len()))
            .finish_non_exhaustive()
    }
}

impl<'a, K: ObjectSink> ObjectWriter<'a, K> {
    /// A writer of `key` with the default [`PART_SIZE`].
    pub fn new(sink: &'a K, key: String, meta: ObjectMeta) -> ObjectWriter<'a, K> {
        ObjectWriter::with_part_size(sink, key, meta, PART_SIZE)
    }

    /// A writer with another part size (at least [`MIN_PART`] on S3; tests use less with
    /// the folder sink).
    pub fn with_part_size(
        sink: &'a K,
        key: String,
        meta: ObjectMeta,
        part_size: usize,
    ) -> ObjectWriter<'a, K> {
        ObjectWriter {
            sink,
            key,
            meta,
            part_size: part_size.max(1),
            buf: Vec::new(),
            upload: None,
            bytes: 0,
        }
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes held in memory now.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends `data`; uploads a part when a full one is buffered.
    ///
    /// # Errors
    /// [`SinkError`] of a part upload (the upload is left for [`ObjectWriter::abort`]).
    pub async fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        if self.sink.supports_parts() && self.buf.len() + data.len() > self.buf.capacity() {
            // Grow to one part exactly (not by doubling past it): a part is the most held.
            let want = (self.buf.len() + data.len())
                .max(self.buf.capacity() * 2)
                .min(self.part_size.max(self.buf.len() + data.len()));
            self.buf.reserve_exact(want - self.buf.len());
        }
        self.buf.extend_from_slice(data);
        self.bytes += data.len() as u64;
        if self.sink.supports_parts() {
            while self.buf.len() >= self.part_size {
                let rest = self.buf.split_off(self.part_size);
                let part = std::mem::replace(&mut self.buf, rest);
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    async fn send_part(&mut self, part: Vec<u8>) -> Result<(), SinkError> {
        if self.upload.is_none() {
            let id = self.sink.create_upload(&self.key, &self.meta).await?;
            self.upload = Some((id, Vec::new()));
        }
        if let Some((id, parts)) = &mut self.upload {
            let number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
            let tag = self
                .sink
                .upload_part(&self.key, id, number, Bytes::from(part))
                .await?;
            parts.push((number, tag));
        }
        Ok(())
    }

    /// Completes the object (one put when it never outgrew a part). Returns its size.
    ///
    /// # Errors
    /// [`SinkError`]; the caller should then [`ObjectWriter::abort`].
    pub async fn finish(&mut self) -> Result<u64, SinkError> {
        let last = std::mem::take(&mut self.buf);
        if self.upload.is_none() {
            self.sink
                .put(&self.key, Bytes::from(last), &self.meta)
                .await?;
            return Ok(self.bytes);
        }
        if !last.is_empty() {
            self.send_part(last).await?;
        }
        if let Some((id, parts)) = self.upload.take()
            && let Err(e) = self.sink.complete_upload(&self.key, &id, &parts).await
        {
            self.upload = Some((id, parts));
            return Err(e);
        }
        Ok(self.bytes)
    }

    /// Drops what was written (an unfinished multipart upload is aborted).
    pub async fn abort(mut self) {
        if let Some((id, _)) = self.upload.take() {
            self.sink.abort_upload(&self.key, &id).await;
        }
    }
}

impl<T: ObjectSink + ?Sized> ObjectSink for std::sync::Arc<T> {
    fn put(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        (**self).put(key, body, meta)
    }
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, SinkError>> + Send {
        (**self).get(key)
    }
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, SinkError>> + Send {
        (**self).list(prefix)
    }
    fn supports_parts(&self) -> bool {
        (**self).supports_parts()
    }
    fn create_upload(
        &self,
        key: &str,
        meta: &ObjectMeta,
    ) -> impl Future<Output = Result<String, SinkError>> + Send {
        (**self).create_upload(key, meta)
    }
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> impl Future<Output = Result<String, SinkError>> + Send {
        (**self).upload_part(key, upload_id, number, body)
    }
    fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        (**self).complete_upload(key, upload_id, parts)
    }
    fn abort_upload(&self, key: &str, upload_id: &str) -> impl Future<Output = ()> + Send {
        (**self).abort_upload(key, upload_id)
    }
}
