//! `status`: where every feed (tenant × content type) stands, from the state alone (no call to
//! Microsoft): live-tail lag, reconciliation, open, failed and expired ledger entries, and how
//! late Microsoft published content.

use std::collections::BTreeMap;
use std::process::ExitCode;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use shared::model::{BlobState, ContentType, LedgerItem, Tenant};
use shared::store::StateStore;

use crate::state::{StateArgs, tenants};

/// Failed entries shown in the table (all are in `--json`).
const SHOWN_FAILED: usize = 10;

/// Options of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// This tenant only (its GUID).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Print JSON (for scripts) instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// How late content was seen: first listing − `contentCreated`, over the ledger entries of
/// content created after the feed's earliest listing in the ledger (what a first run or a
/// backfill finds as backlog says nothing about Microsoft). Time the collector was not running
/// counts as lateness.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Lateness {
    /// Ledger entries measured.
    pub samples: u64,
    /// Entries left out: created before the feed's earliest listing (backlog).
    pub backlog: u64,
    /// Median, seconds.
    pub p50_secs: Option<i64>,
    /// 95th percentile, seconds.
    pub p95_secs: Option<i64>,
    /// Largest, seconds.
    pub max_secs: Option<i64>,
    /// Share of samples later than an hour (0–1).
    pub over_1h: f64,
    /// Share of samples later than 24 hours (0–1).
    pub over_24h: f64,
}

impl Lateness {
    fn of(mut secs: Vec<i64>) -> Lateness {
        if secs.is_empty() {
            return Lateness::default();
        }
        secs.sort_unstable();
        let n = secs.len();
        // Nearest rank.
        let rank = |p: f64| secs[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        let share = |limit: i64| secs.iter().filter(|s| **s > limit).count() as f64 / n as f64;
        Lateness {
            samples: n as u64,
            backlog: 0,
            p50_secs: Some(rank(0.50)),
            p95_secs: Some(rank(0.95)),
            max_secs: secs.last().copied(),
            over_1h: share(3600),
            over_24h: share(86_400),
        }
    }
}

/// One feed.
#[derive(Debug, Clone, Serialize)]
pub struct FeedStatus {
    /// Tenant id.
    pub tenant: String,
    /// Content type.
    pub content_type: ContentType,
    /// The tenant is collected.
    pub enabled: bool,
    /// Every blob created before this was listed (`None`: never listed).
    pub listed_until: Option<DateTime<Utc>>,
    /// Live-tail lag: Microsoft's now − `listed_until`, seconds.
    pub lag_secs: Option<i64>,
    /// Microsoft's clock minus ours, milliseconds (as last measured).
    pub skew_ms: i64,
    /// `idle`, or `running` (a reconciliation pass is under way).
    pub reconciliation: &'static str,
    /// Where the pass under way stands.
    pub reconcile_from: Option<DateTime<Utc>>,
    /// When the pass under way started.
    pub reconcile_started: Option<DateTime<Utc>>,
    /// When the last full reconciliation pass completed.
    pub reconciled_at: Option<DateTime<Utc>>,
    /// Where the feed's first listing started (reconciliation goes no further back).
    pub since: Option<DateTime<Utc>>,
    /// Ledger entries (unexpired).
    pub entries: u64,
    /// Entries per state.
    pub states: BTreeMap<&'static str, u64>,
    /// Entries still open (pending, enqueued, failed with a retry).
    pub open: u64,
    /// Open entries per state.
    pub open_by_state: BTreeMap<&'static str, u64>,
    /// Age of the oldest open entry (now − `contentCreated`), seconds.
    pub oldest_open_secs: Option<i64>,
    /// Failed entries (retried or not).
    pub failed: u64,
    /// Failed entries never retried (they cannot succeed).
    pub failed_for_good: u64,
    /// Entries Microsoft expired before they could be fetched (data lost upstream).
    pub expired: u64,
    /// Lateness over the ledger.
    pub lateness: Lateness,
}

/// A failed ledger entry.
#[derive(Debug, Clone, Serialize)]
pub struct FailedEntry {
    /// Tenant id.
    pub tenant: String,
    /// Content type.
    pub content_type: ContentType,
    /// Content id.
    pub content_id: String,
    /// Why.
    pub reason: String,
    /// Re-drives after failures so far.
    pub attempts: u32,
    /// When it failed (last).
    pub failed_at: DateTime<Utc>,
    /// Next retry (`None`: never retried).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When Microsoft drops the blob.
    pub content_expiration: DateTime<Utc>,
}

/// An entry Microsoft expired before it could be fetched.
#[derive(Debug, Clone, Serialize)]
pub struct LostEntry {
    /// Tenant id.
    pub tenant: String,
    /// Content type.
    pub content_type: ContentType,
    /// Content id.
    pub content_id: String,
    /// Why (the last failure, if any).
    pub reason: String,
    /// When it was marked.
    pub at: DateTime<Utc>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Which state was read.
    pub source: String,
    /// Read from a copy of a state file a running collector holds.
    pub snapshot: bool,
    /// When (our clock).
    pub now: DateTime<Utc>,
    /// Every feed.
    pub feeds: Vec<FeedStatus>,
    /// Failed entries, most recent first.
    pub failed: Vec<FailedEntry>,
    /// Entries lost upstream, most recent first.
    pub expired: Vec<LostEntry>,
    /// Totals over the feeds.
    pub totals: Totals,
    /// Nothing failed and nothing expired.
    pub ok: bool,
}

/// Totals over the feeds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Feeds.
    pub feeds: u64,
    /// Ledger entries.
    pub entries: u64,
    /// Open entries.
    pub open: u64,
    /// Failed entries.
    pub failed: u64,
    /// Expired entries.
    pub expired: u64,
    /// Largest live-tail lag, seconds.
    pub max_lag_secs: Option<i64>,
}

