//! Entra token endpoints (fact sheet §4): client credentials with a client secret or a
//! client-assertion JWT verified against the app's registered certificates; access tokens
//! minted with the claims of §4.2 and checked by the resource endpoints.
//!
//! OWNER: token helper.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use sha2::Sha256;

use crate::clouds::{Api, Cloud};
use crate::scenario::{Scenario, SecretSpec};

/// Which token endpoint was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVersion {
    /// `/{tenant}/oauth2/token` with `resource=`.
    V1,
    /// `/{tenant}/oauth2/v2.0/token` with `scope=…/.default`.
    V2,
}

/// A token request as received over HTTP.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The cloud whose login endpoint was called (path prefix).
    pub cloud: Cloud,
    /// The `{tenant}` path segment (GUID or domain).
    pub tenant: String,
    /// v1 or v2.
    pub version: TokenVersion,
    /// The decoded `application/x-www-form-urlencoded` body (secrets included: never log it).
    pub form: Vec<(String, String)>,
    /// `Authorization: Basic` credentials, if sent (v2 accepts the secret that way).
    pub basic_auth: Option<(String, String)>,
    /// URLs a client assertion's `aud` may name for this request: the URL actually called, plus
    /// the real login host forms of the cloud for the same tenant path.
    pub accepted_audiences: Vec<String>,
    /// Emulator time: tokens are minted (and later checked) on it.
    pub now: DateTime<Utc>,
    /// Wall time, against which client assertions (made with the caller's wall clock) are
    /// checked: moving the emulator clock makes content appear, it does not skew Entra.
    pub wall_now: DateTime<Utc>,
}

/// An AADSTS refusal.
#[derive(Debug, Clone, PartialEq)]
pub struct AadError {
    /// HTTP status (400, or 401 for `invalid_client`).
    pub status: u16,
    /// OAuth `error` value, e.g. `invalid_client`.
    pub error: &'static str,
    /// AADSTS number, e.g. 700027.
    pub code: u32,
    /// Text after `AADSTS<code>: `.
    pub message: String,
}

/// Claims of an access token minted by the emulator (fact sheet §4.2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    /// Resource URI, e.g. `https://manage.office.com`.
    pub aud: String,
    /// `https://sts.windows.net/{tid}/`.
    pub iss: String,
    /// Issued at (epoch seconds).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expiry.
    pub exp: i64,
    /// `1.0` or `2.0`.
    pub ver: String,
    /// Tenant GUID.
    pub tid: String,
    /// App roles granted by admin consent; absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Service principal object id.
    pub oid: String,
    /// Same as `oid` for app-only tokens.
    pub sub: String,
    /// Client id.
    pub appid: String,
    /// `1` = secret, `2` = certificate.
    pub appidacr: String,
}

/// Why a bearer token was refused by a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a token this emulator minted, or tampered with.
    Invalid,
    /// Past `exp`.
    Expired,
}

/// The only `client_assertion_type` Entra accepts.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew tolerated on a client assertion's `nbf`, in seconds.
const NBF_TOLERANCE_SECS: i64 = 300;
/// Link Entra appends to certificate-credential errors.
const CERT_DOC: &str =
    "https://learn.microsoft.com/entra/identity-platform/certificate-credentials";

/// A tenant as the token service needs it.
struct TenantEntry {
    id: String,
    domain: String,
    cloud: Cloud,
}

/// A certificate registered on an app, parsed once.
struct RegisteredCert {
    sha1: [u8; 20],
    sha256: [u8; 32],
    key: DecodingKey,
}

/// A client secret: the SHA-256 of its value (compared in constant time) and its expiry.
struct SecretEntry {
    digest: [u8; 32],
    expires: Option<DateTime<Utc>>,
}

/// The credentials registered on an app; replaced when a test rotates them.
#[derive(Clone)]
struct AppKeys {
    secrets: Arc<Vec<SecretEntry>>,
    certs: Arc<Vec<RegisteredCert>>,
}

fn secret_entries(specs: &[SecretSpec]) -> Vec<SecretEntry> {
    specs
        .iter()
        .map(|s| SecretEntry {
            digest: sha256(s.value.as_bytes()),
            expires: s.expires,
        })
        .collect()
}

/// An app registration as the token service needs it.
struct AppEntry {
    client_id: String,
    home_tenant: String,
    multi_tenant: bool,
    consented_tenants: Vec<String>,
    keys: Mutex<AppKeys>,
    manage_roles: Vec<String>,
    graph_roles: Vec<String>,
}

