//! The stores and sinks a local run (and `tenants`, `status`, `redrive`, `backfill`) can use:
//! a redb file or a deployment's DynamoDB table; a folder or an S3 bucket.

use std::path::Path;

use bytes::Bytes;
use shared::model::{
    ContentBlob, ContentType, Cursor, DirectorySync, LedgerEntry, LedgerItem, Tenant, TenantId,
    Versioned,
};
use shared::sink::{FolderSink, ObjectMeta, ObjectSink, S3Sink, SinkError};
use shared::store::{Claim, DynamoDbStore, RecordClaim, RedbStore, StateStore, StoreError};

/// Where tenants are stored: a local state file or the deployed table.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Local state file (redb), as in a `run` configuration.
    #[arg(long, global = true, conflicts_with = "table")]
    pub state: Option<std::path::PathBuf>,
    /// DynamoDB state table of a deployment (stack output StateTableName).
    #[arg(long, global = true)]
    pub table: Option<String>,
}

/// A state store chosen at run time.
#[derive(Debug)]
pub enum AnyStore {
    /// Local file.
    Redb(RedbStore),
    /// DynamoDB.
    Dynamo(DynamoDbStore),
}

/// Opens `dynamodb://TABLE` or a redb file path.
pub async fn open_store(spec: &str) -> Result<AnyStore, String> {
    match spec.strip_prefix("dynamodb://") {
        Some(table) => {
            let conf = shared::aws::sdk_config(None).await;
            Ok(AnyStore::Dynamo(DynamoDbStore::new(
                aws_sdk_dynamodb::Client::new(&conf),
                table.to_owned(),
            )))
        }
        None => {
            if let Some(dir) = Path::new(spec)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            RedbStore::open(Path::new(spec))
                .await
                .map(AnyStore::Redb)
                .map_err(|e| e.to_string())
        }
    }
}

impl StoreArgs {
    /// Opens the chosen store.
    pub async fn open(&self) -> Result<AnyStore, String> {
        match (&self.state, &self.table) {
            (Some(p), None) => open_store(&p.display().to_string()).await,
            (None, Some(t)) => open_store(&format!("dynamodb://{t}")).await,
            _ => Err(
                "give --state FILE (local runs) or --table NAME (a deployment's StateTableName)"
                    .into(),
            ),
        }
    }
}

impl StateStore for AnyStore {
    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        match self {
            AnyStore::Redb(s) => s.put_tenant(tenant).await,
            AnyStore::Dynamo(s) => s.put_tenant(tenant).await,
        }
    }
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.list_tenants().await,
            AnyStore::Dynamo(s) => s.list_tenants().await,
        }
    }
    async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        match self {
            AnyStore::Redb(s) => s.delete_tenant(id).await,
            AnyStore::Dynamo(s) => s.delete_tenant(id).await,
        }
    }
    async fn load_cursor(
        &self,
        t: &TenantId,
        ct: ContentType,
    ) -> Result<Option<Versioned<Cursor>>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.load_cursor(t, ct).await,
            AnyStore::Dynamo(s) => s.load_cursor(t, ct).await,
        }
    }
    async fn save_cursor(
        &self,
        t: &TenantId,
        ct: ContentType,
        cursor: &Cursor,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        match self {
            AnyStore::Redb(s) => s.save_cursor(t, ct, cursor, expected).await,
            AnyStore::Dynamo(s) => s.save_cursor(t, ct, cursor, expected).await,
        }
    }
    async fn claim_blob(
        &self,
        t: &TenantId,
        blob: &ContentBlob,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Claim, StoreError> {
        match self {
            AnyStore::Redb(s) => s.claim_blob(t, blob, now).await,
            AnyStore::Dynamo(s) => s.claim_blob(t, blob, now).await,
        }
    }
    async fn set_blob_state(
        &self,
        t: &TenantId,
        blob: &ContentBlob,
        entry: &LedgerEntry,
    ) -> Result<bool, StoreError> {
        match self {
            AnyStore::Redb(s) => s.set_blob_state(t, blob, entry).await,
            AnyStore::Dynamo(s) => s.set_blob_state(t, blob, entry).await,
        }
    }
    async fn due_entries(
        &self,
        t: &TenantId,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<LedgerItem>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.due_entries(t, now, limit).await,
            AnyStore::Dynamo(s) => s.due_entries(t, now, limit).await,
        }
    }
    async fn ledger(
        &self,
        t: &TenantId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<LedgerItem>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.ledger(t, now).await,
            AnyStore::Dynamo(s) => s.ledger(t, now).await,
        }
    }
    async fn seen(
        &self,
        t: &TenantId,
        ct: ContentType,
        hour: chrono::DateTime<chrono::Utc>,
    ) -> Result<std::collections::HashSet<u64>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.seen(t, ct, hour).await,
            AnyStore::Dynamo(s) => s.seen(t, ct, hour).await,
        }
    }
    async fn add_seen(
        &self,
        t: &TenantId,
        ct: ContentType,
        hour: chrono::DateTime<chrono::Utc>,
        digests: &[u64],
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Redb(s) => s.add_seen(t, ct, hour, digests).await,
            AnyStore::Dynamo(s) => s.add_seen(t, ct, hour, digests).await,
        }
    }
    async fn blob_entry(
        &self,
        t: &TenantId,
        id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.blob_entry(t, id, now).await,
            AnyStore::Dynamo(s) => s.blob_entry(t, id, now).await,
        }
    }
    async fn claim_records(
        &self,
        t: &TenantId,
        content_id: &str,
        record_ids: &[String],
        expires_at: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<RecordClaim>, StoreError> {
        match self {
            AnyStore::Redb(s) => {
                s.claim_records(t, content_id, record_ids, expires_at, now)
                    .await
            }
            AnyStore::Dynamo(s) => {
                s.claim_records(t, content_id, record_ids, expires_at, now)
                    .await
            }
        }
    }
    async fn release_records(
        &self,
        t: &TenantId,
        content_id: &str,
        record_ids: &[String],
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Redb(s) => s.release_records(t, content_id, record_ids).await,
            AnyStore::Dynamo(s) => s.release_records(t, content_id, record_ids).await,
        }
    }
    async fn take_over_record(
        &self,
        t: &TenantId,
        record_id: &str,
        from: &str,
        to: &str,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        match self {
            AnyStore::Redb(s) => s.take_over_record(t, record_id, from, to, expires_at).await,
            AnyStore::Dynamo(s) => s.take_over_record(t, record_id, from, to, expires_at).await,
        }
    }
    async fn load_directory_sync(&self, t: &TenantId) -> Result<Option<DirectorySync>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.load_directory_sync(t).await,
            AnyStore::Dynamo(s) => s.load_directory_sync(t).await,
        }
    }
    async fn save_directory_sync(
        &self,
        t: &TenantId,
        sync: &DirectorySync,
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Redb(s) => s.save_directory_sync(t, sync).await,
            AnyStore::Dynamo(s) => s.save_directory_sync(t, sync).await,
        }
    }
}