/// Builds the status of one tenant's feeds from its cursors and ledger.
async fn tenant_status<S: StateStore>(
    store: &S,
    tenant: &Tenant,
    now: DateTime<Utc>,
    report: &mut StatusReport,
) -> Result<(), String> {
    let ledger = store
        .ledger(&tenant.id, now)
        .await
        .map_err(|e| format!("tenant {}: {e}", tenant.id))?;
    let mut by_ct: BTreeMap<ContentType, Vec<LedgerItem>> = BTreeMap::new();
    for item in ledger {
        by_ct.entry(item.blob.content_type).or_default().push(item);
    }
    let mut cts: Vec<ContentType> = tenant.content_types.clone();
    for ct in by_ct.keys() {
        if !cts.contains(ct) {
            cts.push(*ct);
        }
    }
    for ct in cts {
        let cursor = store
            .load_cursor(&tenant.id, ct)
            .await
            .map_err(|e| format!("tenant {} {ct}: {e}", tenant.id))?
            .map(|v| v.value);
        let items = by_ct.remove(&ct).unwrap_or_default();
        let skew_ms = cursor.as_ref().map_or(0, |c| c.skew_ms);
        let ms_now = now + Duration::milliseconds(skew_ms);
        let mut f = FeedStatus {
            tenant: tenant.id.to_string(),
            content_type: ct,
            enabled: tenant.enabled,
            listed_until: cursor.as_ref().map(|c| c.listed_until),
            lag_secs: cursor
                .as_ref()
                .map(|c| (ms_now - c.listed_until).num_seconds().max(0)),
            skew_ms,
            reconciliation: if cursor.as_ref().is_some_and(|c| c.reconcile_from.is_some()) {
                "running"
            } else {
                "idle"
            },
            reconcile_from: cursor.as_ref().and_then(|c| c.reconcile_from),
            reconcile_started: cursor.as_ref().and_then(|c| c.reconcile_started),
            reconciled_at: cursor.as_ref().and_then(|c| c.reconciled_at),
            since: cursor.as_ref().and_then(|c| c.since),
            entries: items.len() as u64,
            states: BlobState::ALL.iter().map(|s| (s.as_str(), 0)).collect(),
            open: 0,
            open_by_state: BTreeMap::new(),
            oldest_open_secs: None,
            failed: 0,
            failed_for_good: 0,
            expired: 0,
            lateness: Lateness::default(),
        };
        let mut late = Vec::new();
        let mut backlog = 0u64;
        let first_listing = items.iter().filter_map(|i| i.entry.listed_at).min();
        for item in items {
            let e = &item.entry;
            *f.states.entry(e.state.as_str()).or_default() += 1;
            if let (Some(listed), Some(first)) = (e.listed_at, first_listing) {
                if item.blob.content_created < first {
                    backlog += 1;
                } else {
                    late.push((listed - item.blob.content_created).num_seconds().max(0));
                }
            }
            if e.is_open() {
                f.open += 1;
                *f.open_by_state.entry(e.state.as_str()).or_default() += 1;
                let age = (ms_now - item.blob.content_created).num_seconds().max(0);
                f.oldest_open_secs = Some(f.oldest_open_secs.map_or(age, |a| a.max(age)));
            }
            match e.state {
                BlobState::Failed => {
                    f.failed += 1;
                    if e.next_attempt_at.is_none() {
                        f.failed_for_good += 1;
                    }
                    report.failed.push(FailedEntry {
                        tenant: f.tenant.clone(),
                        content_type: ct,
                        content_id: item.blob.content_id.clone(),
                        reason: e.reason.clone().unwrap_or_default(),
                        attempts: e.attempts,
                        failed_at: e.updated_at,
                        next_attempt_at: e.next_attempt_at,
                        content_expiration: item.blob.content_expiration,
                    });
                }
                BlobState::Expired => {
                    f.expired += 1;
                    report.expired.push(LostEntry {
                        tenant: f.tenant.clone(),
                        content_type: ct,
                        content_id: item.blob.content_id.clone(),
                        reason: e.reason.clone().unwrap_or_default(),
                        at: e.updated_at,
                    });
                }
                _ => {}
            }
        }
        f.lateness = Lateness {
            backlog,
            ..Lateness::of(late)
        };
        report.feeds.push(f);
    }
    Ok(())
}

