//! A blob's body, read with a size limit or streamed; a connection dropped mid-body is a
//! retryable [`ApiError::Transport`].

use std::fmt;

use bytes::{Bytes, BytesMut};
use futures_util::future::Either;
use futures_util::{Stream, StreamExt, stream};

use super::error::{ApiError, CallInfo, Operation};

/// The body of a blob whose headers have arrived.
pub struct BlobBody {
    source: Source,
    call: CallInfo,
}

enum Source {
    Response(reqwest::Response),
    Bytes(Bytes),
    Chunks(Vec<Bytes>),
}

impl fmt::Debug for BlobBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobBody")
            .field("call", &self.call)
            .field("content_length", &self.content_length())
            .finish_non_exhaustive()
    }
}

impl BlobBody {
    pub(crate) fn from_response(response: reqwest::Response, call: CallInfo) -> BlobBody {
        BlobBody {
            source: Source::Response(response),
            call,
        }
    }

    /// A body already in memory (for fakes of [`super::ActivityApi`]).
    pub fn from_bytes(bytes: Bytes) -> BlobBody {
        BlobBody {
            source: Source::Bytes(bytes),
            call: CallInfo {
                tenant: String::new(),
                operation: Operation::FetchBlob,
                content_type: None,
                content_id: None,
            },
        }
    }

    /// A body already in memory that arrives in these chunks (for fakes: streaming tests).
    pub fn from_chunks(chunks: Vec<Bytes>) -> BlobBody {
        let mut b = BlobBody::from_bytes(Bytes::new());
        b.source = Source::Chunks(chunks);
        b
    }

    /// The announced size, if the server sent `Content-Length`.
    pub fn content_length(&self) -> Option<u64> {
        match &self.source {
            Source::Response(r) => r.content_length(),
            Source::Bytes(b) => u64::try_from(b.len()).ok(),
            Source::Chunks(_) => None,
        }
    }

    /// The whole body, refusing to buffer more than `max_bytes`.
    ///
    /// # Errors
    /// [`ApiError::TooLarge`] past the limit (class `Refused`); [`ApiError::Transport`] when
    /// the connection fails mid-body (class `Retry`).
    pub async fn into_bytes(self, max_bytes: usize) -> Result<Bytes, ApiError> {
        let announced = self.content_length();
        let too_large = |call: CallInfo| ApiError::TooLarge {
            call: Box::new(call),
            limit: max_bytes,
            size: announced,
        };
        if announced.is_some_and(|n| n > u64::try_from(max_bytes).unwrap_or(u64::MAX)) {
            return Err(too_large(self.call));
        }
        let call = self.call.clone();
        let capacity = announced
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
            .min(max_bytes);
        let mut buf = BytesMut::with_capacity(capacity);
        let mut chunks = std::pin::pin!(self.into_stream());
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if buf.len() + chunk.len() > max_bytes {
                return Err(too_large(call));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// The body as a stream of chunks, so memory does not grow with the blob's size.
    /// A failed read yields one [`ApiError::Transport`] (class `Retry`).
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, ApiError>> + Send + 'static {
        match self.source {
            Source::Response(r) => {
                let call = self.call;
                Either::Left(r.bytes_stream().map(move |chunk| {
                    chunk.map_err(|e| {
                        tracing::warn!(tenant_id = %call.tenant,
                            content_id = call.content_id.as_deref().unwrap_or(""),
                            error = %crate::auth::transport_message(&e),
                            "Reading a blob failed mid-body.");
                        ApiError::Transport {
                            call: Box::new(call.clone()),
                            message: format!(
                                "the blob body could not be read ({})",
                                crate::auth::transport_message(&e)
                            ),
                        }
                    })
                }))
            }
            Source::Bytes(b) => Either::Right(Either::Left(stream::iter([Ok(b)]))),
            Source::Chunks(c) => Either::Right(Either::Right(stream::iter(c.into_iter().map(Ok)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_memory_bodies_respect_the_limit() {
        let b = BlobBody::from_bytes(Bytes::from_static(b"[1,2,3]"));
        assert_eq!(
            b.into_bytes(7).await.unwrap(),
            Bytes::from_static(b"[1,2,3]")
        );
        let b = BlobBody::from_bytes(Bytes::from_static(b"[1,2,3]"));
        let e = b.into_bytes(6).await.unwrap_err();
        assert!(
            matches!(
                e,
                ApiError::TooLarge {
                    limit: 6,
                    size: Some(7),
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.class(), super::super::ErrorClass::Refused);
    }
}
