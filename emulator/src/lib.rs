//! Emulator of Microsoft's endpoints for o365-collector tests and demos: the Entra token
//! endpoints (v1 and v2, client secret and certificate), the Office 365 Management Activity API
//! and Microsoft Graph users, behaving as `../shared/reference/microsoft-api.md` describes.
//!
//! A [`Scenario`] (TOML, see `docs/emulator.md`) says which tenants, app registrations, data and
//! faults exist. [`Emulator::start`] serves it on `127.0.0.1:0` inside the caller's runtime;
//! `o365-collector emulate --scenario FILE --port N` serves it standalone.
//!
//! URLs: every cloud is served under its own prefix (`/commercial`, `/gcc`, `/gcc-high`,
//! `/dod`) and the scenario's default cloud also at the root, so one base URL stands for the
//! login, Management API and Graph hosts of a cloud:
//!
//! | real | emulated |
//! |---|---|
//! | `https://login.microsoftonline.us/{tenant}/oauth2/v2.0/token` | `{base}/gcc-high/{tenant}/oauth2/v2.0/token` |
//! | `https://manage.office365.us/api/v1.0/{tenant}/activity/feed/…` | `{base}/gcc-high/api/v1.0/{tenant}/activity/feed/…` |
//! | `https://graph.microsoft.us/v1.0/users` | `{base}/gcc-high/v1.0/users` |
//!
//! Tokens still name the real resources (`https://manage.office365.us`), as a collector must
//! request them. Ground truth ([`Emulator::truth`]) and the request log ([`Emulator::requests`])
//! let tests prove that nothing was lost or invented.
#![warn(missing_docs)]

mod activity;
pub mod clouds;
pub mod data;
mod faults;
mod graph;
pub mod scenario;
mod server;
mod state;
pub mod token;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use clouds::Cloud;
pub use data::DirectoryUser;
pub use scenario::Scenario;
pub use state::{BlobTruth, RequestRecord};

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Emulator {
    world: Arc<state::World>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Counts of the request log.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RequestSummary {
    /// `endpoint status` → count (status 0 = dropped connection).
    pub by_endpoint_status: BTreeMap<String, u64>,
    /// `PublisherIdentifier` (or `(none)`) → count, Management API calls only.
    pub by_publisher: BTreeMap<String, u64>,
    /// All requests.
    pub total: u64,
}

impl Emulator {
    /// Serves `scenario` on `127.0.0.1` at a free port.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start(scenario: Scenario) -> std::io::Result<Emulator> {
        Emulator::start_on(scenario, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves `scenario` on `addr`.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start_on(scenario: Scenario, addr: SocketAddr) -> std::io::Result<Emulator> {
        let world = Arc::new(state::World::new(scenario));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = server::router(world.clone());
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "emulator server stopped");
            }
        });
        Ok(Emulator {
            world,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the scenario's default cloud, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Base URL of one cloud, e.g. `http://127.0.0.1:41234/gcc-high`.
    pub fn cloud_url(&self, cloud: Cloud) -> String {
        format!("http://{}/{}", self.addr, cloud.slug())
    }

    /// The emulator's clock (wall time plus any advance).
    pub fn now(&self) -> DateTime<Utc> {
        self.world.clock.now()
    }

    /// Moves the emulator's clock forward: later content becomes listable, blobs and tokens expire.
    pub fn advance_clock(&self, by: chrono::Duration) {
        self.world.clock.advance(by);
    }

    /// Every blob of the scenario with its record ids and state at the current emulator time.
    pub fn truth(&self) -> Vec<BlobTruth> {
        self.world.truth()
    }

    /// The unique record `Id`s of blobs that are listable now, per (tenant, content type).
    /// `include_expired = false` leaves out blobs that have expired.
    pub fn available_record_ids(
        &self,
        include_expired: bool,
    ) -> BTreeMap<(String, String), std::collections::BTreeSet<String>> {
        self.record_ids_available_by(self.now(), include_expired)
    }

    /// The unique record `Id`s of blobs that were listable at `at`, per (tenant, content type);
    /// `include_expired = false` leaves out blobs expired by now.
    pub fn record_ids_available_by(
        &self,
        at: DateTime<Utc>,
        include_expired: bool,
    ) -> BTreeMap<(String, String), std::collections::BTreeSet<String>> {
        let mut out: BTreeMap<(String, String), std::collections::BTreeSet<String>> =
            BTreeMap::new();
        for b in self.truth() {
            if b.available_at <= at && (include_expired || !b.expired) {
                out.entry((b.tenant.clone(), b.content_type.to_owned()))
                    .or_default()
                    .extend(b.record_ids);
            }
        }
        out
    }

    /// Every request served so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        state::lock(&self.world.log).clone()
    }

    /// Counts of the request log.
    pub fn request_summary(&self) -> RequestSummary {
        let mut s = RequestSummary::default();
        for r in self.requests() {
            s.total += 1;
            *s.by_endpoint_status
                .entry(format!("{} {}", r.endpoint, r.status))
                .or_default() += 1;
            if matches!(r.endpoint, "subscriptions" | "content" | "blob") {
                *s.by_publisher
                    .entry(r.publisher_identifier.unwrap_or_else(|| "(none)".into()))
                    .or_default() += 1;
            }
        }
        s
    }

    /// The directory users of a tenant, as Graph serves them now.
    pub fn users(&self, tenant: &str) -> Vec<DirectoryUser> {
        self.world
            .tenant(tenant)
            .map(|t| state::lock(&t.directory).users.clone())
            .unwrap_or_default()
    }

    /// Adds a user to a tenant's directory (seen by the next delta round). False if the tenant
    /// is unknown.
    pub fn add_user(&self, tenant: &str, user: DirectoryUser) -> bool {
        self.world.change_user(tenant, |users| {
            let id = user.id.clone();
            users.push(user);
            Some((id, false))
        })
    }

    /// Changes a user in place. False if the tenant or user is unknown.
    pub fn update_user(&self, tenant: &str, id: &str, f: impl FnOnce(&mut DirectoryUser)) -> bool {
        self.world.change_user(tenant, |users| {
            let u = users.iter_mut().find(|u| u.id == id)?;
            f(u);
            Some((id.to_owned(), false))
        })
    }

    /// Deletes a user. False if the tenant or user is unknown.
    pub fn remove_user(&self, tenant: &str, id: &str) -> bool {
        self.world.change_user(tenant, |users| {
            let i = users.iter().position(|u| u.id == id)?;
            users.remove(i);
            Some((id.to_owned(), true))
        })
    }

    /// Replaces the client secrets of app `client_id` at run time, as an operator rotating the
    /// secret does (upload a new one, delete the old one): from the next token request on, only
    /// `secrets` are accepted. False if the app is unknown.
    pub fn replace_app_secrets(&self, client_id: &str, secrets: &[scenario::SecretSpec]) -> bool {
        self.world.tokens.replace_secrets(client_id, secrets)
    }

    /// Replaces the certificates uploaded to app `client_id` at run time (PEM text with a
    /// `-----BEGIN CERTIFICATE-----` block each): from the next token request on, only
    /// assertions signed for one of them are accepted. False if the app is unknown.
    pub fn replace_app_certificates(&self, client_id: &str, certificates: &[String]) -> bool {
        self.world
            .tokens
            .replace_certificates(client_id, certificates)
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves until the process is interrupted (Ctrl-C), for the standalone emulator.
    pub async fn serve_until_ctrl_c(self) {
        let _ = tokio::signal::ctrl_c().await;
        self.shutdown().await;
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}
