//! The production [`ApiProvider`]: one Management API client per tenant, built from the
//! tenant's credential reference on first use and kept for the life of the process (a warm
//! Lambda reuses its tokens). The token provider reads the credential again from its reference
//! when Entra refuses it or when it is older than the credential TTL, so a rotated secret or
//! certificate is picked up without a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{ApiProvider, SetupError};
use crate::api::{ApiStats, ManagementClient};
use crate::auth::{AuthError, Credential, CredentialFuture, CredentialSource, TokenProvider};
use crate::model::{CredentialRef, Tenant, TenantId};
use crate::retry::RetryPolicy;
use crate::secrets::SecretLoader;

/// One tenant client's cumulative counters and certificate, at a moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSnapshot {
    /// Management API counters since the client was built.
    pub stats: ApiStats,
    /// `notAfter` of the certificate the client signs with (none for a client secret).
    pub certificate_not_after: Option<DateTime<Utc>>,
}

/// Builds and caches per-tenant clients.
pub struct TenantClients<L> {
    http: reqwest::Client,
    loader: Arc<L>,
    retry: RetryPolicy,
    deadline: std::sync::Mutex<Option<Instant>>,
    cache: tokio::sync::Mutex<HashMap<TenantId, (Tenant, Arc<ManagementClient>)>>,
}

impl<L> std::fmt::Debug for TenantClients<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantClients").finish_non_exhaustive()
    }
}

impl<L: SecretLoader> TenantClients<L> {
    /// Clients that load credentials through `loader`; `http` must come from
    /// [`crate::api::http_client`] (no redirects).
    pub fn new(http: reqwest::Client, loader: L, retry: RetryPolicy) -> Self {
        TenantClients {
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

    /// The counters and certificate of every client built so far, per tenant (take one before
    /// and one after an invocation; [`crate::metrics::record::api_calls`] reports the
    /// difference).
    pub async fn snapshot(&self) -> BTreeMap<TenantId, ClientSnapshot> {
        let cache = self.cache.lock().await;
        cache
            .iter()
            .map(|(id, (_, client))| {
                let certificate_not_after = client
                    .tokens()
                    .credential()
                    .certificate()
                    .and_then(|c| c.not_after());
                (
                    id.clone(),
                    ClientSnapshot {
                        stats: client.stats(),
                        certificate_not_after,
                    },
                )
            })
            .collect()
    }

    async fn build(&self, tenant: &Tenant) -> Result<ManagementClient, SetupError> {
        let tokens = Arc::new(token_provider(&self.http, &self.loader, tenant).await?);
        Ok(ManagementClient::new(
            self.http.clone(),
            tenant,
            tokens,
            self.retry,
        ))
    }
}

/// The token provider of `tenant`: its credential loaded through `loader` (client secret, or
/// certificate PEM), and read again through it after a refusal or once older than the
/// provider's credential TTL. Shared by the Management API and Graph client providers.
///
/// # Errors
/// [`SetupError`] when the credential cannot be loaded or read.
pub(crate) async fn token_provider<L: SecretLoader>(
    http: &reqwest::Client,
    loader: &Arc<L>,
    tenant: &Tenant,
) -> Result<TokenProvider, SetupError> {
    let source = StoredCredential {
        loader: loader.clone(),
        reference: tenant.credential.clone(),
    };
    let credential = source.read().await.map_err(|e| SetupError {
        tenant: tenant.id.to_string(),
        message: match e {
            AuthError::Source { message, .. } => message,
            other => other.to_string(),
        },
    })?;
    Ok(TokenProvider::new(http.clone(), tenant, credential).with_source(Arc::new(source)))
}

/// A tenant's credential as its reference says: loaded through a [`SecretLoader`] and parsed.
struct StoredCredential<L> {
    loader: Arc<L>,
    reference: CredentialRef,
}

impl<L> std::fmt::Debug for StoredCredential<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

impl<L: SecretLoader> StoredCredential<L> {
    /// Loads and parses the credential: [`AuthError::Source`] when it cannot be read,
    /// [`AuthError::Credential`] when it is unusable.
    async fn read(&self) -> Result<Credential, AuthError> {
        let source = |e: crate::secrets::SecretError| AuthError::Source {
            retryable: e.retryable,
            message: e.to_string(),
        };
        match &self.reference {
            CredentialRef::Secret { secret } => {
                let s = self.loader.load(secret).await.map_err(source)?;
                Ok(Credential::secret(s.expose().to_owned()))
            }
            CredentialRef::Certificate { pem, alg } => {
                let s = self.loader.load(pem).await.map_err(source)?;
                Credential::certificate_from_pem(s.expose(), *alg)
            }
        }
    }
}

impl<L: SecretLoader> CredentialSource for StoredCredential<L> {
    fn load(&self) -> CredentialFuture<'_> {
        Box::pin(self.read())
    }
}

impl<L: SecretLoader> ApiProvider for TenantClients<L> {
    type Api = ManagementClient;

    async fn api(&self, tenant: &Tenant) -> Result<Arc<ManagementClient>, SetupError> {
        let mut cache = self.cache.lock().await;
        let client = match cache.get(&tenant.id) {
            Some((cached, client)) if cached == tenant => client.clone(),
            _ => {
                let client = Arc::new(self.build(tenant).await?);
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
