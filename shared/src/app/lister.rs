//! The lister: keeps every blob Microsoft lists moving until it is done or Microsoft expired it.
//!
//! Each tick, bounded by the invocation's deadline, in this order:
//!
//! 1. **Live tail**, every feed (tenant × content type) before anything else: list from the
//!    saved cursor minus a re-list band (late content) to Microsoft's "now", in windows of at
//!    most an hour when catching up, a few windows per feed per round so one busy feed cannot
//!    starve the others.
//! 2. **Sweep**: every tenant's failed ledger entries whose retry is due are enqueued again
//!    (a growing back-off), or marked expired and reported once Microsoft has dropped them.
//! 3. **Reconciliation**: a resumable pass over the whole 7 days Microsoft keeps content, in
//!    windows of at most an hour, completing every `reconcile_every`, for content published
//!    later than the band.
//!
//! A listing hands blobs on in chunks: blobs already in the feed's listed-blob summary (per
//! hour of `contentCreated`) are known at no per-blob cost; the others are claimed in the
//! ledger with a conditional write (so two listers never both enqueue one), enqueued, and only
//! then added to the summary. A crash between the claim and the summary leaves a `pending`
//! claim that the next listing of its window re-drives once a grace period (for a concurrent
//! lister) has passed. A job SQS refuses becomes a failed entry the sweep retries: no blob ever
//! holds a cursor back. The cursor only says where the live tail resumes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use super::{ApiProvider, Clock, skew_against};
use crate::api::{ActivityApi, ErrorClass};
use crate::model::{
    BlobState, ContentBlob, ContentType, Cursor, FetchJob, LedgerEntry, LedgerItem, MAX_LOOKBACK,
    MAX_WINDOW, Tenant, Versioned, Window, retry_backoff, seen_digest, seen_hour,
};
use crate::queue::{DeadLetterInbox, JobQueue};
use crate::store::{Claim, StateStore, StoreError};

/// Knobs of the lister.
#[derive(Debug, Clone)]
pub struct ListerSettings {
    /// Each live listing starts this long before the saved cursor (content published late).
    pub relist_band: Duration,
    /// A reconciliation pass over the whole 7 days completes this often; `None` = never.
    pub reconcile_every: Option<Duration>,
    /// Width of reconciliation windows.
    pub reconcile_window: Duration,
    /// A new feed's first listing goes this far back (at most 7 days).
    pub first_run_lookback: Duration,
    /// Width of the live tail's windows when it is catching up (more than the band plus this
    /// behind).
    pub window: Duration,
    /// Live windows per feed per round (then the other feeds get their turn).
    pub windows_per_round: usize,
    /// Feeds listed at once.
    pub concurrency: usize,
    /// Management API requests per minute per tenant (the documented baseline is 2,000).
    pub requests_per_minute: u32,
    /// Stop starting new units of work when less than this is left before the deadline.
    pub stop_margin: StdDuration,
    /// Only these content types are listed (of those each tenant has); `None` = all.
    pub content_types: Option<Vec<ContentType>>,
    /// A `pending` claim younger than this belongs to a lister still at work; older ones are
    /// re-driven by whoever lists the blob next.
    pub claim_grace: Duration,
    /// Blobs claimed and enqueued per unit of work (progress is saved per unit).
    pub chunk: usize,
    /// Ledger writes in flight at once within a unit.
    pub claim_concurrency: usize,
    /// Due entries a tenant's sweep drives per tick.
    pub sweep_limit: usize,
}

impl Default for ListerSettings {
    fn default() -> Self {
        ListerSettings {
            relist_band: Duration::minutes(150),
            reconcile_every: Some(Duration::hours(6)),
            reconcile_window: Duration::hours(1),
            first_run_lookback: Duration::hours(24),
            window: Duration::hours(1),
            windows_per_round: 4,
            concurrency: 16,
            requests_per_minute: 2000,
            stop_margin: StdDuration::from_secs(20),
            content_types: None,
            claim_grace: Duration::minutes(10),
            chunk: 250,
            claim_concurrency: 16,
            sweep_limit: 1000,
        }
    }
}

/// What happened to one feed (tenant × content type).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FeedReport {
    /// Tenant.
    pub tenant: String,
    /// Content type.
    pub content_type: ContentType,
    /// Live windows listed completely.
    pub windows: u32,
    /// Blobs seen in the listings (live and reconciliation).
    pub listed: u64,
    /// Jobs enqueued for blobs not seen before.
    pub enqueued: u64,
    /// Jobs enqueued again for claims an interrupted lister left behind.
    pub redriven: u64,
    /// Blobs already handed on, done, expired or failed (no job).
    pub known: u64,
    /// Fresh claims of another lister still at work (left to it).
    pub in_flight: u64,
    /// Jobs SQS refused: now failed entries the sweep retries.
    pub refused: u64,
    /// New blobs the reconciliation pass found (included in `enqueued`): content published
    /// later than the re-list band.
    pub late_found: u64,
    /// Reconciliation windows listed completely.
    pub reconciled_windows: u32,
    /// Largest lateness (first listing − `contentCreated`) among new blobs, in seconds.
    pub max_lateness_secs: Option<i64>,
    /// Where the live tail got to in this run (an idle feed's cursor is written once it has
    /// moved 30 minutes).
    pub cursor: Option<DateTime<Utc>>,
    /// Where the reconciliation pass under way stands (`None`: none under way).
    pub reconcile_from: Option<DateTime<Utc>>,
    /// When the last full reconciliation pass completed.
    pub reconciled_at: Option<DateTime<Utc>>,
    /// Stopped before the end because the deadline was near (resumes next tick).
    pub stopped_early: bool,
    /// Why this feed failed (others carry on).
    pub error: Option<String>,
}

impl FeedReport {
    /// An empty report of a feed.
    pub fn new(tenant: String, content_type: ContentType) -> FeedReport {
        FeedReport {
            tenant,
            content_type,
            windows: 0,
            listed: 0,
            enqueued: 0,
            redriven: 0,
            known: 0,
            in_flight: 0,
            refused: 0,
            late_found: 0,
            reconciled_windows: 0,
            max_lateness_secs: None,
            cursor: None,
            reconcile_from: None,
            reconciled_at: None,
            stopped_early: false,
            error: None,
        }
    }
}

/// What the sweep did for one tenant.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct SweepReport {
    /// Tenant.
    pub tenant: String,
    /// Failed entries waiting for a retry (due or not).
    pub open_failed: u64,
    /// Failed entries enqueued again.
    pub redriven: u64,
    /// Entries Microsoft expired before they could be fetched (data lost upstream, reported).
    pub expired: u64,
    /// Age of the oldest open failed entry (now − when it was first listed), in seconds.
    pub oldest_open_secs: Option<i64>,
    /// Why the sweep failed (others carry on).
    pub error: Option<String>,
}

/// What happened in one run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ListerReport {
    /// One entry per feed.
    pub feeds: Vec<FeedReport>,
    /// One entry per tenant swept.
    pub sweeps: Vec<SweepReport>,
    /// Tenants whose client could not be built.
    pub tenant_errors: Vec<String>,
    /// What the dead-letter sweep found (Lambda only).
    pub dead_letters: DeadLetterReport,
}

impl ListerReport {
    /// Jobs enqueued in all (new, re-driven and swept).
    pub fn jobs(&self) -> u64 {
        self.feeds
            .iter()
            .map(|f| f.enqueued + f.redriven)
            .sum::<u64>()
            + self.sweeps.iter().map(|s| s.redriven).sum::<u64>()
    }

    /// Feeds, sweeps or tenants that failed.
    pub fn failures(&self) -> usize {
        self.feeds.iter().filter(|f| f.error.is_some()).count()
            + self.sweeps.iter().filter(|s| s.error.is_some()).count()
            + self.tenant_errors.len()
    }

