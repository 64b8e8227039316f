//! [`GraphClient`]: the reqwest adapter of [`DirectoryApi`].

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, RETRY_AFTER};
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::{DeltaRound, DirectoryApi, GraphError, GraphStats, SELECT, UserChange, UserPatch};
use crate::api::client::{body_excerpt, read_limited};
use crate::auth::{Audience, TokenProvider, transport_message, truncate};
use crate::model::Tenant;
use crate::retry::{RetryPolicy, parse_retry_after};

/// Most pages one round follows before giving up with [`GraphError::Protocol`].
pub const MAX_PAGES: u32 = 100_000;

/// Largest page read.
const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;

/// Largest error body read.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// The tenant's Graph base: where a round starts and the origin every link must be on.
struct GraphBase {
    /// `endpoints.graph` without a trailing `/` (it may carry a path prefix).
    root: String,
    origin: url::Origin,
}

struct Shared {
    http: reqwest::Client,
    tenant: String,
    /// The base, or the configured URL and why it is unusable.
    base: Result<GraphBase, (String, String)>,
    tokens: Arc<TokenProvider>,
    stats: Mutex<GraphStats>,
}

/// The Graph client of one tenant. Cheap to clone; clones share the token provider and stats.
#[derive(Clone)]
pub struct GraphClient {
    shared: Arc<Shared>,
    retry: RetryPolicy,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("tenant", &self.shared.tenant)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A failed attempt that may be retried.
struct Retryable {
    status: Option<u16>,
    retry_after: Option<Duration>,
    message: String,
}

impl GraphClient {
    /// A client for `tenant` (its `endpoints.graph`). `tokens` must be the tenant's provider
    /// (Graph tokens use [`Audience::Graph`]); `http` must come from
    /// [`crate::api::http_client`] so that redirects are not followed.
    pub fn new(
        http: reqwest::Client,
        tenant: &Tenant,
        tokens: Arc<TokenProvider>,
        retry: RetryPolicy,
    ) -> GraphClient {
        let id = tenant.id.to_string();
        let raw = tenant.endpoints.graph.trim();
        let base = Url::parse(raw)
            .map_err(|e| e.to_string())
            .and_then(|u| match u.scheme() {
                "https" | "http" if u.host().is_some() => Ok(u),
                _ => Err("it must be an http(s) URL with a host".to_owned()),
            })
            .map(|u| GraphBase {
                root: u.as_str().trim_end_matches('/').to_owned(),
                origin: u.origin(),
            })
            .map_err(|message| (truncate(raw, 200), message));
        GraphClient {
            shared: Arc::new(Shared {
                http,
                tenant: id,
                base,
                tokens,
                stats: Mutex::new(GraphStats::default()),
            }),
            retry,
        }
    }

