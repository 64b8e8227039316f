//! Port and adapter for Microsoft Graph users (fact sheet §5): `/v1.0/users/delta`.
//!
//! [`DirectoryApi`] is the port the users-sync use case is written against; [`GraphClient`] is
//! the HTTP adapter. Its guarantees:
//!
//! - a round starts at `/v1.0/users/delta?$select=…` ([`SELECT`]) or at a saved
//!   `@odata.deltaLink`, follows `@odata.nextLink` verbatim and ends at the next
//!   `@odata.deltaLink`; every link (the saved one included) must be on the tenant's Graph
//!   origin (scheme, host, port of `endpoints.graph`), else [`GraphError::ForeignLink`] and no
//!   request is sent;
//! - `@removed` entries become [`UserChange::Removed`];
//! - 410 Gone (or `syncStateNotFound` / `resyncRequired`) is [`GraphError::DeltaExpired`]: the
//!   caller restarts with a full round;
//! - 429, 503, other 5xx, timeouts and dropped connections are retried with the server's
//!   `Retry-After` (fractional seconds allowed) or full-jitter backoff, a bounded number of
//!   times, never sleeping past the deadline; a 401 drops the cached token and retries once;
//! - 403 `Authorization_RequestDenied` is [`GraphError::Forbidden`], whose message says to grant
//!   `User.Read.All` with admin consent;
//! - redirects are never followed (build the `reqwest::Client` with
//!   [`crate::api::http_client`]).

mod client;

use std::collections::BTreeMap;
use std::future::Future;

use serde::Serialize;

pub use client::{GraphClient, MAX_PAGES};

use crate::auth::AuthError;
use crate::model::DirectoryUser;

/// The properties requested (and tracked by delta).
pub const SELECT: &str =
    "id,displayName,userPrincipalName,mail,department,jobTitle,accountEnabled,userType";

/// A user as one delta entry describes it. Graph sends at least the changed properties of an
/// updated user and may leave unchanged ones out, so each field is `None` when absent (keep
/// the known value), `Some(None)` when sent as `null`, `Some(Some(v))` when sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserPatch {
    /// Object id.
    pub id: String,
    /// `userPrincipalName`.
    pub upn: Option<Option<String>>,
    /// `displayName`.
    pub display_name: Option<Option<String>>,
    /// `mail`.
    pub mail: Option<Option<String>>,
    /// `department`.
    pub department: Option<Option<String>>,
    /// `jobTitle`.
    pub job_title: Option<Option<String>>,
    /// `accountEnabled`.
    pub account_enabled: Option<Option<bool>>,
    /// `userType`.
    pub user_type: Option<Option<String>>,
}

impl UserPatch {
    /// The user after this entry: `base` (the known user, if any) with the sent fields
    /// replaced.
    pub fn apply(self, base: Option<DirectoryUser>) -> DirectoryUser {
        let mut u = base.unwrap_or_else(|| DirectoryUser {
            id: self.id.clone(),
            upn: None,
            display_name: None,
            mail: None,
            department: None,
            job_title: None,
            account_enabled: None,
            user_type: None,
        });
        u.id = self.id;
        fn set<T>(field: &mut Option<T>, sent: Option<Option<T>>) {
            if let Some(v) = sent {
                *field = v;
            }
        }
        set(&mut u.upn, self.upn);
        set(&mut u.display_name, self.display_name);
        set(&mut u.mail, self.mail);
        set(&mut u.department, self.department);
        set(&mut u.job_title, self.job_title);
        set(&mut u.account_enabled, self.account_enabled);
        set(&mut u.user_type, self.user_type);
        u
    }
}

/// One change of a delta round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// The user is new or changed: the properties sent.
    Upsert(UserPatch),
    /// The user was deleted (`@removed`, reason `deleted` or `changed`).
    Removed {
        /// Object id.
        id: String,
        /// `@removed.reason`.
        reason: String,
    },
}

/// Everything one delta round returned, across its pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaRound {
    /// Changes in the order Graph sent them (a full round: every user).
    pub changes: Vec<UserChange>,
    /// The `@odata.deltaLink` that continues from here (opaque; store it whole).
    pub delta_link: String,
    /// Pages read.
    pub pages: u32,
}

/// Counters shared by a client and its [`GraphClient::with_deadline`] copies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GraphStats {
    /// HTTP requests sent (every attempt counts).
    pub calls: u64,
    /// Requests per HTTP status (`0` = no response: connection failure or timeout).
    pub by_status: BTreeMap<u16, u64>,
    /// Retries made (after throttling, 5xx, network failures, or a 401).
    pub retries: u64,
    /// Throttled answers (HTTP 429).
    pub throttled: u64,
    /// Calls given up because the deadline came first.
    pub deadline_hits: u64,
    /// Pages read.
    pub pages: u64,
}

impl GraphStats {
    /// What happened between `before` and `self` (both from the same client).
    pub fn since(&self, before: &GraphStats) -> GraphStats {
        let mut by_status = self.by_status.clone();
        for (k, v) in &before.by_status {
            if let Some(n) = by_status.get_mut(k) {
                *n = n.saturating_sub(*v);
            }
        }
        by_status.retain(|_, v| *v > 0);
        GraphStats {
            calls: self.calls.saturating_sub(before.calls),
            by_status,
            retries: self.retries.saturating_sub(before.retries),
            throttled: self.throttled.saturating_sub(before.throttled),
            deadline_hits: self.deadline_hits.saturating_sub(before.deadline_hits),
            pages: self.pages.saturating_sub(before.pages),
        }
    }
}

