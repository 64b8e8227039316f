//! Subscription upkeep: every enabled tenant's content types are started (AF20024, "already
//! enabled", is success); disabled or failing ones are reported with what to do.

use serde::Serialize;

use super::ApiProvider;
use crate::api::{ActivityApi, StartOutcome};
use crate::model::ContentType;
use crate::store::StateStore;

/// The state of one subscription after upkeep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionReport {
    /// Tenant.
    pub tenant: String,
    /// Content type.
    pub content_type: ContentType,
    /// `started` (was off), `reenabled` (was disabled by an admin), `enabled` (already on) or
    /// `error`.
    pub status: &'static str,
    /// What went wrong and what to do.
    pub error: Option<String>,
}

/// Ensures every enabled tenant's content types are subscribed.
///
/// # Errors
/// Only when the tenant list cannot be read; per-subscription failures are in the report.
pub async fn ensure<S, P>(
    store: &S,
    apis: &P,
) -> Result<Vec<SubscriptionReport>, crate::store::StoreError>
where
    S: StateStore,
    P: ApiProvider,
{
    let mut out = Vec::new();
    for tenant in store
        .list_tenants()
        .await?
        .into_iter()
        .filter(|t| t.enabled)
    {
        let api = match apis.api(&tenant).await {
            Ok(a) => a,
            Err(e) => {
                for ct in &tenant.content_types {
                    out.push(SubscriptionReport {
                        tenant: tenant.id.to_string(),
                        content_type: *ct,
                        status: "error",
                        error: Some(e.to_string()),
                    });
                }
                continue;
            }
        };
        // Which ones an admin disabled: starting re-enables them, but the operator should know.
        let disabled: Vec<String> = api
            .list_subscriptions()
            .await
            .map(|subs| {
                subs.into_iter()
                    .filter(|s| {
                        s.status
                            .as_deref()
                            .is_some_and(|st| st.eq_ignore_ascii_case("disabled"))
                    })
                    .map(|s| s.content_type.to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        for ct in &tenant.content_types {
            let was_disabled = disabled.contains(&ct.as_str().to_ascii_lowercase());
            let (status, error) = match api.start_subscription(*ct).await {
                Ok(StartOutcome::Started) if was_disabled => {
                    tracing::warn!(tenant = %tenant.id, content_type = %ct,
                        "subscription was disabled (by a tenant or service admin) and has been started again");
                    ("reenabled", None)
                }
                Ok(StartOutcome::Started) => ("started", None),
                Ok(StartOutcome::AlreadyEnabled) => ("enabled", None),
                Err(e) => ("error", Some(e.to_string())),
            };
            match &error {
                None => {
                    tracing::info!(tenant = %tenant.id, content_type = %ct, status, "subscription checked")
                }
                Some(e) => {
                    tracing::error!(tenant = %tenant.id, content_type = %ct, error = %e, "subscription could not be started")
                }
            }
            out.push(SubscriptionReport {
                tenant: tenant.id.to_string(),
                content_type: *ct,
                status,
                error,
            });
        }
    }
    Ok(out)
}
