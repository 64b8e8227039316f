//! Credentials of the app registration: a client secret, or a certificate whose private key
//! signs client-assertion JWTs (fact sheet §4.3).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha1::Digest;

use super::AuthError;
use super::der;
use crate::model::AssertionAlg;

/// Smallest RSA key Entra accepts for certificate credentials.
pub const MIN_RSA_BITS: usize = 2048;

/// Lifetime of a client assertion (Entra: "5-10 minutes after nbf at most").
pub const ASSERTION_LIFETIME_SECS: i64 = 600;

/// How the app proves its identity to Entra ID. `Debug` never shows key material or secrets.
pub enum Credential {
    /// A client secret (its value, not its id).
    Secret(ClientSecret),
    /// A certificate uploaded to the app registration, with its private key.
    Certificate(Box<CertificateCredential>),
}

/// A client secret value; `Debug` shows `<redacted>`.
pub struct ClientSecret(String);

impl ClientSecret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// A parsed certificate credential: the signing key and the certificate's thumbprints.
pub struct CertificateCredential {
    key: EncodingKey,
    alg: AssertionAlg,
    x5t: String,
    x5t_s256: String,
    sha1_hex: String,
    not_after: Option<DateTime<Utc>>,
    key_bits: usize,
}

impl fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("alg", &self.alg)
            .field("x5t", &self.x5t)
            .field("x5t#S256", &self.x5t_s256)
            .field("not_after", &self.not_after)
            .field("key_bits", &self.key_bits)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Secret(s) => f.debug_tuple("Secret").field(s).finish(),
            Credential::Certificate(c) => f.debug_tuple("Certificate").field(c).finish(),
        }
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

fn refuse(message: impl Into<String>) -> AuthError {
    AuthError::Credential {
        message: message.into(),
    }
}

impl Credential {
    /// A client secret. Pass the secret's **value** (shown once when it was created), not its id.
    pub fn secret(value: String) -> Credential {
        Credential::Secret(ClientSecret(value.trim().to_owned()))
    }

    /// A certificate credential from one PEM holding the private key (PKCS#8 `PRIVATE KEY` or
    /// PKCS#1 `RSA PRIVATE KEY`) and the certificate uploaded to the app registration
    /// (`CERTIFICATE`), in any order; further certificates (a chain) are allowed.
    ///
    /// # Errors
    /// [`AuthError::Credential`] naming the fix: no key, no certificate, an encrypted or non-RSA
    /// key, a key smaller than 2048 bits, or a key that does not belong to the certificate.
    #[allow(
        clippy::result_large_err,
        reason = "called once per credential load; AuthError keeps its identifying fields inline"
    )]
    pub fn certificate_from_pem(pem: &str, alg: AssertionAlg) -> Result<Credential, AuthError> {
        let blocks = pem::parse_many(pem).map_err(|e| {
            refuse(format!(
                "the certificate PEM cannot be parsed ({e}): it must hold a `-----BEGIN PRIVATE KEY-----` block and a `-----BEGIN CERTIFICATE-----` block"
            ))
        })?;
        let mut keys = Vec::new();
        let mut certs = Vec::new();
        for b in &blocks {
            match b.tag() {
                "PRIVATE KEY" => keys.push((b, true)),
                "RSA PRIVATE KEY" => keys.push((b, false)),
                "CERTIFICATE" => certs.push(b),
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(refuse(
                        "the private key is encrypted: store it without a passphrase (e.g. `openssl pkcs8 -topk8 -nocrypt -in key.pem`)",
                    ));
                }
                "EC PRIVATE KEY" => {
                    return Err(refuse(
                        "the private key is an EC key: Entra ID accepts only RSA certificates (2048 bits or more)",
                    ));
                }
                _ => {}
            }
        }
        let (key_block, pkcs8) = match keys.as_slice() {
            [] => {
                return Err(refuse(
                    "no private key in the PEM: put the private key (`-----BEGIN PRIVATE KEY-----`) and the certificate uploaded to the app registration in one PEM",
                ));
            }
            [one] => *one,
            _ => {
                return Err(refuse(
                    "more than one private key in the PEM: keep only the key of the certificate uploaded to the app registration",
                ));
            }
        };
        if certs.is_empty() {
            return Err(refuse(
                "no CERTIFICATE block in the PEM: put the certificate uploaded to the app registration after the private key",
            ));
        }
        let modulus = der::private_key_modulus(key_block.contents(), pkcs8).ok_or_else(|| {
            refuse("the private key is not an RSA private key: Entra ID accepts only RSA certificates (2048 bits or more)")
        })?;
        let key_bits = der::bit_len(&modulus);
        if key_bits < MIN_RSA_BITS {
            return Err(refuse(format!(
                "the RSA key has {key_bits} bits: Entra ID requires at least {MIN_RSA_BITS}; create a new certificate with a larger key"
            )));
        }
        let mut parsed_any = false;
        let mut leaf = None;
        for c in &certs {
            if let Some(info) = der::certificate(c.contents()) {
                parsed_any = true;
                if info.rsa_modulus.as_deref() == Some(modulus.as_slice()) {
                    leaf = Some((c.contents(), info));
                    break;
                }
            }
        }
        let Some((cert_der, info)) = leaf else {
            return Err(refuse(if parsed_any {
                "the private key does not belong to the certificate in the PEM (their public keys differ): pair the certificate uploaded to the app registration with its own private key"
            } else {
                "the CERTIFICATE block is not a valid X.509 certificate: export the certificate uploaded to the app registration in PEM form"
            }));
        };
        let key_pem = pem::encode(key_block);
        let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).map_err(|e| {
            refuse(format!(
                "the private key cannot be loaded ({e}): store an unencrypted RSA key"
            ))
        })?;
        // Sign once now so that a key the crypto library refuses fails at load time.
        jsonwebtoken::encode(&Header::new(jwt_alg(alg)), &serde_json::json!({"probe": 1}), &key)
            .map_err(|e| refuse(format!("the private key cannot sign ({e}): store an unencrypted RSA key of 2048 bits or more")))?;
        let sha1 = sha1::Sha1::digest(cert_der);
        let cert = CertificateCredential {
            key,
            alg,
            x5t: URL_SAFE_NO_PAD.encode(sha1),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(cert_der)),
            sha1_hex: sha1.iter().map(|b| format!("{b:02X}")).collect(),
            not_after: info.not_after,
            key_bits,
        };
        if let Some(end) = cert.not_after
            && end <= Utc::now()
        {
            tracing::warn!(x5t = %cert.x5t, not_after = %end.to_rfc3339(),
                "The certificate credential has expired; Entra ID will refuse it. Upload a new certificate.");
        }
        Ok(Credential::Certificate(Box::new(cert)))
    }

    /// The certificate credential, if this is one.
    pub fn certificate(&self) -> Option<&CertificateCredential> {
        match self {
            Credential::Certificate(c) => Some(c),
            Credential::Secret(_) => None,
        }
    }
}