/// Errors of the Graph client. Messages name the tenant and what to fix; they never hold a
/// token or a delta link.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The delta link expired (410 Gone, `syncStateNotFound`): start a full round.
    #[error(
        "tenant `{tenant}`: Graph users/delta: the delta token expired (HTTP {status} `{code}`); a full resync is needed"
    )]
    DeltaExpired {
        /// Tenant id.
        tenant: String,
        /// HTTP status.
        status: u16,
        /// Graph error code.
        code: String,
    },
    /// The app may not read users (403 `Authorization_RequestDenied`).
    #[error(
        "tenant `{tenant}`: Graph refused to list users ({code}: {message}); fix: grant the app registration the Microsoft Graph application permission `User.Read.All` and grant admin consent for the tenant"
    )]
    Forbidden {
        /// Tenant id.
        tenant: String,
        /// Graph error code.
        code: String,
        /// Graph's message.
        message: String,
    },
    /// No token for Graph.
    #[error("tenant `{tenant}`: Graph token: {source}")]
    Auth {
        /// Tenant id.
        tenant: String,
        /// The token error (with its own fix).
        #[source]
        source: Box<AuthError>,
    },
    /// Graph answered with an error that is not retried.
    #[error("tenant `{tenant}`: Graph users/delta answered HTTP {status} `{code}`: {message}")]
    Service {
        /// Tenant id.
        tenant: String,
        /// HTTP status.
        status: u16,
        /// Graph error code (`HTTP {status}` when none).
        code: String,
        /// Graph's message.
        message: String,
    },
    /// Every allowed attempt failed with a retryable error.
    #[error(
        "tenant `{tenant}`: Graph users/delta failed after {attempts} attempt(s): {message}; Graph may be throttling or unavailable, the next run retries"
    )]
    Exhausted {
        /// Tenant id.
        tenant: String,
        /// Attempts made.
        attempts: u32,
        /// HTTP status of the last attempt (`None`: no answer).
        status: Option<u16>,
        /// The last failure.
        message: String,
    },
    /// The deadline came before the round finished.
    #[error(
        "tenant `{tenant}`: Graph users/delta stopped at the deadline after {attempts} attempt(s){}; the next run continues",
        last.as_ref().map(|l| format!(" (last: {l})")).unwrap_or_default()
    )]
    Deadline {
        /// Tenant id.
        tenant: String,
        /// Attempts of the call in progress.
        attempts: u32,
        /// The last failure, if any.
        last: Option<String>,
    },
    /// A link is not on the tenant's Graph origin; nothing was sent to it.
    #[error(
        "tenant `{tenant}`: refused a Graph link outside {origin}: {reason}; check the tenant's graph_url"
    )]
    ForeignLink {
        /// Tenant id.
        tenant: String,
        /// The Graph origin expected.
        origin: String,
        /// Why it was refused.
        reason: String,
    },
    /// `endpoints.graph` is not a usable base URL.
    #[error(
        "tenant `{tenant}`: graph endpoint `{url}` is invalid ({message}); fix the tenant's graph_url"
    )]
    Endpoint {
        /// Tenant id.
        tenant: String,
        /// The configured URL.
        url: String,
        /// Why.
        message: String,
    },
    /// Graph answered with a redirect (never followed: it could carry the token elsewhere).
    #[error(
        "tenant `{tenant}`: Graph answered with redirect {status}, which is not followed; check the tenant's graph_url"
    )]
    Redirect {
        /// Tenant id.
        tenant: String,
        /// HTTP status.
        status: u16,
    },
    /// The answer is not what Graph documents (not JSON, no delta link, looping pages).
    #[error("tenant `{tenant}`: Graph users/delta: {message}")]
    Protocol {
        /// Tenant id.
        tenant: String,
        /// What is wrong.
        message: String,
    },
}

impl GraphError {
    /// True for errors an operator must fix (permissions, credentials, endpoints): retrying
    /// without a change fails the same way.
    pub fn is_config(&self) -> bool {
        match self {
            GraphError::Forbidden { .. }
            | GraphError::Endpoint { .. }
            | GraphError::ForeignLink { .. }
            | GraphError::Redirect { .. } => true,
            GraphError::Auth { source, .. } => source.is_config(),
            _ => false,
        }
    }
}

/// Graph users of one tenant.
pub trait DirectoryApi: Send + Sync {
    /// One delta round across all its pages: a full round (every user) when `delta_link` is
    /// `None`, else the changes since that link.
    ///
    /// # Errors
    /// [`GraphError::DeltaExpired`] when the link must be replaced by a full round; others as
    /// documented on [`GraphError`].
    fn users_delta(
        &self,
        delta_link: Option<&str>,
    ) -> impl Future<Output = Result<DeltaRound, GraphError>> + Send;

    /// A snapshot of the counters (shared by every copy of the client).
    fn stats(&self) -> GraphStats;
}

impl<T: DirectoryApi + ?Sized> DirectoryApi for std::sync::Arc<T> {
    fn users_delta(
        &self,
        delta_link: Option<&str>,
    ) -> impl Future<Output = Result<DeltaRound, GraphError>> + Send {
        (**self).users_delta(delta_link)
    }
    fn stats(&self) -> GraphStats {
        (**self).stats()
    }
}

#[cfg(test)]
mod tests;
