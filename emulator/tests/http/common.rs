//! Helpers for the emulator's HTTP tests: scenarios, certificates, tokens and assertions.
#![allow(dead_code, missing_docs)]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use o365_emulator::{Emulator, Scenario};
use serde_json::Value;
use sha1::Digest;

pub const TENANT_A: &str = "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d";
pub const TENANT_B: &str = "41463f53-8812-40f4-890f-865bf6e35190";
pub const TENANT_HIGH: &str = "9b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f";
pub const APP_SECRET: &str = "a6099727-6b7b-482c-b509-1df309acc563";
pub const APP_CERT: &str = "b7100838-7c8c-493d-a610-2e0f41bdd674";
pub const APP_NOCONSENT: &str = "c8211949-8d9d-4a4e-b721-3f1052cee785";
pub const APP_HIGH: &str = "d9322a5a-9eae-4b5f-8832-402163dff896";
pub const SECRET: &str = "s3cr3t~value.for-tests";
pub const PUBLISHER: &str = "5b8c3a1e-0000-4000-8000-00000000abcd";

/// A generated RSA key and its self-signed certificate.
pub struct Cert {
    pub key_pem: String,
    pub cert_pem: String,
    pub der: Vec<u8>,
}

impl Cert {
    fn generate() -> Cert {
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .expect("rsa key");
        let cert = rcgen::CertificateParams::new(vec!["collector.example".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        Cert {
            key_pem: key.serialize_pem(),
            cert_pem: cert.pem(),
            der: cert.der().to_vec(),
        }
    }
    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&self.der))
    }
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&self.der))
    }
}

/// The certificate registered for APP_CERT.
pub fn registered() -> &'static Cert {
    static C: OnceLock<Cert> = OnceLock::new();
    C.get_or_init(Cert::generate)
}

/// A key that is not registered anywhere.
pub fn stranger() -> &'static Cert {
    static C: OnceLock<Cert> = OnceLock::new();
    C.get_or_init(Cert::generate)
}

/// The base scenario: tenant A (commercial) with three apps, tenant B, a GCC High tenant.
pub fn base_toml() -> String {
    let cert = registered().cert_pem.replace('\n', "\\n");
    format!(
        r#"
seed = 7
page_size = 3
graph_page_size = 4
token_lifetime_secs = 600

[[tenant]]
id = "{TENANT_A}"
domain = "contoso.onmicrosoft.com"
users = 10
subscriptions = {{ "Audit.Exchange" = "enabled", "Audit.General" = "disabled" }}
[tenant.data]
hours_back = 30
records_per_blob = 5
records_per_hour = {{ "Audit.AzureActiveDirectory" = 6, "Audit.Exchange" = 7, "Audit.SharePoint" = 5, "Audit.General" = 4, "DLP.All" = 2 }}

[[tenant]]
id = "{TENANT_B}"
domain = "fabrikam.onmicrosoft.com"
users = 3
subscriptions = {{ "Audit.Exchange" = "enabled" }}

[[tenant]]
id = "{TENANT_HIGH}"
domain = "agency.onmicrosoft.us"
cloud = "gcc-high"
users = 3
subscriptions = {{ "Audit.Exchange" = "enabled" }}

[[app]]
client_id = "{APP_SECRET}"
home_tenant = "{TENANT_A}"
secrets = [{{ value = "{SECRET}" }}, {{ value = "old-secret", expires = "2020-01-01T00:00:00Z" }}]
manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]
graph_roles = ["User.Read.All"]

[[app]]
client_id = "{APP_CERT}"
home_tenant = "{TENANT_A}"
multi_tenant = true
consented_tenants = ["{TENANT_B}"]
certificates = ["{cert}"]
manage_roles = ["ActivityFeed.Read"]

[[app]]
client_id = "{APP_NOCONSENT}"
home_tenant = "{TENANT_A}"
secrets = [{{ value = "{SECRET}" }}]

[[app]]
client_id = "{APP_HIGH}"
home_tenant = "{TENANT_HIGH}"
secrets = [{{ value = "{SECRET}" }}]
manage_roles = ["ActivityFeed.Read"]
graph_roles = ["User.Read.All"]
"#
    )
}