fn jwt_alg(alg: AssertionAlg) -> Algorithm {
    match alg {
        AssertionAlg::RS256 => Algorithm::RS256,
        AssertionAlg::PS256 => Algorithm::PS256,
    }
}

impl CertificateCredential {
    /// base64url(SHA-1(DER)): the `x5t` header of RS256 assertions.
    pub fn x5t(&self) -> &str {
        &self.x5t
    }

    /// base64url(SHA-256(DER)): the `x5t#S256` header of PS256 assertions.
    pub fn x5t_s256(&self) -> &str {
        &self.x5t_s256
    }

    /// SHA-1 thumbprint in upper-case hex, as the portal's "Certificates & secrets" page shows it.
    pub fn thumbprint_hex(&self) -> &str {
        &self.sha1_hex
    }

    /// The certificate's `notAfter`, when it could be read.
    pub fn not_after(&self) -> Option<DateTime<Utc>> {
        self.not_after
    }

    /// The assertion algorithm.
    pub fn alg(&self) -> AssertionAlg {
        self.alg
    }

    /// A one-line description of what the assertion header carries, for error messages.
    pub(crate) fn describe_thumbprint(&self) -> String {
        match self.alg {
            AssertionAlg::RS256 => format!(
                "x5t `{}`, i.e. SHA-1 thumbprint `{}`",
                self.x5t, self.sha1_hex
            ),
            AssertionAlg::PS256 => format!(
                "x5t#S256 `{}` of the certificate whose SHA-1 thumbprint is `{}`",
                self.x5t_s256, self.sha1_hex
            ),
        }
    }

    /// A fresh client assertion for `client_id`, addressed to the token URL `aud`.
    #[allow(
        clippy::result_large_err,
        reason = "called once per token request; AuthError keeps its identifying fields inline"
    )]
    pub(crate) fn assertion(&self, client_id: &str, aud: &str) -> Result<String, AuthError> {
        let now = Utc::now().timestamp();
        let mut header = Header::new(jwt_alg(self.alg));
        match self.alg {
            AssertionAlg::RS256 => header.x5t = Some(self.x5t.clone()),
            AssertionAlg::PS256 => header.x5t_s256 = Some(self.x5t_s256.clone()),
        }
        let claims = AssertionClaims {
            aud,
            iss: client_id,
            sub: client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| refuse(format!("signing the client assertion failed: {e}")))
    }
}
