//! Access tokens for the Management Activity API and Graph: OAuth 2.0 client credentials against
//! Entra ID (fact sheet §4), with a client secret or a certificate (client-assertion JWT).
//!
//! [`TokenProvider`] caches one token per [`Audience`], refreshes it 5 minutes before it expires
//! (half its lifetime for very short-lived tokens), lets one caller at a time refresh while the
//! others wait for its result, retries 429/5xx/network failures with backoff, and turns AADSTS
//! refusals into [`AuthError::Aadsts`] with a fix the operator can apply.
//!
//! A provider built with a [`CredentialSource`] also picks up a rotated client secret or
//! certificate without a restart (warm Lambda containers live for hours): it reads the
//! credential again when Entra refuses it (invalid, expired or unknown secret or certificate)
//! and retries that token request once with the new one, and it reads it again before minting a
//! token once it is older than the credential TTL ([`DEFAULT_CREDENTIAL_TTL`]). One caller at a
//! time reads the source; a failed read keeps the credential in use.

mod credential;
mod der;
mod error;
mod source;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;

pub use credential::{
    ASSERTION_LIFETIME_SECS, CertificateCredential, ClientSecret, Credential, MIN_RSA_BITS,
};
pub(crate) use error::truncate;
pub use error::{AuthError, EXPIRED_CERTIFICATE_FIX, LOOKUP_FIX, aadsts_fix, aadsts_fix_for};
pub use source::{CredentialFuture, CredentialSource, DEFAULT_CREDENTIAL_TTL, RELOAD_RETRY_AFTER};
use source::{Reload, ReloadReason};

use crate::model::{Tenant, TokenEndpoint};
use crate::retry::{RetryPolicy, parse_retry_after};

/// Refresh a token this long before it expires (at most half its lifetime).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Lifetime assumed when a token response gives neither `expires_in` nor `expires_on`.
const DEFAULT_LIFETIME_SECS: i64 = 300;

/// Largest token response body read.
const MAX_TOKEN_RESPONSE: usize = 256 * 1024;

/// Which API a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// The Office 365 Management Activity API (`endpoints.manage_resource`).
    Manage,
    /// Microsoft Graph (`endpoints.graph_resource`).
    Graph,
}

