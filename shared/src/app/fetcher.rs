//! The fetcher: one job = one content blob. Download it, keep each record once (by `Id`), wrap
//! it in the collection envelope, write gzip NDJSON under a key derived from the job alone, and
//! only then mark the blob done in the ledger.
//!
//! Durable first, state second: a crash after the write and before the mark re-runs the job,
//! which overwrites the same key with the same records. A redelivered job whose blob is done
//! is acknowledged without a download.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use bytes::Bytes;
use chrono::NaiveDate;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use super::{ApiProvider, Clock};
use crate::api::{ActivityApi, ErrorClass};
use crate::model::{BlobState, FetchJob, LedgerEntry, Tenant, TenantId};
use crate::normalize;
use crate::queue::DeadLetters;
use crate::sink::{ObjectMeta, ObjectSink};
use crate::store::StateStore;

/// How long a record `Id` claim outlives its blob's expiry: Microsoft re-delivers records
/// days later (fact sheet §2.5), never after the blob it came in has long expired.
const RECORD_CLAIM_DAYS: i64 = 7;

/// Knobs of the fetcher.
#[derive(Debug, Clone)]
pub struct FetcherSettings {
    /// After this many receives a failing job is dead-lettered with its reason.
    pub max_receives: u32,
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: usize,
    /// Jobs of a batch processed at once.
    pub concurrency: usize,
    /// How long the tenant list is cached.
    pub tenant_cache_ttl: StdDuration,
    /// Also keep each blob as Microsoft sent it, under `raw/` (to re-normalize later).
    pub archive_raw: bool,
}

impl Default for FetcherSettings {
    fn default() -> Self {
        FetcherSettings {
            max_receives: 5,
            max_blob_bytes: 512 * 1024 * 1024,
            concurrency: 4,
            tenant_cache_ttl: StdDuration::from_secs(300),
            archive_raw: true,
        }
    }
}

/// A queue message as the fetcher sees it.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    /// Message id (reported back on failure).
    pub id: String,
    /// Body (a [`FetchJob`] as JSON).
    pub body: String,
    /// How many times it was received, this time included.
    pub receive_count: u32,
}

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum JobOutcome {
    /// Records written and the blob marked done.
    Written {
        /// Content id.
        content_id: String,
        /// Object keys written (one per event date, plus the raw archive).
        keys: Vec<String>,
        /// Records written.
        records: u64,
        /// Records dropped because their `Id` repeated inside the blob.
        duplicates: u64,
        /// Records dropped because another blob already wrote their `Id`.
        cross_blob_duplicates: u64,
        /// Compressed bytes put to the sink (events and raw archive).
        bytes: u64,
        /// Ingestion lag (received − event time) of the records written.
        lag: crate::metrics::LagSample,
    },
    /// The blob was already done (a redelivery): nothing downloaded.
    AlreadyDone {
        /// Content id.
        content_id: String,
    },
    /// Microsoft expired the blob before it could be fetched: data lost upstream, reported.
    Expired {
        /// Content id.
        content_id: String,
    },
    /// Parked in the dead-letter queue with its reason (acknowledged on the main queue).
    DeadLettered {
        /// Why.
        reason: String,
    },
    /// Left on the queue to be retried (reported as a batch item failure).
    Retry {
        /// Why.
        reason: String,
    },
}

impl JobOutcome {
    /// True when the message must stay on the queue.
    pub fn is_retry(&self) -> bool {
        matches!(self, JobOutcome::Retry { .. })
    }
}

/// The outcomes of a batch.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchReport {
    /// `(message id, outcome)` in input order.
    pub outcomes: Vec<(String, JobOutcome)>,
}

impl BatchReport {
    /// Ids of messages to leave on the queue (SQS `batchItemFailures`).
    pub fn failures(&self) -> Vec<String> {
        self.outcomes
            .iter()
            .filter(|(_, o)| o.is_retry())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Records written.
    pub fn records(&self) -> u64 {
        self.outcomes
            .iter()
            .map(|(_, o)| match o {
                JobOutcome::Written { records, .. } => *records,
                _ => 0,
            })
            .sum()
    }

    /// Count per outcome kind.
    pub fn counts(&self) -> HashMap<&'static str, u64> {
        let mut m = HashMap::new();
        for (_, o) in &self.outcomes {
            let k = match o {
                JobOutcome::Written { .. } => "written",
                JobOutcome::AlreadyDone { .. } => "already_done",
                JobOutcome::Expired { .. } => "expired",
                JobOutcome::DeadLettered { .. } => "dead_lettered",
                JobOutcome::Retry { .. } => "retry",
            };
            *m.entry(k).or_insert(0) += 1;
        }
        m
    }
}