/// An object sink chosen at run time.
#[derive(Debug)]
pub enum AnySink {
    /// Local folder.
    Folder(FolderSink),
    /// S3 bucket.
    S3(S3Sink),
}

/// Opens `s3://BUCKET` or a folder path.
pub async fn open_sink(spec: &str) -> Result<AnySink, String> {
    match spec.strip_prefix("s3://") {
        Some(bucket) => {
            let conf = shared::aws::sdk_config(None).await;
            Ok(AnySink::S3(S3Sink::new(
                shared::aws::s3_client(&conf, false),
                bucket.trim_end_matches('/').to_owned(),
            )))
        }
        None => {
            std::fs::create_dir_all(spec)
                .map_err(|e| format!("cannot create output folder {spec}: {e}"))?;
            Ok(AnySink::Folder(FolderSink::new(spec.into())))
        }
    }
}

impl ObjectSink for AnySink {
    async fn put(&self, key: &str, body: Bytes, meta: &ObjectMeta) -> Result<(), SinkError> {
        match self {
            AnySink::Folder(s) => s.put(key, body, meta).await,
            AnySink::S3(s) => s.put(key, body, meta).await,
        }
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, SinkError> {
        match self {
            AnySink::Folder(s) => s.get(key).await,
            AnySink::S3(s) => s.get(key).await,
        }
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, SinkError> {
        match self {
            AnySink::Folder(s) => s.list(prefix).await,
            AnySink::S3(s) => s.list(prefix).await,
        }
    }
    fn supports_parts(&self) -> bool {
        match self {
            AnySink::Folder(s) => s.supports_parts(),
            AnySink::S3(s) => s.supports_parts(),
        }
    }
    async fn create_upload(&self, key: &str, meta: &ObjectMeta) -> Result<String, SinkError> {
        match self {
            AnySink::Folder(s) => s.create_upload(key, meta).await,
            AnySink::S3(s) => s.create_upload(key, meta).await,
        }
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String, SinkError> {
        match self {
            AnySink::Folder(s) => s.upload_part(key, upload_id, number, body).await,
            AnySink::S3(s) => s.upload_part(key, upload_id, number, body).await,
        }
    }
    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), SinkError> {
        match self {
            AnySink::Folder(s) => s.complete_upload(key, upload_id, parts).await,
            AnySink::S3(s) => s.complete_upload(key, upload_id, parts).await,
        }
    }
    async fn abort_upload(&self, key: &str, upload_id: &str) {
        match self {
            AnySink::Folder(s) => s.abort_upload(key, upload_id).await,
            AnySink::S3(s) => s.abort_upload(key, upload_id).await,
        }
    }
}
