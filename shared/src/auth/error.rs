//! Token errors, with a plain-language fix for each AADSTS code a misconfigured collector meets
//! (fact sheet §4.4). Messages never contain secrets, assertions or tokens.

/// Why no access token could be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Entra refused the request with an AADSTS code: a configuration problem to fix.
    #[error(
        "tenant `{tenant}`, app `{client_id}`: sign-in refused with AADSTS{code} ({error}): {description}; fix: {fix}{}; see https://login.microsoftonline.com/error?code={code}",
        thumbprint.as_ref().map(|t| format!(" (the collector sent {t})")).unwrap_or_default()
    )]
    Aadsts {
        /// Tenant id.
        tenant: String,
        /// Application (client) id.
        client_id: String,
        /// HTTP status of the refusal.
        status: u16,
        /// AADSTS number, e.g. 7000215 (0 when Entra sent none).
        code: u32,
        /// OAuth `error` value, e.g. `invalid_client`.
        error: String,
        /// First line of `error_description`, without trace and correlation ids.
        description: String,
        /// What to do about it.
        fix: &'static str,
        /// The certificate thumbprints sent in the assertion header, for comparison with the
        /// portal (certificate credentials only).
        thumbprint: Option<String>,
    },
    /// The token endpoint could not be reached or kept failing (network, 429, 5xx).
    #[error(
        "tenant `{tenant}`, app `{client_id}`: token request failed after {attempts} attempt(s): {message}{}; {}",
        status.map(|s| format!(" (last HTTP status {s})")).unwrap_or_default(),
        http_fix(*status)
    )]
    Http {
        /// Tenant id.
        tenant: String,
        /// Application (client) id.
        client_id: String,
        /// Last HTTP status, if a response was received.
        status: Option<u16>,
        /// Attempts made.
        attempts: u32,
        /// What went wrong (no secrets, no body of a success).
        message: String,
    },
    /// The token endpoint answered something that is not a usable token response.
    #[error(
        "tenant `{tenant}`, app `{client_id}`: unusable token response (HTTP {status}): {message}; {DECODE_FIX}"
    )]
    Decode {
        /// Tenant id.
        tenant: String,
        /// Application (client) id.
        client_id: String,
        /// HTTP status.
        status: u16,
        /// What is wrong with it.
        message: String,
    },
    /// The credential (secret or certificate PEM) is unusable as configured.
    #[error("credential refused: {message}")]
    Credential {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The credential could not be read from where it is stored (file, environment variable,
    /// Secrets Manager secret).
    #[error("the credential could not be read: {message}")]
    Source {
        /// Which source, what is wrong and how to fix it (never the value).
        message: String,
        /// Reading again later may succeed (throttling, network).
        retryable: bool,
    },
}

impl AuthError {
    /// True for refusals only a person can fix: AADSTS codes, an unusable credential, or a
    /// 4xx answer that is not Entra's (the login URL is wrong).
    pub fn is_config(&self) -> bool {
        match self {
            AuthError::Aadsts { .. } | AuthError::Credential { .. } => true,
            AuthError::Source { retryable, .. } => !retryable,
            AuthError::Http {
                status: Some(s), ..
            } => (400..500).contains(s) && !matches!(s, 408 | 429),
            AuthError::Http { .. } | AuthError::Decode { .. } => false,
        }
    }

    /// True when asking again later may succeed.
    pub fn is_retryable(&self) -> bool {
        !self.is_config()
    }

    /// True when Entra refused the credential itself: an invalid (7000215) or expired (7000222)
    /// client secret, a certificate that is not (or no longer) registered or whose key does not
    /// verify (700027, 50012), or a bare `invalid_client` without a code. After a rotation this is
    /// what a process still holding the old secret or certificate gets, so the credential is
    /// worth reading again from its source. Clock skew (700024) and the other codes are not: a
    /// new copy of the same credential would not change them.
    pub fn is_credential_refused(&self) -> bool {
        match self {
            AuthError::Aadsts { code, error, .. } => {
                matches!(code, 7000215 | 7000222 | 700027 | 50012)
                    || (*code == 0 && error == "invalid_client")
            }
            _ => false,
        }
    }

    /// What to do about it, in plain language.
    pub fn fix(&self) -> &'static str {
        match self {
            AuthError::Aadsts { fix, .. } => fix,
            AuthError::Http { status, .. } => http_fix(*status),
            AuthError::Decode { .. } => DECODE_FIX,
            AuthError::Credential { .. } => "fix the stored credential as the message says",
            AuthError::Source { .. } => {
                "make the credential's file, environment variable or secret readable as the message says"
            }
        }
    }
}