impl Audience {
    /// `manage` or `graph`, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Manage => "manage",
            Audience::Graph => "graph",
        }
    }

    fn index(self) -> usize {
        match self {
            Audience::Manage => 0,
            Audience::Graph => 1,
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bearer token and its expiry. `Debug` never shows the value.
#[derive(Clone)]
pub struct AccessToken {
    value: Arc<str>,
    expires_at: DateTime<Utc>,
    refresh_at: DateTime<Utc>,
}

impl AccessToken {
    /// A token valid until `expires_at`, refreshed [`REFRESH_MARGIN`] before (at most half its
    /// remaining lifetime before, for short-lived tokens).
    pub fn new(value: String, expires_at: DateTime<Utc>) -> AccessToken {
        AccessToken::issued_at(value, expires_at, Utc::now())
    }

    fn issued_at(value: String, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> AccessToken {
        let lifetime = (expires_at - now).max(chrono::Duration::zero());
        let margin = chrono::Duration::from_std(REFRESH_MARGIN)
            .unwrap_or(chrono::Duration::minutes(5))
            .min(lifetime / 2);
        AccessToken {
            value: value.into(),
            expires_at,
            refresh_at: expires_at - margin,
        }
    }

    /// The value for `Authorization: Bearer …`. Never log it.
    pub fn bearer(&self) -> &str {
        &self.value
    }

    /// When the token expires.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// True while the token can be used without refreshing.
    pub fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        now < self.refresh_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// One audience's cache: the token, and a gate so that one caller at a time refreshes.
#[derive(Debug, Default)]
struct Slot {
    token: Mutex<Option<AccessToken>>,
    refresh: tokio::sync::Mutex<()>,
}

impl Slot {
    fn current(&self) -> Option<AccessToken> {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn set(&self, t: Option<AccessToken>) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = t;
    }
}

/// The credential in use and when it was last read.
#[derive(Clone)]
struct Loaded {
    credential: Arc<Credential>,
    /// Times the credential was replaced.
    generation: u64,
    /// Re-reads completed (whatever their outcome): a caller whose re-read was overtaken by
    /// another one does not read again.
    attempts: u64,
    /// When it was last read or confirmed unchanged (or when the last re-read failed).
    checked_at: Instant,
    /// The last re-read failed.
    failed: bool,
}

/// Gets and caches access tokens for one tenant and app registration.
pub struct TokenProvider {
    http: reqwest::Client,
    tenant: String,
    client_id: String,
    login: String,
    flavour: TokenEndpoint,
    manage_resource: String,
    graph_resource: String,
    loaded: Mutex<Loaded>,
    source: Option<Arc<dyn CredentialSource>>,
    credential_ttl: Duration,
    reload_gate: tokio::sync::Mutex<()>,
    reloads: AtomicU64,
    retry: RetryPolicy,
    slots: [Slot; 2],
    requests: AtomicU64,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("login", &self.login)
            .field("flavour", &self.flavour)
            .field("credential", &self.credential())
            .field("reloadable", &self.source.is_some())
            .field("credential_ttl", &self.credential_ttl)
            .finish_non_exhaustive()
    }
}

/// What one token request ended with.
enum Outcome {
    Token(AccessToken),
    /// Worth another attempt (429, 5xx, network), with the server's `Retry-After` if any.
    Retry {
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
    },
    Fail(AuthError),
}

impl TokenProvider {
    /// A provider for `tenant`'s app registration (`tenant.client_id`) using `credential`.
    /// `http` should come from [`crate::api::http_client`].
    pub fn new(http: reqwest::Client, tenant: &Tenant, credential: Credential) -> TokenProvider {
        TokenProvider {
            http,
            tenant: tenant.id.to_string(),
            client_id: tenant.client_id.trim().to_owned(),
            login: tenant.endpoints.login.trim_end_matches('/').to_owned(),
            flavour: tenant.token_endpoint,
            manage_resource: tenant
                .endpoints
                .manage_resource
                .trim_end_matches('/')
                .to_owned(),
            graph_resource: tenant
                .endpoints
                .graph_resource
                .trim_end_matches('/')
                .to_owned(),
            loaded: Mutex::new(Loaded {
                credential: Arc::new(credential),
                generation: 0,
                attempts: 0,
                checked_at: Instant::now(),
                failed: false,
            }),
            source: None,
            credential_ttl: DEFAULT_CREDENTIAL_TTL,
            reload_gate: tokio::sync::Mutex::new(()),
            reloads: AtomicU64::new(0),
            retry: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(8),
                deadline: None,
            },
            slots: [Slot::default(), Slot::default()],
            requests: AtomicU64::new(0),
        }
    }

    /// The same provider with another retry policy for token requests (default: 4 attempts,
    /// 500 ms base, 8 s cap).
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> TokenProvider {
        self.retry = retry;
        self
    }

    /// The same provider, reading its credential again from `source` when Entra refuses it and
    /// when it is older than the credential TTL (see [`TokenProvider::with_credential_ttl`]).
    /// `source` should read the same place the credential given to [`TokenProvider::new`] came
    /// from. Without a source the credential never changes.
    #[must_use]
    pub fn with_source(mut self, source: Arc<dyn CredentialSource>) -> TokenProvider {
        self.source = Some(source);
        self
    }

    /// The same provider with another credential TTL (default [`DEFAULT_CREDENTIAL_TTL`], one
    /// hour): a credential older than this is read again from the source before the next token
    /// is minted. Only meaningful with [`TokenProvider::with_source`].
    #[must_use]
    pub fn with_credential_ttl(mut self, ttl: Duration) -> TokenProvider {
        self.credential_ttl = ttl;
        self
    }

    /// The credential TTL (see [`TokenProvider::with_credential_ttl`]).
    pub fn credential_ttl(&self) -> Duration {
        self.credential_ttl
    }

    /// The token endpoint URL this provider posts to (also the `aud` of client assertions).
    pub fn token_url(&self) -> String {
        match self.flavour {
            TokenEndpoint::V2 => format!("{}/{}/oauth2/v2.0/token", self.login, self.tenant),
            TokenEndpoint::V1 => format!("{}/{}/oauth2/token", self.login, self.tenant),
        }
    }

    /// The credential in use now (for expiry checks: [`Credential::certificate`]); its `Debug`
    /// is redacted. A reload may replace it later.
    pub fn credential(&self) -> Arc<Credential> {
        self.snapshot().credential
    }

    /// Times the credential was replaced by a different one read from the source.
    pub fn credential_reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Token requests sent so far (every attempt counts).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A valid token for `audience`: the cached one while it is fresh, otherwise a new one.
    /// Concurrent callers share one refresh.
    ///
    /// # Errors
    /// [`AuthError::Aadsts`] when Entra refuses (see [`AuthError::is_config`]);
    /// [`AuthError::Http`] when the login host kept failing; [`AuthError::Decode`] for an
    /// unusable answer; [`AuthError::Credential`] when the assertion cannot be signed. A refusal
    /// of the credential is reported as is when reading the source again gave the same
    /// credential or failed (the failure is logged).
    pub async fn token(&self, audience: Audience) -> Result<AccessToken, AuthError> {
        let slot = &self.slots[audience.index()];
        if let Some(t) = slot.current().filter(|t| t.is_fresh(Utc::now())) {
            return Ok(t);
        }
        let _gate = slot.refresh.lock().await;
        // Another caller may have refreshed while this one waited.
        if let Some(t) = slot.current().filter(|t| t.is_fresh(Utc::now())) {
            return Ok(t);
        }
        let t = self.mint(audience).await?;
        slot.set(Some(t.clone()));
        Ok(t)
    }

    /// A new token: with the credential read again first if it is older than the TTL, and, if
    /// Entra refuses the credential, once more with the credential read again from its source
    /// (if that gives a different one).
    async fn mint(&self, audience: Audience) -> Result<AccessToken, AuthError> {
        let mut seen = self.snapshot();
        if self.source.is_some() && self.is_due(&seen) {
            self.reload(&seen, ReloadReason::Ttl).await;
            seen = self.snapshot();
        }
        let refused = match self.fetch(audience, &seen.credential).await {
            Err(e) if e.is_credential_refused() && self.source.is_some() => e,
            other => return other,
        };
        match self.reload(&seen, ReloadReason::Rejected).await {
            Reload::Changed => {
                let now = self.snapshot();
                tracing::info!(tenant_id = %self.tenant, audience = %audience,
                    "Retrying the token request with the reloaded credential.");
                self.fetch(audience, &now.credential).await
            }
            Reload::Unchanged => {
                tracing::warn!(tenant_id = %self.tenant, audience = %audience,
                    "The credential was read again after Entra refused it, but its source still holds the refused one: update the stored secret or certificate.");
                Err(refused)
            }
            Reload::Failed | Reload::NoSource => Err(refused),
        }
    }

    fn snapshot(&self) -> Loaded {
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// True when `loaded` is older than the TTL (or than [`RELOAD_RETRY_AFTER`] after a failed
    /// re-read).
    fn is_due(&self, loaded: &Loaded) -> bool {
        let wait = if loaded.failed {
            self.credential_ttl.min(RELOAD_RETRY_AFTER)
        } else {
            self.credential_ttl
        };
        loaded.checked_at.elapsed() >= wait
    }

    /// Reads the credential again from the source, unless another caller did since `seen` was
    /// taken. One caller at a time; a failure keeps the credential in use and is logged.
    async fn reload(&self, seen: &Loaded, reason: ReloadReason) -> Reload {
        let Some(source) = &self.source else {
            return Reload::NoSource;
        };
        let _gate = self.reload_gate.lock().await;
        {
            let current = self.snapshot();
            if current.attempts != seen.attempts || current.generation != seen.generation {
                // Another caller read the source meanwhile: use what it found.
                return if current.generation != seen.generation {
                    Reload::Changed
                } else if current.failed {
                    Reload::Failed
                } else {
                    Reload::Unchanged
                };
            }
        }
        let read = source.load().await;
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        loaded.attempts += 1;
        loaded.checked_at = Instant::now();
        match read {
            Ok(credential) if credential.same_as(&loaded.credential) => {
                loaded.failed = false;
                tracing::debug!(tenant_id = %self.tenant, reason = %reason,
                    "Credential read again: unchanged.");
                Reload::Unchanged
            }
            Ok(credential) => {
                let thumbprint = credential
                    .certificate()
                    .map(|c| c.thumbprint_hex().to_owned());
                loaded.credential = Arc::new(credential);
                loaded.generation += 1;
                loaded.failed = false;
                drop(loaded);
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(tenant_id = %self.tenant, client_id = %self.client_id,
                    reason = %reason, thumbprint = thumbprint.as_deref().unwrap_or("-"),
                    "credential reloaded");
                Reload::Changed
            }
            Err(e) => {
                loaded.failed = true;
                drop(loaded);
                tracing::warn!(tenant_id = %self.tenant, client_id = %self.client_id,
                    reason = %reason, error = %e,
                    "Reading the credential again failed; keeping the credential in use.");
                Reload::Failed
            }
        }
    }

    /// Drops the cached token of `audience` (after a 401): the next [`TokenProvider::token`]
    /// asks Entra again.
    pub fn invalidate(&self, audience: Audience) {
        self.slots[audience.index()].set(None);
    }

    fn resource(&self, audience: Audience) -> &str {
        match audience {
            Audience::Manage => &self.manage_resource,
            Audience::Graph => &self.graph_resource,
        }
    }

    async fn fetch(
        &self,
        audience: Audience,
        credential: &Credential,
    ) -> Result<AccessToken, AuthError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (status, message, retry_after) = match self.request(audience, credential).await {
                Outcome::Token(t) => {
                    tracing::info!(tenant_id = %self.tenant, audience = %audience,
                        expires_at = %t.expires_at().to_rfc3339(), "Access token obtained.");
                    return Ok(t);
                }
                Outcome::Fail(e) => return Err(e),
                Outcome::Retry {
                    status,
                    message,
                    retry_after,
                } => (status, message, retry_after),
            };
            let give_up = || AuthError::Http {
                tenant: self.tenant.clone(),
                client_id: self.client_id.clone(),
                status,
                attempts: attempt,
                message: message.clone(),
            };
            if !self.retry.allows_another(attempt) {
                return Err(give_up());
            }
            let delay = self.retry.delay(attempt - 1, retry_after);
            tracing::warn!(tenant_id = %self.tenant, audience = %audience, attempt,
                status = status.unwrap_or(0), delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %message, "Token request failed, will retry.");
            if self.retry.pause(delay).await.is_err() {
                return Err(give_up());
            }
        }
    }

    async fn request(&self, audience: Audience, credential: &Credential) -> Outcome {
        let url = self.token_url();
        let resource = self.resource(audience);
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", self.client_id.clone()),
        ];
        match self.flavour {
            TokenEndpoint::V2 => form.push(("scope", format!("{resource}/.default"))),
            TokenEndpoint::V1 => form.push(("resource", resource.to_owned())),
        }
        match credential {
            Credential::Secret(s) => form.push(("client_secret", s.expose().to_owned())),
            Credential::Certificate(c) => {
                let assertion = match c.assertion(&self.client_id, &url) {
                    Ok(a) => a,
                    Err(e) => return Outcome::Fail(e),
                };
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", assertion));
            }
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = match self.http.post(&url).form(&form).send().await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    status: None,
                    message: transport_message(&e),
                    retry_after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        let body = match read_limited(response, MAX_TOKEN_RESPONSE).await {
            Ok(b) => b,
            Err(message) => {
                return Outcome::Retry {
                    status: Some(status),
                    message,
                    retry_after,
                };
            }
        };
        self.interpret(status, &body, retry_after, credential)
    }

    fn interpret(
        &self,
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
        credential: &Credential,
    ) -> Outcome {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        if (200..300).contains(&status) {
            return match json.as_ref().and_then(|v| parse_token(v, Utc::now())) {
                Some(t) => Outcome::Token(t),
                None => Outcome::Fail(AuthError::Decode {
                    tenant: self.tenant.clone(),
                    client_id: self.client_id.clone(),
                    status,
                    message: if json.is_some() {
                        "the answer has no `access_token`".into()
                    } else {
                        "the answer is not JSON".into()
                    },
                }),
            };
        }
        let aad = json.as_ref().and_then(parse_aad_error);
        let retryable = status == 429 || status == 408 || status >= 500;
        if retryable {
            let message = match &aad {
                Some((code, error, description)) => {
                    format!("AADSTS{code} ({error}): {description}")
                }
                None => format!("HTTP {status}: {}", snippet(body)),
            };
            return Outcome::Retry {
                status: Some(status),
                message,
                retry_after,
            };
        }
        match aad {
            Some((code, error, description)) => {
                let thumbprint = match (credential, code) {
                    (Credential::Certificate(c), 700027 | 50012 | 5002723 | 50032) => {
                        Some(c.describe_thumbprint())
                    }
                    _ => None,
                };
                let fix = aadsts_fix_for(code, &description);
                Outcome::Fail(AuthError::Aadsts {
                    tenant: self.tenant.clone(),
                    client_id: self.client_id.clone(),
                    status,
                    code,
                    error,
                    description,
                    fix,
                    thumbprint,
                })
            }
            None => Outcome::Fail(AuthError::Http {
                tenant: self.tenant.clone(),
                client_id: self.client_id.clone(),
                status: Some(status),
                attempts: 1,
                message: format!(
                    "HTTP {status} without an Entra error body: {} (is endpoints.login the Entra login host?)",
                    snippet(body)
                ),
            }),
        }
    }
}

/// A number, or a string holding one (v1 token responses send strings).
fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// An [`AccessToken`] from a success body: `access_token` and `expires_in` (number or string),
/// else `expires_on` (epoch seconds), else a short default lifetime.
fn parse_token(v: &Value, now: DateTime<Utc>) -> Option<AccessToken> {
    let value = v.get("access_token")?.as_str()?.trim();
    if value.is_empty() {
        return None;
    }
    let expires_at = v
        .get("expires_in")
        .and_then(number)
        .map(|s| now + chrono::Duration::seconds(s.max(0)))
        .or_else(|| {
            v.get("expires_on")
                .and_then(number)
                .and_then(|e| DateTime::from_timestamp(e, 0))
        })
        .unwrap_or_else(|| now + chrono::Duration::seconds(DEFAULT_LIFETIME_SECS));
    Some(AccessToken::issued_at(value.to_owned(), expires_at, now))
}

/// `(code, error, description)` of an Entra error body; the code comes from `error_codes[0]`
/// or from `AADSTS<n>` in the description.
fn parse_aad_error(v: &Value) -> Option<(u32, String, String)> {
    let error = v.get("error")?.as_str()?.to_owned();
    let description = v
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("");
    let code = v
        .get("error_codes")
        .and_then(|c| c.get(0))
        .and_then(number)
        .and_then(|n| u32::try_from(n).ok())
        .or_else(|| {
            let rest = &description[description.find("AADSTS")? + 6..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0);
    Some((code, error, error::trim_description(description)))
}

/// Reads at most `max` bytes of a body.
async fn read_limited(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > max {
                    return Err(format!("the answer is larger than {max} bytes"));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(transport_message(&e)),
        }
    }
}

/// A reqwest error without its URL, with the kind of failure.
pub(crate) fn transport_message(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else if e.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", error::truncate(&detail, 200))
    }
}

/// The first 200 characters of a body, on one line.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        "(empty body)".into()
    } else {
        error::truncate(&one_line, 200)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expiry_from_number_string_or_expires_on() {
        let now = Utc::now();
        let t = parse_token(&json!({"access_token": "a", "expires_in": 3599}), now).unwrap();
        assert_eq!(t.expires_at(), now + chrono::Duration::seconds(3599));
        let t = parse_token(&json!({"access_token": "a", "expires_in": "600"}), now).unwrap();
        assert_eq!(t.expires_at(), now + chrono::Duration::seconds(600));
        let on = now.timestamp() + 1000;
        let t = parse_token(
            &json!({"access_token": "a", "expires_on": on.to_string()}),
            now,
        )
        .unwrap();
        assert_eq!(t.expires_at().timestamp(), on);
        let t = parse_token(&json!({"access_token": "a"}), now).unwrap();
        assert_eq!(
            t.expires_at(),
            now + chrono::Duration::seconds(DEFAULT_LIFETIME_SECS)
        );
        assert!(parse_token(&json!({"token_type": "Bearer", "expires_in": 5}), now).is_none());
        assert!(parse_token(&json!({"access_token": ""}), now).is_none());
    }

    #[test]
    fn refresh_five_minutes_early_or_at_half_life() {
        let now = Utc::now();
        let hour = AccessToken::issued_at("a".into(), now + chrono::Duration::seconds(3600), now);
        assert!(hour.is_fresh(now + chrono::Duration::seconds(3299)));
        assert!(!hour.is_fresh(now + chrono::Duration::seconds(3301)));
        let short = AccessToken::issued_at("a".into(), now + chrono::Duration::seconds(10), now);
        assert!(short.is_fresh(now + chrono::Duration::seconds(4)));
        assert!(!short.is_fresh(now + chrono::Duration::seconds(5)));
        let dead = AccessToken::issued_at("a".into(), now - chrono::Duration::seconds(1), now);
        assert!(!dead.is_fresh(now));
    }

    #[test]
    fn aad_error_bodies_parse_codes_from_either_place() {
        let body = json!({"error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x\r\nCorrelation ID: y",
            "error_codes": [7000215]});
        assert_eq!(
            parse_aad_error(&body),
            Some((
                7000215,
                "invalid_client".into(),
                "AADSTS7000215: Invalid client secret provided.".into()
            ))
        );
        let body = json!({"error": "invalid_request", "error_description": "AADSTS90002: Tenant not found."});
        assert_eq!(parse_aad_error(&body).map(|e| e.0), Some(90002));
        assert_eq!(
            parse_aad_error(&json!({"error": "x"})).map(|e| e.0),
            Some(0)
        );
        assert_eq!(parse_aad_error(&json!({"message": "no"})), None);
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = AccessToken::new("eyJ.secret.value".into(), Utc::now());
        let s = format!("{t:?}");
        assert!(!s.contains("secret") && s.contains("redacted"), "{s}");
        let c = Credential::secret("top-s3cret".into());
        assert!(!format!("{c:?}").contains("top-s3cret"));
    }
}
