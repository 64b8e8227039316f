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
use crate::model::{BlobState, FetchJob};
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
    sent: Arc<std::sync::atomic::AtomicU64>,
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
                self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
    /// Unfinished ledger entries of earlier runs (an interrupted run's queue, failures)
    /// re-driven at the start of this pass.
    pub redriven_at_start: u64,
    /// Blobs that failed in this pass and stay open in the ledger (retried next pass), with
    /// the reason.
    pub failed: Vec<(String, String)>,
    /// Jobs listed in this pass that were not finished (the pass was interrupted or ran out
    /// of time): still open in the ledger, the next pass collects them.
    pub left_open: u64,
    /// The pass was stopped by a signal (Ctrl-C, SIGTERM).
    pub interrupted: bool,
    /// Wall time in seconds.
    pub seconds: f64,
}

impl LocalReport {
    /// True when everything listed was done (nothing failed, nothing left open).
    pub fn complete(&self) -> bool {
        self.failed.is_empty()
            && self.left_open == 0
            && !self.interrupted
            && self.lister.failures() == 0
            && !self.lister.stopped_early()
    }
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
    /// After a stop signal, in-flight jobs get this long to finish; the rest stay open.
    pub stop_grace: StdDuration,
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
            stop_grace: StdDuration::from_secs(5),
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

/// A stop request for a local pass (Ctrl-C, SIGTERM): listing stops at once, in-flight jobs
/// get [`LocalSettings::stop_grace`] to finish, everything else stays open in the ledger for
/// the next pass.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<tokio::sync::watch::Sender<bool>>);

impl StopSignal {
    /// A signal not yet raised.
    pub fn new() -> StopSignal {
        StopSignal(Arc::new(tokio::sync::watch::channel(false).0))
    }

    /// Raises it.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// True once raised.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once raised.
    pub async fn stopped(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
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
    run_pass(
        store,
        sink,
        apis,
        clock,
        settings,
        progress,
        StopSignal::new(),
    )
    .await
}

/// One local pass: re-drives what earlier passes left unfinished (the in-process queue dies
/// with its process, so every open ledger entry is enqueued again), lists, and fetches
/// everything enqueued, until done or `stop` is raised.
///
/// # Errors
/// Only when the tenant list cannot be read.
pub async fn run_pass<S, K, P, C>(
    store: Arc<S>,
    sink: Arc<K>,
    apis: Arc<P>,
    clock: Arc<C>,
    settings: &LocalSettings,
    progress: Arc<dyn Progress>,
    stop: StopSignal,
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
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            loop {
                if stop.is_stopped() {
                    break;
                }
                let next = tokio::select! {
                    n = async { rx.lock().await.recv().await } => n,
                    () = stop.stopped() => None,
                };
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
                    if stop.is_stopped() {
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
    let listed_count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let queue = ChannelQueue {
        tx,
        progress,
        sent: listed_count.clone(),
    };
    let listed = {
        let counted = queue.clone();
        let store = store.clone();
        let clock = clock.clone();
        let settings = settings.clone();
        async move {
            // What earlier passes left unfinished first: their queue died with them.
            let mut redriven = 0u64;
            let tenants = store.list_tenants().await?;
            for t in tenants.iter().filter(|t| t.enabled) {
                match lister::redrive_unfinished(
                    store.as_ref(),
                    &counted,
                    &t.id,
                    &[BlobState::Pending, BlobState::Enqueued, BlobState::Failed],
                    clock.now(),
                )
                .await
                {
                    Ok(r) => redriven += r.redriven,
                    Err(e) => {
                        tracing::error!(tenant = %t.id, error = %e, "could not re-drive unfinished blobs; the next pass tries again");
                    }
                }
            }
            let report = lister::run(
                store.as_ref(),
                &counted,
                apis.as_ref(),
                clock.as_ref(),
                &settings.lister,
                deadline,
            )
            .await?;
            Ok::<_, crate::store::StoreError>((report, redriven))
        }
    };
    let mut interrupted = false;
    let lister_report = tokio::select! {
        r = listed => r,
        () = stop.stopped() => {
            interrupted = true;
            Ok((ListerReport::default(), 0))
        }
    };
    drop(queue);
    if interrupted || stop.is_stopped() {
        interrupted = true;
        // In-flight jobs get a few seconds; then they are dropped (a dropped job is safe: its
        // ledger entry stays open and the next pass re-drives it).
        let grace = tokio::time::sleep(settings.stop_grace);
        tokio::pin!(grace);
        let mut waiting = Vec::new();
        for mut w in workers {
            tokio::select! {
                // Finished: its result is read here (a JoinHandle must not be polled again).
                r = &mut w => {
                    if let Err(e) = r
                        && !e.is_cancelled()
                    {
                        tracing::error!(error = %e, "a fetch worker panicked");
                    }
                }
                () = &mut grace => {
                    w.abort();
                    waiting.push(w);
                }
            }
        }
        workers = waiting;
    }
    for w in workers {
        if let Err(e) = w.await
            && !e.is_cancelled()
        {
            tracing::error!(error = %e, "a fetch worker panicked");
        }
    }
    let (lister_report, redriven_at_start) = match lister_report {
        Ok((r, n)) => (Ok(r), n),
        Err(e) => (Err(e), 0),
    };
    let lister_report = lister_report?;
    let listed_jobs = listed_count.load(std::sync::atomic::Ordering::SeqCst);
    let mut report = LocalReport {
        lister: lister_report,
        redriven_at_start,
        interrupted,
        ..LocalReport::default()
    };
    let mut finished = 0u64;
    for (job, outcome, retries) in outcomes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
    {
        report.retries += retries;
        finished += 1;
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
            JobOutcome::DeadLettered { reason } | JobOutcome::Retry { reason } => {
                report.failed.push((job.content_id.clone(), reason));
            }
        }
    }
    report.left_open = listed_jobs.saturating_sub(finished);
    report.dead_letters = dead.items();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
