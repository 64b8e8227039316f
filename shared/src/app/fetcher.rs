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

use chrono::NaiveDate;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use super::{ApiProvider, Clock};
use crate::api::{ActivityApi, ErrorClass};
use crate::jsonarray::{ArraySplitter, Item, SplitError};
use crate::model::{BlobState, FetchJob, LedgerEntry, Tenant, TenantId};
use crate::normalize;
use crate::queue::DeadLetters;
use crate::sink::{ObjectMeta, ObjectSink, ObjectWriter};
use crate::store::{RecordClaim, StateStore};

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
    /// Largest record normalized, in bytes; a larger one is quarantined (kept in the raw
    /// archive, listed in a quarantine object with its reason) and the rest of the blob is
    /// written.
    pub max_record_bytes: usize,
    /// Jobs of a batch processed at once.
    pub concurrency: usize,
    /// How long the tenant list is cached.
    pub tenant_cache_ttl: StdDuration,
    /// Also keep each blob as Microsoft sent it, under `raw/` (to re-normalize later).
    pub archive_raw: bool,
    /// Claim every record `Id` in the state table so a record Microsoft delivers in two blobs
    /// is written once (one conditional write per record). Off: records are de-duplicated
    /// inside each blob only, and a downstream query de-duplicates by `metadata.uid`.
    pub cross_blob_dedupe: bool,
    /// No job starts with less than this left before the invocation's deadline, and a job
    /// still running this close to it is stopped (and retried in a new invocation), so the
    /// fetcher always answers before Lambda kills it.
    pub deadline_margin: StdDuration,
    /// How long a record claim held by a blob still being fetched is waited for before the
    /// job is retried later (the holder is usually in the same batch).
    pub holder_wait: StdDuration,
}

