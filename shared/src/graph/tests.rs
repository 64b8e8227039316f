//! [`GraphClient`] against the emulator's Graph: paging, delta, `@removed`, 410, 403, 429 with
//! fractional `Retry-After`, 401 refresh, foreign links and the deadline.

use std::sync::Arc;
use std::time::Duration;

use o365_emulator::{Emulator, Scenario};
use tokio::time::Instant;

use super::*;
use crate::auth::{Credential, TokenProvider};
use crate::model::{
    CloudKind, CredentialRef, Endpoints, SecretRef, Tenant, TenantId, TokenEndpoint,
};
use crate::retry::RetryPolicy;

const TENANT: &str = "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d";
const APP: &str = "d9322a5a-9eae-4b5f-8832-402163dff896";
const SECRET: &str = "unit~secret";

async fn emulator(roles: &str, extra: &str) -> Emulator {
    let scenario = Scenario::from_toml(&format!(
        r#"
graph_page_size = 3
delta_token_ttl_secs = 600
[[tenant]]
id = "{TENANT}"
users = 7
[[app]]
client_id = "{APP}"
home_tenant = "{TENANT}"
secrets = [{{ value = "{SECRET}" }}]
graph_roles = [{roles}]
{extra}
"#
    ))
    .unwrap();
    Emulator::start(scenario).await.unwrap()
}

fn client(emu: &Emulator, retry: RetryPolicy) -> GraphClient {
    let base = emu.base_url();
    let mut endpoints = Endpoints::preset(CloudKind::Commercial).unwrap();
    endpoints.login = base.clone();
    endpoints.manage = base.clone();
    endpoints.graph = base;
    let tenant = Tenant {
        id: TenantId::parse(TENANT).unwrap(),
        name: None,
        cloud: CloudKind::Custom,
        endpoints,
        client_id: APP.into(),
        credential: CredentialRef::Secret {
            secret: SecretRef::Env("UNUSED".into()),
        },
        token_endpoint: TokenEndpoint::V2,
        content_types: vec![],
        publisher_id: TENANT.into(),
        enabled: true,
    };
    let http = crate::api::http_client();
    let tokens = Arc::new(TokenProvider::new(
        http.clone(),
        &tenant,
        Credential::secret(SECRET.into()),
    ));
    GraphClient::new(http, &tenant, tokens, retry)
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    }
}

fn ids(round: &DeltaRound) -> Vec<String> {
    let mut v: Vec<String> = round
        .changes
        .iter()
        .map(|c| match c {
            UserChange::Upsert(p) => p.id.clone(),
            UserChange::Removed { id, .. } => format!("-{id}"),
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_full_round_pages_to_the_delta_link_and_a_delta_round_brings_changes_and_removals() {
    let emu = emulator(r#""User.Read.All""#, "").await;
    let c = client(&emu, fast());
    let full = c.users_delta(None).await.unwrap();
    let users = emu.users(TENANT);
    assert_eq!(full.pages, 3, "7 users, 3 per page");
    let mut want: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    want.sort();
    assert_eq!(ids(&full), want);
    let UserChange::Upsert(p) = &full.changes[0] else {
        panic!()
    };
    let u = users.iter().find(|u| u.id == p.id).unwrap();
    assert_eq!(p.upn, Some(Some(u.user_principal_name.clone())));
    assert_eq!(p.account_enabled, Some(Some(u.account_enabled)));
    assert_eq!(p.department, Some(u.department.clone()));
    assert!(full.delta_link.contains("$deltatoken="));

    let quiet = c.users_delta(Some(&full.delta_link)).await.unwrap();
    assert!(quiet.changes.is_empty(), "{quiet:?}");
    assert!(emu.update_user(TENANT, &users[0].id, |u| u.job_title = Some("CFO".into())));
    assert!(emu.remove_user(TENANT, &users[1].id));
    let delta = c.users_delta(Some(&quiet.delta_link)).await.unwrap();
    let mut want = vec![users[0].id.clone(), format!("-{}", users[1].id)];
    want.sort();
    assert_eq!(ids(&delta), want);
    let s = c.stats();
    assert_eq!((s.calls, s.pages, s.retries), (5, 5, 0), "{s:?}");
}

#[tokio::test]
async fn an_expired_delta_token_is_delta_expired() {
    let emu = emulator(r#""User.Read.All""#, "").await;
    let c = client(&emu, fast());
    let full = c.users_delta(None).await.unwrap();
    emu.advance_clock(chrono::Duration::seconds(601));
    let err = c.users_delta(Some(&full.delta_link)).await.unwrap_err();
    assert!(
        matches!(err, GraphError::DeltaExpired { status: 410, .. }),
        "{err}"
    );
    assert!(!err.is_config());
}

#[tokio::test]
async fn a_missing_permission_is_a_config_error_naming_user_read_all_and_is_not_retried() {
    let emu = emulator("", "").await;
    let c = client(&emu, fast());
    let err = c.users_delta(None).await.unwrap_err();
    assert!(matches!(err, GraphError::Forbidden { .. }), "{err}");
    assert!(err.is_config());
    let text = err.to_string();
    assert!(
        text.contains("Authorization_RequestDenied")
            && text.contains("User.Read.All")
            && text.contains("admin consent"),
        "{text}"
    );
    assert_eq!(c.stats().calls, 1);
}

#[tokio::test]
async fn throttling_is_retried_after_the_fractional_retry_after() {
    let emu = emulator(
        r#""User.Read.All""#,
        r#"[[fault]]
kind = "too-many-requests"
endpoints = ["graph"]
every = 1
limit = 2
retry_after_secs = 0.3"#,
    )
    .await;
    let c = client(&emu, fast());
    let t = std::time::Instant::now();
    let full = c.users_delta(None).await.unwrap();
    let elapsed = t.elapsed();
    assert_eq!(full.changes.len(), 7);
    let s = c.stats();
    assert_eq!((s.throttled, s.retries, s.calls), (2, 2, 5), "{s:?}");
    assert!(
        elapsed >= Duration::from_millis(600),
        "Retry-After 0.3 s was not honoured: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once() {
    let emu = emulator(
        r#""User.Read.All""#,
        r#"[[fault]]
kind = "unauthorized"
endpoints = ["graph"]
every = 1
limit = 1"#,
    )
    .await;
    let c = client(&emu, fast());
    assert_eq!(c.users_delta(None).await.unwrap().changes.len(), 7);
    assert_eq!(c.stats().retries, 1);
}

#[tokio::test]
async fn a_foreign_delta_link_is_refused_before_any_request() {
    let emu = emulator(r#""User.Read.All""#, "").await;
    let c = client(&emu, fast());
    let err = c
        .users_delta(Some(
            "http://127.0.0.1:9/v1.0/users/delta?$deltatoken=stolen",
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::ForeignLink { .. }), "{err}");
    assert!(!err.to_string().contains("stolen"), "{err}");
    assert_eq!(c.stats().calls, 0);
    assert!(emu.requests().is_empty());
}

#[tokio::test]
async fn throttling_never_sleeps_past_the_deadline() {
    let emu = emulator(
        r#""User.Read.All""#,
        r#"[[fault]]
kind = "too-many-requests"
endpoints = ["graph"]
every = 1
retry_after_secs = 5.0"#,
    )
    .await;
    let c = client(&emu, fast()).with_deadline(Instant::now() + Duration::from_secs(1));
    let t = std::time::Instant::now();
    let err = c.users_delta(None).await.unwrap_err();
    assert!(matches!(err, GraphError::Deadline { .. }), "{err}");
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}
