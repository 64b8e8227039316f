//! CloudWatch metrics in the embedded metric format (EMF): a small accumulator whose lines,
//! written to stdout, CloudWatch Logs turns into metrics of the `O365Collector` namespace
//! (no `PutMetricData` calls, no extra IAM, no latency).
//!
//! A [`Metrics`] collects counters and values keyed by metric and dimension set during one
//! invocation; [`Metrics::write_to`] writes one JSON object per dimension set (split so that no
//! directive has more than 100 metrics and no value array more than 100 values) to any
//! [`std::io::Write`], so tests capture the lines. [`validate_line`] checks a line against the
//! EMF rules. What each function reports is in [`record`]; the metric list is [`Metric`] and
//! docs/operations.md.

mod emf;
mod lag;
pub mod record;

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Utc};
use serde_json::{Map, Number, Value};

pub use emf::{EmfError, MAX_DIMENSIONS, MAX_METRICS, MAX_VALUES, validate_line};
pub use lag::LagSample;

use crate::model::ContentType;

/// The namespace of every metric the collector emits.
pub const NAMESPACE: &str = "O365Collector";

/// Dimension: the tenant GUID.
pub const TENANT_ID: &str = "TenantId";
/// Dimension: the content type (`Audit.Exchange`, …).
pub const CONTENT_TYPE: &str = "ContentType";
/// Dimension: an HTTP status (`0` = no response).
pub const STATUS: &str = "Status";
/// Property (not a dimension): the function that wrote the line.
pub const FUNCTION: &str = "Function";

/// A CloudWatch unit (the subset the collector uses; all are on CloudWatch's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    /// `Count`.
    Count,
    /// `Bytes`.
    Bytes,
    /// `Seconds`.
    Seconds,
    /// `None` (a plain number, e.g. days).
    None,
}

impl Unit {
    /// The unit as CloudWatch spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Seconds => "Seconds",
            Unit::None => "None",
        }
    }
}

/// Every metric the collector emits; the name and unit come from here only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Records written to S3 (fetcher; TenantId + ContentType).
    RecordsWritten,
    /// Blobs written to S3 (fetcher; TenantId + ContentType).
    BlobsWritten,
    /// Compressed bytes put to S3, raw archive included (fetcher; TenantId + ContentType).
    BytesWritten,
    /// Records dropped as duplicates, inside a blob or across blobs (fetcher).
    DuplicatesDropped,
    /// Blobs Microsoft expired before they could be fetched: data lost upstream (fetcher).
    ExpiredBlobs,
    /// Jobs parked in the dead-letter queue (fetcher).
    DeadLettered,
    /// Jobs left on the queue to be retried (fetcher).
    JobsRetried,
    /// Management API requests, every attempt (TenantId + Status).
    ApiCalls,
    /// Throttled answers (AF429, HTTP 429) (TenantId).
    Throttles,
    /// Retries of Management API requests (TenantId).
    Retries,
    /// Received − event time of the records written (fetcher; TenantId + ContentType).
    IngestionLagSeconds,
    /// Blobs seen in the listings (lister; TenantId + ContentType).
    BlobsListed,
    /// Fetch jobs enqueued, new and re-driven (lister; TenantId + ContentType).
    JobsEnqueued,
    /// Feeds whose listing failed (lister; TenantId + ContentType).
    FeedFailures,
    /// Tenants whose client could not be built (lister, subscriptions; TenantId).
    TenantSetupFailures,
    /// Content types whose subscription could not be ensured (subscriptions; TenantId + ContentType).
    SubscriptionFailures,
    /// Days until the tenant's certificate expires (lister; TenantId).
    CertificateDaysLeft,
    /// Users in the directory snapshot (users-sync; TenantId).
    DirectoryUsers,
    /// Directory syncs that failed (users-sync; TenantId).
    DirectorySyncFailures,
    /// Failed ledger entries enqueued again by the sweep (lister; TenantId).
    SweepRedriven,
    /// New blobs the reconciliation pass found: published later than the re-list band
    /// (lister; TenantId + ContentType).
    ReconcileListed,
    /// Age (now − first listed) of the tenant's oldest open failed ledger entry, 0 when none
    /// (lister; TenantId).
    OldestOpenEntryAgeSeconds,
}