/// Reads the status of `tenants` from `store`.
///
/// # Errors
/// A store error.
pub async fn build<S: StateStore>(
    store: &S,
    tenants: &[Tenant],
    source: String,
    snapshot: bool,
    now: DateTime<Utc>,
) -> Result<StatusReport, String> {
    let mut report = StatusReport {
        source,
        snapshot,
        now,
        feeds: Vec::new(),
        failed: Vec::new(),
        expired: Vec::new(),
        totals: Totals::default(),
        ok: true,
    };
    for t in tenants {
        tenant_status(store, t, now, &mut report).await?;
    }
    report
        .failed
        .sort_by_key(|e| std::cmp::Reverse(e.failed_at));
    report.expired.sort_by_key(|e| std::cmp::Reverse(e.at));
    let t = &mut report.totals;
    for f in &report.feeds {
        t.feeds += 1;
        t.entries += f.entries;
        t.open += f.open;
        t.failed += f.failed;
        t.expired += f.expired;
        t.max_lag_secs = t.max_lag_secs.max(f.lag_secs);
    }
    report.ok = t.failed == 0 && t.expired == 0;
    Ok(report)
}

/// `o365-collector status`.
pub async fn run(args: &StatusArgs) -> Result<ExitCode, String> {
    let opened = args.state.open_read().await?;
    let tenants = tenants(&opened, args.tenant.as_deref(), true).await?;
    if tenants.is_empty() {
        return Err("no tenants configured: add one (`o365-collector tenants add`, or a [[tenant]] in the configuration)".into());
    }
    let report = build(
        &opened.store,
        &tenants,
        opened.source.clone(),
        opened.snapshot,
        Utc::now(),
    )
    .await?;
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print_table(&report, &tenants);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A duration for people: `45s`, `12m 05s`, `3h 07m`, `2d 04h`.
pub fn human(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn ago(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "never".to_owned(),
        |t| format!("{} ago", human((now - t).num_seconds())),
    )
}

fn pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// The report for people.
pub fn print_table(report: &StatusReport, tenants: &[Tenant]) {
    let now = report.now;
    println!("{}", report.source);
    let mut current = String::new();
    for f in &report.feeds {
        if f.tenant != current {
            current.clone_from(&f.tenant);
            let t = tenants.iter().find(|t| t.id.to_string() == f.tenant);
            let name = t
                .and_then(|t| t.name.as_deref())
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            let disabled = if f.enabled { "" } else { " — disabled" };
            println!();
            println!("tenant {}{name}{disabled}", f.tenant);
            println!(
                "  {:<27} {:>9}  {:<22} {:<16} {:>5} {:>9} {:>6} {:>7}  {:<24} {:>6} {:>6}",
                "content type",
                "lag",
                "reconciliation",
                "last full pass",
                "open",
                "oldest",
                "failed",
                "expired",
                "lateness p50/p95/max",
                ">1h",
                ">24h"
            );
        }
        let lag = f.lag_secs.map_or_else(|| "never".to_owned(), human);
        let reconciliation = match f.reconcile_from {
            Some(at) => format!("at {}", at.format("%m-%d %H:%M")),
            None => "idle".to_owned(),
        };
        let oldest = f.oldest_open_secs.map_or_else(|| "-".to_owned(), human);
        let l = &f.lateness;
        let lateness = match (l.p50_secs, l.p95_secs, l.max_secs) {
            (Some(a), Some(b), Some(c)) => format!("{} / {} / {}", human(a), human(b), human(c)),
            _ => "-".to_owned(),
        };
        let (o1, o24) = if l.samples > 0 {
            (pct(l.over_1h), pct(l.over_24h))
        } else {
            ("-".to_owned(), "-".to_owned())
        };
        println!(
            "  {:<27} {:>9}  {:<22} {:<16} {:>5} {:>9} {:>6} {:>7}  {:<24} {:>6} {:>6}",
            f.content_type.as_str(),
            lag,
            reconciliation,
            ago(now, f.reconciled_at),
            f.open,
            oldest,
            f.failed,
            f.expired,
            lateness,
            o1,
            o24
        );
    }
    if !report.failed.is_empty() {
        println!();
        println!(
            "failed ({}, most recent first{}):",
            report.failed.len(),
            if report.failed.len() > SHOWN_FAILED {
                format!(", {SHOWN_FAILED} shown")
            } else {
                String::new()
            }
        );
        for e in report.failed.iter().take(SHOWN_FAILED) {
            let retry = match e.next_attempt_at {
                Some(t) if t > now => format!("next retry in {}", human((t - now).num_seconds())),
                Some(_) => "retry due".to_owned(),
                None => "not retried (cannot succeed)".to_owned(),
            };
            println!(
                "  {} ago  {} {}  {}  attempts {}, {retry}: {}",
                human((now - e.failed_at).num_seconds()),
                e.tenant,
                e.content_type,
                e.content_id,
                e.attempts,
                e.reason
            );
        }
        if report.failed.len() > SHOWN_FAILED {
            println!(
                "  … and {} more (`--json` lists them all)",
                report.failed.len() - SHOWN_FAILED
            );
        }
    }
    if !report.expired.is_empty() {
        println!();
        println!(
            "LOST UPSTREAM: {} blobs expired at Microsoft before they could be fetched (`--json` lists them), latest {} ago: {}",
            report.expired.len(),
            human((now - report.expired[0].at).num_seconds()),
            report.expired[0].content_id
        );
    }
    let t = &report.totals;
    println!();
    println!(
        "{} feeds, {} ledger entries, {} open, {} failed, {} expired; largest lag {}",
        t.feeds,
        t.entries,
        t.open,
        t.failed,
        t.expired,
        t.max_lag_secs.map_or_else(|| "-".to_owned(), human)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_percentiles_and_shares() {
        let l = Lateness::of(vec![10, 20, 30, 40, 4000, 90_000, 5, 6, 7, 8]);
        assert_eq!(l.samples, 10);
        assert_eq!(l.p50_secs, Some(10));
        assert_eq!(l.p95_secs, Some(90_000));
        assert_eq!(l.max_secs, Some(90_000));
        assert!((l.over_1h - 0.2).abs() < 1e-9);
        assert!((l.over_24h - 0.1).abs() < 1e-9);
        assert_eq!(Lateness::of(vec![]), Lateness::default());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(45), "45s");
        assert_eq!(human(725), "12m 05s");
        assert_eq!(human(3 * 3600 + 7 * 60), "3h 07m");
        assert_eq!(human(2 * 86_400 + 4 * 3600), "2d 04h");
        assert_eq!(human(-5), "0s");
    }
}
