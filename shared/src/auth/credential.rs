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

    /// True when `other` would authenticate exactly as `self` does: the same secret value, or
    /// the same certificate (same SHA-256 thumbprint, hence the same key pair) and algorithm.
    /// A credential read again after a refusal that is the same as the refused one is not worth
    /// another token request.
    pub fn same_as(&self, other: &Credential) -> bool {
        match (self, other) {
            (Credential::Secret(a), Credential::Secret(b)) => {
                let (a, b) = (a.0.as_bytes(), b.0.as_bytes());
                a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
            }
            (Credential::Certificate(a), Credential::Certificate(b)) => {
                a.x5t_s256 == b.x5t_s256 && a.alg == b.alg
            }
            _ => false,
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

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    struct Generated {
        key_pem: String,
        cert_pem: String,
        der: Vec<u8>,
    }

    fn generate(not_after: Option<(i32, u8, u8)>) -> Generated {
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["collector.example".into()]).unwrap();
        if let Some((y, m, d)) = not_after {
            params.not_after = rcgen::date_time_ymd(y, m, d);
        }
        let cert = params.self_signed(&key).unwrap();
        Generated {
            key_pem: key.serialize_pem(),
            cert_pem: cert.pem(),
            der: cert.der().to_vec(),
        }
    }

    fn one() -> &'static Generated {
        static G: OnceLock<Generated> = OnceLock::new();
        G.get_or_init(|| generate(Some((2049, 12, 31))))
    }

    fn two() -> &'static Generated {
        static G: OnceLock<Generated> = OnceLock::new();
        G.get_or_init(|| generate(None))
    }

    fn message(r: Result<Credential, AuthError>) -> String {
        match r {
            Err(AuthError::Credential { message }) => message,
            other => panic!("expected a credential error, got {other:?}"),
        }
    }

    fn decode_part(jwt: &str, i: usize) -> serde_json::Value {
        let part = jwt.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn key_and_certificate_in_either_order_give_the_thumbprints() {
        let g = one();
        for pem in [
            format!("{}{}", g.key_pem, g.cert_pem),
            format!("{}\n{}", g.cert_pem, g.key_pem),
        ] {
            let cred = Credential::certificate_from_pem(&pem, AssertionAlg::RS256).unwrap();
            let c = cred.certificate().unwrap();
            assert_eq!(c.x5t(), URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&g.der)));
            assert_eq!(
                c.x5t_s256(),
                URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&g.der))
            );
            assert_eq!(c.thumbprint_hex().len(), 40);
            assert_eq!(c.thumbprint_hex(), c.thumbprint_hex().to_uppercase());
            assert_eq!(
                c.not_after().map(|t| t.to_rfc3339()),
                Some("2049-12-31T00:00:00+00:00".to_owned()),
                "UTCTime notAfter"
            );
        }
        let default = Credential::certificate_from_pem(
            &format!("{}{}", two().key_pem, two().cert_pem),
            AssertionAlg::PS256,
        )
        .unwrap();
        let year = default
            .certificate()
            .unwrap()
            .not_after()
            .map(|t| chrono::Datelike::year(&t));
        assert_eq!(year, Some(4096), "GeneralizedTime notAfter");
    }

    #[test]
    fn pkcs1_rsa_private_key_is_accepted() {
        let g = one();
        let pkcs8 = pem::parse(&g.key_pem).unwrap();
        let pkcs1 = der::pkcs8_to_pkcs1(pkcs8.contents()).unwrap();
        let key_pem = pem::encode(&pem::Pem::new("RSA PRIVATE KEY", pkcs1));
        let cred = Credential::certificate_from_pem(
            &format!("{key_pem}{}", g.cert_pem),
            AssertionAlg::RS256,
        )
        .unwrap();
        assert!(cred.certificate().is_some());
    }

    #[test]
    fn unusable_pems_are_refused_with_the_fix() {
        let (a, b) = (one(), two());
        let m = message(Credential::certificate_from_pem(
            &a.key_pem,
            AssertionAlg::RS256,
        ));
        assert!(m.starts_with("no CERTIFICATE block in the PEM: put the certificate uploaded to the app registration after the private key"), "{m}");
        let m = message(Credential::certificate_from_pem(
            &a.cert_pem,
            AssertionAlg::RS256,
        ));
        assert!(m.starts_with("no private key in the PEM"), "{m}");
        let m = message(Credential::certificate_from_pem(
            &format!("{}{}", a.key_pem, b.cert_pem),
            AssertionAlg::RS256,
        ));
        assert!(m.contains("does not belong to the certificate"), "{m}");
        let m = message(Credential::certificate_from_pem(
            &format!("{}{}{}", a.key_pem, b.key_pem, a.cert_pem),
            AssertionAlg::RS256,
        ));
        assert!(m.contains("more than one private key"), "{m}");
        let encrypted = pem::encode(&pem::Pem::new("ENCRYPTED PRIVATE KEY", vec![1, 2, 3]));
        let m = message(Credential::certificate_from_pem(
            &format!("{encrypted}{}", a.cert_pem),
            AssertionAlg::RS256,
        ));
        assert!(m.contains("encrypted"), "{m}");
        let m = message(Credential::certificate_from_pem(
            "just text",
            AssertionAlg::RS256,
        ));
        assert!(m.contains("PRIVATE KEY"), "{m}");
        let junk_key = pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            vec![0x30, 0x03, 0x02, 0x01, 0x00],
        ));
        let m = message(Credential::certificate_from_pem(
            &format!("{junk_key}{}", a.cert_pem),
            AssertionAlg::RS256,
        ));
        assert!(m.contains("not an RSA private key"), "{m}");
        // A chain: the leaf is found whatever its position.
        let chain = format!("{}{}{}", b.cert_pem, a.key_pem, a.cert_pem);
        let cred = Credential::certificate_from_pem(&chain, AssertionAlg::RS256).unwrap();
        assert_eq!(
            cred.certificate().unwrap().x5t(),
            URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&a.der))
        );
    }

    #[test]
    fn assertions_carry_the_documented_header_and_claims() {
        let g = one();
        let pem = format!("{}{}", g.key_pem, g.cert_pem);
        let aud = "https://login.microsoftonline.com/t/oauth2/v2.0/token";
        for (alg, name, thumb) in [
            (AssertionAlg::RS256, "RS256", "x5t"),
            (AssertionAlg::PS256, "PS256", "x5t#S256"),
        ] {
            let cred = Credential::certificate_from_pem(&pem, alg).unwrap();
            let c = cred.certificate().unwrap();
            let jwt = c.assertion("client-1", aud).unwrap();
            let header = decode_part(&jwt, 0);
            assert_eq!(header["alg"], name);
            assert_eq!(header["typ"], "JWT");
            let expected = if thumb == "x5t" {
                c.x5t()
            } else {
                c.x5t_s256()
            };
            assert_eq!(header[thumb], expected);
            let other = if thumb == "x5t" { "x5t#S256" } else { "x5t" };
            assert!(header.get(other).is_none(), "{header}");
            let claims = decode_part(&jwt, 1);
            assert_eq!(claims["aud"], aud);
            assert_eq!(claims["iss"], "client-1");
            assert_eq!(claims["sub"], "client-1");
            assert_eq!(claims["nbf"], claims["iat"]);
            assert_eq!(
                claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
                600
            );
            assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
            let again = decode_part(&c.assertion("client-1", aud).unwrap(), 1);
            assert_ne!(claims["jti"], again["jti"], "a fresh jti per assertion");
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(g.cert_pem.as_bytes()).unwrap();
            let mut v = jsonwebtoken::Validation::new(jwt_alg(alg));
            v.set_audience(&[aud]);
            jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &v).unwrap();
        }
    }

    #[test]
    fn same_as_compares_the_secret_or_the_certificate() {
        let s = Credential::secret("one".into());
        assert!(s.same_as(&Credential::secret(" one\n".into())));
        assert!(!s.same_as(&Credential::secret("two".into())));
        assert!(!s.same_as(&Credential::secret("on".into())));
        let pem = |g: &Generated| format!("{}{}", g.key_pem, g.cert_pem);
        let a = Credential::certificate_from_pem(&pem(one()), AssertionAlg::RS256).unwrap();
        let a2 = Credential::certificate_from_pem(
            &format!("{}{}", one().cert_pem, one().key_pem),
            AssertionAlg::RS256,
        )
        .unwrap();
        let b = Credential::certificate_from_pem(&pem(two()), AssertionAlg::RS256).unwrap();
        let a_ps = Credential::certificate_from_pem(&pem(one()), AssertionAlg::PS256).unwrap();
        assert!(a.same_as(&a2));
        assert!(!a.same_as(&b));
        assert!(!a.same_as(&a_ps));
        assert!(!a.same_as(&s) && !s.same_as(&a));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let g = one();
        let cred = Credential::certificate_from_pem(
            &format!("{}{}", g.key_pem, g.cert_pem),
            AssertionAlg::RS256,
        )
        .unwrap();
        let shown = format!("{cred:?}");
        assert!(shown.contains("x5t"), "{shown}");
        let key_b64: String = g.key_pem.lines().nth(1).unwrap().chars().take(20).collect();
        assert!(
            !shown.contains(&key_b64) && !shown.contains("PRIVATE"),
            "{shown}"
        );
    }
}