    /// Writes the invocation's one summary log line (the Lambda handler's).
    pub fn log_summary(
        &self,
        request_id: &str,
        api: &crate::api::ApiStats,
        certificates_expiring: usize,
        duration_ms: u64,
    ) {
        tracing::info!(
            request_id = %request_id,
            feeds = self.feeds.len(),
            listed = self.feeds.iter().map(|f| f.listed).sum::<u64>(),
            jobs = self.jobs(),
            late_found = self.feeds.iter().map(|f| f.late_found).sum::<u64>(),
            swept = self.sweeps.iter().map(|s| s.redriven).sum::<u64>(),
            expired = self.sweeps.iter().map(|s| s.expired).sum::<u64>(),
            dead_letters_recovered = self.dead_letters.recovered,
            failures = self.failures(),
            api_calls = api.calls,
            throttled = api.throttled,
            retries = api.retries,
            certificates_expiring,
            duration_ms,
            "lister invocation done"
        );
    }

    /// True when some feed stopped before finishing its work (the next tick resumes).
    pub fn stopped_early(&self) -> bool {
        self.feeds.iter().any(|f| f.stopped_early)
    }
}

/// A simple per-tenant budget: at most `per_minute` requests in each rolling minute slot.
#[derive(Debug)]
struct Budget {
    per_minute: u32,
    slot: tokio::sync::Mutex<(Instant, u32)>,
}

impl Budget {
    fn new(per_minute: u32) -> Budget {
        Budget {
            per_minute: per_minute.max(1),
            slot: tokio::sync::Mutex::new((Instant::now(), 0)),
        }
    }

    /// Waits for a request slot; false if that would cross the deadline.
    async fn acquire(&self, deadline: Instant) -> bool {
        let mut slot = self.slot.lock().await;
        let now = Instant::now();
        if now.duration_since(slot.0) >= StdDuration::from_secs(60) {
            *slot = (now, 0);
        }
        if slot.1 >= self.per_minute {
            let next = slot.0 + StdDuration::from_secs(60);
            if next >= deadline {
                return false;
            }
            tokio::time::sleep_until(next).await;
            *slot = (Instant::now(), 0);
        }
        slot.1 += 1;
        true
    }
}

/// The shared context of one run.
struct Ctx<'a, S, Q, C> {
    store: &'a S,
    queue: &'a Q,
    clock: &'a C,
    settings: &'a ListerSettings,
    deadline: Instant,
}

impl<S, Q, C> Ctx<'_, S, Q, C> {
    fn time_up(&self) -> bool {
        Instant::now() + self.settings.stop_margin >= self.deadline
    }
}

