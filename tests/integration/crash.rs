//! Crash points, on moto with the real adapters: a process that dies between two steps leaves
//! state that the next run completes — no loss, no duplicate objects.
//!
//! A crash is modelled by a store wrapper whose chosen write fails once: the use case stops
//! right there, as a killed process would (the steps before it are durable, the ones after it
//! never happen).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use integration_tests::stack::Stack;
use shared::api::http_client;
use shared::app::SystemClock;
use shared::app::clients::TenantClients;
use shared::app::fetcher::{Fetcher, FetcherSettings, JobOutcome, QueueMessage};
use shared::app::lister::{self, ListerSettings};
use shared::model::{
    BlobState, ContentBlob, ContentType, Cursor, LedgerEntry, SecretRef, Tenant, TenantId,
    Versioned,
};
use shared::queue::SqsQueue;
use shared::retry::RetryPolicy;
use shared::secrets::LocalSecrets;
use shared::store::{Claim, DynamoDbStore, RecordClaim, StateStore, StoreError};

use crate::support::*;

/// Which write "kills the process".
#[derive(Clone, Copy, PartialEq, Eq)]
enum CrashAt {
    CursorSave,
    MarkDone,
}

struct Crashing {
    inner: DynamoDbStore,
    at: CrashAt,
    remaining: AtomicU32,
}

impl Crashing {
    fn crash(&self, here: CrashAt) -> Result<(), StoreError> {
        if self.at == here && self.remaining.load(Ordering::SeqCst) > 0 {
            self.remaining.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::Backend {
                operation: "crash",
                message: "process killed here".into(),
                retryable: false,
            });
        }
        Ok(())
    }
}

impl StateStore for Crashing {
    async fn put_tenant(&self, t: &Tenant) -> Result<(), StoreError> {
        self.inner.put_tenant(t).await
    }
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.inner.list_tenants().await
    }
    async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        self.inner.delete_tenant(id).await
    }
    async fn load_cursor(
        &self,
        t: &TenantId,
        ct: ContentType,
    ) -> Result<Option<Versioned<Cursor>>, StoreError> {
        self.inner.load_cursor(t, ct).await
    }
    async fn save_cursor(
        &self,
        t: &TenantId,
        ct: ContentType,
        c: &Cursor,
        e: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.crash(CrashAt::CursorSave)?;
        self.inner.save_cursor(t, ct, c, e).await
    }
    async fn claim_blob(
        &self,
        t: &TenantId,
        b: &ContentBlob,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        self.inner.claim_blob(t, b, now).await
    }
    async fn set_blob_state(
        &self,
        t: &TenantId,
        b: &ContentBlob,
        e: &LedgerEntry,
    ) -> Result<bool, StoreError> {
        if e.state == BlobState::Done {
            self.crash(CrashAt::MarkDone)?;
        }
        self.inner.set_blob_state(t, b, e).await
    }
    async fn due_entries(
        &self,
        t: &TenantId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<shared::model::LedgerItem>, StoreError> {
        self.inner.due_entries(t, now, limit).await
    }
    async fn ledger(
        &self,
        t: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<Vec<shared::model::LedgerItem>, StoreError> {
        self.inner.ledger(t, now).await
    }
    async fn seen(
        &self,
        t: &TenantId,
        ct: ContentType,
        hour: DateTime<Utc>,
    ) -> Result<std::collections::HashSet<u64>, StoreError> {
        self.inner.seen(t, ct, hour).await
    }
    async fn add_seen(
        &self,
        t: &TenantId,
        ct: ContentType,
        hour: DateTime<Utc>,
        digests: &[u64],
    ) -> Result<(), StoreError> {
        self.inner.add_seen(t, ct, hour, digests).await
    }
    async fn release_records(
        &self,
        t: &TenantId,
        content_id: &str,
        record_ids: &[String],
    ) -> Result<(), StoreError> {
        self.inner.release_records(t, content_id, record_ids).await
    }
    async fn take_over_record(
        &self,
        t: &TenantId,
        record_id: &str,
        from: &str,
        to: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner
            .take_over_record(t, record_id, from, to, expires_at)
            .await
    }
    async fn blob_entry(
        &self,
        t: &TenantId,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        self.inner.blob_entry(t, id, now).await
    }
    async fn claim_records(
        &self,
        t: &TenantId,
        content_id: &str,
        record_ids: &[String],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RecordClaim>, StoreError> {
        self.inner
            .claim_records(t, content_id, record_ids, expires_at, now)
            .await
    }
    async fn load_directory_sync(
        &self,
        t: &TenantId,
    ) -> Result<Option<shared::model::DirectorySync>, StoreError> {
        self.inner.load_directory_sync(t).await
    }
    async fn save_directory_sync(
        &self,
        t: &TenantId,
        sync: &shared::model::DirectorySync,
    ) -> Result<(), StoreError> {
        self.inner.save_directory_sync(t, sync).await
    }
}

async fn setup(
    at: CrashAt,
    crashes: u32,
) -> (
    Stack,
    o365_emulator::Emulator,
    Arc<Crashing>,
    std::path::PathBuf,
) {
    let stack = Stack::create(20).await;
    let emu = o365_emulator::Emulator::start(scenario(""))
        .await
        .expect("emulator");
    let dir = std::env::temp_dir().join(format!("o365-crash-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("a.pem");
    std::fs::write(&pem, &cert().pem).unwrap();
    let secret = dir.join("b.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let store = Arc::new(Crashing {
        inner: stack.store(),
        at,
        remaining: AtomicU32::new(crashes),
    });
    for t in tenants(
        &emu,
        &pem.display().to_string(),
        SecretRef::File(secret.display().to_string()),
    ) {
        store.put_tenant(&t).await.unwrap();
    }
    (stack, emu, store, dir)
}

fn apis() -> Arc<TenantClients<LocalSecrets>> {
    let retry = RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        ..RetryPolicy::default()
    };
    Arc::new(TenantClients::new(http_client(), LocalSecrets, retry))
}

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(120)
}

/// Drains the SQS queue through the fetcher use case; returns outcomes by kind.
async fn drain<S: StateStore>(
    stack: &Stack,
    fetcher: &Fetcher<
        S,
        shared::sink::S3Sink,
        SqsQueue,
        Arc<TenantClients<LocalSecrets>>,
        SystemClock,
    >,
) -> BTreeMap<&'static str, u32> {
    let mut counts = BTreeMap::new();
    let mut empty = 0;
    while empty < 2 {
        let (event, handles) = stack
            .receive_event(&stack.queue_url, Duration::from_secs(1))
            .await;
        if handles.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        let messages: Vec<QueueMessage> = event["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| QueueMessage {
                id: r["messageId"].as_str().unwrap().to_owned(),
                body: r["body"].as_str().unwrap().to_owned(),
                receive_count: r["attributes"]["ApproximateReceiveCount"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            })
            .collect();
        let report = fetcher.handle_batch(&messages).await;
        for (_, o) in &report.outcomes {
            let k = match o {
                JobOutcome::Written { .. } => "written",
                JobOutcome::AlreadyDone { .. } => "already_done",
                JobOutcome::Expired { .. } => "expired",
                JobOutcome::DeadLettered { .. } => "dead_lettered",
                JobOutcome::Retry { .. } => "retry",
            };
            *counts.entry(k).or_default() += 1;
        }
        let response = serde_json::json!({"batchItemFailures": report.failures().iter()
            .map(|id| serde_json::json!({"itemIdentifier": id})).collect::<Vec<_>>()});
        stack.settle(&stack.queue_url, &handles, &response).await;
    }
    counts
}