impl Default for FetcherSettings {
    fn default() -> Self {
        FetcherSettings {
            max_receives: 5,
            max_blob_bytes: 512 * 1024 * 1024,
            max_record_bytes: MAX_RECORD_BYTES,
            concurrency: 4,
            tenant_cache_ttl: StdDuration::from_secs(300),
            archive_raw: true,
            cross_blob_dedupe: true,
            deadline_margin: StdDuration::from_secs(10),
            holder_wait: StdDuration::from_secs(20),
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
        /// Records too large to process, listed in the blob's quarantine object.
        quarantined: u64,
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

    /// Writes the invocation's one summary log line (the Lambda handler's).
    pub fn log_summary(&self, request_id: &str, api: &crate::api::ApiStats, duration_ms: u64) {
        let counts = self.counts();
        let bytes: u64 = self
            .outcomes
            .iter()
            .map(|(_, o)| match o {
                JobOutcome::Written { bytes, .. } => *bytes,
                _ => 0,
            })
            .sum();
        let n = |k: &str| counts.get(k).copied().unwrap_or(0);
        tracing::info!(
            request_id = %request_id,
            messages = self.outcomes.len(),
            records = self.records(),
            written = n("written"),
            already_done = n("already_done"),
            expired = n("expired"),
            dead_lettered = n("dead_lettered"),
            retry = n("retry"),
            bytes,
            api_calls = api.calls,
            throttled = api.throttled,
            retries = api.retries,
            duration_ms,
            "fetcher invocation done"
        );
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
    /// Cannot succeed as configured (a blob over the size limit): dead-letter now, and let
    /// the sweep try again later (a raised limit, a redrive).
    Parked(String),
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
        self.handle_batch_until(messages, None).await
    }

    /// Processes a batch before `deadline` (the invocation's): a job is started only with
    /// [`FetcherSettings::deadline_margin`] left, and one still running at the margin is
    /// stopped; both are reported for redelivery, so the invocation always answers and no
    /// job is left to SQS's own redrive.
    pub async fn handle_batch_until(
        &self,
        messages: &[QueueMessage],
        deadline: Option<Instant>,
    ) -> BatchReport {
        // Unordered: a slow job never keeps finished slots from starting the next ones.
        let mut outcomes: Vec<(usize, String, JobOutcome)> =
            futures_util::stream::iter(messages.iter().enumerate())
                .map(
                    |(i, m)| async move { (i, m.id.clone(), self.handle_until(m, deadline).await) },
                )
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect()
                .await;
        outcomes.sort_by_key(|(i, _, _)| *i);
        BatchReport {
            outcomes: outcomes.into_iter().map(|(_, id, o)| (id, o)).collect(),
        }
    }

    /// Processes one message.
    pub async fn handle(&self, message: &QueueMessage) -> JobOutcome {
        self.handle_until(message, None).await
    }

    /// Processes one message before `deadline` (see [`Fetcher::handle_batch_until`]).
    pub async fn handle_until(
        &self,
        message: &QueueMessage,
        deadline: Option<Instant>,
    ) -> JobOutcome {
        let stop = deadline.map(|d| d.checked_sub(self.settings.deadline_margin).unwrap_or(d));
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
        if let Some(stop) = stop
            && Instant::now() >= stop
        {
            // Not started: back to the queue (no download). At its last receive it is
            // dead-lettered with this reason and the ledger retries it, like any failure.
            return self
                .fail(
                    message,
                    Some(&job),
                    Failure::Transient("not started: the invocation's time was nearly up".into()),
                )
                .await;
        }
        match self.process(&job, stop).await {
            Ok(outcome) => {
                if let JobOutcome::Written {
                    records,
                    duplicates,
                    cross_blob_duplicates,
                    keys,
                    ..
                } = &outcome
                {
                    tracing::debug!(tenant = %job.tenant_id, content_type = %job.content_type,
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
        let (reason, permanent, parked) = match failure {
            Failure::Permanent(r) => (r, true, false),
            Failure::Parked(r) => (r, false, true),
            Failure::Transient(r) => (r, false, false),
        };
        let tenant = job.map(|j| j.tenant_id.to_string()).unwrap_or_default();
        let content_id = job.map(|j| j.content_id.clone()).unwrap_or_default();
        if !permanent && !parked && message.receive_count < self.settings.max_receives {
            tracing::warn!(message_id = %message.id, tenant = %tenant, content_id = %content_id,
                attempt = message.receive_count, max = self.settings.max_receives, reason = %reason,
                "job failed; it will be retried");
            return JobOutcome::Retry { reason };
        }
        let reason = if permanent || parked {
            reason
        } else {
            format!("gave up after {} attempts: {reason}", message.receive_count)
        };
        // State first: the ledger keeps driving a failure that may heal (the sweep retries it
        // with a growing back-off until Microsoft expires the blob); one that never can stays
        // failed, reported. Only then the dead letter: once per blob — a blob the sweep
        // already re-drove after an earlier dead letter is left to the ledger alone, so the
        // DLQ holds one message per failing blob, not one per retry.
        let mut already_reported = false;
        if let Some(job) = job {
            let now = self.clock.now();
            let previous = match self
                .store
                .blob_entry(&job.tenant_id, &job.content_id, now)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(content_id = %job.content_id, error = %e, "could not read the ledger to record a failure; the job stays on the queue");
                    return JobOutcome::Retry { reason };
                }
            };
            let attempts = previous.as_ref().map_or(0, |e| e.attempts);
            already_reported = !permanent && attempts > 0;
            let entry = LedgerEntry {
                attempts,
                listed_at: previous.as_ref().and_then(|e| e.listed_at),
                next_attempt_at: (!permanent).then(|| now + crate::model::retry_backoff(attempts)),
                ..LedgerEntry::new(BlobState::Failed, now).because(reason.clone())
            };
            if let Err(e) = self
                .store
                .set_blob_state(&job.tenant_id, &job.blob(), &entry)
                .await
            {
                tracing::warn!(content_id = %job.content_id, error = %e, "could not record the failure in the ledger; the job stays on the queue");
                return JobOutcome::Retry { reason };
            }
        }
        if already_reported {
            tracing::warn!(message_id = %message.id, tenant = %tenant, content_id = %content_id,
                reason = %reason, "job failed again; the ledger retries it later (its dead letter was sent the first time)");
            return JobOutcome::DeadLettered { reason };
        }
        if let Err(e) = self.dead.dead_letter(&message.body, &reason).await {
            if job.is_some() {
                // The ledger holds the failure and retries it: nothing is lost without the
                // dead letter.
                tracing::error!(message_id = %message.id, error = %e, reason = %reason,
                    "dead-lettering failed; the ledger retries the blob");
                return JobOutcome::DeadLettered { reason };
            }
            tracing::error!(message_id = %message.id, error = %e, reason = %reason,
                "dead-lettering failed; leaving the job to the queue's redrive policy");
            return JobOutcome::Retry { reason };
        }
        tracing::error!(message_id = %message.id, tenant = %tenant, content_id = %content_id,
            reason = %reason, "job dead-lettered");
        JobOutcome::DeadLettered { reason }
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

    async fn process(&self, job: &FetchJob, stop: Option<Instant>) -> Result<JobOutcome, Failure> {
        let now = self.clock.now();
        let Some(tenant) = self.tenant(&job.tenant_id).await? else {
            return Err(Failure::Permanent(format!(
                "tenant {} is not configured (add it with `o365-collector tenants add`)",
                job.tenant_id
            )));
        };
        let blob = job.blob();
        let previous = self
            .store
            .blob_entry(&job.tenant_id, &job.content_id, now)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        if let Some(entry) = &previous
            && entry.state.is_terminal()
        {
            return Ok(JobOutcome::AlreadyDone {
                content_id: job.content_id.clone(),
            });
        }
        let listed_at = previous.as_ref().and_then(|e| e.listed_at);
        let attempts = previous.as_ref().map_or(0, |e| e.attempts);
        let api: Arc<P::Api> = self
            .apis
            .api(&tenant)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        let fetched = match stop {
            None => api.fetch_blob(&job.content_uri).await,
            Some(stop) => {
                match tokio::time::timeout_at(stop, api.fetch_blob(&job.content_uri)).await {
                    Ok(r) => r,
                    Err(_) => return Err(out_of_time(job)),
                }
            }
        };
        let body = match fetched {
            Ok(b) => b,
            Err(e) => {
                return match e.class() {
                    ErrorClass::Expired => {
                        let entry = LedgerEntry {
                            listed_at,
                            attempts,
                            ..LedgerEntry::new(BlobState::Expired, now).because(e.to_string())
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
        let received_at = self.clock.now();
        let limit = self.settings.max_blob_bytes;
        if let Some(n) = body.content_length()
            && n > u64::try_from(limit).unwrap_or(u64::MAX)
        {
            return Err(too_large(job, Some(n), limit, None));
        }
        let ctx = normalize::Context {
            tenant_id: job.tenant_id.as_str(),
            content_type: job.content_type,
            content_id: &job.content_id,
            content_created: job.content_created,
            received_at,
        };
        // Actor enrichment from the directory snapshot; without one, events are unenriched.
        let directory = self.directory.get(&self.sink, &job.tenant_id).await;
        let out = Outputs {
            raw: self
                .settings
                .archive_raw
                .then(|| GzObject::new(&self.sink, raw_key(job), "application/json")),
            events: BTreeMap::new(),
        };
        let mut run = BlobRun {
            job,
            ctx: &ctx,
            directory: directory.as_deref(),
            claim_until: job.content_expiration.max(now)
                + chrono::Duration::days(RECORD_CLAIM_DAYS),
            now,
            seen: HashSet::new(),
            ids: IdDigest::new(),
            stats: BlobStats::default(),
            holders: HashMap::new(),
            quarantined: Vec::new(),
            owned: Vec::new(),
        };
        let written = match stop {
            None => {
                self.write_blob(body, &mut run, out, &blob, listed_at, attempts)
                    .await
            }
            Some(stop) => match tokio::time::timeout_at(
                stop,
                self.write_blob(body, &mut run, out, &blob, listed_at, attempts),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(out_of_time(job)),
            },
        };
        if written.is_err() && !run.owned.is_empty() {
            // A blob that failed holds no record claims: another copy of its records may be
            // written meanwhile (its retry skips those, or writes them if still free).
            if let Err(e) = self
                .store
                .release_records(&job.tenant_id, &job.content_id, &run.owned)
                .await
            {
                tracing::warn!(content_id = %job.content_id, error = %e, "could not release the record claims of a failed blob; other copies wait for its retry");
            }
        }
        written
    }

    /// Streams the blob to its outputs, completes them, then marks the blob done.
    async fn write_blob<'s>(
        &'s self,
        body: crate::api::BlobBody,
        run: &mut BlobRun<'_>,
        mut out: Outputs<'s, K>,
        blob: &crate::model::ContentBlob,
        listed_at: Option<chrono::DateTime<chrono::Utc>>,
        attempts: u32,
    ) -> Result<JobOutcome, Failure> {
        let job = run.job;
        let streamed = self.stream_blob(body, run, &mut out).await;
        if let Err(f) = streamed {
            out.abort().await;
            return Err(f);
        }
        let quarantined = std::mem::take(&mut run.quarantined);
        let stats = std::mem::take(&mut run.stats);
        // Durable first: the raw archive, then the events, the quarantine list, then the
        // ledger.
        let raw_kept = out.raw.as_ref().map(|r| r.out.key().to_owned());
        let (mut keys, bytes_written) = out.finish(&self.sink).await?;
        if !quarantined.is_empty() {
            let key = quarantine_key(job);
            let body = serde_json::json!({
                "contentId": job.content_id,
                "contentUri": job.content_uri,
                "contentCreated": job.content_created.to_rfc3339(),
                "rawArchive": raw_kept,
                "records": quarantined.iter().map(|(index, bytes)| serde_json::json!({
                    "index": index,
                    "bytes": bytes,
                    "reason": format!(
                        "record larger than {} bytes, the most one record may hold: not normalized; {}",
                        self.settings.max_record_bytes,
                        if raw_kept.is_some() { "its bytes are in the raw archive" } else { "ARCHIVE_RAW is off, so its bytes were not kept" }
                    ),
                })).collect::<Vec<_>>(),
            });
            self.sink
                .put(
                    &key,
                    bytes::Bytes::from(body.to_string()),
                    &ObjectMeta {
                        content_type: "application/json",
                        content_encoding: None,
                    },
                )
                .await
                .map_err(|e| Failure::Transient(e.to_string()))?;
            tracing::warn!(tenant = %job.tenant_id, content_id = %job.content_id,
                records = quarantined.len(), key = %key,
                "records too large to process were quarantined; the rest of the blob is written");
            keys.push(key);
        }
        let entry = LedgerEntry {
            records: Some(stats.written),
            object_key: keys.first().cloned(),
            listed_at,
            attempts,
            ..LedgerEntry::new(BlobState::Done, self.clock.now())
        };
        self.store
            .set_blob_state(&job.tenant_id, blob, &entry)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        Ok(JobOutcome::Written {
            content_id: job.content_id.clone(),
            keys,
            records: stats.written,
            duplicates: stats.duplicates,
            cross_blob_duplicates: stats.cross_blob,
            quarantined: quarantined.len() as u64,
            bytes: bytes_written,
            lag: crate::metrics::LagSample::from_lags(stats.lags),
        })
    }

    /// Reads the body chunk by chunk: each chunk goes to the raw archive and through the array
    /// splitter; every [`CLAIM_BATCH`] records are de-duplicated, normalized and written.
    /// Memory stays bounded by the largest record and the part size of the open objects.
    async fn stream_blob<'s>(
        &'s self,
        body: crate::api::BlobBody,
        run: &mut BlobRun<'_>,
        out: &mut Outputs<'s, K>,
    ) -> Result<(), Failure> {
        let limit = self.settings.max_blob_bytes;
        let mut splitter = ArraySplitter::new(self.settings.max_record_bytes);
        let mut broken: Option<SplitError> = None;
        let mut pending: Vec<serde_json::Value> = Vec::new();
        let mut received = 0u64;
        let mut chunks = std::pin::pin!(body.into_stream());
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| match e.class() {
                ErrorClass::Refused => Failure::Permanent(e.to_string()),
                _ => Failure::Transient(e.to_string()),
            })?;
            received += chunk.len() as u64;
            if received > u64::try_from(limit).unwrap_or(u64::MAX) {
                // Keep what arrived (the raw archive is always completed), write no events.
                let kept = match out.raw.take() {
                    Some(raw) => raw.finish().await.ok().map(|(key, _)| key),
                    None => None,
                };
                return Err(too_large(run.job, None, limit, kept));
            }
            if let Some(raw) = out.raw.as_mut() {
                raw.write(&chunk).await?;
            }
            if broken.is_none()
                && let Err(e) = splitter.push_items(&chunk, |item| match item {
                    Item::Element(element) => pending.push(parse_record(element)),
                    Item::Oversized { index, bytes } => run.quarantined.push((index, bytes)),
                })
            {
                broken = Some(e);
            }
            if pending.len() >= CLAIM_BATCH {
                self.write_records(std::mem::take(&mut pending), run, out)
                    .await?;
            }
        }
        let broken = match broken {
            Some(e) => Some(e),
            None => splitter.finish().err(),
        };
        if let Some(e) = broken {
            // Keep what arrived in the raw archive (to look at), but write no events: the
            // blob is fetched again.
            if let Some(raw) = out.raw.take() {
                let _ = raw.finish().await;
            }
            return Err(Failure::Transient(format!(
                "blob {} is not a complete JSON array of records ({e}); it may have been cut short",
                run.job.content_id
            )));
        }
        self.write_records(pending, run, out).await
    }

    /// De-duplicates a batch of records (inside the blob, then across blobs by claiming their
    /// `Id`s), normalizes and enriches the ones this blob owns and appends them to the events
    /// object of their event date.
    async fn write_records<'s>(
        &'s self,
        records: Vec<serde_json::Value>,
        run: &mut BlobRun<'_>,
        out: &mut Outputs<'s, K>,
    ) -> Result<(), Failure> {
        if records.is_empty() {
            return Ok(());
        }
        // Each record once: first inside the blob, then across blobs (Microsoft re-delivers
        // records in later blobs; the first blob to claim an Id writes it, a retry of that
        // same blob still owns it).
        let mut keep: Vec<bool> = Vec::with_capacity(records.len());
        let mut ids: Vec<String> = Vec::new();
        for r in &records {
            match r.get("Id").and_then(|v| v.as_str()) {
                Some(id) if !run.seen.insert(run.ids.digest(id)) => keep.push(false),
                Some(id) => {
                    keep.push(true);
                    ids.push(id.to_owned());
                }
                None => keep.push(true),
            }
        }
        run.stats.duplicates += keep.iter().filter(|k| !**k).count() as u64;
        if !self.settings.cross_blob_dedupe {
            ids.clear();
        }
        let claims = self
            .store
            .claim_records(
                &run.job.tenant_id,
                &run.job.content_id,
                &ids,
                run.claim_until,
                run.now,
            )
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        let mut not_owned: HashSet<&str> = HashSet::new();
        let mut held: Vec<(&String, String)> = Vec::new();
        for (id, claim) in ids.iter().zip(claims) {
            match claim {
                RecordClaim::Owned => run.owned.push(id.clone()),
                RecordClaim::HeldBy(holder) => held.push((id, holder)),
            }
        }
        for (id, holder) in held {
            if self.take_over_if_lost(run, id, holder).await? {
                run.owned.push(id.clone());
            } else {
                not_owned.insert(id.as_str());
            }
        }
        for (k, r) in keep.iter_mut().zip(records.iter()) {
            if *k
                && let Some(id) = r.get("Id").and_then(|v| v.as_str())
                && not_owned.contains(id)
            {
                *k = false;
                run.stats.cross_blob += 1;
            }
        }
        drop(not_owned);
        let mut line = Vec::new();
        for (record, keep) in records.into_iter().zip(keep) {
            if !keep {
                continue;
            }
            let mut n = normalize::normalize(record, run.ctx);
            if let Some(d) = run.directory {
                normalize::enrich(&mut n.event, d);
            }
            if let Some(t) = n.event_time {
                let ms = (run.ctx.received_at - t).num_milliseconds().max(0);
                run.stats.lags.push(u64::try_from(ms).unwrap_or(0));
            }
            let date = n.event_time.unwrap_or(run.ctx.content_created).date_naive();
            line.clear();
            serde_json::to_writer(&mut line, &n.event)
                .map_err(|e| Failure::Transient(format!("serializing an event failed: {e}")))?;
            line.push(b'\n');
            let object = out.events.entry(date).or_insert_with(|| {
                GzObject::new(
                    &self.sink,
                    events_key(run.job, date),
                    "application/x-ndjson",
                )
            });
            object.write(&line).await?;
            run.stats.written += 1;
        }
        Ok(())
    }
}

impl<S, K, D, P, C> Fetcher<S, K, D, P, C>
where
    S: StateStore,
    K: ObjectSink,
    D: DeadLetters,
    P: ApiProvider,
    C: Clock,
{
    /// A record this blob holds a copy of is claimed by `holder`. It is skipped only when the
    /// holder is done (its copy is written). A holder gone for good (expired, failed for good,
    /// aged out of the ledger) would lose the record with it: this blob takes the claim over
    /// and writes the record. A holder still on its way (a failed blob releases its claims, so
    /// a holder is running, or was stopped mid-run and comes back) is waited for a little —
    /// usually it is in the same batch — then this job lets go of its own claims and is
    /// retried later, so two blobs never wait for each other. Returns whether this blob now
    /// holds the record.
    async fn take_over_if_lost(
        &self,
        run: &mut BlobRun<'_>,
        record_id: &str,
        holder: String,
    ) -> Result<bool, Failure> {
        let tenant = &run.job.tenant_id;
        let mut holder = holder;
        let started = Instant::now();
        for _ in 0..3 {
            let decision = match run.holders.get(&holder) {
                Some(d) => *d,
                None => loop {
                    let entry = self
                        .store
                        .blob_entry(tenant, &holder, self.clock.now())
                        .await
                        .map_err(|e| Failure::Transient(e.to_string()))?;
                    let d = match entry {
                        Some(e) if e.state == BlobState::Done => Holder::Done,
                        // Gone for good: expired, failed for good, or aged out of the
                        // ledger. (A failed blob releases its claims; one still holding
                        // them was stopped mid-run and is on its way back.)
                        None => Holder::Lost,
                        Some(e) if e.state == BlobState::Expired => Holder::Lost,
                        Some(e) if e.state == BlobState::Failed && e.next_attempt_at.is_none() => {
                            Holder::Lost
                        }
                        Some(_) => Holder::Busy,
                    };
                    if d != Holder::Busy || started.elapsed() >= self.settings.holder_wait {
                        break d;
                    }
                    tokio::time::sleep(StdDuration::from_millis(500)).await;
                },
            };
            run.holders.insert(holder.clone(), decision);
            match decision {
                Holder::Done => return Ok(false),
                Holder::Busy => {
                    return Err(Failure::Transient(format!(
                        "record {} of blob {} is also in blob {holder}, which is still being fetched; this blob is retried once that one is done or has failed",
                        crate::store::record_key(record_id),
                        run.job.content_id
                    )));
                }
                Holder::Lost => {
                    if self
                        .store
                        .take_over_record(
                            tenant,
                            record_id,
                            &holder,
                            &run.job.content_id,
                            run.claim_until,
                        )
                        .await
                        .map_err(|e| Failure::Transient(e.to_string()))?
                    {
                        run.stats.taken_over += 1;
                        return Ok(true);
                    }
                    // Someone else took it first: look at the new holder.
                    let again = self
                        .store
                        .claim_records(
                            tenant,
                            &run.job.content_id,
                            &[record_id.to_owned()],
                            run.claim_until,
                            run.now,
                        )
                        .await
                        .map_err(|e| Failure::Transient(e.to_string()))?;
                    match again.into_iter().next() {
                        Some(RecordClaim::HeldBy(h)) => holder = h,
                        _ => return Ok(true),
                    }
                }
            }
        }
        Err(Failure::Transient(format!(
            "the claim on a record of blob {} kept changing hands; retried later",
            run.job.content_id
        )))
    }
}

/// What the blob holding a record's claim means for another blob with a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// Done: its copy is written; skip ours.
    Done,
    /// Still being fetched: wait for it.
    Busy,
    /// Expired, failed for good or gone: take the claim over.
    Lost,
}

/// Records parsed between two rounds of record claims.
const CLAIM_BATCH: usize = 500;

/// The largest single record accepted (Microsoft's are a few KB; the largest seen, a few MB).
pub const MAX_RECORD_BYTES: usize = 32 * 1024 * 1024;

/// Compressed bytes gathered before they are handed to the object writer.
const DRAIN_BYTES: usize = 256 * 1024;

fn too_large(
    job: &FetchJob,
    announced: Option<u64>,
    limit: usize,
    kept: Option<String>,
) -> Failure {
    Failure::Parked(format!(
        "blob {} is larger than the limit of {limit} bytes{}; {}raise FETCHER_MAX_BLOB_MB and run `o365-collector redrive` — the blob is retried later until Microsoft expires it",
        job.content_id,
        announced
            .map(|n| format!(" (it announced {n} bytes)"))
            .unwrap_or_default(),
        kept.map(|k| format!("the bytes received up to the limit are kept at {k}; "))
            .unwrap_or_default()
    ))
}

fn out_of_time(job: &FetchJob) -> Failure {
    Failure::Transient(format!(
        "blob {} did not finish before the function's deadline; it is retried in a new invocation (if this repeats, give the fetcher more memory — and so CPU — or a longer timeout)",
        job.content_id
    ))
}

/// A gzip stream of nothing (an events object with no events).
fn empty_gzip() -> Vec<u8> {
    GzEncoder::new(Vec::new(), Compression::default())
        .finish()
        .unwrap_or_default()
}

/// The key of a blob's quarantine object: the records that could not be processed, with
/// their reason (the records themselves are in the raw archive).
pub fn quarantine_key(job: &FetchJob) -> String {
    format!(
        "quarantine/tenant_id={}/content_type={}/date={}/{}.json",
        job.tenant_id,
        job.content_type.as_str(),
        job.content_created.format("%Y-%m-%d"),
        encoded_id(job)
    )
}

/// One element of a blob as a record: its JSON, or (not valid JSON, e.g. invalid UTF-8) its
/// text as a JSON string, which the normalizer keeps as an event with a parse-error marker —
/// nothing is dropped.
fn parse_record(element: &[u8]) -> serde_json::Value {
    serde_json::from_slice(element).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(element).into_owned())
    })
}

/// What one blob's processing has counted so far.
#[derive(Debug, Default)]
struct BlobStats {
    written: u64,
    duplicates: u64,
    cross_blob: u64,
    /// Records whose claim was taken over from a failed, expired or abandoned blob.
    taken_over: u64,
    lags: Vec<u64>,
}

/// The state of one blob being streamed.
struct BlobRun<'a> {
    job: &'a FetchJob,
    ctx: &'a normalize::Context<'a>,
    directory: Option<&'a normalize::DirectoryIndex>,
    claim_until: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
    /// Digests of the record `Id`s seen so far in this blob (16 bytes each, not the ids: a
    /// 100 MB blob holds ~80,000 records).
    seen: HashSet<u128>,
    ids: IdDigest,
    stats: BlobStats,
    /// What each holder of a record claim was found to be (read once per blob).
    holders: HashMap<String, Holder>,
    /// Records too large to process: position in the array and size in bytes.
    quarantined: Vec<(usize, u64)>,
    /// Record ids this blob holds claims on (released if it fails).
    owned: Vec<String>,
}

