//! [`ManagementClient`]: the reqwest adapter of [`ActivityApi`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, DATE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::body::BlobBody;
use super::error::{ApiError, CallInfo, Operation, code_retryable};
use super::uri::{ManageBase, PUBLISHER_PARAM, ensure_publisher, shorten};
use super::{ActivityApi, StartOutcome, Subscription};
use crate::auth::{Audience, TokenProvider, transport_message, truncate};
use crate::model::{ContentBlob, ContentType, Tenant, Window};
use crate::retry::{RetryPolicy, parse_retry_after};

/// Most pages one listing follows before giving up with [`ApiError::Paging`].
pub const MAX_PAGES: usize = 10_000;

/// Largest listing page or subscriptions answer read.
const MAX_PAGE_BYTES: usize = 32 * 1024 * 1024;

/// Largest error body read.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Blobs stay retrievable this long when a listing item has no `contentExpiration`.
const DEFAULT_RETENTION_DAYS: i64 = 7;

/// [`Shared::skew_ms`] before any response carried a readable `Date`.
const NO_SKEW: i64 = i64::MIN;

/// Counters shared by a client and its [`ManagementClient::with_deadline`] copies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApiStats {
    /// HTTP requests sent (every attempt counts).
    pub calls: u64,
    /// Requests per HTTP status (`0` = no response: connection failure or timeout).
    pub by_status: BTreeMap<u16, u64>,
    /// Requests per operation (`list_content`, `fetch_blob`, …).
    pub by_operation: BTreeMap<&'static str, u64>,
    /// Retries made (after throttling, 5xx, network failures, or a 401).
    pub retries: u64,
    /// Throttled answers (AF429, HTTP 429).
    pub throttled: u64,
    /// Calls given up because the deadline came first.
    pub deadline_hits: u64,
}

/// Shared by clones.
struct Shared {
    http: reqwest::Client,
    tenant: String,
    base: Result<ManageBase, String>,
    publisher: String,
    tokens: Arc<TokenProvider>,
    stats: Mutex<ApiStats>,
    /// Server clock minus ours in milliseconds, from the latest `Date` header; [`NO_SKEW`]
    /// before any.
    skew_ms: AtomicI64,
    /// When `skew_ms` was last measured.
    skew_at: Mutex<Option<std::time::Instant>>,
}

/// The Management Activity API client of one tenant. Cheap to clone; clones share the token
/// provider and the stats.
#[derive(Clone)]
pub struct ManagementClient {
    shared: Arc<Shared>,
    retry: RetryPolicy,
}

impl fmt::Debug for ManagementClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementClient")
            .field("tenant", &self.shared.tenant)
            .field("publisher", &self.shared.publisher)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A failed attempt.
struct Failure {
    error: ApiError,
    retryable: bool,
    status: Option<u16>,
    code: Option<String>,
    retry_after: Option<Duration>,
}

impl Failure {
    fn transport(call: &CallInfo, message: String) -> Failure {
        Failure {
            error: ApiError::Transport {
                call: Box::new(call.clone()),
                message: message.clone(),
            },
            retryable: true,
            status: None,
            code: None,
            retry_after: None,
        }
    }

    fn summary(&self) -> String {
        match &self.error {
            ApiError::Service {
                status,
                code,
                message,
                ..
            } => format!("HTTP {status} `{code}`: {message}"),
            ApiError::Transport { message, .. } | ApiError::Decode { message, .. } => {
                message.clone()
            }
            other => other.to_string(),
        }
    }
}

/// A listing page: its items and the next page's URL.
type Page = (Vec<Value>, Option<String>);

impl ManagementClient {
    /// A client for `tenant` (its `endpoints.manage` and `publisher_id`, or the tenant id when
    /// that is empty). `http` must come from [`super::http_client`] so that redirects are not
    /// followed.
    pub fn new(
        http: reqwest::Client,
        tenant: &Tenant,
        tokens: Arc<TokenProvider>,
        retry: RetryPolicy,
    ) -> ManagementClient {
        let publisher = match tenant.publisher_id.trim() {
            "" => tenant.id.to_string(),
            p => p.to_owned(),
        };
        ManagementClient {
            shared: Arc::new(Shared {
                http,
                tenant: tenant.id.to_string(),
                base: ManageBase::parse(&tenant.endpoints.manage),
                publisher,
                tokens,
                stats: Mutex::new(ApiStats::default()),
                skew_ms: AtomicI64::new(NO_SKEW),
                skew_at: Mutex::new(None),
            }),
            retry,
        }
    }