impl Metric {
    /// Every metric, for docs and tests.
    pub const ALL: [Metric; 22] = [
        Metric::RecordsWritten,
        Metric::BlobsWritten,
        Metric::BytesWritten,
        Metric::DuplicatesDropped,
        Metric::ExpiredBlobs,
        Metric::DeadLettered,
        Metric::JobsRetried,
        Metric::ApiCalls,
        Metric::Throttles,
        Metric::Retries,
        Metric::IngestionLagSeconds,
        Metric::BlobsListed,
        Metric::JobsEnqueued,
        Metric::FeedFailures,
        Metric::TenantSetupFailures,
        Metric::SubscriptionFailures,
        Metric::CertificateDaysLeft,
        Metric::DirectoryUsers,
        Metric::DirectorySyncFailures,
        Metric::SweepRedriven,
        Metric::ReconcileListed,
        Metric::OldestOpenEntryAgeSeconds,
    ];

    /// The metric name in CloudWatch.
    pub fn name(self) -> &'static str {
        match self {
            Metric::RecordsWritten => "RecordsWritten",
            Metric::BlobsWritten => "BlobsWritten",
            Metric::BytesWritten => "BytesWritten",
            Metric::DuplicatesDropped => "DuplicatesDropped",
            Metric::ExpiredBlobs => "ExpiredBlobs",
            Metric::DeadLettered => "DeadLettered",
            Metric::JobsRetried => "JobsRetried",
            Metric::ApiCalls => "ApiCalls",
            Metric::Throttles => "Throttles",
            Metric::Retries => "Retries",
            Metric::IngestionLagSeconds => "IngestionLagSeconds",
            Metric::BlobsListed => "BlobsListed",
            Metric::JobsEnqueued => "JobsEnqueued",
            Metric::FeedFailures => "FeedFailures",
            Metric::TenantSetupFailures => "TenantSetupFailures",
            Metric::SubscriptionFailures => "SubscriptionFailures",
            Metric::CertificateDaysLeft => "CertificateDaysLeft",
            Metric::DirectoryUsers => "DirectoryUsers",
            Metric::DirectorySyncFailures => "DirectorySyncFailures",
            Metric::SweepRedriven => "SweepRedriven",
            Metric::ReconcileListed => "ReconcileListed",
            Metric::OldestOpenEntryAgeSeconds => "OldestOpenEntryAgeSeconds",
        }
    }

    /// Its unit.
    pub fn unit(self) -> Unit {
        match self {
            Metric::BytesWritten => Unit::Bytes,
            Metric::IngestionLagSeconds | Metric::OldestOpenEntryAgeSeconds => Unit::Seconds,
            Metric::CertificateDaysLeft => Unit::None,
            _ => Unit::Count,
        }
    }
}

/// A dimension set: `(name, value)` pairs in the order they are declared.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dims(Vec<(&'static str, String)>);

impl Dims {
    /// No dimensions (the metric is aggregated over everything).
    pub fn none() -> Dims {
        Dims(Vec::new())
    }

    /// `TenantId`.
    pub fn tenant(tenant: &str) -> Dims {
        Dims::none().with(TENANT_ID, tenant)
    }

    /// `TenantId` + `ContentType`.
    pub fn feed(tenant: &str, content_type: ContentType) -> Dims {
        Dims::tenant(tenant).with(CONTENT_TYPE, content_type.as_str())
    }

    /// Adds (or replaces) a dimension.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Dims {
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
        self
    }

    /// The same dimensions without `name`.
    pub fn without(&self, name: &str) -> Dims {
        Dims(self.0.iter().filter(|(n, _)| *n != name).cloned().collect())
    }

    /// The pairs.
    pub fn pairs(&self) -> &[(&'static str, String)] {
        &self.0
    }
}

