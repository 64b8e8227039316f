//! The state store: tenants, listing cursors and the blob ledger, in one small table.
//!
//! Adapters: [`DynamoDbStore`] (AWS), [`RedbStore`] (local runs, one file) and [`MemoryStore`]
//! (tests). Layout of the DynamoDB table (`pk`, `sk`, TTL attribute `expires_at`):
//!
//! | item | pk | sk |
//! |---|---|---|
//! | tenant | `TENANTS` | `TENANT#{tenant}` |
//! | cursor | `TENANT#{tenant}` | `CURSOR#{content type}` |
//! | ledger entry | `TENANT#{tenant}` | `BLOB#{content id}` (TTL: a day after `contentExpiration`) |
//! | listed-blob summary | `TENANT#{tenant}` | `SEEN#{content type}#{hour of contentCreated}` (binary set `ids` of 8-byte digests; TTL 8 days) |
//! | record claim | `REC#{tenant}#{record id, SHA-256 hex past 512 bytes}` | `REC` (owning blob in `blob`; TTL: `expires_at`) |
//! | directory sync | `TENANT#{tenant}` | `DIRECTORY` (`delta_link`, `synced_at`, `users`) |
//!
//! Failed entries that the sweep retries carry `open_pk` (= their `pk`) and `due` (the next
//! retry time): the sparse global secondary index `open` (`open_pk`, `due`) holds exactly those,
//! so a sweep reads only what it must drive and never scans the table. Entries on their normal
//! path (claimed, fetched, done) never enter the index, so they cost no index writes.

use std::collections::HashSet;
use std::future::Future;

use chrono::{DateTime, Utc};

use crate::model::{
    BlobState, ContentBlob, ContentType, Cursor, DirectorySync, LedgerEntry, LedgerItem, Tenant,
    TenantId, Versioned,
};

pub mod dynamodb;
mod memory;
mod redb_store;

pub use dynamodb::DynamoDbStore;
pub use memory::MemoryStore;
pub use redb_store::RedbStore;

/// Result of claiming a blob in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The blob was not in the ledger; it is now, as [`BlobState::Pending`].
    New,
    /// The blob was already in the ledger.
    Existing(LedgerEntry),
}

/// Who holds a record `Id` (see [`StateStore::claim_records`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordClaim {
    /// This blob holds it (it was free, or this blob claimed it before).
    Owned,
    /// Another blob claimed it first.
    HeldBy(String),
}

impl RecordClaim {
    /// True when this blob holds the record.
    pub fn is_owned(&self) -> bool {
        matches!(self, RecordClaim::Owned)
    }
}

/// Record ids longer than this are stored under their SHA-256 (DynamoDB keys hold at most
/// 2,048 bytes; every adapter does the same so they agree).
pub const MAX_RECORD_KEY_BYTES: usize = 512;

/// The key a record id is claimed under: the id itself, or `sha256:<hex>` past
/// [`MAX_RECORD_KEY_BYTES`].
pub fn record_key(record_id: &str) -> std::borrow::Cow<'_, str> {
    if record_id.len() <= MAX_RECORD_KEY_BYTES {
        return std::borrow::Cow::Borrowed(record_id);
    }
    use sha2::Digest;
    let d = sha2::Sha256::digest(record_id.as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    std::borrow::Cow::Owned(format!("sha256:{hex}"))
}

/// How long a listed-blob summary is kept (Microsoft keeps content 7 days).
pub const SEEN_TTL_DAYS: i64 = 8;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: someone else changed the item first.
    #[error("{what} was changed concurrently (expected version {expected:?}); re-read and retry")]
    Conflict {
        /// Which item.
        what: String,
        /// The version the writer expected.
        expected: Option<u64>,
    },
    /// A stored item cannot be decoded.
    #[error("stored item {what} is corrupt: {reason}")]
    Corrupt {
        /// Which item.
        what: String,
        /// Why.
        reason: String,
    },
    /// The backend failed (throttling, network, missing table…).
    #[error("state store {operation} failed: {message}")]
    Backend {
        /// The operation.
        operation: &'static str,
        /// What the backend said (never item contents).
        message: String,
        /// Retrying later may succeed.
        retryable: bool,
    },
}

impl StoreError {
    /// True when retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Conflict { .. } => true,
            StoreError::Corrupt { .. } => false,
            StoreError::Backend { retryable, .. } => *retryable,
        }
    }
}