    /// A copy that never sleeps or waits past `deadline` (shares tokens and stats).
    pub fn with_deadline(&self, deadline: Instant) -> ManagementClient {
        ManagementClient {
            shared: self.shared.clone(),
            retry: self.retry.with_deadline(deadline),
        }
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// A snapshot of the shared counters.
    pub fn stats(&self) -> ApiStats {
        self.stats_lock().clone()
    }

    /// The token provider.
    pub fn tokens(&self) -> &Arc<TokenProvider> {
        &self.shared.tokens
    }

    /// Records the server's clock skew from a response's `Date` header; a missing or
    /// unreadable header changes nothing.
    fn note_server_date(&self, headers: &HeaderMap) {
        let skew = headers
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| skew_ms(v, SystemTime::now()));
        if let Some(ms) = skew {
            self.shared.skew_ms.store(ms, Ordering::Relaxed);
            *self
                .shared
                .skew_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(std::time::Instant::now());
        }
    }

    /// Checks that `content_uri` is a blob of this tenant on its Management API (same scheme,
    /// host and port as `endpoints.manage`; path `/api/v1.0/{tenant}/activity/feed/audit/{id}`
    /// or `/api/v1/…`) and returns it with `PublisherIdentifier` added.
    ///
    /// # Errors
    /// [`ApiError::ForeignUri`] (class `Refused`), or [`ApiError::Endpoint`] when
    /// `endpoints.manage` itself is invalid.
    pub fn check_content_uri(&self, content_uri: &str) -> Result<(Url, String), ApiError> {
        let base = self.base()?;
        let foreign = |reason: &str| ApiError::ForeignUri {
            tenant: self.shared.tenant.clone(),
            uri: shorten(content_uri),
            reason: reason.to_owned(),
        };
        let mut url = Url::parse(content_uri.trim())
            .map_err(|e| foreign(&format!("it is not a URL ({e})")))?;
        let id = base
            .check_blob(&url, &self.shared.tenant)
            .map_err(foreign)?;
        url.set_fragment(None);
        ensure_publisher(&mut url, &self.shared.publisher);
        Ok((url, id))
    }

    fn base(&self) -> Result<&ManageBase, ApiError> {
        self.shared.base.as_ref().map_err(|m| ApiError::Endpoint {
            tenant: self.shared.tenant.clone(),
            message: m.clone(),
        })
    }

