//! `run`: the lister and fetchers in one process, with local or AWS storage.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use shared::api::http_client;
use shared::app::SystemClock;
use shared::app::clients::TenantClients;
use shared::app::local::{LocalReport, LocalSettings, run_once_with_progress};

use crate::progress::{BarSlot, RunProgress};
use shared::config::LocalConfig;
use shared::model::{
    ContentBlob, ContentType, Cursor, DirectorySync, LedgerEntry, Tenant, TenantId, Versioned,
};
use shared::retry::RetryPolicy;
use shared::secrets::AwsSecrets;
use shared::sink::{FolderSink, ObjectMeta, ObjectSink, S3Sink, SinkError};
use shared::store::{Claim, DynamoDbStore, RedbStore, StateStore, StoreError};

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
    ) -> Result<(), StoreError> {
        match self {
            AnyStore::Redb(s) => s.set_blob_state(t, blob, entry).await,
            AnyStore::Dynamo(s) => s.set_blob_state(t, blob, entry).await,
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
    ) -> Result<Vec<bool>, StoreError> {
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

/// The settings of a local pass from a checked configuration.
pub fn settings(cfg: &LocalConfig) -> LocalSettings {
    LocalSettings {
        lister: cfg.lister.clone(),
        fetcher: cfg.fetcher.clone(),
        workers: cfg.workers,
        queue_capacity: cfg.queue_capacity,
        ..LocalSettings::default()
    }
}

/// Prints a pass report for people.
pub fn print_report(report: &LocalReport) {
    println!("collected in {:.1} s", report.seconds);
    println!("  {:<28} {:>10}", "content type", "records");
    for ct in ContentType::ALL {
        let n = report.records.get(ct.as_str()).copied().unwrap_or(0);
        println!("  {:<28} {:>10}", ct.as_str(), n);
    }
    let total: u64 = report.records.values().sum();
    println!("  {:<28} {:>10}", "total", total);
    println!(
        "  blobs written {}, already collected {}, duplicate records dropped {} (inside blobs) + {} (across blobs), fetch retries {}",
        report.blobs_written,
        report.already_done,
        report.duplicates,
        report.cross_blob_duplicates,
        report.retries
    );
    println!(
        "  listing: {} jobs enqueued over {} feeds",
        report.lister.jobs(),
        report.lister.feeds.len()
    );
    for f in report.lister.feeds.iter().filter(|f| f.error.is_some()) {
        println!(
            "  FEED FAILED {} {}: {}",
            f.tenant,
            f.content_type,
            f.error.as_deref().unwrap_or("")
        );
    }
    for e in &report.lister.tenant_errors {
        println!("  TENANT FAILED {e}");
    }
    for id in &report.expired {
        println!("  LOST UPSTREAM (blob expired at Microsoft before it could be fetched): {id}");
    }
    for (_, reason) in &report.dead_letters {
        println!("  DEAD-LETTERED: {reason}");
    }
}

/// `o365-collector run --config FILE [--once]`.
pub async fn run(config: &Path, once: bool, bar: &BarSlot) -> Result<ExitCode, String> {
    let cfg = LocalConfig::from_file(config).map_err(|e| e.to_string())?;
    if cfg.tenants.is_empty() {
        return Err(format!(
            "{} lists no [[tenant]]: add one (docs/config.md), or try `o365-collector demo`",
            config.display()
        ));
    }
    let store = Arc::new(open_store(&cfg.state).await?);
    let sink = Arc::new(open_sink(&cfg.output).await?);
    for t in &cfg.tenants {
        store.put_tenant(t).await.map_err(|e| e.to_string())?;
    }
    let conf = shared::aws::sdk_config(None).await;
    let secrets = AwsSecrets::new(aws_sdk_secretsmanager::Client::new(&conf));
    let apis = Arc::new(TenantClients::new(
        http_client(),
        secrets,
        RetryPolicy::default(),
    ));
    let settings = settings(&cfg);
    loop {
        let progress = RunProgress::start(bar);
        let logger = progress.spawn_logger();
        let report = run_once_with_progress(
            store.clone(),
            sink.clone(),
            apis.clone(),
            Arc::new(SystemClock),
            &settings,
            progress.clone(),
        )
        .await;
        if let Some(l) = logger {
            l.abort();
        }
        progress.finish(bar);
        let report = report.map_err(|e| e.to_string())?;
        print_report(&report);
        let failed = report.lister.failures() > 0 || !report.dead_letters.is_empty();
        if once {
            // Benchmarks only (`O365_REPORT_RUSAGE=1`): peak RSS and CPU time, as the last line.
            crate::bench::report_rusage();
            return Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        tokio::time::sleep(cfg.interval).await;
    }
}