/// Tenants, cursors and the blob ledger.
pub trait StateStore: Send + Sync {
    /// Adds or replaces a tenant.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn put_tenant(&self, tenant: &Tenant) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// All tenants, enabled or not, ordered by id.
    ///
    /// # Errors
    /// [`StoreError::Backend`]; [`StoreError::Corrupt`] for an undecodable item.
    fn list_tenants(&self) -> impl Future<Output = Result<Vec<Tenant>, StoreError>> + Send;

    /// Removes a tenant (its cursors and ledger age out by TTL). Returns whether it existed.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn delete_tenant(&self, id: &TenantId)
    -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The cursor of a tenant's content type, with its version; `None` before the first run.
    ///
    /// # Errors
    /// [`StoreError::Backend`], [`StoreError::Corrupt`].
    fn load_cursor(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
    ) -> impl Future<Output = Result<Option<Versioned<Cursor>>, StoreError>> + Send;

    /// Saves a cursor if the stored version still equals `expected` (`None`: must not exist).
    /// Returns the new version.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when another writer got there first.
    fn save_cursor(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        cursor: &Cursor,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Puts a blob in the ledger as pending unless it is there already (conditional put), with
    /// a TTL a day after its `contentExpiration`.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn claim_blob(
        &self,
        tenant: &TenantId,
        blob: &ContentBlob,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Sets a blob's state (and its details) if the entry may move there
    /// ([`BlobState::may_become`]: entries only move forward). Creates the entry if missing (a
    /// job whose claim aged out still gets recorded). Returns whether the write took effect.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn set_blob_state(
        &self,
        tenant: &TenantId,
        blob: &ContentBlob,
        entry: &LedgerEntry,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The tenant's failed entries that the sweep retries (those with a `next_attempt_at`),
    /// due or not, oldest due first, at most `limit`, skipping entries past their TTL at
    /// `now`. The caller drives the ones due ([`LedgerEntry::is_due`]) and reports the age of
    /// the oldest. Reads only those (a sparse index), never the ledger.
    ///
    /// # Errors
    /// [`StoreError::Backend`], [`StoreError::Corrupt`].
    fn due_entries(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LedgerItem>, StoreError>> + Send;

    /// Every unexpired entry of the tenant's ledger, in content-id order. Reads the whole
    /// ledger: for `status`, `redrive` and the start of a local run, not for ticks.
    ///
    /// # Errors
    /// [`StoreError::Backend`], [`StoreError::Corrupt`].
    fn ledger(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<LedgerItem>, StoreError>> + Send;

    /// The listed-blob summary of one feed and hour of `contentCreated`
    /// ([`crate::model::seen_hour`]): digests ([`crate::model::seen_digest`]) of the blobs whose
    /// job a lister handed on (or that are known done, expired or failed). A re-listing
    /// recognises them without a per-blob read or write.
    ///
    /// # Errors
    /// [`StoreError::Backend`], [`StoreError::Corrupt`].
    fn seen(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        hour: DateTime<Utc>,
    ) -> impl Future<Output = Result<HashSet<u64>, StoreError>> + Send;

    /// Adds digests to a summary (an atomic union: concurrent listers never lose each other's
    /// additions). Kept [`SEEN_TTL_DAYS`] after `hour`.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn add_seen(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        hour: DateTime<Utc>,
        digests: &[u64],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A blob's ledger entry, if any (entries past their TTL are treated as absent).
    ///
    /// # Errors
    /// [`StoreError::Backend`], [`StoreError::Corrupt`].
    fn blob_entry(
        &self,
        tenant: &TenantId,
        content_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<LedgerEntry>, StoreError>> + Send;

    /// Claims record `Id`s for a blob, across blobs: returns, per id and in the same order,
    /// [`RecordClaim::Owned`] when this blob holds the record (it was unclaimed, or this same
    /// blob claimed it before — a retry after a crash), [`RecordClaim::HeldBy`] the blob that
    /// claimed it first (Microsoft delivered the record twice). A claim lives until
    /// `expires_at`; expired claims count as absent. Ids are keyed by [`record_key`].
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn claim_records(
        &self,
        tenant: &TenantId,
        content_id: &str,
        record_ids: &[String],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<RecordClaim>, StoreError>> + Send;

    /// Moves a record claim from blob `from` to blob `to` if `from` still holds it (the holder
    /// failed, expired or was abandoned: the record must not be lost with it). Returns whether
    /// `to` now holds it.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn take_over_record(
        &self,
        tenant: &TenantId,
        record_id: &str,
        from: &str,
        to: &str,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Drops the claims `content_id` holds on these records (a blob that must wait for
    /// another lets go of what it holds, so two blobs never wait for each other).
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn release_records(
        &self,
        tenant: &TenantId,
        content_id: &str,
        record_ids: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Where the tenant's directory sync stands (its Graph delta link); `None` before the
    /// first sync.
    ///
    /// # Errors
    /// [`StoreError::Backend`], [`StoreError::Corrupt`].
    fn load_directory_sync(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<DirectorySync>, StoreError>> + Send;

    /// Saves where the tenant's directory sync stands (replaces what was there; the caller
    /// writes the snapshot first).
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn save_directory_sync(
        &self,
        tenant: &TenantId,
        sync: &DirectorySync,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Shared by the adapters: the TTL of a ledger entry.
pub(crate) fn ledger_ttl(blob: &ContentBlob) -> DateTime<Utc> {
    blob.content_expiration + chrono::Duration::days(1)
}

/// Shared by the adapters: entries only move forward ([`BlobState::may_become`]).
pub(crate) fn may_replace(current: BlobState, new: BlobState) -> bool {
    current.may_become(new)
}

/// Shared by the adapters: the TTL of a listed-blob summary.
pub(crate) fn seen_ttl(hour: DateTime<Utc>) -> DateTime<Utc> {
    hour + chrono::Duration::days(SEEN_TTL_DAYS)
}

impl<T: StateStore + ?Sized> StateStore for std::sync::Arc<T> {
    fn put_tenant(&self, tenant: &Tenant) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).put_tenant(tenant)
    }
    fn list_tenants(&self) -> impl Future<Output = Result<Vec<Tenant>, StoreError>> + Send {
        (**self).list_tenants()
    }
    fn delete_tenant(
        &self,
        id: &TenantId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).delete_tenant(id)
    }
    fn load_cursor(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
    ) -> impl Future<Output = Result<Option<Versioned<Cursor>>, StoreError>> + Send {
        (**self).load_cursor(tenant, content_type)
    }
    fn save_cursor(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        cursor: &Cursor,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).save_cursor(tenant, content_type, cursor, expected)
    }
    fn claim_blob(
        &self,
        tenant: &TenantId,
        blob: &ContentBlob,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        (**self).claim_blob(tenant, blob, now)
    }
    fn set_blob_state(
        &self,
        tenant: &TenantId,
        blob: &ContentBlob,
        entry: &LedgerEntry,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).set_blob_state(tenant, blob, entry)
    }
    fn due_entries(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LedgerItem>, StoreError>> + Send {
        (**self).due_entries(tenant, now, limit)
    }
    fn ledger(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<LedgerItem>, StoreError>> + Send {
        (**self).ledger(tenant, now)
    }
    fn seen(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        hour: DateTime<Utc>,
    ) -> impl Future<Output = Result<HashSet<u64>, StoreError>> + Send {
        (**self).seen(tenant, content_type, hour)
    }
    fn add_seen(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        hour: DateTime<Utc>,
        digests: &[u64],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).add_seen(tenant, content_type, hour, digests)
    }
    fn take_over_record(
        &self,
        tenant: &TenantId,
        record_id: &str,
        from: &str,
        to: &str,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).take_over_record(tenant, record_id, from, to, expires_at)
    }
    fn release_records(
        &self,
        tenant: &TenantId,
        content_id: &str,
        record_ids: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).release_records(tenant, content_id, record_ids)
    }
    fn blob_entry(
        &self,
        tenant: &TenantId,
        content_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<LedgerEntry>, StoreError>> + Send {
        (**self).blob_entry(tenant, content_id, now)
    }
    fn claim_records(
        &self,
        tenant: &TenantId,
        content_id: &str,
        record_ids: &[String],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<RecordClaim>, StoreError>> + Send {
        (**self).claim_records(tenant, content_id, record_ids, expires_at, now)
    }
    fn load_directory_sync(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<DirectorySync>, StoreError>> + Send {
        (**self).load_directory_sync(tenant)
    }
    fn save_directory_sync(
        &self,
        tenant: &TenantId,
        sync: &DirectorySync,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).save_directory_sync(tenant, sync)
    }
}
