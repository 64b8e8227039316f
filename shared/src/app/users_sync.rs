//! Directory sync (the users-sync function): keep a current snapshot of every enabled tenant's
//! Entra users in the bucket, through Graph `users/delta`.
//!
//! Per tenant: without saved state, a full round; with a saved delta link and a readable
//! snapshot, a delta round applied to that snapshot (upserts merged, `@removed` deleted); a
//! delta link whose snapshot is missing or corrupt, or that Graph answers with 410 Gone, is
//! replaced by a full round (a *resync*). Durable first, state second: the new snapshot is
//! written ([`super::directory::write_snapshot`]), then the delta link saved. A crash between
//! the two re-applies the old link's changes to the newer snapshot next time, which converges
//! to the same users (each change carries the user's state at the end of the round).

use std::collections::BTreeMap;

use futures_util::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use super::directory::{SnapshotRead, read_snapshot, write_snapshot};
use super::{Clock, DirectoryProvider};
use crate::graph::{DeltaRound, DirectoryApi, GraphError, UserChange};
use crate::model::{DirectorySnapshot, DirectorySync, DirectoryUser, Tenant};
use crate::sink::ObjectSink;
use crate::store::{StateStore, StoreError};

/// Knobs of the users sync.
#[derive(Debug, Clone)]
pub struct UsersSyncSettings {
    /// Tenants synced at once.
    pub concurrency: usize,
    /// A tenant is not started when less than this is left before the deadline.
    pub min_time_left: std::time::Duration,
}

impl Default for UsersSyncSettings {
    fn default() -> Self {
        UsersSyncSettings {
            concurrency: 4,
            min_time_left: std::time::Duration::from_secs(10),
        }
    }
}

/// How a tenant was synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// First sync: a full round.
    Full,
    /// Changes since the saved delta link, applied to the snapshot.
    Delta,
    /// A full round replacing an unusable delta link or snapshot (see `resync_reason`).
    Resync,
}

/// Is a failure for an operator to fix, or will the next run retry it?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Permissions, credential or endpoint: fix what the message says.
    Config,
    /// Throttling, outages, deadline: the next run retries.
    Transient,
}

/// What happened to one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantSync {
    /// Tenant id.
    pub tenant_id: String,
    /// How it was synced (`None` when it failed before a round completed).
    pub mode: Option<SyncMode>,
    /// Why a resync was needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resync_reason: Option<String>,
    /// Users in the snapshot written.
    pub users: u64,
    /// Upserted entries received (a full round: every user).
    pub changes: u64,
    /// `@removed` entries received.
    pub removed: u64,
    /// Graph pages read.
    pub pages: u64,
    /// Graph requests sent (every attempt).
    pub calls: u64,
    /// Retries among them.
    pub retries: u64,
    /// Throttled answers (429).
    pub throttled: u64,
    /// What failed, with the fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the failure is a configuration problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
}

impl TenantSync {
    fn new(tenant: &Tenant) -> TenantSync {
        TenantSync {
            tenant_id: tenant.id.to_string(),
            mode: None,
            resync_reason: None,
            users: 0,
            changes: 0,
            removed: 0,
            pages: 0,
            calls: 0,
            retries: 0,
            throttled: 0,
            error: None,
            error_kind: None,
        }
    }

    fn fail(&mut self, message: String, kind: ErrorKind) {
        self.error = Some(message);
        self.error_kind = Some(kind);
    }
}

/// The report of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsersSyncReport {
    /// One entry per enabled tenant, ordered by tenant id.
    pub tenants: Vec<TenantSync>,
}

impl UsersSyncReport {
    /// Tenants that failed.
    pub fn failures(&self) -> usize {
        self.tenants.iter().filter(|t| t.error.is_some()).count()
    }

    /// Tenants that needed a resync.
    pub fn resyncs(&self) -> usize {
        self.tenants
            .iter()
            .filter(|t| t.mode == Some(SyncMode::Resync))
            .count()
    }
}

/// A failure of one tenant's sync.
enum Failed {
    Graph(GraphError),
    Store(StoreError),
    Sink(crate::sink::SinkError),
}

