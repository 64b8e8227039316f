//! The production [`DirectoryProvider`]: one Graph client per tenant, built from the tenant's
//! credential reference on first use (as [`super::clients::TenantClients`] does) and kept for
//! the life of the process (a warm Lambda reuses its Graph token).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::clients::token_provider;
use super::{DirectoryProvider, SetupError};
use crate::graph::GraphClient;
use crate::model::{Tenant, TenantId};
use crate::retry::RetryPolicy;
use crate::secrets::SecretLoader;

/// Builds and caches per-tenant Graph clients.
pub struct GraphClients<L> {
    http: reqwest::Client,
    loader: Arc<L>,
    retry: RetryPolicy,
    deadline: std::sync::Mutex<Option<Instant>>,
    cache: tokio::sync::Mutex<HashMap<TenantId, (Tenant, Arc<GraphClient>)>>,
}

impl<L> std::fmt::Debug for GraphClients<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClients").finish_non_exhaustive()
    }
}

impl<L: SecretLoader> GraphClients<L> {
    /// Clients that load credentials through `loader`; `http` must come from
    /// [`crate::api::http_client`] (no redirects).
    pub fn new(http: reqwest::Client, loader: L, retry: RetryPolicy) -> Self {
        GraphClients {
            http,
            loader: Arc::new(loader),
            retry,
            deadline: std::sync::Mutex::new(None),
            cache: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Clients handed out from now on never sleep past `deadline` (set per Lambda invocation).
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        *self
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = deadline;
    }
}

impl<L: SecretLoader> DirectoryProvider for GraphClients<L> {
    type Api = GraphClient;

    async fn directory(&self, tenant: &Tenant) -> Result<Arc<GraphClient>, SetupError> {
        let mut cache = self.cache.lock().await;
        let client = match cache.get(&tenant.id) {
            Some((cached, client)) if cached == tenant => client.clone(),
            _ => {
                let tokens = Arc::new(token_provider(&self.http, &self.loader, tenant).await?);
                let client = Arc::new(GraphClient::new(
                    self.http.clone(),
                    tenant,
                    tokens,
                    self.retry,
                ));
                cache.insert(tenant.id.clone(), (tenant.clone(), client.clone()));
                client
            }
        };
        drop(cache);
        let deadline = *self
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(match deadline {
            Some(d) => Arc::new(client.with_deadline(d)),
            None => client,
        })
    }
}
