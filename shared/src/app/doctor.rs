//! `doctor`: checks every step a working collection depends on — per tenant the token, the
//! consented roles, the certificate's expiry, each content type's subscription, a listing of the
//! last hour and Graph users; on AWS the state table, the queues, the bucket and the age of the
//! newest record — and says, for each failure, what to fix.
//!
//! Written against ports only: [`TenantConnector`] (a tenant's [`ActivityApi`] and
//! [`TokenSource`]), [`GraphProbe`] and [`DeploymentProbe`]; the AWS adapter is in [`aws`], the
//! HTTP Graph adapter is [`HttpGraph`]. Tokens are used, never printed: the only thing read from
//! one is the `roles` claim of its payload.

pub mod aws;

use std::future::Future;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;

use super::clients::TenantClients;
use super::{ApiProvider, Clock, SetupError};
use crate::api::{ActivityApi, ApiError, ErrorClass, StartOutcome};
use crate::auth::{AccessToken, Audience, AuthError, TokenProvider};
use crate::model::{CloudKind, ContentType, CredentialRef, SecretRef, Tenant, TenantId, Window};
use crate::secrets::SecretLoader;

/// A certificate expiring sooner than this is a warning.
pub const CERT_WARN_DAYS: i64 = 30;

/// The Management API permission every call needs.
pub const ACTIVITY_FEED_READ: &str = "ActivityFeed.Read";
/// The Management API permission for DLP details.
pub const ACTIVITY_FEED_READ_DLP: &str = "ActivityFeed.ReadDlp";
/// The least-privileged Graph application permission to read users.
pub const USER_READ_ALL: &str = "User.Read.All";
/// Graph roles that also allow reading users.
const GRAPH_READ_ROLES: [&str; 4] = [
    USER_READ_ALL,
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

const CONSENT_MANAGE_FIX: &str = "grant admin consent for ActivityFeed.Read: in the app registration's API permissions, add Office 365 Management APIs → Application permissions → ActivityFeed.Read (and ActivityFeed.ReadDlp), then select Grant admin consent";
const CONSENT_DLP_FIX: &str = "add ActivityFeed.ReadDlp: in the app registration's API permissions, add Office 365 Management APIs → Application permissions → ActivityFeed.ReadDlp and grant admin consent (without it DLP.All records lack the sensitive-data details)";
const GRAPH_FIX: &str = "grant Microsoft Graph application permission User.Read.All and admin consent: in the app registration's API permissions, add Microsoft Graph → Application permissions → User.Read.All, then select Grant admin consent";

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Ok,
    /// Works, but needs attention soon (or was repaired by doctor).
    Warn,
    /// Broken: collection does not work until it is fixed.
    Fail,
    /// Not checked, because something it depends on failed (or it does not apply).
    Skipped,
}

impl Status {
    /// `ok`, `warn`, `fail` or `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check: its name (`token.manage`, `subscription.Audit.Exchange`, …), outcome, what was
/// seen and, unless it is ok, what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name, for scripts.
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What was seen (never a token or secret).
    pub detail: String,
    /// What to do about it.
    pub fix: Option<String>,
    /// The error code behind a failure (`AADSTS7000215`, `AF20023`, …), when there is one.
    pub code: Option<String>,
}

impl Check {
    fn new(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: None,
            code: None,
        }
    }

    /// An ok check.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Ok, detail)
    }

    /// A warning with its fix.
    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Warn, detail).with_fix(fix)
    }

    /// A failure with its fix.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Fail, detail).with_fix(fix)
    }

    /// A skipped check, with why.
    pub fn skipped(name: impl Into<String>, why: impl Into<String>) -> Check {
        Check::new(name, Status::Skipped, why)
    }

    fn with_fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }

    fn with_code(mut self, code: Option<String>) -> Check {
        self.code = code;
        self
    }
}

/// The checks of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantReport {
    /// Tenant id.
    pub tenant: String,
    /// Its name for people, if any.
    pub name: Option<String>,
    /// Checks, in the order they ran.
    pub checks: Vec<Check>,
}

/// How many checks ended how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Ok.
    pub ok: usize,
    /// Warnings.
    pub warn: usize,
    /// Failures.
    pub fail: usize,
    /// Skipped.
    pub skipped: usize,
}

/// Everything doctor found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    /// Per tenant.
    pub tenants: Vec<TenantReport>,
    /// The deployment's resources (empty for local runs).
    pub aws: Vec<Check>,
    /// Counts over all checks.
    pub summary: Summary,
}

impl DoctorReport {
    /// Every check, with its tenant (`None` for the AWS checks).
    pub fn checks(&self) -> impl Iterator<Item = (Option<&str>, &Check)> {
        self.tenants
            .iter()
            .flat_map(|t| t.checks.iter().map(move |c| (Some(t.tenant.as_str()), c)))
            .chain(self.aws.iter().map(|c| (None, c)))
    }