/// Runs one tick: every feed's live tail, then the sweep, then reconciliation, each step
/// checking the deadline and saving its progress.
///
/// Failures are per feed and per tenant: a failing one is reported and never blocks the
/// others.
///
/// # Errors
/// Only when the tenant list itself cannot be read.
pub async fn run<S, Q, P, C>(
    store: &S,
    queue: &Q,
    apis: &P,
    clock: &C,
    settings: &ListerSettings,
    deadline: Instant,
) -> Result<ListerReport, StoreError>
where
    S: StateStore,
    Q: JobQueue,
    P: ApiProvider,
    C: Clock,
{
    let ctx = Ctx {
        store,
        queue,
        clock,
        settings,
        deadline,
    };
    let tenants = store.list_tenants().await?;
    let mut report = ListerReport::default();
    let mut feeds: Vec<FeedRun<P::Api>> = Vec::new();
    let mut swept: Vec<(Arc<Tenant>, Arc<P::Api>)> = Vec::new();
    for tenant in tenants.into_iter().filter(|t| t.enabled) {
        match apis.api(&tenant).await {
            Ok(api) => {
                let budget = Arc::new(Budget::new(settings.requests_per_minute));
                let tenant = Arc::new(tenant);
                let allowed = |ct: &ContentType| {
                    settings
                        .content_types
                        .as_ref()
                        .is_none_or(|only| only.contains(ct))
                };
                for ct in tenant.content_types.clone().into_iter().filter(allowed) {
                    feeds.push(FeedRun::new(
                        tenant.clone(),
                        api.clone(),
                        ct,
                        budget.clone(),
                    ));
                }
                swept.push((tenant, api));
            }
            Err(e) => {
                tracing::error!(tenant = %tenant.id, error = %e, "tenant skipped: client setup failed");
                report.tenant_errors.push(e.to_string());
            }
        }
    }
    let concurrency = settings.concurrency.max(1);
    // 0. "Now" is Microsoft's: a tenant whose clock reading is older than a minute gets a
    //    fresh one (one cheap request) before its windows are drawn.
    futures_util::stream::iter(&swept)
        .for_each_concurrent(concurrency, |(_, api)| async move {
            if api
                .server_skew_age()
                .is_none_or(|age| age > StdDuration::from_secs(60))
            {
                let _ = api.list_subscriptions().await;
            }
        })
        .await;
    // 1. The live tail of every feed, in rounds: every feed's first round before anyone's
    //    second.
    let mut done = in_rounds(&ctx, feeds, Phase::Live, concurrency).await;
    // 2. The sweep, per tenant.
    if !ctx.time_up() {
        report.sweeps = futures_util::stream::iter(swept)
            .map(|(tenant, api)| {
                let ctx = &ctx;
                async move { sweep(ctx, &tenant, api.as_ref()).await }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        report.sweeps.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    }
    // 3. Reconciliation, in rounds like the live tail.
    if settings.reconcile_every.is_some() {
        let (active, mut rest): (Vec<_>, Vec<_>) = done.into_iter().partition(|f| {
            f.report.error.is_none() && f.cursor.is_some() && !f.report.stopped_early
        });
        rest.extend(in_rounds(&ctx, active, Phase::Reconcile, concurrency).await);
        done = rest;
    }
    // Whatever is unsaved is saved once at the end, feeds at once.
    let mut feeds_out: Vec<FeedReport> = futures_util::stream::iter(done)
        .map(|mut f| {
            let ctx = &ctx;
            async move {
                if f.save_needed() {
                    f.save(ctx).await;
                } else if let Some(p) = &f.pending {
                    // Listed up to here; saved once it has moved IDLE_SAVE_EVERY.
                    f.report.cursor = Some(p.listed_until);
                    f.report.reconcile_from = p.reconcile_from;
                    f.report.reconciled_at = p.reconciled_at;
                }
                f.log();
                f.report
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    feeds_out.sort_by(|a, b| (&a.tenant, a.content_type).cmp(&(&b.tenant, b.content_type)));
    report.feeds = feeds_out;
    Ok(report)
}

/// Which part of a tick a round belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The live tail.
    Live,
    /// The reconciliation pass.
    Reconcile,
}

/// Runs `phase` over `feeds` in rounds (a few windows per feed per round, every feed's round
/// before anyone's next) until no feed has work left or the deadline is near; feeds stopped by
/// the deadline with work left are marked `stopped_early`. The live tail always gets its first
/// round.
async fn in_rounds<S, Q, C, A>(
    ctx: &Ctx<'_, S, Q, C>,
    feeds: Vec<FeedRun<A>>,
    phase: Phase,
    concurrency: usize,
) -> Vec<FeedRun<A>>
where
    S: StateStore,
    Q: JobQueue,
    C: Clock,
    A: ActivityApi,
{
    let mut done = Vec::new();
    let mut active = feeds;
    let mut first = true;
    while !active.is_empty() {
        if !(first && phase == Phase::Live) && ctx.time_up() {
            for mut f in active {
                if phase == Phase::Live || f.reconcile_pending(ctx) {
                    f.report.stopped_early = true;
                }
                done.push(f);
            }
            break;
        }
        first = false;
        let round: Vec<FeedRun<A>> = futures_util::stream::iter(active)
            .map(|mut f| async move {
                match phase {
                    Phase::Live => f.live_round(ctx).await,
                    Phase::Reconcile => f.reconcile_round(ctx).await,
                }
                f
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let (more, finished): (Vec<_>, Vec<_>) = round.into_iter().partition(|f| f.backlog);
        done.extend(finished);
        active = more;
    }
    done
}

/// An idle feed's cursor is saved once it has moved this far (see `FeedRun::save_needed`).
const IDLE_SAVE_EVERY: Duration = Duration::minutes(30);

/// How a unit of listing work ended.
enum Progress {
    /// Everything listed was handed on.
    Complete,
    /// The deadline came first; what was handed on is saved.
    Stopped,
}

/// One feed's state through a run.
struct FeedRun<A> {
    tenant: Arc<Tenant>,
    api: Arc<A>,
    ct: ContentType,
    budget: Arc<Budget>,
    loaded: bool,
    cursor: Option<Versioned<Cursor>>,
    /// The cursor value to save (differs from `cursor` until saved).
    pending: Option<Cursor>,
    /// More work remains for another round.
    backlog: bool,
    /// Where the next live window starts in this run (after the first round).
    live_from: Option<DateTime<Utc>>,
    /// Listed-blob summaries read this run, by hour (epoch seconds).
    seen: HashMap<i64, HashSet<u64>>,
    report: FeedReport,
}

impl<A: ActivityApi> FeedRun<A> {
    fn new(tenant: Arc<Tenant>, api: Arc<A>, ct: ContentType, budget: Arc<Budget>) -> Self {
        let report = FeedReport::new(tenant.id.to_string(), ct);
        FeedRun {
            tenant,
            api,
            ct,
            budget,
            loaded: false,
            cursor: None,
            pending: None,
            backlog: false,
            live_from: None,
            seen: HashMap::new(),
            report,
        }
    }

    /// Microsoft's "now": our clock corrected by the skew its `Date` headers show (the last
    /// one measured when this process has not talked to Microsoft yet).
    fn now<C: Clock>(&self, clock: &C) -> DateTime<Utc> {
        let ours = clock.now();
        let skew = skew_against(self.api.as_ref(), ours)
            .unwrap_or_else(|| Duration::milliseconds(self.current().map_or(0, |c| c.skew_ms)));
        ours + skew
    }

    fn current(&self) -> Option<&Cursor> {
        self.pending
            .as_ref()
            .or(self.cursor.as_ref().map(|c| &c.value))
    }

    fn fail(&mut self, e: impl std::fmt::Display) {
        tracing::error!(tenant = %self.tenant.id, content_type = %self.ct, error = %e, "feed failed; other feeds continue");
        self.report.error = Some(e.to_string());
        self.backlog = false;
    }

    async fn load<S: StateStore, Q, C: Clock>(&mut self, ctx: &Ctx<'_, S, Q, C>) -> bool {
        if !self.loaded {
            match ctx.store.load_cursor(&self.tenant.id, self.ct).await {
                Ok(c) => {
                    self.cursor = c;
                    self.loaded = true;
                }
                Err(e) => {
                    self.fail(e);
                    return false;
                }
            }
        }
        true
    }

    /// Saves the pending cursor (conditional on the version read). A conflict means another
    /// lister moved it: its value is taken and this run leaves the feed to it.
    async fn save<S: StateStore, Q, C: Clock>(&mut self, ctx: &Ctx<'_, S, Q, C>) {
        let Some(mut value) = self.pending.take() else {
            return;
        };
        if let Some(skew) = skew_against(self.api.as_ref(), ctx.clock.now()) {
            value.skew_ms = skew.num_milliseconds();
        }
        let expected = self.cursor.as_ref().map(|c| c.version);
        match ctx
            .store
            .save_cursor(&self.tenant.id, self.ct, &value, expected)
            .await
        {
            Ok(version) => {
                self.report.cursor = Some(value.listed_until);
                self.report.reconcile_from = value.reconcile_from;
                self.report.reconciled_at = value.reconciled_at;
                self.cursor = Some(Versioned { value, version });
            }
            Err(StoreError::Conflict { .. }) => {
                tracing::info!(tenant = %self.tenant.id, content_type = %self.ct,
                    "another lister moved this feed's cursor; leaving the feed to it this tick");
                self.backlog = false;
                self.loaded = false;
                let _ = self.load(ctx).await;
            }
            Err(e) => self.fail(e),
        }
    }

    fn set_pending(&mut self, f: impl FnOnce(&mut Cursor)) {
        let mut c = self
            .current()
            .cloned()
            .unwrap_or_else(|| Cursor::at(DateTime::UNIX_EPOCH));
        f(&mut c);
        self.pending = Some(c);
    }

    /// One round of the live tail: up to `windows_per_round` windows.
    async fn live_round<S: StateStore, Q: JobQueue, C: Clock>(&mut self, ctx: &Ctx<'_, S, Q, C>) {
        self.backlog = false;
        if !self.load(ctx).await {
            return;
        }
        let s = ctx.settings;
        let now = self.now(ctx.clock);
        let start = match (self.live_from, self.current()) {
            (Some(from), _) => from,
            (None, None) => now - s.first_run_lookback,
            (None, Some(c)) => c.listed_until - s.relist_band,
        };
        let catching_up = self.live_from.is_some() || now - start > s.relist_band + s.window;
        // Caught up: one listing covers the band and the time since the last tick. Behind:
        // windows of at most `window`, oldest first, a few per round.
        let piece = if catching_up { s.window } else { MAX_WINDOW };
        let mut windows = Window::split(start, now, piece, now);
        let mut extended = false;
        let mut i = 0;
        while i < windows.len() {
            let w = windows[i];
            i += 1;
            if i > s.windows_per_round.max(1) {
                self.live_from = Some(w.start());
                self.backlog = true;
                return;
            }
            if ctx.time_up() {
                self.report.stopped_early = true;
                return;
            }
            match self.list_and_hand_on(ctx, &w, now, false).await {
                Ok(Progress::Complete) => {
                    let first = self.current().is_none();
                    self.set_pending(|c| {
                        if first {
                            c.listed_until = w.end();
                            c.since = Some(start);
                        } else {
                            c.listed_until = c.listed_until.max(w.end());
                        }
                    });
                    self.report.windows += 1;
                    // Catching up: each window's progress is saved as it completes.
                    if catching_up {
                        self.save(ctx).await;
                        if self.report.error.is_some() || !self.loaded {
                            return;
                        }
                    }
                }
                Ok(Progress::Stopped) => {
                    self.report.stopped_early = true;
                    return;
                }
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
            // The answers carry Microsoft's clock: when it is ahead of the estimate this
            // round started from (a stale skew after a cold start), the tail is listed up
            // to it at once rather than a tick later.
            if i == windows.len() && !catching_up && !extended {
                extended = true;
                let fresh = self.now(ctx.clock);
                if fresh - w.end() > Duration::minutes(1)
                    && let Ok(more) = Window::new(w.end(), fresh, fresh)
                {
                    windows.push(more);
                }
            }
        }
    }

    /// True when a reconciliation pass is under way or due.
    fn reconcile_pending<Q, S, C: Clock>(&self, ctx: &Ctx<'_, S, Q, C>) -> bool {
        let Some(every) = ctx.settings.reconcile_every else {
            return false;
        };
        let Some(c) = self.current() else {
            return false;
        };
        c.reconcile_from.is_some()
            || c.reconciled_at
                .is_none_or(|t| self.now(ctx.clock) - t >= every)
    }

    /// One round of the reconciliation pass: up to `windows_per_round` windows of at most
    /// `reconcile_window`, from the oldest time Microsoft still serves up to where the live
    /// tail's band begins.
    async fn reconcile_round<S: StateStore, Q: JobQueue, C: Clock>(
        &mut self,
        ctx: &Ctx<'_, S, Q, C>,
    ) {
        self.backlog = false;
        if !self.reconcile_pending(ctx) {
            return;
        }
        let s = ctx.settings;
        let now = self.now(ctx.clock);
        let Some(c) = self.current().cloned() else {
            return;
        };
        // Inside the 7 days (with a margin for the time a pass takes to reach its window), and
        // not before the feed's first listing.
        let oldest = (now - MAX_LOOKBACK + Duration::minutes(5))
            .max(c.since.unwrap_or(DateTime::UNIX_EPOCH));
        let (mut from, started) = match (c.reconcile_from, c.reconcile_started) {
            (Some(f), Some(st)) => (f.max(oldest), st),
            _ => (oldest, now),
        };
        let end = c.listed_until - s.relist_band;
        for _ in 0..s.windows_per_round.max(1) {
            if from >= end {
                self.set_pending(|c| {
                    c.reconcile_from = None;
                    c.reconcile_started = None;
                    c.reconciled_at = Some(started);
                });
                tracing::info!(tenant = %self.tenant.id, content_type = %self.ct,
                    started = %started.to_rfc3339(), "reconciliation pass complete");
                self.save(ctx).await;
                return;
            }
            if ctx.time_up() {
                self.report.stopped_early = true;
                break;
            }
            let w_end = (from + s.reconcile_window).min(end);
            let Ok(w) = Window::new(from, w_end, now) else {
                // Below the 7-day limit after all (a slow pass): skip to what is listable.
                from = from.max(oldest) + Duration::seconds(1);
                continue;
            };
            match self.list_and_hand_on(ctx, &w, now, true).await {
                Ok(Progress::Complete) => {
                    from = w.end();
                    self.report.reconciled_windows += 1;
                }
                Ok(Progress::Stopped) => {
                    self.report.stopped_early = true;
                    break;
                }
                Err(e) => {
                    self.fail(e);
                    break;
                }
            }
        }
        // The position is saved with the cursor at the end of the run (a crash re-lists a few
        // windows, which costs listings, never a blob).
        self.set_pending(|c| {
            c.reconcile_from = Some(from);
            c.reconcile_started = Some(started);
        });
        self.backlog = self.report.error.is_none() && !self.report.stopped_early && self.loaded;
    }

    /// False when the only change to save is an idle feed's cursor moving less than
    /// [`IDLE_SAVE_EVERY`]: the next listing starts from the saved cursor minus the band
    /// anyway, so skipping the write loses nothing and saves most of an idle tenant's writes.
    fn save_needed(&self) -> bool {
        let (Some(pending), Some(saved)) = (self.pending.as_ref(), self.cursor.as_ref()) else {
            return self.pending.is_some();
        };
        let saved = &saved.value;
        let only_moved = Cursor {
            listed_until: saved.listed_until,
            skew_ms: saved.skew_ms,
            ..pending.clone()
        } == *saved;
        !(only_moved
            && self.report.enqueued + self.report.redriven + self.report.refused == 0
            && pending.listed_until - saved.listed_until < IDLE_SAVE_EVERY)
    }

    /// Lists one window and hands its blobs on.
    async fn list_and_hand_on<S: StateStore, Q: JobQueue, C: Clock>(
        &mut self,
        ctx: &Ctx<'_, S, Q, C>,
        w: &Window,
        now: DateTime<Utc>,
        reconciling: bool,
    ) -> Result<Progress, String> {
        if !self.budget.acquire(ctx.deadline).await {
            return Ok(Progress::Stopped);
        }
        let blobs = match self.api.list_content(self.ct, w).await {
            Ok(b) => b,
            Err(e) if e.class() == ErrorClass::Resubscribe => {
                tracing::warn!(tenant = %self.tenant.id, content_type = %self.ct, error = %e, "subscription missing or disabled: starting it");
                self.api
                    .start_subscription(self.ct)
                    .await
                    .map_err(|e| e.to_string())?;
                self.api
                    .list_content(self.ct, w)
                    .await
                    .map_err(|e| e.to_string())?
            }
            Err(e) => return Err(e.to_string()),
        };
        self.report.listed += blobs.len() as u64;
        self.hand_on(ctx, blobs, now, reconciling).await
    }

    /// Hands listed blobs on: the ones the feed's summary knows cost nothing; the others are
    /// claimed, enqueued and recorded in the summary, a chunk at a time.
    async fn hand_on<S: StateStore, Q: JobQueue, C>(
        &mut self,
        ctx: &Ctx<'_, S, Q, C>,
        blobs: Vec<ContentBlob>,
        now: DateTime<Utc>,
        reconciling: bool,
    ) -> Result<Progress, String> {
        let mut by_hour: BTreeMap<i64, Vec<ContentBlob>> = BTreeMap::new();
        for b in blobs {
            by_hour
                .entry(seen_hour(b.content_created).timestamp())
                .or_default()
                .push(b);
        }
        for (hour, group) in by_hour {
            let hour_t = DateTime::from_timestamp(hour, 0).unwrap_or(now);
            if !self.seen.contains_key(&hour) {
                let set = ctx
                    .store
                    .seen(&self.tenant.id, self.ct, hour_t)
                    .await
                    .map_err(|e| e.to_string())?;
                self.seen.insert(hour, set);
            }
            let known = self.seen.get(&hour);
            let listed = group.len();
            let unknown: Vec<ContentBlob> = group
                .into_iter()
                .filter(|b| !known.is_some_and(|k| k.contains(&seen_digest(&b.content_id))))
                .collect();
            self.report.known += (listed - unknown.len()) as u64;
            for chunk in unknown.chunks(ctx.settings.chunk.max(1)) {
                if ctx.time_up() {
                    return Ok(Progress::Stopped);
                }
                let added = self.hand_on_chunk(ctx, chunk, now, reconciling).await?;
                ctx.store
                    .add_seen(&self.tenant.id, self.ct, hour_t, &added)
                    .await
                    .map_err(|e| e.to_string())?;
                self.seen.entry(hour).or_default().extend(added);
            }
        }
        Ok(Progress::Complete)
    }

    /// Claims, enqueues and settles one chunk; returns the digests to add to the summary
    /// (blobs handed on or settled; fresh claims of another lister are left out).
    async fn hand_on_chunk<S: StateStore, Q: JobQueue, C>(
        &mut self,
        ctx: &Ctx<'_, S, Q, C>,
        chunk: &[ContentBlob],
        now: DateTime<Utc>,
        reconciling: bool,
    ) -> Result<Vec<u64>, String> {
        let tenant = &self.tenant.id;
        let claims: Vec<Result<Claim, StoreError>> = futures_util::stream::iter(chunk)
            .map(|b| ctx.store.claim_blob(tenant, b, now))
            .buffered(ctx.settings.claim_concurrency.max(1))
            .collect()
            .await;
        let mut jobs: Vec<FetchJob> = Vec::new();
        let mut added: Vec<u64> = Vec::new();
        for (b, claim) in chunk.iter().zip(claims) {
            match claim.map_err(|e| e.to_string())? {
                Claim::New => {
                    self.report.enqueued += 1;
                    if reconciling {
                        self.report.late_found += 1;
                    }
                    let late = (now - b.content_created).num_seconds();
                    self.report.max_lateness_secs =
                        Some(self.report.max_lateness_secs.map_or(late, |m| m.max(late)));
                    jobs.push(FetchJob::new(tenant.clone(), b, now));
                }
                Claim::Existing(e) => match e.state {
                    BlobState::Pending | BlobState::Enqueued
                        if now - e.updated_at >= ctx.settings.claim_grace =>
                    {
                        self.report.redriven += 1;
                        jobs.push(FetchJob::new(tenant.clone(), b, now));
                    }
                    BlobState::Pending | BlobState::Enqueued => self.report.in_flight += 1,
                    BlobState::Done | BlobState::Expired | BlobState::Failed => {
                        self.report.known += 1;
                        added.push(seen_digest(&b.content_id));
                    }
                },
            }
        }
        if jobs.is_empty() {
            return Ok(added);
        }
        let refused: Vec<(String, String)> = match ctx.queue.enqueue(&jobs).await {
            Ok(outcome) => outcome.failed,
            Err(e) => jobs
                .iter()
                .map(|j| (j.content_id.clone(), e.to_string()))
                .collect(),
        };
        let refused: HashMap<String, String> = refused.into_iter().collect();
        for job in &jobs {
            if let Some(reason) = refused.get(&job.content_id) {
                // A refused job becomes a failed entry the sweep retries: it never holds the
                // cursor back, and it is never forgotten.
                let entry = LedgerEntry {
                    next_attempt_at: Some(now + retry_backoff(0)),
                    listed_at: Some(now),
                    ..LedgerEntry::new(BlobState::Failed, now)
                        .because(format!("the queue refused the fetch job: {reason}"))
                };
                match ctx.store.set_blob_state(tenant, &job.blob(), &entry).await {
                    Ok(_) => {
                        self.report.refused += 1;
                        added.push(seen_digest(&job.content_id));
                    }
                    Err(e) => {
                        // Left pending: the next listing of this window re-drives it.
                        tracing::warn!(tenant = %tenant, content_id = %job.content_id, error = %e,
                            "a refused job could not be recorded as failed; the next listing re-drives it");
                    }
                }
            } else {
                added.push(seen_digest(&job.content_id));
            }
        }
        if !refused.is_empty() {
            self.report.enqueued = self.report.enqueued.saturating_sub(refused.len() as u64);
            tracing::warn!(tenant = %tenant, content_type = %self.ct, refused = refused.len(),
                "the queue refused jobs; they are retried by the sweep");
        }
        Ok(added)
    }

    fn log(&self) {
        let r = &self.report;
        tracing::info!(
            tenant = %r.tenant, content_type = %r.content_type, windows = r.windows, listed = r.listed,
            enqueued = r.enqueued, redriven = r.redriven, known = r.known, in_flight = r.in_flight,
            late_found = r.late_found, reconciled_windows = r.reconciled_windows,
            stopped_early = r.stopped_early,
            cursor = %r.cursor.map(|c| c.to_rfc3339()).unwrap_or_default(), "feed listed"
        );
    }
}

/// Lists `[since, until)` of the given content types of one tenant in windows of at most
/// `settings.window` and hands new blobs on exactly like a tick does (the ledger and the
/// summaries make it safe to overlap anything). The feeds' cursors are not moved. Used by
/// `o365-collector backfill`.
///
/// # Errors
/// A message when the range is outside Microsoft's 7 days.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, every argument distinct"
)]
pub async fn backfill<S, Q, A, C>(
    store: &S,
    queue: &Q,
    api: Arc<A>,
    clock: &C,
    settings: &ListerSettings,
    tenant: &Tenant,
    content_types: &[ContentType],
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    deadline: Instant,
) -> Result<Vec<FeedReport>, String>
where
    S: StateStore,
    Q: JobQueue,
    A: ActivityApi,
    C: Clock,
{
    let ctx = Ctx {
        store,
        queue,
        clock,
        settings,
        deadline,
    };
    let ours = clock.now();
    let now = ours + skew_against(api.as_ref(), ours).unwrap_or_default();
    let oldest = now - MAX_LOOKBACK;
    if since < oldest {
        return Err(format!(
            "{} is more than 7 days (less a 10-minute margin) back: Microsoft keeps content 7 days; start at {} or later",
            since.to_rfc3339(),
            oldest.to_rfc3339()
        ));
    }
    let until = until.unwrap_or(now).min(now);
    let budget = Arc::new(Budget::new(settings.requests_per_minute));
    let tenant = Arc::new(tenant.clone());
    let mut out = Vec::new();
    for &ct in content_types {
        let mut feed = FeedRun::new(tenant.clone(), api.clone(), ct, budget.clone());
        for w in Window::split(since, until, settings.window, now) {
            if ctx.time_up() {
                feed.report.stopped_early = true;
                break;
            }
            match feed.list_and_hand_on(&ctx, &w, now, true).await {
                Ok(Progress::Complete) => feed.report.windows += 1,
                Ok(Progress::Stopped) => {
                    feed.report.stopped_early = true;
                    break;
                }
                Err(e) => {
                    feed.fail(e);
                    break;
                }
            }
        }
        feed.log();
        out.push(feed.report);
    }
    Ok(out)
}

/// What the dead-letter sweep did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct DeadLetterReport {
    /// Jobs SQS moved without a reason, now failed entries the sweep retries.
    pub recovered: u64,
    /// Of those, blobs already done (a duplicate delivery): nothing was missing.
    pub already_done: u64,
    /// Why the dead-letter sweep failed.
    pub error: Option<String>,
}

/// Finds the jobs SQS moved to the dead-letter queue by itself — the fetcher never answered
/// for them (killed: out of memory, a crash) — and gives each a reason and a ledger entry
/// the sweep retries, so no blob is left `enqueued` forever. Jobs the fetcher dead-lettered
/// (with a reason) are left as they are.
pub async fn dead_letter_sweep<S, I, C>(
    store: &S,
    inbox: &I,
    clock: &C,
    max: usize,
) -> DeadLetterReport
where
    S: StateStore,
    I: DeadLetterInbox,
    C: Clock,
{
    let mut report = DeadLetterReport::default();
    let letters = match inbox.receive(max).await {
        Ok(l) => l,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    for letter in letters.into_iter().filter(|l| l.reason.is_none()) {
        let now = clock.now();
        let reason = match FetchJob::parse(&letter.body) {
            Err(e) => format!("moved here by SQS and not a valid job ({e})"),
            Ok(job) => {
                let previous = store
                    .blob_entry(&job.tenant_id, &job.content_id, now)
                    .await
                    .ok()
                    .flatten();
                if previous.as_ref().is_some_and(|e| e.state.is_terminal()) {
                    report.already_done += 1;
                    "moved here by SQS after the blob was done (a duplicate delivery): nothing is missing; delete it".to_owned()
                } else {
                    let attempts = previous.as_ref().map_or(0, |e| e.attempts);
                    let reason = "the fetcher never answered for this job before SQS's receive count ran out (killed: out of memory, a crash or the function timeout); the ledger retries it — if this repeats, give the fetcher more memory".to_owned();
                    let entry = LedgerEntry {
                        attempts,
                        listed_at: previous.as_ref().and_then(|e| e.listed_at),
                        next_attempt_at: Some(now + retry_backoff(attempts)),
                        ..LedgerEntry::new(BlobState::Failed, now).because(reason.clone())
                    };
                    if let Err(e) = store
                        .set_blob_state(&job.tenant_id, &job.blob(), &entry)
                        .await
                    {
                        report.error = Some(e.to_string());
                        continue;
                    }
                    report.recovered += 1;
                    tracing::error!(tenant = %job.tenant_id, content_id = %job.content_id,
                        "a fetch job died with its fetcher; the ledger retries it");
                    reason
                }
            }
        };
        if let Err(e) = inbox.annotate(&letter, &reason).await {
            report.error = Some(e.to_string());
        }
    }
    report
}

/// The sweep of one tenant: failed entries whose retry is due are enqueued again; those
/// Microsoft has expired are marked expired and reported as data lost upstream.
async fn sweep<S: StateStore, Q: JobQueue, C: Clock, A: ActivityApi>(
    ctx: &Ctx<'_, S, Q, C>,
    tenant: &Tenant,
    api: &A,
) -> SweepReport {
    let mut report = SweepReport {
        tenant: tenant.id.to_string(),
        ..SweepReport::default()
    };
    let ours = ctx.clock.now();
    let now = ours + skew_against(api, ours).unwrap_or_default();
    // Every retryable failed entry (a handful normally): the oldest gives the alarm its age.
    let open = match ctx
        .store
        .due_entries(&tenant.id, now, ctx.settings.sweep_limit)
        .await
    {
        Ok(o) => o,
        Err(e) => {
            report.error = Some(e.to_string());
            tracing::error!(tenant = %tenant.id, error = %e, "sweep failed; it runs again next tick");
            return report;
        }
    };
    report.open_failed = open.len() as u64;
    report.oldest_open_secs = open
        .iter()
        .map(|i| (now - i.entry.listed_at.unwrap_or(i.blob.content_created)).num_seconds())
        .max();
    let due: Vec<LedgerItem> = open.into_iter().filter(|i| i.entry.is_due(now)).collect();
    if let Err(e) = redrive_items(ctx.store, ctx.queue, &tenant.id, &due, now, &mut report).await {
        report.error = Some(e);
    }
    report
}

/// Enqueues ledger items again (failed ones the sweep found due, or unfinished ones an
/// operator or a local run re-drives); marks those Microsoft has expired.
///
/// # Errors
/// A message when the store or the queue is unreachable (what was done stays done).
pub async fn redrive_items<S: StateStore, Q: JobQueue>(
    store: &S,
    queue: &Q,
    tenant: &crate::model::TenantId,
    items: &[LedgerItem],
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<(), String> {
    let mut jobs = Vec::new();
    for item in items {
        if now >= item.blob.content_expiration {
            let reason = format!(
                "Microsoft expired the blob at {} before it could be fetched{}",
                item.blob.content_expiration.to_rfc3339(),
                item.entry
                    .reason
                    .as_deref()
                    .map(|r| format!(
                        " (after {} retries; last failure: {r})",
                        item.entry.attempts
                    ))
                    .unwrap_or_default()
            );
            let entry = LedgerEntry {
                attempts: item.entry.attempts,
                listed_at: item.entry.listed_at,
                ..LedgerEntry::new(BlobState::Expired, now).because(reason.clone())
            };
            if store
                .set_blob_state(tenant, &item.blob, &entry)
                .await
                .map_err(|e| e.to_string())?
            {
                report.expired += 1;
                tracing::error!(tenant = %tenant, content_type = %item.blob.content_type,
                    content_id = %item.blob.content_id, reason = %reason,
                    "DATA LOST UPSTREAM: the blob expired at Microsoft before it could be fetched");
            }
            continue;
        }
        jobs.push(FetchJob::new(tenant.clone(), &item.blob, now));
    }
    if jobs.is_empty() {
        return Ok(());
    }
    let outcome = queue.enqueue(&jobs).await.map_err(|e| e.to_string())?;
    let refused: HashMap<&str, &str> = outcome
        .failed
        .iter()
        .map(|(id, r)| (id.as_str(), r.as_str()))
        .collect();
    for item in items.iter().filter(|i| now < i.blob.content_expiration) {
        let attempts = item.entry.attempts.saturating_add(1);
        let entry = match refused.get(item.blob.content_id.as_str()) {
            None => LedgerEntry {
                attempts,
                listed_at: item.entry.listed_at,
                reason: item.entry.reason.clone(),
                ..LedgerEntry::new(BlobState::Enqueued, now)
            },
            Some(r) => LedgerEntry {
                attempts,
                listed_at: item.entry.listed_at,
                next_attempt_at: Some(now + retry_backoff(attempts)),
                ..LedgerEntry::new(BlobState::Failed, now)
                    .because(format!("the queue refused the fetch job: {r}"))
            },
        };
        if store
            .set_blob_state(tenant, &item.blob, &entry)
            .await
            .map_err(|e| e.to_string())?
            && entry.state == BlobState::Enqueued
        {
            report.redriven += 1;
        }
    }
    tracing::info!(tenant = %tenant, redriven = report.redriven, refused = refused.len(),
        "ledger entries re-driven");
    Ok(())
}

/// Re-drives every unfinished entry of a tenant's ledger (pending, enqueued, or failed and
/// retryable) now, whatever its age: a local run's in-process queue died with its process,
/// or an operator asked (`o365-collector redrive`). `states` limits which.
///
/// # Errors
/// A message when the store or the queue is unreachable.
pub async fn redrive_unfinished<S: StateStore, Q: JobQueue>(
    store: &S,
    queue: &Q,
    tenant: &crate::model::TenantId,
    states: &[BlobState],
    now: DateTime<Utc>,
) -> Result<SweepReport, String> {
    let mut report = SweepReport {
        tenant: tenant.to_string(),
        ..SweepReport::default()
    };
    let items: Vec<LedgerItem> = store
        .ledger(tenant, now)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|i| states.contains(&i.entry.state) && i.entry.is_open())
        .collect();
    report.open_failed = items
        .iter()
        .filter(|i| i.entry.state == BlobState::Failed)
        .count() as u64;
    for chunk in items.chunks(500) {
        redrive_items(store, queue, tenant, chunk, now, &mut report).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::app::testkit::{FixedClock, OneApi, StaticApi, TENANT, tenant};
    use crate::model::TenantId;
    use crate::queue::MemoryQueue;
    use crate::store::MemoryStore;

    fn far() -> Instant {
        Instant::now() + StdDuration::from_secs(600)
    }

    fn tid() -> TenantId {
        TenantId::parse(TENANT).unwrap()
    }

    async fn setup() -> (MemoryStore, MemoryQueue, Arc<StaticApi>, FixedClock) {
        let store = MemoryStore::default();
        store
            .put_tenant(&tenant(vec![ContentType::Exchange]))
            .await
            .unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        (
            store,
            MemoryQueue::new(),
            Arc::new(StaticApi::default()),
            FixedClock::at(now),
        )
    }

    async fn tick(
        store: &MemoryStore,
        queue: &MemoryQueue,
        api: &Arc<StaticApi>,
        clock: &FixedClock,
        settings: &ListerSettings,
    ) -> ListerReport {
        *api.now.lock().unwrap() = Some(clock.now());
        run(store, queue, &OneApi(api.clone()), clock, settings, far())
            .await
            .unwrap()
    }

    fn ids(queue: &MemoryQueue) -> Vec<String> {
        let mut v: Vec<String> = queue.drain().into_iter().map(|j| j.content_id).collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn each_blob_is_enqueued_once_however_often_it_is_listed_and_relisting_costs_no_write() {
        let (store, queue, api, clock) = setup().await;
        let now = clock.now();
        api.add(
            ContentType::Exchange,
            "b1",
            now - Duration::hours(3),
            vec![],
        );
        api.add(
            ContentType::Exchange,
            "b2",
            now - Duration::minutes(10),
            vec![],
        );
        let settings = ListerSettings::default();
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert_eq!(r.jobs(), 2);
        // The ledger is written once per blob; the re-list knows b2 from the summary.
        let before = store.ledger(&tid(), now).await.unwrap();
        clock.set(now + Duration::minutes(5));
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert_eq!(
            r.jobs(),
            0,
            "the re-list band saw b2 again but the summary knew it"
        );
        assert_eq!(r.feeds[0].known, 1);
        assert_eq!(
            store.ledger(&tid(), now).await.unwrap(),
            before,
            "no ledger write"
        );
        assert_eq!(queue.len(), 2);
    }

    /// Finding 12: a job the queue refuses never pins the cursor; it becomes a failed entry
    /// that the sweep enqueues again.
    #[tokio::test]
    async fn a_refused_job_does_not_hold_the_cursor_and_the_sweep_retries_it() {
        let (store, queue, api, clock) = setup().await;
        let t0 = clock.now();
        api.add(ContentType::Exchange, "b1", t0 - Duration::hours(2), vec![]);
        api.add(ContentType::Exchange, "b2", t0 - Duration::hours(1), vec![]);
        queue.fail_next(1);
        let settings = ListerSettings::default();
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert!(r.feeds[0].error.is_none(), "{:?}", r.feeds[0].error);
        assert_eq!(r.feeds[0].refused, 1);
        assert_eq!(queue.len(), 1);
        let cursor = store
            .load_cursor(&tid(), ContentType::Exchange)
            .await
            .unwrap();
        assert_eq!(
            cursor.unwrap().value.listed_until,
            t0,
            "the cursor moved on"
        );
        let failed: Vec<LedgerItem> = store
            .ledger(&tid(), t0)
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.entry.state == BlobState::Failed)
            .collect();
        assert_eq!(failed.len(), 1);
        assert!(
            failed[0]
                .entry
                .reason
                .as_deref()
                .unwrap()
                .contains("queue refused")
        );
        // Not due yet: nothing re-driven; due after the back-off: enqueued again.
        clock.set(t0 + Duration::minutes(1));
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert_eq!(r.sweeps[0].redriven, 0);
        assert_eq!(r.sweeps[0].open_failed, 1);
        clock.set(t0 + Duration::minutes(6));
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert_eq!(r.sweeps[0].redriven, 1);
        assert_eq!(ids(&queue), ["b1", "b2"]);
        assert_eq!(
            store
                .blob_entry(&tid(), &failed[0].blob.content_id, clock.now())
                .await
                .unwrap()
                .unwrap()
                .attempts,
            1
        );
    }

    /// Findings 3 and 14: content published late — up to 2 hours within one tick of becoming
    /// listable (the band), up to 6 days within one reconciliation pass.
    #[tokio::test]
    async fn late_content_is_found_by_the_band_within_a_tick_and_by_reconciliation_up_to_six_days()
    {
        let (store, queue, api, clock) = setup().await;
        let t0 = clock.now();
        let settings = ListerSettings {
            first_run_lookback: Duration::hours(167),
            ..ListerSettings::default()
        };
        tick(&store, &queue, &api, &clock, &settings).await;
        // Listable only from t0 + 10 min: created 2 h, 30 h and 6 days before.
        let visible = t0 + Duration::minutes(10);
        for (id, age) in [
            ("late-2h", Duration::hours(2)),
            ("late-30h", Duration::hours(30)),
            ("late-6d", Duration::days(6)),
        ] {
            api.add(ContentType::Exchange, id, visible - age, vec![]);
            api.listable_from.lock().unwrap().insert(id.into(), visible);
        }
        clock.set(visible + Duration::minutes(1));
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert_eq!(
            ids(&queue),
            ["late-2h"],
            "the band catches 2 hours late at the next tick"
        );
        assert_eq!(r.feeds[0].late_found, 0);
        // The next reconciliation pass (the first finished at t0) finds the rest.
        clock.set(t0 + Duration::hours(6) + Duration::minutes(1));
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert_eq!(ids(&queue), ["late-30h", "late-6d"]);
        assert_eq!(r.feeds[0].late_found, 2);
        assert!(
            r.feeds[0].reconciled_windows > 150,
            "{}",
            r.feeds[0].reconciled_windows
        );
        assert!(r.feeds[0].reconciled_at.is_some(), "the pass completed");
        let lateness = r.feeds[0].max_lateness_secs.unwrap();
        assert!(lateness > 6 * 86_400 - 3600, "{lateness}");
        for (_, s, e) in api.listings.lock().unwrap().iter() {
            assert!(*e - *s < Duration::hours(24));
        }
    }

    /// Finding 14: "now" is Microsoft's clock. Our clock is 20 minutes slow: a blob Microsoft
    /// published 5 minutes ago is in the window all the same.
    #[tokio::test]
    async fn windows_end_at_microsofts_now_not_ours() {
        let (store, queue, api, clock) = setup().await;
        let ours = clock.now();
        let theirs = ours + Duration::minutes(20);
        *api.skew.lock().unwrap() = Some(Duration::minutes(20));
        api.add(
            ContentType::Exchange,
            "fresh",
            theirs - Duration::minutes(5),
            vec![],
        );
        let r = tick(&store, &queue, &api, &clock, &ListerSettings::default()).await;
        assert_eq!(ids(&queue), ["fresh"]);
        assert_eq!(r.feeds[0].cursor, Some(theirs));
        let c = store
            .load_cursor(&tid(), ContentType::Exchange)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            c.value.skew_ms,
            20 * 60 * 1000,
            "the skew is kept for cold starts"
        );
    }

    /// Finding 4: a claim whose run died before the enqueue was recorded is re-driven by the
    /// next listing of its window once the grace period has passed — by the band, or by the
    /// reconciliation pass when it is older than the band.
    #[tokio::test]
    async fn a_claim_stranded_by_a_dead_run_is_redriven_even_outside_the_band() {
        let (store, queue, api, clock) = setup().await;
        let t0 = clock.now();
        let settings = ListerSettings::default();
        tick(&store, &queue, &api, &clock, &settings).await;
        // Created 5 hours ago, claimed by a run that died right after the claim.
        api.add(
            ContentType::Exchange,
            "stranded",
            t0 - Duration::hours(5),
            vec![],
        );
        let blob = api.blobs.lock().unwrap()[0].0.clone();
        assert_eq!(
            store.claim_blob(&tid(), &blob, t0).await.unwrap(),
            Claim::New
        );
        clock.set(t0 + Duration::minutes(5));
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert!(queue.is_empty(), "outside the band: not listed live");
        assert_eq!(r.feeds[0].redriven, 0);
        clock.set(t0 + Duration::hours(6) + Duration::minutes(1));
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert_eq!(r.feeds[0].redriven, 1);
        assert_eq!(ids(&queue), ["stranded"]);
    }

    /// Finding 11: two listers on one table enqueue every blob once: a fresh claim of the
    /// other is left to it.
    #[tokio::test]
    async fn two_listers_at_once_enqueue_each_blob_once() {
        let (store, queue, api, clock) = setup().await;
        let t0 = clock.now();
        for i in 0..3000 {
            api.add(
                ContentType::Exchange,
                &format!("b{i:05}"),
                t0 - Duration::seconds(i * 20),
                vec![],
            );
        }
        *api.now.lock().unwrap() = Some(t0);
        let settings = ListerSettings {
            chunk: 50,
            ..ListerSettings::default()
        };
        let provider = OneApi(api.clone());
        let (a, b) = tokio::join!(
            run(&store, &queue, &provider, &clock, &settings, far()),
            run(&store, &queue, &provider, &clock, &settings, far())
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let jobs = ids(&queue);
        let unique: std::collections::BTreeSet<&String> = jobs.iter().collect();
        assert_eq!(jobs.len(), unique.len(), "a blob was enqueued twice");
        let listed_live: usize = jobs.len();
        assert_eq!(a.jobs() + b.jobs(), listed_live as u64);
        // Both runs finished their live tails; the second tick of either collects nothing new.
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert_eq!(r.jobs(), 0);
    }

    /// Finding 1: a busy feed and a catch-up never stall a tick: with a deadline far too short
    /// for the backlog, every feed's live tail moves every tick and the backlog drains.
    #[tokio::test]
    async fn a_backlog_larger_than_a_tick_drains_while_every_live_tail_moves() {
        let (store, queue, api, clock) = setup().await;
        let busy = tenant(vec![ContentType::Exchange, ContentType::General]);
        store.put_tenant(&busy).await.unwrap();
        let t0 = clock.now();
        // 100,800 blobs in the last 24 h of one content type (one every 0.86 s); one blob in
        // the other feed per hour.
        let n = 100_800i64;
        for i in 0..n {
            api.add(
                ContentType::Exchange,
                &format!("busy{i:06}"),
                t0 - Duration::milliseconds(i * 857),
                vec![],
            );
        }
        for h in 0..24 {
            api.add(
                ContentType::General,
                &format!("quiet{h:02}"),
                t0 - Duration::hours(h),
                vec![],
            );
        }
        let settings = ListerSettings {
            stop_margin: StdDuration::from_millis(0),
            reconcile_every: None,
            ..ListerSettings::default()
        };
        let mut total = 0u64;
        let mut ticks = 0;
        let mut now = t0 - Duration::minutes(5);
        let mut last: HashMap<ContentType, DateTime<Utc>> = HashMap::new();
        while total < n as u64 + 24 {
            ticks += 1;
            assert!(
                ticks < 400,
                "the backlog did not drain: {total} of {n} after {ticks} ticks"
            );
            now += Duration::minutes(5);
            clock.set(now);
            *api.now.lock().unwrap() = Some(now);
            let deadline = Instant::now() + StdDuration::from_millis(1000);
            let r = run(
                &store,
                &queue,
                &OneApi(api.clone()),
                &clock,
                &settings,
                deadline,
            )
            .await
            .unwrap();
            for f in &r.feeds {
                assert!(f.error.is_none(), "{:?}", f.error);
                let c = f.cursor.expect("every feed's cursor is saved every tick");
                if let Some(prev) = last.get(&f.content_type) {
                    assert!(c > *prev, "{} did not move in tick {ticks}", f.content_type);
                }
                last.insert(f.content_type, c);
            }
            total += r.jobs();
        }
        let jobs = ids(&queue);
        assert_eq!(jobs.len() as u64, n as u64 + 24, "every blob exactly once");
        let unique: std::collections::BTreeSet<&String> = jobs.iter().collect();
        assert_eq!(unique.len(), jobs.len());
        assert!(
            ticks > 1,
            "the deadline was long enough for everything: make the test harder"
        );
    }

    #[tokio::test]
    async fn a_failed_entry_microsoft_expired_is_reported_and_not_retried() {
        let (store, queue, api, clock) = setup().await;
        let t0 = clock.now();
        let settings = ListerSettings::default();
        tick(&store, &queue, &api, &clock, &settings).await;
        let blob = ContentBlob {
            content_type: ContentType::Exchange,
            content_id: "old".into(),
            content_uri: "https://manage.office.com/api/v1.0/x/activity/feed/audit/old".into(),
            content_created: t0 - Duration::days(7),
            content_expiration: t0 + Duration::minutes(3),
        };
        let entry = LedgerEntry {
            next_attempt_at: Some(t0 + Duration::minutes(1)),
            attempts: 4,
            ..LedgerEntry::new(BlobState::Failed, t0).because("HTTP 500")
        };
        store.set_blob_state(&tid(), &blob, &entry).await.unwrap();
        clock.set(t0 + Duration::minutes(5));
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert_eq!(r.sweeps[0].expired, 1);
        assert_eq!(r.sweeps[0].redriven, 0);
        assert!(queue.is_empty());
        let e = store
            .blob_entry(&tid(), "old", clock.now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.state, BlobState::Expired);
        let reason = e.reason.unwrap();
        assert!(
            reason.contains("HTTP 500") && reason.contains("4 retries"),
            "{reason}"
        );
        clock.set(t0 + Duration::hours(1));
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert_eq!(
            r.sweeps[0].expired + r.sweeps[0].redriven,
            0,
            "reported once"
        );
    }

    #[tokio::test]
    async fn windows_stay_under_24h_and_inside_7_days_and_the_cursor_never_passes_now() {
        let (store, queue, api, clock) = setup().await;
        let settings = ListerSettings {
            first_run_lookback: Duration::hours(167),
            ..ListerSettings::default()
        };
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert_eq!(r.feeds[0].windows, 167, "167 h in windows of an hour");
        let now = clock.now();
        for (_, s, e) in api.listings.lock().unwrap().iter() {
            assert!(*e - *s < Duration::hours(24));
            assert!(*s >= now - Duration::days(7));
            assert!(*e <= now);
        }
        assert_eq!(r.feeds[0].cursor, Some(now));
    }

    #[tokio::test]
    async fn the_content_types_setting_limits_the_feeds_listed() {
        let (store, queue, api, clock) = setup().await;
        store
            .put_tenant(&tenant(ContentType::ALL.to_vec()))
            .await
            .unwrap();
        let settings = ListerSettings {
            content_types: Some(vec![ContentType::Exchange, ContentType::DlpAll]),
            ..ListerSettings::default()
        };
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        let listed: Vec<ContentType> = r.feeds.iter().map(|f| f.content_type).collect();
        assert_eq!(listed, [ContentType::Exchange, ContentType::DlpAll]);
    }

    #[tokio::test]
    async fn it_stops_before_the_deadline_and_the_next_tick_resumes() {
        let (store, queue, api, clock) = setup().await;
        let settings = ListerSettings {
            first_run_lookback: Duration::hours(100),
            ..ListerSettings::default()
        };
        // Already inside the stop margin: nothing is listed, nothing is lost.
        let soon = Instant::now() + StdDuration::from_secs(1);
        let r = run(
            &store,
            &queue,
            &OneApi(api.clone()),
            &clock,
            &settings,
            soon,
        )
        .await
        .unwrap();
        assert!(r.feeds[0].stopped_early);
        assert_eq!(r.feeds[0].windows, 0);
        let r = tick(&store, &queue, &api, &clock, &settings).await;
        assert!(!r.feeds[0].stopped_early);
        assert_eq!(r.feeds[0].windows, 100);
    }

    /// A job SQS moved to the dead-letter queue by itself (the fetcher was killed on every
    /// receive) gets a reason and a failed ledger entry that the sweep retries.
    #[tokio::test]
    async fn a_job_sqs_dead_lettered_by_itself_is_recovered_by_the_ledger() {
        let (store, queue, api, clock) = setup().await;
        let t0 = clock.now();
        api.add(
            ContentType::Exchange,
            "killed",
            t0 - Duration::minutes(30),
            vec![],
        );
        tick(&store, &queue, &api, &clock, &ListerSettings::default()).await;
        let job = queue.drain().remove(0);
        queue.move_to_dead_letters(&job.to_json());
        let r = dead_letter_sweep(&store, &queue, &clock, 100).await;
        assert_eq!((r.recovered, r.already_done, r.error), (1, 0, None));
        assert!(queue.moved().is_empty());
        let (_, reason) = queue.dead_letters().remove(0);
        assert!(reason.contains("never answered"), "{reason}");
        clock.set(t0 + Duration::minutes(6));
        let r = tick(&store, &queue, &api, &clock, &ListerSettings::default()).await;
        assert_eq!(r.sweeps[0].redriven, 1);
        assert_eq!(ids(&queue), ["killed"]);
    }
}
