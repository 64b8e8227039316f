//! Use cases: one per function, written against the ports only (no AWS or environment types),
//! so Lambda handlers, the local runner and tests drive the same code.

use std::future::Future;
use std::sync::Arc;

use crate::api::ActivityApi;
use crate::graph::DirectoryApi;
use crate::model::Tenant;

pub mod clients;
pub mod directory;
pub mod doctor;
pub mod fetcher;
pub mod graph_clients;
pub mod lister;
pub mod local;
pub mod subscriptions;
#[cfg(test)]
mod testkit;
pub mod users_sync;

/// A tenant's Management API client could not be built (credential missing or unreadable).
#[derive(Debug, Clone, thiserror::Error)]
#[error("tenant {tenant}: {message}")]
pub struct SetupError {
    /// Tenant id.
    pub tenant: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Gives the Management API client of a tenant (built once per process and reused).
pub trait ApiProvider: Send + Sync {
    /// The client type.
    type Api: ActivityApi + 'static;

    /// The client of `tenant`.
    ///
    /// # Errors
    /// [`SetupError`] when its credential cannot be loaded.
    fn api(
        &self,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<Arc<Self::Api>, SetupError>> + Send;
}

/// Gives the Graph client of a tenant (built once per process and reused).
pub trait DirectoryProvider: Send + Sync {
    /// The client type.
    type Api: DirectoryApi + 'static;

    /// The Graph client of `tenant`.
    ///
    /// # Errors
    /// [`SetupError`] when its credential cannot be loaded.
    fn directory(
        &self,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<Arc<Self::Api>, SetupError>> + Send;
}

impl<T: DirectoryProvider + ?Sized> DirectoryProvider for Arc<T> {
    type Api = T::Api;
    fn directory(
        &self,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<Arc<Self::Api>, SetupError>> + Send {
        (**self).directory(tenant)
    }
}

/// Microsoft's clock minus `ours` (the injected clock's now): the API measures its skew
/// against the system clock, which the injected clock may differ from (tests move it).
pub(crate) fn skew_against<A: ActivityApi + ?Sized>(
    api: &A,
    ours: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::Duration> {
    api.server_skew().map(|s| s + (chrono::Utc::now() - ours))
}

/// The clock, injected so tests can move time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> chrono::DateTime<chrono::Utc>;
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// Wall-clock time shifted by a fixed offset (tests that move an emulator's clock move this one
/// by the same amount).
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_ms: std::sync::atomic::AtomicI64,
}

impl OffsetClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
            + chrono::Duration::milliseconds(
                self.offset_ms.load(std::sync::atomic::Ordering::SeqCst),
            )
    }
}

impl<T: ApiProvider + ?Sized> ApiProvider for Arc<T> {
    type Api = T::Api;
    fn api(
        &self,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<Arc<Self::Api>, SetupError>> + Send {
        (**self).api(tenant)
    }
}

impl<T: Clock + ?Sized> Clock for Arc<T> {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (**self).now()
    }
}