    fn stats_lock(&self) -> std::sync::MutexGuard<'_, ApiStats> {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn call_info(&self, operation: Operation, content_type: Option<ContentType>) -> CallInfo {
        CallInfo {
            tenant: self.shared.tenant.clone(),
            operation,
            content_type,
            content_id: None,
        }
    }

    /// A feed URL with the given query pairs and `PublisherIdentifier`.
    fn feed_url(&self, op: &str, pairs: &[(&str, &str)]) -> Result<Url, ApiError> {
        let mut url = self.base()?.feed(&self.shared.tenant, op);
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
            q.append_pair(PUBLISHER_PARAM, &self.shared.publisher);
        }
        Ok(url)
    }

    /// Runs `f` unless the deadline passes first.
    async fn bounded<F: Future>(&self, f: F) -> Option<F::Output> {
        match self.retry.deadline {
            Some(d) => tokio::time::timeout_at(d, f).await.ok(),
            None => Some(f.await),
        }
    }

    fn deadline_error(&self, call: &CallInfo, attempts: u32, last: Option<String>) -> ApiError {
        self.stats_lock().deadline_hits += 1;
        tracing::warn!(tenant_id = %call.tenant, operation = %call.operation, attempt = attempts,
            "Deadline reached, giving up on the call.");
        ApiError::Deadline {
            call: Box::new(call.clone()),
            attempts,
            last,
        }
    }

    /// Sends `method url` with the bearer token, retrying as the policy allows, and hands a
    /// success response to `read` (whose failures may be retried too).
    async fn run<T, F, Fut>(
        &self,
        call: &CallInfo,
        method: Method,
        url: &Url,
        read: F,
    ) -> Result<T, ApiError>
    where
        F: Fn(reqwest::Response) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        let mut last: Option<String> = None;
        loop {
            if self.retry.expired() {
                return Err(self.deadline_error(call, attempt, last));
            }
            attempt += 1;
            let token = match self
                .bounded(self.shared.tokens.token(Audience::Manage))
                .await
            {
                None => return Err(self.deadline_error(call, attempt - 1, last)),
                Some(Err(source)) => {
                    return Err(ApiError::Auth {
                        call: Box::new(call.clone()),
                        source: Box::new(source),
                    });
                }
                Some(Ok(t)) => t,
            };
            let mut request = self
                .shared
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.bearer())
                .header(ACCEPT, "application/json");
            if method == Method::POST {
                request = request.header(CONTENT_LENGTH, "0").body(Vec::<u8>::new());
            }
            {
                let mut s = self.stats_lock();
                s.calls += 1;
                *s.by_operation.entry(call.operation.as_str()).or_default() += 1;
            }
            let failure = match self.bounded(request.send()).await {
                None => return Err(self.deadline_error(call, attempt, last)),
                Some(Err(e)) => {
                    *self.stats_lock().by_status.entry(0).or_default() += 1;
                    if e.is_builder() {
                        return Err(ApiError::Decode {
                            call: Box::new(call.clone()),
                            message: format!(
                                "the request could not be built: {}",
                                transport_message(&e)
                            ),
                        });
                    }
                    Failure::transport(call, transport_message(&e))
                }
                Some(Ok(response)) => {
                    self.note_server_date(response.headers());
                    let status = response.status();
                    *self
                        .stats_lock()
                        .by_status
                        .entry(status.as_u16())
                        .or_default() += 1;
                    if status.is_success() {
                        match self.bounded(read(response)).await {
                            None => return Err(self.deadline_error(call, attempt, last)),
                            Some(Ok(v)) => return Ok(v),
                            Some(Err(f)) => f,
                        }
                    } else if status.is_redirection() {
                        return Err(ApiError::Redirect {
                            call: Box::new(call.clone()),
                            status: status.as_u16(),
                        });
                    } else {
                        let f = match self.bounded(service_failure(call, response)).await {
                            None => return Err(self.deadline_error(call, attempt, last)),
                            Some(f) => f,
                        };
                        let consent = f
                            .code
                            .as_deref()
                            .is_some_and(|c| c.eq_ignore_ascii_case("AF10001"));
                        if status == StatusCode::UNAUTHORIZED && !consent && !reauthenticated {
                            reauthenticated = true;
                            self.shared.tokens.invalidate(Audience::Manage);
                            self.stats_lock().retries += 1;
                            tracing::warn!(tenant_id = %call.tenant, operation = %call.operation, attempt,
                                status = 401, "Access token refused, getting a new one and retrying.");
                            last = Some(f.summary());
                            continue;
                        }
                        f
                    }
                }
            };
            if !failure.retryable {
                return Err(failure.error);
            }
            let summary = failure.summary();
            if failure.status == Some(429)
                || failure
                    .code
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case("AF429"))
            {
                self.stats_lock().throttled += 1;
            }
            if !self.retry.allows_another(attempt) {
                tracing::warn!(tenant_id = %call.tenant, operation = %call.operation, attempt,
                    status = failure.status.unwrap_or(0), error = %summary, "Giving up after the last attempt.");
                return Err(ApiError::Exhausted {
                    call: Box::new(call.clone()),
                    attempts: attempt,
                    status: failure.status,
                    code: failure.code,
                    message: summary,
                });
            }
            let delay = self.retry.delay(attempt - 1, failure.retry_after);
            tracing::warn!(tenant_id = %call.tenant, operation = %call.operation,
                content_type = call.content_type.map(ContentType::as_str).unwrap_or(""),
                attempt, status = failure.status.unwrap_or(0), code = failure.code.as_deref().unwrap_or(""),
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                retry_after_ms = failure.retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                error = %summary, "Call failed, will retry.");
            if self.retry.pause(delay).await.is_err() {
                return Err(self.deadline_error(call, attempt, Some(summary)));
            }
            self.stats_lock().retries += 1;
            last = Some(summary);
        }
    }

    async fn list_content_impl(
        &self,
        content_type: ContentType,
        window: Window,
    ) -> Result<Vec<ContentBlob>, ApiError> {
        let call = self.call_info(Operation::ListContent, Some(content_type));
        let base = self.base()?;
        let start = window.start().format("%Y-%m-%dT%H:%M:%S").to_string();
        let end = window.end().format("%Y-%m-%dT%H:%M:%S").to_string();
        let mut url = self.feed_url(
            "subscriptions/content",
            &[
                ("contentType", content_type.as_str()),
                ("startTime", &start),
                ("endTime", &end),
            ],
        )?;
        let mut out = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut visited: HashSet<String> = HashSet::from([url.as_str().to_owned()]);
        for page in 1..=MAX_PAGES {
            let (items, next) = self
                .run(&call, Method::GET, &url, |r| read_page(&call, r))
                .await?;
            let listed = items.len();
            for item in items {
                let blob = self.parse_blob(&call, base, item, content_type, &window)?;
                if seen.insert(blob.content_id.clone()) {
                    out.push(blob);
                }
            }
            tracing::debug!(tenant_id = %call.tenant, content_type = %content_type, page, items = listed,
                "Listed a page of content.");
            let Some(next) = next else {
                return Ok(out);
            };
            let foreign = |reason: &str| ApiError::ForeignUri {
                tenant: call.tenant.clone(),
                uri: shorten(&next),
                reason: format!("next-page link refused: {reason}"),
            };
            let mut u =
                Url::parse(&next).map_err(|e| foreign(&format!("it is not a URL ({e})")))?;
            base.same_origin(&u).map_err(foreign)?;
            ensure_publisher(&mut u, &self.shared.publisher);
            if !visited.insert(u.as_str().to_owned()) {
                return Err(ApiError::Paging {
                    call: Box::new(call),
                    message: format!("page {page} links back to an earlier page"),
                });
            }
            url = u;
        }
        Err(ApiError::Paging {
            call: Box::new(call),
            message: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// One listing item, read leniently: missing ids or URIs are derived from each other,
    /// missing times fall back to the window start and the documented 7-day retention.
    fn parse_blob(
        &self,
        call: &CallInfo,
        base: &ManageBase,
        item: Value,
        requested: ContentType,
        window: &Window,
    ) -> Result<ContentBlob, ApiError> {
        let text = |k: &str| {
            item.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let content_type = match text("contentType").map(str::parse::<ContentType>) {
            Some(Ok(ct)) => ct,
            other => {
                tracing::warn!(tenant_id = %call.tenant, content_type = %requested,
                    listed = ?other.map(|r| r.map_err(|e| e.0)),
                    "A listed blob has no known content type; using the requested one.");
                requested
            }
        };
        let uri = text("contentUri").map(str::to_owned);
        let id = text("contentId").map(str::to_owned).or_else(|| {
            let u = Url::parse(uri.as_deref()?).ok()?;
            let last = u.path_segments()?.next_back()?.to_owned();
            (!last.is_empty()).then_some(last)
        });
        let (content_id, content_uri) = match (id, uri) {
            (Some(id), Some(uri)) => (id, uri),
            (Some(id), None) => {
                let u = base.feed(&self.shared.tenant, &format!("audit/{id}"));
                (id, u.to_string())
            }
            (None, _) => {
                return Err(ApiError::Decode {
                    call: Box::new(call.clone()),
                    message: "a listed blob has neither contentId nor contentUri".into(),
                });
            }
        };
        let created = text("contentCreated").and_then(parse_time);
        let content_created = created.unwrap_or_else(|| {
            tracing::warn!(tenant_id = %call.tenant, content_type = %content_type, content_id = %content_id,
                "A listed blob has no readable contentCreated; using the window start.");
            window.start()
        });
        let content_expiration = text("contentExpiration")
            .and_then(parse_time)
            .unwrap_or_else(|| content_created + chrono::Duration::days(DEFAULT_RETENTION_DAYS));
        Ok(ContentBlob {
            content_type,
            content_id,
            content_uri,
            content_created,
            content_expiration,
        })
    }

    async fn fetch_blob_impl(&self, content_uri: &str) -> Result<BlobBody, ApiError> {
        let (url, id) = self.check_content_uri(content_uri)?;
        let mut call = self.call_info(Operation::FetchBlob, content_type_of(&id));
        call.content_id = Some(id);
        let c = call.clone();
        self.run(&call, Method::GET, &url, move |r| {
            let c = c.clone();
            async move { Ok(BlobBody::from_response(r, c)) }
        })
        .await
    }

    /// Fetches a blob and reads it whole (at most `max_bytes`), retrying a connection dropped
    /// mid-body like any other transient failure. Prefer [`ActivityApi::fetch_blob`] with
    /// [`BlobBody::into_stream`] for large blobs.
    ///
    /// # Errors
    /// As [`ActivityApi::fetch_blob`], plus [`ApiError::TooLarge`].
    pub async fn fetch_blob_bytes(
        &self,
        content_uri: &str,
        max_bytes: usize,
    ) -> Result<bytes::Bytes, ApiError> {
        let (url, id) = self.check_content_uri(content_uri)?;
        let mut call = self.call_info(Operation::FetchBlob, content_type_of(&id));
        call.content_id = Some(id);
        let c = call.clone();
        self.run(&call, Method::GET, &url, move |r| {
            let c = c.clone();
            async move {
                match BlobBody::from_response(r, c.clone())
                    .into_bytes(max_bytes)
                    .await
                {
                    Ok(b) => Ok(Ok(b)),
                    Err(e @ ApiError::Transport { .. }) => Err(Failure {
                        error: e,
                        retryable: true,
                        status: None,
                        code: None,
                        retry_after: None,
                    }),
                    Err(e) => Ok(Err(e)),
                }
            }
        })
        .await?
    }

    async fn start_subscription_impl(
        &self,
        content_type: ContentType,
    ) -> Result<StartOutcome, ApiError> {
        let call = self.call_info(Operation::StartSubscription, Some(content_type));
        let url = self.feed_url(
            "subscriptions/start",
            &[("contentType", content_type.as_str())],
        )?;
        let read = |r: reqwest::Response| async move {
            // The answer echoes the subscription; only its success matters.
            let _ = r.bytes().await;
            Ok(())
        };
        match self.run(&call, Method::POST, &url, read).await {
            Ok(()) => {
                tracing::info!(tenant_id = %call.tenant, content_type = %content_type, "Subscription started.");
                Ok(StartOutcome::Started)
            }
            Err(ApiError::Service { code, .. }) if code.eq_ignore_ascii_case("AF20024") => {
                Ok(StartOutcome::AlreadyEnabled)
            }
            Err(e) => Err(e),
        }
    }

    async fn list_subscriptions_impl(&self) -> Result<Vec<Subscription>, ApiError> {
        let call = self.call_info(Operation::ListSubscriptions, None);
        let url = self.feed_url("subscriptions/list", &[])?;
        let items = self
            .run(&call, Method::GET, &url, |r| read_page(&call, r))
            .await?
            .0;
        Ok(items
            .into_iter()
            .filter_map(|item| {
                let content_type = item.get("contentType").and_then(Value::as_str)?.to_owned();
                let status = item
                    .get("status")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                Some(Subscription {
                    content_type,
                    status,
                })
            })
            .collect())
    }
}

impl ActivityApi for ManagementClient {
    fn list_content(
        &self,
        content_type: ContentType,
        window: &Window,
    ) -> impl Future<Output = Result<Vec<ContentBlob>, ApiError>> + Send {
        self.list_content_impl(content_type, *window)
    }

    fn fetch_blob(
        &self,
        content_uri: &str,
    ) -> impl Future<Output = Result<BlobBody, ApiError>> + Send {
        self.fetch_blob_impl(content_uri)
    }

    fn start_subscription(
        &self,
        content_type: ContentType,
    ) -> impl Future<Output = Result<StartOutcome, ApiError>> + Send {
        self.start_subscription_impl(content_type)
    }

    fn list_subscriptions(
        &self,
    ) -> impl Future<Output = Result<Vec<Subscription>, ApiError>> + Send {
        self.list_subscriptions_impl()
    }

    fn server_skew(&self) -> Option<chrono::Duration> {
        match self.shared.skew_ms.load(Ordering::Relaxed) {
            NO_SKEW => None,
            ms => chrono::Duration::try_milliseconds(ms),
        }
    }

    fn server_skew_age(&self) -> Option<std::time::Duration> {
        self.shared
            .skew_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|t| t.elapsed())
    }
}

/// Server clock minus `now` in milliseconds, from a `Date` header value (IMF-fixdate, or the
/// obsolete RFC 850 and asctime forms). The header has one-second resolution, so the server's
/// time is taken as the middle of that second. `None` for a value that is not an HTTP date.
fn skew_ms(date: &str, now: SystemTime) -> Option<i64> {
    let millis = |t: SystemTime| -> Option<i64> {
        match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).ok(),
            Err(e) => i64::try_from(e.duration().as_millis()).ok().map(|m| -m),
        }
    };
    let server = millis(httpdate::parse_http_date(date.trim()).ok()?)?;
    let skew = server.checked_add(500)?.checked_sub(millis(now)?)?;
    (skew != NO_SKEW).then_some(skew)
}