    /// True when any check failed (warnings do not fail).
    pub fn failed(&self) -> bool {
        self.checks().any(|(_, c)| c.status == Status::Fail)
    }

    fn summarize(&mut self) {
        let mut s = Summary::default();
        for (_, c) in self.checks() {
            match c.status {
                Status::Ok => s.ok += 1,
                Status::Warn => s.warn += 1,
                Status::Fail => s.fail += 1,
                Status::Skipped => s.skipped += 1,
            }
        }
        self.summary = s;
    }
}

/// What the credential in use is, for the certificate check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialInfo {
    /// A client secret (its expiry is not visible to the collector).
    Secret,
    /// A certificate.
    Certificate {
        /// `notAfter`, when it could be read.
        not_after: Option<DateTime<Utc>>,
        /// SHA-1 thumbprint (hex), as the portal shows it.
        thumbprint: String,
    },
}

/// Access tokens of one tenant (port; [`TokenProvider`] is the adapter).
pub trait TokenSource: Send + Sync {
    /// A token for `audience`.
    ///
    /// # Errors
    /// [`AuthError`] when Entra refuses or cannot be reached.
    fn token(
        &self,
        audience: Audience,
    ) -> impl Future<Output = Result<AccessToken, AuthError>> + Send;

    /// What the credential is.
    fn credential_info(&self) -> CredentialInfo;
}

impl TokenSource for TokenProvider {
    fn token(
        &self,
        audience: Audience,
    ) -> impl Future<Output = Result<AccessToken, AuthError>> + Send {
        TokenProvider::token(self, audience)
    }

    fn credential_info(&self) -> CredentialInfo {
        match self.credential().certificate() {
            Some(c) => CredentialInfo::Certificate {
                not_after: c.not_after(),
                thumbprint: c.thumbprint_hex().to_owned(),
            },
            None => CredentialInfo::Secret,
        }
    }
}

/// A tenant's Management API client and token source.
pub type Connection<A, T> = (Arc<A>, Arc<T>);

/// Connects to a tenant (port; [`TenantClients`] is the adapter).
pub trait TenantConnector: Send + Sync {
    /// The Management API client.
    type Api: ActivityApi + 'static;
    /// The token source.
    type Tokens: TokenSource + 'static;

    /// The client and tokens of `tenant`.
    ///
    /// # Errors
    /// [`SetupError`] when its credential cannot be loaded.
    fn connect(
        &self,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<Connection<Self::Api, Self::Tokens>, SetupError>> + Send;
}

impl<L: SecretLoader> TenantConnector for TenantClients<L> {
    type Api = crate::api::ManagementClient;
    type Tokens = TokenProvider;

    async fn connect(
        &self,
        tenant: &Tenant,
    ) -> Result<Connection<Self::Api, Self::Tokens>, SetupError> {
        let api = self.api(tenant).await?;
        let tokens = api.tokens().clone();
        Ok((api, tokens))
    }
}

/// What `GET {graph}/v1.0/users?$top=1&$select=id` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphAnswer {
    /// 2xx with this many users on the page.
    Users(usize),
    /// An error answer.
    Refused {
        /// HTTP status.
        status: u16,
        /// Graph's `error.code`, e.g. `Authorization_RequestDenied`.
        code: Option<String>,
        /// Graph's `error.message` (or the start of the body).
        message: String,
    },
    /// No answer (network, TLS, timeout).
    Unreachable(String),
}

/// Reads one page of Graph users (port; [`HttpGraph`] is the adapter).
pub trait GraphProbe: Send + Sync {
    /// `GET {endpoints.graph}/v1.0/users?$top=1&$select=id` with `token`.
    fn list_users(
        &self,
        tenant: &Tenant,
        token: &AccessToken,
    ) -> impl Future<Output = GraphAnswer> + Send;
}

/// Largest Graph answer read.
const MAX_GRAPH_BODY: usize = 256 * 1024;

/// [`GraphProbe`] over HTTP; `http` must come from [`crate::api::http_client`] (no redirects:
/// the bearer token stays on the Graph host).
#[derive(Debug, Clone)]
pub struct HttpGraph {
    http: reqwest::Client,
}

impl HttpGraph {
    /// A probe using `http`.
    pub fn new(http: reqwest::Client) -> HttpGraph {
        HttpGraph { http }
    }
}

