//! The directory snapshot in the bucket: its codec (gzip JSON at
//! [`DirectorySnapshot::key`]), reading it back, and the fetcher's per-process cache of it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use tokio::time::Instant;

use crate::model::{DirectorySnapshot, TenantId};
use crate::normalize::DirectoryIndex;
use crate::sink::{ObjectMeta, ObjectSink, SinkError};

/// How long the fetcher keeps a tenant's snapshot (or its absence) before reading it again.
pub const DIRECTORY_CACHE_TTL: Duration = Duration::from_secs(15 * 60);

/// How long a failed snapshot read is remembered before the next attempt.
const READ_ERROR_TTL: Duration = Duration::from_secs(60);

/// Largest decompressed snapshot read (about a million users).
const MAX_SNAPSHOT_BYTES: u64 = 1024 * 1024 * 1024;

/// The metadata of a snapshot object.
pub const SNAPSHOT_META: ObjectMeta = ObjectMeta {
    content_type: "application/json",
    content_encoding: Some("gzip"),
};

/// A snapshot as gzip JSON.
///
/// # Errors
/// When serialization fails (it does not for these types).
pub fn encode_snapshot(snapshot: &DirectorySnapshot) -> std::io::Result<Bytes> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    serde_json::to_writer(&mut gz, snapshot)?;
    gz.flush()?;
    Ok(Bytes::from(gz.finish()?))
}

/// Decodes gzip JSON written by [`encode_snapshot`].
///
/// # Errors
/// What is wrong with the bytes (not gzip, not a snapshot, too large).
pub fn decode_snapshot(bytes: &[u8]) -> Result<DirectorySnapshot, String> {
    let mut json = Vec::new();
    GzDecoder::new(bytes)
        .take(MAX_SNAPSHOT_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("it is not gzip ({e})"))?;
    if json.len() as u64 > MAX_SNAPSHOT_BYTES {
        return Err(format!("it is larger than {MAX_SNAPSHOT_BYTES} bytes"));
    }
    serde_json::from_slice(&json).map_err(|e| format!("it is not a directory snapshot ({e})"))
}

/// What reading a tenant's snapshot found.
#[derive(Debug)]
pub enum SnapshotRead {
    /// The snapshot.
    Found(DirectorySnapshot),
    /// No object at the key.
    Missing,
    /// An object that cannot be decoded (or names another tenant), with why.
    Corrupt(String),
}

/// Reads the snapshot of `tenant` through `sink`.
///
/// # Errors
/// [`SinkError`] when the sink cannot be read (a missing object is [`SnapshotRead::Missing`]).
pub async fn read_snapshot<K: ObjectSink>(
    sink: &K,
    tenant: &TenantId,
) -> Result<SnapshotRead, SinkError> {
    let Some(bytes) = sink.get(&DirectorySnapshot::key(tenant)).await? else {
        return Ok(SnapshotRead::Missing);
    };
    Ok(match decode_snapshot(&bytes) {
        Ok(s) if s.tenant == *tenant => SnapshotRead::Found(s),
        Ok(s) => SnapshotRead::Corrupt(format!("it belongs to tenant {}", s.tenant)),
        Err(e) => SnapshotRead::Corrupt(e),
    })
}

/// Writes the snapshot at its key.
///
/// # Errors
/// [`SinkError`].
pub async fn write_snapshot<K: ObjectSink>(
    sink: &K,
    snapshot: &DirectorySnapshot,
) -> Result<(), SinkError> {
    let key = DirectorySnapshot::key(&snapshot.tenant);
    let body = encode_snapshot(snapshot).map_err(|e| SinkError {
        key: key.clone(),
        message: format!("encoding the snapshot failed: {e}"),
        retryable: false,
    })?;
    sink.put(&key, body, &SNAPSHOT_META).await
}

/// A cache entry: valid until, and the index (`None`: no usable snapshot).
type Cached = (Instant, Option<Arc<DirectoryIndex>>);

