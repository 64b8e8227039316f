//! Tokens and the Management Activity API client against the in-process emulator, over real HTTP.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use o365_emulator::{Cloud, Emulator, Scenario};
use shared::api::{ActivityApi, ApiError, ErrorClass, ManagementClient, StartOutcome, http_client};
use shared::auth::{AccessToken, Audience, AuthError, Credential, TokenProvider};
use shared::model::{
    AssertionAlg, CloudKind, ContentType, CredentialRef, Endpoints, SecretRef, Tenant, TenantId,
    TokenEndpoint, Window,
};
use shared::retry::RetryPolicy;

const TENANT_A: &str = "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d";
const TENANT_B: &str = "41463f53-8812-40f4-890f-865bf6e35190";
const TENANT_HIGH: &str = "9b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f";
const APP_SECRET: &str = "a6099727-6b7b-482c-b509-1df309acc563";
const APP_CERT: &str = "b7100838-7c8c-493d-a610-2e0f41bdd674";
const APP_NOCONSENT: &str = "c8211949-8d9d-4a4e-b721-3f1052cee785";
const APP_HIGH: &str = "d9322a5a-9eae-4b5f-8832-402163dff896";
const SECRET: &str = "s3cr3t~value.for-tests";

/// An RSA key and its self-signed certificate.
struct Cert {
    /// Key then certificate, as the collector stores it.
    pem: String,
    cert_pem: String,
    der: Vec<u8>,
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
            pem: format!("{}{}", key.serialize_pem(), cert.pem()),
            cert_pem: cert.pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// The certificate uploaded to APP_CERT.
fn registered() -> &'static Cert {
    static C: OnceLock<Cert> = OnceLock::new();
    C.get_or_init(Cert::generate)
}

/// A certificate uploaded nowhere.
fn stranger() -> &'static Cert {
    static C: OnceLock<Cert> = OnceLock::new();
    C.get_or_init(Cert::generate)
}

fn base_toml() -> String {
    let cert = registered().cert_pem.replace('\n', "\\n");
    format!(
        r#"
seed = 11
page_size = 3
token_lifetime_secs = 3599

[[tenant]]
id = "{TENANT_A}"
users = 3
subscriptions = {{ "Audit.Exchange" = "enabled", "Audit.General" = "disabled" }}
[tenant.data]
hours_back = 6
records_per_blob = 2
records_per_hour = {{ "Audit.Exchange" = 4, "Audit.General" = 2 }}

[[tenant]]
id = "{TENANT_B}"
domain = "fabrikam.onmicrosoft.com"
users = 2
audit_enabled = false
[tenant.data]
records_per_hour = {{}}

[[tenant]]
id = "{TENANT_HIGH}"
domain = "agency.onmicrosoft.us"
cloud = "gcc-high"
users = 2
subscriptions = {{ "Audit.Exchange" = "enabled" }}
[tenant.data]
records_per_hour = {{}}

[[app]]
client_id = "{APP_SECRET}"
home_tenant = "{TENANT_A}"
multi_tenant = true
consented_tenants = ["{TENANT_B}"]
secrets = [{{ value = "{SECRET}" }}, {{ value = "old-secret", expires = "2020-01-01T00:00:00Z" }}]
manage_roles = ["ActivityFeed.Read"]
graph_roles = ["User.Read.All"]

[[app]]
client_id = "{APP_CERT}"
home_tenant = "{TENANT_A}"
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
"#
    )
}

async fn emulator(extra: &str) -> Emulator {
    emulator_from(&format!("{}\n{extra}", base_toml())).await
}

async fn emulator_from(toml: &str) -> Emulator {
    Emulator::start(Scenario::from_toml(toml).expect("scenario"))
        .await
        .expect("emulator")
}

fn tenant_at(base: &str, id: &str, client_id: &str) -> Tenant {
    Tenant {
        id: TenantId::parse(id).expect("guid"),
        name: None,
        cloud: CloudKind::Custom,
        endpoints: Endpoints {
            login: base.to_owned(),
            manage: base.to_owned(),
            graph: base.to_owned(),
            manage_resource: "https://manage.office.com".into(),
            graph_resource: "https://graph.microsoft.com".into(),
        },
        client_id: client_id.to_owned(),
        credential: CredentialRef::Secret {
            secret: SecretRef::Env("UNUSED".into()),
        },
        token_endpoint: TokenEndpoint::V2,
        content_types: vec![ContentType::Exchange],
        publisher_id: id.to_owned(),
        enabled: true,
    }
}

fn tenant(emu: &Emulator, client_id: &str) -> Tenant {
    tenant_at(&emu.base_url(), TENANT_A, client_id)
}

/// Retries fast enough for tests.
fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        deadline: None,
    }
}

fn provider(t: &Tenant, credential: Credential) -> TokenProvider {
    TokenProvider::new(http_client(), t, credential).with_retry(fast())
}

