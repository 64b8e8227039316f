//! Metrics end to end: the built lister and fetcher binaries, through the Runtime API emulator,
//! on moto and the emulator (with its throttling faults). Every stdout line must be valid EMF;
//! the `RecordsWritten` they report must add up to the records really in S3; the API calls
//! they report must match what the emulator received, throttled answers included; and each
//! invocation writes exactly one summary log line.

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::runtime::LambdaProcess;
use integration_tests::stack::Stack;
use serde_json::Value;
use shared::metrics::validate_line;
use shared::store::StateStore;

use crate::support::*;

fn scheduled_event() -> Value {
    serde_json::from_str(include_str!("../../events/lister/scheduled.json")).expect("event")
}

/// Every stdout line of a process, checked as EMF and parsed.
async fn emf_lines(p: &LambdaProcess) -> Vec<Value> {
    // The lines are written before the response; give the pipe reader a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.stdout_lines()
        .iter()
        .map(|l| validate_line(l).unwrap_or_else(|e| panic!("stdout line is not EMF: {e}\n{l}")))
        .collect()
}

fn str_of<'a>(l: &'a Value, k: &str) -> &'a str {
    l.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// Sum of a metric per value of the named dimensions (lines without them are skipped).
fn sum_by(lines: &[Value], metric: &str, dims: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for l in lines {
        let Some(v) = l.get(metric) else { continue };
        if dims.iter().any(|d| l.get(*d).is_none()) {
            continue;
        }
        let key = dims.iter().map(|d| str_of(l, d).to_owned()).collect();
        let n: f64 = match v {
            Value::Array(a) => a.iter().filter_map(Value::as_f64).sum(),
            other => other.as_f64().unwrap_or(0.0),
        };
        *out.entry(key).or_default() += n;
    }
    out
}

/// The summary lines (`fields.message == message`) of a process's JSON logs.
fn summaries(p: &LambdaProcess, message: &str) -> Vec<Value> {
    p.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emf_lines_validate_and_add_up_to_what_s3_and_the_emulator_saw() {
    let stack = Stack::create(20).await;
    let emu = o365_emulator::Emulator::start(scenario(""))
        .await
        .expect("emulator");
    let dir = deploy_tenants(&stack, &emu).await;
    let store = stack.store();
    // Per tenant and content type, so every sum below can be checked feed by feed.
    let env = stack.function_env(&[
        ("RELIST_BAND_MINUTES", "60"),
        ("FETCHER_MAX_RECEIVES", "8"),
        ("METRICS_DETAIL", "feed"),
    ]);
    let mut lister = LambdaProcess::spawn("lister", &env).await;
    let mut fetcher = LambdaProcess::spawn("fetcher", &env).await;

    lister
        .invoke(scheduled_event(), Duration::from_secs(300))
        .await
        .unwrap_or_else(|e| panic!("lister failed: {e:?}\n{}", lister.logs()));
    let (fetcher_invocations, _) = drain(&stack, &mut fetcher).await;

    let lister_lines = emf_lines(&lister).await;
    let fetcher_lines = emf_lines(&fetcher).await;
    assert!(!lister_lines.is_empty() && !fetcher_lines.is_empty());
    for l in lister_lines.iter().chain(&fetcher_lines) {
        let d = &l["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], "O365Collector", "{l}");
    }

    // RecordsWritten per tenant and content type = the records in S3.
    let mut in_s3: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for key in stack
        .object_keys()
        .await
        .iter()
        .filter(|k| k.starts_with("ocsf/"))
    {
        let (tenant, ct) = partition(key);
        #[allow(clippy::cast_precision_loss)]
        let n = stack.object_lines(key).await.len() as f64;
        *in_s3.entry(vec![tenant, ct]).or_default() += n;
    }
    let reported = sum_by(
        &fetcher_lines,
        "RecordsWritten",
        &["TenantId", "ContentType"],
    );
    assert_eq!(reported, in_s3, "RecordsWritten vs the records in S3");
    assert_eq!(in_s3.len(), 10, "two tenants × five content types");
    let lag = sum_by(
        &fetcher_lines,
        "IngestionLagSeconds",
        &["TenantId", "ContentType"],
    );
    assert_eq!(
        lag.keys().collect::<Vec<_>>(),
        in_s3.keys().collect::<Vec<_>>(),
        "a lag sample for every feed written"
    );

    // Every job the lister enqueued ended written or expired, once.
    let enqueued: f64 = sum_by(&lister_lines, "JobsEnqueued", &["TenantId", "ContentType"])
        .values()
        .sum();
    let finished: f64 = ["BlobsWritten", "ExpiredBlobs"]
        .iter()
        .flat_map(|m| sum_by(&fetcher_lines, m, &["TenantId", "ContentType"]).into_values())
        .sum();
    assert!(enqueued > 50.0, "{enqueued}");
    assert_eq!(
        enqueued, finished,
        "JobsEnqueued vs BlobsWritten + ExpiredBlobs"
    );

    // ApiCalls by status = what the emulator answered on the Management API; throttled
    // answers (AF429 comes as HTTP 403) are among them and counted as Throttles.
    let all: Vec<Value> = lister_lines.iter().chain(&fetcher_lines).cloned().collect();
    let calls = sum_by(&all, "ApiCalls", &["TenantId", "Status"]);
    let total: f64 = calls.values().sum();
    #[allow(clippy::cast_precision_loss)]
    let management = emu
        .requests()
        .iter()
        .filter(|r| matches!(r.endpoint, "content" | "blob" | "subscriptions"))
        .count() as f64;
    assert_eq!(
        total, management,
        "ApiCalls vs the emulator's requests: {calls:?}"
    );
    assert!(
        calls.iter().any(|(k, n)| k[1] == "403" && *n > 0.0),
        "no throttled status among {calls:?}"
    );
    let throttles: f64 = sum_by(&all, "Throttles", &["TenantId"]).values().sum();
    assert!(throttles > 0.0, "Throttles not counted");
    assert!(calls.keys().any(|k| k[1] == "200"));

    // The certificate tenant reports its days left; the client-secret tenant does not.
    let days = sum_by(&lister_lines, "CertificateDaysLeft", &["TenantId"]);
    assert_eq!(
        days.keys().map(|k| k[0].as_str()).collect::<Vec<_>>(),
        [TENANT_CERT]
    );
    assert!(days.values().all(|d| *d > 30.0), "{days:?}");

    // Exactly one summary line per invocation, with counts and the duration.
    let l = summaries(&lister, "lister invocation done");
    assert_eq!(l.len(), 1, "{}", lister.logs());
    assert!(l[0]["fields"]["duration_ms"].is_u64() && l[0]["fields"]["jobs"].is_u64());
    let f = summaries(&fetcher, "fetcher invocation done");
    assert_eq!(f.len(), fetcher_invocations as usize);
    let records: u64 = f
        .iter()
        .map(|s| s["fields"]["records"].as_u64().unwrap_or(0))
        .sum();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let in_s3_total = in_s3.values().sum::<f64>() as u64;
    assert_eq!(records, in_s3_total);
    assert!(f.iter().all(|s| s["fields"]["duration_ms"].is_u64()));

    // One real line, for the record.
    if let Some(l) = fetcher_lines
        .iter()
        .find(|l| l.get("RecordsWritten").is_some())
    {
        println!("sample EMF line: {l}");
    }
    let _ = store.list_tenants().await;
    let _ = std::fs::remove_dir_all(dir);
}
