//! The scenario: tenants, app registrations, generated data and faults. Documented in
//! `docs/emulator.md`; read from TOML (`Scenario::from_toml`) or built in code.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clouds::Cloud;

/// The five content types of the Management Activity API, in their wire spelling.
pub const CONTENT_TYPES: [&str; 5] = [
    "Audit.AzureActiveDirectory",
    "Audit.Exchange",
    "Audit.SharePoint",
    "Audit.General",
    "DLP.All",
];

/// Finds the canonical spelling of a content type, case-insensitively (`DLP.ALL` is accepted by
/// the real service).
pub fn canonical_content_type(s: &str) -> Option<&'static str> {
    CONTENT_TYPES
        .into_iter()
        .find(|ct| ct.eq_ignore_ascii_case(s))
}

/// A whole scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Seed of every random choice (data and fault firing): same seed, same run.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The cloud served at the root path (every cloud is also served under `/<cloud>`).
    #[serde(default)]
    pub default_cloud: Cloud,
    /// Lifetime of issued access tokens, in seconds (Entra: 3599; short values test refresh).
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_secs: u64,
    /// Blobs per `/subscriptions/content` page before `NextPageUri` is sent.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Users per Graph page when the caller gives no `$top` (Graph's default is 100).
    #[serde(default = "default_graph_page_size")]
    pub graph_page_size: usize,
    /// Refuse windows of exactly 24 h with AF20055, as some tenants do (fact sheet §2.4).
    #[serde(default)]
    pub reject_exact_24h: bool,
    /// Days a blob stays retrievable after `contentCreated` (documented: 7).
    #[serde(default = "default_retention_days")]
    pub retention_days: i64,
    /// Seconds a Graph delta token stays valid; an older one answers 410 Gone (Graph: 7 days).
    #[serde(default = "default_delta_ttl")]
    pub delta_token_ttl_secs: i64,
    /// Enforce the one-start-per-15-minutes rule per tenant and content type.
    #[serde(default)]
    pub enforce_start_interval: bool,
    /// The emulator clock starts this many seconds away from wall time (negative = behind).
    /// Content is generated relative to the emulator clock, so a test can start "in the past"
    /// and later `advance_clock` to wall time, making late content appear.
    #[serde(default)]
    pub clock_offset_secs: i64,
    /// Tenants.
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantSpec>,
    /// App registrations.
    #[serde(default, rename = "app")]
    pub apps: Vec<AppSpec>,
    /// Faults injected into HTTP responses.
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultSpec>,
}

fn default_seed() -> u64 {
    1
}
fn default_token_lifetime() -> u64 {
    3599
}
fn default_page_size() -> usize {
    100
}
fn default_graph_page_size() -> usize {
    100
}
fn default_retention_days() -> i64 {
    7
}
fn default_delta_ttl() -> i64 {
    7 * 24 * 3600
}

/// A customer tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Tenant GUID.
    pub id: String,
    /// Verified domain, e.g. `contoso.onmicrosoft.com`; also accepted in token URLs.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// The cloud the tenant lives in.
    #[serde(default)]
    pub cloud: Cloud,
    /// Unified audit logging on. Off: subscription start fails with the
    /// `DataServiceException: Tenant … does not exist` error of fact sheet §2.1.
    #[serde(default = "yes")]
    pub audit_enabled: bool,
    /// Subscriptions that already exist when the emulator starts (content type → state).
    #[serde(default)]
    pub subscriptions: BTreeMap<String, SubscriptionState>,
    /// Number of directory users (Graph and record actors).
    #[serde(default = "default_users")]
    pub users: usize,
    /// Generated audit content.
    #[serde(default)]
    pub data: DataSpec,
}

fn default_domain() -> String {
    "contoso.onmicrosoft.com".to_owned()
}
fn yes() -> bool {
    true
}
fn default_users() -> usize {
    25
}

/// State of a pre-existing subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionState {
    /// Enabled.
    Enabled,
    /// Disabled by an admin: `/content` answers AF20023 until started again.
    Disabled,
}

