//! The fetcher: one job = one content blob. Download it, keep each record once (by `Id`), wrap
//! it in the collection envelope, write gzip NDJSON under a key derived from the job alone, and
//! only then mark the blob done in the ledger.
//!
//! Durable first, state second: a crash after the write and before the mark re-runs the job,
//! which overwrites the same key with the same records. A redelivered job whose blob is done
//! is acknowledged without a download.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use super::{ApiProvider, Clock};
use crate::api::{ActivityApi, ErrorClass};
use crate::model::{BlobState, FetchJob, LedgerEntry, Tenant, TenantId};
use crate::queue::DeadLetters;
use crate::sink::{ObjectMeta, ObjectSink};
use crate::store::StateStore;

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
}

impl Default for FetcherSettings {
    fn default() -> Self {
        FetcherSettings {
            max_receives: 5,
            max_blob_bytes: 512 * 1024 * 1024,
            concurrency: 4,
            tenant_cache_ttl: StdDuration::from_secs(300),
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
        /// Object key.
        key: String,
        /// Records written.
        records: u64,
        /// Records dropped because their `Id` repeated inside the blob.
        duplicates: u64,
        /// Compressed bytes written.
        bytes: u64,
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

/// The collection envelope around each raw record (one NDJSON line).
#[derive(Debug, Serialize)]
struct Envelope<'a> {
    tenant_id: &'a str,
    content_type: &'static str,
    content_id: &'a str,
    content_created: DateTime<Utc>,
    received_at: DateTime<Utc>,
    record_id: Option<&'a str>,
    record: &'a serde_json::Value,
}

/// The object key of a job's records: derived from the job alone, so a redelivery overwrites
/// instead of duplicating. The content id is percent-encoded (it contains `$`).
pub fn object_key(job: &FetchJob) -> String {
    let id: String = url::form_urlencoded::byte_serialize(job.content_id.as_bytes()).collect();
    format!(
        "events/tenant_id={}/content_type={}/date={}/{id}.ndjson.gz",
        job.tenant_id,
        job.content_type.as_str(),
        job.content_created.format("%Y-%m-%d"),
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
                    key,
                    ..
                } = &outcome
                {
                    tracing::info!(tenant = %job.tenant_id, content_type = %job.content_type,
                        content_id = %job.content_id, records, duplicates, key = %key, "blob written");
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
        let records: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Transient(format!(
                "blob {} is not a JSON array of records ({e}); it may have been cut short",
                job.content_id
            ))
        })?;
        let (gz, written, duplicates) = encode(job, &records, self.clock.now())
            .map_err(|e| Failure::Transient(format!("compressing records failed: {e}")))?;
        let key = object_key(job);
        let size = gz.len() as u64;
        self.sink
            .put(
                &key,
                gz,
                &ObjectMeta {
                    content_type: "application/x-ndjson",
                    content_encoding: Some("gzip"),
                },
            )
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        let entry = LedgerEntry {
            state: BlobState::Done,
            updated_at: self.clock.now(),
            records: Some(written),
            object_key: Some(key.clone()),
            reason: None,
        };
        self.store
            .set_blob_state(&job.tenant_id, &blob, &entry)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        Ok(JobOutcome::Written {
            content_id: job.content_id.clone(),
            key,
            records: written,
            duplicates,
            bytes: size,
        })
    }
}

/// Gzip NDJSON of the enveloped records, each `Id` once. Returns (bytes, written, duplicates).
fn encode(
    job: &FetchJob,
    records: &[serde_json::Value],
    received_at: DateTime<Utc>,
) -> std::io::Result<(Bytes, u64, u64)> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    let mut seen: HashSet<&str> = HashSet::new();
    let (mut written, mut duplicates) = (0u64, 0u64);
    let tenant = job.tenant_id.to_string();
    for record in records {
        let id = record.get("Id").and_then(|v| v.as_str());
        if let Some(id) = id
            && !seen.insert(id)
        {
            duplicates += 1;
            continue;
        }
        let env = Envelope {
            tenant_id: &tenant,
            content_type: job.content_type.as_str(),
            content_id: &job.content_id,
            content_created: job.content_created,
            received_at,
            record_id: id,
            record,
        };
        serde_json::to_writer(&mut gz, &env)?;
        gz.write_all(b"\n")?;
        written += 1;
    }
    Ok((Bytes::from(gz.finish()?), written, duplicates))
}