impl Failed {
    fn kind(&self) -> ErrorKind {
        match self {
            Failed::Graph(e) if e.is_config() => ErrorKind::Config,
            Failed::Store(e) if !e.is_retryable() => ErrorKind::Config,
            Failed::Sink(e) if !e.retryable => ErrorKind::Config,
            _ => ErrorKind::Transient,
        }
    }

    fn message(&self) -> String {
        match self {
            Failed::Graph(e) => e.to_string(),
            Failed::Store(e) => e.to_string(),
            Failed::Sink(e) => e.to_string(),
        }
    }
}

/// Syncs every enabled tenant, `settings.concurrency` at a time; a failing tenant is reported
/// and does not stop the others. Set the provider's deadline first so that no Graph call
/// outlives the invocation.
///
/// # Errors
/// [`StoreError`] only when the tenant list cannot be read.
pub async fn run<S, K, P, C>(
    store: &S,
    sink: &K,
    dirs: &P,
    clock: &C,
    settings: &UsersSyncSettings,
    deadline: Instant,
) -> Result<UsersSyncReport, StoreError>
where
    S: StateStore,
    K: ObjectSink,
    P: DirectoryProvider,
    C: Clock,
{
    let tenants: Vec<Tenant> = store
        .list_tenants()
        .await?
        .into_iter()
        .filter(|t| t.enabled)
        .collect();
    let mut out: Vec<TenantSync> = futures_util::stream::iter(tenants.iter())
        .map(|t| sync_tenant(store, sink, dirs, clock, t, settings, deadline))
        .buffer_unordered(settings.concurrency.max(1))
        .collect()
        .await;
    out.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    Ok(UsersSyncReport { tenants: out })
}

async fn sync_tenant<S, K, P, C>(
    store: &S,
    sink: &K,
    dirs: &P,
    clock: &C,
    tenant: &Tenant,
    settings: &UsersSyncSettings,
    deadline: Instant,
) -> TenantSync
where
    S: StateStore,
    K: ObjectSink,
    P: DirectoryProvider,
    C: Clock,
{
    let mut report = TenantSync::new(tenant);
    if deadline.saturating_duration_since(Instant::now()) < settings.min_time_left {
        report.fail(
            format!(
                "tenant `{}`: not started, the invocation deadline is too close; the next run syncs it (raise the function timeout if this repeats)",
                tenant.id
            ),
            ErrorKind::Transient,
        );
        return report;
    }
    let api = match dirs.directory(tenant).await {
        Ok(a) => a,
        Err(e) => {
            report.fail(e.to_string(), ErrorKind::Config);
            tracing::error!(tenant = %tenant.id, error = %e, "directory sync: no Graph client");
            return report;
        }
    };
    let before = api.stats();
    let result = tokio::time::timeout_at(
        deadline,
        sync_with(store, sink, &*api, clock, tenant, &mut report),
    )
    .await;
    let stats = api.stats().since(&before);
    report.pages = stats.pages;
    report.calls = stats.calls;
    report.retries = stats.retries;
    report.throttled = stats.throttled;
    match result {
        Ok(Ok(())) => {
            tracing::info!(tenant = %tenant.id, mode = ?report.mode, users = report.users,
                changes = report.changes, removed = report.removed, pages = report.pages,
                calls = report.calls, retries = report.retries, throttled = report.throttled,
                "directory synced");
        }
        Ok(Err(f)) => {
            let kind = f.kind();
            report.mode = None;
            report.fail(f.message(), kind);
            match kind {
                ErrorKind::Config => tracing::error!(tenant = %tenant.id,
                    error = report.error.as_deref().unwrap_or(""), "directory sync failed"),
                ErrorKind::Transient => tracing::warn!(tenant = %tenant.id,
                    error = report.error.as_deref().unwrap_or(""), "directory sync failed; the next run retries"),
            }
        }
        Err(_) => {
            report.mode = None;
            report.fail(
                format!(
                    "tenant `{}`: directory sync stopped at the invocation deadline; the next run continues from the saved state",
                    tenant.id
                ),
                ErrorKind::Transient,
            );
            tracing::warn!(tenant = %tenant.id, "directory sync stopped at the deadline");
        }
    }
    report
}