/// Generated audit content of one tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Content begins this many hours before the emulator starts.
    #[serde(default = "default_hours_back")]
    pub hours_back: i64,
    /// Content continues this many hours after the emulator starts (becomes listable as the
    /// emulator clock passes it).
    #[serde(default = "default_hours_ahead")]
    pub hours_ahead: i64,
    /// Records per hour per content type; content types absent here get none.
    #[serde(default = "default_rates")]
    pub records_per_hour: BTreeMap<String, u32>,
    /// Records per blob (the last blob of an hour may hold fewer).
    #[serde(default = "default_records_per_blob")]
    pub records_per_blob: u32,
    /// Fraction of blobs that become listable only `late_by_secs` after their `contentCreated`.
    #[serde(default)]
    pub late_fraction: f64,
    /// Delay of late blobs, in seconds.
    #[serde(default = "default_late_by")]
    pub late_by_secs: i64,
    /// When set, each late blob gets its own delay, drawn uniformly between `late_by_secs` and
    /// this (seconds), instead of `late_by_secs` for all: content published hours to days late.
    #[serde(default)]
    pub late_by_secs_max: Option<i64>,
    /// Fraction of records whose `Id` is repeated in a second, later blob.
    #[serde(default)]
    pub duplicate_fraction: f64,
    /// Fraction of blobs that expire `expire_after_secs` after becoming available instead of
    /// after the retention period.
    #[serde(default)]
    pub expired_fraction: f64,
    /// Early expiry of those blobs, in seconds after they became available.
    #[serde(default)]
    pub expire_after_secs: i64,
    /// Fixed start of the data instead of `hours_back` (for reproducible fixtures).
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
}

fn default_hours_back() -> i64 {
    24
}
fn default_hours_ahead() -> i64 {
    0
}
fn default_records_per_blob() -> u32 {
    50
}
fn default_late_by() -> i64 {
    3600
}
fn default_rates() -> BTreeMap<String, u32> {
    CONTENT_TYPES
        .into_iter()
        .map(|ct| (ct.to_owned(), 20))
        .collect()
}

impl Default for DataSpec {
    fn default() -> Self {
        DataSpec {
            hours_back: default_hours_back(),
            hours_ahead: default_hours_ahead(),
            records_per_hour: default_rates(),
            records_per_blob: default_records_per_blob(),
            late_fraction: 0.0,
            late_by_secs: default_late_by(),
            late_by_secs_max: None,
            duplicate_fraction: 0.0,
            expired_fraction: 0.0,
            expire_after_secs: 0,
            start: None,
        }
    }
}

/// An Entra app registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// Application (client) id.
    pub client_id: String,
    /// The tenant that owns the registration.
    pub home_tenant: String,
    /// Multi-tenant: may get tokens in every tenant of `consented_tenants` as well.
    #[serde(default)]
    pub multi_tenant: bool,
    /// Tenants (other than home) where a service principal of the app exists.
    #[serde(default)]
    pub consented_tenants: Vec<String>,
    /// Client secrets.
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
    /// Certificates (PEM, `-----BEGIN CERTIFICATE-----`) uploaded to the registration.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// Paths of PEM certificates uploaded to the registration (read when the scenario loads).
    #[serde(default)]
    pub certificate_files: Vec<String>,
    /// Application permissions on the Management API that an admin consented to
    /// (e.g. `ActivityFeed.Read`, `ActivityFeed.ReadDlp`). Empty = no admin consent:
    /// tokens are still issued, with no `roles`.
    #[serde(default)]
    pub manage_roles: Vec<String>,
    /// Application permissions on Graph that an admin consented to (e.g. `User.Read.All`).
    #[serde(default)]
    pub graph_roles: Vec<String>,
}

/// A client secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// The secret value.
    pub value: String,
    /// Expiry; an expired secret is refused with AADSTS7000222.
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSpec")
            .field("value", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// Which endpoints a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Endpoint {
    /// Token endpoints (v1 and v2).
    Token,
    /// `/subscriptions/start|stop|list`.
    Subscriptions,
    /// `/subscriptions/content`.
    Content,
    /// Blob GET under `/activity/feed/audit/`.
    Blob,
    /// Graph `/users` and `/users/delta`.
    Graph,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Token,
        Endpoint::Subscriptions,
        Endpoint::Content,
        Endpoint::Blob,
        Endpoint::Graph,
    ];

    /// Stable name used in the request log.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Subscriptions => "subscriptions",
            Endpoint::Content => "content",
            Endpoint::Blob => "blob",
            Endpoint::Graph => "graph",
        }
    }
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Management API throttling: HTTP 403 with `AF429` (fact sheet §2.6).
    Af429,
    /// HTTP 429 with `Retry-After` (Graph style; also sent by gateways).
    TooManyRequests,
    /// HTTP 500 with `AF50000`.
    InternalError,
    /// HTTP 503 with `AF50000`.
    Unavailable,
    /// The response is delayed by `delay_ms` (then answered normally).
    Slow,
    /// The connection is closed without a response.
    Drop,
    /// HTTP 401: the bearer token is refused as if it had expired early.
    Unauthorized,
    /// A redirect (`redirect_status`, default 302) to `location`, before any check: a client
    /// that followed it would carry its credentials or bearer token to another host.
    Redirect,
    /// HTTP 200 with a body that is not JSON (`body`, default an HTML error page), as a proxy
    /// or captive portal answers.
    Garbage,
    /// The normal answer cut after `truncate_at` of its bytes; `content_length` says whether
    /// the cut body is announced as such (`cut`: a complete HTTP answer with an incomplete JSON
    /// array), the whole body is announced and the connection closes early (`full`), or the
    /// body is chunked and ends cleanly (`none`).
    Truncate,
    /// A blob body that never ends: `[` then records, one every `interval_ms` (0 = as fast as
    /// the client reads), until the client goes away.
    Endless,
    /// The normal blob with invalid UTF-8 bytes (`0xFF 0xFE`) inside a string of its first
    /// record (its `Operation`, else its first string value).
    NonUtf8,
    /// The normal blob with one extra record of `record_bytes` bytes (default 40 MiB) first,
    /// `Id` `huge-record-<n>`.
    HugeRecord,
}