impl GraphProbe for HttpGraph {
    async fn list_users(&self, tenant: &Tenant, token: &AccessToken) -> GraphAnswer {
        let url = format!(
            "{}/v1.0/users?$top=1&$select=id",
            tenant.endpoints.graph.trim_end_matches('/')
        );
        let mut response = match self
            .http
            .get(&url)
            .bearer_auth(token.bearer())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return GraphAnswer::Unreachable(crate::auth::transport_message(&e)),
        };
        let status = response.status().as_u16();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(c)) if body.len() + c.len() <= MAX_GRAPH_BODY => body.extend_from_slice(&c),
                Ok(Some(_)) => break,
                Ok(None) => break,
                Err(e) => return GraphAnswer::Unreachable(crate::auth::transport_message(&e)),
            }
        }
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if (200..300).contains(&status) {
            let n = json
                .as_ref()
                .and_then(|v| v.get("value"))
                .and_then(Value::as_array)
                .map(Vec::len);
            return match n {
                Some(n) => GraphAnswer::Users(n),
                None => GraphAnswer::Refused {
                    status,
                    code: None,
                    message: "the answer has no `value` array (is graph_url the Graph host?)"
                        .into(),
                },
            };
        }
        let err = json.as_ref().and_then(|v| v.get("error"));
        let code = err
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let message = err
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(|m| crate::auth::truncate(m, 300))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&body);
                let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                crate::auth::truncate(&line, 200)
            });
        GraphAnswer::Refused {
            status,
            code,
            message,
        }
    }
}

/// A deployment resource could not be checked: what happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}; {fix}")]
pub struct ProbeError {
    /// What happened (error code and message; never a request body).
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

/// The state table as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// `ACTIVE`, `CREATING`, …
    pub status: String,
    /// Approximate item count, when given.
    pub items: Option<i64>,
}

/// A queue's approximate depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages waiting (`ApproximateNumberOfMessages`).
    pub visible: u64,
    /// Messages being processed (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
}

/// The newest object under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewestObject {
    /// Its key.
    pub key: String,
    /// Its `LastModified`.
    pub modified: DateTime<Utc>,
}

/// Reads a deployment's resources (port; [`aws::AwsDeployment`] is the adapter).
pub trait DeploymentProbe: Send + Sync {
    /// Describes the state table.
    ///
    /// # Errors
    /// [`ProbeError`] when it does not exist or cannot be read.
    fn table(&self, name: &str) -> impl Future<Output = Result<TableInfo, ProbeError>> + Send;

    /// A queue's depth.
    ///
    /// # Errors
    /// [`ProbeError`] when it does not exist or cannot be read.
    fn queue(&self, url: &str) -> impl Future<Output = Result<QueueDepth, ProbeError>> + Send;

    /// Checks that the bucket exists and is reachable.
    ///
    /// # Errors
    /// [`ProbeError`] when it does not exist or cannot be read.
    fn bucket(&self, name: &str) -> impl Future<Output = Result<(), ProbeError>> + Send;

    /// The most recently modified object under `prefix`, if any.
    ///
    /// # Errors
    /// [`ProbeError`] when the bucket cannot be listed.
    fn newest_object(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Option<NewestObject>, ProbeError>> + Send;
}

/// No deployment (local runs): never called.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDeployment;

impl DeploymentProbe for NoDeployment {
    async fn table(&self, _name: &str) -> Result<TableInfo, ProbeError> {
        Err(no_deployment())
    }
    async fn queue(&self, _url: &str) -> Result<QueueDepth, ProbeError> {
        Err(no_deployment())
    }
    async fn bucket(&self, _name: &str) -> Result<(), ProbeError> {
        Err(no_deployment())
    }
    async fn newest_object(
        &self,
        _bucket: &str,
        _prefix: &str,
    ) -> Result<Option<NewestObject>, ProbeError> {
        Err(no_deployment())
    }
}

fn no_deployment() -> ProbeError {
    ProbeError {
        message: "no deployment configured".into(),
        fix: "give --table, --queue-url, --dlq-url and --bucket".into(),
    }
}

/// The names of a deployment's resources (stack outputs); each is checked when given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployment {
    /// `StateTableName`.
    pub table: Option<String>,
    /// `FetchQueueUrl`.
    pub queue_url: Option<String>,
    /// `FetchDeadLetterQueueUrl`.
    pub dlq_url: Option<String>,
    /// `EventsBucketName`.
    pub bucket: Option<String>,
}

/// The doctor: its ports and the deployment to check.
#[derive(Debug)]
pub struct Doctor<'a, C, G, K, D = NoDeployment> {
    connector: &'a C,
    graph: &'a G,
    clock: &'a K,
    deployment: Option<(&'a D, Deployment)>,
}

