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
//! | record claim | `REC#{tenant}#{record id}` | `REC` (owning blob in `blob`; TTL: `expires_at`) |
//! | directory sync | `TENANT#{tenant}` | `DIRECTORY` (`delta_link`, `synced_at`, `users`) |

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::model::{
    BlobState, ContentBlob, ContentType, Cursor, DirectorySync, LedgerEntry, Tenant, TenantId,
    Versioned,
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

    /// Sets a blob's state (and, for done/expired/failed, its details). Creates the entry if
    /// missing (a job whose claim aged out still gets recorded).
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    fn set_blob_state(
        &self,
        tenant: &TenantId,
        blob: &ContentBlob,
        entry: &LedgerEntry,
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
    /// `true` when this blob owns the record (it was unclaimed, or this same blob claimed it
    /// before — a retry after a crash), `false` when another blob claimed it first (Microsoft
    /// delivered the record twice). A claim lives until `expires_at`; expired claims count as
    /// absent.
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
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

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

/// Shared by the adapters: a state never goes backwards from done (a late duplicate job must not
/// turn a done blob back into enqueued).
pub(crate) fn may_replace(current: BlobState, new: BlobState) -> bool {
    !(current == BlobState::Done && new != BlobState::Done)
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
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).set_blob_state(tenant, blob, entry)
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
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send {
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