fn secret_provider(t: &Tenant) -> TokenProvider {
    provider(t, Credential::secret(SECRET.into()))
}

fn client_for(t: &Tenant, credential: Credential, retry: RetryPolicy) -> ManagementClient {
    ManagementClient::new(http_client(), t, Arc::new(provider(t, credential)), retry)
}

fn client(emu: &Emulator) -> ManagementClient {
    client_for(
        &tenant(emu, APP_SECRET),
        Credential::secret(SECRET.into()),
        fast(),
    )
}

fn count(emu: &Emulator, key: &str) -> u64 {
    emu.request_summary()
        .by_endpoint_status
        .get(key)
        .copied()
        .unwrap_or(0)
}

fn endpoint_requests(emu: &Emulator, endpoint: &str) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.endpoint == endpoint)
        .count()
}

fn claims(token: &AccessToken) -> serde_json::Value {
    let payload = token.bearer().split('.').nth(1).expect("jwt");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

/// A window covering all the scenario's content (6 h back) up to now.
fn recent_window() -> Window {
    let now = Utc::now();
    let start = chrono::DateTime::from_timestamp(now.timestamp() - 8 * 3600, 0).expect("time");
    let end = chrono::DateTime::from_timestamp(now.timestamp() + 60, 0).expect("time");
    Window::new(start, end, now).expect("window")
}

/// The content ids the emulator would list for tenant A, `ct`, `window`.
fn truth_ids(emu: &Emulator, ct: ContentType, window: &Window) -> BTreeSet<String> {
    emu.truth()
        .into_iter()
        .filter(|b| {
            b.tenant == TENANT_A
                && b.content_type == ct.as_str()
                && b.available
                && b.content_created >= window.start()
                && b.content_created < window.end()
        })
        .map(|b| b.content_id)
        .collect()
}

/// Every Management API request carried tenant A's id as PublisherIdentifier.
fn assert_publisher_everywhere(emu: &Emulator) {
    let api: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| matches!(r.endpoint, "subscriptions" | "content" | "blob"))
        .collect();
    assert!(!api.is_empty(), "no Management API request was made");
    for r in api {
        assert_eq!(
            r.publisher_identifier.as_deref(),
            Some(TENANT_A),
            "{} {} without PublisherIdentifier",
            r.method,
            r.path
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[tokio::test]
async fn secret_token_is_obtained_once_and_cached_per_audience() {
    let emu = emulator("").await;
    let p = secret_provider(&tenant(&emu, APP_SECRET));
    let t1 = p.token(Audience::Manage).await.expect("token");
    assert_eq!(claims(&t1)["aud"], "https://manage.office.com");
    assert_eq!(claims(&t1)["appidacr"], "1");
    assert!(t1.expires_at() > Utc::now() + chrono::Duration::minutes(50));
    let t2 = p.token(Audience::Manage).await.expect("token");
    assert_eq!(t1.bearer(), t2.bearer());
    assert_eq!(
        count(&emu, "token 200"),
        1,
        "the second call must come from the cache"
    );
    let g = p.token(Audience::Graph).await.expect("graph token");
    assert_eq!(claims(&g)["aud"], "https://graph.microsoft.com");
    assert_eq!(count(&emu, "token 200"), 2, "one token per audience");
    assert!(
        !format!("{t1:?}").contains(t1.bearer()),
        "Debug shows the token"
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let emu = emulator("").await;
    let p = Arc::new(secret_provider(&tenant(&emu, APP_SECRET)));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move {
                p.token(Audience::Manage)
                    .await
                    .map(|t| t.bearer().to_owned())
            })
        })
        .collect();
    let mut tokens = BTreeSet::new();
    for t in tasks {
        tokens.insert(t.await.expect("join").expect("token"));
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(count(&emu, "token 200"), 1, "16 callers, one token request");
    p.invalidate(Audience::Manage);
    p.token(Audience::Manage).await.expect("token");
    assert_eq!(
        count(&emu, "token 200"),
        2,
        "invalidate forces a new request"
    );
}

#[tokio::test]
async fn certificate_tokens_rs256_x5t_and_ps256_x5t_s256() {
    let emu = emulator("").await;
    let t = tenant(&emu, APP_CERT);
    for alg in [AssertionAlg::RS256, AssertionAlg::PS256] {
        let cred = Credential::certificate_from_pem(&registered().pem, alg).expect("pem");
        let p = provider(&t, cred);
        let tok = p
            .token(Audience::Manage)
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(claims(&tok)["appidacr"], "2", "{alg:?}");
        assert_eq!(claims(&tok)["tid"], TENANT_A);
        p.token(Audience::Manage).await.expect("cached");
        assert_eq!(p.requests_sent(), 1, "{alg:?}: cached");
    }
    assert_eq!(count(&emu, "token 200"), 2);
    // The v1 endpoint takes `resource=` and the assertion's aud is the v1 URL.
    let mut v1 = t.clone();
    v1.token_endpoint = TokenEndpoint::V1;
    let cred =
        Credential::certificate_from_pem(&registered().pem, AssertionAlg::RS256).expect("pem");
    let p = provider(&v1, cred);
    assert!(p.token_url().ends_with("/oauth2/token"));
    let tok = p.token(Audience::Manage).await.expect("v1 token");
    assert_eq!(claims(&tok)["aud"], "https://manage.office.com");
    assert!(
        tok.expires_at() > Utc::now() + chrono::Duration::minutes(50),
        "v1 string expires_in read"
    );
}

#[tokio::test]
async fn v1_secret_token_reads_string_numbers() {
    let emu = emulator("").await;
    let mut t = tenant(&emu, APP_SECRET);
    t.token_endpoint = TokenEndpoint::V1;
    let p = secret_provider(&t);
    let tok = p.token(Audience::Manage).await.expect("v1 token");
    let left = tok.expires_at() - Utc::now();
    assert!(
        left > chrono::Duration::minutes(55) && left <= chrono::Duration::seconds(3600),
        "{left}"
    );
}

#[tokio::test]
async fn short_lived_tokens_are_refreshed() {
    let toml = base_toml().replace("token_lifetime_secs = 3599", "token_lifetime_secs = 5");
    let emu = emulator_from(&toml).await;
    let t = tenant(&emu, APP_SECRET);
    let tokens = Arc::new(secret_provider(&t));
    let api = ManagementClient::new(http_client(), &t, tokens.clone(), fast());
    api.list_subscriptions().await.expect("first call");
    assert_eq!(count(&emu, "token 200"), 1);
    // The emulator's clock passes the token's expiry: the API answers 401, the client drops
    // the token, gets a new one and retries once.
    emu.advance_clock(chrono::Duration::seconds(6));
    api.list_subscriptions().await.expect("call after expiry");
    assert_eq!(count(&emu, "subscriptions 401"), 1);
    assert_eq!(count(&emu, "token 200"), 2, "a new token after the 401");
    assert!(api.stats().retries >= 1);
    // Locally, a 5 s token is refreshed at half its life.
    let first = tokens.token(Audience::Manage).await.expect("token");
    assert_eq!(count(&emu, "token 200"), 2, "still fresh");
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let second = tokens.token(Audience::Manage).await.expect("token");
    assert_ne!(first.bearer(), second.bearer());
    assert_eq!(count(&emu, "token 200"), 3, "refreshed before expiry");
}

#[tokio::test]
async fn token_endpoint_failures_are_retried() {
    let emu = emulator(
        r#"
[[fault]]
kind = "internal-error"
endpoints = ["token"]
every = 1
limit = 2
"#,
    )
    .await;
    let p = secret_provider(&tenant(&emu, APP_SECRET));
    p.token(Audience::Manage)
        .await
        .expect("token after two 500s");
    assert_eq!(count(&emu, "token 500"), 2);
    assert_eq!(count(&emu, "token 200"), 1);
}

#[tokio::test]
async fn aadsts_refusals_name_the_fix_and_are_not_retried() {
    let emu = emulator("").await;
    let t = tenant(&emu, APP_SECRET);
    // Wrong secret: 7000215, "use the value".
    let e = provider(&t, Credential::secret("wrong-secret".into()))
        .token(Audience::Manage)
        .await
        .unwrap_err();
    match &e {
        AuthError::Aadsts {
            code,
            fix,
            tenant,
            client_id,
            ..
        } => {
            assert_eq!(*code, 7000215);
            assert!(fix.to_lowercase().contains("value"), "{fix}");
            assert_eq!(
                (tenant.as_str(), client_id.as_str()),
                (TENANT_A, APP_SECRET)
            );
        }
        other => panic!("expected AADSTS, got {other:?}"),
    }
    assert!(e.is_config());
    assert!(
        !e.to_string().contains("wrong-secret"),
        "the secret leaked: {e}"
    );
    assert_eq!(
        endpoint_requests(&emu, "token"),
        1,
        "AADSTS refusals are not retried"
    );
    // Expired secret: 7000222.
    let e = provider(&t, Credential::secret("old-secret".into()))
        .token(Audience::Manage)
        .await
        .unwrap_err();
    assert!(matches!(e, AuthError::Aadsts { code: 7000222, .. }), "{e}");
    // A certificate that was never uploaded: 700027, with the thumbprint sent.
    let cred = Credential::certificate_from_pem(&stranger().pem, AssertionAlg::RS256).expect("pem");
    let x5t = cred.certificate().expect("cert").x5t().to_owned();
    assert_eq!(
        x5t,
        URL_SAFE_NO_PAD.encode(<sha1::Sha1 as sha1::Digest>::digest(&stranger().der))
    );
    let e = provider(&tenant(&emu, APP_CERT), cred)
        .token(Audience::Manage)
        .await
        .unwrap_err();
    assert!(matches!(e, AuthError::Aadsts { code: 700027, .. }), "{e}");
    assert!(
        e.to_string().contains(&x5t),
        "the thumbprint sent is shown: {e}"
    );
    // A GCC High tenant asked at the worldwide login: 90002, "set cloud = gcc-high".
    let high = tenant_at(&emu.cloud_url(Cloud::Commercial), TENANT_HIGH, APP_HIGH);
    let e = secret_provider(&high)
        .token(Audience::Manage)
        .await
        .unwrap_err();
    match &e {
        AuthError::Aadsts { code, fix, .. } => {
            assert_eq!(*code, 90002);
            assert!(fix.contains("gcc-high"), "{fix}");
        }
        other => panic!("expected AADSTS90002, got {other:?}"),
    }
    // The same tenant at its own cloud works.
    let mut high = tenant_at(&emu.cloud_url(Cloud::GccHigh), TENANT_HIGH, APP_HIGH);
    high.endpoints.manage_resource = "https://manage.office365.us".into();
    secret_provider(&high)
        .token(Audience::Manage)
        .await
        .expect("gcc high token");
    // The wrong cloud's resource: 500011.
    let mut wrong = t.clone();
    wrong.endpoints.manage_resource = "https://manage.office365.us".into();
    let e = secret_provider(&wrong)
        .token(Audience::Manage)
        .await
        .unwrap_err();
    assert!(matches!(e, AuthError::Aadsts { code: 500011, .. }), "{e}");
}

#[tokio::test]
async fn unusable_login_answers_are_clear_errors() {
    let emu = emulator("").await;
    let mut t = tenant(&emu, APP_SECRET);
    // A 200 without access_token.
    let (login, hits) = fixed_server(|_| {
        http_response(
            "200 OK",
            &[("Content-Type", "application/json")],
            r#"{"token_type":"Bearer","expires_in":3599}"#,
        )
    })
    .await;
    t.endpoints.login = login;
    let e = secret_provider(&t)
        .token(Audience::Manage)
        .await
        .unwrap_err();
    assert!(matches!(e, AuthError::Decode { status: 200, .. }), "{e:?}");
    assert!(e.to_string().contains("access_token"), "{e}");
    assert!(!e.is_config());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // A 400 that is not Entra's.
    let (login, _) =
        fixed_server(|_| http_response("400 Bad Request", &[], "<html>nope</html>")).await;
    t.endpoints.login = login;
    let e = secret_provider(&t)
        .token(Audience::Manage)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            AuthError::Http {
                status: Some(400),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("nope"), "{e}");
    assert!(
        e.is_config(),
        "a login URL answering a non-Entra 4xx is a configuration error"
    );
    // Nothing listening.
    t.endpoints.login = "http://127.0.0.1:1".into();
    let e = secret_provider(&t)
        .token(Audience::Manage)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            AuthError::Http {
                status: None,
                attempts: 6,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.to_string().contains(SECRET));
}

// ---------------------------------------------------------------------------------------------
// Management Activity API

#[tokio::test]
async fn list_content_pages_through_exactly_the_truth() {
    let emu = emulator("").await;
    let api = client(&emu);
    let w = recent_window();
    let blobs = api
        .list_content(ContentType::Exchange, &w)
        .await
        .expect("listing");
    let ids: Vec<String> = blobs.iter().map(|b| b.content_id.clone()).collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "duplicates in the listing");
    let truth = truth_ids(&emu, ContentType::Exchange, &w);
    assert!(
        truth.len() > 3,
        "the scenario must need several pages ({} blobs)",
        truth.len()
    );
    assert_eq!(unique, truth);
    let pages = count(&emu, "content 200");
    assert_eq!(
        pages as usize,
        truth.len().div_ceil(3),
        "one request per page of 3"
    );
    for b in &blobs {
        assert_eq!(b.content_type, ContentType::Exchange);
        assert!(b.content_created >= w.start() && b.content_created < w.end());
        assert!(b.content_expiration > b.content_created);
        assert!(
            api.check_content_uri(&b.content_uri).is_ok(),
            "{}",
            b.content_uri
        );
    }
    // A narrower window is half-open on contentCreated.
    let first = blobs
        .iter()
        .map(|b| b.content_created)
        .min()
        .expect("a blob");
    let start = chrono::DateTime::from_timestamp(first.timestamp() + 1, 0).expect("time");
    let narrow = Window::new(start, w.end(), Utc::now()).expect("window");
    let fewer = api
        .list_content(ContentType::Exchange, &narrow)
        .await
        .expect("listing");
    assert_eq!(
        fewer
            .iter()
            .map(|b| b.content_id.clone())
            .collect::<BTreeSet<_>>(),
        truth_ids(&emu, ContentType::Exchange, &narrow)
    );
    assert_publisher_everywhere(&emu);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_and_counted() {
    let emu = emulator(
        r#"
[[fault]]
kind = "af429"
endpoints = ["content"]
every = 2

[[fault]]
kind = "internal-error"
endpoints = ["blob"]
every = 2

[[fault]]
kind = "unavailable"
endpoints = ["subscriptions"]
every = 1
limit = 1
"#,
    )
    .await;
    let api = client(&emu);
    let w = recent_window();
    let blobs = api
        .list_content(ContentType::Exchange, &w)
        .await
        .expect("listing despite AF429");
    assert_eq!(
        blobs
            .iter()
            .map(|b| b.content_id.clone())
            .collect::<BTreeSet<_>>(),
        truth_ids(&emu, ContentType::Exchange, &w)
    );
    assert!(count(&emu, "content 403") >= 1, "AF429 never fired");
    for b in blobs.iter().take(3) {
        let body = api
            .fetch_blob(&b.content_uri)
            .await
            .expect("blob despite 500s");
        body.into_bytes(1 << 20).await.expect("bytes");
    }
    assert!(count(&emu, "blob 500") >= 1, "500 never fired");
    api.list_subscriptions().await.expect("list despite a 503");
    let stats = api.stats();
    assert!(stats.throttled >= count(&emu, "content 403"), "{stats:?}");
    let failures =
        count(&emu, "content 403") + count(&emu, "blob 500") + count(&emu, "subscriptions 503");
    assert_eq!(stats.retries, failures, "{stats:?}");
    assert_eq!(
        stats.by_status.get(&403).copied(),
        Some(count(&emu, "content 403"))
    );
    assert_eq!(
        stats.calls,
        emu.request_summary().total - count(&emu, "token 200")
    );
    assert_publisher_everywhere(&emu);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let emu = emulator(
        r#"
[[fault]]
kind = "too-many-requests"
endpoints = ["subscriptions"]
every = 1
limit = 1
retry_after_secs = 0.3
"#,
    )
    .await;
    let api = client(&emu);
    api.tokens().token(Audience::Manage).await.expect("token");
    let t = Instant::now();
    api.list_subscriptions().await.expect("list after a 429");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "Retry-After ignored: {:?}",
        t.elapsed()
    );
    assert_eq!(count(&emu, "subscriptions 429"), 1);
    assert_eq!(api.stats().throttled, 1);
}

#[tokio::test]
async fn a_deadline_stops_retrying_at_once() {
    let emu = emulator(
        r#"
[[fault]]
kind = "internal-error"
endpoints = ["content"]
every = 1
"#,
    )
    .await;
    let patient = RetryPolicy {
        max_attempts: 1000,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
        deadline: None,
    };
    let api = client_for(
        &tenant(&emu, APP_SECRET),
        Credential::secret(SECRET.into()),
        patient,
    );
    api.tokens().token(Audience::Manage).await.expect("token");
    let t = Instant::now();
    let limited = api.with_deadline(tokio::time::Instant::now() + Duration::from_millis(200));
    let e = limited
        .list_content(ContentType::Exchange, &recent_window())
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Deadline { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Retry);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        api.stats().deadline_hits,
        1,
        "stats are shared with the deadline copy"
    );
    // A deadline already past sends nothing.
    let before = emu.request_summary().total as usize;
    let past = api.with_deadline(tokio::time::Instant::now());
    let e = past.list_subscriptions().await.unwrap_err();
    assert!(matches!(e, ApiError::Deadline { attempts: 0, .. }), "{e:?}");
    assert_eq!(emu.request_summary().total as usize, before);
}