fn encoded_id(job: &FetchJob) -> String {
    url::form_urlencoded::byte_serialize(job.content_id.as_bytes()).collect()
}

/// The object key of a blob's events of one event date (Hive-style partitions, see
/// docs/athena.md): derived from the job alone, so a redelivery overwrites instead of
/// duplicating. The content id is percent-encoded (it contains `$`).
pub fn events_key(job: &FetchJob, event_date: NaiveDate) -> String {
    format!(
        "ocsf/tenant_id={}/content_type={}/event_date={}/{}.ndjson.gz",
        job.tenant_id,
        job.content_type.as_str(),
        event_date.format("%Y-%m-%d"),
        encoded_id(job)
    )
}

/// The object key of a blob as Microsoft sent it (gzip JSON), dated by `contentCreated`.
pub fn raw_key(job: &FetchJob) -> String {
    format!(
        "raw/tenant_id={}/content_type={}/date={}/{}.json.gz",
        job.tenant_id,
        job.content_type.as_str(),
        job.content_created.format("%Y-%m-%d"),
        encoded_id(job)
    )
}

struct TenantCache {
    loaded: Option<Instant>,
    tenants: HashMap<TenantId, Tenant>,
}

/// The fetcher with its dependencies; build once per process.
pub struct Fetcher<S, K, D, P, C> {
    store: S,
    sink: K,
    dead: D,
    apis: P,
    clock: C,
    settings: FetcherSettings,
    tenants: tokio::sync::Mutex<TenantCache>,
    /// Each tenant's directory snapshot, for actor enrichment.
    directory: super::directory::DirectoryCache,
}

impl<S, K, D, P, C> std::fmt::Debug for Fetcher<S, K, D, P, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

enum Failure {
    /// Can never succeed: dead-letter now.
    Permanent(String),
    /// May succeed later: retry until `max_receives`.
    Transient(String),
}

