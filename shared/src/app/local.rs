//! One process, the same use cases: the lister fills a bounded in-process queue that fetch
//! workers drain concurrently (`o365-collector run` and `demo`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration as StdDuration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::fetcher::{Fetcher, FetcherSettings, JobOutcome, QueueMessage};
use super::lister::{self, ListerReport, ListerSettings};
use super::{ApiProvider, Clock};
use crate::model::FetchJob;
use crate::queue::{DeadLetters, EnqueueReport, JobQueue, QueueError};
use crate::sink::ObjectSink;
use crate::store::StateStore;

/// Progress of a local pass as it happens (a progress bar, or periodic log lines).
pub trait Progress: Send + Sync {
    /// A blob was put on the in-process queue.
    fn listed(&self, job: &FetchJob);
    /// A job ended (after its retries) with this outcome.
    fn finished(&self, job: &FetchJob, outcome: &JobOutcome);
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn listed(&self, _job: &FetchJob) {}
    fn finished(&self, _job: &FetchJob, _outcome: &JobOutcome) {}
}

/// A bounded in-process job queue: `enqueue` waits while it is full.
#[derive(Clone)]
pub struct ChannelQueue {
    tx: mpsc::Sender<FetchJob>,
    progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for ChannelQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelQueue").finish_non_exhaustive()
    }
}

impl JobQueue for ChannelQueue {
    async fn enqueue(&self, jobs: &[FetchJob]) -> Result<EnqueueReport, QueueError> {
        let mut report = EnqueueReport::default();
        for job in jobs {
            if self.tx.send(job.clone()).await.is_err() {
                report.failed.push((
                    job.content_id.clone(),
                    "the fetch workers have stopped".into(),
                ));
            } else {
                self.progress.listed(job);
            }
        }
        Ok(report)
    }
}

/// Dead letters of a local run, kept for the report.
#[derive(Debug, Default)]
pub struct CollectedDeadLetters {
    items: Mutex<Vec<(String, String)>>,
}