impl<'a, C, G, K> Doctor<'a, C, G, K, NoDeployment>
where
    C: TenantConnector,
    G: GraphProbe,
    K: Clock,
{
    /// A doctor of tenants only (local runs).
    pub fn new(connector: &'a C, graph: &'a G, clock: &'a K) -> Self {
        Doctor {
            connector,
            graph,
            clock,
            deployment: None,
        }
    }

    /// Also checks the deployment's resources through `probe`.
    pub fn with_deployment<D: DeploymentProbe>(
        self,
        probe: &'a D,
        names: Deployment,
    ) -> Doctor<'a, C, G, K, D> {
        Doctor {
            connector: self.connector,
            graph: self.graph,
            clock: self.clock,
            deployment: Some((probe, names)),
        }
    }
}

/// Why dependent checks are skipped.
const TOKEN_FAILED: &str = "token failed (see token.manage)";

impl<C, G, K, D> Doctor<'_, C, G, K, D>
where
    C: TenantConnector,
    G: GraphProbe,
    K: Clock,
    D: DeploymentProbe,
{
    /// Runs every check for `tenants` (and the deployment, if given). Tenants that are not
    /// enabled get one skipped check; pass only the ones to check.
    pub async fn run(&self, tenants: &[Tenant]) -> DoctorReport {
        let mut report = DoctorReport::default();
        for t in tenants {
            let checks = if t.enabled {
                self.tenant(t).await
            } else {
                vec![Check::skipped(
                    "enabled",
                    "the tenant is disabled, so it is not collected and not checked (name it with --tenant to check it anyway)",
                )]
            };
            report.tenants.push(TenantReport {
                tenant: t.id.to_string(),
                name: t.name.clone(),
                checks,
            });
        }
        if let Some((probe, names)) = &self.deployment {
            report.aws = deployment_checks(*probe, names).await;
        }
        report.summarize();
        report
    }

    /// The checks of one tenant, whether or not it is enabled.
    pub async fn tenant(&self, tenant: &Tenant) -> Vec<Check> {
        let mut out = Vec::new();
        let cts = &tenant.content_types;
        match self.connector.connect(tenant).await {
            Err(e) => {
                out.push(Check::fail(
                    "credential",
                    e.message.clone(),
                    format!(
                        "fix the tenant's {} as the detail says (docs/config.md, Tenants)",
                        describe_credential(&tenant.credential)
                    ),
                ));
                let why = "credential could not be loaded (see credential)";
                for name in tenant_check_names(cts) {
                    out.push(Check::skipped(name, why));
                }
            }
            Ok((api, tokens)) => {
                out.push(Check::ok(
                    "credential",
                    format!("loaded the {}", describe_credential(&tenant.credential)),
                ));
                out.push(self.certificate(&*tokens));
                self.management(tenant, &*api, &*tokens, &mut out).await;
                let manage_refusal = out
                    .iter()
                    .find(|c| c.name == "token.manage" && c.status == Status::Fail)
                    .and_then(|c| c.code.clone());
                self.graph(tenant, &*tokens, manage_refusal, &mut out).await;
            }
        }
        if let Some((probe, names)) = &self.deployment
            && let Some(bucket) = &names.bucket
        {
            for ct in cts {
                out.push(last_record(*probe, bucket, &tenant.id, *ct, self.clock.now()).await);
            }
        }
        out
    }

    fn certificate(&self, tokens: &impl TokenSource) -> Check {
        let name = "certificate";
        match tokens.credential_info() {
            CredentialInfo::Secret => Check::skipped(
                name,
                "client secret: its expiry is shown only in the portal (Certificates & secrets); AADSTS7000222 means it expired",
            ),
            CredentialInfo::Certificate {
                not_after: None,
                thumbprint,
            } => Check::warn(
                name,
                format!("certificate {thumbprint}: its expiry (notAfter) could not be read"),
                "check the certificate's expiry in the portal (Certificates & secrets)",
            ),
            CredentialInfo::Certificate {
                not_after: Some(end),
                thumbprint,
            } => {
                let now = self.clock.now();
                let left = end - now;
                let renew = "create a new certificate (o365-collector keygen), upload cert.pem to the app registration (Certificates & secrets) and point the tenant's credential at the new PEM";
                if left <= Duration::zero() {
                    Check::fail(
                        name,
                        format!(
                            "certificate {thumbprint} expired {} ({} ago)",
                            end.to_rfc3339(),
                            human_duration(-left)
                        ),
                        renew,
                    )
                } else if left < Duration::days(CERT_WARN_DAYS) {
                    Check::warn(
                        name,
                        format!(
                            "certificate {thumbprint} expires {} (in {}, under {CERT_WARN_DAYS} days)",
                            end.to_rfc3339(),
                            human_duration(left)
                        ),
                        format!("before it expires: {renew}"),
                    )
                } else {
                    Check::ok(
                        name,
                        format!(
                            "certificate {thumbprint} expires {} (in {} days)",
                            end.to_rfc3339(),
                            left.num_days()
                        ),
                    )
                }
            }
        }
    }

    async fn management<A: ActivityApi, T: TokenSource>(
        &self,
        tenant: &Tenant,
        api: &A,
        tokens: &T,
        out: &mut Vec<Check>,
    ) {
        let cts = &tenant.content_types;
        let token = match tokens.token(Audience::Manage).await {
            Ok(t) => t,
            Err(e) => {
                out.push(auth_check("token.manage", &e, tenant));
                out.push(Check::skipped("roles.manage", TOKEN_FAILED));
                for ct in cts {
                    out.push(Check::skipped(subscription_name(*ct), TOKEN_FAILED));
                }
                for ct in cts {
                    out.push(Check::skipped(listing_name(*ct), TOKEN_FAILED));
                }
                return;
            }
        };
        out.push(token_ok(
            "token.manage",
            &tenant.endpoints.manage_resource,
            &token,
            self.clock.now(),
        ));
        let roles = token_roles(token.bearer());
        let (roles_check, consented) = manage_roles_check(roles.as_deref(), cts);
        out.push(roles_check);
        if !consented {
            let why = "ActivityFeed.Read is not consented (see roles.manage)";
            for ct in cts {
                out.push(Check::skipped(subscription_name(*ct), why));
            }
            for ct in cts {
                out.push(Check::skipped(listing_name(*ct), why));
            }
            return;
        }
        let subs = self.subscriptions(api, cts).await;
        let now = self.clock.now();
        let window = Window::new(now - Duration::hours(1), now, now);
        let mut listings = Vec::new();
        for (ct, (sub, just_started)) in cts.iter().zip(&subs) {
            let name = listing_name(*ct);
            let check = match (&sub.status, &window) {
                (Status::Fail, _) => Check::skipped(
                    name,
                    format!("not listed: {} failed", sub.name),
                ),
                (_, Err(e)) => Check::fail(
                    name,
                    format!("no listing window: {e}"),
                    "check this host's clock",
                ),
                (_, Ok(w)) => match api.list_content(*ct, w).await {
                    Ok(blobs) => Check::ok(
                        name,
                        format!("{} blob(s) listed for the last hour", blobs.len()),
                    ),
                    Err(e) if e.class() == ErrorClass::Resubscribe && *just_started => {
                        api_check(&name, &e).downgrade(
                            "the subscription was started a moment ago; Microsoft can take a while before it lists content: run doctor again later",
                        )
                    }
                    Err(e) => api_check(&name, &e),
                },
            };
            listings.push(check);
        }
        out.extend(subs.into_iter().map(|(c, _)| c));
        out.extend(listings);
    }

    /// `subscription.<ct>` checks, each with whether doctor just started it.
    async fn subscriptions<A: ActivityApi>(
        &self,
        api: &A,
        cts: &[ContentType],
    ) -> Vec<(Check, bool)> {
        let listed = match api.list_subscriptions().await {
            Ok(s) => s,
            Err(e) => {
                return cts
                    .iter()
                    .map(|ct| {
                        let mut c = api_check(&subscription_name(*ct), &e);
                        c.detail = format!("the subscriptions could not be listed: {}", c.detail);
                        (c, false)
                    })
                    .collect();
            }
        };
        let mut out = Vec::new();
        let mut audit_off: Option<Check> = None;
        for ct in cts {
            let name = subscription_name(*ct);
            let state = listed
                .iter()
                .find(|s| s.content_type.eq_ignore_ascii_case(ct.as_str()))
                .map(|s| {
                    s.status
                        .as_deref()
                        .unwrap_or("enabled")
                        .to_ascii_lowercase()
                });
            if state.as_deref() == Some("enabled") {
                out.push((Check::ok(name, "enabled"), false));
                continue;
            }
            if let Some(off) = &audit_off {
                // Every start fails the same way while the audit log is off: don't ask again.
                out.push((
                    Check {
                        name,
                        ..off.clone()
                    },
                    false,
                ));
                continue;
            }
            let disabled = state.as_deref() == Some("disabled");
            let started = api.start_subscription(*ct).await;
            let just_started = started.is_ok();
            let check = match started {
                Ok(StartOutcome::Started | StartOutcome::AlreadyEnabled) if disabled => Check::warn(
                    name,
                    "was disabled (by a tenant or service admin): doctor started it again",
                    "find out who disabled it and why (Purview audit log: subscription changes); the daily subscriptions function keeps every content type started, and content published while it was disabled is not listed",
                )
                .with_code(Some("AF20023".into())),
                Ok(StartOutcome::Started) => Check::ok(
                    name,
                    "was not subscribed: started now (first content can take up to 12 hours)",
                ),
                Ok(StartOutcome::AlreadyEnabled) => Check::ok(name, "enabled"),
                Err(e @ ApiError::AuditDisabled { .. }) => {
                    let c = api_check(&name, &e);
                    audit_off = Some(c.clone());
                    c
                }
                Err(e) => {
                    let mut c = api_check(&name, &e);
                    c.detail = format!("could not be started: {}", c.detail);
                    c
                }
            };
            out.push((check, just_started));
        }
        out
    }

    async fn graph<T: TokenSource>(
        &self,
        tenant: &Tenant,
        tokens: &T,
        manage_refusal: Option<String>,
        out: &mut Vec<Check>,
    ) {
        let token = match tokens.token(Audience::Graph).await {
            Ok(t) => t,
            Err(e) => {
                let check = auth_check("token.graph", &e, tenant);
                if manage_refusal.is_some() && manage_refusal == check.code {
                    out.push(Check::skipped(
                        "token.graph",
                        "token failed with the same refusal as token.manage",
                    ));
                    let why = "token failed (see token.manage)";
                    out.push(Check::skipped("roles.graph", why));
                    out.push(Check::skipped("graph.users", why));
                } else {
                    out.push(check);
                    let why = "token failed (see token.graph)";
                    out.push(Check::skipped("roles.graph", why));
                    out.push(Check::skipped("graph.users", why));
                }
                return;
            }
        };
        out.push(token_ok(
            "token.graph",
            &tenant.endpoints.graph_resource,
            &token,
            self.clock.now(),
        ));
        out.push(graph_roles_check(token_roles(token.bearer()).as_deref()));
        out.push(graph_users_check(
            self.graph.list_users(tenant, &token).await,
            tenant,
        ));
    }
}