#[tokio::test]
async fn retries_are_bounded() {
    let emu = emulator(
        r#"
[[fault]]
kind = "af429"
endpoints = ["subscriptions"]
every = 1
"#,
    )
    .await;
    let api = client(&emu);
    let e = api.list_subscriptions().await.unwrap_err();
    match &e {
        ApiError::Exhausted {
            attempts,
            status,
            code,
            ..
        } => {
            assert_eq!(*attempts, 6);
            assert_eq!(*status, Some(403));
            assert_eq!(code.as_deref(), Some("AF429"));
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert_eq!(e.class(), ErrorClass::Retry);
    assert_eq!(count(&emu, "subscriptions 403"), 6);
}

#[tokio::test]
async fn fetched_blobs_hold_the_truths_records() {
    let emu = emulator("").await;
    let api = client(&emu);
    let blobs = api
        .list_content(ContentType::Exchange, &recent_window())
        .await
        .expect("listing");
    let truth = emu.truth();
    for b in blobs.iter().take(3) {
        let bytes = api
            .fetch_blob(&b.content_uri)
            .await
            .expect("fetch")
            .into_bytes(1 << 20)
            .await
            .expect("body");
        let records: Vec<serde_json::Value> = serde_json::from_slice(&bytes).expect("json array");
        let ids: Vec<String> = records
            .iter()
            .map(|r| r["Id"].as_str().expect("Id").to_owned())
            .collect();
        let expected = &truth
            .iter()
            .find(|t| t.content_id == b.content_id)
            .expect("listed blob in truth")
            .record_ids;
        assert_eq!(&ids, expected);
    }
    // Streaming gives the same bytes; a limit below the size is refused.
    let b = &blobs[0];
    let whole = api
        .fetch_blob_bytes(&b.content_uri, 1 << 20)
        .await
        .expect("bytes");
    let mut streamed = Vec::new();
    let mut s = std::pin::pin!(
        api.fetch_blob(&b.content_uri)
            .await
            .expect("fetch")
            .into_stream()
    );
    while let Some(chunk) = futures_util::StreamExt::next(&mut s).await {
        streamed.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(whole.as_ref(), streamed.as_slice());
    let e = api
        .fetch_blob(&b.content_uri)
        .await
        .expect("fetch")
        .into_bytes(10)
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::TooLarge { limit: 10, .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Refused);
    assert_publisher_everywhere(&emu);
}

#[tokio::test]
async fn foreign_content_uris_are_refused_without_a_request() {
    let emu = emulator("").await;
    let api = client(&emu);
    let port = emu.addr().port();
    let path =
        format!("/api/v1.0/{TENANT_A}/activity/feed/audit/a$b$audit_exchange$Audit_Exchange$x");
    let other_port = if port == 65535 { 65534 } else { port + 1 };
    let foreign = [
        format!("http://localhost:{port}{path}"),
        format!("http://10.0.0.1:{port}{path}"),
        format!("http://127.0.0.1:{other_port}{path}"),
        format!("https://127.0.0.1:{port}{path}"),
        format!("http://127.0.0.1:{port}/api/v1.0/{TENANT_B}/activity/feed/audit/a$b$c"),
        format!("http://127.0.0.1:{port}/api/v1.0/{TENANT_A}/activity/feed/subscriptions/list"),
        format!("http://127.0.0.1:{port}/gcc-high{path}"),
        format!("http://attacker@127.0.0.1:{port}{path}"),
        "not a url".to_owned(),
    ];
    for uri in &foreign {
        let e = api.fetch_blob(uri).await.unwrap_err();
        assert!(matches!(e, ApiError::ForeignUri { .. }), "{uri}: {e:?}");
        assert_eq!(e.class(), ErrorClass::Refused, "{uri}");
    }
    assert_eq!(
        endpoint_requests(&emu, "blob"),
        0,
        "a refused URI reached the server"
    );
    assert_eq!(
        emu.request_summary().total,
        0,
        "not even a token was requested"
    );
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    let emu = emulator(
        r#"
[[fault]]
kind = "drop"
endpoints = ["content"]
every = 1
limit = 1

[[fault]]
kind = "drop"
endpoints = ["blob"]
every = 1
limit = 2
"#,
    )
    .await;
    let api = client(&emu);
    let w = recent_window();
    let blobs = api
        .list_content(ContentType::Exchange, &w)
        .await
        .expect("listing after a drop");
    assert_eq!(
        blobs
            .iter()
            .map(|b| b.content_id.clone())
            .collect::<BTreeSet<_>>(),
        truth_ids(&emu, ContentType::Exchange, &w)
    );
    assert_eq!(count(&emu, "content 0"), 1);
    // Blob GETs whose connection drops are retried too.
    let bytes = api
        .fetch_blob_bytes(&blobs[0].content_uri, 1 << 20)
        .await
        .expect("blob after two drops");
    assert!(serde_json::from_slice::<Vec<serde_json::Value>>(&bytes).is_ok());
    assert_eq!(count(&emu, "blob 0"), 2);
    assert_eq!(count(&emu, "blob 200"), 1);
}

#[tokio::test]
async fn a_body_cut_mid_way_is_a_retryable_error() {
    let emu = emulator("").await;
    // Headers announce 100 bytes, 7 arrive, then the connection closes.
    let (manage, hits) = fixed_server(|_| {
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n[{\"Id\":".to_owned()
    })
    .await;
    let mut t = tenant(&emu, APP_SECRET);
    t.endpoints.manage = manage.clone();
    let api = client_for(&t, Credential::secret(SECRET.into()), fast());
    let uri = format!(
        "{manage}/api/v1.0/{TENANT_A}/activity/feed/audit/a$b$audit_exchange$Audit_Exchange$x"
    );
    let e = api
        .fetch_blob(&uri)
        .await
        .expect("headers arrive")
        .into_bytes(1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Transport { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Retry);
    assert!(
        e.to_string()
            .contains("a$b$audit_exchange$Audit_Exchange$x"),
        "{e}"
    );
    // The streaming reader sees the same error as its last item.
    let mut s = std::pin::pin!(api.fetch_blob(&uri).await.expect("headers").into_stream());
    let mut last = None;
    while let Some(item) = futures_util::StreamExt::next(&mut s).await {
        last = Some(item);
    }
    assert!(
        matches!(last, Some(Err(ApiError::Transport { .. }))),
        "{last:?}"
    );
    // fetch_blob_bytes retries the whole GET, then gives up.
    let e = api.fetch_blob_bytes(&uri, 1 << 20).await.unwrap_err();
    assert!(
        matches!(e, ApiError::Exhausted { attempts: 6, .. }),
        "{e:?}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2 + 6);
}

#[tokio::test]
async fn an_expired_blob_is_class_expired() {
    let toml = base_toml().replace(
        "records_per_blob = 2",
        "records_per_blob = 2\nexpired_fraction = 1.0\nexpire_after_secs = 1",
    );
    let emu = emulator_from(&toml).await;
    let api = client(&emu);
    let blobs = api
        .list_content(ContentType::Exchange, &recent_window())
        .await
        .expect("listing");
    let b = blobs.first().expect("a blob");
    let e = api.fetch_blob(&b.content_uri).await.unwrap_err();
    assert_eq!(e.code(), Some("AF20051"), "{e}");
    assert_eq!(e.class(), ErrorClass::Expired);
    assert!(
        e.to_string().contains(&b.content_id),
        "the content id is named: {e}"
    );
    assert_eq!(count(&emu, "blob 400"), 1, "expired blobs are not retried");
}

#[tokio::test]
async fn subscriptions_start_once_then_already_enabled() {
    let emu = emulator("").await;
    let api = client(&emu);
    let w = recent_window();
    // No subscription yet, and one disabled by an admin: both mean "start it".
    let e = api
        .list_content(ContentType::SharePoint, &w)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.class()),
        (Some("AF20022"), ErrorClass::Resubscribe),
        "{e}"
    );
    let e = api
        .list_content(ContentType::General, &w)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.class()),
        (Some("AF20023"), ErrorClass::Resubscribe),
        "{e}"
    );
    assert_eq!(
        api.start_subscription(ContentType::SharePoint)
            .await
            .expect("start"),
        StartOutcome::Started
    );
    assert_eq!(
        api.start_subscription(ContentType::SharePoint)
            .await
            .expect("start again"),
        StartOutcome::AlreadyEnabled
    );
    assert_eq!(
        api.start_subscription(ContentType::General)
            .await
            .expect("re-enable"),
        StartOutcome::Started
    );
    api.list_content(ContentType::General, &w)
        .await
        .expect("listing after re-enabling");
    let subs = api.list_subscriptions().await.expect("list");
    let names: BTreeSet<String> = subs.iter().map(|s| s.content_type.clone()).collect();
    assert!(
        names.contains("Audit.SharePoint") && names.contains("Audit.Exchange"),
        "{names:?}"
    );
    assert!(
        subs.iter().all(|s| s.status.as_deref() == Some("enabled")),
        "{subs:?}"
    );
    assert_publisher_everywhere(&emu);
}

#[tokio::test]
async fn missing_admin_consent_is_af10001_config() {
    let emu = emulator("").await;
    let api = client_for(
        &tenant(&emu, APP_NOCONSENT),
        Credential::secret(SECRET.into()),
        fast(),
    );
    let e = api.list_subscriptions().await.unwrap_err();
    assert_eq!(e.code(), Some("AF10001"), "{e}");
    assert_eq!(e.class(), ErrorClass::Config);
    assert!(
        e.to_string()
            .contains("grant admin consent for ActivityFeed.Read in the app registration"),
        "{e}"
    );
    assert_eq!(
        count(&emu, "subscriptions 401"),
        1,
        "AF10001 is not retried"
    );
}

#[tokio::test]
async fn audit_log_off_is_config_with_the_purview_fix() {
    let emu = emulator("").await;
    let t = tenant_at(&emu.base_url(), TENANT_B, APP_SECRET);
    let api = client_for(&t, Credential::secret(SECRET.into()), fast());
    let e = api
        .start_subscription(ContentType::Exchange)
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::AuditDisabled { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Config);
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "unified audit logging is off for tenant `{TENANT_B}`"
        )),
        "{text}"
    );
    assert!(text.contains("Purview"), "{text}");
    assert!(!text.contains("   at "), "no stack trace: {text}");
}