/// How finely metrics are broken down. Every metric name × dimension set is a CloudWatch custom
/// metric billed by the month, so the detail is the deployment's largest fixed cost
/// (docs/cost.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    /// Every metric per tenant and content type (about 50 metrics per tenant).
    Feed,
    /// `RecordsWritten` per tenant and content type (the "no records" alarms watch it),
    /// everything else per tenant (about 20 per tenant).
    #[default]
    Tenant,
    /// `RecordsWritten` per tenant and content type and `CertificateDaysLeft` per tenant (the
    /// alarms' metrics); everything else summed over the deployment.
    Deployment,
    /// No custom metrics at all (the dead-letter and function-error alarms still work: they
    /// watch AWS's own metrics; the "no records" and certificate alarms then never fire).
    Off,
}

impl Detail {
    /// Parses `feed`, `tenant`, `deployment` or `off`.
    pub fn parse(s: &str) -> Option<Detail> {
        match s.trim() {
            "feed" => Some(Detail::Feed),
            "tenant" => Some(Detail::Tenant),
            "deployment" => Some(Detail::Deployment),
            "off" => Some(Detail::Off),
            _ => None,
        }
    }

    /// The dimensions `metric` is recorded under at this detail.
    pub fn dims(self, metric: Metric, dims: &Dims) -> Dims {
        let keep_all = matches!(metric, Metric::RecordsWritten)
            || (matches!(metric, Metric::CertificateDaysLeft) && self != Detail::Feed);
        match self {
            Detail::Feed => dims.clone(),
            _ if keep_all => dims.clone(),
            Detail::Tenant => dims.without(CONTENT_TYPE),
            Detail::Deployment | Detail::Off => dims.without(CONTENT_TYPE).without(TENANT_ID),
        }
    }
}

#[derive(Debug, Clone)]
enum Entry {
    /// A counter: one summed value.
    Sum(f64),
    /// Individual observations (CloudWatch computes the statistics).
    Values(Vec<f64>),
}

/// Metrics of one invocation, flushed as EMF lines.
#[derive(Debug, Clone)]
pub struct Metrics {
    namespace: String,
    function: String,
    detail: Detail,
    groups: BTreeMap<Dims, BTreeMap<Metric, Entry>>,
}

impl Metrics {
    /// Metrics of `function` (written as the `Function` property of every line) in
    /// [`NAMESPACE`].
    pub fn new(function: impl Into<String>) -> Metrics {
        Metrics::with_namespace(NAMESPACE, function)
    }

    /// Metrics in another namespace (tests, forks).
    pub fn with_namespace(namespace: impl Into<String>, function: impl Into<String>) -> Metrics {
        Metrics {
            namespace: namespace.into(),
            function: function.into(),
            detail: Detail::Feed,
            groups: BTreeMap::new(),
        }
    }

