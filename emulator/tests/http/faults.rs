//! Faults over HTTP: each fires at its rate or on its schedule.

use std::time::Instant;

use serde_json::Value;

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

// ---------------------------------------------------------------------------------------------
// Hostile answers: redirects, garbage, truncated, endless, non-UTF-8 and huge bodies.

/// A client that never follows redirects (as the collector's).
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The URL of an available blob of tenant A.
fn a_blob_url(emu: &o365_emulator::Emulator) -> String {
    let b = emu
        .truth()
        .into_iter()
        .find(|b| b.tenant == TENANT_A && b.available && !b.expired && !b.record_ids.is_empty())
        .expect("an available blob");
    format!(
        "{}/api/v1.0/{TENANT_A}/activity/feed/audit/{}",
        emu.base_url(),
        b.content_id
    )
}

async fn blob_bytes(
    url: &str,
    token: &str,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let r = get(url, token).await;
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn redirect_sends_a_3xx_to_the_location_before_any_check() {
    let emu = start(
        r#"
[[fault]]
kind = "redirect"
endpoints = ["blob"]
every = 1
limit = 1
location = "http://127.0.0.1:9/steal"

[[fault]]
kind = "redirect"
endpoints = ["token"]
every = 1
limit = 1
redirect_status = 307
"#,
    )
    .await;
    let base = emu.base_url();
    // Token endpoint: 307 to the default location, no token in the body.
    let r = no_redirects()
        .post(format!("{base}/{TENANT_A}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP_SECRET),
            ("client_secret", SECRET),
            ("scope", "https://manage.office.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], "https://redirect.invalid/");
    assert!(r.bytes().await.unwrap().is_empty());
    // After the limit, tokens again; the blob GET is redirected even without a bearer.
    let token = manage_token(&base, TENANT_A).await;
    let url = a_blob_url(&emu);
    let r = no_redirects().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "http://127.0.0.1:9/steal");
    assert_eq!(get(&url, &token).await.status(), 200, "limit of 1");
    assert_eq!(
        emu.request_summary().by_endpoint_status.get("blob 302"),
        Some(&1)
    );
}

#[test]
fn bad_redirect_status_and_truncate_fraction_are_refused() {
    for extra in [
        "[[fault]]\nkind = \"redirect\"\nevery = 1\nredirect_status = 200\n",
        "[[fault]]\nkind = \"truncate\"\nevery = 1\ntruncate_at = 1.0\n",
        "[[fault]]\nkind = \"truncate\"\nevery = 1\ntruncate_at = 0\n",
        "[[fault]]\nkind = \"truncate\"\nevery = 1\ncontent_length = \"maybe\"\n",
    ] {
        let text = format!("{}\n{extra}", base_toml());
        assert!(
            o365_emulator::Scenario::from_toml(&text).is_err(),
            "accepted {extra}"
        );
    }
}

#[tokio::test]
async fn garbage_is_a_200_that_is_not_json_on_token_and_blob() {
    let emu = start(
        r#"
[[fault]]
kind = "garbage"
endpoints = ["token"]
every = 1
limit = 1

[[fault]]
kind = "garbage"
endpoints = ["blob"]
every = 1
limit = 1
body = "{\"access\": tru"
"#,
    )
    .await;
    let base = emu.base_url();
    let r = client()
        .post(format!("{base}/{TENANT_A}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP_SECRET),
            ("client_secret", SECRET),
            ("scope", "https://manage.office.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = r.bytes().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    assert!(String::from_utf8_lossy(&body).contains("<html>"));
    let token = manage_token(&base, TENANT_A).await;
    let (status, _, body) = blob_bytes(&a_blob_url(&emu), &token).await;
    assert_eq!(status, 200);
    assert_eq!(body, b"{\"access\": tru");
}

#[tokio::test]
async fn truncate_cuts_the_real_body_with_each_length_mode() {
    let emu = start(
        r#"
[[fault]]
kind = "truncate"
endpoints = ["blob"]
every = 2
limit = 1
truncate_at = 0.3

[[fault]]
kind = "truncate"
endpoints = ["blob"]
every = 4
limit = 1
content_length = "none"

[[fault]]
kind = "truncate"
endpoints = ["blob"]
every = 6
limit = 1
content_length = "full"
"#,
    )
    .await;
    let token = manage_token(&emu.base_url(), TENANT_A).await;
    let url = a_blob_url(&emu);
    // 1: normal.
    let (_, _, full) = blob_bytes(&url, &token).await;
    assert!(serde_json::from_slice::<Vec<Value>>(&full).is_ok());
    // 2: cut at 30 %, announced as cut: a complete answer with an incomplete array.
    let (status, headers, cut) = blob_bytes(&url, &token).await;
    assert_eq!(status, 200);
    assert_eq!(cut.len(), full.len() * 3 / 10);
    assert_eq!(headers["content-length"], cut.len().to_string().as_str());
    assert!(full.starts_with(&cut));
    assert!(serde_json::from_slice::<Vec<Value>>(&cut).is_err());
    // 3: normal; 4: cut in half, chunked, ends cleanly.
    blob_bytes(&url, &token).await;
    let (status, headers, cut) = blob_bytes(&url, &token).await;
    assert_eq!(status, 200);
    assert!(headers.get("content-length").is_none(), "{headers:?}");
    assert_eq!(cut.len(), full.len() / 2);
    assert!(full.starts_with(&cut));
    // 5: normal; 6: the whole length announced, the connection closes early.
    blob_bytes(&url, &token).await;
    let sent = client()
        .get(&url)
        .bearer_auth(&token)
        .query(&[("PublisherIdentifier", PUBLISHER)])
        .send()
        .await;
    let failed = match sent {
        Err(_) => true,
        Ok(r) => {
            assert_eq!(
                r.headers()["content-length"],
                full.len().to_string().as_str()
            );
            r.bytes().await.is_err()
        }
    };
    assert!(failed, "a body shorter than announced must fail to read");
    let summary = emu.request_summary();
    assert_eq!(
        summary.by_endpoint_status.get("blob 0"),
        Some(&1),
        "{summary:?}"
    );
}

#[tokio::test]
async fn endless_streams_records_until_the_client_stops() {
    let emu = start(
        r#"
[[fault]]
kind = "endless"
endpoints = ["blob"]
every = 1
limit = 1

[[fault]]
kind = "endless"
endpoints = ["blob"]
every = 1
limit = 1
interval_ms = 100
"#,
    )
    .await;
    let token = manage_token(&emu.base_url(), TENANT_A).await;
    let url = a_blob_url(&emu);
    // Fast: 4 MiB arrive and more keep coming; no length announced.
    let r = get(&url, &token).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-length").is_none());
    let mut stream = r.bytes_stream();
    let mut got = Vec::new();
    while got.len() < 4 << 20 {
        let chunk = futures_util::StreamExt::next(&mut stream)
            .await
            .expect("the body must not end")
            .expect("chunk");
        got.extend_from_slice(&chunk);
    }
    assert!(got.starts_with(b"[{\"Id\":\"endless-000000000000\""));
    drop(stream);
    // Slow: one record per 100 ms.
    let t = Instant::now();
    let r = get(&url, &token).await;
    let mut stream = r.bytes_stream();
    let mut records = 0;
    while records < 4 {
        let chunk = futures_util::StreamExt::next(&mut stream)
            .await
            .unwrap()
            .unwrap();
        records += chunk.windows(8).filter(|w| w == b"endless-").count();
    }
    assert!(t.elapsed().as_millis() >= 300, "{:?}", t.elapsed());
    drop(stream);
    // Then normal answers.
    assert!(serde_json::from_slice::<Vec<Value>>(&blob_bytes(&url, &token).await.2).is_ok());
}

#[tokio::test]
async fn non_utf8_and_huge_record_damage_the_real_blob() {
    let emu = start(
        r#"
[[fault]]
kind = "non-utf8"
endpoints = ["blob"]
every = 2
limit = 1

[[fault]]
kind = "huge-record"
endpoints = ["blob"]
every = 3
limit = 1
record_bytes = 200000
"#,
    )
    .await;
    let token = manage_token(&emu.base_url(), TENANT_A).await;
    let url = a_blob_url(&emu);
    let (_, _, full) = blob_bytes(&url, &token).await;
    let records: Vec<Value> = serde_json::from_slice(&full).unwrap();
    // 2: invalid UTF-8 inside the first record's Operation; nothing else changed.
    let (status, _, bad) = blob_bytes(&url, &token).await;
    assert_eq!(status, 200);
    assert_eq!(bad.len(), full.len() + 2);
    assert!(std::str::from_utf8(&bad).is_err());
    let at = bad.windows(2).position(|w| w == [0xFF, 0xFE]).unwrap();
    assert!(
        bad[..at].ends_with(b"\"Operation\":\""),
        "{}",
        String::from_utf8_lossy(&bad[..at])
    );
    let mut repaired = bad.clone();
    repaired.drain(at..at + 2);
    assert_eq!(repaired, full);
    // 3: one extra record of 200 000 bytes first, then the blob's own.
    let (_, _, huge) = blob_bytes(&url, &token).await;
    let with_huge: Vec<Value> = serde_json::from_slice(&huge).unwrap();
    assert_eq!(with_huge.len(), records.len() + 1);
    assert_eq!(with_huge[0]["Id"], "huge-record-0001");
    assert_eq!(serde_json::to_vec(&with_huge[0]).unwrap().len(), 200_000);
    assert_eq!(&with_huge[1..], &records[..]);
    assert_eq!(huge.len(), full.len() + 200_001);
}

#[tokio::test]
async fn a_blob_fraction_rule_cuts_the_same_blobs_on_every_attempt() {
    let emu = start(&format!(
        r#"
[[fault]]
kind = "truncate"
endpoints = ["blob"]
tenant = "{TENANT_A}"
every = 1
blob_fraction = 0.3
truncate_at = 0.6
"#
    ))
    .await;
    let token = manage_token(&emu.base_url(), TENANT_A).await;
    let blobs: Vec<_> = emu
        .truth()
        .into_iter()
        .filter(|b| b.tenant == TENANT_A && b.available && !b.expired)
        .collect();
    let targeted = blobs.iter().filter(|b| !b.targeted_by.is_empty()).count();
    assert!(
        targeted > 0 && targeted < blobs.len(),
        "{targeted} of {}",
        blobs.len()
    );
    for b in &blobs {
        let url = format!(
            "{}/api/v1.0/{TENANT_A}/activity/feed/audit/{}",
            emu.base_url(),
            b.content_id
        );
        for attempt in 0..3 {
            let (status, _, body) = blob_bytes(&url, &token).await;
            assert_eq!(status, 200);
            let whole = serde_json::from_slice::<Vec<Value>>(&body).is_ok();
            if b.targeted_by.is_empty() {
                assert!(
                    whole,
                    "{} attempt {attempt}: not selected, intact",
                    b.content_id
                );
            } else {
                assert_eq!(b.targeted_by, ["truncate"]);
                assert!(!whole, "{} attempt {attempt}: selected, cut", b.content_id);
            }
        }
    }
    // Other tenants' blobs and other endpoints are untouched.
    assert!(
        emu.truth()
            .iter()
            .filter(|b| b.tenant != TENANT_A)
            .all(|b| b.targeted_by.is_empty())
    );
    // The selection is the seed's: a second emulator of the scenario selects the same blobs.
    let again = start(&format!(
        "[[fault]]\nkind = \"truncate\"\nendpoints = [\"blob\"]\ntenant = \"{TENANT_A}\"\nevery = 1\nblob_fraction = 0.3\n"
    ))
    .await;
    let picks = |e: &o365_emulator::Emulator| -> Vec<(String, bool)> {
        e.truth()
            .into_iter()
            .map(|b| {
                // Content ids hold times relative to the start: compare the sequence suffix.
                let stable = b
                    .content_id
                    .rsplit('$')
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("$");
                (stable, !b.targeted_by.is_empty())
            })
            .collect()
    };
    assert_eq!(picks(&emu), picks(&again));
}

#[test]
fn a_bad_blob_fraction_is_refused() {
    let err = o365_emulator::Scenario::from_toml(
        "[[fault]]\nkind = \"truncate\"\nendpoints = [\"blob\"]\nevery = 1\nblob_fraction = 1.5\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("blob_fraction"), "{err}");
}