impl AppEntry {
    /// The secrets and certificates registered now.
    fn keys(&self) -> AppKeys {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn change_keys(&self, f: impl FnOnce(&mut AppKeys)) {
        f(&mut self.keys.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The app has a service principal in `tenant` (its home, or a consented tenant of a
    /// multi-tenant app).
    fn usable_in(&self, tenant: &TenantEntry) -> bool {
        let names =
            |t: &str| t.eq_ignore_ascii_case(&tenant.id) || t.eq_ignore_ascii_case(&tenant.domain);
        names(&self.home_tenant)
            || (self.multi_tenant && self.consented_tenants.iter().any(|t| names(t)))
    }
}

/// Issues and checks tokens.
pub struct TokenService {
    tenants: Vec<TenantEntry>,
    apps: Vec<AppEntry>,
    lifetime_secs: i64,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// `client_id|jti` → `exp` of client assertions already used and not yet expired.
    used_jtis: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let apps: Vec<String> = self
            .apps
            .iter()
            .map(|a| {
                let keys = a.keys();
                format!(
                    "{} ({} secrets, {} certificates)",
                    a.client_id,
                    keys.secrets.len(),
                    keys.certs.len()
                )
            })
            .collect();
        f.debug_struct("TokenService")
            .field(
                "tenants",
                &self
                    .tenants
                    .iter()
                    .map(|t| t.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("apps", &apps)
            .field("lifetime_secs", &self.lifetime_secs)
            .field("signing_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Which credential authenticated the client (`appidacr`).
#[derive(Clone, Copy)]
enum Credential {
    Secret,
    Certificate,
}

fn aad(error: &'static str, code: u32, message: impl Into<String>) -> AadError {
    AadError {
        status: if error == "invalid_client" { 401 } else { 400 },
        error,
        code,
        message: message.into(),
    }
}

fn missing_param(name: &str) -> AadError {
    aad(
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

fn missing_claim(name: &str) -> AadError {
    aad(
        "invalid_request",
        90014,
        format!(
            "The required field '{name}' is missing from the credential. Ensure that you have all the necessary parameters for the login request."
        ),
    )
}

fn malformed_assertion() -> AadError {
    aad(
        "invalid_client",
        50027,
        "JWT token is invalid or malformed.",
    )
}

/// First non-empty value of a form parameter.
fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

fn is_guid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Constant-time equality of two digests.
fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes base64url (padding and the standard alphabet tolerated, as some clients send them).
fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let normalized: String = s
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(normalized).ok()
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Entra's way of printing a time in AADSTS700024.
fn entra_time(epoch: Option<i64>) -> String {
    match epoch {
        Some(ts) => match DateTime::<Utc>::from_timestamp(ts, 0) {
            Some(t) => t.format("%Y-%m-%dT%H:%M:%S.0000000Z").to_string(),
            None => ts.to_string(),
        },
        None => "(none)".to_owned(),
    }
}

fn epoch_claim(claims: &Value, name: &str) -> Option<i64> {
    match claims.get(name)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn str_claim<'a>(claims: &'a Value, name: &str) -> Option<&'a str> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A stable GUID for the service principal of `client_id` in `tenant` (name-based, SHA-1).
fn service_principal_id(client_id: &str, tenant: &str) -> String {
    let digest = Sha1::digest(format!(
        "sp:{}:{}",
        client_id.to_ascii_lowercase(),
        tenant.to_ascii_lowercase()
    ));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes).to_string()
}

fn parse_certificates(client_id: &str, pems: &[String]) -> Vec<RegisteredCert> {
    let mut out = Vec::new();
    for (index, text) in pems.iter().enumerate() {
        let blocks = match pem::parse_many(text) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(client_id, index, error = %e, "skipping certificate that is not valid PEM");
                continue;
            }
        };
        let mut found = false;
        for block in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
            found = true;
            let der = block.contents();
            match DecodingKey::from_rsa_pem(pem::encode(block).as_bytes()) {
                Ok(key) => out.push(RegisteredCert {
                    sha1: Sha1::digest(der).into(),
                    sha256: sha256(der),
                    key,
                }),
                Err(e) => {
                    tracing::warn!(client_id, index, error = %e, "skipping certificate without a usable RSA public key");
                }
            }
        }
        if !found {
            tracing::warn!(client_id, index, "skipping PEM without a CERTIFICATE block");
        }
    }
    out
}

impl TokenService {
    /// Builds the service from the scenario's tenants and apps; `signing_key` signs access tokens.
    pub fn new(scenario: &Scenario, signing_key: &[u8]) -> TokenService {
        let tenants = scenario
            .tenants
            .iter()
            .map(|t| TenantEntry {
                id: t.id.to_ascii_lowercase(),
                domain: t.domain.clone(),
                cloud: t.cloud,
            })
            .collect();
        let apps = scenario
            .apps
            .iter()
            .map(|a| AppEntry {
                client_id: a.client_id.clone(),
                home_tenant: a.home_tenant.clone(),
                multi_tenant: a.multi_tenant,
                consented_tenants: a.consented_tenants.clone(),
                keys: Mutex::new(AppKeys {
                    secrets: Arc::new(secret_entries(&a.secrets)),
                    certs: Arc::new(parse_certificates(&a.client_id, &a.certificates)),
                }),
                manage_roles: a.manage_roles.clone(),
                graph_roles: a.graph_roles.clone(),
            })
            .collect();
        TokenService {
            tenants,
            apps,
            lifetime_secs: i64::try_from(scenario.token_lifetime_secs).unwrap_or(i64::MAX / 4),
            encoding: EncodingKey::from_secret(signing_key),
            decoding: DecodingKey::from_secret(signing_key),
            used_jtis: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the client secrets of app `client_id` with `secrets`, as an operator rotating
    /// the secret does (add the new one, delete the old one): the next token request is
    /// checked against them. False if the app is unknown.
    pub fn replace_secrets(&self, client_id: &str, secrets: &[SecretSpec]) -> bool {
        let Some(app) = self.app(client_id) else {
            return false;
        };
        let entries = Arc::new(secret_entries(secrets));
        app.change_keys(|k| k.secrets = entries);
        true
    }

    /// Replaces the certificates uploaded to app `client_id` with `certificates` (PEM text,
    /// `-----BEGIN CERTIFICATE-----`; unusable ones are skipped with a warning, as at start):
    /// the next client assertion is verified against them. False if the app is unknown.
    pub fn replace_certificates(&self, client_id: &str, certificates: &[String]) -> bool {
        let Some(app) = self.app(client_id) else {
            return false;
        };
        let certs = Arc::new(parse_certificates(&app.client_id, certificates));
        app.change_keys(|k| k.certs = certs);
        true
    }

    fn app(&self, client_id: &str) -> Option<&AppEntry> {
        self.apps
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    }

    /// Handles one token request: the JSON success body (v1 or v2 shape), or a refusal.
    ///
    /// # Errors
    /// [`AadError`] with the AADSTS code Entra would send.
    pub fn issue(&self, req: &TokenRequest) -> Result<serde_json::Value, AadError> {
        let out = self.issue_inner(req);
        if let Err(e) = &out {
            tracing::debug!(
                tenant = %req.tenant,
                code = e.code,
                error = e.error,
                "token request refused"
            );
        }
        out
    }

    fn issue_inner(&self, req: &TokenRequest) -> Result<Value, AadError> {
        let tenant = self.find_tenant(req)?;
        let form = req.form.as_slice();

        match param(form, "grant_type") {
            None => return Err(missing_param("grant_type")),
            Some("client_credentials") => {}
            Some(other) => {
                return Err(aad(
                    "unsupported_grant_type",
                    70003,
                    format!("The app requested an unsupported grant type '{other}'."),
                ));
            }
        }

        let basic = req.basic_auth.as_ref().filter(|(user, _)| !user.is_empty());
        let client_id = param(form, "client_id")
            .or(basic.map(|(user, _)| user.as_str()))
            .ok_or_else(|| missing_param("client_id"))?;

        let resource = self.requested_resource(req)?;

        let app = self
            .apps
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
            .filter(|a| a.usable_in(tenant))
            .ok_or_else(|| {
                aad(
                    "unauthorized_client",
                    700016,
                    format!(
                        "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                        req.tenant
                    ),
                )
            })?;

        let api = match Api::from_resource(resource) {
            Some((api, _))
                if api
                    .resource(tenant.cloud)
                    .eq_ignore_ascii_case(resource.trim_end_matches('/')) =>
            {
                api
            }
            _ => {
                return Err(aad(
                    "invalid_resource",
                    500011,
                    format!(
                        "The resource principal named {resource} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                        req.tenant
                    ),
                ));
            }
        };

        // Basic credentials count only when they name the same client.
        let basic_secret = basic
            .filter(|(user, _)| user.eq_ignore_ascii_case(client_id))
            .map(|(_, pass)| pass.as_str())
            .filter(|p| !p.is_empty());
        let secret = param(form, "client_secret").or(basic_secret);
        let assertion = param(form, "client_assertion");
        let assertion_type = param(form, "client_assertion_type");
        let credential = match (secret, assertion, assertion_type) {
            (None, None, None) => {
                return Err(aad(
                    "invalid_request",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                ));
            }
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(aad(
                    "invalid_request",
                    7000218,
                    "The request body must contain only one of the following parameters: 'client_assertion' or 'client_secret'.",
                ));
            }
            (Some(secret), None, None) => {
                check_secret(app, secret, req.now)?;
                Credential::Secret
            }
            (None, None, Some(_)) => return Err(missing_param("client_assertion")),
            (None, Some(_), None) => return Err(missing_param("client_assertion_type")),
            (None, Some(assertion), Some(kind)) => {
                if kind != JWT_BEARER {
                    return Err(aad(
                        "invalid_request",
                        50027,
                        format!(
                            "Invalid client_assertion_type '{kind}'. The only supported value is '{JWT_BEARER}'."
                        ),
                    ));
                }
                self.check_assertion(app, assertion, req)?;
                Credential::Certificate
            }
        };

        self.mint(req, tenant, app, api, credential)
    }

    /// The tenant named in the path, if it exists and lives behind this cloud's login service.
    fn find_tenant(&self, req: &TokenRequest) -> Result<&TenantEntry, AadError> {
        let name = req.tenant.trim();
        if matches!(
            name.to_ascii_lowercase().as_str(),
            "common" | "organizations" | "consumers"
        ) {
            return Err(aad(
                "invalid_request",
                9001023,
                "The grant type isn't supported over the /common, /organizations or /consumers endpoints. Please use a tenant-specific endpoint.",
            ));
        }
        let guid = is_guid(name);
        if !guid && !is_dns_name(name) {
            return Err(aad(
                "invalid_request",
                900023,
                format!(
                    "Specified tenant identifier '{name}' is neither a valid DNS name, nor a valid external domain."
                ),
            ));
        }
        let mut candidates = self.tenants.iter().filter(|t| {
            if guid {
                t.id.eq_ignore_ascii_case(name)
            } else {
                t.domain.eq_ignore_ascii_case(name)
            }
        });
        candidates
            .find(|t| t.cloud.same_login(req.cloud))
            .ok_or_else(|| {
                aad(
                    "invalid_request",
                    90002,
                    format!(
                        "Tenant '{name}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
                    ),
                )
            })
    }

    /// The resource URI the request targets (`resource` on v1, `scope` minus `/.default` on v2).
    fn requested_resource<'r>(&self, req: &'r TokenRequest) -> Result<&'r str, AadError> {
        let form = req.form.as_slice();
        match req.version {
            TokenVersion::V1 => param(form, "resource")
                .map(str::trim)
                .ok_or_else(|| missing_param("resource")),
            TokenVersion::V2 => {
                if param(form, "resource").is_some() {
                    return Err(aad(
                        "invalid_request",
                        901002,
                        "The 'resource' request parameter is not supported.",
                    ));
                }
                let scope = param(form, "scope").ok_or_else(|| missing_param("scope"))?;
                let mut resources: Vec<&str> = Vec::new();
                for s in scope.split_whitespace() {
                    let Some(r) = s.strip_suffix("/.default").filter(|r| !r.is_empty()) else {
                        return Err(aad(
                            "invalid_scope",
                            1002012,
                            format!(
                                "The provided value for scope {s} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                            ),
                        ));
                    };
                    let r = r.trim_end_matches('/');
                    if !resources.iter().any(|x| x.eq_ignore_ascii_case(r)) {
                        resources.push(r);
                    }
                }
                match resources.as_slice() {
                    [one] => Ok(*one),
                    [] => Err(missing_param("scope")),
                    _ => Err(aad(
                        "invalid_scope",
                        700022,
                        format!(
                            "The provided value for the input parameter scope is not valid because it contains more than one resource. Scope {scope} is not valid."
                        ),
                    )),
                }
            }
        }
    }

    /// Verifies a client assertion JWT against the app's registered certificates.
    fn check_assertion(
        &self,
        app: &AppEntry,
        assertion: &str,
        req: &TokenRequest,
    ) -> Result<(), AadError> {
        let mut parts = assertion.split('.');
        let header = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(_), Some(_), None) => h,
            _ => return Err(malformed_assertion()),
        };
        let header: Value = b64url_decode(header)
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .filter(Value::is_object)
            .ok_or_else(malformed_assertion)?;
        let alg = match header.get("alg").and_then(Value::as_str) {
            Some("RS256") => Algorithm::RS256,
            Some("PS256") => Algorithm::PS256,
            other => {
                return Err(aad(
                    "invalid_client",
                    5002738,
                    format!(
                        "Invalid JWT token. '{}' is not a supported signature algorithm. Supported signing algorithms are: 'RS256,PS256'.",
                        other.unwrap_or("(none)")
                    ),
                ));
            }
        };
        let x5t_s256 = header.get("x5t#S256").and_then(Value::as_str);
        let x5t = header.get("x5t").and_then(Value::as_str);
        let (thumb_text, thumb) = match (x5t_s256, x5t) {
            (Some(t), _) => (t, b64url_decode(t)),
            (None, Some(t)) => (t, b64url_decode(t)),
            (None, None) => {
                return Err(aad(
                    "invalid_client",
                    5002723,
                    "Invalid JWT token. No certificate SHA-1 thumbprint, certificate SHA-256 thumbprint, nor keyId specified in token header.",
                ));
            }
        };
        let thumb_shown = match &thumb {
            Some(bytes) => hex_upper(bytes),
            None => thumb_text.chars().take(100).collect(),
        };
        let keys = app.keys();
        let cert = thumb.as_deref().and_then(|t| {
            keys.certs.iter().find(|c| {
                if x5t_s256.is_some() {
                    c.sha256.as_slice() == t
                } else {
                    c.sha1.as_slice() == t
                }
            })
        });
        let Some(cert) = cert else {
            return Err(aad(
                "invalid_client",
                700027,
                format!(
                    "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumb_shown}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]",
                    app.client_id
                ),
            ));
        };

        let mut validation = Validation::new(alg);
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        let claims = match jsonwebtoken::decode::<Value>(assertion, &cert.key, &validation) {
            Ok(data) => data.claims,
            Err(e) => {
                return Err(match e.kind() {
                    ErrorKind::InvalidSignature
                    | ErrorKind::InvalidAlgorithm
                    | ErrorKind::InvalidKeyFormat
                    | ErrorKind::InvalidRsaKey(_) => aad(
                        "invalid_client",
                        700027,
                        format!(
                            "Client assertion failed signature validation. [Reason - The key was found, but the signature does not verify with it., Thumbprint of key used by client: '{thumb_shown}', app Id '{}'.]",
                            app.client_id
                        ),
                    ),
                    _ => malformed_assertion(),
                });
            }
        };
        if !claims.is_object() {
            return Err(malformed_assertion());
        }

        let iss = str_claim(&claims, "iss").ok_or_else(|| missing_claim("iss"))?;
        let sub = str_claim(&claims, "sub").ok_or_else(|| missing_claim("sub"))?;
        if !iss.eq_ignore_ascii_case(&app.client_id) {
            return Err(aad(
                "invalid_client",
                700021,
                format!(
                    "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at {CERT_DOC} ."
                ),
            ));
        }
        if !sub.eq_ignore_ascii_case(iss) {
            return Err(aad(
                "invalid_client",
                50048,
                format!(
                    "Subject mismatches Issuer claim in the client assertion. Subject = '{sub}', Issuer = '{iss}'."
                ),
            ));
        }

        let aud = match claims.get("aud") {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            Some(Value::Array(items)) if items.len() >= 2 => {
                return Err(aad(
                    "invalid_client",
                    5002741,
                    format!(
                        "Number of audience values in the provided client credential exceed maximum allowed. {} audience values provided, maximum allowed is 1.",
                        items.len()
                    ),
                ));
            }
            Some(Value::Array(items)) => items
                .first()
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| missing_claim("aud"))?,
            _ => return Err(missing_claim("aud")),
        };
        let aud_norm = aud.trim_end_matches('/');
        if !req
            .accepted_audiences
            .iter()
            .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(aud_norm))
        {
            let suffix = match req.version {
                TokenVersion::V1 => "/oauth2/token",
                TokenVersion::V2 => "/oauth2/v2.0/token",
            };
            let expected = req
                .accepted_audiences
                .iter()
                .find(|a| a.ends_with(suffix))
                .or(req.accepted_audiences.first())
                .map_or("the token endpoint URL", String::as_str);
            return Err(aad(
                "invalid_client",
                700027,
                format!(
                    "Client assertion failed audience validation. The 'aud' claim '{aud}' does not name this token endpoint; expected '{expected}'. Review the documentation at {CERT_DOC} ."
                ),
            ));
        }

        let exp = epoch_claim(&claims, "exp").ok_or_else(|| missing_claim("exp"))?;
        let nbf = epoch_claim(&claims, "nbf");
        let now = req.wall_now.timestamp();
        if now >= exp || nbf.is_some_and(|nbf| nbf - NBF_TOLERANCE_SECS > now) {
            let from = nbf.or_else(|| epoch_claim(&claims, "iat"));
            return Err(aad(
                "invalid_client",
                700024,
                format!(
                    "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}. Review the documentation at {CERT_DOC} .",
                    entra_time(Some(now)),
                    entra_time(from),
                    entra_time(Some(exp)),
                ),
            ));
        }

        let jti = str_claim(&claims, "jti").ok_or_else(|| missing_claim("jti"))?;
        let key = format!("{}|{jti}", app.client_id.to_ascii_lowercase());
        let mut used = self
            .used_jtis
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        used.retain(|_, e| *e > now);
        if used.contains_key(&key) {
            return Err(aad(
                "invalid_client",
                700027,
                format!(
                    "Client assertion has already been used: the 'jti' claim '{jti}' was presented before. Each client assertion must carry a unique 'jti'. Review the documentation at {CERT_DOC} ."
                ),
            ));
        }
        used.insert(key, exp);
        Ok(())
    }

    fn mint(
        &self,
        req: &TokenRequest,
        tenant: &TenantEntry,
        app: &AppEntry,
        api: Api,
        credential: Credential,
    ) -> Result<Value, AadError> {
        let now = req.now.timestamp();
        let exp = now.saturating_add(self.lifetime_secs);
        let resource = api.resource(tenant.cloud);
        let oid = service_principal_id(&app.client_id, &tenant.id);
        let roles = match api {
            Api::Manage => app.manage_roles.clone(),
            Api::Graph => app.graph_roles.clone(),
        };
        let claims = AccessClaims {
            aud: resource.to_owned(),
            iss: format!("https://sts.windows.net/{}/", tenant.id),
            iat: now,
            nbf: now,
            exp,
            ver: match req.version {
                TokenVersion::V1 => "1.0",
                TokenVersion::V2 => "2.0",
            }
            .to_owned(),
            tid: tenant.id.clone(),
            roles,
            oid: oid.clone(),
            sub: oid,
            appid: app.client_id.clone(),
            appidacr: match credential {
                Credential::Secret => "1",
                Credential::Certificate => "2",
            }
            .to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| {
            tracing::error!(error = %e, "cannot sign access token");
            AadError {
                status: 500,
                error: "server_error",
                code: 50000,
                message: "There was an error issuing a token.".to_owned(),
            }
        })?;
        let lifetime = self.lifetime_secs;
        Ok(match req.version {
            TokenVersion::V1 => json!({
                "token_type": "Bearer",
                "expires_in": lifetime.to_string(),
                "ext_expires_in": lifetime.to_string(),
                "expires_on": exp.to_string(),
                "not_before": now.to_string(),
                "resource": resource,
                "access_token": token,
            }),
            TokenVersion::V2 => json!({
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            }),
        })
    }

    /// Checks a bearer token presented to `api` of `cloud`: signature, expiry (against `now`)
    /// and audience. Tenant and roles are checked by the caller, which has the error codes.
    ///
    /// # Errors
    /// [`BearerError`].
    pub fn verify(
        &self,
        bearer: Option<&str>,
        api: Api,
        cloud: Cloud,
        now: DateTime<Utc>,
    ) -> Result<AccessClaims, BearerError> {
        let token = bearer
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(BearerError::Missing)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation)
            .map_err(|_| BearerError::Invalid)?
            .claims;
        if claims.exp <= now.timestamp() {
            return Err(BearerError::Expired);
        }
        if claims.aud != api.resource(cloud) {
            return Err(BearerError::Invalid);
        }
        Ok(claims)
    }
}

/// Compares a presented secret with the app's secrets.
fn check_secret(app: &AppEntry, secret: &str, now: DateTime<Utc>) -> Result<(), AadError> {
    let presented = sha256(secret.as_bytes());
    let mut matched = false;
    let mut current = false;
    for s in app.keys().secrets.iter() {
        if digest_eq(&s.digest, &presented) {
            matched = true;
            if s.expires.is_none_or(|e| e >= now) {
                current = true;
            }
        }
    }
    if current {
        Ok(())
    } else if matched {
        Err(aad(
            "invalid_client",
            7000222,
            format!(
                "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                app.client_id
            ),
        ))
    } else {
        Err(aad(
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                app.client_id
            ),
        ))
    }
}