impl Check {
    /// A failure turned into a warning with another fix.
    fn downgrade(mut self, fix: &str) -> Check {
        self.status = Status::Warn;
        self.fix = Some(fix.to_owned());
        self
    }
}

/// `subscription.<content type>`.
pub fn subscription_name(ct: ContentType) -> String {
    format!("subscription.{ct}")
}

/// `listing.<content type>`.
pub fn listing_name(ct: ContentType) -> String {
    format!("listing.{ct}")
}

/// `last_record.<content type>`.
pub fn last_record_name(ct: ContentType) -> String {
    format!("last_record.{ct}")
}

/// The checks after `credential`, for skipping them all.
fn tenant_check_names(cts: &[ContentType]) -> Vec<String> {
    let mut names = vec![
        "certificate".to_owned(),
        "token.manage".to_owned(),
        "roles.manage".to_owned(),
    ];
    names.extend(cts.iter().map(|ct| subscription_name(*ct)));
    names.extend(cts.iter().map(|ct| listing_name(*ct)));
    names.extend(["token.graph", "roles.graph", "graph.users"].map(str::to_owned));
    names
}

fn describe_credential(c: &CredentialRef) -> String {
    let (what, r) = match c {
        CredentialRef::Secret { secret } => ("client secret", secret),
        CredentialRef::Certificate { pem, .. } => ("certificate PEM", pem),
    };
    let from = match r {
        SecretRef::File(p) => format!("file {p}"),
        SecretRef::Env(v) => format!("environment variable {v}"),
        SecretRef::SecretsManager(a) => format!("Secrets Manager secret {a}"),
    };
    format!("{what} from {from}")
}

