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
}