/// How a `truncate` fault announces the body it cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LengthMode {
    /// `Content-Length` of the cut body: the HTTP answer is complete, its JSON is not.
    #[default]
    Cut,
    /// `Content-Length` of the whole body, then the connection closes early.
    Full,
    /// No `Content-Length` (chunked): the body ends cleanly, cut.
    None,
}

/// One fault rule. A request matching `endpoints` (and `tenant`, if set) fires the fault with
/// probability `rate`, or on every `every`-th matching request; `limit` caps the firings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// What happens.
    pub kind: FaultKind,
    /// Endpoints it applies to (default: the Management API's content and blob endpoints).
    #[serde(default = "default_fault_endpoints")]
    pub endpoints: Vec<Endpoint>,
    /// Only this tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Probability per matching request, 0..=1.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Fire on every N-th matching request (1 = all).
    #[serde(default)]
    pub every: Option<u64>,
    /// At most this many firings.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Only blob requests, and only for this fraction of the blobs: each blob is selected or
    /// not by the seed, the rule's position and the blob's tenant, content type and sequence
    /// number, so a selected blob meets the rule on every request (with `every = 1`: a blob
    /// that fails for good). The ground truth lists the rules that select each blob.
    #[serde(default)]
    pub blob_fraction: Option<f64>,
    /// Delay for `slow`, in milliseconds.
    #[serde(default = "default_delay")]
    pub delay_ms: u64,
    /// `Retry-After` seconds for `too-many-requests` (fractions allowed, as Graph sends).
    #[serde(default = "default_retry_after")]
    pub retry_after_secs: f64,
    /// `redirect`: the `Location` sent (default `https://redirect.invalid/`).
    #[serde(default)]
    pub location: Option<String>,
    /// `redirect`: the status, 300..=399 (default 302).
    #[serde(default = "default_redirect_status")]
    pub redirect_status: u16,
    /// `garbage`: the body sent with HTTP 200 (default an HTML error page).
    #[serde(default)]
    pub body: Option<String>,
    /// `truncate`: the fraction of the body kept, strictly between 0 and 1 (default 0.5).
    #[serde(default = "default_truncate_at")]
    pub truncate_at: f64,
    /// `truncate`: how the cut body is announced.
    #[serde(default)]
    pub content_length: LengthMode,
    /// `endless`: milliseconds between two records (0 = as fast as the client reads).
    #[serde(default)]
    pub interval_ms: u64,
    /// `huge-record`: size of the extra record in bytes (default 40 MiB).
    #[serde(default = "default_record_bytes")]
    pub record_bytes: u64,
}

fn default_fault_endpoints() -> Vec<Endpoint> {
    vec![Endpoint::Content, Endpoint::Blob]
}
fn default_delay() -> u64 {
    1500
}
fn default_retry_after() -> f64 {
    1.0
}
fn default_redirect_status() -> u16 {
    302
}
fn default_truncate_at() -> f64 {
    0.5
}
fn default_record_bytes() -> u64 {
    40 * 1024 * 1024
}

/// Errors loading a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is invalid.
    #[error("scenario is not valid: {0}")]
    Parse(String),
    /// A value is out of range or inconsistent.
    #[error("scenario is not valid: {0}")]
    Invalid(String),
}

/// The bundled demo scenario (`emulator/scenarios/demo.toml`).
pub const DEMO_TOML: &str = include_str!("../scenarios/demo.toml");

