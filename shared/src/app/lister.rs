//! The lister: for every enabled tenant and content type, list the content published since the
//! saved cursor (minus a re-list band), claim each blob in the ledger, enqueue one fetch job per
//! new blob, and only then advance the cursor.
//!
//! Why this order: the cursor is the promise "everything before this is on the queue". A crash
//! after the enqueue and before the cursor save re-lists the same window next time; the ledger
//! turns that into no new jobs. A crash between the claim and the enqueue leaves the blob
//! `pending`; the next listing re-drives pending blobs, so none is stranded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use super::{ApiProvider, Clock};
use crate::api::{ActivityApi, ErrorClass};
use crate::model::{
    BlobState, ContentType, Cursor, FetchJob, LedgerEntry, MAX_WINDOW, Tenant, Window,
};
use crate::queue::JobQueue;
use crate::store::{Claim, StateStore};

/// Knobs of the lister.
#[derive(Debug, Clone)]
pub struct ListerSettings {
    /// Each listing starts this long before the saved cursor (late content).
    pub relist_band: Duration,
    /// Every this often, re-list the last `deep_relist_span` (very late content); `None` = never.
    pub deep_relist_every: Option<Duration>,
    /// How far back a deep re-list goes.
    pub deep_relist_span: Duration,
    /// A new feed's first listing goes this far back (at most 7 days).
    pub first_run_lookback: Duration,
    /// Width of the listing windows (capped below 24 h).
    pub window: Duration,
    /// Feeds listed at once.
    pub concurrency: usize,
    /// Management API requests per minute per tenant (the documented baseline is 2,000).
    pub requests_per_minute: u32,
    /// Stop starting new windows when less than this is left before the deadline.
    pub stop_margin: StdDuration,
    /// Only these content types are listed (of those each tenant has); `None` = all.
    pub content_types: Option<Vec<ContentType>>,
}

impl Default for ListerSettings {
    fn default() -> Self {
        ListerSettings {
            relist_band: Duration::minutes(30),
            deep_relist_every: Some(Duration::hours(1)),
            deep_relist_span: Duration::hours(24),
            first_run_lookback: Duration::hours(24),
            window: MAX_WINDOW,
            concurrency: 8,
            requests_per_minute: 2000,
            stop_margin: StdDuration::from_secs(20),
            content_types: None,
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
    /// Windows listed completely.
    pub windows: u32,
    /// Blobs seen in the listings.
    pub listed: u64,
    /// Jobs enqueued for blobs not seen before.
    pub enqueued: u64,
    /// Jobs enqueued again for blobs left pending by an interrupted run.
    pub redriven: u64,
    /// Blobs already enqueued or done (skipped at no cost).
    pub known: u64,
    /// Listing included the deep re-list.
    pub deep: bool,
    /// The cursor after this run.
    pub cursor: Option<DateTime<Utc>>,
    /// Stopped before the end because the deadline was near (resumes next tick).
    pub stopped_early: bool,
    /// Why this feed failed (others carry on).
    pub error: Option<String>,
}

/// What happened in one run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ListerReport {
    /// One entry per feed.
    pub feeds: Vec<FeedReport>,
    /// Tenants whose client could not be built.
    pub tenant_errors: Vec<String>,
}

impl ListerReport {
    /// Jobs enqueued in all (new and re-driven).
    pub fn jobs(&self) -> u64 {
        self.feeds.iter().map(|f| f.enqueued + f.redriven).sum()
    }