async fn written(stack: &Stack) -> (Written, usize) {
    let mut w: Written = BTreeMap::new();
    let keys = stack.object_keys().await;
    for k in keys.iter().filter(|k| k.starts_with("ocsf/")) {
        add_lines(&mut w, k, &stack.object_lines(k).await);
    }
    // One raw archive object per blob written.
    (w, keys.iter().filter(|k| k.starts_with("raw/")).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lister_killed_after_enqueue_before_cursor_save_loses_nothing_and_duplicates_nothing() {
    let (stack, emu, store, dir) = setup(CrashAt::CursorSave, 10).await;
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&stack.conf),
        stack.queue_url.clone(),
        None,
    );
    let apis = apis();
    // One window for the whole first-run lookback, so that the crash comes after its enqueue.
    let settings = ListerSettings {
        window: shared::model::MAX_WINDOW,
        ..ListerSettings::default()
    };
    let t0 = emu.now();
    // First run: every feed enqueues its window, then "dies" at the cursor save.
    let first = lister::run(
        store.as_ref(),
        &queue,
        &apis,
        &SystemClock,
        &settings,
        deadline(),
    )
    .await
    .unwrap();
    assert_eq!(
        first.failures(),
        10,
        "every feed crashed at the cursor save"
    );
    for t in [TENANT_CERT, TENANT_SECRET] {
        let id = TenantId::parse(t).unwrap();
        assert!(
            store
                .load_cursor(&id, ContentType::Exchange)
                .await
                .unwrap()
                .is_none()
        );
    }
    let enqueued_first = first.jobs();
    assert!(enqueued_first > 0);
    // The restart re-lists the same windows: the ledger turns them into no new jobs.
    let second = lister::run(
        store.as_ref(),
        &queue,
        &apis,
        &SystemClock,
        &settings,
        deadline(),
    )
    .await
    .unwrap();
    assert_eq!(second.failures(), 0);
    assert_eq!(
        second.jobs(),
        0,
        "blobs enqueued before the crash were enqueued again"
    );
    let fetcher = Fetcher::new(
        stack.store(),
        stack.sink(),
        SqsQueue::new(
            aws_sdk_sqs::Client::new(&stack.conf),
            stack.queue_url.clone(),
            Some(stack.dlq_url.clone()),
        ),
        apis.clone(),
        SystemClock,
        FetcherSettings::default(),
    );
    drain(&stack, &fetcher).await;
    let (w, objects) = written(&stack).await;
    assert_exactly_once(&emu, &w, t0, emu.now());
    assert_eq!(objects as u64, enqueued_first - expired_by(&emu, t0) as u64);
    let _ = std::fs::remove_dir_all(dir);
}