/// 128-bit digests of record ids under two random SipHash keys: two different ids of one blob
/// collide with a probability of about n²/2¹²⁹ (below 10⁻²⁸ for 100,000 records).
struct IdDigest(std::hash::RandomState, std::hash::RandomState);

impl IdDigest {
    fn new() -> IdDigest {
        IdDigest(std::hash::RandomState::new(), std::hash::RandomState::new())
    }

    fn digest(&self, id: &str) -> u128 {
        use std::hash::BuildHasher;
        (u128::from(self.0.hash_one(id)) << 64) | u128::from(self.1.hash_one(id))
    }
}

/// One gzip object being written: the compressed output goes to the sink in parts.
struct GzObject<'a, K: ObjectSink> {
    gz: GzEncoder<Vec<u8>>,
    out: ObjectWriter<'a, K>,
}

impl<'a, K: ObjectSink> GzObject<'a, K> {
    fn new(sink: &'a K, key: String, content_type: &'static str) -> GzObject<'a, K> {
        GzObject {
            gz: GzEncoder::new(Vec::new(), Compression::default()),
            out: ObjectWriter::new(
                sink,
                key,
                ObjectMeta {
                    content_type,
                    content_encoding: Some("gzip"),
                },
            ),
        }
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), Failure> {
        // Writing into a Vec cannot fail.
        let _ = self.gz.write_all(data);
        if self.gz.get_ref().len() >= DRAIN_BYTES {
            let compressed = std::mem::take(self.gz.get_mut());
            self.out
                .write(&compressed)
                .await
                .map_err(|e| Failure::Transient(e.to_string()))?;
        }
        Ok(())
    }

    /// Completes the object; returns its key and compressed size.
    async fn finish(self) -> Result<(String, u64), (Failure, ObjectWriter<'a, K>)> {
        let GzObject { gz, mut out } = self;
        let rest = match gz.finish() {
            Ok(rest) => rest,
            Err(e) => return Err((Failure::Transient(format!("compressing failed: {e}")), out)),
        };
        if let Err(e) = out.write(&rest).await {
            return Err((Failure::Transient(e.to_string()), out));
        }
        match out.finish().await {
            Ok(n) => Ok((out.key().to_owned(), n)),
            Err(e) => Err((Failure::Transient(e.to_string()), out)),
        }
    }
}