    /// The same accumulator recording at `detail` (default for a new one: [`Detail::Feed`];
    /// the functions pass the deployment's `METRICS_DETAIL`).
    #[must_use]
    pub fn with_detail(mut self, detail: Detail) -> Metrics {
        self.detail = detail;
        self
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Adds `n` to a counter (a zero still creates the data point: "nothing happened" is data).
    pub fn add(&mut self, metric: Metric, dims: &Dims, n: f64) {
        if !n.is_finite() || self.detail == Detail::Off {
            return;
        }
        let dims = self.detail.dims(metric, dims);
        let group = self.groups.entry(dims).or_default();
        match group.entry(metric).or_insert(Entry::Sum(0.0)) {
            Entry::Sum(v) => *v += n,
            Entry::Values(vs) => vs.push(n),
        }
    }

    /// Adds a count.
    pub fn count(&mut self, metric: Metric, dims: &Dims, n: u64) {
        #[allow(clippy::cast_precision_loss, reason = "counts stay far below 2^52")]
        self.add(metric, dims, n as f64);
    }

    /// Records one observation (CloudWatch keeps each: min, max, percentiles).
    pub fn observe(&mut self, metric: Metric, dims: &Dims, value: f64) {
        if !value.is_finite() || self.detail == Detail::Off {
            return;
        }
        let dims = self.detail.dims(metric, dims);
        let group = self.groups.entry(dims).or_default();
        match group
            .entry(metric)
            .or_insert_with(|| Entry::Values(Vec::new()))
        {
            Entry::Values(vs) => vs.push(value),
            Entry::Sum(v) => *v += value,
        }
    }

    /// The EMF lines (one JSON object each, no newline) of what was recorded, stamped `at`.
    pub fn lines(&self, at: DateTime<Utc>) -> Vec<String> {
        let mut out = Vec::new();
        for (dims, metrics) in &self.groups {
            for chunk in split(metrics) {
                out.push(self.line(dims, &chunk, at).to_string());
            }
        }
        out
    }

    /// Writes the lines (newline-terminated) to `out`, flushes it, and forgets what was
    /// recorded. Returns the number of lines.
    ///
    /// # Errors
    /// The writer's.
    pub fn write_to(&mut self, out: &mut impl Write, at: DateTime<Utc>) -> std::io::Result<usize> {
        let lines = self.lines(at);
        for l in &lines {
            out.write_all(l.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        self.groups.clear();
        Ok(lines.len())
    }

    /// Writes the lines to stdout (where Lambda sends them to CloudWatch Logs, which extracts
    /// the metrics); a failure is logged, never fatal.
    pub fn emit(&mut self) {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        if let Err(e) = self.write_to(&mut lock, Utc::now()) {
            tracing::warn!(error = %e, "metrics could not be written to stdout");
        }
    }

    fn line(&self, dims: &Dims, metrics: &[(Metric, Value)], at: DateTime<Utc>) -> Value {
        let mut root = Map::new();
        let definitions: Vec<Value> = metrics
            .iter()
            .map(|(m, _)| serde_json::json!({"Name": m.name(), "Unit": m.unit().as_str()}))
            .collect();
        let keys: Vec<&str> = dims.pairs().iter().map(|(k, _)| *k).collect();
        root.insert(
            "_aws".into(),
            serde_json::json!({
                "Timestamp": at.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [keys],
                    "Metrics": definitions,
                }],
            }),
        );
        root.insert(FUNCTION.into(), Value::String(self.function.clone()));
        for (k, v) in dims.pairs() {
            root.insert((*k).into(), Value::String(v.clone()));
        }
        for (m, v) in metrics {
            root.insert(m.name().into(), v.clone());
        }
        Value::Object(root)
    }
}

fn number(v: f64) -> Value {
    // Whole numbers as integers (`12`, not `12.0`); `v` is finite (checked on the way in).
    #[allow(
        clippy::cast_possible_truncation,
        reason = "checked: whole and in range"
    )]
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        return Value::Number(Number::from(v as i64));
    }
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// Splits a group into lines: at most [`MAX_VALUES`] values per metric per line (observations
/// beyond that continue on the next line) and at most [`MAX_METRICS`] metrics per line.
fn split(metrics: &BTreeMap<Metric, Entry>) -> Vec<Vec<(Metric, Value)>> {
    let mut rounds: Vec<Vec<(Metric, Value)>> = Vec::new();
    for (m, e) in metrics {
        let values: Vec<Value> = match e {
            Entry::Sum(v) => vec![number(*v)],
            Entry::Values(vs) => vs
                .chunks(MAX_VALUES)
                .map(|c| match c {
                    [one] => number(*one),
                    many => Value::Array(many.iter().map(|v| number(*v)).collect()),
                })
                .collect(),
        };
        for (i, v) in values.into_iter().enumerate() {
            if rounds.len() <= i {
                rounds.push(Vec::new());
            }
            rounds[i].push((*m, v));
        }
    }
    rounds
        .into_iter()
        .flat_map(|r| {
            r.chunks(MAX_METRICS)
                .map(<[(Metric, Value)]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests;