/// The content type named inside a content id (`…$audit_sharepoint$Audit_SharePoint$…`).
fn content_type_of(content_id: &str) -> Option<ContentType> {
    content_id
        .split('$')
        .find_map(|part| part.replacen('_', ".", 1).parse::<ContentType>().ok())
}

/// Reads a JSON array answer (a listing page or the subscriptions list) and the next-page link.
async fn read_page(call: &CallInfo, response: reqwest::Response) -> Result<Page, Failure> {
    let next = ["NextPageUri", "NextPageUrl"].iter().find_map(|h| {
        response
            .headers()
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    });
    let body = read_limited(response, MAX_PAGE_BYTES)
        .await
        .map_err(|m| Failure::transport(call, m))?;
    let decode = |message: String| Failure {
        error: ApiError::Decode {
            call: Box::new(call.clone()),
            message,
        },
        retryable: true,
        status: None,
        code: None,
        retry_after: None,
    };
    let items = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items,
        Ok(Value::Null) => Vec::new(),
        Ok(_) => return Err(decode("the answer is not a JSON array".into())),
        Err(e) => return Err(decode(format!("the answer is not JSON ({e})"))),
    };
    if items.iter().any(|i| !i.is_object()) {
        return Err(decode("the answer holds items that are not objects".into()));
    }
    Ok((items, next))
}