/// Blobs that were listable at `t0` and have expired (listed, then refused with AF20051).
fn expired_by(emu: &o365_emulator::Emulator, t0: DateTime<Utc>) -> usize {
    emu.truth()
        .iter()
        .filter(|b| b.available_at <= t0 && b.expired)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetcher_killed_after_the_s3_write_before_the_ledger_mark_rewrites_the_same_object() {
    let (stack, emu, store, dir) = setup(CrashAt::MarkDone, 3).await;
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&stack.conf),
        stack.queue_url.clone(),
        Some(stack.dlq_url.clone()),
    );
    let apis = apis();
    let t0 = emu.now();
    let report = lister::run(
        &stack.store(),
        &queue,
        &apis,
        &SystemClock,
        &ListerSettings::default(),
        deadline(),
    )
    .await
    .unwrap();
    let jobs = report.jobs();
    let fetcher = Fetcher::new(
        store.clone(),
        stack.sink(),
        queue,
        apis.clone(),
        SystemClock,
        FetcherSettings::default(),
    );
    let counts = drain(&stack, &fetcher).await;
    // Three jobs died after their write; a blob sharing a record with one of them waits for
    // it (a retry) rather than skip a record whose holder may never finish.
    assert!(
        counts.get("retry").is_some_and(|n| *n >= 3),
        "three jobs died after their write: {counts:?}"
    );
    let (w, objects) = written(&stack).await;
    assert_exactly_once(&emu, &w, t0, emu.now());
    assert_eq!(
        objects as u64,
        jobs - expired_by(&emu, t0) as u64,
        "one object per blob, none twice"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_redelivered_after_success_writes_nothing_new() {
    let (stack, emu, _store, dir) = setup(CrashAt::MarkDone, 0).await;
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&stack.conf),
        stack.queue_url.clone(),
        Some(stack.dlq_url.clone()),
    );
    let apis = apis();
    lister::run(
        &stack.store(),
        &queue,
        &apis,
        &SystemClock,
        &ListerSettings::default(),
        deadline(),
    )
    .await
    .unwrap();
    let (event, handles) = stack
        .receive_event(&stack.queue_url, Duration::from_secs(1))
        .await;
    let messages: Vec<QueueMessage> = event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| QueueMessage {
            id: r["messageId"].as_str().unwrap().to_owned(),
            body: r["body"].as_str().unwrap().to_owned(),
            receive_count: 1,
        })
        .collect();
    assert!(!handles.is_empty());
    let fetcher = Fetcher::new(
        stack.store(),
        stack.sink(),
        queue,
        apis.clone(),
        SystemClock,
        FetcherSettings::default(),
    );
    let first = fetcher.handle_batch(&messages).await;
    let (_, objects_before) = written(&stack).await;
    let blob_gets_before = emu
        .requests()
        .iter()
        .filter(|r| r.endpoint == "blob")
        .count();
    // The same messages again (SQS at-least-once delivery).
    let again = fetcher.handle_batch(&messages).await;
    for ((_, a), (_, b)) in first.outcomes.iter().zip(again.outcomes.iter()) {
        if matches!(a, JobOutcome::Written { .. }) {
            assert!(matches!(b, JobOutcome::AlreadyDone { .. }), "{b:?}");
        }
    }
    let (_, objects_after) = written(&stack).await;
    assert_eq!(objects_before, objects_after);
    let blob_gets_after = emu
        .requests()
        .iter()
        .filter(|r| r.endpoint == "blob")
        .count();
    assert_eq!(
        blob_gets_before, blob_gets_after,
        "a done blob was downloaded again"
    );
    let _ = std::fs::remove_dir_all(dir);
}
