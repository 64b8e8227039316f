//! Token endpoints over HTTP.

use jsonwebtoken::Algorithm;

use crate::common::*;

fn aadsts(body: &serde_json::Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn v2_secret_token_carries_roles_tenant_and_lifetime() {
    let emu = start("").await;
    let (status, body) = token_form(
        &emu.base_url(),
        TENANT_A,
        true,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP_SECRET),
            ("client_secret", SECRET),
            ("scope", "https://manage.office.com/.default"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["expires_in"].as_u64(),
        Some(600),
        "expires_in is a number from the scenario"
    );
    let claims = decode_claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://manage.office.com");
    assert_eq!(claims["tid"], TENANT_A);
    assert_eq!(claims["appid"], APP_SECRET);
    assert_eq!(claims["appidacr"], "1");
    assert_eq!(
        claims["roles"],
        serde_json::json!(["ActivityFeed.Read", "ActivityFeed.ReadDlp"])
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
}

#[tokio::test]
async fn v1_token_uses_resource_and_string_numbers_and_accepts_the_domain() {
    let emu = start("").await;
    let (status, body) = token_form(
        &emu.base_url(),
        "contoso.onmicrosoft.com",
        false,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP_SECRET),
            ("client_secret", SECRET),
            ("resource", "https://manage.office.com"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], "600", "v1 sends numbers as strings");
    assert!(body["expires_on"].is_string());
    assert_eq!(body["resource"], "https://manage.office.com");
    let claims = decode_claims(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["tid"], TENANT_A,
        "tid is the GUID even when the domain was used"
    );
}

#[tokio::test]
async fn secret_refusals_carry_the_right_aadsts_codes() {
    let emu = start("").await;
    let base = emu.base_url();
    let form = |client: &'static str, secret: &'static str, scope: &'static str| {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
            ("scope", scope),
        ]
    };
    let manage = "https://manage.office.com/.default";
    let cases: Vec<(&str, Vec<(&str, &str)>, u16, u64, &str)> = vec![
        (
            TENANT_A,
            form(APP_SECRET, "wrong", manage),
            401,
            7000215,
            "invalid_client",
        ),
        (
            TENANT_A,
            form(APP_SECRET, "old-secret", manage),
            401,
            7000222,
            "invalid_client",
        ),
        (
            TENANT_A,
            form("00000000-1111-2222-3333-444444444444", SECRET, manage),
            400,
            700016,
            "unauthorized_client",
        ),
        // A single-tenant app asked for in another tenant.
        (
            TENANT_B,
            form(APP_SECRET, SECRET, manage),
            400,
            700016,
            "unauthorized_client",
        ),
        // Another cloud's resource.
        (
            TENANT_A,
            form(APP_SECRET, SECRET, "https://manage.office365.us/.default"),
            400,
            500011,
            "invalid_resource",
        ),
        (
            TENANT_A,
            form(APP_SECRET, SECRET, "https://manage.office.com"),
            400,
            1002012,
            "invalid_scope",
        ),
    ];
    for (tenant, form, status, code, error) in cases {
        let (s, body) = token_form(&base, tenant, true, &form).await;
        assert_eq!((s, aadsts(&body)), (status, code), "{body}");
        assert_eq!(body["error"], error);
        let desc = body["error_description"].as_str().unwrap();
        assert!(desc.starts_with(&format!("AADSTS{code}:")), "{desc}");
        assert!(
            !desc.contains(SECRET),
            "a secret leaked into an error: {desc}"
        );
    }
}

#[tokio::test]
async fn a_tenant_of_another_cloud_is_not_found_at_this_login_endpoint() {
    let emu = start("").await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", APP_HIGH),
        ("client_secret", SECRET),
        ("scope", "https://manage.office365.us/.default"),
    ];
    // The worldwide login does not know a GCC High tenant...
    let (s, body) = token_form(
        &emu.cloud_url(o365_emulator::Cloud::Commercial),
        TENANT_HIGH,
        true,
        &form,
    )
    .await;
    assert_eq!((s, aadsts(&body)), (400, 90002), "{body}");
    // ...the US government login does.
    let (s, body) = token_form(
        &emu.cloud_url(o365_emulator::Cloud::GccHigh),
        TENANT_HIGH,
        true,
        &form,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        decode_claims(body["access_token"].as_str().unwrap())["aud"],
        "https://manage.office365.us"
    );
}