/// Reads an error answer: `{"error":{"code","message"}}` leniently, else the first 200 chars.
async fn service_failure(call: &CallInfo, response: reqwest::Response) -> Failure {
    let status = response.status().as_u16();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let server_date = header(DATE);
    let retry_after = header(RETRY_AFTER).and_then(|v| parse_retry_after(&v, Utc::now()));
    let body = read_limited(response, MAX_ERROR_BYTES)
        .await
        .unwrap_or_default();
    let (code, message) = parse_error_body(&body);
    let code = code.unwrap_or_else(|| format!("HTTP {status}"));
    let audit_off = !code.to_ascii_uppercase().starts_with("AF")
        && (code.starts_with("StartSubscription")
            || message.contains("DataServiceException")
            || message.contains("does not exist"));
    let error = if audit_off || message.contains("DataServiceException") {
        ApiError::AuditDisabled {
            call: Box::new(call.clone()),
            detail: message.clone(),
        }
    } else {
        ApiError::Service {
            call: Box::new(call.clone()),
            status,
            code: code.clone(),
            message,
            server_date,
        }
    };
    Failure {
        retryable: !matches!(error, ApiError::AuditDisabled { .. })
            && code_retryable(&code, status),
        error,
        status: Some(status),
        code: Some(code),
        retry_after,
    }
}

