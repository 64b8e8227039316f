//! What each function reports: its use case's report (and the API client counters) turned into
//! [`Metrics`]. The handlers call these and [`Metrics::emit`] once per invocation.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Dims, Metric, Metrics, STATUS};
use crate::api::ApiStats;
use crate::app::clients::ClientSnapshot;
use crate::app::fetcher::{BatchReport, JobOutcome, QueueMessage};
use crate::app::lister::ListerReport;
use crate::app::subscriptions::SubscriptionReport;
use crate::model::{FetchJob, TenantId};

/// Certificates expiring within this many days are warned about (log line; the template's
/// alarm uses the same threshold).
pub const CERTIFICATE_WARN_DAYS: f64 = 30.0;

/// A fetcher batch: per tenant and content type (from each message's job; a malformed job is
/// counted without dimensions), records, blobs and bytes written, duplicates dropped, expired
/// blobs, dead-lettered and retried jobs, and the ingestion lag sample of every blob written.
pub fn fetcher_batch(m: &mut Metrics, messages: &[QueueMessage], report: &BatchReport) {
    for (message, (_, outcome)) in messages.iter().zip(&report.outcomes) {
        let dims = FetchJob::parse(&message.body)
            .map(|j| Dims::feed(j.tenant_id.as_str(), j.content_type))
            .unwrap_or_default();
        match outcome {
            JobOutcome::Written {
                records,
                duplicates,
                cross_blob_duplicates,
                bytes,
                lag,
                ..
            } => {
                m.count(Metric::RecordsWritten, &dims, *records);
                m.count(Metric::BlobsWritten, &dims, 1);
                m.count(Metric::BytesWritten, &dims, *bytes);
                m.count(
                    Metric::DuplicatesDropped,
                    &dims,
                    duplicates + cross_blob_duplicates,
                );
                for ms in &lag.sample_ms {
                    #[allow(clippy::cast_precision_loss, reason = "lags are far below 2^52 ms")]
                    m.observe(Metric::IngestionLagSeconds, &dims, *ms as f64 / 1000.0);
                }
            }
            JobOutcome::AlreadyDone { .. } => {}
            JobOutcome::Expired { .. } => m.count(Metric::ExpiredBlobs, &dims, 1),
            JobOutcome::DeadLettered { .. } => m.count(Metric::DeadLettered, &dims, 1),
            JobOutcome::Retry { .. } => m.count(Metric::JobsRetried, &dims, 1),
        }
    }
}

/// A lister run: per tenant and content type, blobs listed, jobs enqueued (new and re-driven)
/// and whether the feed failed (0 or 1, so an alarm on it has data); tenants skipped.
pub fn lister_run(m: &mut Metrics, report: &ListerReport) {
    for f in &report.feeds {
        let dims = Dims::feed(&f.tenant, f.content_type);
        m.count(Metric::BlobsListed, &dims, f.listed);
        m.count(Metric::JobsEnqueued, &dims, f.enqueued + f.redriven);
        m.count(Metric::FeedFailures, &dims, u64::from(f.error.is_some()));
        if f.late_found > 0 {
            m.count(Metric::ReconcileListed, &dims, f.late_found);
        }
    }
    for s in &report.sweeps {
        let dims = Dims::tenant(&s.tenant);
        m.count(Metric::SweepRedriven, &dims, s.redriven);
        #[allow(clippy::cast_precision_loss, reason = "ages stay far below 2^52 s")]
        m.observe(
            Metric::OldestOpenEntryAgeSeconds,
            &dims,
            s.oldest_open_secs.unwrap_or(0).max(0) as f64,
        );
        if s.expired > 0 {
            m.count(Metric::ExpiredBlobs, &dims, s.expired);
        }
    }
    if !report.tenant_errors.is_empty() {
        m.count(
            Metric::TenantSetupFailures,
            &Dims::none(),
            report.tenant_errors.len() as u64,
        );
    }
}

/// A subscriptions run: failures per tenant and content type (0 or 1).
pub fn subscriptions(m: &mut Metrics, report: &[SubscriptionReport]) {
    for r in report {
        let dims = Dims::feed(&r.tenant, r.content_type);
        m.count(
            Metric::SubscriptionFailures,
            &dims,
            u64::from(r.error.is_some()),
        );
    }
}