impl AadError {
    /// The JSON body Entra sends (`error`, `error_description` starting `AADSTS<code>:`,
    /// `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`).
    pub fn body(&self, now: DateTime<Utc>) -> serde_json::Value {
        let trace_id = uuid::Uuid::new_v4().to_string();
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let timestamp = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
        json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
                self.code, self.message
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use jsonwebtoken::dangerous::insecure_decode_claims;

    use super::*;

    const T1: &str = "11111111-1111-4111-8111-111111111111";
    const T2: &str = "22222222-2222-4222-8222-222222222222";
    const T3: &str = "33333333-3333-4333-8333-333333333333";
    const APP: &str = "a0000000-0000-4000-8000-000000000001";
    const APP_EXPIRED: &str = "a0000000-0000-4000-8000-000000000002";
    const APP_MT: &str = "a0000000-0000-4000-8000-000000000003";
    const APP_CERT: &str = "a0000000-0000-4000-8000-000000000004";
    const APP_NOROLES: &str = "a0000000-0000-4000-8000-000000000005";
    const APP_GCCH: &str = "a0000000-0000-4000-8000-000000000006";
    const SECRET: &str = "s3cret~Value.0123456789abcdefghij";
    const NOW: i64 = 1_772_445_600; // 2026-03-02T10:00:00Z

    struct Keys {
        /// Registered on APP_CERT.
        key_pem: String,
        cert_pem: String,
        cert_der: Vec<u8>,
        /// Not registered anywhere.
        other_key_pem: String,
        other_cert_der: Vec<u8>,
    }

    fn keys() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| {
            let gen_pair = || {
                let key = rcgen::KeyPair::generate_rsa_for(
                    &rcgen::PKCS_RSA_SHA256,
                    rcgen::RsaKeySize::_2048,
                )
                .unwrap();
                let cert = rcgen::CertificateParams::new(vec!["client.example".into()])
                    .unwrap()
                    .self_signed(&key)
                    .unwrap();
                (key.serialize_pem(), cert.pem(), cert.der().to_vec())
            };
            let (key_pem, cert_pem, cert_der) = gen_pair();
            let (other_key_pem, _, other_cert_der) = gen_pair();
            Keys {
                key_pem,
                cert_pem,
                cert_der,
                other_key_pem,
                other_cert_der,
            }
        })
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(NOW, 0).unwrap()
    }

    fn scenario() -> Scenario {
        let toml = format!(
            r#"
            [[tenant]]
            id = "{T1}"
            domain = "contoso.onmicrosoft.com"
            [[tenant]]
            id = "{T2}"
            domain = "fabrikam.onmicrosoft.com"
            [[tenant]]
            id = "{T3}"
            domain = "agency.onmicrosoft.us"
            cloud = "gcc-high"

            [[app]]
            client_id = "{APP}"
            home_tenant = "{T1}"
            secrets = [{{ value = "old-secret", expires = "2020-01-01T00:00:00Z" }}, {{ value = "{SECRET}" }}]
            manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]
            graph_roles = ["User.Read.All"]

            [[app]]
            client_id = "{APP_EXPIRED}"
            home_tenant = "{T1}"
            secrets = [{{ value = "{SECRET}", expires = "2026-03-01T00:00:00Z" }}]
            manage_roles = ["ActivityFeed.Read"]

            [[app]]
            client_id = "{APP_MT}"
            home_tenant = "{T2}"
            multi_tenant = true
            consented_tenants = ["{T1}"]
            secrets = [{{ value = "{SECRET}" }}]
            manage_roles = ["ActivityFeed.Read"]

            [[app]]
            client_id = "{APP_CERT}"
            home_tenant = "{T1}"
            manage_roles = ["ActivityFeed.Read"]

            [[app]]
            client_id = "{APP_NOROLES}"
            home_tenant = "{T1}"
            secrets = [{{ value = "{SECRET}" }}]

            [[app]]
            client_id = "{APP_GCCH}"
            home_tenant = "{T3}"
            secrets = [{{ value = "{SECRET}" }}]
            manage_roles = ["ActivityFeed.Read"]
            "#
        );
        let mut s = Scenario::from_toml(&toml).unwrap();
        let cert_app = s.apps.iter_mut().find(|a| a.client_id == APP_CERT).unwrap();
        cert_app.certificates = vec![
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".into(),
            keys().cert_pem.clone(),
        ];
        s
    }

    fn service() -> TokenService {
        TokenService::new(&scenario(), b"0123456789abcdef0123456789abcdef")
    }

    fn request(
        version: TokenVersion,
        cloud: Cloud,
        tenant: &str,
        form: &[(&str, &str)],
    ) -> TokenRequest {
        let host = cloud.login_host();
        TokenRequest {
            cloud,
            tenant: tenant.to_owned(),
            version,
            form: form
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            basic_auth: None,
            accepted_audiences: vec![
                format!("{host}/{tenant}/oauth2/v2.0/token"),
                format!("{host}/{tenant}/oauth2/token"),
            ],
            now: now(),
            wall_now: now(),
        }
    }

    fn v2_secret(client_id: &str, tenant: &str, scope: &str, secret: &str) -> TokenRequest {
        request(
            TokenVersion::V2,
            Cloud::Commercial,
            tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("scope", scope),
                ("client_secret", secret),
            ],
        )
    }

    const MANAGE_SCOPE: &str = "https://manage.office.com/.default";

    fn refused(svc: &TokenService, req: &TokenRequest) -> AadError {
        match svc.issue(req) {
            Ok(body) => panic!("expected a refusal, got {body}"),
            Err(e) => e,
        }
    }

    fn access_claims(body: &Value) -> Value {
        insecure_decode_claims::<Value>(body["access_token"].as_str().unwrap()).unwrap()
    }

    enum Thumb {
        Sha1,
        Sha256,
        None,
    }

    fn thumbprint(der: &[u8], kind: &Thumb, header: &mut Header) {
        match kind {
            Thumb::Sha1 => header.x5t = Some(URL_SAFE_NO_PAD.encode(Sha1::digest(der))),
            Thumb::Sha256 => header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(der))),
            Thumb::None => {}
        }
    }

    fn claims(aud: &str) -> Value {
        json!({
            "aud": aud,
            "iss": APP_CERT,
            "sub": APP_CERT,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": NOW,
            "nbf": NOW,
            "exp": NOW + 600,
        })
    }

    fn v2_aud() -> String {
        format!("https://login.microsoftonline.com/{T1}/oauth2/v2.0/token")
    }

    /// An assertion signed by `key_pem` whose header names the certificate `der`.
    fn assertion(
        alg: Algorithm,
        key_pem: &str,
        der: &[u8],
        thumb: Thumb,
        claims: &Value,
    ) -> String {
        let mut header = Header::new(alg);
        thumbprint(der, &thumb, &mut header);
        let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    fn good_assertion(claims: &Value) -> String {
        let k = keys();
        assertion(
            Algorithm::RS256,
            &k.key_pem,
            &k.cert_der,
            Thumb::Sha1,
            claims,
        )
    }

    fn v2_assertion(tenant: &str, jwt: &str) -> TokenRequest {
        request(
            TokenVersion::V2,
            Cloud::Commercial,
            tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP_CERT),
                ("scope", MANAGE_SCOPE),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", jwt),
            ],
        )
    }

    #[test]
    fn secret_v2_body_has_numbers_and_claims() {
        let svc = service();
        let body = svc
            .issue(&v2_secret(APP, T1, MANAGE_SCOPE, SECRET))
            .unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], json!(3599));
        assert_eq!(body["ext_expires_in"], json!(3599));
        assert!(body.get("resource").is_none());
        let c = access_claims(&body);
        assert_eq!(c["aud"], "https://manage.office.com");
        assert_eq!(c["iss"], format!("https://sts.windows.net/{T1}/"));
        assert_eq!(c["ver"], "2.0");
        assert_eq!(c["tid"], T1);
        assert_eq!(c["appid"], APP);
        assert_eq!(c["appidacr"], "1");
        assert_eq!(c["iat"], json!(NOW));
        assert_eq!(c["nbf"], json!(NOW));
        assert_eq!(c["exp"], json!(NOW + 3599));
        assert_eq!(
            c["roles"],
            json!(["ActivityFeed.Read", "ActivityFeed.ReadDlp"])
        );
        assert_eq!(c["oid"], c["sub"]);
        assert!(uuid::Uuid::parse_str(c["oid"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn secret_v1_body_has_string_numbers() {
        let svc = service();
        let req = request(
            TokenVersion::V1,
            Cloud::Commercial,
            "contoso.onmicrosoft.com",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("resource", "https://manage.office.com"),
                ("client_secret", SECRET),
            ],
        );
        let body = svc.issue(&req).unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], "3599");
        assert_eq!(body["ext_expires_in"], "3599");
        assert_eq!(body["expires_on"], (NOW + 3599).to_string());
        assert_eq!(body["not_before"], NOW.to_string());
        assert_eq!(body["resource"], "https://manage.office.com");
        let c = access_claims(&body);
        assert_eq!(c["ver"], "1.0");
        assert_eq!(
            c["tid"], T1,
            "tid is the GUID even when the domain was used"
        );
    }

    #[test]
    fn graph_token_carries_graph_roles() {
        let svc = service();
        let body = svc
            .issue(&v2_secret(
                APP,
                T1,
                "https://graph.microsoft.com/.default",
                SECRET,
            ))
            .unwrap();
        let c = access_claims(&body);
        assert_eq!(c["aud"], "https://graph.microsoft.com");
        assert_eq!(c["roles"], json!(["User.Read.All"]));
    }

    #[test]
    fn secret_in_basic_auth_is_accepted() {
        let svc = service();
        let mut req = request(
            TokenVersion::V2,
            Cloud::Commercial,
            T1,
            &[
                ("grant_type", "client_credentials"),
                ("scope", MANAGE_SCOPE),
            ],
        );
        req.basic_auth = Some((APP.to_owned(), SECRET.to_owned()));
        let body = svc.issue(&req).unwrap();
        assert_eq!(access_claims(&body)["appid"], APP);
    }

    #[test]
    fn wrong_secret_is_7000215_with_401() {
        let svc = service();
        let e = refused(&svc, &v2_secret(APP, T1, MANAGE_SCOPE, "not-the-secret"));
        assert_eq!(
            (e.code, e.status, e.error),
            (7000215, 401, "invalid_client")
        );
        assert!(e.message.contains("not the client secret ID"));
        assert!(!e.message.contains("not-the-secret"));
    }

    #[test]
    fn expired_secret_is_7000222() {
        let svc = service();
        let e = refused(&svc, &v2_secret(APP_EXPIRED, T1, MANAGE_SCOPE, SECRET));
        assert_eq!((e.code, e.status), (7000222, 401));
        assert!(e.message.contains(APP_EXPIRED));
        // An expired secret next to a current one of the same app.
        let e = refused(&svc, &v2_secret(APP, T1, MANAGE_SCOPE, "old-secret"));
        assert_eq!(e.code, 7000222);
    }

    #[test]
    fn missing_credentials_is_7000218() {
        let svc = service();
        let req = request(
            TokenVersion::V2,
            Cloud::Commercial,
            T1,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("scope", MANAGE_SCOPE),
            ],
        );
        let e = refused(&svc, &req);
        assert_eq!(
            (e.code, e.status, e.error),
            (7000218, 400, "invalid_request")
        );
    }

    #[test]
    fn missing_client_id_and_bad_grant_type() {
        let svc = service();
        let req = request(
            TokenVersion::V2,
            Cloud::Commercial,
            T1,
            &[
                ("grant_type", "client_credentials"),
                ("scope", MANAGE_SCOPE),
            ],
        );
        let e = refused(&svc, &req);
        assert_eq!(e.code, 900144);
        assert!(e.message.contains("'client_id'"));
        let req = request(
            TokenVersion::V2,
            Cloud::Commercial,
            T1,
            &[("grant_type", "password"), ("client_id", APP)],
        );
        let e = refused(&svc, &req);
        assert_eq!((e.code, e.error), (70003, "unsupported_grant_type"));
    }

    #[test]
    fn unknown_app_is_700016() {
        let svc = service();
        let other = "b0000000-0000-4000-8000-000000000009";
        let e = refused(&svc, &v2_secret(other, T1, MANAGE_SCOPE, SECRET));
        assert_eq!(
            (e.code, e.status, e.error),
            (700016, 400, "unauthorized_client")
        );
        assert!(e.message.contains(other));
    }

    #[test]
    fn app_of_another_tenant_is_700016() {
        let svc = service();
        let e = refused(&svc, &v2_secret(APP, T2, MANAGE_SCOPE, SECRET));
        assert_eq!(e.code, 700016);
        assert!(e.message.contains(T2));
    }

    #[test]
    fn multi_tenant_app_works_in_consented_tenant() {
        let svc = service();
        let body = svc
            .issue(&v2_secret(APP_MT, T1, MANAGE_SCOPE, SECRET))
            .unwrap();
        let c = access_claims(&body);
        assert_eq!(c["tid"], T1);
        assert_eq!(c["roles"], json!(["ActivityFeed.Read"]));
        let home = access_claims(
            &svc.issue(&v2_secret(APP_MT, T2, MANAGE_SCOPE, SECRET))
                .unwrap(),
        );
        assert_ne!(c["oid"], home["oid"], "one service principal per tenant");
        // Not consented in the GCC High tenant (and the cloud is wrong anyway).
        let mut req = v2_secret(APP_MT, T3, "https://manage.office365.us/.default", SECRET);
        req.cloud = Cloud::GccHigh;
        assert_eq!(refused(&svc, &req).code, 700016);
    }

    #[test]
    fn tenant_of_another_cloud_is_90002() {
        let svc = service();
        let e = refused(
            &svc,
            &v2_secret(APP_GCCH, T3, "https://manage.office365.us/.default", SECRET),
        );
        assert_eq!((e.code, e.error), (90002, "invalid_request"));
        assert!(e.message.contains(&format!("Tenant '{T3}' not found")));
        // The same request at the US login works.
        let mut req = v2_secret(APP_GCCH, T3, "https://manage.office365.us/.default", SECRET);
        req.cloud = Cloud::Dod;
        let c = access_claims(&svc.issue(&req).unwrap());
        assert_eq!(c["aud"], "https://manage.office365.us");
        // Unknown tenant, malformed tenant.
        let unknown = "44444444-4444-4444-8444-444444444444";
        assert_eq!(
            refused(&svc, &v2_secret(APP, unknown, MANAGE_SCOPE, SECRET)).code,
            90002
        );
        assert_eq!(
            refused(&svc, &v2_secret(APP, "not a tenant!", MANAGE_SCOPE, SECRET)).code,
            900023
        );
    }

    #[test]
    fn wrong_resource_is_500011() {
        let svc = service();
        // The GCC High Management API for a commercial tenant.
        let e = refused(
            &svc,
            &v2_secret(APP, T1, "https://manage.office365.us/.default", SECRET),
        );
        assert_eq!((e.code, e.error), (500011, "invalid_resource"));
        assert!(e.message.contains("https://manage.office365.us"));
        let e = refused(
            &svc,
            &v2_secret(APP, T1, "https://example.com/.default", SECRET),
        );
        assert_eq!(e.code, 500011);
    }

    #[test]
    fn scope_without_default_is_1002012() {
        let svc = service();
        let e = refused(
            &svc,
            &v2_secret(
                APP,
                T1,
                "https://manage.office.com/ActivityFeed.Read",
                SECRET,
            ),
        );
        assert_eq!((e.code, e.error), (1002012, "invalid_scope"));
    }

    #[test]
    fn two_resources_is_700022() {
        let svc = service();
        let scope = "https://manage.office.com/.default https://graph.microsoft.com/.default";
        let e = refused(&svc, &v2_secret(APP, T1, scope, SECRET));
        assert_eq!((e.code, e.error), (700022, "invalid_scope"));
    }

    #[test]
    fn resource_sent_to_v2_is_901002() {
        let svc = service();
        let req = request(
            TokenVersion::V2,
            Cloud::Commercial,
            T1,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("resource", "https://manage.office.com"),
                ("client_secret", SECRET),
            ],
        );
        assert_eq!(refused(&svc, &req).code, 901002);
    }

    #[test]
    fn rs256_with_x5t_is_accepted() {
        let svc = service();
        let body = svc
            .issue(&v2_assertion(T1, &good_assertion(&claims(&v2_aud()))))
            .unwrap();
        let c = access_claims(&body);
        assert_eq!(c["appid"], APP_CERT);
        assert_eq!(c["appidacr"], "2");
    }

    #[test]
    fn ps256_with_x5t_s256_is_accepted_on_v1() {
        let svc = service();
        let k = keys();
        let aud = format!("https://login.microsoftonline.com/{T1}/oauth2/token");
        let jwt = assertion(
            Algorithm::PS256,
            &k.key_pem,
            &k.cert_der,
            Thumb::Sha256,
            &claims(&aud),
        );
        let req = request(
            TokenVersion::V1,
            Cloud::Commercial,
            T1,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP_CERT),
                ("resource", "https://manage.office.com"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &jwt),
            ],
        );
        let body = svc.issue(&req).unwrap();
        assert_eq!(access_claims(&body)["appidacr"], "2");
    }

    #[test]
    fn signature_by_another_key_is_700027() {
        let svc = service();
        let k = keys();
        // Header names the registered certificate, but the signing key is another one.
        let jwt = assertion(
            Algorithm::RS256,
            &k.other_key_pem,
            &k.cert_der,
            Thumb::Sha1,
            &claims(&v2_aud()),
        );
        let e = refused(&svc, &v2_assertion(T1, &jwt));
        assert_eq!((e.code, e.status, e.error), (700027, 401, "invalid_client"));
        assert!(e.message.contains("signature"));
        assert!(!e.message.contains(&jwt));
    }

    #[test]
    fn unknown_thumbprint_is_700027() {
        let svc = service();
        let k = keys();
        let jwt = assertion(
            Algorithm::RS256,
            &k.other_key_pem,
            &k.other_cert_der,
            Thumb::Sha256,
            &claims(&v2_aud()),
        );
        let e = refused(&svc, &v2_assertion(T1, &jwt));
        assert_eq!(e.code, 700027);
        assert!(e.message.contains("The key was not found"));
        assert!(
            e.message
                .contains(&hex_upper(&Sha256::digest(&k.other_cert_der)))
        );
    }

    #[test]
    fn wrong_audience_is_refused() {
        let svc = service();
        let jwt = good_assertion(&claims(
            "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        ));
        let e = refused(&svc, &v2_assertion(T1, &jwt));
        assert_eq!((e.code, e.status), (700027, 401));
        assert!(e.message.contains(&v2_aud()), "{}", e.message);
    }

    #[test]
    fn two_audiences_is_5002741() {
        let svc = service();
        let mut c = claims(&v2_aud());
        c["aud"] = json!([v2_aud(), "https://example.com"]);
        let e = refused(&svc, &v2_assertion(T1, &good_assertion(&c)));
        assert_eq!(e.code, 5002741);
    }

    #[test]
    fn issuer_other_than_client_id_is_700021() {
        let svc = service();
        let mut c = claims(&v2_aud());
        c["iss"] = json!(APP);
        c["sub"] = json!(APP);
        let e = refused(&svc, &v2_assertion(T1, &good_assertion(&c)));
        assert_eq!(e.code, 700021);
        // sub ≠ iss
        let mut c = claims(&v2_aud());
        c["sub"] = json!(APP);
        assert_eq!(
            refused(&svc, &v2_assertion(T1, &good_assertion(&c))).code,
            50048
        );
        // iss missing
        let mut c = claims(&v2_aud());
        c.as_object_mut().unwrap().remove("iss");
        assert_eq!(
            refused(&svc, &v2_assertion(T1, &good_assertion(&c))).code,
            90014
        );
    }

    #[test]
    fn expired_or_future_assertion_is_700024() {
        let svc = service();
        let mut c = claims(&v2_aud());
        c["nbf"] = json!(NOW - 1200);
        c["iat"] = json!(NOW - 1200);
        c["exp"] = json!(NOW - 600);
        let e = refused(&svc, &v2_assertion(T1, &good_assertion(&c)));
        assert_eq!((e.code, e.status), (700024, 401));
        assert!(
            e.message.contains("Current time: 2026-03-02T10:00:00"),
            "{}",
            e.message
        );
        // nbf up to 5 minutes ahead is tolerated, more is not.
        let mut c = claims(&v2_aud());
        c["nbf"] = json!(NOW + 240);
        c["exp"] = json!(NOW + 840);
        svc.issue(&v2_assertion(T1, &good_assertion(&c))).unwrap();
        let mut c = claims(&v2_aud());
        c["nbf"] = json!(NOW + 400);
        c["exp"] = json!(NOW + 1000);
        assert_eq!(
            refused(&svc, &v2_assertion(T1, &good_assertion(&c))).code,
            700024
        );
    }

    #[test]
    fn reused_jti_is_refused() {
        let svc = service();
        let c = claims(&v2_aud());
        svc.issue(&v2_assertion(T1, &good_assertion(&c))).unwrap();
        let e = refused(&svc, &v2_assertion(T1, &good_assertion(&c)));
        assert_eq!(e.code, 700027);
        assert!(e.message.contains("already been used"));
        // Without jti at all.
        let mut c = claims(&v2_aud());
        c.as_object_mut().unwrap().remove("jti");
        assert_eq!(
            refused(&svc, &v2_assertion(T1, &good_assertion(&c))).code,
            90014
        );
    }

    #[test]
    fn header_without_thumbprint_is_5002723() {
        let svc = service();
        let k = keys();
        let jwt = assertion(
            Algorithm::RS256,
            &k.key_pem,
            &k.cert_der,
            Thumb::None,
            &claims(&v2_aud()),
        );
        assert_eq!(refused(&svc, &v2_assertion(T1, &jwt)).code, 5002723);
    }

    #[test]
    fn hs256_assertion_is_5002738() {
        let svc = service();
        let k = keys();
        let mut header = Header::new(Algorithm::HS256);
        thumbprint(&k.cert_der, &Thumb::Sha1, &mut header);
        let jwt = jsonwebtoken::encode(
            &header,
            &claims(&v2_aud()),
            &EncodingKey::from_secret(b"shared"),
        )
        .unwrap();
        assert_eq!(refused(&svc, &v2_assertion(T1, &jwt)).code, 5002738);
        assert_eq!(refused(&svc, &v2_assertion(T1, "not.a-jwt")).code, 50027);
    }

    #[test]
    fn wrong_assertion_type_is_refused() {
        let svc = service();
        let jwt = good_assertion(&claims(&v2_aud()));
        let req = request(
            TokenVersion::V2,
            Cloud::Commercial,
            T1,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP_CERT),
                ("scope", MANAGE_SCOPE),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
                ),
                ("client_assertion", &jwt),
            ],
        );
        let e = refused(&svc, &req);
        assert_eq!(e.status, 400);
        assert!(!e.message.contains(&jwt));
    }

    #[test]
    fn no_admin_consent_gives_token_without_roles() {
        let svc = service();
        let body = svc
            .issue(&v2_secret(APP_NOROLES, T1, MANAGE_SCOPE, SECRET))
            .unwrap();
        let raw = access_claims(&body);
        assert!(raw.get("roles").is_none(), "{raw}");
        let c = svc
            .verify(
                body["access_token"].as_str(),
                Api::Manage,
                Cloud::Commercial,
                now(),
            )
            .unwrap();
        assert!(c.roles.is_empty());
    }

    #[test]
    fn verify_accepts_a_good_token() {
        let svc = service();
        let body = svc
            .issue(&v2_secret(APP, T1, MANAGE_SCOPE, SECRET))
            .unwrap();
        let token = body["access_token"].as_str().unwrap();
        let c = svc
            .verify(Some(token), Api::Manage, Cloud::Commercial, now())
            .unwrap();
        assert_eq!(c.tid, T1);
        assert_eq!(c.appid, APP);
        assert_eq!(c.roles, ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]);
        // GCC shares neither the Management host nor the audience with commercial.
        assert_eq!(
            svc.verify(Some(token), Api::Manage, Cloud::Gcc, now()),
            Err(BearerError::Invalid)
        );
    }

    #[test]
    fn verify_refuses_expired_token() {
        let svc = service();
        let body = svc
            .issue(&v2_secret(APP, T1, MANAGE_SCOPE, SECRET))
            .unwrap();
        let later = now() + chrono::Duration::seconds(3599);
        assert_eq!(
            svc.verify(
                body["access_token"].as_str(),
                Api::Manage,
                Cloud::Commercial,
                later
            ),
            Err(BearerError::Expired)
        );
    }

    #[test]
    fn verify_refuses_graph_token_at_manage() {
        let svc = service();
        let body = svc
            .issue(&v2_secret(
                APP,
                T1,
                "https://graph.microsoft.com/.default",
                SECRET,
            ))
            .unwrap();
        let token = body["access_token"].as_str();
        assert_eq!(
            svc.verify(token, Api::Manage, Cloud::Commercial, now()),
            Err(BearerError::Invalid)
        );
        assert!(svc.verify(token, Api::Graph, Cloud::Gcc, now()).is_ok());
    }

    #[test]
    fn verify_refuses_garbage_and_missing() {
        let svc = service();
        assert_eq!(
            svc.verify(Some("garbage"), Api::Manage, Cloud::Commercial, now()),
            Err(BearerError::Invalid)
        );
        assert_eq!(
            svc.verify(None, Api::Manage, Cloud::Commercial, now()),
            Err(BearerError::Missing)
        );
        assert_eq!(
            svc.verify(Some("  "), Api::Manage, Cloud::Commercial, now()),
            Err(BearerError::Missing)
        );
        // Signed with another key.
        let other = TokenService::new(&scenario(), b"another signing key, 32 bytes...");
        let body = other
            .issue(&v2_secret(APP, T1, MANAGE_SCOPE, SECRET))
            .unwrap();
        assert_eq!(
            svc.verify(
                body["access_token"].as_str(),
                Api::Manage,
                Cloud::Commercial,
                now()
            ),
            Err(BearerError::Invalid)
        );
    }

    #[test]
    fn error_body_has_entra_shape() {
        let svc = service();
        let e = refused(&svc, &v2_secret(APP, T1, MANAGE_SCOPE, "wrong"));
        let body = e.body(now());
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_codes"], json!([7000215]));
        assert_eq!(body["timestamp"], "2026-03-02 10:00:00Z");
        assert_eq!(
            body["error_uri"],
            "https://login.microsoftonline.com/error?code=7000215"
        );
        let desc = body["error_description"].as_str().unwrap();
        assert!(desc.starts_with("AADSTS7000215: Invalid client secret provided."));
        let trace = body["trace_id"].as_str().unwrap();
        let corr = body["correlation_id"].as_str().unwrap();
        assert!(desc.ends_with(&format!(
            "\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: 2026-03-02 10:00:00Z"
        )));
    }

    #[test]
    fn debug_output_has_no_secret() {
        let svc = service();
        let text = format!("{svc:?}");
        assert!(text.contains(APP));
        assert!(!text.contains(SECRET));
        assert!(!text.contains("old-secret"));
        assert!(!text.contains("0123456789abcdef"));
        assert!(!text.contains("BEGIN"));
        // The broken certificate was skipped, the good one kept.
        assert!(
            text.contains(&format!("{APP_CERT} (0 secrets, 1 certificates)")),
            "{text}"
        );
    }
}