const DECODE_FIX: &str =
    "the login endpoint answered without a token: check that endpoints.login points at Entra ID";

fn http_fix(status: Option<u16>) -> &'static str {
    match status {
        Some(s) if (400..500).contains(&s) && !matches!(s, 408 | 429) => {
            "the login host answered with an error that is not Entra ID's: check endpoints.login (the login host of the tenant's cloud)"
        }
        _ => {
            "check network access from the collector to the login host (proxy, firewall, DNS); transient failures are retried"
        }
    }
}

/// Fallback advice for codes without a specific fix.
pub const LOOKUP_FIX: &str =
    "look the code up (link below) and fix the app registration accordingly";

/// The fix for an AADSTS code (fact sheet §4.4).
pub fn aadsts_fix(code: u32) -> &'static str {
    match code {
        700016 => {
            "the application (client) id was not found in this tenant: check client_id and the tenant id, and for a multi-tenant app have an admin of this tenant consent to it"
        }
        7000215 => {
            "invalid client secret: store the secret's VALUE (shown once, when it was created), not its Secret ID"
        }
        7000222 => {
            "the client secret has expired: create a new one under Certificates & secrets and store its value"
        }
        700027 => {
            "the certificate is not uploaded to the app registration, or the PEM's private key does not belong to it: upload the certificate under Certificates & secrets and compare its thumbprint with the one the collector sent"
        }
        700024 => {
            "the client assertion is outside its valid time range: fix this host's clock (NTP); clock skew between the collector and Entra"
        }
        700021 | 50048 => {
            "the client assertion names another application: check client_id (it must be the app the certificate is uploaded to)"
        }
        50012 => {
            "the client authentication was refused (bad signature, unknown thumbprint or invalid chain): upload the certificate to the app registration and use its matching private key"
        }
        5002723 => {
            "the client assertion has no certificate thumbprint: this is a collector bug, please report it"
        }
        5002738 => {
            "the assertion signing algorithm is not accepted: set the certificate credential's alg to RS256"
        }
        5002741 => {
            "the client assertion has more than one audience: this is a collector bug, please report it"
        }
        90014 => {
            "a required field is missing from the request: this is a collector bug, please report it"
        }
        7000218 => {
            "no credential was sent: configure a client secret or a certificate for this tenant"
        }
        90002 => {
            "the tenant was not found at this login host: usually the wrong cloud (e.g. a GCC High tenant against login.microsoftonline.com: set cloud = gcc-high or dod), otherwise a wrong tenant id"
        }
        90038 => {
            "the tenant belongs to another national cloud: set the tenant's cloud (gcc-high, dod) so the right login host is used"
        }
        900023 => "the tenant id is malformed: use the Directory (tenant) ID GUID",
        500011 => {
            "the resource (Management API host) is not known in this tenant: the cloud is probably wrong (manage.office.com vs manage-gcc.office.com, manage.office365.us, manage.protection.apps.mil): set the tenant's cloud"
        }
        1002012 | 70011 | 700022 => {
            "the token scope was refused: the scope must be `<resource>/.default` for exactly one resource; check endpoints.manage_resource"
        }
        901002 => {
            "the v2 token endpoint does not take `resource`: use token_endpoint = v2 with the default scope, or v1"
        }
        50032 => {
            "the certificate's RSA key is too small: create a certificate with an RSA key of at least 2048 bits"
        }
        7000112 => {
            "the application is disabled in this tenant: enable its service principal (Enterprise applications)"
        }
        65001 | 650056 | 650057 => {
            "the app lacks admin consent: in API permissions, add Office 365 Management APIs → ActivityFeed.Read (Application) and grant admin consent"
        }
        53003 => {
            "a Conditional Access policy blocks this service principal: exclude it or allow the collector's network location"
        }
        50034 | 50126 | 50053 => {
            "the sign-in was refused for the account: check the app registration and tenant"
        }
        _ => LOOKUP_FIX,
    }
}

/// What to do about an expired certificate (AADSTS700027 with `The key used is expired`).
pub const EXPIRED_CERTIFICATE_FIX: &str = "the certificate has expired: create a new one (`o365-collector keygen`), upload it under Certificates & secrets and store its PEM with the private key";