#[tokio::test]
async fn window_errors_show_the_server_date() {
    let emu = emulator("").await;
    let api = client(&emu);
    // The emulator's clock runs 8 days ahead: a window valid here is too old there.
    emu.advance_clock(chrono::Duration::days(8));
    let e = api
        .list_content(ContentType::Exchange, &recent_window())
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Window, "{e}");
    assert!(e.to_string().contains("server Date"), "{e}");
}

#[tokio::test]
async fn server_skew_follows_the_emulator_clock() {
    // The emulator's clock runs 3 minutes ahead.
    let emu = emulator_from(&format!("clock_offset_secs = 180\n{}", base_toml())).await;
    let api = client(&emu);
    assert_eq!(api.server_skew(), None, "no answer yet");
    api.list_content(ContentType::Exchange, &recent_window())
        .await
        .expect("listing");
    let near = |skew: Option<chrono::Duration>, want: chrono::Duration| {
        let skew = skew.expect("a skew");
        assert!(
            (skew - want).abs() <= chrono::Duration::seconds(2),
            "skew {skew}, expected {want}"
        );
    };
    near(api.server_skew(), chrono::Duration::seconds(180));
    // An error answer counts too, and clones share what was seen.
    emu.advance_clock(chrono::Duration::days(8));
    let e = api
        .list_content(ContentType::Exchange, &recent_window())
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Window, "{e}");
    let want = chrono::Duration::days(8) + chrono::Duration::seconds(180);
    near(api.server_skew(), want);
    near(api.clone().server_skew(), want);
}

