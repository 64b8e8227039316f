//! Faults over HTTP: each fires at its rate or on its schedule.

use std::time::Instant;

use crate::common::*;

const FAULTS: &str = r#"
[[fault]]
kind = "af429"
endpoints = ["content"]
rate = 0.25

[[fault]]
kind = "internal-error"
endpoints = ["blob"]
rate = 0.1

[[fault]]
kind = "unavailable"
endpoints = ["subscriptions"]
every = 4

[[fault]]
kind = "too-many-requests"
endpoints = ["graph"]
rate = 0.3
retry_after_secs = 2.5
"#;

fn within(count: usize, n: usize, rate: f64) -> bool {
    let expected = n as f64 * rate;
    let tolerance = 4.0 * (n as f64 * rate * (1.0 - rate)).sqrt();
    (count as f64 - expected).abs() <= tolerance
}

#[tokio::test]
async fn each_fault_fires_at_its_rate_with_its_wire_shape() {
    let emu = start(FAULTS).await;
    let base = emu.base_url();
    let token = manage_token(&base, TENANT_A).await;
    let graph = secret_token(&base, TENANT_A, APP_SECRET, "https://graph.microsoft.com").await;
    let n = 400;
    let now = emu.now();
    let content = format!(
        "{}?contentType=Audit.Exchange&startTime={}&endTime={}",
        feed(&base, TENANT_A, "subscriptions/content"),
        fmt(now - chrono::Duration::hours(2)),
        fmt(now)
    );
    let blob = format!("{base}/api/v1.0/{TENANT_A}/activity/feed/audit/a$b$c");
    let (mut af429, mut e500, mut e503, mut t429) = (0, 0, 0, 0);
    for _ in 0..n {
        let (s, body) = status_code(get(&content, &token).await).await;
        if s == 403 {
            assert_eq!(af_code(&body), "AF429");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("PublisherId={PUBLISHER}"))
            );
            af429 += 1;
        }
        let (s, body) = status_code(get(&blob, &token).await).await;
        if s == 500 {
            assert_eq!(af_code(&body), "AF50000");
            e500 += 1;
        }
        let (s, _) =
            status_code(get(&feed(&base, TENANT_A, "subscriptions/list"), &token).await).await;
        if s == 503 {
            e503 += 1;
        }
        let r = client()
            .get(format!("{base}/v1.0/users"))
            .bearer_auth(&graph)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "2.500");
            t429 += 1;
        }
    }
    assert!(within(af429, n, 0.25), "AF429 fired {af429}/{n}");
    assert!(within(e500, n, 0.1), "500 fired {e500}/{n}");
    assert_eq!(e503, n / 4, "every 4th subscriptions call is a 503");
    assert!(within(t429, n, 0.3), "429 fired {t429}/{n}");
    let summary = emu.request_summary();
    assert_eq!(
        summary.by_endpoint_status.get("content 403").copied(),
        Some(af429 as u64)
    );
}

#[tokio::test]
async fn slow_and_dropped_responses_and_limits() {
    let emu = start(
        r#"
[[fault]]
kind = "slow"
endpoints = ["subscriptions"]
every = 1
limit = 1
delay_ms = 700

[[fault]]
kind = "drop"
endpoints = ["blob"]
every = 1
limit = 2
"#,
    )
    .await;
    let base = emu.base_url();
    let token = manage_token(&base, TENANT_A).await;
    let list = feed(&base, TENANT_A, "subscriptions/list");
    let t = Instant::now();
    assert_eq!(get(&list, &token).await.status(), 200);
    assert!(
        t.elapsed().as_millis() >= 700,
        "slow response was not delayed"
    );
    let t = Instant::now();
    assert_eq!(get(&list, &token).await.status(), 200);
    assert!(
        t.elapsed().as_millis() < 700,
        "the limit of 1 was not respected"
    );
    let blob = format!("{base}/api/v1.0/{TENANT_A}/activity/feed/audit/a$b$c");
    for _ in 0..2 {
        let sent = client()
            .get(&blob)
            .bearer_auth(&token)
            .query(&[("PublisherIdentifier", PUBLISHER)])
            .send()
            .await;
        let failed = match sent {
            Err(_) => true,
            Ok(r) => r.bytes().await.is_err(),
        };
        assert!(
            failed,
            "a dropped connection must fail the request or its body read"
        );
    }
    assert_eq!(
        get(&blob, &token).await.status(),
        404,
        "after the limit, normal answers"
    );
    assert_eq!(
        emu.request_summary().by_endpoint_status.get("blob 0"),
        Some(&2)
    );
}

#[tokio::test]
async fn tokens_expire_mid_run() {
    let emu = o365_emulator::Emulator::start(
        o365_emulator::Scenario::from_toml(
            &base_toml().replace("token_lifetime_secs = 600", "token_lifetime_secs = 5"),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let base = emu.base_url();
    let token = manage_token(&base, TENANT_A).await;
    let list = feed(&base, TENANT_A, "subscriptions/list");
    assert_eq!(get(&list, &token).await.status(), 200);
    emu.advance_clock(chrono::Duration::seconds(6));
    assert_eq!(
        get(&list, &token).await.status(),
        401,
        "an expired token must be refused"
    );
    let fresh = manage_token(&base, TENANT_A).await;
    assert_eq!(get(&list, &fresh).await.status(), 200);
}

#[tokio::test]
async fn unauthorized_fault_refuses_a_valid_token() {
    let emu = start(
        r#"
[[fault]]
kind = "unauthorized"
endpoints = ["content"]
every = 2
"#,
    )
    .await;
    let base = emu.base_url();
    let token = manage_token(&base, TENANT_A).await;
    let url = format!(
        "{}?contentType=Audit.Exchange",
        feed(&base, TENANT_A, "subscriptions/content")
    );
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(get(&url, &token).await.status().as_u16());
        }
        v
    };
    assert_eq!(statuses, [200, 401, 200, 401]);
}