/// The objects of one blob: the raw archive and one events object per event date.
struct Outputs<'a, K: ObjectSink> {
    raw: Option<GzObject<'a, K>>,
    events: BTreeMap<NaiveDate, GzObject<'a, K>>,
}

impl<'a, K: ObjectSink> Outputs<'a, K> {
    /// Completes the raw archive, then every events object (in date order). Returns the keys
    /// (raw first) and the compressed bytes written. When one fails, the events objects this
    /// attempt already completed are emptied again: a blob that failed leaves no events
    /// behind, so another blob holding a copy of its records may take them over without a
    /// duplicate.
    async fn finish(self, sink: &K) -> Result<(Vec<String>, u64), Failure> {
        let Outputs { raw, events } = self;
        let raw_key = raw.as_ref().map(|r| r.out.key().to_owned());
        let mut keys = Vec::new();
        let mut bytes = 0u64;
        let mut rest: Vec<GzObject<'a, K>> = events.into_values().collect();
        rest.reverse();
        if let Some(raw) = raw {
            rest.push(raw);
        }
        // Popped from the end: raw first, then the events by date.
        while let Some(object) = rest.pop() {
            match object.finish().await {
                Ok((key, n)) => {
                    keys.push(key);
                    bytes += n;
                }
                Err((failure, writer)) => {
                    writer.abort().await;
                    for o in rest {
                        o.out.abort().await;
                    }
                    for key in keys.iter().filter(|k| Some(*k) != raw_key.as_ref()) {
                        if let Err(e) = sink
                            .put(
                                key,
                                bytes::Bytes::from(empty_gzip()),
                                &ObjectMeta {
                                    content_type: "application/x-ndjson",
                                    content_encoding: Some("gzip"),
                                },
                            )
                            .await
                        {
                            tracing::warn!(key = %key, error = %e, "could not empty a partly written blob's events object; its retry rewrites it");
                        }
                    }
                    return Err(failure);
                }
            }
        }
        Ok((keys, bytes))
    }