/// `(error.code, error.message)` of an error body; also accepts top-level `code`/`message`
/// and ASP.NET's `Message`. A non-JSON body gives its first 200 characters as the message.
fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
    let first_line = |s: &str| {
        let line = s
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        truncate(line, 300)
    };
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let err = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| err.get(*n).and_then(Value::as_str))
                .map(str::to_owned)
        };
        let code = field(&["code", "Code"]);
        let message = field(&["message", "Message"])
            .or_else(|| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        if code.is_some() || !message.is_empty() {
            return (code.map(|c| truncate(c.trim(), 300)), first_line(&message));
        }
    }
    (None, body_excerpt(body))
}

/// A body that is not the expected JSON, for an error message: its first 200 characters on one
/// line, or `(empty body)`.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        "(empty body)".into()
    } else {
        truncate(&one_line, 200)
    }
}

/// Reads at most `max` bytes of a body.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
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
            Err(e) => {
                return Err(format!(
                    "reading the answer failed ({})",
                    transport_message(&e)
                ));
            }
        }
    }
}

/// RFC 3339, or the same without a zone (taken as UTC).
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_parse_leniently() {
        assert_eq!(
            parse_error_body(br#"{"error":{"code":"AF20022","message":"No subscription found for the specified content type."}}"#),
            (Some("AF20022".into()), "No subscription found for the specified content type.".into())
        );
        assert_eq!(
            parse_error_body(br#"{"Message":"Authorization has been denied for this request."}"#),
            (
                None,
                "Authorization has been denied for this request.".into()
            )
        );
        let (code, msg) = parse_error_body(format!("<html>{}</html>", "x".repeat(500)).as_bytes());
        assert_eq!(code, None);
        assert_eq!(msg.chars().count(), 201);
        assert_eq!(parse_error_body(b""), (None, "(empty body)".into()));
        let (code, msg) = parse_error_body(
            br#"{"error":{"code":"StartSubscription [TenantId=x] failed. Exception","message":"Microsoft.Office.Compliance.Audit.DataServiceException: Tenant x does not exist.\r\n   at Stack()"}}"#,
        );
        assert!(code.unwrap().starts_with("StartSubscription"));
        assert_eq!(
            msg,
            "Microsoft.Office.Compliance.Audit.DataServiceException: Tenant x does not exist."
        );
    }

    #[test]
    fn times_with_and_without_zone() {
        let t = parse_time("2015-05-23T17:35:00.000Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2015-05-23T17:35:00+00:00");
        assert_eq!(parse_time("2015-05-23T17:35:00.000"), Some(t));
        assert_eq!(parse_time("2015-05-23T17:35:00"), Some(t));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn server_skew_from_the_date_header() {
        let at = |secs: u64, ms: u64| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms)
        };
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(skew_ms(date, at(784_111_777, 0)), Some(500));
        assert_eq!(skew_ms(date, at(784_111_777, 500)), Some(0));
        assert_eq!(skew_ms(date, at(784_111_957, 500)), Some(-180_000));
        assert_eq!(skew_ms(date, at(784_111_597, 500)), Some(180_000));
        assert_eq!(skew_ms(&format!(" {date} "), at(784_111_777, 500)), Some(0));
        // The obsolete forms a recipient must accept.
        assert_eq!(
            skew_ms("Sunday, 06-Nov-94 08:49:37 GMT", at(784_111_777, 500)),
            Some(0)
        );
        assert_eq!(
            skew_ms("Sun Nov  6 08:49:37 1994", at(784_111_777, 500)),
            Some(0)
        );
        // Far in the future or before our epoch-based now: still a number, no overflow.
        assert_eq!(
            skew_ms("Fri, 31 Dec 9999 23:59:59 GMT", SystemTime::UNIX_EPOCH),
            Some(253_402_300_799_500)
        );
        // Not dates.
        for garbage in [
            "",
            "yesterday",
            "2026-03-02T10:00:00Z",
            "Mon, 32 Mar 2026 10:00:00 GMT",
            "Mon, 02 Mar 2026 25:00:00 GMT",
            "Mon, 02 Mar 2026 10:00:00 +0100",
        ] {
            assert_eq!(skew_ms(garbage, SystemTime::now()), None, "{garbage:?}");
        }
    }

    #[test]
    fn content_type_from_content_id() {
        assert_eq!(
            content_type_of(
                "20201121063048785077405$20201121063218791111944$audit_azureactivedirectory$Audit_AzureActiveDirectory$na0030"
            ),
            Some(ContentType::AzureActiveDirectory)
        );
        assert_eq!(
            content_type_of("a$b$dlp_all$DLP_All$x"),
            Some(ContentType::DlpAll)
        );
        assert_eq!(content_type_of("opaque"), None);
    }
}