#[tokio::test]
async fn server_skew_ignores_a_missing_or_garbage_date() {
    let emu = emulator("").await;
    let mut t = tenant(&emu, APP_SECRET);
    let old = "Sun, 06 Nov 1994 08:49:37 GMT";
    for date in [None, Some("garbage"), Some(old)] {
        let (manage, _) = fixed_server(|_| {
            let mut headers = vec![("Content-Type", "application/json")];
            headers.extend(date.map(|d| ("Date", d)));
            http_response("200 OK", &headers, "[]")
        })
        .await;
        t.endpoints.manage = manage;
        let api = client_for(&t, Credential::secret(SECRET.into()), fast());
        assert!(api.list_subscriptions().await.expect("list").is_empty());
        let skew = api.server_skew();
        if date == Some(old) {
            let then = chrono::DateTime::parse_from_rfc2822(old).expect("date");
            let want = then.with_timezone(&Utc) - Utc::now();
            let skew = skew.expect("a skew");
            assert!(
                (skew - want).abs() <= chrono::Duration::seconds(2),
                "{skew} vs {want}"
            );
        } else {
            assert_eq!(skew, None, "Date {date:?}");
        }
    }
}

#[tokio::test]
async fn a_401_gets_a_new_token_and_one_retry() {
    let emu = emulator(
        r#"
[[fault]]
kind = "unauthorized"
endpoints = ["content"]
every = 2
"#,
    )
    .await;
    let api = client(&emu);
    let w = recent_window();
    let blobs = api
        .list_content(ContentType::Exchange, &w)
        .await
        .expect("listing");
    assert_eq!(
        blobs
            .iter()
            .map(|b| b.content_id.clone())
            .collect::<BTreeSet<_>>(),
        truth_ids(&emu, ContentType::Exchange, &w)
    );
    assert!(count(&emu, "content 401") >= 1);
    assert_eq!(
        count(&emu, "token 200"),
        1 + count(&emu, "content 401"),
        "one new token per 401"
    );
}