fn cloud_name(c: CloudKind) -> &'static str {
    match c {
        CloudKind::Commercial => "commercial",
        CloudKind::Gcc => "gcc",
        CloudKind::GccHigh => "gcc-high",
        CloudKind::Dod => "dod",
        CloudKind::Custom => "custom",
    }
}

fn token_ok(name: &str, resource: &str, token: &AccessToken, now: DateTime<Utc>) -> Check {
    Check::ok(
        name,
        format!(
            "token for {resource} obtained, valid for {}",
            human_duration(token.expires_at() - now)
        ),
    )
}

/// A token refusal as a check: the AADSTS code in the detail and the code field, the fix, and
/// for certificate refusals the thumbprint the collector sent.
fn auth_check(name: &str, e: &AuthError, tenant: &Tenant) -> Check {
    match e {
        AuthError::Aadsts {
            status,
            code,
            error,
            description,
            thumbprint,
            ..
        } => {
            let mut detail = if description.starts_with(&format!("AADSTS{code}")) {
                format!("{description} ({error}, HTTP {status})")
            } else {
                format!("AADSTS{code} ({error}, HTTP {status}): {description}")
            };
            let mut fix = e.fix().to_owned();
            if let Some(t) = thumbprint {
                detail.push_str(&format!("; the collector sent {t}"));
                fix.push_str(&format!("; the collector sent {t}"));
            }
            if matches!(code, 90002 | 90038 | 500011) {
                fix.push_str(&format!(
                    " (now: cloud = {}, login host {})",
                    cloud_name(tenant.cloud),
                    tenant.endpoints.login
                ));
            }
            fix.push_str(&format!(
                "; see https://login.microsoftonline.com/error?code={code}"
            ));
            Check::fail(name, detail, fix).with_code(Some(format!("AADSTS{code}")))
        }
        other => Check::fail(name, other.to_string(), other.fix()),
    }
}