impl CollectedDeadLetters {
    /// `(message, reason)` pairs so far.
    pub fn items(&self) -> Vec<(String, String)> {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl DeadLetters for CollectedDeadLetters {
    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError> {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((body.to_owned(), reason.to_owned()));
        Ok(())
    }
}

/// What a local pass did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LocalReport {
    /// The lister's report.
    pub lister: ListerReport,
    /// Blobs written.
    pub blobs_written: u64,
    /// Records written, per content type.
    pub records: BTreeMap<String, u64>,
    /// Duplicate records dropped inside blobs.
    pub duplicates: u64,
    /// Records dropped because an earlier blob already wrote their `Id`.
    pub cross_blob_duplicates: u64,
    /// Jobs whose blob was already done.
    pub already_done: u64,
    /// Blobs expired upstream (data lost at Microsoft, reported).
    pub expired: Vec<String>,
    /// Jobs dead-lettered, with reasons.
    pub dead_letters: Vec<(String, String)>,
    /// Fetch attempts that were retried.
    pub retries: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Local run knobs.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// Lister knobs.
    pub lister: ListerSettings,
    /// Fetcher knobs (`max_receives` = attempts per blob).
    pub fetcher: FetcherSettings,
    /// Fetch workers.
    pub workers: usize,
    /// Queue capacity.
    pub queue_capacity: usize,
    /// Longest a pass may take.
    pub time_limit: StdDuration,
    /// First retry delay (doubles per attempt, capped at 10 s).
    pub retry_delay: StdDuration,
}

impl Default for LocalSettings {
    fn default() -> Self {
        LocalSettings {
            lister: ListerSettings::default(),
            fetcher: FetcherSettings::default(),
            workers: 8,
            queue_capacity: 256,
            time_limit: StdDuration::from_secs(3600),
            retry_delay: StdDuration::from_millis(200),
        }
    }
}

/// Runs one listing pass and fetches everything it enqueued.
///
/// # Errors
/// Only when the tenant list cannot be read.
pub async fn run_once<S, K, P, C>(
    store: Arc<S>,
    sink: Arc<K>,
    apis: Arc<P>,
    clock: Arc<C>,
    settings: &LocalSettings,
) -> Result<LocalReport, crate::store::StoreError>
where
    S: StateStore + 'static,
    K: ObjectSink + 'static,
    P: ApiProvider + 'static,
    C: Clock + 'static,
{
    run_once_with_progress(store, sink, apis, clock, settings, Arc::new(NoProgress)).await
}

/// [`run_once`], telling `progress` of every blob listed and every job finished.
///
/// # Errors
/// Only when the tenant list cannot be read.
pub async fn run_once_with_progress<S, K, P, C>(
    store: Arc<S>,
    sink: Arc<K>,
    apis: Arc<P>,
    clock: Arc<C>,
    settings: &LocalSettings,
    progress: Arc<dyn Progress>,
) -> Result<LocalReport, crate::store::StoreError>
where
    S: StateStore + 'static,
    K: ObjectSink + 'static,
    P: ApiProvider + 'static,
    C: Clock + 'static,
{
    let started = Instant::now();
    let deadline = started + settings.time_limit;
    let dead = Arc::new(CollectedDeadLetters::default());
    let fetcher = Arc::new(Fetcher::new(
        store.clone(),
        sink,
        dead.clone(),
        apis.clone(),
        clock.clone(),
        settings.fetcher.clone(),
    ));
    let (tx, rx) = mpsc::channel::<FetchJob>(settings.queue_capacity.max(1));
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let outcomes: Arc<Mutex<Vec<(FetchJob, JobOutcome, u64)>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..settings.workers.max(1) {
        let rx = rx.clone();
        let fetcher = fetcher.clone();
        let outcomes = outcomes.clone();
        let max = settings.fetcher.max_receives.max(1);
        let first_delay = settings.retry_delay;
        let progress = progress.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(job) = next else { break };
                let body = job.to_json();
                let mut retries = 0u64;
                let mut delay = first_delay;
                let mut attempt = 1u32;
                let outcome = loop {
                    let msg = QueueMessage {
                        id: job.content_id.clone(),
                        body: body.clone(),
                        receive_count: attempt,
                    };
                    let outcome = fetcher.handle(&msg).await;
                    if !outcome.is_retry() || attempt >= max {
                        break outcome;
                    }
                    retries += 1;
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(StdDuration::from_secs(10));
                };
                progress.finished(&job, &outcome);
                outcomes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((job, outcome, retries));
            }
        }));
    }
    let queue = ChannelQueue { tx, progress };
    let lister_report = lister::run(
        store.as_ref(),
        &queue,
        apis.as_ref(),
        clock.as_ref(),
        &settings.lister,
        deadline,
    )
    .await;
    drop(queue);
    for w in workers {
        if let Err(e) = w.await {
            tracing::error!(error = %e, "a fetch worker panicked");
        }
    }
    let lister_report = lister_report?;
    let mut report = LocalReport {
        lister: lister_report,
        ..LocalReport::default()
    };
    for (job, outcome, retries) in outcomes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
    {
        report.retries += retries;
        match outcome {
            JobOutcome::Written {
                records,
                duplicates,
                cross_blob_duplicates,
                ..
            } => {
                report.cross_blob_duplicates += cross_blob_duplicates;
                report.blobs_written += 1;
                *report
                    .records
                    .entry(job.content_type.to_string())
                    .or_default() += records;
                report.duplicates += duplicates;
            }
            JobOutcome::AlreadyDone { .. } => report.already_done += 1,
            JobOutcome::Expired { content_id } => report.expired.push(content_id),
            JobOutcome::DeadLettered { .. } | JobOutcome::Retry { .. } => {}
        }
    }
    report.dead_letters = dead.items();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