#[tokio::test]
async fn redirects_and_foreign_or_looping_next_pages_are_refused() {
    let emu = emulator("").await;
    let mut t = tenant(&emu, APP_SECRET);
    // A redirect is neither followed nor retried.
    let (manage, hits) = fixed_server(|_| {
        http_response(
            "302 Found",
            &[("Location", "http://evil.example/steal")],
            "",
        )
    })
    .await;
    t.endpoints.manage = manage;
    let api = client_for(&t, Credential::secret(SECRET.into()), fast());
    let e = api.list_subscriptions().await.unwrap_err();
    assert!(matches!(e, ApiError::Redirect { status: 302, .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Refused);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // A next-page link to another host is refused before it is requested.
    let (manage, hits) = fixed_server(|_| {
        let next = format!(
            "http://evil.example/api/v1.0/{TENANT_A}/activity/feed/subscriptions/content?nextPage=1"
        );
        http_response(
            "200 OK",
            &[("Content-Type", "application/json"), ("NextPageUri", &next)],
            "[]",
        )
    })
    .await;
    t.endpoints.manage = manage;
    let api = client_for(&t, Credential::secret(SECRET.into()), fast());
    let e = api
        .list_content(ContentType::Exchange, &recent_window())
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::ForeignUri { .. }), "{e:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // A next-page link that comes back to the same page ends with an error, not a loop; the
    // header is read whatever its case and spelling.
    let (manage, hits) = fixed_server(|base| {
        let next =
            format!("{base}/api/v1/{TENANT_A}/activity/feed/subscriptions/content?nextPage=7");
        http_response(
            "200 OK",
            &[("Content-Type", "application/json"), ("nextpageurl", &next)],
            "[]",
        )
    })
    .await;
    t.endpoints.manage = manage;
    let api = client_for(&t, Credential::secret(SECRET.into()), fast());
    let e = api
        .list_content(ContentType::Exchange, &recent_window())
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Paging { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Retry);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "first page, then the linked page once"
    );
}

/// An HTTP/1.1 response that closes the connection.
fn http_response(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r
}

/// A server on 127.0.0.1 answering every request with `respond(base_url)`; counts requests.
async fn fixed_server(respond: impl Fn(&str) -> String) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let response = respond(&base);
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let response = response.clone();
            tokio::spawn(async move {
                // Read the head and the body it announces, then answer.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (base, hits)
}