async fn sync_with<S, K, A, C>(
    store: &S,
    sink: &K,
    api: &A,
    clock: &C,
    tenant: &Tenant,
    report: &mut TenantSync,
) -> Result<(), Failed>
where
    S: StateStore,
    K: ObjectSink,
    A: DirectoryApi + ?Sized,
    C: Clock,
{
    let state = store
        .load_directory_sync(&tenant.id)
        .await
        .map_err(Failed::Store)?;
    let mut resync: Option<String> = None;
    if let Some(state) = state {
        match read_snapshot(sink, &tenant.id)
            .await
            .map_err(Failed::Sink)?
        {
            SnapshotRead::Found(snapshot) => match api.users_delta(Some(&state.delta_link)).await {
                Ok(round) => {
                    let users = snapshot.users.into_iter().map(|u| (u.id.clone(), u));
                    return finish(
                        store,
                        sink,
                        clock,
                        tenant,
                        report,
                        SyncMode::Delta,
                        users.collect(),
                        round,
                    )
                    .await;
                }
                Err(GraphError::DeltaExpired { status, code, .. }) => {
                    tracing::warn!(tenant = %tenant.id, status, code = %code,
                            "directory sync: the delta token expired; doing a full resync");
                    resync = Some(format!("the delta token expired (HTTP {status} `{code}`)"));
                }
                Err(e) => return Err(Failed::Graph(e)),
            },
            SnapshotRead::Missing => {
                tracing::warn!(tenant = %tenant.id,
                    "directory sync: a delta link is saved but the snapshot is missing; doing a full resync");
                resync = Some("the snapshot is missing".into());
            }
            SnapshotRead::Corrupt(why) => {
                tracing::warn!(tenant = %tenant.id, reason = %why,
                    "directory sync: the snapshot is unreadable; doing a full resync");
                resync = Some(format!("the snapshot is unreadable: {why}"));
            }
        }
    }
    let round = api.users_delta(None).await.map_err(Failed::Graph)?;
    let mode = if resync.is_some() {
        SyncMode::Resync
    } else {
        SyncMode::Full
    };
    report.resync_reason = resync;
    finish(
        store,
        sink,
        clock,
        tenant,
        report,
        mode,
        BTreeMap::new(),
        round,
    )
    .await
}

/// Applies a round to `users`, writes the snapshot, then saves the delta link.
#[allow(clippy::too_many_arguments)]
async fn finish<S, K, C>(
    store: &S,
    sink: &K,
    clock: &C,
    tenant: &Tenant,
    report: &mut TenantSync,
    mode: SyncMode,
    mut users: BTreeMap<String, DirectoryUser>,
    round: DeltaRound,
) -> Result<(), Failed>
where
    S: StateStore,
    K: ObjectSink,
    C: Clock,
{
    let (changes, removed) = apply(&mut users, round.changes);
    let synced_at = clock.now();
    let snapshot = DirectorySnapshot::new(tenant.id.clone(), synced_at, users.into_values());
    let count = snapshot.users.len() as u64;
    write_snapshot(sink, &snapshot)
        .await
        .map_err(Failed::Sink)?;
    store
        .save_directory_sync(
            &tenant.id,
            &DirectorySync {
                delta_link: round.delta_link,
                synced_at,
                users: count,
            },
        )
        .await
        .map_err(Failed::Store)?;
    report.mode = Some(mode);
    report.users = count;
    report.changes = changes;
    report.removed = removed;
    Ok(())
}

/// Applies changes in order; returns (upserts, removals) received.
fn apply(users: &mut BTreeMap<String, DirectoryUser>, changes: Vec<UserChange>) -> (u64, u64) {
    let (mut upserts, mut removed) = (0, 0);
    for c in changes {
        match c {
            UserChange::Upsert(patch) => {
                let base = users.remove(&patch.id);
                let id = patch.id.clone();
                users.insert(id, patch.apply(base));
                upserts += 1;
            }
            UserChange::Removed { id, .. } => {
                users.remove(&id);
                removed += 1;
            }
        }
    }
    (upserts, removed)
}

#[cfg(test)]
mod tests;
