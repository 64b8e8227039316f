//! Entra token endpoints (fact sheet §4): client credentials with a client secret or a
//! client-assertion JWT verified against the app's registered certificates; access tokens
//! minted with the claims of §4.2 and checked by the resource endpoints.
//!
//! OWNER: token helper. Interface fixed; bodies to be written.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clouds::{Api, Cloud};
use crate::scenario::Scenario;

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
    /// Emulator time.
    pub now: DateTime<Utc>,
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

/// Issues and checks tokens.
#[derive(Debug)]
pub struct TokenService {
    _private: (),
}

impl TokenService {
    /// Builds the service from the scenario's tenants and apps; `signing_key` signs access tokens.
    pub fn new(scenario: &Scenario, signing_key: &[u8]) -> TokenService {
        let _ = (scenario, signing_key);
        todo!("token helper")
    }

    /// Handles one token request: the JSON success body (v1 or v2 shape), or a refusal.
    ///
    /// # Errors
    /// [`AadError`] with the AADSTS code Entra would send.
    pub fn issue(&self, req: &TokenRequest) -> Result<serde_json::Value, AadError> {
        let _ = req;
        todo!("token helper")
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
        let _ = (bearer, api, cloud, now);
        todo!("token helper")
    }
}

impl AadError {
    /// The JSON body Entra sends (`error`, `error_description` starting `AADSTS<code>:`,
    /// `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`).
    pub fn body(&self, now: DateTime<Utc>) -> serde_json::Value {
        let _ = now;
        todo!("token helper")
    }
}