/// Per-process cache of each tenant's [`DirectoryIndex`], read through the sink. A missing or
/// unreadable snapshot is remembered as absent (for the TTL; a read error for a minute), so a
/// busy fetcher reads each snapshot at most once per TTL.
#[derive(Debug)]
pub struct DirectoryCache {
    ttl: Duration,
    entries: tokio::sync::Mutex<HashMap<TenantId, Cached>>,
}

impl DirectoryCache {
    /// A cache keeping entries for `ttl`.
    pub fn new(ttl: Duration) -> DirectoryCache {
        DirectoryCache {
            ttl,
            entries: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The index of `tenant`, `None` when it has no usable snapshot. Never fails: a read
    /// error is logged at warn and read as no snapshot.
    pub async fn get<K: ObjectSink>(
        &self,
        sink: &K,
        tenant: &TenantId,
    ) -> Option<Arc<DirectoryIndex>> {
        let mut entries = self.entries.lock().await;
        if let Some((until, index)) = entries.get(tenant)
            && Instant::now() < *until
        {
            return index.clone();
        }
        let (ttl, index) = match read_snapshot(sink, tenant).await {
            Ok(SnapshotRead::Found(s)) => {
                tracing::debug!(tenant = %tenant, users = s.users.len(), "directory snapshot loaded");
                (self.ttl, Some(Arc::new(DirectoryIndex::new(s.users))))
            }
            Ok(SnapshotRead::Missing) => {
                tracing::debug!(tenant = %tenant, "no directory snapshot; events are not enriched");
                (self.ttl, None)
            }
            Ok(SnapshotRead::Corrupt(why)) => {
                tracing::warn!(tenant = %tenant, reason = %why,
                    "the directory snapshot is unreadable; events are not enriched until users-sync rewrites it");
                (self.ttl, None)
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e,
                    "reading the directory snapshot failed; events are written without directory data");
                (READ_ERROR_TTL.min(self.ttl), None)
            }
        };
        entries.insert(tenant.clone(), (Instant::now() + ttl, index.clone()));
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DirectoryUser;
    use crate::sink::FolderSink;

    const T: &str = "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d";

    fn snapshot() -> DirectorySnapshot {
        DirectorySnapshot::new(
            TenantId::parse(T).unwrap(),
            chrono::Utc::now(),
            [DirectoryUser {
                id: "6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0".into(),
                upn: Some("Adams@contoso.com".into()),
                display_name: Some("Conf Room Adams".into()),
                mail: None,
                department: None,
                job_title: None,
                account_enabled: Some(true),
                user_type: Some("Member".into()),
            }],
        )
    }

    #[test]
    fn snapshots_round_trip_and_garbage_is_refused() {
        let s = snapshot();
        assert_eq!(decode_snapshot(&encode_snapshot(&s).unwrap()).unwrap(), s);
        assert!(decode_snapshot(b"not gzip").unwrap_err().contains("gzip"));
    }

    #[tokio::test]
    async fn the_cache_reads_once_per_ttl_and_remembers_absence() {
        let dir = std::env::temp_dir().join(format!("dir-cache-{}", uuid::Uuid::new_v4()));
        let sink = FolderSink::new(dir.clone());
        let tenant = TenantId::parse(T).unwrap();
        let cache = DirectoryCache::new(Duration::from_secs(60));
        assert!(cache.get(&sink, &tenant).await.is_none());
        write_snapshot(&sink, &snapshot()).await.unwrap();
        assert!(
            cache.get(&sink, &tenant).await.is_none(),
            "absence is cached for the TTL"
        );
        let fresh = DirectoryCache::new(Duration::from_secs(60));
        let index = fresh.get(&sink, &tenant).await.unwrap();
        assert_eq!(index.len(), 1);
        std::fs::write(
            sink.path_of(&DirectorySnapshot::key(&tenant)).unwrap(),
            b"junk",
        )
        .unwrap();
        assert!(fresh.get(&sink, &tenant).await.is_some(), "cached");
        assert!(
            DirectoryCache::new(Duration::from_secs(60))
                .get(&sink, &tenant)
                .await
                .is_none(),
            "a corrupt snapshot reads as none"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