impl<S, K, D, P, C> Fetcher<S, K, D, P, C>
where
    S: StateStore,
    K: ObjectSink,
    D: DeadLetters,
    P: ApiProvider,
    C: Clock,
{
    /// A fetcher over these ports.
    pub fn new(store: S, sink: K, dead: D, apis: P, clock: C, settings: FetcherSettings) -> Self {
        Fetcher {
            store,
            sink,
            dead,
            apis,
            clock,
            settings,
            tenants: tokio::sync::Mutex::new(TenantCache {
                loaded: None,
                tenants: HashMap::new(),
            }),
            directory: super::directory::DirectoryCache::new(super::directory::DIRECTORY_CACHE_TTL),
        }
    }

    /// The state store (for tooling and tests).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Processes a batch; the report says which messages must stay on the queue.
    pub async fn handle_batch(&self, messages: &[QueueMessage]) -> BatchReport {
        let outcomes: Vec<(String, JobOutcome)> = futures_util::stream::iter(messages)
            .map(|m| async move { (m.id.clone(), self.handle(m).await) })
            .buffered(self.settings.concurrency.max(1))
            .collect()
            .await;
        BatchReport { outcomes }
    }

    /// Processes one message.
    pub async fn handle(&self, message: &QueueMessage) -> JobOutcome {
        let job = match FetchJob::parse(&message.body) {
            Ok(j) => j,
            Err(e) => {
                return self
                    .fail(
                        message,
                        None,
                        Failure::Permanent(format!("malformed job: {e}")),
                    )
                    .await;
            }
        };
        match self.process(&job).await {
            Ok(outcome) => {
                if let JobOutcome::Written {
                    records,
                    duplicates,
                    cross_blob_duplicates,
                    keys,
                    ..
                } = &outcome
                {
                    tracing::info!(tenant = %job.tenant_id, content_type = %job.content_type,
                        content_id = %job.content_id, records, duplicates, cross_blob_duplicates,
                        objects = keys.len(), "blob written");
                }
                outcome
            }
            Err(f) => self.fail(message, Some(&job), f).await,
        }
    }

    async fn fail(
        &self,
        message: &QueueMessage,
        job: Option<&FetchJob>,
        failure: Failure,
    ) -> JobOutcome {
        let (reason, permanent) = match failure {
            Failure::Permanent(r) => (r, true),
            Failure::Transient(r) => (r, false),
        };
        let tenant = job.map(|j| j.tenant_id.to_string()).unwrap_or_default();
        let content_id = job.map(|j| j.content_id.clone()).unwrap_or_default();
        if !permanent && message.receive_count < self.settings.max_receives {
            tracing::warn!(message_id = %message.id, tenant = %tenant, content_id = %content_id,
                attempt = message.receive_count, max = self.settings.max_receives, reason = %reason,
                "job failed; it will be retried");
            return JobOutcome::Retry { reason };
        }
        let reason = if permanent {
            reason
        } else {
            format!("gave up after {} attempts: {reason}", message.receive_count)
        };
        if let Err(e) = self.dead.dead_letter(&message.body, &reason).await {
            tracing::error!(message_id = %message.id, error = %e, reason = %reason,
                "dead-lettering failed; leaving the job to the queue's redrive policy");
            return JobOutcome::Retry { reason };
        }
        if let Some(job) = job {
            let entry = LedgerEntry {
                state: BlobState::Failed,
                updated_at: self.clock.now(),
                records: None,
                object_key: None,
                reason: Some(reason.clone()),
            };
            if let Err(e) = self
                .store
                .set_blob_state(&job.tenant_id, &job.blob(), &entry)
                .await
            {
                tracing::warn!(content_id = %job.content_id, error = %e, "could not record the failure in the ledger");
            }
        }
        tracing::error!(message_id = %message.id, tenant = %tenant, content_id = %content_id,
            reason = %reason, "job dead-lettered");
        JobOutcome::DeadLettered { reason }
    }

    async fn put(&self, key: &str, body: Bytes, content_type: &'static str) -> Result<(), Failure> {
        self.sink
            .put(
                key,
                body,
                &ObjectMeta {
                    content_type,
                    content_encoding: Some("gzip"),
                },
            )
            .await
            .map_err(|e| Failure::Transient(e.to_string()))
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, Failure> {
        let mut cache = self.tenants.lock().await;
        let fresh = cache
            .loaded
            .is_some_and(|t| t.elapsed() < self.settings.tenant_cache_ttl);
        if !fresh || !cache.tenants.contains_key(id) {
            let list = self
                .store
                .list_tenants()
                .await
                .map_err(|e| Failure::Transient(e.to_string()))?;
            cache.tenants = list.into_iter().map(|t| (t.id.clone(), t)).collect();
            cache.loaded = Some(Instant::now());
        }
        Ok(cache.tenants.get(id).cloned())
    }

    async fn process(&self, job: &FetchJob) -> Result<JobOutcome, Failure> {
        let now = self.clock.now();
        let Some(tenant) = self.tenant(&job.tenant_id).await? else {
            return Err(Failure::Permanent(format!(
                "tenant {} is not configured (add it with `o365-collector tenants add`)",
                job.tenant_id
            )));
        };
        let blob = job.blob();
        if let Some(entry) = self
            .store
            .blob_entry(&job.tenant_id, &job.content_id, now)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?
            && matches!(entry.state, BlobState::Done | BlobState::Expired)
        {
            return Ok(JobOutcome::AlreadyDone {
                content_id: job.content_id.clone(),
            });
        }
        let api: Arc<P::Api> = self
            .apis
            .api(&tenant)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        let body = match api.fetch_blob(&job.content_uri).await {
            Ok(b) => b,
            Err(e) => {
                return match e.class() {
                    ErrorClass::Expired => {
                        let entry = LedgerEntry {
                            state: BlobState::Expired,
                            updated_at: now,
                            records: None,
                            object_key: None,
                            reason: Some(e.to_string()),
                        };
                        self.store
                            .set_blob_state(&job.tenant_id, &blob, &entry)
                            .await
                            .map_err(|e| Failure::Transient(e.to_string()))?;
                        tracing::error!(tenant = %job.tenant_id, content_type = %job.content_type,
                            content_id = %job.content_id, content_expiration = %job.content_expiration.to_rfc3339(),
                            "DATA LOST UPSTREAM: the blob expired at Microsoft before it could be fetched");
                        Ok(JobOutcome::Expired {
                            content_id: job.content_id.clone(),
                        })
                    }
                    ErrorClass::Refused => Err(Failure::Permanent(e.to_string())),
                    _ => Err(Failure::Transient(e.to_string())),
                };
            }
        };
        let bytes = body
            .into_bytes(self.settings.max_blob_bytes)
            .await
            .map_err(|e| match e.class() {
                ErrorClass::Refused => Failure::Permanent(e.to_string()),
                _ => Failure::Transient(e.to_string()),
            })?;
        let received_at = self.clock.now();
        let mut keys = Vec::new();
        let mut bytes_written = 0u64;
        if self.settings.archive_raw {
            // The blob as Microsoft sent it, first: whatever happens next, it is kept.
            let key = raw_key(job);
            let gz = gzip(&bytes);
            bytes_written += gz.len() as u64;
            self.put(&key, gz, "application/json").await?;
            keys.push(key);
        }
        let records: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Transient(format!(
                "blob {} is not a JSON array of records ({e}); it may have been cut short",
                job.content_id
            ))
        })?;
        drop(bytes);
        // Each record once: first inside the blob, then across blobs (Microsoft re-delivers
        // records in later blobs; the first blob to claim an Id writes it, a retry of that
        // same blob still owns it).
        let mut seen: HashSet<&str> = HashSet::new();
        let mut keep: Vec<bool> = Vec::with_capacity(records.len());
        let mut ids: Vec<String> = Vec::new();
        for r in &records {
            match r.get("Id").and_then(|v| v.as_str()) {
                Some(id) if !seen.insert(id) => keep.push(false),
                Some(id) => {
                    keep.push(true);
                    ids.push(id.to_owned());
                }
                None => keep.push(true),
            }
        }
        let duplicates = keep.iter().filter(|k| !**k).count() as u64;
        let claim_until =
            job.content_expiration.max(now) + chrono::Duration::days(RECORD_CLAIM_DAYS);
        let owned = self
            .store
            .claim_records(&job.tenant_id, &job.content_id, &ids, claim_until, now)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        let not_owned: HashSet<&str> = ids
            .iter()
            .zip(owned.iter())
            .filter(|(_, o)| !**o)
            .map(|(id, _)| id.as_str())
            .collect();
        let mut cross_blob = 0u64;
        for (k, r) in keep.iter_mut().zip(records.iter()) {
            if *k
                && let Some(id) = r.get("Id").and_then(|v| v.as_str())
                && not_owned.contains(id)
            {
                *k = false;
                cross_blob += 1;
            }
        }
        drop(not_owned);
        drop(seen);
        let ctx = normalize::Context {
            tenant_id: job.tenant_id.as_str(),
            content_type: job.content_type,
            content_id: &job.content_id,
            content_created: job.content_created,
            received_at,
        };
        // Actor enrichment from the directory snapshot; without one, events are unenriched.
        let directory = self.directory.get(&self.sink, &job.tenant_id).await;
        let (groups, written, lag) = encode(records, &keep, &ctx, directory.as_deref())
            .map_err(|e| Failure::Transient(format!("compressing events failed: {e}")))?;
        for (date, gz) in groups {
            let key = events_key(job, date);
            bytes_written += gz.len() as u64;
            self.put(&key, gz, "application/x-ndjson").await?;
            keys.push(key);
        }
        let entry = LedgerEntry {
            state: BlobState::Done,
            updated_at: self.clock.now(),
            records: Some(written),
            object_key: keys.first().cloned(),
            reason: None,
        };
        self.store
            .set_blob_state(&job.tenant_id, &blob, &entry)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        Ok(JobOutcome::Written {
            content_id: job.content_id.clone(),
            keys,
            records: written,
            duplicates,
            cross_blob_duplicates: cross_blob,
            bytes: bytes_written,
            lag,
        })
    }
}