pub fn scenario(extra: &str) -> Scenario {
    Scenario::from_toml(&format!("{}\n{extra}", base_toml())).expect("scenario")
}

pub async fn start(extra: &str) -> Emulator {
    Emulator::start(scenario(extra)).await.expect("emulator")
}

pub fn client() -> reqwest::Client {
    // One client for the whole test binary: building one loads the system roots, which is slow.
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .expect("client")
    })
    .clone()
}

/// POSTs a token request form; returns status and JSON body.
pub async fn token_form(base: &str, tenant: &str, v2: bool, form: &[(&str, &str)]) -> (u16, Value) {
    let path = if v2 {
        "oauth2/v2.0/token"
    } else {
        "oauth2/token"
    };
    let r = client()
        .post(format!("{base}/{tenant}/{path}"))
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("token json"))
}

/// A v2 secret token for `resource` (e.g. `https://manage.office.com`).
pub async fn secret_token(base: &str, tenant: &str, app: &str, resource: &str) -> String {
    let scope = format!("{resource}/.default");
    let (status, body) = token_form(
        base,
        tenant,
        true,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", app),
            ("client_secret", SECRET),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(status, 200, "token refused: {body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

pub async fn manage_token(base: &str, tenant: &str) -> String {
    secret_token(base, tenant, APP_SECRET, "https://manage.office.com").await
}

/// A signed client assertion.
pub fn assertion(
    cert: &Cert,
    alg: Algorithm,
    header_cert: &Cert,
    aud: &str,
    iss: &str,
    jti: &str,
) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut h = Header::new(alg);
    match alg {
        Algorithm::PS256 => h.x5t_s256 = Some(header_cert.x5t_s256()),
        _ => h.x5t = Some(header_cert.x5t()),
    }
    let claims = serde_json::json!({
        "aud": aud, "iss": iss, "sub": iss, "jti": jti,
        "nbf": now, "iat": now, "exp": now + 600,
    });
    jsonwebtoken::encode(
        &h,
        &claims,
        &EncodingKey::from_rsa_pem(cert.key_pem.as_bytes()).expect("key"),
    )
    .expect("sign")
}

pub fn decode_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("jwt payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

pub fn feed(base: &str, tenant: &str, op: &str) -> String {
    format!("{base}/api/v1.0/{tenant}/activity/feed/{op}")
}

/// GET with a bearer token and the PublisherIdentifier.
pub async fn get(url: &str, token: &str) -> reqwest::Response {
    client()
        .get(url)
        .bearer_auth(token)
        .query(&[("PublisherIdentifier", PUBLISHER)])
        .send()
        .await
        .expect("request")
}

pub async fn post(url: &str, token: &str) -> reqwest::Response {
    client()
        .post(url)
        .bearer_auth(token)
        .query(&[("PublisherIdentifier", PUBLISHER)])
        .send()
        .await
        .expect("request")
}

pub async fn status_code(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn af_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

pub fn fmt(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Lists every page of a window; returns all items and the number of pages.
pub async fn list_all(
    base: &str,
    tenant: &str,
    token: &str,
    ct: &str,
    start: &str,
    end: &str,
) -> (Vec<Value>, usize) {
    let mut url = reqwest::Url::parse(&feed(base, tenant, "subscriptions/content")).expect("url");
    url.query_pairs_mut()
        .append_pair("contentType", ct)
        .append_pair("startTime", start)
        .append_pair("endTime", end)
        .append_pair("PublisherIdentifier", PUBLISHER);
    let mut items = Vec::new();
    let mut pages = 0;
    let mut next = Some(url.to_string());
    while let Some(u) = next {
        let r = client()
            .get(&u)
            .bearer_auth(token)
            .send()
            .await
            .expect("list");
        assert_eq!(r.status(), 200, "listing failed");
        next = r
            .headers()
            .get("NextPageUri")
            .map(|v| v.to_str().expect("header").to_owned());
        let page: Vec<Value> = r.json().await.expect("json");
        items.extend(page);
        pages += 1;
        assert!(pages < 1000, "paging does not end");
    }
    (items, pages)
}
