//! End to end through the built function binaries: lister → SQS → fetcher → S3 on moto, against
//! the emulator, driven by the Lambda Runtime API emulator.

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::runtime::LambdaProcess;
use integration_tests::stack::Stack;
use serde_json::{Value, json};
use shared::model::{BlobState, SecretRef, TenantId};
use shared::store::StateStore;

use crate::support::*;

fn scheduled_event() -> Value {
    serde_json::from_str(include_str!("../../events/lister/scheduled.json")).expect("event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_record_lands_in_s3_exactly_once_through_the_lambda_binaries() {
    let stack = Stack::create(20).await;
    let emu = o365_emulator::Emulator::start(scenario(""))
        .await
        .expect("emulator");

    // Tenant A: certificate (PEM file); tenant B: client secret in Secrets Manager.
    let dir = deploy_tenants(&stack, &emu).await;
    let store = stack.store();

    let env = stack.function_env(&[("RELIST_BAND_MINUTES", "60"), ("FETCHER_MAX_RECEIVES", "8")]);
    let mut lister = LambdaProcess::spawn("lister", &env).await;
    let mut fetcher = LambdaProcess::spawn("fetcher", &env).await;
    assert!(
        lister.init_error().is_none(),
        "lister init failed: {}",
        lister.logs()
    );

    // First tick: subscriptions are started on the way (AF20022), everything listed so far is
    // enqueued and fetched.
    let report = lister
        .invoke(scheduled_event(), Duration::from_secs(300))
        .await
        .unwrap_or_else(|e| panic!("lister failed: {e:?}\n{}", lister.logs()));
    let feeds = report["feeds"].as_array().expect("feeds");
    assert_eq!(feeds.len(), 10);
    for f in feeds {
        assert!(f["error"].is_null(), "feed failed: {f}");
    }
    let first_jobs: u64 = feeds
        .iter()
        .map(|f| f["enqueued"].as_u64().unwrap_or(0))
        .sum();
    assert!(first_jobs > 50, "too few jobs: {first_jobs}");
    drain(&stack, &mut fetcher).await;

    // Time passes: late blobs (contentCreated before the cursor) become listable.
    emu.advance_clock(chrono::Duration::seconds(1800));
    let must_by = emu.now();
    let report = lister
        .invoke(scheduled_event(), Duration::from_secs(300))
        .await
        .unwrap_or_else(|e| panic!("lister failed: {e:?}\n{}", lister.logs()));
    let second_jobs: u64 = report["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["enqueued"].as_u64().unwrap_or(0) + f["redriven"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        second_jobs > 0,
        "the second tick found no new content: {report}"
    );
    drain(&stack, &mut fetcher).await;

    // A late blob was listed only by the second tick.
    let truth = emu.truth();
    assert!(
        truth
            .iter()
            .any(|b| b.late && b.available_at > must_by - chrono::Duration::seconds(1800)),
        "the scenario produced no late content"
    );

    // Every record exactly once, nothing invented.
    let mut written: Written = BTreeMap::new();
    let keys = stack.object_keys().await;
    for key in keys.iter().filter(|k| k.starts_with("ocsf/")) {
        add_lines(&mut written, key, &stack.object_lines(key).await);
    }
    let total = assert_exactly_once(&emu, &written, must_by, emu.now());
    assert!(total > 200, "only {total} records");

    // One object per fetched blob; expired blobs are reported in the ledger, not retried.
    let mut expired = 0;
    for b in truth.iter().filter(|b| b.available_at <= must_by) {
        let tenant = TenantId::parse(&b.tenant).unwrap();
        let entry = store
            .blob_entry(&tenant, &b.content_id, chrono::Utc::now())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("blob {} is not in the ledger", b.content_id));
        if b.expired {
            assert_eq!(
                entry.state,
                BlobState::Expired,
                "expired blob {} not reported",
                b.content_id
            );
            expired += 1;
        } else {
            assert_eq!(
                entry.state,
                BlobState::Done,
                "blob {} is {:?}",
                b.content_id,
                entry.state
            );
            let key = entry.object_key.expect("object key");
            assert!(keys.contains(&key));
        }
    }
    assert!(expired > 0, "the scenario had no expired blob");
    assert!(
        fetcher.logs().contains("DATA LOST UPSTREAM"),
        "expired blob not logged at error"
    );
    assert_eq!(
        keys.iter().filter(|k| k.starts_with("raw/")).count(),
        truth
            .iter()
            .filter(|b| b.available_at <= must_by && !b.expired)
            .count(),
        "one raw archive object per fetched blob, none twice"
    );
    assert!(
        stack.dead_letters().await.is_empty(),
        "nothing should be dead-lettered"
    );

    // The faults really fired, and every Management API call carried the PublisherIdentifier.
    let summary = emu.request_summary();
    assert!(
        summary
            .by_endpoint_status
            .get("blob 403")
            .copied()
            .unwrap_or(0)
            > 0,
        "{summary:?}"
    );
    assert!(
        summary
            .by_endpoint_status
            .get("blob 500")
            .copied()
            .unwrap_or(0)
            > 0,
        "{summary:?}"
    );
    for r in emu.requests() {
        if matches!(r.endpoint, "content" | "blob" | "subscriptions") {
            let tenant = r.tenant.clone().unwrap_or_default();
            assert_eq!(
                r.publisher_identifier.as_deref(),
                Some(tenant.as_str()),
                "{r:?}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_for_another_host_is_refused_before_any_request_and_dead_lettered_with_its_reason() {
    let stack = Stack::create(20).await;
    let emu = o365_emulator::Emulator::start(scenario(""))
        .await
        .expect("emulator");
    let dir = std::env::temp_dir().join(format!("o365-foreign-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem_file = dir.join("tenant-a.pem");
    std::fs::write(&pem_file, &cert().pem).unwrap();
    let store = stack.store();
    for t in tenants(
        &emu,
        &pem_file.display().to_string(),
        SecretRef::Env("UNUSED".into()),
    ) {
        store.put_tenant(&t).await.expect("put tenant");
    }
    // A listener that would see any connection the fetcher made to the forged host.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_addr = trap.local_addr().unwrap();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while trap.accept().await.is_ok() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let id = "20261123071500123000001$20261123072512345000002$audit_exchange$Audit_Exchange$na0001";
    let job = |uri: String| {
        json!({"v":1,"tenant_id":TENANT_CERT,"content_type":"Audit.Exchange","content_id":id,
            "content_uri":uri,"content_created":"2026-11-23T07:25:12.345Z",
            "content_expiration":"2026-11-30T07:25:12.345Z","listed_at":"2026-11-23T08:00:03Z"})
        .to_string()
    };
    let forged = [
        job(format!(
            "http://{trap_addr}/api/v1.0/{TENANT_CERT}/activity/feed/audit/{id}"
        )),
        job(format!(
            "{}/api/v1.0/{TENANT_SECRET}/activity/feed/audit/{id}",
            emu.base_url()
        )),
        job(format!(
            "{}/api/v1.0/{TENANT_CERT}/activity/feed/subscriptions/list",
            emu.base_url()
        )),
        "{\"v\":1,\"tenant_id\":\"nope\"}".to_owned(),
    ];
    let records: Vec<Value> = forged
        .iter()
        .enumerate()
        .map(|(i, body)| json!({"messageId": format!("m{i}"), "body": body, "attributes": {"ApproximateReceiveCount": "1"},
            "eventSource": "aws:sqs", "awsRegion": "us-east-1"}))
        .collect();
    let mut fetcher = LambdaProcess::spawn("fetcher", &stack.function_env(&[])).await;
    let response = fetcher
        .invoke(json!({"Records": records}), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("fetcher failed: {e:?}\n{}", fetcher.logs()));
    assert_eq!(
        response["batchItemFailures"],
        json!([]),
        "refusals are final, not retried"
    );
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a request left for the forged host"
    );
    assert!(
        !emu.requests()
            .iter()
            .any(|r| r.endpoint == "blob" || r.endpoint == "subscriptions"),
        "a forged URI on the right host but the wrong path was requested"
    );
    let dead = stack.dead_letters().await;
    assert_eq!(dead.len(), 4, "{dead:?}");
    for (body, reason) in &dead {
        assert!(!reason.is_empty(), "dead letter without a reason: {body}");
    }
    assert!(
        dead.iter().any(|(_, r)| r.contains(&trap_addr.to_string())),
        "{dead:?}"
    );
    assert!(
        dead.iter()
            .any(|(_, r)| r.to_lowercase().contains("malformed")),
        "{dead:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriptions_function_starts_every_content_type_and_takes_af20024_as_success() {
    let stack = Stack::create(20).await;
    let emu = o365_emulator::Emulator::start(scenario(""))
        .await
        .expect("emulator");
    let dir = std::env::temp_dir().join(format!("o365-subs-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem_file = dir.join("a.pem");
    std::fs::write(&pem_file, &cert().pem).unwrap();
    let store = stack.store();
    let mut ts = tenants(
        &emu,
        &pem_file.display().to_string(),
        SecretRef::Env("UNUSED".into()),
    );
    ts.truncate(1);
    store.put_tenant(&ts[0]).await.unwrap();
    let mut f = LambdaProcess::spawn("subscriptions", &stack.function_env(&[])).await;
    let report = f
        .invoke(scheduled_event(), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("subscriptions failed: {e:?}\n{}", f.logs()));
    let statuses: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["started"; 5], "{report}");
    let again = f
        .invoke(scheduled_event(), Duration::from_secs(60))
        .await
        .unwrap();
    let statuses: Vec<&str> = again
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses, ["enabled"; 5],
        "AF20024 on a running subscription is success: {again}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