/// A Management API error as a failed check: code and message in the detail, its fix.
fn api_check(name: &str, e: &ApiError) -> Check {
    match e {
        ApiError::Auth { source, .. } => Check::fail(name, source.to_string(), source.fix()),
        ApiError::Service {
            status,
            code,
            message,
            ..
        } => Check::fail(name, format!("HTTP {status} {code}: {message}"), e.fix())
            .with_code(Some(code.clone())),
        ApiError::AuditDisabled { call, detail, .. } => Check::fail(
            name,
            format!(
                "unified audit logging is off for tenant {} ({detail})",
                call.tenant
            ),
            e.fix(),
        )
        .with_code(Some("DataServiceException".into())),
        other => Check::fail(name, other.to_string(), other.fix())
            .with_code(other.code().map(str::to_owned)),
    }
}

/// The `roles` claim of an access token: its payload (the middle base64url segment) decoded
/// without verifying anything. `Some(empty)` when the claim is absent (no admin consent);
/// `None` when the token is not a readable JWT.
pub fn token_roles(bearer: &str) -> Option<Vec<String>> {
    let mut parts = bearer.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    match claims.get("roles") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        Some(_) => None,
    }
}

fn roles_text(roles: &[String]) -> String {
    if roles.is_empty() {
        "the token carries no roles (no admin consent)".to_owned()
    } else {
        format!("the token carries roles {}", roles.join(", "))
    }
}

/// `roles.manage`, and whether `ActivityFeed.Read` is consented (true when unknown).
fn manage_roles_check(roles: Option<&[String]>, cts: &[ContentType]) -> (Check, bool) {
    let name = "roles.manage";
    let Some(roles) = roles else {
        return (
            Check::warn(
                name,
                "the access token is not a readable JWT: its roles cannot be checked",
                "if the listings below fail with AF10001, grant admin consent for ActivityFeed.Read",
            ),
            true,
        );
    };
    let has = |r: &str| roles.iter().any(|x| x.eq_ignore_ascii_case(r));
    if !has(ACTIVITY_FEED_READ) {
        let check = Check::fail(
            name,
            format!("{}; ActivityFeed.Read is missing", roles_text(roles)),
            CONSENT_MANAGE_FIX,
        )
        .with_code(Some("AF10001".into()));
        return (check, false);
    }
    if cts.contains(&ContentType::DlpAll) && !has(ACTIVITY_FEED_READ_DLP) {
        return (
            Check::warn(
                name,
                format!(
                    "{}; ActivityFeed.ReadDlp is missing and DLP.All is collected",
                    roles_text(roles)
                ),
                CONSENT_DLP_FIX,
            ),
            true,
        );
    }
    (Check::ok(name, roles_text(roles)), true)
}

fn graph_roles_check(roles: Option<&[String]>) -> Check {
    let name = "roles.graph";
    let Some(roles) = roles else {
        return Check::warn(
            name,
            "the access token is not a readable JWT: its roles cannot be checked",
            "see graph.users",
        );
    };
    if roles
        .iter()
        .any(|r| GRAPH_READ_ROLES.iter().any(|g| g.eq_ignore_ascii_case(r)))
    {
        Check::ok(name, roles_text(roles))
    } else {
        Check::fail(
            name,
            format!("{}; User.Read.All is missing", roles_text(roles)),
            GRAPH_FIX,
        )
    }
}

fn graph_users_check(answer: GraphAnswer, tenant: &Tenant) -> Check {
    let name = "graph.users";
    match answer {
        GraphAnswer::Users(n) => {
            Check::ok(name, format!("users readable ({n} on a page of $top=1)"))
        }
        GraphAnswer::Refused {
            status,
            code,
            message,
        } => {
            let detail = format!(
                "HTTP {status}{}: {message}",
                code.as_ref().map(|c| format!(" {c}")).unwrap_or_default()
            );
            let fix = match (status, code.as_deref()) {
                (403, _) | (_, Some("Authorization_RequestDenied")) => GRAPH_FIX.to_owned(),
                (401, _) => format!(
                    "the Graph token was refused: check graph_url ({}) and graph_resource ({}) match the tenant's cloud",
                    tenant.endpoints.graph, tenant.endpoints.graph_resource
                ),
                (429 | 500..=599, _) => {
                    "a transient failure at Graph: run doctor again later".to_owned()
                }
                _ => format!(
                    "unexpected answer: check graph_url ({}) is the Graph host of the tenant's cloud",
                    tenant.endpoints.graph
                ),
            };
            Check::fail(name, detail, fix).with_code(code)
        }
        GraphAnswer::Unreachable(m) => Check::fail(
            name,
            format!("Graph could not be reached: {m}"),
            format!(
                "check network access to {} (proxy, firewall, DNS)",
                tenant.endpoints.graph
            ),
        ),
    }
}