impl Scenario {
    /// The bundled demo scenario: one tenant, an app with a secret, a day of all five content
    /// types, light throttling and late content.
    ///
    /// # Errors
    /// Never in practice (the file is tested); [`ScenarioError`] if it were invalid.
    pub fn demo() -> Result<Scenario, ScenarioError> {
        Scenario::from_toml(DEMO_TOML)
    }

    /// Parses a TOML scenario and checks it.
    ///
    /// # Errors
    /// [`ScenarioError::Parse`] for TOML errors, [`ScenarioError::Invalid`] for inconsistent values.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let mut s: Scenario =
            toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        s.load_certificate_files(None)?;
        s.validate()?;
        Ok(s)
    }

    /// Reads a TOML scenario file; relative `certificate_files` are resolved against its folder.
    ///
    /// # Errors
    /// As [`Scenario::from_toml`], plus [`ScenarioError::Read`].
    pub fn from_file(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut s: Scenario = toml::from_str(&text)
            .map_err(|e| ScenarioError::Parse(format!("{}: {e}", path.display())))?;
        s.load_certificate_files(path.parent())?;
        s.validate()?;
        Ok(s)
    }

    fn load_certificate_files(
        &mut self,
        base: Option<&std::path::Path>,
    ) -> Result<(), ScenarioError> {
        for app in &mut self.apps {
            for file in std::mem::take(&mut app.certificate_files) {
                let p = std::path::Path::new(&file);
                let p = match base {
                    Some(b) if p.is_relative() => b.join(p),
                    _ => p.to_path_buf(),
                };
                let pem = std::fs::read_to_string(&p).map_err(|source| ScenarioError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                app.certificates.push(pem);
            }
        }
        Ok(())
    }

    /// Checks ranges and references.
    ///
    /// # Errors
    /// [`ScenarioError::Invalid`] naming the offending value.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if self.page_size == 0 || self.graph_page_size == 0 {
            return bad("page_size and graph_page_size must be at least 1".into());
        }
        for t in &self.tenants {
            if uuid::Uuid::parse_str(&t.id).is_err() {
                return bad(format!("tenant id `{}` is not a GUID", t.id));
            }
            for ct in t.data.records_per_hour.keys().chain(t.subscriptions.keys()) {
                if canonical_content_type(ct).is_none() {
                    return bad(format!(
                        "tenant {}: unknown content type `{ct}` (expected one of {})",
                        t.id,
                        CONTENT_TYPES.join(", ")
                    ));
                }
            }
            if t.data.records_per_blob == 0 {
                return bad(format!(
                    "tenant {}: records_per_blob must be at least 1",
                    t.id
                ));
            }
            for (name, f) in [
                ("late_fraction", t.data.late_fraction),
                ("duplicate_fraction", t.data.duplicate_fraction),
                ("expired_fraction", t.data.expired_fraction),
            ] {
                if !(0.0..=1.0).contains(&f) {
                    return bad(format!("tenant {}: {name} must be between 0 and 1", t.id));
                }
            }
            if t.data
                .late_by_secs_max
                .is_some_and(|m| m < t.data.late_by_secs)
            {
                return bad(format!(
                    "tenant {}: late_by_secs_max must not be below late_by_secs",
                    t.id
                ));
            }
        }
        for a in &self.apps {
            if !self.tenants.iter().any(|t| t.id == a.home_tenant) {
                return bad(format!(
                    "app {}: home_tenant {} is not a tenant of the scenario",
                    a.client_id, a.home_tenant
                ));
            }
        }
        for f in &self.faults {
            match (f.rate, f.every) {
                (Some(r), None) if (0.0..=1.0).contains(&r) => {}
                (None, Some(n)) if n >= 1 => {}
                _ => {
                    return bad(format!(
                        "fault {:?}: give exactly one of `rate` (0..=1) or `every` (>= 1)",
                        f.kind
                    ));
                }
            }
            if !(300..=399).contains(&f.redirect_status) {
                return bad(format!(
                    "fault {:?}: redirect_status must be between 300 and 399",
                    f.kind
                ));
            }
            if f.blob_fraction.is_some_and(|b| !(0.0..=1.0).contains(&b)) {
                return bad(format!(
                    "fault {:?}: blob_fraction must be between 0 and 1",
                    f.kind
                ));
            }
            if !(f.truncate_at > 0.0 && f.truncate_at < 1.0) {
                return bad(format!(
                    "fault {:?}: truncate_at must be strictly between 0 and 1",
                    f.kind
                ));
            }
        }
        Ok(())
    }
}