    /// Drops every unfinished object.
    async fn abort(self) {
        if let Some(raw) = self.raw {
            raw.out.abort().await;
        }
        for (_, o) in self.events {
            o.out.abort().await;
        }
    }
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
        setup_with(FetcherSettings {
            max_receives: 3,
            ..FetcherSettings::default()
        })
        .await
    }

    async fn setup_with(
        settings: FetcherSettings,
    ) -> (
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
            settings,
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

    fn events_of(sink_root: &std::path::Path) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut stack = vec![sink_root.join("ocsf")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    out.extend(lines(&std::fs::read(e.path()).unwrap()));
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn a_blob_in_many_chunks_and_claim_batches_is_written_once_per_record() {
        let (f, api, _, _, dir) = setup().await;
        let created = Utc::now() - Duration::hours(2);
        let when = created.format("%Y-%m-%dT%H:%M:%S").to_string();
        // 1,300 records (three claim batches), every 100th repeated in a later batch.
        let mut records: Vec<serde_json::Value> = (0..1300)
            .map(|i| serde_json::json!({"Id": format!("r{i}"), "Operation": "FileAccessed", "CreationTime": when, "Pad": "x".repeat(i % 50)}))
            .collect();
        for i in (0..1300).step_by(100) {
            records.push(serde_json::json!({"Id": format!("r{i}"), "Operation": "FileAccessed", "CreationTime": when}));
        }
        let body = serde_json::to_vec(&records).unwrap();
        let chunks: Vec<Vec<u8>> = body.chunks(777).map(<[u8]>::to_vec).collect();
        api.add_raw(
            ContentType::SharePoint,
            "big$blob$audit_sharepoint",
            created,
            chunks,
        );
        let outcome = f.handle(&job_for(&api, "big$blob$audit_sharepoint")).await;
        let JobOutcome::Written {
            records: n,
            duplicates,
            keys,
            ..
        } = &outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!((*n, *duplicates), (1300, 13), "{outcome:?}");
        assert_eq!(keys.len(), 2, "raw + one event date: {keys:?}");
        let events = events_of(&dir);
        let ids: HashSet<String> = events
            .iter()
            .map(|e| e["metadata"]["uid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!((events.len(), ids.len()), (1300, 1300));
        // The raw archive is the body byte for byte.
        let raw = std::fs::read(dir.join(&keys[0])).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == body);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_record_that_is_not_json_is_kept_as_an_event_with_its_text() {
        let (f, api, _, _, dir) = setup().await;
        let created = Utc::now() - Duration::hours(1);
        let mut body = br#"[{"Id":"ok","Operation":"Send"},"#.to_vec();
        body.extend_from_slice(b"{\"Id\":\"bad\",\"Subject\":\"caf\xE9 \xFF\"}");
        body.extend_from_slice(b"]");
        api.add_raw(
            ContentType::Exchange,
            "u$8$audit_exchange",
            created,
            vec![body],
        );
        let outcome = f.handle(&job_for(&api, "u$8$audit_exchange")).await;
        assert!(
            matches!(outcome, JobOutcome::Written { records: 2, .. }),
            "{outcome:?}"
        );
        let events = events_of(&dir);
        let kept = events
            .iter()
            .find(|e| e.to_string().contains("caf"))
            .expect("the non-UTF-8 record is kept");
        assert!(kept.to_string().contains('\u{FFFD}'), "{kept}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_blob_cut_short_is_retried_and_writes_no_events() {
        let (f, api, dead, _, dir) = setup().await;
        let created = Utc::now() - Duration::hours(1);
        api.add_raw(
            ContentType::General,
            "cut$short$audit_general",
            created,
            vec![br#"[{"Id":"1","Operation":"X"},{"Id":"2","Oper"#.to_vec()],
        );
        let m = job_for(&api, "cut$short$audit_general");
        let outcome = f.handle(&m).await;
        let JobOutcome::Retry { reason } = &outcome else {
            panic!("{outcome:?}")
        };
        assert!(reason.contains("not a complete JSON array"), "{reason}");
        assert!(events_of(&dir).is_empty(), "no events from a broken blob");
        // At the last attempt it is dead-lettered with that reason.
        let last = QueueMessage {
            receive_count: 3,
            ..m
        };
        let outcome = f.handle(&last).await;
        assert!(
            matches!(outcome, JobOutcome::DeadLettered { .. }),
            "{outcome:?}"
        );
        assert!(
            dead.dead_letters()[0]
                .1
                .contains("not a complete JSON array")
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_blob_over_the_size_limit_is_dead_lettered_naming_the_limit() {
        let (f, api, _, _, dir) = setup_with(FetcherSettings {
            max_blob_bytes: 1000,
            ..FetcherSettings::default()
        })
        .await;
        // A body that never ends, as far as the limit is concerned.
        let endless: Vec<Vec<u8>> = std::iter::once(b"[".to_vec())
            .chain(std::iter::repeat_n(
                br#"{"Id":"x","Operation":"Y"},"#.to_vec(),
                100,
            ))
            .collect();
        api.add_raw(ContentType::General, "huge$blob$g", Utc::now(), endless);
        let outcome = f.handle(&job_for(&api, "huge$blob$g")).await;
        let JobOutcome::DeadLettered { reason } = &outcome else {
            panic!("{outcome:?}")
        };
        assert!(
            reason.contains("larger than the limit of 1000 bytes"),
            "{reason}"
        );
        assert!(events_of(&dir).is_empty());
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
    async fn without_cross_blob_dedupe_a_record_in_two_blobs_is_written_by_both_and_nothing_is_claimed()
     {
        let (f, api, _, _, dir) = setup_with(FetcherSettings {
            cross_blob_dedupe: false,
            ..FetcherSettings::default()
        })
        .await;
        let r = |id: &str| serde_json::json!({"Id": id});
        let t = Utc::now() - Duration::hours(1);
        api.add(
            ContentType::SharePoint,
            "1$1$sp",
            t,
            vec![r("a"), r("b"), r("a")],
        );
        api.add(ContentType::SharePoint, "2$2$sp", t, vec![r("b"), r("c")]);
        for id in ["1$1$sp", "2$2$sp"] {
            let o = f.handle(&job_for(&api, id)).await;
            assert!(
                matches!(
                    o,
                    JobOutcome::Written {
                        cross_blob_duplicates: 0,
                        ..
                    }
                ),
                "{o:?}"
            );
        }
        let uids: Vec<String> = events_of(&dir)
            .iter()
            .map(|e| e["metadata"]["uid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(uids.len(), 4, "still de-duplicated inside a blob: {uids:?}");
        // No claim was written: a third blob may claim "b" as new.
        let tenant = TenantId::parse(TENANT).unwrap();
        let owned = f
            .store()
            .claim_records(
                &tenant,
                "3$3$sp",
                &["b".into()],
                t + Duration::days(9),
                Utc::now(),
            )
            .await
            .unwrap();
        assert_eq!(owned, [RecordClaim::Owned]);
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
        assert_eq!(owned, [RecordClaim::Owned, RecordClaim::Owned]);
        assert_eq!(lines(&sink.get(first_key).await.unwrap().unwrap()).len(), 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn failing_blob(n: usize) -> Vec<Vec<u8>> {
        // n records, then the blob is cut short: the first claim batch is claimed (and
        // written) before the failure shows.
        let records: Vec<String> = (0..n).map(|i| format!(r#"{{"Id":"r{i}"}}"#)).collect();
        vec![
            format!("[{}", records.join(",")).into_bytes(),
            b",{\"Id\":\"r-cut".to_vec(),
        ]
    }

    /// Finding 2: blob X claims record R, then fails for good; blob Y holds a copy of R and
    /// must write it (it used to skip it because X owned the claim).
    #[tokio::test]
    async fn a_record_claimed_by_a_blob_that_failed_for_good_is_written_by_the_other_copy() {
        let (f, api, dead, sink, dir) = setup().await;
        let t = Utc::now() - Duration::hours(1);
        api.add_raw(ContentType::SharePoint, "x$1$sp", t, failing_blob(700));
        let r = |id: &str| serde_json::json!({"Id": id});
        api.add(
            ContentType::SharePoint,
            "y$2$sp",
            t,
            vec![r("r10"), r("new")],
        );
        for attempt in 1..=3 {
            let mut m = job_for(&api, "x$1$sp");
            m.receive_count = attempt;
            let o = f.handle(&m).await;
            assert_eq!(o.is_retry(), attempt < 3, "{o:?}");
        }
        assert_eq!(
            dead.dead_letters().len(),
            1,
            "dead-lettered with its reason"
        );
        let tenant = TenantId::parse(TENANT).unwrap();
        let x = f
            .store()
            .blob_entry(&tenant, "x$1$sp", Utc::now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(x.state, BlobState::Failed);
        assert!(x.next_attempt_at.is_some(), "the sweep retries it later");
        let JobOutcome::Written {
            records,
            cross_blob_duplicates,
            ..
        } = f.handle(&job_for(&api, "y$2$sp")).await
        else {
            panic!()
        };
        assert_eq!(
            (records, cross_blob_duplicates),
            (2, 0),
            "r10 is not lost with x"
        );
        let uids: Vec<String> = events_of(&dir)
            .iter()
            .map(|e| e["metadata"]["uid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(uids.iter().filter(|u| *u == "r10").count(), 1, "{uids:?}");
        let _ = sink;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A holder that expired upstream loses its claims too; one still being fetched is waited
    /// for (the job is retried), one that is done keeps them.
    #[tokio::test]
    async fn record_claims_follow_the_state_of_the_blob_that_holds_them() {
        let (f, api, _, _, dir) = setup_with(FetcherSettings {
            max_receives: 3,
            holder_wait: StdDuration::from_millis(0),
            ..FetcherSettings::default()
        })
        .await;
        let tenant = TenantId::parse(TENANT).unwrap();
        let t = Utc::now() - Duration::hours(1);
        let r = |id: &str| serde_json::json!({"Id": id});
        api.add(ContentType::Exchange, "busy$1", t, vec![]);
        api.add(ContentType::Exchange, "gone$2", t, vec![]);
        api.add(
            ContentType::Exchange,
            "y$3",
            t,
            vec![r("held-by-busy"), r("held-by-gone")],
        );
        let exp = Utc::now() + Duration::days(8);
        let blob = |id: &str| {
            api.blobs
                .lock()
                .unwrap()
                .iter()
                .find(|(b, _)| b.content_id == id)
                .unwrap()
                .0
                .clone()
        };
        f.store()
            .claim_blob(&tenant, &blob("busy$1"), Utc::now())
            .await
            .unwrap();
        f.store()
            .set_blob_state(
                &tenant,
                &blob("gone$2"),
                &LedgerEntry::new(BlobState::Expired, Utc::now()).because("AF20051"),
            )
            .await
            .unwrap();
        for (holder, id) in [("busy$1", "held-by-busy"), ("gone$2", "held-by-gone")] {
            f.store()
                .claim_records(&tenant, holder, &[id.into()], exp, Utc::now())
                .await
                .unwrap();
        }
        let o = f.handle(&job_for(&api, "y$3")).await;
        let JobOutcome::Retry { reason } = &o else {
            panic!("{o:?}")
        };
        assert!(
            reason.contains("busy$1") && reason.contains("still being fetched"),
            "{reason}"
        );
        // The busy holder finishes: its copy is written, ours is a duplicate.
        f.store()
            .set_blob_state(
                &tenant,
                &blob("busy$1"),
                &LedgerEntry::new(BlobState::Done, Utc::now()),
            )
            .await
            .unwrap();
        let JobOutcome::Written {
            records,
            cross_blob_duplicates,
            ..
        } = f.handle(&job_for(&api, "y$3")).await
        else {
            panic!()
        };
        assert_eq!(
            (records, cross_blob_duplicates),
            (1, 1),
            "held-by-gone taken over"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Finding 6: the fetcher never runs into Lambda's timeout: a job is not started too close
    /// to the deadline, and a slow one is stopped in time and retried; at its last receive it
    /// is dead-lettered with the reason and stays open in the ledger for the sweep.
    #[tokio::test]
    async fn jobs_stop_before_the_deadline_and_a_blob_too_slow_for_it_fails_with_its_reason() {
        let (f, api, dead, _, dir) = setup_with(FetcherSettings {
            max_receives: 2,
            deadline_margin: StdDuration::from_millis(200),
            ..FetcherSettings::default()
        })
        .await;
        let t = Utc::now() - Duration::hours(1);
        api.add(
            ContentType::Exchange,
            "slow$1",
            t,
            vec![serde_json::json!({"Id": "s"})],
        );
        let msg = job_for(&api, "slow$1");
        // Less than the margin left: not started, nothing downloaded.
        let o = f
            .handle_until(&msg, Some(Instant::now() + StdDuration::from_millis(100)))
            .await;
        assert!(
            matches!(&o, JobOutcome::Retry { reason } if reason.contains("not started")),
            "{o:?}"
        );
        assert_eq!(api.fetches.load(std::sync::atomic::Ordering::SeqCst), 0);
        *api.fetch_delay.lock().unwrap() = Some(StdDuration::from_secs(5));
        let started = Instant::now();
        let o = f
            .handle_until(&msg, Some(Instant::now() + StdDuration::from_millis(700)))
            .await;
        assert!(
            started.elapsed() < StdDuration::from_millis(650),
            "stopped at the margin"
        );
        assert!(
            matches!(&o, JobOutcome::Retry { reason } if reason.contains("deadline")),
            "{o:?}"
        );
        let mut last = msg.clone();
        last.receive_count = 2;
        let o = f
            .handle_until(&last, Some(Instant::now() + StdDuration::from_millis(700)))
            .await;
        assert!(matches!(o, JobOutcome::DeadLettered { .. }), "{o:?}");
        assert!(dead.dead_letters()[0].1.contains("deadline"));
        let tenant = TenantId::parse(TENANT).unwrap();
        let e = f
            .store()
            .blob_entry(&tenant, "slow$1", Utc::now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.state, BlobState::Failed);
        assert!(e.next_attempt_at.is_some());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Finding 9: a record over the size limit is quarantined, the raw archive is completed
    /// and the blob's other records are written.
    #[tokio::test]
    async fn an_oversized_record_is_quarantined_and_the_rest_of_the_blob_is_written() {
        let (f, api, dead, sink, dir) = setup_with(FetcherSettings {
            max_record_bytes: 1000,
            ..FetcherSettings::default()
        })
        .await;
        let big = format!(r#"{{"Id":"big","Padding":"{}"}}"#, "x".repeat(5000));
        let body = format!(r#"[{{"Id":"a"}},{big},{{"Id":"b"}}]"#);
        let chunks: Vec<Vec<u8>> = body.as_bytes().chunks(700).map(<[u8]>::to_vec).collect();
        api.add_raw(ContentType::General, "q$1$g", Utc::now(), chunks);
        let o = f.handle(&job_for(&api, "q$1$g")).await;
        let JobOutcome::Written {
            records,
            quarantined,
            keys,
            ..
        } = &o
        else {
            panic!("{o:?}")
        };
        assert_eq!((*records, *quarantined), (2, 1));
        assert!(dead.dead_letters().is_empty());
        let raw = sink.get(&keys[0]).await.unwrap().unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(
            text, body,
            "the raw archive holds the whole blob, big record included"
        );
        let q = sink.get(keys.last().unwrap()).await.unwrap().unwrap();
        let q: serde_json::Value = serde_json::from_slice(&q).unwrap();
        assert_eq!(q["records"][0]["index"], 1);
        assert_eq!(q["records"][0]["bytes"], big.len());
        assert!(
            q["records"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("1000 bytes")
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Two blobs each holding a record the other also carries never wait for each other: the
    /// one that finds its holder busy lets go of its own claims and is retried; the other
    /// writes both records; the retry skips them. Each record once.
    #[tokio::test]
    async fn two_blobs_holding_each_others_records_do_not_deadlock() {
        let (f, api, _, _, dir) = setup_with(FetcherSettings {
            max_receives: 3,
            holder_wait: StdDuration::from_millis(0),
            ..FetcherSettings::default()
        })
        .await;
        let tenant = TenantId::parse(TENANT).unwrap();
        let t = Utc::now() - Duration::hours(1);
        let r = |id: &str| serde_json::json!({"Id": id});
        api.add(
            ContentType::General,
            "x$1",
            t,
            vec![r("r1"), r("r2"), r("x")],
        );
        api.add(
            ContentType::General,
            "y$2",
            t,
            vec![r("r2"), r("r1"), r("y")],
        );
        let exp = Utc::now() + Duration::days(8);
        for (holder, id) in [("x$1", "r1"), ("y$2", "r2")] {
            let blob = api
                .blobs
                .lock()
                .unwrap()
                .iter()
                .find(|(b, _)| b.content_id == holder)
                .unwrap()
                .0
                .clone();
            f.store()
                .claim_blob(&tenant, &blob, Utc::now())
                .await
                .unwrap();
            f.store()
                .claim_records(&tenant, holder, &[id.into()], exp, Utc::now())
                .await
                .unwrap();
        }
        let o = f.handle(&job_for(&api, "x$1")).await;
        assert!(o.is_retry(), "x waits for y: {o:?}");
        let JobOutcome::Written { records, .. } = f.handle(&job_for(&api, "y$2")).await else {
            panic!("y takes what x let go")
        };
        assert_eq!(records, 3);
        let JobOutcome::Written {
            records,
            cross_blob_duplicates,
            ..
        } = f.handle(&job_for(&api, "x$1")).await
        else {
            panic!()
        };
        assert_eq!((records, cross_blob_duplicates), (1, 2));
        let mut uids: Vec<String> = events_of(&dir)
            .iter()
            .map(|e| e["metadata"]["uid"].as_str().unwrap().to_owned())
            .collect();
        uids.sort();
        assert_eq!(uids, ["r1", "r2", "x", "y"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
