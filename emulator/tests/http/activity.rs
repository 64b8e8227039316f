//! Management Activity API over HTTP.

use std::collections::{BTreeSet, HashMap};

use chrono::Duration;

use crate::common::*;

const CT: &str = "Audit.Exchange";

#[tokio::test]
async fn a_token_without_roles_is_answered_af10001() {
    let emu = start("").await;
    let token = secret_token(
        &emu.base_url(),
        TENANT_A,
        APP_NOCONSENT,
        "https://manage.office.com",
    )
    .await;
    let (s, body) = status_code(
        get(
            &feed(&emu.base_url(), TENANT_A, "subscriptions/list"),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!((s, af_code(&body)), (401, "AF10001"), "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("()"),
        "empty permission set named"
    );
}

#[tokio::test]
async fn bearer_and_tenant_checks() {
    let emu = start("").await;
    let base = emu.base_url();
    let token_a = manage_token(&base, TENANT_A).await;
    // No token, a garbage token.
    let r = client()
        .get(feed(&base, TENANT_A, "subscriptions/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, _) =
        status_code(get(&feed(&base, TENANT_A, "subscriptions/list"), "garbage").await).await;
    assert_eq!(s, 401);
    // A token of tenant A used on tenant B's feed.
    let (s, body) =
        status_code(get(&feed(&base, TENANT_B, "subscriptions/list"), &token_a).await).await;
    assert_eq!(af_code(&body), "AF20010", "{s} {body}");
    // Not a GUID.
    let (_, body) =
        status_code(get(&feed(&base, "contoso", "subscriptions/list"), &token_a).await).await;
    assert_eq!(af_code(&body), "AF20013", "{body}");
    // A Graph token is not a Management API token.
    let graph = secret_token(&base, TENANT_A, APP_SECRET, "https://graph.microsoft.com").await;
    let (s, _) = status_code(get(&feed(&base, TENANT_A, "subscriptions/list"), &graph).await).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn subscriptions_start_stop_list_and_their_errors() {
    let emu = start("").await;
    let base = emu.base_url();
    let token = manage_token(&base, TENANT_A).await;
    let start_url = |ct: &str| {
        format!(
            "{}?contentType={ct}",
            feed(&base, TENANT_A, "subscriptions/start")
        )
    };
    // Listing content without a subscription.
    let (_, body) = status_code(
        get(
            &format!(
                "{}?contentType=Audit.SharePoint",
                feed(&base, TENANT_A, "subscriptions/content")
            ),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(af_code(&body), "AF20022", "{body}");
    // Disabled by an admin.
    let (_, body) = status_code(
        get(
            &format!(
                "{}?contentType=Audit.General",
                feed(&base, TENANT_A, "subscriptions/content")
            ),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(af_code(&body), "AF20023", "{body}");
    // Start, echoing the caller's casing; starting again is AF20024 as HTTP 400.
    let (s, body) = status_code(post(&start_url("Audit.Sharepoint"), &token).await).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["status"], "enabled");
    assert_eq!(body["contentType"], "Audit.Sharepoint");
    assert!(body["webhook"].is_null());
    let (s, body) = status_code(post(&start_url("Audit.SharePoint"), &token).await).await;
    assert_eq!((s, af_code(&body)), (400, "AF20024"), "{body}");
    // A disabled subscription can be started again.
    let (s, _) = status_code(post(&start_url("Audit.General"), &token).await).await;
    assert_eq!(s, 200);
    // Bad content type.
    let (s, body) = status_code(post(&start_url("Audit.Nope"), &token).await).await;
    assert_eq!((s, af_code(&body)), (400, "AF20020"), "{body}");
    // List.
    let (s, body) =
        status_code(get(&feed(&base, TENANT_A, "subscriptions/list"), &token).await).await;
    assert_eq!(s, 200);
    let listed: BTreeSet<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "enabled")
        .map(|i| i["contentType"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from(["Audit.Exchange", "Audit.General", "Audit.SharePoint"])
    );
    // Stop: empty 200, then the content is gone (AF20022).
    let (s, _) = status_code(
        post(
            &format!(
                "{}?contentType=Audit.SharePoint",
                feed(&base, TENANT_A, "subscriptions/stop")
            ),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    let (_, body) = status_code(
        get(
            &format!(
                "{}?contentType=Audit.SharePoint",
                feed(&base, TENANT_A, "subscriptions/content")
            ),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(af_code(&body), "AF20022");
}

#[tokio::test]
async fn audit_log_off_fails_subscription_start_with_the_data_service_exception() {
    let emu = o365_emulator::Emulator::start(
        o365_emulator::Scenario::from_toml(&base_toml().replacen(
            "domain = \"fabrikam.onmicrosoft.com\"",
            "domain = \"fabrikam.onmicrosoft.com\"\naudit_enabled = false",
            1,
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    let base = emu.base_url();
    let aud = format!("{base}/{TENANT_B}/oauth2/v2.0/token");
    let jwt = assertion(
        registered(),
        jsonwebtoken::Algorithm::RS256,
        registered(),
        &aud,
        APP_CERT,
        "jti-off",
    );
    let (_, tok) = token_form(
        &base,
        TENANT_B,
        true,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP_CERT),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &jwt),
            ("scope", "https://manage.office.com/.default"),
        ],
    )
    .await;
    let token = tok["access_token"].as_str().unwrap();
    let (s, body) = status_code(
        post(
            &format!(
                "{}?contentType=Audit.SharePoint",
                feed(&base, TENANT_B, "subscriptions/start")
            ),
            token,
        )
        .await,
    )
    .await;
    assert_eq!(s, 400);
    assert!(af_code(&body).starts_with("StartSubscription ["), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{body}"
    );
}

async fn window(
    emu: &o365_emulator::Emulator,
    token: &str,
    start: Option<String>,
    end: Option<String>,
) -> (u16, serde_json::Value) {
    let mut url =
        reqwest::Url::parse(&feed(&emu.base_url(), TENANT_A, "subscriptions/content")).unwrap();
    url.query_pairs_mut().append_pair("contentType", CT);
    if let Some(s) = start {
        url.query_pairs_mut().append_pair("startTime", &s);
    }
    if let Some(e) = end {
        url.query_pairs_mut().append_pair("endTime", &e);
    }
    status_code(get(url.as_str(), token).await).await
}

#[tokio::test]
async fn window_rules_are_enforced() {
    let emu = start("").await;
    let token = manage_token(&emu.base_url(), TENANT_A).await;
    let now = emu.now();
    let w = |a: Duration, b: Duration| (Some(fmt(now - a)), Some(fmt(now - b)));
    // 25 h: refused.
    let (s, e) = w(Duration::hours(26), Duration::hours(1));
    let (st, body) = window(&emu, &token, s, e).await;
    assert_eq!((st, af_code(&body)), (400, "AF20055"), "{body}");
    // Only one bound.
    let (st, body) = window(&emu, &token, Some(fmt(now - Duration::hours(2))), None).await;
    assert_eq!((st, af_code(&body)), (400, "AF20030"), "{body}");
    // Start more than 7 days back.
    let (s, e) = w(Duration::days(8), Duration::days(8) - Duration::hours(1));
    assert_eq!(af_code(&window(&emu, &token, s, e).await.1), "AF20055");
    // End before start.
    let (s, e) = w(Duration::hours(1), Duration::hours(2));
    assert_eq!(af_code(&window(&emu, &token, s, e).await.1), "AF20055");
    // Exactly 24 h is allowed by default; every documented format and RFC 3339 parse.
    let (s, e) = w(Duration::hours(25), Duration::hours(1));
    assert_eq!(window(&emu, &token, s, e).await.0, 200);
    let day = (now - Duration::days(1)).format("%Y-%m-%d").to_string();
    let (s, e) = (Some(day.clone()), Some(format!("{day}T12:00")));
    assert_eq!(window(&emu, &token, s, e).await.0, 200);
    let (s, e) = (
        Some((now - Duration::hours(3)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        Some((now - Duration::hours(2)).to_rfc3339()),
    );
    assert_eq!(window(&emu, &token, s, e).await.0, 200);
    // Garbage time.
    let (st, body) = window(&emu, &token, Some("yesterday".into()), Some(fmt(now))).await;
    assert_eq!(st, 400, "{body}");
}

#[tokio::test]
async fn exactly_24h_windows_are_rejected_when_the_scenario_says_so() {
    let emu = o365_emulator::Emulator::start(
        o365_emulator::Scenario::from_toml(&format!("reject_exact_24h = true\n{}", base_toml()))
            .unwrap(),
    )
    .await
    .unwrap();
    let token = manage_token(&emu.base_url(), TENANT_A).await;
    let now = emu.now();
    let (st, body) = window(
        &emu,
        &token,
        Some(fmt(now - Duration::hours(25))),
        Some(fmt(now - Duration::hours(1))),
    )
    .await;
    assert_eq!((st, af_code(&body)), (400, "AF20055"), "{body}");
    let (st, _) = window(
        &emu,
        &token,
        Some(fmt(now - Duration::hours(25) + Duration::seconds(1))),
        Some(fmt(now - Duration::hours(1))),
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn paging_returns_every_blob_exactly_once_and_windows_are_half_open() {
    let emu = start("").await;
    let base = emu.base_url();
    let token = manage_token(&base, TENANT_A).await;
    let now = emu.now();
    let truth: Vec<_> = emu
        .truth()
        .into_iter()
        .filter(|b| b.tenant == TENANT_A && b.content_type == CT && b.available)
        .collect();
    assert!(truth.len() > 10, "scenario too small: {}", truth.len());
    // Two consecutive windows cover the last 30 h; page size 3 forces many pages.
    let t0 = now - Duration::hours(31);
    let t1 = now - Duration::hours(15);
    let t2 = now;
    let (a, pages_a) = list_all(&base, TENANT_A, &token, CT, &fmt(t0), &fmt(t1)).await;
    let (b, pages_b) = list_all(
        &base,
        TENANT_A,
        &token,
        CT,
        &fmt(t1),
        &fmt(t2 + Duration::seconds(1)),
    )
    .await;
    assert!(
        pages_a > 2 && pages_b > 2,
        "paging was not exercised: {pages_a} {pages_b}"
    );
    let mut counts: HashMap<String, u32> = HashMap::new();
    for item in a.iter().chain(b.iter()) {
        *counts
            .entry(item["contentId"].as_str().unwrap().to_owned())
            .or_default() += 1;
        assert!(item["contentUri"].as_str().unwrap().starts_with(&base));
        assert!(item["contentCreated"].as_str().unwrap().ends_with('Z'));
    }
    assert!(counts.values().all(|c| *c == 1), "a blob was listed twice");
    let expected: BTreeSet<String> = truth
        .iter()
        .filter(|b| b.content_created >= t0.with_nanosecond0() && b.content_created < now)
        .map(|b| b.content_id.clone())
        .collect();
    let got: BTreeSet<String> = counts.into_keys().collect();
    assert_eq!(got, expected);
    // An invalid nextPage token.
    let (s, body) = status_code(
        get(
            &format!(
                "{}?contentType={CT}&startTime={}&endTime={}&nextPage=zzz",
                feed(&base, TENANT_A, "subscriptions/content"),
                fmt(t1),
                fmt(t2)
            ),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!((s, af_code(&body)), (400, "AF20031"));
}

trait Trunc {
    fn with_nanosecond0(self) -> Self;
}
impl Trunc for chrono::DateTime<chrono::Utc> {
    fn with_nanosecond0(self) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(0).unwrap()
    }
}

#[tokio::test]
async fn blobs_hold_the_records_of_the_truth_and_errors_for_unknown_and_malformed_ids() {
    let emu = start("").await;
    let base = emu.base_url();
    let token = manage_token(&base, TENANT_A).await;
    let now = emu.now();
    let (items, _) = list_all(
        &base,
        TENANT_A,
        &token,
        CT,
        &fmt(now - Duration::hours(20)),
        &fmt(now),
    )
    .await;
    let truth = emu.truth();
    let item = &items[0];
    let uri = item["contentUri"].as_str().unwrap();
    assert!(uri.contains('$'));
    let (s, body) = status_code(get(uri, &token).await).await;
    assert_eq!(s, 200);
    let records = body.as_array().expect("a JSON array of records");
    let ids: Vec<&str> = records.iter().map(|r| r["Id"].as_str().unwrap()).collect();
    let t = truth
        .iter()
        .find(|b| b.content_id == item["contentId"])
        .unwrap();
    assert_eq!(
        ids,
        t.record_ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for r in records {
        assert_eq!(r["OrganizationId"], TENANT_A);
        assert!(
            r["CreationTime"].as_str().unwrap().len() == 19,
            "no zone, no fraction"
        );
    }
    // Unknown and malformed ids.
    let unknown = format!(
        "{}/activity/feed/audit/20990101000000000000000$20990101000000000000000$audit_exchange$Audit_Exchange$na9999",
        base_api(&base)
    );
    let (s, body) = status_code(get(&unknown, &token).await).await;
    assert_eq!((s, af_code(&body)), (404, "AF20050"));
    let (s, body) = status_code(
        get(
            &format!("{}/activity/feed/audit/nonsense", base_api(&base)),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!((s, af_code(&body)), (400, "AF20052"));
}

fn base_api(base: &str) -> String {
    format!("{base}/api/v1.0/{TENANT_A}")
}

#[tokio::test]
async fn records_are_out_of_order_and_older_than_their_blob_and_all_content_types_have_data() {
    let emu = start("").await;
    let base = emu.base_url();
    let token = manage_token(&base, TENANT_A).await;
    let mut unsorted = 0;
    let mut older = 0;
    for ct in [
        "Audit.AzureActiveDirectory",
        "Audit.Exchange",
        "Audit.SharePoint",
        "Audit.General",
        "DLP.All",
    ] {
        let (s, _) = status_code(
            post(
                &format!(
                    "{}?contentType={ct}",
                    feed(&base, TENANT_A, "subscriptions/start")
                ),
                &token,
            )
            .await,
        )
        .await;
        assert!(s == 200 || s == 400);
        let now = emu.now();
        let (items, _) = list_all(
            &base,
            TENANT_A,
            &token,
            ct,
            &fmt(now - Duration::hours(23)),
            &fmt(now),
        )
        .await;
        assert!(!items.is_empty(), "{ct}: no content");
        for item in &items {
            let created =
                chrono::DateTime::parse_from_rfc3339(item["contentCreated"].as_str().unwrap())
                    .unwrap();
            let (_, body) =
                status_code(get(item["contentUri"].as_str().unwrap(), &token).await).await;
            let times: Vec<String> = body
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["CreationTime"].as_str().unwrap().to_owned())
                .collect();
            let mut sorted = times.clone();
            sorted.sort();
            if sorted != times {
                unsorted += 1;
            }
            older += times
                .iter()
                .filter(|t| {
                    let t = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S")
                        .unwrap()
                        .and_utc();
                    created.with_timezone(&chrono::Utc) - t > Duration::hours(2)
                })
                .count();
        }
    }
    assert!(
        unsorted > 0,
        "CreationTime is never out of order inside a blob"
    );
    assert!(older > 0, "no record is much older than its blob");
}

#[tokio::test]
async fn late_content_duplicates_and_expired_blobs() {
    let scenario = base_toml().replacen(
        "records_per_blob = 5",
        "records_per_blob = 5\nlate_fraction = 0.6\nlate_by_secs = 14400\nduplicate_fraction = 0.2\nexpired_fraction = 0.2\nexpire_after_secs = 600",
        1,
    );
    let emu =
        o365_emulator::Emulator::start(o365_emulator::Scenario::from_toml(&scenario).unwrap())
            .await
            .unwrap();
    let base = emu.base_url();
    let token = manage_token(&base, TENANT_A).await;
    let truth: Vec<_> = emu
        .truth()
        .into_iter()
        .filter(|b| b.tenant == TENANT_A && b.content_type == CT)
        .collect();
    // Late: a blob whose contentCreated is in the window is not listed until it becomes available.
    let late = truth
        .iter()
        .find(|b| b.late && !b.available && b.content_created < emu.now())
        .expect("a late blob not yet available");
    let start_t = late.content_created - Duration::minutes(30);
    let end_t = late.content_created + Duration::minutes(30);
    let (before, _) = list_all(&base, TENANT_A, &token, CT, &fmt(start_t), &fmt(end_t)).await;
    assert!(
        !before
            .iter()
            .any(|i| i["contentId"] == late.content_id.as_str())
    );
    emu.advance_clock(Duration::hours(4) + Duration::minutes(1));
    let token = manage_token(&base, TENANT_A).await;
    let (after, _) = list_all(&base, TENANT_A, &token, CT, &fmt(start_t), &fmt(end_t)).await;
    assert!(
        after
            .iter()
            .any(|i| i["contentId"] == late.content_id.as_str()),
        "late blob never listed"
    );
    // Duplicates: some record Id sits in two blobs.
    let mut seen: HashMap<&str, u32> = HashMap::new();
    for b in &truth {
        for id in &b.record_ids {
            *seen.entry(id.as_str()).or_default() += 1;
        }
    }
    assert!(seen.values().any(|c| *c > 1), "no duplicated record Id");
    // Expired: AF20051.
    let expired = emu
        .truth()
        .into_iter()
        .find(|b| b.tenant == TENANT_A && b.content_type == CT && b.available && b.expired)
        .expect("an expired blob");
    let uri = format!(
        "{}/activity/feed/audit/{}",
        base_api(&base),
        expired.content_id
    );
    let (s, body) = status_code(get(&uri, &token).await).await;
    assert_eq!((s, af_code(&body)), (400, "AF20051"), "{body}");
}

#[tokio::test]
async fn publisher_identifier_is_recorded_per_call() {
    let emu = start("").await;
    let base = emu.base_url();
    let token = manage_token(&base, TENANT_A).await;
    get(&feed(&base, TENANT_A, "subscriptions/list"), &token).await;
    client()
        .get(feed(&base, TENANT_A, "subscriptions/list"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let summary = emu.request_summary();
    assert_eq!(summary.by_publisher.get(PUBLISHER), Some(&1));
    assert_eq!(summary.by_publisher.get("(none)"), Some(&1));
    assert_eq!(summary.by_endpoint_status.get("token 200"), Some(&1));
}

#[tokio::test]
async fn late_by_secs_max_spreads_the_delays_of_late_blobs() {
    let scenario = base_toml().replacen(
        "records_per_blob = 5",
        "records_per_blob = 1\nlate_fraction = 0.5\nlate_by_secs = 7200\nlate_by_secs_max = 518400",
        1,
    );
    let emu =
        o365_emulator::Emulator::start(o365_emulator::Scenario::from_toml(&scenario).unwrap())
            .await
            .unwrap();
    let delays: Vec<i64> = emu
        .truth()
        .into_iter()
        .filter(|b| b.tenant == TENANT_A && b.late)
        .map(|b| (b.available_at - b.content_created).num_seconds())
        .collect();
    assert!(delays.len() > 50, "{}", delays.len());
    assert!(delays.iter().all(|d| (7200..=518_400).contains(d)));
    assert!(delays.iter().any(|d| *d > 4 * 86_400), "some days late");
    assert!(delays.iter().any(|d| *d < 86_400), "some within a day");
    // A later bound below the first is refused.
    let bad = base_toml().replacen(
        "records_per_blob = 5",
        "records_per_blob = 5\nlate_by_secs = 7200\nlate_by_secs_max = 60",
        1,
    );
    let err = o365_emulator::Scenario::from_toml(&bad).unwrap_err();
    assert!(err.to_string().contains("late_by_secs_max"), "{err}");
}
