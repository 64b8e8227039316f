//! The `Date` header of every answer comes from the emulator's clock, not from wall time.

use chrono::{DateTime, Duration, Utc};
use o365_emulator::Emulator;

use crate::common::*;

/// The `Date` of an answer, which must be one IMF-fixdate.
fn date_of(r: &reqwest::Response) -> DateTime<Utc> {
    assert_eq!(
        r.headers().get_all(reqwest::header::DATE).iter().count(),
        1,
        "one Date header"
    );
    let v = r
        .headers()
        .get(reqwest::header::DATE)
        .expect("a Date header")
        .to_str()
        .expect("ASCII");
    assert!(v.ends_with(" GMT"), "{v}");
    assert_eq!(v.len(), "Sun, 06 Nov 1994 08:49:37 GMT".len(), "{v}");
    DateTime::parse_from_rfc2822(v)
        .expect("an HTTP date")
        .with_timezone(&Utc)
}

/// `date` is the emulator's now, to the second it was written with.
fn assert_emulator_time(emu: &Emulator, date: DateTime<Utc>, what: &str) {
    let off = emu.now() - date;
    assert!(
        off >= Duration::seconds(-1) && off <= Duration::seconds(3),
        "{what}: Date {date} vs emulator clock {} (wall {})",
        emu.now(),
        Utc::now()
    );
}

#[tokio::test]
async fn every_answer_is_dated_by_the_emulator_clock() {
    let scenario =
        o365_emulator::Scenario::from_toml(&format!("clock_offset_secs = 180\n{}", base_toml()))
            .expect("scenario");
    let emu = Emulator::start(scenario).await.expect("emulator");
    let base = emu.base_url();
    let ahead = emu.now() - Utc::now();
    assert!(
        ahead > Duration::seconds(179) && ahead < Duration::seconds(181),
        "{ahead}"
    );
    let token = manage_token(&base, TENANT_A).await;
    let now = emu.now();
    let (start, end) = (fmt(now - Duration::hours(2)), fmt(now));
    let list = feed(&base, TENANT_A, "subscriptions/content");
    let mut answers = vec![
        // Success, Management API.
        (
            "listing",
            get(
                &format!("{list}?contentType=Audit.Exchange&startTime={start}&endTime={end}"),
                &token,
            )
            .await,
        ),
        // Error, Management API.
        (
            "AF20022",
            get(&format!("{list}?contentType=Audit.SharePoint"), &token).await,
        ),
        ("401", get(&list, "garbage").await),
        // No route.
        (
            "404",
            client()
                .get(format!("{base}/no/such/path"))
                .send()
                .await
                .unwrap(),
        ),
        // Another cloud's prefix, the admin API, the token endpoint.
        (
            "gcc-high",
            client()
                .get(feed(
                    &emu.cloud_url(o365_emulator::Cloud::GccHigh),
                    TENANT_HIGH,
                    "subscriptions/list",
                ))
                .send()
                .await
                .unwrap(),
        ),
        (
            "admin",
            client()
                .get(format!("{base}/_emulator/clock"))
                .send()
                .await
                .unwrap(),
        ),
    ];
    let r = client()
        .post(format!("{base}/{TENANT_A}/oauth2/v2.0/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    answers.push(("token error", r));
    for (what, r) in &answers {
        let date = date_of(r);
        assert_emulator_time(&emu, date, what);
        let ahead = date - Utc::now();
        assert!(
            ahead > Duration::seconds(175) && ahead < Duration::seconds(182),
            "{what}: {ahead} ahead of wall time"
        );
    }
    assert_eq!(answers[0].1.status(), 200);
    assert_eq!(answers[3].1.status(), 404);
    // Moving the clock moves the Date.
    emu.advance_clock(Duration::hours(-1));
    let r = get(&feed(&base, TENANT_A, "subscriptions/list"), &token).await;
    assert_eq!(r.status(), 200);
    let date = date_of(&r);
    assert_emulator_time(&emu, date, "after moving the clock");
    let behind = Utc::now() - date;
    assert!(
        behind > Duration::minutes(57) && behind < Duration::minutes(58),
        "{behind}"
    );
}

#[tokio::test]
async fn without_an_offset_the_date_is_wall_time() {
    let emu = start("").await;
    let r = client()
        .get(format!("{}/_emulator/clock", emu.base_url()))
        .send()
        .await
        .unwrap();
    let off = Utc::now() - date_of(&r);
    assert!(
        off >= Duration::seconds(-1) && off <= Duration::seconds(3),
        "{off}"
    );
}
