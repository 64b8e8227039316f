//! `tenants add|list|enable|disable|remove`: the tenants a deployment (or a local state file)
//! collects from.

use std::process::ExitCode;

use clap::Subcommand;
use shared::config::TenantSpec;
use shared::model::{AssertionAlg, CloudKind, CredentialRef, SecretRef, TenantId, TokenEndpoint};
use shared::store::StateStore;

use crate::local::StoreArgs;

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Add (or replace) a tenant.
    Add(Box<AddArgs>),
    /// List tenants.
    List,
    /// Start collecting a tenant again.
    Enable {
        /// Tenant GUID.
        id: String,
    },
    /// Stop collecting a tenant (its state is kept).
    Disable {
        /// Tenant GUID.
        id: String,
    },
    /// Remove a tenant.
    Remove {
        /// Tenant GUID.
        id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Tenant (directory) GUID.
    #[arg(long)]
    id: String,
    /// Application (client) id of the app registration.
    #[arg(long)]
    client_id: String,
    /// A name for people.
    #[arg(long)]
    name: Option<String>,
    /// commercial, gcc, gcc-high, dod or custom.
    #[arg(long, default_value = "commercial")]
    cloud: String,
    /// Custom cloud: login base URL.
    #[arg(long)]
    login_url: Option<String>,
    /// Custom cloud: Management API base URL.
    #[arg(long)]
    manage_url: Option<String>,
    /// Custom cloud: Graph base URL.
    #[arg(long)]
    graph_url: Option<String>,
    /// Client secret in a file.
    #[arg(long)]
    client_secret_file: Option<String>,
    /// Client secret in Secrets Manager (ARN or name).
    #[arg(long)]
    client_secret_arn: Option<String>,
    /// Certificate + private key PEM in a file.
    #[arg(long)]
    certificate_file: Option<String>,
    /// Certificate + private key PEM in Secrets Manager (ARN or name; `keygen --secret-name`).
    #[arg(long)]
    certificate_arn: Option<String>,
    /// Client assertion algorithm: RS256 (default) or PS256.
    #[arg(long, default_value = "RS256")]
    assertion_alg: String,
    /// Token endpoint: v2 (default) or v1.
    #[arg(long, default_value = "v2")]
    token_endpoint: String,
    /// Content types, comma-separated (default: all five).
    #[arg(long, value_delimiter = ',')]
    content_types: Option<Vec<String>>,
    /// PublisherIdentifier (default: the tenant id).
    #[arg(long)]
    publisher_id: Option<String>,
    /// Add it disabled.
    #[arg(long)]
    disabled: bool,
}

fn parse_enum<T: serde::de::DeserializeOwned>(what: &str, v: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(v.to_owned()))
        .map_err(|_| format!("--{what} `{v}` is not valid"))
}

pub async fn run(command: TenantsCommand, store: &StoreArgs) -> Result<ExitCode, String> {
    let store = store.open().await?;
    match command {
        TenantsCommand::Add(a) => {
            let a = *a;
            let cloud: CloudKind = parse_enum("cloud", &a.cloud)?;
            let alg: AssertionAlg =
                parse_enum("assertion-alg", &a.assertion_alg.to_ascii_uppercase())?;
            let token_endpoint: TokenEndpoint =
                parse_enum("token-endpoint", &a.token_endpoint.to_ascii_lowercase())?;
            let spec = TenantSpec {
                id: a.id,
                name: a.name,
                cloud,
                login_url: a.login_url,
                manage_url: a.manage_url,
                graph_url: a.graph_url,
                manage_resource: None,
                graph_resource: None,
                client_id: a.client_id,
                client_secret_file: a.client_secret_file,
                client_secret_env: None,
                client_secret_arn: a.client_secret_arn,
                certificate_file: a.certificate_file,
                certificate_arn: a.certificate_arn,
                assertion_alg: alg,
                token_endpoint,
                content_types: a.content_types,
                publisher_id: a.publisher_id,
                enabled: !a.disabled,
            };
            let cwd = std::env::current_dir().ok();
            let tenant = spec
                .into_tenant(cwd.as_deref())
                .map_err(|e| e.to_string())?;
            store.put_tenant(&tenant).await.map_err(|e| e.to_string())?;
            println!(
                "tenant {} added ({}, {} content types)",
                tenant.id,
                serde_json::to_value(tenant.cloud)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                tenant.content_types.len()
            );
        }
        TenantsCommand::List => {
            let tenants = store.list_tenants().await.map_err(|e| e.to_string())?;
            if tenants.is_empty() {
                println!("no tenants: add one with `o365-collector tenants add`");
            }
            println!(
                "{:<38} {:<8} {:<11} {:<38} {:<12} content types",
                "tenant", "enabled", "cloud", "client id", "credential"
            );
            for t in tenants {
                let cred = match &t.credential {
                    CredentialRef::Secret { secret } => format!("secret:{}", kind(secret)),
                    CredentialRef::Certificate { pem, .. } => format!("cert:{}", kind(pem)),
                };
                let cloud = serde_json::to_value(t.cloud)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let cts: Vec<&str> = t.content_types.iter().map(|c| c.as_str()).collect();
                println!(
                    "{:<38} {:<8} {:<11} {:<38} {:<12} {}",
                    t.id,
                    if t.enabled { "yes" } else { "no" },
                    cloud,
                    t.client_id,
                    cred,
                    cts.join(",")
                );
            }
        }
        TenantsCommand::Enable { id } => set_enabled(&store, &id, true).await?,
        TenantsCommand::Disable { id } => set_enabled(&store, &id, false).await?,
        TenantsCommand::Remove { id } => {
            let id = TenantId::parse(&id).map_err(|e| e.to_string())?;
            if store.delete_tenant(&id).await.map_err(|e| e.to_string())? {
                println!("tenant {id} removed");
            } else {
                return Err(format!("tenant {id} is not configured"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn kind(r: &SecretRef) -> &'static str {
    match r {
        SecretRef::File(_) => "file",
        SecretRef::SecretsManager(_) => "arn",
        SecretRef::Env(_) => "env",
    }
}

async fn set_enabled(store: &impl StateStore, id: &str, enabled: bool) -> Result<(), String> {
    let id = TenantId::parse(id).map_err(|e| e.to_string())?;
    let mut tenant = store
        .list_tenants()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| format!("tenant {id} is not configured"))?;
    tenant.enabled = enabled;
    store.put_tenant(&tenant).await.map_err(|e| e.to_string())?;
    println!(
        "tenant {id} {}",
        if enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}