/// `last_record.<ct>`: the newest object of today's and yesterday's event-date partitions.
async fn last_record<D: DeploymentProbe>(
    probe: &D,
    bucket: &str,
    tenant: &TenantId,
    ct: ContentType,
    now: DateTime<Utc>,
) -> Check {
    let name = last_record_name(ct);
    let today = now.date_naive();
    let mut newest: Option<NewestObject> = None;
    for day in [today, today - Duration::days(1)] {
        let prefix = format!(
            "ocsf/tenant_id={tenant}/content_type={ct}/event_date={}/",
            day.format("%Y-%m-%d")
        );
        match probe.newest_object(bucket, &prefix).await {
            Ok(Some(o)) if newest.as_ref().is_none_or(|n| o.modified > n.modified) => {
                newest = Some(o);
            }
            Ok(_) => {}
            Err(e) => return Check::fail(name, e.message, e.fix),
        }
    }
    match newest {
        Some(o) => Check::ok(
            name,
            format!(
                "last record written {} ago ({})",
                human_duration(now - o.modified),
                o.key
            ),
        ),
        None => Check::warn(
            name,
            format!(
                "no records in the last day (s3://{bucket}/ocsf/tenant_id={tenant}/content_type={ct}/, event dates today and yesterday)"
            ),
            "if the listing works, look at the lister and fetcher logs and the DLQ; a new subscription can take up to 12 hours, and a small tenant may have no content of this type for hours",
        ),
    }
}

/// `aws.table`, `aws.queue`, `aws.dlq`, `aws.bucket`.
async fn deployment_checks<D: DeploymentProbe>(probe: &D, names: &Deployment) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(match &names.table {
        None => Check::skipped(
            "aws.table",
            "not checked: give --table (stack output StateTableName)",
        ),
        Some(t) => match probe.table(t).await {
            Ok(info) if info.status.eq_ignore_ascii_case("ACTIVE") => Check::ok(
                "aws.table",
                format!(
                    "table {t} is ACTIVE{}",
                    info.items
                        .map(|n| format!(" (~{n} items)"))
                        .unwrap_or_default()
                ),
            ),
            Ok(info) => Check::warn(
                "aws.table",
                format!("table {t} is {}", info.status),
                "wait until the table is ACTIVE (a stack update may be in progress)",
            ),
            Err(e) => Check::fail("aws.table", format!("table {t}: {}", e.message), e.fix),
        },
    });
    out.push(match &names.queue_url {
        None => Check::skipped(
            "aws.queue",
            "not checked: give --queue-url (stack output FetchQueueUrl)",
        ),
        Some(q) => match probe.queue(q).await {
            Ok(d) => Check::ok(
                "aws.queue",
                format!(
                    "{q}: {} job(s) waiting, {} in flight",
                    d.visible, d.in_flight
                ),
            ),
            Err(e) => Check::fail("aws.queue", format!("{q}: {}", e.message), e.fix),
        },
    });
    out.push(match &names.dlq_url {
        None => Check::skipped(
            "aws.dlq",
            "not checked: give --dlq-url (stack output FetchDeadLetterQueueUrl)",
        ),
        Some(q) => match probe.queue(q).await {
            Ok(d) if d.visible + d.in_flight == 0 => Check::ok("aws.dlq", format!("{q}: empty")),
            Ok(d) => Check::fail(
                "aws.dlq",
                format!("{q}: {} dead-lettered job(s)", d.visible + d.in_flight),
                "inspect the DLQ: each message has a `reason` attribute (fix the cause, then redrive the messages to the fetch queue)",
            ),
            Err(e) => Check::fail("aws.dlq", format!("{q}: {}", e.message), e.fix),
        },
    });
    out.push(match &names.bucket {
        None => Check::skipped(
            "aws.bucket",
            "not checked: give --bucket (stack output EventsBucketName)",
        ),
        Some(b) => match probe.bucket(b).await {
            Ok(()) => Check::ok("aws.bucket", format!("bucket {b} is reachable")),
            Err(e) => Check::fail("aws.bucket", format!("bucket {b}: {}", e.message), e.fix),
        },
    });
    out
}

/// `3 d 4 h`, `2 h 5 min`, `12 min`, `40 s`.
fn human_duration(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, mins) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if days > 0 {
        format!("{days} d {hours} h")
    } else if hours > 0 {
        format!("{hours} h {mins} min")
    } else if mins > 0 {
        format!("{mins} min")
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests;
