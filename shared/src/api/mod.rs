//! Port and adapter for the Office 365 Management Activity API (fact sheet §2).
//!
//! [`ActivityApi`] is the port the use cases are written against; [`ManagementClient`] is the
//! HTTP adapter. Its guarantees:
//!
//! - `PublisherIdentifier` on every request, blob GETs and next-page links included;
//! - `NextPageUri` (or `NextPageUrl`, any case) followed verbatim until the last page, on the
//!   tenant's Management API origin only, with a page limit;
//! - a content URI is checked *before* anything is sent ([`ManagementClient::check_content_uri`]):
//!   same scheme, host and port as `endpoints.manage`, path
//!   `/api/v1.0/{this tenant}/activity/feed/audit/{id}`; anything else is
//!   [`ApiError::ForeignUri`], so a forged queue message cannot send the bearer token elsewhere;
//! - redirects are never followed: build the `reqwest::Client` with [`http_client`], and any 3xx
//!   answer is [`ApiError::Redirect`];
//! - AF429 (HTTP 403), 429, 5xx, timeouts and dropped connections are retried with full-jitter
//!   backoff or the server's `Retry-After`, never sleeping past the deadline; a 401 drops the
//!   cached token and retries once;
//! - every error has a class ([`ErrorClass`]) and a fix;
//! - the `Date` header of every response, success or error, gives the server's clock skew
//!   ([`ActivityApi::server_skew`]).

mod body;
pub(crate) mod client;
mod error;
mod uri;

use std::future::Future;

pub use body::BlobBody;
pub use client::{ApiStats, MAX_PAGES, ManagementClient};
pub use error::{ApiError, CallInfo, ErrorClass, Operation, code_class, code_fix};

use crate::model::{ContentBlob, ContentType, Window};

/// User agent of every request.
pub const USER_AGENT: &str = concat!("o365-collector/", env!("CARGO_PKG_VERSION"));

/// Outcome of starting a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// The subscription was created or re-enabled.
    Started,
    /// It was already enabled (`AF20024`): nothing changed, which is success.
    AlreadyEnabled,
}

/// One item of `/subscriptions/list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Content type, as the service spells it.
    pub content_type: String,
    /// `enabled` or `disabled`; absent in some answers.
    pub status: Option<String>,
}

/// The Management Activity API of one tenant.
pub trait ActivityApi: Send + Sync {
    /// Every blob listed for `content_type` whose `contentCreated` is in `window`, across all
    /// pages, without duplicates.
    ///
    /// # Errors
    /// [`ApiError`]; [`ErrorClass::Resubscribe`] when the subscription is missing or disabled,
    /// [`ErrorClass::Window`] when the window is refused.
    fn list_content(
        &self,
        content_type: ContentType,
        window: &Window,
    ) -> impl Future<Output = Result<Vec<ContentBlob>, ApiError>> + Send;

    /// Starts downloading a blob. The URI is checked first: one outside this tenant's
    /// Management API is refused with [`ApiError::ForeignUri`] and no request is sent.
    ///
    /// # Errors
    /// [`ApiError`]; [`ErrorClass::Expired`] for AF20051, [`ErrorClass::Gone`] for AF20050/404.
    fn fetch_blob(
        &self,
        content_uri: &str,
    ) -> impl Future<Output = Result<BlobBody, ApiError>> + Send;

    /// Starts the subscription of `content_type`; AF20024 (already enabled) is success.
    ///
    /// # Errors
    /// [`ApiError`]; [`ApiError::AuditDisabled`] when unified audit logging is off.
    fn start_subscription(
        &self,
        content_type: ContentType,
    ) -> impl Future<Output = Result<StartOutcome, ApiError>> + Send;

    /// The tenant's subscriptions.
    ///
    /// # Errors
    /// [`ApiError`].
    fn list_subscriptions(
        &self,
    ) -> impl Future<Output = Result<Vec<Subscription>, ApiError>> + Send;

    /// Microsoft's clock minus ours, from the `Date` header of the latest response (`None`
    /// before any response carried one). "Now" for the service is local time plus this.
    fn server_skew(&self) -> Option<chrono::Duration> {
        None
    }

    /// How long ago [`ActivityApi::server_skew`] was measured (`None`: never).
    fn server_skew_age(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The HTTP client every Management API and token call must use: no redirects followed (a
/// redirect could carry the bearer token to another host), connect timeout 10 s, request
/// timeout 60 s, no transparent gzip (size limits apply to what is on the wire), user agent
/// `o365-collector/<version>`.
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn try_http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(60))
        .no_gzip()
        .user_agent(USER_AGENT)
        .build()
}

/// [`try_http_client`]; if that fails (the TLS backend cannot be initialised), logs the error
/// and falls back to a client with only the no-redirect policy.
pub fn http_client() -> reqwest::Client {
    try_http_client().unwrap_or_else(|e| {
        tracing::error!(error = %e, "Building the HTTP client failed; using a minimal one.");
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}