/// [`aadsts_fix`], refined by the description where Entra sends one code for several causes:
/// AADSTS700027 also means the certificate has expired (`[Reason - The key used is expired.`).
pub fn aadsts_fix_for(code: u32, description: &str) -> &'static str {
    if code == 700027 && description.to_ascii_lowercase().contains("expired") {
        return EXPIRED_CERTIFICATE_FIX;
    }
    aadsts_fix(code)
}

/// The first line of an `error_description`, without `Trace ID`/`Correlation ID`/`Timestamp`,
/// cut to 300 characters.
pub(crate) fn trim_description(description: &str) -> String {
    let first = description
        .split(['\r', '\n'])
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut out = first;
    for marker in [" Trace ID:", " Correlation ID:", " Timestamp:"] {
        if let Some(i) = out.find(marker) {
            out = out[..i].trim_end();
        }
    }
    truncate(out, 300)
}

/// At most `max` characters of `s`, with `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_documented_code_has_a_specific_fix() {
        for code in [
            700016, 7000215, 7000222, 700027, 700024, 90002, 500011, 1002012, 70011, 7000218,
            50012, 5002723, 5002738,
        ] {
            assert_ne!(aadsts_fix(code), LOOKUP_FIX, "AADSTS{code}");
        }
        assert!(aadsts_fix(7000215).contains("VALUE"));
        assert!(aadsts_fix(90002).contains("gcc-high"));
        assert!(aadsts_fix(700024).contains("clock"));
        assert_eq!(aadsts_fix(1), LOOKUP_FIX);
    }

    #[test]
    fn an_expired_certificate_gets_its_own_fix() {
        let expired = "AADSTS700027: Client assertion failed signature validation. [Reason - The key used is expired., Thumbprint of key used by client: 'AB12', Found key 'Start=01/01/2020 00:00:00, End=01/01/2021 00:00:00']";
        assert_eq!(aadsts_fix_for(700027, expired), EXPIRED_CERTIFICATE_FIX);
        let unknown = "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found.]";
        assert_eq!(aadsts_fix_for(700027, unknown), aadsts_fix(700027));
        assert_eq!(aadsts_fix_for(7000222, "expired"), aadsts_fix(7000222));
    }

    #[test]
    fn descriptions_lose_trace_ids_and_extra_lines() {
        let d = "AADSTS70011: The provided value for the input parameter 'scope' is not valid.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2016-01-09 02:02:12Z";
        assert_eq!(
            trim_description(d),
            "AADSTS70011: The provided value for the input parameter 'scope' is not valid."
        );
        assert_eq!(
            trim_description("AADSTS1: x. Trace ID: abc Correlation ID: d"),
            "AADSTS1: x."
        );
        assert_eq!(trim_description(&"é".repeat(400)).chars().count(), 301);
    }

    #[test]
    fn display_names_tenant_app_code_fix_and_link() {
        let e = AuthError::Aadsts {
            tenant: "t".into(),
            client_id: "c".into(),
            status: 401,
            code: 700027,
            error: "invalid_client".into(),
            description: "AADSTS700027: bad".into(),
            fix: aadsts_fix(700027),
            thumbprint: Some("x5t `abc`".into()),
        };
        let s = e.to_string();
        for part in [
            "`t`",
            "`c`",
            "AADSTS700027",
            "upload the certificate",
            "x5t `abc`",
            "error?code=700027",
        ] {
            assert!(s.contains(part), "{part} missing from {s}");
        }
        assert!(e.is_config() && !e.is_retryable());
        assert!(e.is_credential_refused());
    }

    #[test]
    fn only_refusals_of_the_credential_itself_call_for_a_reload() {
        let refusal = |code: u32, error: &str| AuthError::Aadsts {
            tenant: "t".into(),
            client_id: "c".into(),
            status: 401,
            code,
            error: error.into(),
            description: String::new(),
            fix: aadsts_fix(code),
            thumbprint: None,
        };
        for code in [7000215, 7000222, 700027, 50012] {
            assert!(
                refusal(code, "invalid_client").is_credential_refused(),
                "{code}"
            );
        }
        assert!(refusal(0, "invalid_client").is_credential_refused());
        for code in [700024, 700016, 7000218, 90002, 65001, 5002738] {
            assert!(
                !refusal(code, "invalid_client").is_credential_refused(),
                "{code}"
            );
        }
        assert!(!refusal(0, "invalid_request").is_credential_refused());
        let other = AuthError::Credential {
            message: "x".into(),
        };
        assert!(!other.is_credential_refused());
    }
}
