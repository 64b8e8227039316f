//! [`StateStore`] in one local [redb](https://docs.rs/redb) file, for local runs.
//!
//! Six tables of JSON values: `directory` (key: tenant id, value: [`DirectorySync`]),
//! `tenants` (key: tenant id), `cursors` (key:
//! `{tenant}/{content type}`, value: version and cursor), `ledger` (key:
//! `{tenant}/{content id}`, value: blob, entry and its TTL in epoch seconds), `seen` (key:
//! `{tenant}/{content type}/{hour, epoch seconds}`, value: digests and TTL) and `records` (key:
//! `{tenant}\u{1f}{record key}` ([`record_key`](super::record_key)), value: owning content id
//! and TTL). redb serializes write transactions, so each conditional update is one
//! read-check-write transaction. Every redb call runs on tokio's blocking pool. Values decode
//! with defaults for fields added since, so older files still open.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::memory::is_expired;
use super::{Claim, RecordClaim, StateStore, StoreError, ledger_ttl, may_replace, seen_ttl};
use crate::model::{
    BlobState, ContentBlob, ContentType, Cursor, DirectorySync, LedgerEntry, LedgerItem, Tenant,
    TenantId, Versioned,
};

const TENANTS: TableDefinition<&str, &str> = TableDefinition::new("tenants");
const CURSORS: TableDefinition<&str, &str> = TableDefinition::new("cursors");
const LEDGER: TableDefinition<&str, &str> = TableDefinition::new("ledger");
const RECORDS: TableDefinition<&str, &str> = TableDefinition::new("records");
const DIRECTORY: TableDefinition<&str, &str> = TableDefinition::new("directory");
const SEEN: TableDefinition<&str, &str> = TableDefinition::new("seen");

#[derive(Debug, Serialize, Deserialize)]
struct StoredCursor {
    version: u64,
    cursor: Cursor,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredEntry {
    /// TTL, epoch seconds (as on DynamoDB).
    expires_at: i64,
    entry: LedgerEntry,
    /// The blob (absent in entries written before entries kept it: such entries are left out
    /// of [`StateStore::ledger`] and [`StateStore::due_entries`]; they were never retried).
    #[serde(default)]
    blob: Option<ContentBlob>,
}

impl StoredEntry {
    fn new(blob: &ContentBlob, entry: LedgerEntry) -> StoredEntry {
        StoredEntry {
            expires_at: ledger_ttl(blob).timestamp(),
            entry,
            blob: Some(blob.clone()),
        }
    }

    /// The item, unless past its TTL at `now` or without its blob.
    fn live_item(self, now: DateTime<Utc>) -> Option<LedgerItem> {
        if is_expired(self.expires_at, now) {
            return None;
        }
        Some(LedgerItem {
            blob: self.blob?,
            entry: self.entry,
        })
    }
}

/// A listed-blob summary.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredSeen {
    /// TTL, epoch seconds (as on DynamoDB).
    expires_at: i64,
    digests: Vec<u64>,
}

/// A record claim.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRecord {
    /// The owning blob's content id.
    blob: String,
    /// TTL, epoch seconds (as on DynamoDB).
    expires_at: i64,
}

/// The state store in a local redb file. Clones share the open database (redb allows one
/// open handle per file and process).
#[derive(Debug, Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
}

fn backend(operation: &'static str, path: &Path, e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    let message = match e {
        redb::Error::DatabaseAlreadyOpen => format!(
            "{} is already open in another process (or twice in this one): stop the other run or use another --state file",
            path.display()
        ),
        e => format!("{}: {e}", path.display()),
    };
    StoreError::Backend {
        operation,
        message,
        retryable: false,
    }
}

fn corrupt(what: impl Into<String>, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: e.to_string(),
    }
}

fn decode<T: DeserializeOwned>(what: impl Into<String>, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt(what, e))
}

fn encode<T: Serialize>(operation: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend {
        operation,
        message: format!("cannot encode the item: {e}"),
        retryable: false,
    })
}