/// What `after` counted since `before` (the counters are cumulative per client; a client
/// rebuilt since — its tenant changed — starts again from zero).
pub fn api_delta(before: &ApiStats, after: &ApiStats) -> ApiStats {
    let zero = ApiStats::default();
    let before = if after.calls < before.calls {
        &zero
    } else {
        before
    };
    let mut by_status = BTreeMap::new();
    for (status, n) in &after.by_status {
        let d = n.saturating_sub(before.by_status.get(status).copied().unwrap_or(0));
        if d > 0 {
            by_status.insert(*status, d);
        }
    }
    let mut by_operation = BTreeMap::new();
    for (op, n) in &after.by_operation {
        let d = n.saturating_sub(before.by_operation.get(op).copied().unwrap_or(0));
        if d > 0 {
            by_operation.insert(*op, d);
        }
    }
    ApiStats {
        calls: after.calls.saturating_sub(before.calls),
        by_status,
        by_operation,
        retries: after.retries.saturating_sub(before.retries),
        throttled: after.throttled.saturating_sub(before.throttled),
        deadline_hits: after.deadline_hits.saturating_sub(before.deadline_hits),
    }
}

/// Management API use of this invocation, per tenant: `ApiCalls` per HTTP status (`0` = no
/// response), `Throttles`, `Retries` (the difference of two [`ClientSnapshot`] maps taken
/// before and after the invocation). Tenants that made no call are left out.
pub fn api_calls(
    m: &mut Metrics,
    before: &BTreeMap<TenantId, ClientSnapshot>,
    after: &BTreeMap<TenantId, ClientSnapshot>,
) {
    let zero = ClientSnapshot::default();
    for (tenant, now) in after {
        let d = api_delta(&before.get(tenant).unwrap_or(&zero).stats, &now.stats);
        if d.calls == 0 {
            continue;
        }
        let dims = Dims::tenant(tenant.as_str());
        for (status, n) in &d.by_status {
            m.count(
                Metric::ApiCalls,
                &dims.clone().with(STATUS, status.to_string()),
                *n,
            );
        }
        m.count(Metric::Throttles, &dims, d.throttled);
        m.count(Metric::Retries, &dims, d.retries);
    }
}

/// `CertificateDaysLeft` (one decimal) of every tenant whose client signs with a certificate;
/// a certificate expiring within [`CERTIFICATE_WARN_DAYS`] (or expired) is logged at warn.
/// Returns the tenants warned about.
pub fn certificates(
    m: &mut Metrics,
    clients: &BTreeMap<TenantId, ClientSnapshot>,
    now: DateTime<Utc>,
) -> Vec<TenantId> {
    let mut warned = Vec::new();
    for (tenant, c) in clients {
        let Some(not_after) = c.certificate_not_after else {
            continue;
        };
        #[allow(clippy::cast_precision_loss, reason = "seconds to a certificate's end")]
        let days = ((not_after - now).num_seconds() as f64 / 8640.0).floor() / 10.0;
        m.observe(
            Metric::CertificateDaysLeft,
            &Dims::tenant(tenant.as_str()),
            days,
        );
        if days < CERTIFICATE_WARN_DAYS {
            tracing::warn!(tenant = %tenant, days_left = days, not_after = %not_after.to_rfc3339(),
                "the tenant's certificate expires soon: upload a new one to the app registration (o365-collector keygen) and update its secret");
            warned.push(tenant.clone());
        }
    }
    warned
}

/// A directory sync of one tenant (users-sync): the users in the snapshot, or a failure.
pub fn directory_sync(m: &mut Metrics, tenant: &str, users: Option<u64>) {
    let dims = Dims::tenant(tenant);
    match users {
        Some(n) => {
            m.count(Metric::DirectoryUsers, &dims, n);
            m.count(Metric::DirectorySyncFailures, &dims, 0);
        }
        None => m.count(Metric::DirectorySyncFailures, &dims, 1),
    }
}

/// The Management API use of this invocation summed over tenants (for the summary log line).
pub fn api_totals(
    before: &BTreeMap<TenantId, ClientSnapshot>,
    after: &BTreeMap<TenantId, ClientSnapshot>,
) -> ApiStats {
    let zero = ClientSnapshot::default();
    let mut total = ApiStats::default();
    for (tenant, now) in after {
        let d = api_delta(&before.get(tenant).unwrap_or(&zero).stats, &now.stats);
        total.calls += d.calls;
        total.retries += d.retries;
        total.throttled += d.throttled;
        total.deadline_hits += d.deadline_hits;
        for (s, n) in d.by_status {
            *total.by_status.entry(s).or_default() += n;
        }
        for (o, n) in d.by_operation {
            *total.by_operation.entry(o).or_default() += n;
        }
    }
    total
}

/// A users-sync run: `DirectoryUsers` and `DirectorySyncFailures` per tenant.
pub fn users_sync(m: &mut Metrics, report: &crate::app::users_sync::UsersSyncReport) {
    for t in &report.tenants {
        directory_sync(m, &t.tenant_id, t.error.is_none().then_some(t.users));
    }
}