async fn assertion_request(base: &str, tenant: &str, assertion: &str) -> (u16, serde_json::Value) {
    token_form(
        base,
        tenant,
        true,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP_CERT),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
            ("scope", "https://manage.office.com/.default"),
        ],
    )
    .await
}

#[tokio::test]
async fn certificate_assertions_rs256_x5t_and_ps256_x5t_s256_are_verified() {
    let emu = start("").await;
    let base = emu.base_url();
    let aud = format!("{base}/{TENANT_A}/oauth2/v2.0/token");
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        let jwt = assertion(
            registered(),
            alg,
            registered(),
            &aud,
            APP_CERT,
            &uuid::Uuid::new_v4().to_string(),
        );
        let (s, body) = assertion_request(&base, TENANT_A, &jwt).await;
        assert_eq!(s, 200, "{alg:?}: {body}");
        let claims = decode_claims(body["access_token"].as_str().unwrap());
        assert_eq!(claims["appidacr"], "2");
    }
    // The real login host's URL is an accepted audience too.
    let real = format!("https://login.microsoftonline.com/{TENANT_A}/oauth2/v2.0/token");
    let jwt = assertion(
        registered(),
        Algorithm::RS256,
        registered(),
        &real,
        APP_CERT,
        "jti-real-aud",
    );
    assert_eq!(assertion_request(&base, TENANT_A, &jwt).await.0, 200);
    // Multi-tenant app, consented in tenant B.
    let aud_b = format!("{base}/{TENANT_B}/oauth2/v2.0/token");
    let jwt = assertion(
        registered(),
        Algorithm::RS256,
        registered(),
        &aud_b,
        APP_CERT,
        "jti-b",
    );
    assert_eq!(assertion_request(&base, TENANT_B, &jwt).await.0, 200);
}

#[tokio::test]
async fn assertion_signed_with_the_wrong_key_is_refused_700027() {
    let emu = start("").await;
    let base = emu.base_url();
    let aud = format!("{base}/{TENANT_A}/oauth2/v2.0/token");
    // Claims the registered certificate's thumbprint, but is signed by another key.
    let jwt = assertion(
        stranger(),
        Algorithm::RS256,
        registered(),
        &aud,
        APP_CERT,
        "jti-wrong-key",
    );
    let (s, body) = assertion_request(&base, TENANT_A, &jwt).await;
    assert_eq!((s, aadsts(&body)), (401, 700027), "{body}");
    // A certificate that was never uploaded.
    let jwt = assertion(
        stranger(),
        Algorithm::PS256,
        stranger(),
        &aud,
        APP_CERT,
        "jti-unknown-cert",
    );
    let (s, body) = assertion_request(&base, TENANT_A, &jwt).await;
    assert_eq!((s, aadsts(&body)), (401, 700027), "{body}");
}

#[tokio::test]
async fn assertion_claims_are_checked_aud_iss_and_jti_replay() {
    let emu = start("").await;
    let base = emu.base_url();
    let aud = format!("{base}/{TENANT_A}/oauth2/v2.0/token");
    let wrong_aud = assertion(
        registered(),
        Algorithm::RS256,
        registered(),
        "https://example.com/token",
        APP_CERT,
        "j1",
    );
    let (s, body) = assertion_request(&base, TENANT_A, &wrong_aud).await;
    assert!(s >= 400, "wrong aud accepted: {body}");
    let wrong_iss = assertion(
        registered(),
        Algorithm::RS256,
        registered(),
        &aud,
        APP_SECRET,
        "j2",
    );
    let (s, body) = assertion_request(&base, TENANT_A, &wrong_iss).await;
    assert_eq!((s, aadsts(&body)), (401, 700021), "{body}");
    let good = assertion(
        registered(),
        Algorithm::RS256,
        registered(),
        &aud,
        APP_CERT,
        "j3",
    );
    assert_eq!(assertion_request(&base, TENANT_A, &good).await.0, 200);
    let (s, body) = assertion_request(&base, TENANT_A, &good).await;
    assert!(s >= 400, "a replayed jti was accepted: {body}");
}

#[tokio::test]
async fn an_app_without_admin_consent_gets_a_token_without_roles() {
    let emu = start("").await;
    let token = secret_token(
        &emu.base_url(),
        TENANT_A,
        APP_NOCONSENT,
        "https://manage.office.com",
    )
    .await;
    let claims = decode_claims(&token);
    assert!(claims.get("roles").is_none(), "roles present: {claims}");
}