    /// Feeds or tenants that failed.
    pub fn failures(&self) -> usize {
        self.feeds.iter().filter(|f| f.error.is_some()).count() + self.tenant_errors.len()
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

/// One feed to list: tenant, its client, content type, its tenant's request budget.
type Feed<A> = (Tenant, Arc<A>, ContentType, Arc<Budget>);

/// Runs one listing pass over every enabled tenant and content type.
///
/// Failures are per feed: a failing tenant or content type is reported and never blocks the
/// others. Returns when every feed is done or the deadline is near.
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
) -> Result<ListerReport, crate::store::StoreError>
where
    S: StateStore,
    Q: JobQueue,
    P: ApiProvider,
    C: Clock,
{
    let tenants = store.list_tenants().await?;
    let mut report = ListerReport::default();
    let mut feeds: Vec<Feed<P::Api>> = Vec::new();
    for tenant in tenants.into_iter().filter(|t| t.enabled) {
        match apis.api(&tenant).await {
            Ok(api) => {
                let budget = Arc::new(Budget::new(settings.requests_per_minute));
                let allowed = |ct: &ContentType| {
                    settings
                        .content_types
                        .as_ref()
                        .is_none_or(|only| only.contains(ct))
                };
                for ct in tenant.content_types.clone().into_iter().filter(allowed) {
                    feeds.push((tenant.clone(), api.clone(), ct, budget.clone()));
                }
            }
            Err(e) => {
                tracing::error!(tenant = %tenant.id, error = %e, "tenant skipped: client setup failed");
                report.tenant_errors.push(e.to_string());
            }
        }
    }
    let results: Vec<FeedReport> = futures_util::stream::iter(feeds)
        .map(|(tenant, api, ct, budget)| async move {
            FeedRun {
                store,
                queue,
                api: api.as_ref(),
                clock,
                settings,
                deadline,
                tenant: &tenant,
                ct,
                budget: &budget,
            }
            .run()
            .await
        })
        .buffer_unordered(settings.concurrency.max(1))
        .collect()
        .await;
    report.feeds = results;
    report
        .feeds
        .sort_by(|a, b| (&a.tenant, a.content_type).cmp(&(&b.tenant, b.content_type)));
    Ok(report)
}

/// One feed's listing, with everything it needs.
struct FeedRun<'a, S, Q, A, C> {
    store: &'a S,
    queue: &'a Q,
    api: &'a A,
    clock: &'a C,
    settings: &'a ListerSettings,
    deadline: Instant,
    tenant: &'a Tenant,
    ct: ContentType,
    budget: &'a Budget,
}

impl<S, Q, A, C> FeedRun<'_, S, Q, A, C>
where
    S: StateStore,
    Q: JobQueue,
    A: ActivityApi,
    C: Clock,
{
    async fn run(self) -> FeedReport {
        let (tenant, ct) = (self.tenant, self.ct);
        let mut report = FeedReport {
            tenant: tenant.id.to_string(),
            content_type: ct,
            windows: 0,
            listed: 0,
            enqueued: 0,
            redriven: 0,
            known: 0,
            deep: false,
            cursor: None,
            stopped_early: false,
            error: None,
        };
        if let Err(e) = self.list(&mut report).await {
            tracing::error!(tenant = %tenant.id, content_type = %ct, error = %e, "feed failed; other feeds continue");
            report.error = Some(e);
        }
        tracing::info!(
            tenant = %tenant.id, content_type = %ct, windows = report.windows, listed = report.listed,
            enqueued = report.enqueued, redriven = report.redriven, known = report.known,
            deep = report.deep, stopped_early = report.stopped_early,
            cursor = ?report.cursor.map(|c| c.to_rfc3339()), "feed listed"
        );
        report
    }

    async fn list(&self, report: &mut FeedReport) -> Result<(), String> {
        let FeedRun {
            store,
            queue,
            api,
            clock,
            settings,
            deadline,
            tenant,
            ct,
            budget,
        } = *self;
        let now = clock.now();
        let saved = store
            .load_cursor(&tenant.id, ct)
            .await
            .map_err(|e| e.to_string())?;
        let (mut start, mut version, deep_relist_at) = match &saved {
            None => (now - settings.first_run_lookback, None, None),
            Some(c) => (
                c.value.listed_until - settings.relist_band,
                Some(c.version),
                c.value.deep_relist_at,
            ),
        };
        let deep = match (settings.deep_relist_every, &saved) {
            (Some(every), Some(_)) => deep_relist_at.is_none_or(|at| now - at >= every),
            // A first run that looks back at least as far counts as a deep re-list.
            (Some(_), None) => settings.first_run_lookback >= settings.deep_relist_span,
            (None, _) => false,
        };
        if deep {
            start = start.min(now - settings.deep_relist_span);
            report.deep = true;
        }
        let windows = Window::split(start, now, settings.window, now);
        let mut last_end = saved.as_ref().map(|c| c.value.listed_until);
        for w in &windows {
            if Instant::now() + settings.stop_margin >= deadline {
                report.stopped_early = true;
                break;
            }
            if !budget.acquire(deadline).await {
                report.stopped_early = true;
                break;
            }
            let blobs = match api.list_content(ct, w).await {
                Ok(b) => b,
                Err(e) if e.class() == ErrorClass::Resubscribe => {
                    tracing::warn!(tenant = %tenant.id, content_type = %ct, error = %e, "subscription missing or disabled: starting it");
                    api.start_subscription(ct)
                        .await
                        .map_err(|e| e.to_string())?;
                    api.list_content(ct, w).await.map_err(|e| e.to_string())?
                }
                Err(e) => return Err(e.to_string()),
            };
            report.listed += blobs.len() as u64;
            let listed_at = clock.now();
            let mut jobs = Vec::new();
            for blob in &blobs {
                match store
                    .claim_blob(&tenant.id, blob, listed_at)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Claim::New => {
                        report.enqueued += 1;
                        jobs.push(FetchJob::new(tenant.id.clone(), blob, listed_at));
                    }
                    Claim::Existing(entry) if entry.state == BlobState::Pending => {
                        report.redriven += 1;
                        jobs.push(FetchJob::new(tenant.id.clone(), blob, listed_at));
                    }
                    Claim::Existing(_) => report.known += 1,
                }
            }
            let outcome = queue.enqueue(&jobs).await.map_err(|e| e.to_string())?;
            let failed: HashMap<&str, &str> = outcome
                .failed
                .iter()
                .map(|(id, reason)| (id.as_str(), reason.as_str()))
                .collect();
            for job in &jobs {
                if failed.contains_key(job.content_id.as_str()) {
                    continue;
                }
                let entry = LedgerEntry {
                    state: BlobState::Enqueued,
                    updated_at: listed_at,
                    records: None,
                    object_key: None,
                    reason: None,
                };
                store
                    .set_blob_state(&tenant.id, &job.blob(), &entry)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if let Some((id, reason)) = failed.iter().next() {
                // The failed blobs stay pending and are re-driven next time; the cursor stays put.
                report.enqueued -= failed.len().min(report.enqueued as usize) as u64;
                return Err(format!(
                    "{} job(s) could not be enqueued (e.g. {id}: {reason}); the cursor stays at {} and the next run retries",
                    failed.len(),
                    w.start().to_rfc3339()
                ));
            }
            // Everything of this window is durably on the queue: advance the cursor (never back).
            let until = last_end.map_or(w.end(), |l| l.max(w.end()));
            let cursor = Cursor {
                listed_until: until,
                deep_relist_at: if deep { None } else { deep_relist_at },
            };
            version = Some(
                store
                    .save_cursor(&tenant.id, ct, &cursor, version)
                    .await
                    .map_err(|e| e.to_string())?,
            );
            last_end = Some(until);
            report.windows += 1;
            report.cursor = Some(until);
        }
        if deep
            && !report.stopped_early
            && report.windows as usize == windows.len()
            && let (Some(until), Some(v)) = (last_end, version)
        {
            {
                let cursor = Cursor {
                    listed_until: until,
                    deep_relist_at: Some(now),
                };
                store
                    .save_cursor(&tenant.id, ct, &cursor, Some(v))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
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
        Instant::now() + StdDuration::from_secs(60)
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

    #[tokio::test]
    async fn each_blob_is_enqueued_once_however_often_it_is_listed() {
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
        let r = run(
            &store,
            &queue,
            &OneApi(api.clone()),
            &clock,
            &settings,
            far(),
        )
        .await
        .unwrap();
        assert_eq!(r.jobs(), 2);
        clock.set(now + Duration::minutes(5));
        let r = run(
            &store,
            &queue,
            &OneApi(api.clone()),
            &clock,
            &settings,
            far(),
        )
        .await
        .unwrap();
        assert_eq!(
            r.jobs(),
            0,
            "the re-list band saw b2 again but the ledger knew it"
        );
        assert_eq!(r.feeds[0].known, 1);
        assert_eq!(queue.len(), 2);
    }

    #[tokio::test]
    async fn the_cursor_stays_put_when_enqueue_fails_and_the_next_run_redrives() {
        let (store, queue, api, clock) = setup().await;
        let now = clock.now();
        api.add(
            ContentType::Exchange,
            "b1",
            now - Duration::hours(2),
            vec![],
        );
        queue.fail_next(1);
        let settings = ListerSettings::default();
        let r = run(
            &store,
            &queue,
            &OneApi(api.clone()),
            &clock,
            &settings,
            far(),
        )
        .await
        .unwrap();
        assert!(r.feeds[0].error.is_some(), "the failure is reported");
        let id = TenantId::parse(TENANT).unwrap();
        assert!(
            store
                .load_cursor(&id, ContentType::Exchange)
                .await
                .unwrap()
                .is_none(),
            "cursor advanced past a lost job"
        );
        let r = run(
            &store,
            &queue,
            &OneApi(api.clone()),
            &clock,
            &settings,
            far(),
        )
        .await
        .unwrap();
        assert_eq!(r.feeds[0].redriven, 1, "the pending blob is enqueued again");
        assert_eq!(queue.len(), 1);
        assert!(
            store
                .load_cursor(&id, ContentType::Exchange)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_late_blob_inside_the_relist_band_is_caught_and_one_older_by_the_deep_relist() {
        let (store, queue, api, clock) = setup().await;
        let t0 = clock.now();
        let settings = ListerSettings {
            relist_band: Duration::minutes(30),
            deep_relist_every: Some(Duration::hours(1)),
            ..ListerSettings::default()
        };
        run(
            &store,
            &queue,
            &OneApi(api.clone()),
            &clock,
            &settings,
            far(),
        )
        .await
        .unwrap();
        // Published late: created before the cursor, visible only now.
        api.add(
            ContentType::Exchange,
            "late-20m",
            t0 - Duration::minutes(20),
            vec![],
        );
        api.add(
            ContentType::Exchange,
            "late-3h",
            t0 - Duration::hours(3),
            vec![],
        );
        clock.set(t0 + Duration::minutes(5));
        let r = run(
            &store,
            &queue,
            &OneApi(api.clone()),
            &clock,
            &settings,
            far(),
        )
        .await
        .unwrap();
        assert_eq!(r.jobs(), 1, "the band catches the 20-minute-late blob");
        clock.set(t0 + Duration::minutes(61));
        let r = run(
            &store,
            &queue,
            &OneApi(api.clone()),
            &clock,
            &settings,
            far(),
        )
        .await
        .unwrap();
        assert!(r.feeds[0].deep);
        assert_eq!(
            r.jobs(),
            1,
            "the hourly deep re-list catches the 3-hour-late blob"
        );
        let ids: Vec<String> = queue.drain().into_iter().map(|j| j.content_id).collect();
        assert_eq!(ids, ["late-20m", "late-3h"]);
    }

    #[tokio::test]
    async fn windows_stay_under_24h_and_inside_7_days_and_the_cursor_never_passes_now() {
        let (store, queue, api, clock) = setup().await;
        let settings = ListerSettings {
            first_run_lookback: Duration::hours(167),
            ..ListerSettings::default()
        };
        let r = run(
            &store,
            &queue,
            &OneApi(api.clone()),
            &clock,
            &settings,
            far(),
        )
        .await
        .unwrap();
        assert_eq!(r.feeds[0].windows, 7, "167 h in windows of 23 h 55 min");
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
        let r = run(
            &store,
            &queue,
            &OneApi(api.clone()),
            &clock,
            &settings,
            far(),
        )
        .await
        .unwrap();
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
        let r = run(
            &store,
            &queue,
            &OneApi(api.clone()),
            &clock,
            &settings,
            far(),
        )
        .await
        .unwrap();
        assert!(!r.feeds[0].stopped_early);
        assert_eq!(r.feeds[0].windows, 5);
    }
}