fn gzip(bytes: &[u8]) -> Bytes {
    let mut gz = GzEncoder::new(Vec::with_capacity(bytes.len() / 8), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(bytes);
    Bytes::from(gz.finish().unwrap_or_default())
}

/// OCSF events of the records marked `keep`, as gzip NDJSON per event date (UTC; the blob's
/// `contentCreated` date for a record without a usable time). Returns the groups, the count and
/// the ingestion lag sample (`received_at` − event time of each record written). Actors found
/// in `directory` are enriched ([`normalize::enrich`]).
fn encode(
    records: Vec<serde_json::Value>,
    keep: &[bool],
    ctx: &normalize::Context<'_>,
    directory: Option<&normalize::DirectoryIndex>,
) -> std::io::Result<(BTreeMap<NaiveDate, Bytes>, u64, crate::metrics::LagSample)> {
    let mut groups: BTreeMap<NaiveDate, GzEncoder<Vec<u8>>> = BTreeMap::new();
    let mut written = 0u64;
    let mut lags: Vec<u64> = Vec::new();
    for (record, keep) in records.into_iter().zip(keep) {
        if !keep {
            continue;
        }
        let mut n = normalize::normalize(record, ctx);
        if let Some(d) = directory {
            normalize::enrich(&mut n.event, d);
        }
        if let Some(t) = n.event_time {
            let ms = (ctx.received_at - t).num_milliseconds().max(0);
            lags.push(u64::try_from(ms).unwrap_or(0));
        }
        let date = n.event_time.unwrap_or(ctx.content_created).date_naive();
        let gz = groups
            .entry(date)
            .or_insert_with(|| GzEncoder::new(Vec::new(), Compression::default()));
        serde_json::to_writer(&mut *gz, &n.event)?;
        gz.write_all(b"\n")?;
        written += 1;
    }
    let mut out = BTreeMap::new();
    for (date, gz) in groups {
        out.insert(date, Bytes::from(gz.finish()?));
    }
    Ok((out, written, crate::metrics::LagSample::from_lags(lags)))
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::Arc;

    use chrono::{Duration, Utc};

    use super::*;
    use crate::app::testkit::{FixedClock, OneApi, StaticApi, TENANT, tenant};
    use crate::model::{ContentType, TenantId};
    use crate::queue::MemoryQueue;
    use crate::sink::FolderSink;
    use crate::store::MemoryStore;

    type TestFetcher =
        Fetcher<Arc<MemoryStore>, Arc<FolderSink>, Arc<MemoryQueue>, OneApi, FixedClock>;

    async fn setup() -> (
        TestFetcher,
        Arc<StaticApi>,
        Arc<MemoryQueue>,
        Arc<FolderSink>,
        std::path::PathBuf,
    ) {
        let store = Arc::new(MemoryStore::default());
        store
            .put_tenant(&tenant(ContentType::ALL.to_vec()))
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("fetcher-test-{}", uuid::Uuid::new_v4()));
        let sink = Arc::new(FolderSink::new(dir.clone()));
        let dead = Arc::new(MemoryQueue::new());
        let api = Arc::new(StaticApi::default());
        let f = Fetcher::new(
            store,
            sink.clone(),
            dead.clone(),
            OneApi(api.clone()),
            FixedClock::at(Utc::now()),
            FetcherSettings {
                max_receives: 3,
                ..FetcherSettings::default()
            },
        );
        (f, api, dead, sink, dir)
    }

    fn job_for(api: &StaticApi, id: &str) -> QueueMessage {
        let blobs = api.blobs.lock().unwrap();
        let (blob, _) = blobs.iter().find(|(b, _)| b.content_id == id).unwrap();
        QueueMessage {
            id: format!("m-{id}"),
            body: FetchJob::new(TenantId::parse(TENANT).unwrap(), blob, Utc::now()).to_json(),
            receive_count: 1,
        }
    }

    fn lines(bytes: &[u8]) -> Vec<serde_json::Value> {
        let mut s = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut s)
            .unwrap();
        s.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn records_repeated_inside_a_blob_are_written_once_with_their_envelope() {
        let (f, api, _, sink, dir) = setup().await;
        // Records of the blob's own day (a record without a time is filed by contentCreated).
        let created = Utc::now() - Duration::hours(1);
        let day = created.format("%Y-%m-%d").to_string();
        let when = created.format("%Y-%m-%dT%H:%M:%S").to_string();
        let r = |id: &str| serde_json::json!({"Id": id, "Operation": "Send", "CreationTime": when});
        api.add(
            ContentType::Exchange,
            "a$b$audit_exchange",
            created,
            vec![r("1"), r("2"), r("1"), serde_json::json!({"NoId": true})],
        );
        let outcome = f.handle(&job_for(&api, "a$b$audit_exchange")).await;
        let JobOutcome::Written {
            keys,
            records,
            duplicates,
            ..
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert!(keys[0].starts_with("raw/tenant_id="), "{keys:?}");
        let key = &keys[1];
        assert_eq!((records, duplicates), (3, 1));
        assert!(
            key.starts_with(&format!(
                "ocsf/tenant_id={TENANT}/content_type=Audit.Exchange/event_date={day}/"
            )) && key.ends_with("a%24b%24audit_exchange.ndjson.gz"),
            "{key}"
        );
        let ls = lines(&sink.get(key).await.unwrap().unwrap());
        assert_eq!(ls.len(), 3);
        assert_eq!(ls[0]["metadata"]["uid"], "1");
        assert_eq!(ls[0]["unmapped"]["Id"], "1");
        assert_eq!(ls[1]["metadata"]["uid"], "2");
        assert_eq!(
            ls[2]["unmapped"]["NoId"], true,
            "a record without Id is kept"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_redelivered_job_of_a_done_blob_is_acknowledged_without_download() {
        let (f, api, _, _, dir) = setup().await;
        api.add(
            ContentType::General,
            "x$y$g",
            Utc::now(),
            vec![serde_json::json!({"Id": "1"})],
        );
        let m = job_for(&api, "x$y$g");
        assert!(matches!(f.handle(&m).await, JobOutcome::Written { .. }));
        api.blobs.lock().unwrap().clear(); // a download now would panic in the fake
        assert!(matches!(f.handle(&m).await, JobOutcome::AlreadyDone { .. }));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn malformed_and_unknown_tenant_jobs_are_dead_lettered_with_their_reason() {
        let (f, _, dead, _, dir) = setup().await;
        let bad = QueueMessage {
            id: "m1".into(),
            body: "{\"hello\":1}".into(),
            receive_count: 1,
        };
        let outcome = f.handle(&bad).await;
        assert!(
            matches!(outcome, JobOutcome::DeadLettered { .. }),
            "{outcome:?}"
        );
        let other = FetchJob {
            tenant_id: TenantId::parse("41463f53-8812-40f4-890f-865bf6e35190").unwrap(),
            ..FetchJob::parse(
                &FetchJob::new(
                    TenantId::parse(TENANT).unwrap(),
                    &crate::model::ContentBlob {
                        content_type: ContentType::Exchange,
                        content_id: "c$d$e".into(),
                        content_uri: "https://manage.office.com/x".into(),
                        content_created: Utc::now(),
                        content_expiration: Utc::now(),
                    },
                    Utc::now(),
                )
                .to_json(),
            )
            .unwrap()
        };
        let outcome = f
            .handle(&QueueMessage {
                id: "m2".into(),
                body: other.to_json(),
                receive_count: 1,
            })
            .await;
        assert!(
            matches!(outcome, JobOutcome::DeadLettered { .. }),
            "{outcome:?}"
        );
        let reasons: Vec<String> = dead.dead_letters().into_iter().map(|(_, r)| r).collect();
        assert!(reasons[0].contains("malformed"), "{reasons:?}");
        assert!(reasons[1].contains("not configured"), "{reasons:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_record_delivered_in_two_blobs_is_written_once_and_a_retry_keeps_it() {
        let (f, api, _, sink, dir) = setup().await;
        let r = |id: &str| serde_json::json!({"Id": id});
        let t = Utc::now() - Duration::hours(1);
        api.add(ContentType::SharePoint, "1$1$sp", t, vec![r("a"), r("b")]);
        api.add(ContentType::SharePoint, "2$2$sp", t, vec![r("b"), r("c")]);
        let first = f.handle(&job_for(&api, "1$1$sp")).await;
        let second = f.handle(&job_for(&api, "2$2$sp")).await;
        let JobOutcome::Written {
            records,
            cross_blob_duplicates,
            keys,
            ..
        } = second
        else {
            panic!("{second:?}")
        };
        assert_eq!((records, cross_blob_duplicates), (1, 1));
        let ids: Vec<String> = lines(&sink.get(keys.last().unwrap()).await.unwrap().unwrap())
            .iter()
            .map(|l| l["metadata"]["uid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["c"]);
        // The first blob crashed after its write? Its retry still owns (and writes) "b".
        let JobOutcome::Written {
            keys: first_keys, ..
        } = first
        else {
            panic!()
        };
        let first_key = first_keys.last().unwrap();
        let store = f.store();
        let tenant = TenantId::parse(TENANT).unwrap();
        let owned = store
            .claim_records(
                &tenant,
                "1$1$sp",
                &["a".into(), "b".into()],
                Utc::now() + Duration::days(1),
                Utc::now(),
            )
            .await
            .unwrap();
        assert_eq!(owned, [true, true]);
        assert_eq!(lines(&sink.get(first_key).await.unwrap().unwrap()).len(), 2);
        let _ = std::fs::remove_dir_all(dir);
    }
}