fn cursor_key(tenant: &TenantId, ct: ContentType) -> String {
    format!("{tenant}/{ct}")
}

fn ledger_key(tenant: &TenantId, content_id: &str) -> String {
    format!("{tenant}/{content_id}")
}

fn record_key(tenant: &TenantId, record_id: &str) -> String {
    format!("{tenant}\u{1f}{}", super::record_key(record_id))
}

fn seen_key(tenant: &TenantId, ct: ContentType, hour: DateTime<Utc>) -> String {
    format!("{tenant}/{ct}/{}", hour.timestamp())
}

/// The first key of a tenant's ledger (`ledger_key(tenant, "")`); its keys all start so.
fn ledger_prefix(tenant: &TenantId) -> String {
    format!("{tenant}/")
}

/// Page cache of the database file.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

impl RedbStore {
    /// Opens (or creates) the store file at `path`, creating its parent folder if needed (on
    /// tokio's blocking pool).
    ///
    /// # Errors
    /// [`StoreError::Backend`] naming the file (unreadable, not a redb file, already open).
    pub async fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || RedbStore::open_blocking(path))
            .await
            .map_err(|e| join_error("open", e))?
    }

    fn open_blocking(path: PathBuf) -> Result<RedbStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Backend {
                operation: "open",
                message: format!("cannot create folder {}: {e}", parent.display()),
                retryable: false,
            })?;
        }
        // redb caches up to 1 GiB by default: a long local run would grow to that. 4 MiB keeps
        // the working set (cursors, ledger, recent record claims) hot.
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| backend("open", &path, e))?;
        let txn = db.begin_write().map_err(|e| backend("open", &path, e))?;
        for table in [TENANTS, CURSORS, LEDGER, RECORDS, DIRECTORY, SEEN] {
            txn.open_table(table)
                .map_err(|e| backend("open", &path, e))?;
        }
        txn.commit().map_err(|e| backend("open", &path, e))?;
        Ok(RedbStore {
            db: Arc::new(db),
            path,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn read<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction, &Path) -> Result<T, StoreError> + Send + 'static,
    {
        let (db, path) = (self.db.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(|e| backend(operation, &path, e))?;
            f(&txn, &path)
        })
        .await
        .map_err(|e| join_error(operation, e))?
    }

    /// Runs `f` in a write transaction, committed when `f` returns `Ok`, aborted otherwise.
    async fn write<T, F>(&self, operation: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction, &Path) -> Result<T, StoreError> + Send + 'static,
    {
        let (db, path) = (self.db.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(|e| backend(operation, &path, e))?;
            match f(&txn, &path) {
                Ok(out) => {
                    txn.commit().map_err(|e| backend(operation, &path, e))?;
                    Ok(out)
                }
                Err(e) => {
                    // Nothing was written; an abort failure changes nothing for the caller.
                    let _ = txn.abort();
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| join_error(operation, e))?
    }
}

fn join_error(operation: &'static str, e: tokio::task::JoinError) -> StoreError {
    StoreError::Backend {
        operation,
        message: format!("the storage task failed: {e}"),
        retryable: true,
    }
}

fn get_ledger(
    table: &impl ReadableTable<&'static str, &'static str>,
    key: &str,
    now: DateTime<Utc>,
    path: &Path,
    operation: &'static str,
) -> Result<Option<LedgerEntry>, StoreError> {
    let Some(v) = table.get(key).map_err(|e| backend(operation, path, e))? else {
        return Ok(None);
    };
    let stored: StoredEntry = decode(format!("ledger entry {key}"), v.value())?;
    Ok((!is_expired(stored.expires_at, now)).then_some(stored.entry))
}

/// The tenant's unexpired ledger items (with their blob) in content-id order.
fn scan_ledger(
    txn: &ReadTransaction,
    tenant: &TenantId,
    now: DateTime<Utc>,
    path: &Path,
    operation: &'static str,
) -> Result<Vec<LedgerItem>, StoreError> {
    let t = txn
        .open_table(LEDGER)
        .map_err(|e| backend(operation, path, e))?;
    let prefix = ledger_prefix(tenant);
    let mut out = Vec::new();
    for row in t
        .range(prefix.as_str()..)
        .map_err(|e| backend(operation, path, e))?
    {
        let (k, v) = row.map_err(|e| backend(operation, path, e))?;
        if !k.value().starts_with(&prefix) {
            break;
        }
        let stored: StoredEntry = decode(format!("ledger entry {}", k.value()), v.value())?;
        out.extend(stored.live_item(now));
    }
    Ok(out)
}

impl StateStore for RedbStore {
    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let json = encode("put_tenant", tenant)?;
        let id = tenant.id.to_string();
        self.write("put_tenant", move |txn, path| {
            let mut t = txn
                .open_table(TENANTS)
                .map_err(|e| backend("put_tenant", path, e))?;
            t.insert(id.as_str(), json.as_str())
                .map_err(|e| backend("put_tenant", path, e))?;
            Ok(())
        })
        .await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.read("list_tenants", |txn, path| {
            let op = "list_tenants";
            let t = txn.open_table(TENANTS).map_err(|e| backend(op, path, e))?;
            let mut out = Vec::new();
            for row in t.iter().map_err(|e| backend(op, path, e))? {
                let (k, v) = row.map_err(|e| backend(op, path, e))?;
                out.push(decode::<Tenant>(
                    format!("tenant {}", k.value()),
                    v.value(),
                )?);
            }
            out.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(out)
        })
        .await
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write("delete_tenant", move |txn, path| {
            let mut t = txn
                .open_table(TENANTS)
                .map_err(|e| backend("delete_tenant", path, e))?;
            let removed = t
                .remove(id.as_str())
                .map_err(|e| backend("delete_tenant", path, e))?;
            Ok(removed.is_some())
        })
        .await
    }

    async fn load_cursor(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
    ) -> Result<Option<Versioned<Cursor>>, StoreError> {
        let key = cursor_key(tenant, content_type);
        self.read("load_cursor", move |txn, path| {
            let t = txn
                .open_table(CURSORS)
                .map_err(|e| backend("load_cursor", path, e))?;
            let Some(v) = t
                .get(key.as_str())
                .map_err(|e| backend("load_cursor", path, e))?
            else {
                return Ok(None);
            };
            let stored: StoredCursor = decode(format!("cursor {key}"), v.value())?;
            Ok(Some(Versioned {
                value: stored.cursor,
                version: stored.version,
            }))
        })
        .await
    }

    async fn save_cursor(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        cursor: &Cursor,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let key = cursor_key(tenant, content_type);
        let version = expected.map_or(1, |v| v + 1);
        let json = encode(
            "save_cursor",
            &StoredCursor {
                version,
                cursor: cursor.clone(),
            },
        )?;
        self.write("save_cursor", move |txn, path| {
            let op = "save_cursor";
            let mut t = txn.open_table(CURSORS).map_err(|e| backend(op, path, e))?;
            let current = match t.get(key.as_str()).map_err(|e| backend(op, path, e))? {
                None => None,
                Some(v) => {
                    Some(decode::<StoredCursor>(format!("cursor {key}"), v.value())?.version)
                }
            };
            if current != expected {
                return Err(StoreError::Conflict {
                    what: format!("cursor {key}"),
                    expected,
                });
            }
            t.insert(key.as_str(), json.as_str())
                .map_err(|e| backend(op, path, e))?;
            Ok(version)
        })
        .await
    }

    async fn claim_blob(
        &self,
        tenant: &TenantId,
        blob: &ContentBlob,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let key = ledger_key(tenant, &blob.content_id);
        let json = encode(
            "claim_blob",
            &StoredEntry::new(
                blob,
                LedgerEntry {
                    listed_at: Some(now),
                    ..LedgerEntry::new(BlobState::Pending, now)
                },
            ),
        )?;
        self.write("claim_blob", move |txn, path| {
            let op = "claim_blob";
            let mut t = txn.open_table(LEDGER).map_err(|e| backend(op, path, e))?;
            if let Some(existing) = get_ledger(&t, &key, now, path, op)? {
                return Ok(Claim::Existing(existing));
            }
            t.insert(key.as_str(), json.as_str())
                .map_err(|e| backend(op, path, e))?;
            Ok(Claim::New)
        })
        .await
    }

    async fn set_blob_state(
        &self,
        tenant: &TenantId,
        blob: &ContentBlob,
        entry: &LedgerEntry,
    ) -> Result<bool, StoreError> {
        let key = ledger_key(tenant, &blob.content_id);
        let new_state = entry.state;
        let now = entry.updated_at;
        let json = encode("set_blob_state", &StoredEntry::new(blob, entry.clone()))?;
        self.write("set_blob_state", move |txn, path| {
            let op = "set_blob_state";
            let mut t = txn.open_table(LEDGER).map_err(|e| backend(op, path, e))?;
            if let Some(current) = get_ledger(&t, &key, now, path, op)?
                && !may_replace(current.state, new_state)
            {
                return Ok(false);
            }
            t.insert(key.as_str(), json.as_str())
                .map_err(|e| backend(op, path, e))?;
            Ok(true)
        })
        .await
    }

    async fn due_entries(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<LedgerItem>, StoreError> {
        let tenant = tenant.clone();
        self.read("due_entries", move |txn, path| {
            let mut due = scan_ledger(txn, &tenant, now, path, "due_entries")?;
            due.retain(|i| i.entry.state == BlobState::Failed && i.entry.next_attempt_at.is_some());
            // Stable: equal times stay in content-id order.
            due.sort_by_key(|i| i.entry.next_attempt_at);
            due.truncate(limit);
            Ok(due)
        })
        .await
    }

    async fn ledger(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<Vec<LedgerItem>, StoreError> {
        let tenant = tenant.clone();
        self.read("ledger", move |txn, path| {
            scan_ledger(txn, &tenant, now, path, "ledger")
        })
        .await
    }

    async fn seen(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        hour: DateTime<Utc>,
    ) -> Result<HashSet<u64>, StoreError> {
        let key = seen_key(tenant, content_type, hour);
        self.read("seen", move |txn, path| {
            let t = txn.open_table(SEEN).map_err(|e| backend("seen", path, e))?;
            let Some(v) = t.get(key.as_str()).map_err(|e| backend("seen", path, e))? else {
                return Ok(HashSet::new());
            };
            let stored: StoredSeen = decode(format!("listed-blob summary {key}"), v.value())?;
            Ok(stored.digests.into_iter().collect())
        })
        .await
    }

    async fn add_seen(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        hour: DateTime<Utc>,
        digests: &[u64],
    ) -> Result<(), StoreError> {
        if digests.is_empty() {
            return Ok(());
        }
        let key = seen_key(tenant, content_type, hour);
        let digests = digests.to_vec();
        let expires_at = seen_ttl(hour).timestamp();
        self.write("add_seen", move |txn, path| {
            let op = "add_seen";
            let mut t = txn.open_table(SEEN).map_err(|e| backend(op, path, e))?;
            let mut set: HashSet<u64> = match t
                .get(key.as_str())
                .map_err(|e| backend(op, path, e))?
            {
                None => HashSet::new(),
                Some(v) => decode::<StoredSeen>(format!("listed-blob summary {key}"), v.value())?
                    .digests
                    .into_iter()
                    .collect(),
            };
            set.extend(digests);
            let mut digests: Vec<u64> = set.into_iter().collect();
            digests.sort_unstable();
            let json = encode(
                op,
                &StoredSeen {
                    expires_at,
                    digests,
                },
            )?;
            t.insert(key.as_str(), json.as_str())
                .map_err(|e| backend(op, path, e))?;
            Ok(())
        })
        .await
    }

    async fn blob_entry(
        &self,
        tenant: &TenantId,
        content_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        let key = ledger_key(tenant, content_id);
        self.read("blob_entry", move |txn, path| {
            let t = txn
                .open_table(LEDGER)
                .map_err(|e| backend("blob_entry", path, e))?;
            get_ledger(&t, &key, now, path, "blob_entry")
        })
        .await
    }

    async fn claim_records(
        &self,
        tenant: &TenantId,
        content_id: &str,
        record_ids: &[String],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RecordClaim>, StoreError> {
        if record_ids.is_empty() {
            return Ok(Vec::new());
        }
        let op = "claim_records";
        let json = encode(
            op,
            &StoredRecord {
                blob: content_id.to_owned(),
                expires_at: expires_at.timestamp(),
            },
        )?;
        let content_id = content_id.to_owned();
        let keys: Vec<String> = record_ids.iter().map(|id| record_key(tenant, id)).collect();
        self.write(op, move |txn, path| {
            let mut t = txn.open_table(RECORDS).map_err(|e| backend(op, path, e))?;
            let mut claims = Vec::with_capacity(keys.len());
            for key in &keys {
                let holder = match t.get(key.as_str()).map_err(|e| backend(op, path, e))? {
                    None => None,
                    Some(v) => {
                        let stored: StoredRecord =
                            decode(format!("record claim {key}"), v.value())?;
                        (stored.blob != content_id && !is_expired(stored.expires_at, now))
                            .then_some(stored.blob)
                    }
                };
                match holder {
                    Some(other) => claims.push(RecordClaim::HeldBy(other)),
                    None => {
                        t.insert(key.as_str(), json.as_str())
                            .map_err(|e| backend(op, path, e))?;
                        claims.push(RecordClaim::Owned);
                    }
                }
            }
            Ok(claims)
        })
        .await
    }

    async fn take_over_record(
        &self,
        tenant: &TenantId,
        record_id: &str,
        from: &str,
        to: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let op = "take_over_record";
        let key = record_key(tenant, record_id);
        let (from, to) = (from.to_owned(), to.to_owned());
        let json = encode(
            op,
            &StoredRecord {
                blob: to.clone(),
                expires_at: expires_at.timestamp(),
            },
        )?;
        self.write(op, move |txn, path| {
            let mut t = txn.open_table(RECORDS).map_err(|e| backend(op, path, e))?;
            let holder = match t.get(key.as_str()).map_err(|e| backend(op, path, e))? {
                None => None,
                Some(v) => {
                    Some(decode::<StoredRecord>(format!("record claim {key}"), v.value())?.blob)
                }
            };
            if holder.is_some_and(|h| h != from && h != to) {
                return Ok(false);
            }
            t.insert(key.as_str(), json.as_str())
                .map_err(|e| backend(op, path, e))?;
            Ok(true)
        })
        .await
    }

    async fn release_records(
        &self,
        tenant: &TenantId,
        content_id: &str,
        record_ids: &[String],
    ) -> Result<(), StoreError> {
        let op = "release_records";
        let keys: Vec<String> = record_ids.iter().map(|id| record_key(tenant, id)).collect();
        let me = content_id.to_owned();
        self.write(op, move |txn, path| {
            let mut t = txn.open_table(RECORDS).map_err(|e| backend(op, path, e))?;
            for key in &keys {
                let mine = match t.get(key.as_str()).map_err(|e| backend(op, path, e))? {
                    None => false,
                    Some(v) => {
                        decode::<StoredRecord>(format!("record claim {key}"), v.value())?.blob == me
                    }
                };
                if mine {
                    t.remove(key.as_str()).map_err(|e| backend(op, path, e))?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn load_directory_sync(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<DirectorySync>, StoreError> {
        let key = tenant.to_string();
        self.read("load_directory_sync", move |txn, path| {
            let op = "load_directory_sync";
            let t = txn
                .open_table(DIRECTORY)
                .map_err(|e| backend(op, path, e))?;
            let Some(v) = t.get(key.as_str()).map_err(|e| backend(op, path, e))? else {
                return Ok(None);
            };
            decode(format!("directory sync {key}"), v.value()).map(Some)
        })
        .await
    }

    async fn save_directory_sync(
        &self,
        tenant: &TenantId,
        sync: &DirectorySync,
    ) -> Result<(), StoreError> {
        let key = tenant.to_string();
        let json = encode("save_directory_sync", sync)?;
        self.write("save_directory_sync", move |txn, path| {
            let op = "save_directory_sync";
            let mut t = txn
                .open_table(DIRECTORY)
                .map_err(|e| backend(op, path, e))?;
            t.insert(key.as_str(), json.as_str())
                .map_err(|e| backend(op, path, e))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::memory::contract;
    use super::*;

    fn temp_path() -> PathBuf {
        std::env::temp_dir()
            .join(format!("o365-redb-{}", uuid::Uuid::new_v4()))
            .join("state.redb")
    }

    #[tokio::test]
    async fn redb_store_keeps_the_contract() {
        let path = temp_path();
        contract::run(&RedbStore::open(&path).await.unwrap()).await;
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn state_survives_reopening() {
        let path = temp_path();
        let t = contract::tenant("aaaaaaaa-0000-4000-8000-000000000001", true);
        let cursor = Cursor {
            reconcile_from: Some(DateTime::from_timestamp(1_799_500_000, 0).unwrap()),
            skew_ms: 250,
            ..Cursor::at(DateTime::from_timestamp(1_800_000_000, 0).unwrap())
        };
        {
            let store = RedbStore::open(&path).await.unwrap();
            store.put_tenant(&t).await.unwrap();
            store
                .save_cursor(&t.id, ContentType::General, &cursor, None)
                .await
                .unwrap();
            let err = RedbStore::open(&path).await.unwrap_err();
            assert!(err.to_string().contains("already open"), "{err}");
        }
        let store = RedbStore::open(&path).await.unwrap();
        assert_eq!(store.list_tenants().await.unwrap(), vec![t.clone()]);
        assert_eq!(
            store
                .load_cursor(&t.id, ContentType::General)
                .await
                .unwrap(),
            Some(Versioned {
                value: cursor,
                version: 1
            })
        );
        drop(store);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn values_written_by_the_previous_version_still_load() {
        let path = temp_path();
        let store = RedbStore::open(&path).await.unwrap();
        let t = TenantId::parse("aaaaaaaa-0000-4000-8000-000000000001").unwrap();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        {
            let txn = store.db.begin_write().unwrap();
            {
                let mut c = txn.open_table(CURSORS).unwrap();
                let old = r#"{"version":3,"cursor":{"listed_until":"2027-01-15T08:00:00Z","deep_relist_at":"2027-01-15T07:00:00Z"}}"#;
                c.insert(cursor_key(&t, ContentType::General).as_str(), old)
                    .unwrap();
                let mut l = txn.open_table(LEDGER).unwrap();
                let old = r#"{"expires_at":1900000000,"entry":{"state":"done","updated_at":"2027-01-15T08:00:00Z","records":5,"object_key":"k","reason":null}}"#;
                l.insert(ledger_key(&t, "old$1").as_str(), old).unwrap();
            }
            txn.commit().unwrap();
        }
        assert_eq!(
            store.load_cursor(&t, ContentType::General).await.unwrap(),
            Some(Versioned {
                value: Cursor::at(at),
                version: 3
            })
        );
        let done = LedgerEntry {
            records: Some(5),
            object_key: Some("k".into()),
            ..LedgerEntry::new(BlobState::Done, at)
        };
        assert_eq!(store.blob_entry(&t, "old$1", at).await.unwrap(), Some(done));
        assert!(
            store.ledger(&t, at).await.unwrap().is_empty(),
            "an entry without its blob is left out of the ledger"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_store_is_reported_with_its_path() {
        let path = temp_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"definitely not a redb file, just some text bytes").unwrap();
        let err = RedbStore::open(&path).await.unwrap_err();
        assert!(err.to_string().contains("state.redb"), "{err}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