    /// A copy that never sleeps or waits past `deadline` (shares tokens and stats).
    pub fn with_deadline(&self, deadline: Instant) -> GraphClient {
        GraphClient {
            shared: self.shared.clone(),
            retry: self.retry.with_deadline(deadline),
        }
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The URL a full round starts at: `{graph}/v1.0/users/delta?$select=…`.
    ///
    /// # Errors
    /// [`GraphError::Endpoint`] when `endpoints.graph` is invalid.
    pub fn start_url(&self) -> Result<Url, GraphError> {
        let base = self.base()?;
        Url::parse(&format!("{}/v1.0/users/delta?$select={SELECT}", base.root)).map_err(|e| {
            GraphError::Endpoint {
                tenant: self.shared.tenant.clone(),
                url: base.root.clone(),
                message: e.to_string(),
            }
        })
    }

    /// Parses `link` and checks it is on the tenant's Graph origin.
    ///
    /// # Errors
    /// [`GraphError::ForeignLink`] (nothing is sent), [`GraphError::Endpoint`].
    pub fn check_link(&self, link: &str, what: &str) -> Result<Url, GraphError> {
        let base = self.base()?;
        let foreign = |reason: String| GraphError::ForeignLink {
            tenant: self.shared.tenant.clone(),
            origin: base.origin.ascii_serialization(),
            reason,
        };
        let url = Url::parse(link.trim())
            .map_err(|e| foreign(format!("the {what} is not a URL ({e})")))?;
        if url.origin() != base.origin {
            return Err(foreign(format!(
                "the {what} points to {}",
                url.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    fn base(&self) -> Result<&GraphBase, GraphError> {
        self.shared
            .base
            .as_ref()
            .map_err(|(url, message)| GraphError::Endpoint {
                tenant: self.shared.tenant.clone(),
                url: url.clone(),
                message: message.clone(),
            })
    }

    fn stats_lock(&self) -> std::sync::MutexGuard<'_, GraphStats> {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn bounded<F: Future>(&self, f: F) -> Option<F::Output> {
        match self.retry.deadline {
            Some(d) => tokio::time::timeout_at(d, f).await.ok(),
            None => Some(f.await),
        }
    }

    fn deadline_error(&self, attempts: u32, last: Option<String>) -> GraphError {
        self.stats_lock().deadline_hits += 1;
        tracing::warn!(tenant_id = %self.shared.tenant, attempt = attempts,
            "Deadline reached, giving up on the Graph call.");
        GraphError::Deadline {
            tenant: self.shared.tenant.clone(),
            attempts,
            last,
        }
    }

    /// GETs one page, retrying as the policy allows; returns its JSON.
    async fn get_page(&self, url: &Url) -> Result<Value, GraphError> {
        let tenant = &self.shared.tenant;
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        let mut last: Option<String> = None;
        loop {
            if self.retry.expired() {
                return Err(self.deadline_error(attempt, last));
            }
            attempt += 1;
            let token = match self
                .bounded(self.shared.tokens.token(Audience::Graph))
                .await
            {
                None => return Err(self.deadline_error(attempt - 1, last)),
                Some(Err(source)) => {
                    return Err(GraphError::Auth {
                        tenant: tenant.clone(),
                        source: Box::new(source),
                    });
                }
                Some(Ok(t)) => t,
            };
            let request = self
                .shared
                .http
                .get(url.clone())
                .bearer_auth(token.bearer())
                .header(ACCEPT, "application/json");
            self.stats_lock().calls += 1;
            let failure = match self.bounded(request.send()).await {
                None => return Err(self.deadline_error(attempt, last)),
                Some(Err(e)) => {
                    *self.stats_lock().by_status.entry(0).or_default() += 1;
                    Retryable {
                        status: None,
                        retry_after: None,
                        message: transport_message(&e),
                    }
                }
                Some(Ok(response)) => {
                    let status = response.status();
                    *self
                        .stats_lock()
                        .by_status
                        .entry(status.as_u16())
                        .or_default() += 1;
                    if status.is_success() {
                        match self.bounded(read_json(response)).await {
                            None => return Err(self.deadline_error(attempt, last)),
                            Some(Ok(v)) => return Ok(v),
                            Some(Err(message)) => Retryable {
                                status: Some(status.as_u16()),
                                retry_after: None,
                                message,
                            },
                        }
                    } else if status.is_redirection() {
                        return Err(GraphError::Redirect {
                            tenant: tenant.clone(),
                            status: status.as_u16(),
                        });
                    } else {
                        let retry_after = response
                            .headers()
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| parse_retry_after(v, Utc::now()));
                        let body = match self.bounded(read_limited(response, MAX_ERROR_BYTES)).await
                        {
                            None => return Err(self.deadline_error(attempt, last)),
                            Some(b) => b.unwrap_or_default(),
                        };
                        let (code, message) = parse_error_body(&body);
                        let code = code.unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
                        let resync = ["syncStateNotFound", "resyncRequired", "syncStateInvalid"]
                            .iter()
                            .any(|c| code.eq_ignore_ascii_case(c));
                        match status {
                            StatusCode::UNAUTHORIZED if !reauthenticated => {
                                reauthenticated = true;
                                self.shared.tokens.invalidate(Audience::Graph);
                                self.stats_lock().retries += 1;
                                tracing::warn!(tenant_id = %tenant, attempt, status = 401, code = %code,
                                    "Graph refused the access token, getting a new one and retrying.");
                                last = Some(format!("HTTP 401 `{code}`: {message}"));
                                continue;
                            }
                            StatusCode::GONE => {
                                return Err(GraphError::DeltaExpired {
                                    tenant: tenant.clone(),
                                    status: 410,
                                    code,
                                });
                            }
                            s if resync && s.is_client_error() => {
                                return Err(GraphError::DeltaExpired {
                                    tenant: tenant.clone(),
                                    status: s.as_u16(),
                                    code,
                                });
                            }
                            StatusCode::FORBIDDEN => {
                                return Err(GraphError::Forbidden {
                                    tenant: tenant.clone(),
                                    code,
                                    message,
                                });
                            }
                            s if s == StatusCode::TOO_MANY_REQUESTS
                                || s == StatusCode::REQUEST_TIMEOUT
                                || s.is_server_error() =>
                            {
                                Retryable {
                                    status: Some(s.as_u16()),
                                    retry_after,
                                    message: format!("HTTP {} `{code}`: {message}", s.as_u16()),
                                }
                            }
                            s => {
                                return Err(GraphError::Service {
                                    tenant: tenant.clone(),
                                    status: s.as_u16(),
                                    code,
                                    message,
                                });
                            }
                        }
                    }
                }
            };
            if failure.status == Some(429) {
                self.stats_lock().throttled += 1;
            }
            if !self.retry.allows_another(attempt) {
                tracing::warn!(tenant_id = %tenant, attempt, status = failure.status.unwrap_or(0),
                    error = %failure.message, "Giving up on the Graph call after the last attempt.");
                return Err(GraphError::Exhausted {
                    tenant: tenant.clone(),
                    attempts: attempt,
                    status: failure.status,
                    message: failure.message,
                });
            }
            let delay = self.retry.delay(attempt - 1, failure.retry_after);
            tracing::warn!(tenant_id = %tenant, attempt, status = failure.status.unwrap_or(0),
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                retry_after_ms = failure.retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                error = %failure.message, "Graph call failed, will retry.");
            if self.retry.pause(delay).await.is_err() {
                return Err(self.deadline_error(attempt, Some(failure.message)));
            }
            self.stats_lock().retries += 1;
            last = Some(failure.message);
        }
    }

    async fn users_delta_impl(&self, delta_link: Option<&str>) -> Result<DeltaRound, GraphError> {
        let tenant = self.shared.tenant.clone();
        let protocol = |message: String| GraphError::Protocol {
            tenant: tenant.clone(),
            message,
        };
        let mut url = match delta_link {
            None => self.start_url()?,
            Some(link) => self.check_link(link, "saved delta link")?,
        };
        let mut visited: HashSet<String> = HashSet::new();
        let mut changes = Vec::new();
        let mut pages = 0u32;
        while pages < MAX_PAGES {
            let page = self.get_page(&url).await?;
            pages += 1;
            self.stats_lock().pages += 1;
            let Value::Object(mut page) = page else {
                return Err(protocol(format!("page {pages} is not a JSON object")));
            };
            let items = match page.remove("value") {
                Some(Value::Array(items)) => items,
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return Err(protocol(format!("page {pages}: `value` is not an array"))),
            };
            let before = changes.len();
            for item in items {
                match parse_change(item) {
                    Some(c) => changes.push(c),
                    None => tracing::warn!(tenant_id = %tenant, page = pages,
                        "A Graph delta entry has no id; skipped."),
                }
            }
            tracing::debug!(tenant_id = %tenant, page = pages, entries = changes.len() - before,
                "Read a page of Graph users/delta.");
            let link = |name: &str| {
                page.get(name)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            if let Some(next) = link("@odata.nextLink") {
                let u = self.check_link(&next, "next-page link")?;
                if !visited.insert(u.as_str().to_owned()) {
                    return Err(protocol(format!(
                        "page {pages} links back to an earlier page"
                    )));
                }
                url = u;
                continue;
            }
            if let Some(delta) = link("@odata.deltaLink") {
                self.check_link(&delta, "delta link")?;
                return Ok(DeltaRound {
                    changes,
                    delta_link: delta,
                    pages,
                });
            }
            return Err(protocol(format!(
                "page {pages} has neither @odata.nextLink nor @odata.deltaLink"
            )));
        }
        Err(protocol(format!("more than {MAX_PAGES} pages")))
    }
}

impl DirectoryApi for GraphClient {
    fn users_delta(
        &self,
        delta_link: Option<&str>,
    ) -> impl Future<Output = Result<DeltaRound, GraphError>> + Send {
        self.users_delta_impl(delta_link)
    }

    fn stats(&self) -> GraphStats {
        self.stats_lock().clone()
    }
}

/// One delta entry; `None` without a usable `id`.
fn parse_change(item: Value) -> Option<UserChange> {
    let Value::Object(m) = item else {
        return None;
    };
    let id = m
        .get("id")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())?
        .to_owned();
    if let Some(removed) = m.get("@removed") {
        let reason = removed
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("deleted")
            .to_owned();
        return Some(UserChange::Removed { id, reason });
    }
    let text = |k: &str| -> Option<Option<String>> {
        m.get(k).map(|v| {
            v.as_str()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        })
    };
    Some(UserChange::Upsert(UserPatch {
        upn: text("userPrincipalName"),
        display_name: text("displayName"),
        mail: text("mail"),
        department: text("department"),
        job_title: text("jobTitle"),
        account_enabled: m.get("accountEnabled").map(Value::as_bool),
        user_type: text("userType"),
        id,
    }))
}

/// Reads and parses a success body.
async fn read_json(response: reqwest::Response) -> Result<Value, String> {
    let body = read_limited(response, MAX_PAGE_BYTES).await?;
    serde_json::from_slice(&body).map_err(|e| format!("the answer is not JSON ({e})"))
}

/// `(error.code, error.message)` of Graph's envelope; a non-JSON body gives its first 200
/// characters as the message.
fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let err = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
        let field = |n: &str| err.get(n).and_then(Value::as_str).map(str::trim);
        let code = field("code")
            .filter(|c| !c.is_empty())
            .map(|c| truncate(c, 100));
        let message = field("message")
            .map(|m| truncate(m, 300))
            .unwrap_or_default();
        if code.is_some() || !message.is_empty() {
            return (code, message);
        }
    }
    (None, body_excerpt(body))
}
