//! Tenants: who to collect from, in which cloud, with which credential.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ContentType;

/// A tenant GUID, lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// A tenant id that is not a GUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant id `{0}` is not a GUID: use the Directory (tenant) ID shown on the app registration's overview page"
)]
pub struct InvalidTenantId(pub String);

impl TenantId {
    /// Parses a GUID.
    ///
    /// # Errors
    /// [`InvalidTenantId`] when `s` is not a GUID.
    pub fn parse(s: &str) -> Result<TenantId, InvalidTenantId> {
        uuid::Uuid::parse_str(s.trim())
            .map(|u| TenantId(u.hyphenated().to_string()))
            .map_err(|_| InvalidTenantId(s.to_owned()))
    }

    /// The GUID text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidTenantId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TenantId::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Microsoft cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CloudKind {
    /// Worldwide.
    #[default]
    Commercial,
    /// US Government Community Cloud.
    Gcc,
    /// GCC High.
    GccHigh,
    /// Department of Defense.
    Dod,
    /// Endpoints given one by one (also how the emulator is reached).
    Custom,
}

/// The three services a tenant is reached through, and the token audiences that name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// Login base URL, e.g. `https://login.microsoftonline.com`.
    pub login: String,
    /// Management Activity API base URL, e.g. `https://manage.office.com`.
    pub manage: String,
    /// Graph base URL, e.g. `https://graph.microsoft.com`.
    pub graph: String,
    /// Resource URI of the Management API tokens (default: the real host of the cloud).
    pub manage_resource: String,
    /// Resource URI of the Graph tokens.
    pub graph_resource: String,
}

impl Endpoints {
    /// The preset of a named cloud (fact sheet §1); `None` for [`CloudKind::Custom`].
    pub fn preset(cloud: CloudKind) -> Option<Endpoints> {
        let (login, manage, graph) = match cloud {
            CloudKind::Commercial => (
                "https://login.microsoftonline.com",
                "https://manage.office.com",
                "https://graph.microsoft.com",
            ),
            CloudKind::Gcc => (
                "https://login.microsoftonline.com",
                "https://manage-gcc.office.com",
                "https://graph.microsoft.com",
            ),
            CloudKind::GccHigh => (
                "https://login.microsoftonline.us",
                "https://manage.office365.us",
                "https://graph.microsoft.us",
            ),
            CloudKind::Dod => (
                "https://login.microsoftonline.us",
                "https://manage.protection.apps.mil",
                "https://dod-graph.microsoft.us",
            ),
            CloudKind::Custom => return None,
        };
        Some(Endpoints {
            login: login.into(),
            manage: manage.into(),
            graph: graph.into(),
            manage_resource: manage.into(),
            graph_resource: graph.into(),
        })
    }
}

/// Signing algorithm of client assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AssertionAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, header `x5t` (SHA-1 thumbprint): the widest accepted.
    #[default]
    RS256,
    /// RSASSA-PSS with SHA-256, header `x5t#S256` (current Microsoft guidance).
    PS256,
}

/// Where a secret (client secret, or certificate + key PEM) is kept. The value itself is
/// never stored here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRef {
    /// A local file (client secret as text; or a PEM with the private key and certificate).
    File(String),
    /// An AWS Secrets Manager secret ARN (or name).
    SecretsManager(String),
    /// An environment variable holding the value.
    Env(String),
}

/// How the app authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CredentialRef {
    /// Client secret.
    Secret {
        /// Where the secret value is.
        secret: SecretRef,
    },
    /// Certificate: a PEM holding the private key and the certificate uploaded to the app.
    Certificate {
        /// Where the PEM is.
        pem: SecretRef,
        /// Assertion algorithm.
        #[serde(default)]
        alg: AssertionAlg,
    },
}

/// Token endpoint flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenEndpoint {
    /// `/{tenant}/oauth2/token` with `resource=`.
    V1,
    /// `/{tenant}/oauth2/v2.0/token` with `scope=…/.default`.
    #[default]
    V2,
}

/// One tenant to collect from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Tenant GUID.
    pub id: TenantId,
    /// A name for people (optional).
    #[serde(default)]
    pub name: Option<String>,
    /// Cloud.
    pub cloud: CloudKind,
    /// Endpoints (the preset of `cloud`, or custom ones).
    pub endpoints: Endpoints,
    /// Application (client) id.
    pub client_id: String,
    /// Credential.
    pub credential: CredentialRef,
    /// Token endpoint flavour.
    #[serde(default)]
    pub token_endpoint: TokenEndpoint,
    /// Content types to collect.
    pub content_types: Vec<ContentType>,
    /// `PublisherIdentifier` sent on every call (default: the tenant id).
    pub publisher_id: String,
    /// Collected when true.
    pub enabled: bool,
}
