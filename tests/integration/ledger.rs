//! The ledger is the truth: its guarantees end to end, through the real parts — moto's
//! DynamoDB and SQS with the production adapters, the emulator over HTTP, and the built `lister`
//! and `fetcher` binaries under the Lambda Runtime API emulator.
//!
//! Each test names the review finding it covers and says how the design before the ledger
//! (progress kept only in the cursor, SQS's own redrive as the retry, a fixed re-list band, no
//! deadline inside the fetcher) fails it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, Utc};
use integration_tests::runtime::LambdaProcess;
use integration_tests::stack::Stack;
use o365_emulator::{BlobTruth, Cloud, Emulator, Scenario};
use serde_json::{Value, json};
use shared::api::http_client;
use shared::app::SystemClock;
use shared::app::clients::TenantClients;
use shared::app::lister::{self, ListerReport, ListerSettings};
use shared::model::{BlobState, ContentBlob, ContentType, FetchJob, SecretRef, Tenant, TenantId};
use shared::queue::{DeadLetters, JobQueue, SqsQueue};
use shared::retry::RetryPolicy;
use shared::secrets::LocalSecrets;
use shared::store::StateStore;

use crate::support::*;

// ------------------------------------------------------------------------------ helpers

/// `records_per_hour` of every content type at `n`.
fn all_types(n: u32) -> String {
    let parts: Vec<String> = ContentType::ALL
        .iter()
        .map(|ct| format!("\"{}\" = {n}", ct.as_str()))
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

/// The two tenants (and apps) of [`support::tenants`], each with its own `[tenant.data]` body,
/// and `extra` TOML (faults) at the end. No faults unless `extra` adds them.
fn scenario_with(a_data: &str, b_data: &str, extra: &str) -> Scenario {
    let cert = cert().cert_pem.replace('\n', "\\n");
    let text = format!(
        r#"
seed = 23
page_size = 20

[[tenant]]
id = "{TENANT_CERT}"
domain = "contoso.onmicrosoft.com"
users = 5
[tenant.data]
{a_data}

[[tenant]]
id = "{TENANT_SECRET}"
domain = "agency.onmicrosoft.us"
cloud = "gcc-high"
users = 5
[tenant.data]
{b_data}

[[app]]
client_id = "{APP_CERT}"
home_tenant = "{TENANT_CERT}"
certificates = ["{cert}"]
manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]

[[app]]
client_id = "{APP_SECRET}"
home_tenant = "{TENANT_SECRET}"
secrets = [{{ value = "{SECRET}" }}]
manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]
{extra}
"#
    );
    Scenario::from_toml(&text).expect("scenario")
}

/// The two tenants with their credentials in local files (for the use cases run in-process
/// with [`LocalSecrets`]); returns the folder holding the files.
fn local_tenants(emu: &Emulator) -> (PathBuf, Vec<Tenant>) {
    let dir = std::env::temp_dir().join(format!("o365-ledger-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pem = dir.join("a.pem");
    std::fs::write(&pem, &cert().pem).expect("pem");
    let secret = dir.join("b.secret");
    std::fs::write(&secret, SECRET).expect("secret");
    let ts = tenants(
        emu,
        &pem.display().to_string(),
        SecretRef::File(secret.display().to_string()),
    );
    (dir, ts)
}

/// A new set of Management API clients: a new "process" (its own tokens and clock reading).
fn apis() -> Arc<TenantClients<LocalSecrets>> {
    let retry = RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        ..RetryPolicy::default()
    };
    Arc::new(TenantClients::new(http_client(), LocalSecrets, retry))
}

fn deadline(secs: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(secs)
}

fn tenant_a() -> TenantId {
    TenantId::parse(TENANT_CERT).expect("guid")
}

/// The fetch job of a blob of the emulator's ground truth (its URI as the emulator lists it).
fn job_of(emu: &Emulator, b: &BlobTruth) -> FetchJob {
    let base = if b.tenant == TENANT_SECRET {
        emu.cloud_url(Cloud::GccHigh)
    } else {
        emu.base_url()
    };
    let blob = ContentBlob {
        content_type: b.content_type.parse().expect("content type"),
        content_id: b.content_id.clone(),
        content_uri: format!(
            "{base}/api/v1.0/{}/activity/feed/audit/{}",
            b.tenant, b.content_id
        ),
        content_created: b.content_created,
        content_expiration: b.expiration,
    };
    FetchJob::new(TenantId::parse(&b.tenant).expect("guid"), &blob, Utc::now())
}

/// Hands jobs on as the lister does: claimed in the ledger, then enqueued.
async fn hand_on(
    store: &shared::store::DynamoDbStore,
    queue: &SqsQueue,
    emu: &Emulator,
    blobs: &[&BlobTruth],
) {
    let jobs: Vec<FetchJob> = blobs.iter().map(|b| job_of(emu, b)).collect();
    for j in &jobs {
        store
            .claim_blob(&j.tenant_id, &j.blob(), Utc::now())
            .await
            .expect("claim");
    }
    let report = queue.enqueue(&jobs).await.expect("enqueue");
    assert!(report.failed.is_empty(), "{report:?}");
}

/// Receives every message of a queue (hidden for 10 minutes, not deleted) and returns the
/// jobs, in the order received.
async fn receive_all(stack: &Stack, url: &str) -> Vec<FetchJob> {
    let sqs = aws_sdk_sqs::Client::new(&stack.conf);
    let mut out = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let r = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        let msgs = r.messages.unwrap_or_default();
        if msgs.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        for m in msgs {
            out.push(FetchJob::parse(m.body().unwrap_or_default()).expect("a job"));
        }
    }
    out
}

/// How many times each content id is in `jobs`.
fn counts(jobs: &[FetchJob]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for j in jobs {
        *m.entry(j.content_id.clone()).or_default() += 1;
    }
    m
}

/// `ApproximateNumberOfMessages` and `…NotVisible` of a queue.
async fn queue_depth(stack: &Stack, url: &str) -> (u64, u64) {
    let sqs = aws_sdk_sqs::Client::new(&stack.conf);
    let a = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    let n = |k: &QueueAttributeName| {
        a.get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    (
        n(&QueueAttributeName::ApproximateNumberOfMessages),
        n(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Every OCSF event the stack's bucket holds, by (tenant, content type).
async fn written(stack: &Stack) -> Written {
    let mut w: Written = BTreeMap::new();
    for key in stack
        .object_keys()
        .await
        .iter()
        .filter(|k| k.starts_with("ocsf/"))
    {
        add_lines(&mut w, key, &stack.object_lines(key).await);
    }
    w
}

fn scheduled_event() -> Value {
    serde_json::from_str(include_str!("../../events/lister/scheduled.json")).expect("event")
}

async fn tick(lister: &mut LambdaProcess) -> Value {
    lister
        .invoke(scheduled_event(), Duration::from_secs(600))
        .await
        .unwrap_or_else(|e| panic!("lister failed: {e:?}\n{}", lister.logs()))
}

/// Reorders an SQS Lambda event so that the message whose job is `first` comes first; returns
/// the event and that message's id.
fn put_first(mut event: Value, first: &str) -> (Value, String) {
    let records = event["Records"].as_array_mut().expect("records");
    let at = records
        .iter()
        .position(|r| {
            FetchJob::parse(r["body"].as_str().unwrap_or_default())
                .is_ok_and(|j| j.content_id == first)
        })
        .unwrap_or_else(|| panic!("{first} is not in the batch"));
    let r = records.remove(at);
    let id = r["messageId"].as_str().expect("message id").to_owned();
    records.insert(0, r);
    (event, id)
}

// ------------------------------------------------------------ finding 6: the deadline

/// A deployment whose tenant A serves every blob 90 s late (the emulator's `slow` fault) and
/// whose tenant B serves at once: the slow blob (A) and at least 12 listable blobs of B to be
/// its batch-mates.
struct SlowSetup {
    stack: Stack,
    emu: Emulator,
    dir: PathBuf,
    store: shared::store::DynamoDbStore,
    queue: SqsQueue,
    slow: BlobTruth,
    mates: Vec<BlobTruth>,
}

async fn slow_setup() -> SlowSetup {
    let stack = Stack::create(2).await;
    let slow_fault = format!(
        r#"
[[fault]]
kind = "slow"
endpoints = ["blob"]
tenant = "{TENANT_CERT}"
rate = 1.0
delay_ms = 90000
"#
    );
    let emu = Emulator::start(scenario_with(
        "hours_back = 3\nrecords_per_blob = 2\nrecords_per_hour = { \"Audit.Exchange\" = 2 }",
        "hours_back = 4\nrecords_per_blob = 4\nrecords_per_hour = { \"Audit.Exchange\" = 8, \"Audit.SharePoint\" = 8, \"Audit.General\" = 8 }",
        &slow_fault,
    ))
    .await
    .expect("emulator");
    let dir = deploy_tenants(&stack, &emu).await;
    let store = stack.store();
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&stack.conf),
        stack.queue_url.clone(),
        None,
    );
    let now = emu.now();
    let truth = emu.truth();
    let slow = truth
        .iter()
        .find(|b| b.tenant == TENANT_CERT && b.available_at <= now && !b.expired)
        .expect("a blob of the slow tenant")
        .clone();
    let mates: Vec<BlobTruth> = truth
        .into_iter()
        .filter(|b| b.tenant == TENANT_SECRET && b.available_at <= now && !b.expired)
        .collect();
    assert!(mates.len() >= 12, "only {} batch-mates", mates.len());
    SlowSetup {
        stack,
        emu,
        dir,
        store,
        queue,
        slow,
        mates,
    }
}

/// Receives the queue's messages as one SQS event (the slow job first, the worst order SQS
/// may choose) and invokes the fetcher with `budget` until its deadline. Lambda kills an
/// invocation at its deadline, so an answer later than that fails the test. Returns the
/// response, the receipt handles, the slow message's id and how long the invocation took.
async fn invoke_slow_batch(
    s: &SlowSetup,
    fetcher: &mut LambdaProcess,
    expect_messages: usize,
    receive: u32,
    budget: Duration,
) -> (Value, Vec<(String, String)>, String, Duration) {
    let (event, handles) = s
        .stack
        .receive_event(&s.stack.queue_url, Duration::from_secs(1))
        .await;
    assert_eq!(
        handles.len(),
        expect_messages,
        "the whole batch in one event"
    );
    let (event, slow_message) = put_first(event, &s.slow.content_id);
    assert_eq!(
        event["Records"][0]["attributes"]["ApproximateReceiveCount"],
        json!(receive.to_string()),
        "the slow job's receive"
    );
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(budget, fetcher.invoke(event, budget))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the fetcher did not answer before its deadline ({budget:?}): Lambda would have killed it\n{}",
                fetcher.logs()
            )
        })
        .unwrap_or_else(|e| panic!("fetcher failed: {e:?}\n{}", fetcher.logs()));
    let took = started.elapsed();
    assert!(took < budget, "answered after {took:?}");
    (response, handles, slow_message, took)
}

fn failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
        .collect()
}

/// The mates whose ledger entry is not `done`.
async fn not_written(s: &SlowSetup, mates: &[&BlobTruth]) -> Vec<String> {
    let mut out = Vec::new();
    for b in mates {
        let e = s
            .store
            .blob_entry(
                &TenantId::parse(&b.tenant).expect("guid"),
                &b.content_id,
                Utc::now(),
            )
            .await
            .expect("ledger")
            .expect("ledger entry");
        if e.state != BlobState::Done {
            out.push(format!("{} is {:?}", b.content_id, e.state));
        }
    }
    out
}

/// Finding 6, through the built fetcher binary: a blob the emulator serves too slowly for the
/// invocation is stopped before Lambda's deadline (the invocation answers, it is not killed),
/// reported as a batch item failure, and on its last receive (FETCHER_MAX_RECEIVES=2)
/// dead-lettered with a reason naming the deadline and left `failed` with a retry (in the
/// sweep's index) in the ledger; its batch-mates in the same SQS batch are written both times.
///
/// Before: the fetcher had no deadline of its own: the invocation ran into Lambda's timeout,
/// the whole batch (written blobs included) came back, and SQS's redrive dead-lettered the
/// slow job without a reason while the ledger still said `pending`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finding_6_a_blob_too_slow_for_the_invocation_is_stopped_before_the_deadline_and_dead_lettered_at_the_last_receive()
 {
    let s = slow_setup().await;
    let mates: Vec<&BlobTruth> = s.mates.iter().collect();
    // Within the fetcher's concurrency (4): see the next test for larger batches.
    let (first, second) = (&mates[..3], &mates[3..6]);
    let mut batch = vec![&s.slow];
    batch.extend(first);
    hand_on(&s.store, &s.queue, &s.emu, &batch).await;
    let env = s.stack.function_env(&[("FETCHER_MAX_RECEIVES", "2")]);
    let mut fetcher = LambdaProcess::spawn("fetcher", &env).await;
    assert!(fetcher.init_error().is_none(), "{}", fetcher.logs());
    let budget = Duration::from_secs(25);

    // Receive 1: the slow job is stopped in time and goes back; its mates are written.
    let (response, handles, slow_message, took) =
        invoke_slow_batch(&s, &mut fetcher, 4, 1, budget).await;
    assert_eq!(
        failures(&response),
        [slow_message],
        "only the slow job is retried"
    );
    let missing = not_written(&s, first).await;
    assert!(missing.is_empty(), "answered after {took:?}: {missing:?}");
    s.stack
        .settle(&s.stack.queue_url, &handles, &response)
        .await;
    assert!(
        s.stack.dead_letters().await.is_empty(),
        "nothing is dead-lettered before the last receive"
    );

    // Receive 2 (the last), with three new mates: dead-lettered with the reason.
    hand_on(&s.store, &s.queue, &s.emu, second).await;
    let (response, handles, _, took) = invoke_slow_batch(&s, &mut fetcher, 4, 2, budget).await;
    assert!(
        failures(&response).is_empty(),
        "the last receive dead-letters, nothing is retried: {response}"
    );
    let missing = not_written(&s, second).await;
    assert!(missing.is_empty(), "answered after {took:?}: {missing:?}");
    s.stack
        .settle(&s.stack.queue_url, &handles, &response)
        .await;
    let dead = s.stack.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (body, reason) = &dead[0];
    assert_eq!(
        FetchJob::parse(body).expect("job").content_id,
        s.slow.content_id
    );
    assert!(reason.contains("deadline"), "{reason}");
    let e = s
        .store
        .blob_entry(&tenant_a(), &s.slow.content_id, Utc::now())
        .await
        .unwrap()
        .expect("ledger entry of the slow blob");
    assert_eq!(e.state, BlobState::Failed, "{e:?}");
    assert!(e.next_attempt_at.is_some(), "{e:?}");
    assert!(
        e.reason.as_deref().is_some_and(|r| r.contains("deadline")),
        "{e:?}"
    );
    let due = s
        .store
        .due_entries(&tenant_a(), Utc::now() + chrono::Duration::days(1), 10)
        .await
        .unwrap();
    assert!(
        due.iter().any(|i| i.blob.content_id == s.slow.content_id),
        "the sweep's index holds the slow blob: {due:?}"
    );
    // Nothing of the slow blob was written; every record of the six mates was.
    let w = written(&s.stack).await;
    assert!(
        !w.keys().any(|(t, _)| t == TENANT_CERT),
        "the slow blob wrote nothing"
    );
    let records: usize = w.values().map(BTreeMap::len).sum();
    let expected: BTreeSet<&String> = mates[..6].iter().flat_map(|b| &b.record_ids).collect();
    assert_eq!(records, expected.len(), "every record of the six mates");
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// Finding 6, the batch-mates part, with a full SQS batch (BatchSize 10 in template.yaml,
/// larger than the fetcher's concurrency of 4) and the slow job first: all nine mates are
/// written in the invocation, none is sent back "not started" behind the slow one (which
/// would spend one of its receives and, at its last, leave it to SQS's reasonless redrive).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finding_6_a_slow_blob_does_not_keep_the_rest_of_a_full_batch_from_being_written() {
    let s = slow_setup().await;
    let mates: Vec<&BlobTruth> = s.mates.iter().take(9).collect();
    let mut batch = vec![&s.slow];
    batch.extend(&mates);
    hand_on(&s.store, &s.queue, &s.emu, &batch).await;
    let mut fetcher = LambdaProcess::spawn("fetcher", &s.stack.function_env(&[])).await;
    assert!(fetcher.init_error().is_none(), "{}", fetcher.logs());
    let (response, _, slow_message, took) =
        invoke_slow_batch(&s, &mut fetcher, 10, 1, Duration::from_secs(25)).await;
    let missing = not_written(&s, &mates).await;
    assert!(
        missing.is_empty(),
        "batch-mates of the slow blob were not written in its invocation (answered after {took:?}; batchItemFailures {:?}): {missing:?}",
        failures(&response)
    );
    assert_eq!(
        failures(&response),
        [slow_message],
        "only the slow job is retried"
    );
    let _ = std::fs::remove_dir_all(&s.dir);
}

// ------------------------------------------------------- finding 7 (and 15): the template

const TEMPLATE_AS_JSON: &str = r#"
import json, sys
from cfnlint.decode import decode_str
with open(sys.argv[1]) as f:
    template, problems = decode_str(f.read())
if problems or template is None:
    sys.exit("template.yaml does not parse: %s" % problems)
json.dump(template, sys.stdout, default=str)
"#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn venv_python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/test.sh` once (it makes .venv with cfn-lint)",
        python.display()
    );
    python
}

/// template.yaml as JSON, read by cfn-lint's YAML loader (it knows `!Ref`, `!GetAtt`, …).
fn template() -> Value {
    let out = std::process::Command::new(venv_python())
        .arg("-c")
        .arg(TEMPLATE_AS_JSON)
        .arg(repo_root().join("template.yaml"))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("template JSON")
}

/// The logical id a `Ref` / `Fn::GetAtt` points at (inside an `Fn::If`, its true branch).
fn referenced(v: &Value) -> Option<String> {
    if let Some(r) = v.get("Ref").and_then(Value::as_str) {
        return Some(r.to_owned());
    }
    if let Some(g) = v.get("Fn::GetAtt") {
        return match g {
            Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
            Value::String(s) => s.split('.').next().map(str::to_owned),
            _ => None,
        };
    }
    if let Some(Value::Array(a)) = v.get("Fn::If") {
        return a.get(1).and_then(referenced);
    }
    None
}

fn as_strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(as_strings).collect(),
        _ => Vec::new(),
    }
}

/// Finding 7: one retry budget. The fetch queue's redrive `maxReceiveCount` and the fetcher's
/// `FETCHER_MAX_RECEIVES` are the same parameter, so the fetcher dead-letters a job with its
/// reason on the same receive SQS would otherwise take it reasonless (before: two unrelated
/// numbers, 5 in the code and 3 in the queue, so SQS moved failing jobs first, without reasons
/// and behind the ledger's back). The fetcher's event source is that queue, it reports batch
/// item failures, and the queue's visibility timeout covers six invocations (a job still
/// running is not received again, which would spend the budget twice).
///
/// Finding 15 rides along: the alarm topic is encrypted with a KMS key of this template whose
/// key policy lets CloudWatch publish (scripts/template-policy.py's `topic-encrypted` rule
/// checks the same with its self-test; it runs here too, so `cargo test` alone enforces it).
#[test]
fn finding_7_the_fetch_queue_and_the_fetcher_share_one_retry_budget_and_finding_15_the_alarm_topic_key_lets_cloudwatch_publish()
 {
    let t = template();
    let resources = &t["Resources"];
    let param = json!({"Ref": "FetcherMaxReceives"});
    assert_eq!(
        t["Parameters"]["FetcherMaxReceives"]["Type"], "Number",
        "FetcherMaxReceives is a parameter"
    );
    let queue = &resources["FetchQueue"];
    assert_eq!(queue["Type"], "AWS::SQS::Queue");
    let redrive = &queue["Properties"]["RedrivePolicy"];
    assert_eq!(
        redrive["maxReceiveCount"], param,
        "the fetch queue's maxReceiveCount is !Ref FetcherMaxReceives: {redrive}"
    );
    assert_eq!(
        referenced(&redrive["deadLetterTargetArn"]).as_deref(),
        Some("FetchDeadLetterQueue")
    );
    // The fetcher's environment: its own Variables over the Globals'.
    let fetcher = &resources["FetcherFunction"];
    let own = &fetcher["Properties"]["Environment"]["Variables"]["FETCHER_MAX_RECEIVES"];
    let effective = if own.is_null() {
        &t["Globals"]["Function"]["Environment"]["Variables"]["FETCHER_MAX_RECEIVES"]
    } else {
        own
    };
    assert_eq!(
        *effective, param,
        "the fetcher's FETCHER_MAX_RECEIVES is !Ref FetcherMaxReceives"
    );
    let sources: Vec<&Value> = fetcher["Properties"]["Events"]
        .as_object()
        .expect("fetcher events")
        .values()
        .filter(|e| e["Type"] == "SQS")
        .collect();
    assert_eq!(sources.len(), 1, "one SQS event source");
    let source = &sources[0]["Properties"];
    assert_eq!(
        referenced(&source["Queue"]).as_deref(),
        Some("FetchQueue"),
        "the fetcher reads the queue with that redrive policy"
    );
    assert!(
        as_strings(&source["FunctionResponseTypes"]).contains(&"ReportBatchItemFailures".into()),
        "per-message failures: {source}"
    );
    let timeout = fetcher["Properties"]["Timeout"]
        .as_u64()
        .or_else(|| t["Globals"]["Function"]["Timeout"].as_u64())
        .expect("fetcher timeout");
    let visibility = queue["Properties"]["VisibilityTimeout"]
        .as_u64()
        .expect("visibility timeout");
    assert!(
        visibility >= 6 * timeout,
        "visibility timeout {visibility} s < 6 x the fetcher's timeout {timeout} s"
    );

    // Finding 15.
    let topic = &resources["AlarmTopic"];
    assert_eq!(topic["Type"], "AWS::SNS::Topic");
    let key_ref = &topic["Properties"]["KmsMasterKeyId"];
    let key_id = referenced(key_ref)
        .unwrap_or_else(|| panic!("the alarm topic names no key of the template: {key_ref}"));
    let key_id = match resources[&key_id]["Type"].as_str() {
        // An alias of the template's key.
        Some("AWS::KMS::Alias") => {
            referenced(&resources[&key_id]["Properties"]["TargetKeyId"]).expect("alias target")
        }
        _ => key_id,
    };
    let key = &resources[&key_id];
    assert_eq!(key["Type"], "AWS::KMS::Key", "{key_id} is a KMS key");
    assert_eq!(
        t["Parameters"]["AlarmTopicEncryption"]["Default"], "customer-managed-key",
        "encrypted by default"
    );
    let statements = key["Properties"]["KeyPolicy"]["Statement"]
        .as_array()
        .expect("key policy statements");
    let cloudwatch = statements.iter().find(|s| {
        s["Effect"] == "Allow"
            && as_strings(&s["Principal"]["Service"]).contains(&"cloudwatch.amazonaws.com".into())
    });
    let cloudwatch = cloudwatch.expect("the key policy allows cloudwatch.amazonaws.com");
    let actions = as_strings(&cloudwatch["Action"]);
    for needed in ["kms:Decrypt", "kms:GenerateDataKey"] {
        assert!(
            actions
                .iter()
                .any(|a| a == needed || (a.ends_with('*') && needed.starts_with(&a[..a.len() - 1]))),
            "CloudWatch may not {needed}: {actions:?}"
        );
    }
    let policy = std::process::Command::new(venv_python())
        .arg(repo_root().join("scripts/template-policy.py"))
        .arg(repo_root().join("template.yaml"))
        .output()
        .expect("run template-policy.py");
    assert!(
        policy.status.success(),
        "scripts/template-policy.py template.yaml:\n{}{}",
        String::from_utf8_lossy(&policy.stdout),
        String::from_utf8_lossy(&policy.stderr)
    );
}

// ------------------------------------------------------- finding 11: two listers at once

/// Finding 11 (a): two ticks at once (an overrun schedule, a manual invoke) against one table
/// and one queue over a few hundred blobs: every blob is enqueued exactly once. The ledger
/// claim (a conditional write) decides who hands a blob on; the other lister counts it in
/// flight.
///
/// Before: a blob was "new" when it was after the cursor, so both listers enqueued the whole
/// window.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finding_11_two_listers_at_once_enqueue_every_blob_exactly_once() {
    let stack = Stack::create(5).await;
    let emu = Emulator::start(scenario_with(
        &format!(
            "hours_back = 12\nrecords_per_blob = 2\nrecords_per_hour = {}",
            all_types(10)
        ),
        "hours_back = 1\nrecords_per_hour = { \"Audit.Exchange\" = 1 }",
        "",
    ))
    .await
    .expect("emulator");
    let (dir, ts) = local_tenants(&emu);
    stack.store().put_tenant(&ts[0]).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&stack.conf);
    let (q1, q2) = (
        SqsQueue::new(sqs.clone(), stack.queue_url.clone(), None),
        SqsQueue::new(sqs, stack.queue_url.clone(), None),
    );
    let (s1, s2) = (stack.store(), stack.store());
    let (a1, a2) = (apis(), apis());
    let settings = ListerSettings::default();
    let before = emu.now();
    let (r1, r2) = tokio::join!(
        lister::run(&s1, &q1, &a1, &SystemClock, &settings, deadline(300)),
        lister::run(&s2, &q2, &a2, &SystemClock, &settings, deadline(300)),
    );
    let after = emu.now();
    let (r1, r2) = (r1.expect("lister 1"), r2.expect("lister 2"));
    for r in [&r1, &r2] {
        assert_eq!(r.failures(), 0, "{r:?}");
        assert!(
            r.feeds.iter().map(|f| f.listed).sum::<u64>() > 0,
            "both listers listed"
        );
    }
    let in_flight: u64 = [&r1, &r2]
        .iter()
        .flat_map(|r| &r.feeds)
        .map(|f| f.in_flight)
        .sum();
    assert!(
        in_flight > 0,
        "the two listers did not overlap (neither saw the other's fresh claims)"
    );
    let jobs = receive_all(&stack, &stack.queue_url).await;
    let got = counts(&jobs);
    let twice: Vec<(&String, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "enqueued more than once: {twice:?}");
    let truth = emu.truth();
    let must: BTreeSet<&String> = truth
        .iter()
        .filter(|b| b.tenant == TENANT_CERT && b.available_at <= before)
        .map(|b| &b.content_id)
        .collect();
    let may: BTreeSet<&String> = truth
        .iter()
        .filter(|b| b.tenant == TENANT_CERT && b.available_at <= after)
        .map(|b| &b.content_id)
        .collect();
    assert!(must.len() >= 250, "only {} blobs", must.len());
    let missing: Vec<&&String> = must.iter().filter(|id| !got.contains_key(**id)).collect();
    assert!(
        missing.is_empty(),
        "{} blobs never enqueued, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(
        got.keys().all(|id| may.contains(id)),
        "a job for a blob that was never listable"
    );
    assert_eq!(
        r1.jobs() + r2.jobs(),
        jobs.len() as u64,
        "the reports count each job once: {} + {}",
        r1.jobs(),
        r2.jobs()
    );
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------- finding 11 (b) / 12: a job SQS refuses

/// An HTTP proxy in front of moto that refuses, as SQS does a bad entry (`SenderFault=true`),
/// the `SendMessageBatch` entries whose job is for one of the chosen content ids: such an
/// entry is never forwarded (the message does not exist) and is answered in `Failed`.
struct RefusingProxy {
    url: String,
    state: Arc<Refuser>,
}

struct Refuser {
    upstream: String,
    http: reqwest::Client,
    refuse: Mutex<HashSet<String>>,
    refused: Mutex<Vec<String>>,
}

impl RefusingProxy {
    async fn start(upstream: &str, refuse: HashSet<String>) -> RefusingProxy {
        let state = Arc::new(Refuser {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            refuse: Mutex::new(refuse),
            refused: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(refusing_forward)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RefusingProxy { url, state }
    }

    /// Content ids refused so far, once per refusal.
    fn refused(&self) -> Vec<String> {
        self.state.refused.lock().expect("lock").clone()
    }

    fn stop_refusing(&self) {
        self.state.refuse.lock().expect("lock").clear();
    }
}

async fn refusing_forward(
    axum::extract::State(p): axum::extract::State<Arc<Refuser>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let mut body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let batch = parts
        .headers
        .get("x-amz-target")
        .is_some_and(|v| v == "AmazonSQS.SendMessageBatch");
    let mut refused: Vec<Value> = Vec::new();
    if batch {
        let mut request: Value = serde_json::from_slice(&body).expect("SendMessageBatch JSON");
        let refuse = p.refuse.lock().expect("lock").clone();
        if let Some(entries) = request["Entries"].as_array_mut() {
            entries.retain(|e| {
                let id = FetchJob::parse(e["MessageBody"].as_str().unwrap_or_default())
                    .map(|j| j.content_id)
                    .unwrap_or_default();
                if refuse.contains(&id) {
                    p.refused.lock().expect("lock").push(id.clone());
                    refused.push(json!({
                        "Id": e["Id"],
                        "SenderFault": true,
                        "Code": "InvalidParameterValue",
                        "Message": format!("refused by the test proxy: {id}"),
                    }));
                    false
                } else {
                    true
                }
            });
            if entries.is_empty() {
                let answer = json!({"Successful": [], "Failed": refused});
                return (
                    [("content-type", "application/x-amz-json-1.0")],
                    answer.to_string(),
                )
                    .into_response();
            }
        }
        body = serde_json::to_vec(&request).expect("json").into();
    }
    let url = format!(
        "{}{}",
        p.upstream,
        parts
            .uri
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str)
    );
    let mut forward = p.http.request(parts.method.clone(), url).body(body);
    for (k, v) in &parts.headers {
        if k != axum::http::header::HOST && k != axum::http::header::CONTENT_LENGTH {
            forward = forward.header(k, v);
        }
    }
    let answer = match forward.send().await {
        Ok(a) => a,
        Err(e) => return (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut bytes = answer.bytes().await.unwrap_or_default();
    if !refused.is_empty() && status.is_success() {
        let mut v: Value = serde_json::from_slice(&bytes).expect("SendMessageBatch answer");
        let failed = v
            .as_object_mut()
            .expect("object")
            .entry("Failed")
            .or_insert_with(|| json!([]));
        failed.as_array_mut().expect("array").extend(refused);
        bytes = serde_json::to_vec(&v).expect("json").into();
    }
    let mut out = axum::response::Response::new(axum::body::Body::from(bytes));
    *out.status_mut() = status;
    for (k, v) in &headers {
        if k != axum::http::header::CONTENT_LENGTH && k != axum::http::header::TRANSFER_ENCODING {
            out.headers_mut().insert(k, v.clone());
        }
    }
    out
}

/// Findings 11 (b) and 12: jobs SQS refuses with a sender fault never hold the feed back and
/// are never forgotten. The tick's cursor advances past them; each refused blob is `failed`
/// in the ledger (DynamoDB) with a retry time, in the sweep's index; re-listing them before
/// the back-off does not enqueue them; a later tick, once Microsoft's clock (the emulator's)
/// has passed the back-off, enqueues each of them once.
///
/// Before: the cursor either stopped at the first refused blob (the whole feed stalled behind
/// one bad entry) or moved past it (the blob was lost: nothing remembered it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finding_11_jobs_sqs_refuses_do_not_hold_the_cursor_back_and_the_sweep_enqueues_them_after_the_back_off()
 {
    let stack = Stack::create(5).await;
    let emu = Emulator::start(scenario_with(
        &format!(
            "hours_back = 5\nrecords_per_blob = 2\nrecords_per_hour = {}",
            all_types(6)
        ),
        "hours_back = 1\nrecords_per_hour = { \"Audit.Exchange\" = 1 }",
        "",
    ))
    .await
    .expect("emulator");
    let (dir, ts) = local_tenants(&emu);
    let store = stack.store();
    store.put_tenant(&ts[0]).await.unwrap();
    let t0 = emu.now();
    // One Exchange blob of each of three hours (their jobs go in three different batches).
    let mut by_hour: BTreeMap<DateTime<Utc>, Vec<BlobTruth>> = BTreeMap::new();
    for b in emu.truth() {
        if b.tenant == TENANT_CERT && b.content_type == "Audit.Exchange" && b.available_at <= t0 {
            by_hour
                .entry(shared::model::seen_hour(b.content_created))
                .or_default()
                .push(b);
        }
    }
    let refused: Vec<BlobTruth> = by_hour
        .values()
        .filter(|g| g.len() >= 2)
        .take(3)
        .map(|g| g[0].clone())
        .collect();
    assert_eq!(refused.len(), 3);
    let refused_ids: HashSet<String> = refused.iter().map(|b| b.content_id.clone()).collect();
    let proxy = RefusingProxy::start(&stack.endpoint, refused_ids.clone()).await;
    let through_proxy = integration_tests::moto::config_at(&proxy.url).await;
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&through_proxy),
        stack.queue_url.clone(),
        None,
    );
    let settings = ListerSettings::default();
    let run = |apis: Arc<TenantClients<LocalSecrets>>| {
        let (store, queue, settings) = (&store, &queue, &settings);
        async move {
            lister::run(store, queue, &apis, &SystemClock, settings, deadline(300))
                .await
                .expect("lister")
        }
    };
    let exchange = |r: &ListerReport| {
        r.feeds
            .iter()
            .find(|f| f.tenant == TENANT_CERT && f.content_type == ContentType::Exchange)
            .cloned()
            .expect("exchange feed")
    };

    // Tick 1: three jobs refused.
    let r1 = run(apis()).await;
    assert_eq!(r1.failures(), 0, "{r1:?}");
    let f1 = exchange(&r1);
    assert_eq!(f1.refused, 3, "{f1:?}");
    let mut once = proxy.refused();
    once.sort();
    let mut want: Vec<String> = refused_ids.iter().cloned().collect();
    want.sort();
    assert_eq!(
        once, want,
        "each refused once: a sender fault is not retried"
    );
    // The cursor advanced past them, to Microsoft's now.
    let cursor = store
        .load_cursor(&tenant_a(), ContentType::Exchange)
        .await
        .unwrap()
        .expect("cursor saved")
        .value;
    let newest_refused = refused.iter().map(|b| b.content_created).max().unwrap();
    assert!(
        cursor.listed_until > newest_refused
            && cursor.listed_until >= t0 - chrono::Duration::minutes(1),
        "cursor {} held back (t0 {t0}, newest refused {newest_refused})",
        cursor.listed_until
    );
    // Failed with a retry in the ledger, and in the sweep's index.
    for b in &refused {
        let e = store
            .blob_entry(&tenant_a(), &b.content_id, Utc::now())
            .await
            .unwrap()
            .expect("ledger entry");
        assert_eq!(e.state, BlobState::Failed, "{e:?}");
        let next = e.next_attempt_at.expect("a retry");
        assert!(
            next > t0 && next <= emu.now() + chrono::Duration::minutes(10),
            "{e:?}"
        );
        assert!(
            e.reason
                .as_deref()
                .is_some_and(|r| r.contains("refused") && r.contains("InvalidParameterValue")),
            "{e:?}"
        );
    }
    let due: BTreeSet<String> = store
        .due_entries(&tenant_a(), emu.now() + chrono::Duration::days(1), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.blob.content_id)
        .collect();
    assert_eq!(
        due,
        refused_ids.iter().cloned().collect::<BTreeSet<_>>(),
        "the index holds exactly the refused ones"
    );
    // Everything else was enqueued, once; the refused ones not at all.
    let first = counts(&receive_all(&stack, &stack.queue_url).await);
    assert!(first.values().all(|n| *n == 1), "{first:?}");
    assert!(refused_ids.iter().all(|id| !first.contains_key(id)));
    let listable = |by: DateTime<Utc>| -> BTreeSet<String> {
        emu.truth()
            .into_iter()
            .filter(|b| b.tenant == TENANT_CERT && b.available_at <= by)
            .map(|b| b.content_id)
            .collect()
    };
    let (must, may) = (listable(t0), listable(emu.now()));
    for id in &must {
        assert!(
            first.contains_key(id) || refused_ids.contains(id),
            "{id} was listable and neither enqueued nor refused"
        );
    }
    assert!(
        first.keys().all(|id| may.contains(id)),
        "a job for a blob never listable"
    );

    // SQS takes them again; a tick before the back-off leaves them be.
    proxy.stop_refusing();
    let r2 = run(apis()).await;
    let sweep = r2
        .sweeps
        .iter()
        .find(|s| s.tenant == TENANT_CERT)
        .expect("sweep");
    assert_eq!((sweep.open_failed, sweep.redriven), (3, 0), "{sweep:?}");
    let second = counts(&receive_all(&stack, &stack.queue_url).await);
    assert!(
        refused_ids.iter().all(|id| !second.contains_key(id)),
        "re-listed before the back-off: {second:?}"
    );

    // Microsoft's clock passes the back-off: the next tick enqueues each once.
    emu.advance_clock(chrono::Duration::minutes(6));
    let r3 = run(apis()).await;
    let sweep = r3
        .sweeps
        .iter()
        .find(|s| s.tenant == TENANT_CERT)
        .expect("sweep");
    assert_eq!(sweep.redriven, 3, "{sweep:?}");
    let third = counts(&receive_all(&stack, &stack.queue_url).await);
    for id in &refused_ids {
        assert_eq!(
            third.get(id),
            Some(&1),
            "{id} enqueued again once: {third:?}"
        );
        let e = store
            .blob_entry(&tenant_a(), id, Utc::now())
            .await
            .unwrap()
            .expect("entry");
        assert_eq!((e.state, e.attempts), (BlobState::Enqueued, 1), "{e:?}");
    }
    assert!(
        store
            .due_entries(&tenant_a(), emu.now() + chrono::Duration::days(1), 100)
            .await
            .unwrap()
            .is_empty(),
        "re-driven entries leave the sweep's index"
    );
    let _ = std::fs::remove_dir_all(dir);
}

// -------------------------------------------------- finding 12: late content, end to end

/// Finding 12, end to end through the built lister and fetcher binaries: content Microsoft
/// publishes up to 6 days after its `contentCreated` is collected within one reconciliation
/// pass of becoming listable (RECONCILE_EVERY_MINUTES=60, the emulator's clock moved past it),
/// and content up to 2 hours late within one tick of becoming listable (the 150-minute band
/// of the live tail, on Microsoft's clock). Every record exactly once against the emulator's
/// ground truth.
///
/// Before: a fixed 60-minute re-list band on our own clock and no reconciliation: 2-hour-late
/// content and anything later was never listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finding_12_late_content_is_collected_within_one_tick_or_one_reconciliation_pass() {
    let stack = Stack::create(5).await;
    // Tenant A: every blob listable exactly 6 days after its contentCreated (content from 146
    // hours back: the oldest hour is listable at the start, one more hour every hour after).
    // Tenant B: half its blobs 2 hours late.
    let emu = Emulator::start(scenario_with(
        &format!(
            "hours_back = 146\nrecords_per_blob = 2\nrecords_per_hour = {}\nlate_fraction = 1.0\nlate_by_secs = 518400",
            all_types(2)
        ),
        &format!(
            "hours_back = 6\nrecords_per_blob = 2\nrecords_per_hour = {}\nlate_fraction = 0.5\nlate_by_secs = 7200",
            all_types(4)
        ),
        "",
    ))
    .await
    .expect("emulator");
    let dir = deploy_tenants(&stack, &emu).await;
    let env = stack.function_env(&[
        ("RECONCILE_EVERY_MINUTES", "60"),
        ("FIRST_RUN_LOOKBACK_HOURS", "167"),
    ]);
    let mut lister = LambdaProcess::spawn("lister", &env).await;
    let mut fetcher = LambdaProcess::spawn("fetcher", &env).await;
    assert!(lister.init_error().is_none(), "{}", lister.logs());

    // Tick 1: the first listing goes back 167 hours and a first reconciliation pass completes.
    let t0 = emu.now();
    let r1 = tick(&mut lister).await;
    drain(&stack, &mut fetcher).await;
    for f in r1["feeds"].as_array().expect("feeds") {
        assert!(f["error"].is_null(), "{f}");
        assert!(
            !f["reconciled_at"].is_null() && f["reconcile_from"].is_null(),
            "the first pass completed in the first tick: {f}"
        );
    }
    assert_exactly_once(&emu, &written(&stack).await, t0, emu.now());

    // 40 minutes on: 2-hour-late content of B listed since then is collected by the next
    // tick (the reconciliation pass is not due: 60 minutes).
    emu.advance_clock(chrono::Duration::minutes(40));
    let t1 = emu.now();
    let r2 = tick(&mut lister).await;
    drain(&stack, &mut fetcher).await;
    let truth = emu.truth();
    let late_b: Vec<&BlobTruth> = truth
        .iter()
        .filter(|b| {
            b.tenant == TENANT_SECRET
                && b.available_at > t0
                && b.available_at <= t1
                && b.available_at - b.content_created >= chrono::Duration::minutes(110)
        })
        .collect();
    assert!(
        !late_b.is_empty(),
        "the scenario made no 2-hour-late content listable"
    );
    let w = written(&stack).await;
    let must_b = emu.record_ids_available_by(t1, false);
    for ((tenant, ct), ids) in must_b.iter().filter(|((t, _), _)| t == TENANT_SECRET) {
        let got = w.get(&(tenant.clone(), ct.clone()));
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| !got.is_some_and(|g| g.contains_key(*id)))
            .collect();
        assert!(
            missing.is_empty(),
            "{} records of {ct} listable by the second tick not collected by it (2 hours late), e.g. {:?}\n{r2}",
            missing.len(),
            missing.first()
        );
    }
    for (key, ids) in &w {
        assert!(ids.values().all(|n| *n == 1), "{key:?} written twice");
    }

    // 70 minutes after the first pass: the next tick's pass finds the 6-day-late content that
    // became listable since.
    emu.advance_clock(chrono::Duration::minutes(30));
    let t2 = emu.now();
    let r3 = tick(&mut lister).await;
    drain(&stack, &mut fetcher).await;
    let truth = emu.truth();
    let late_a = truth
        .iter()
        .filter(|b| {
            b.tenant == TENANT_CERT
                && b.available_at > t0
                && b.available_at <= t2
                && b.available_at - b.content_created >= chrono::Duration::days(5)
        })
        .count();
    assert!(
        late_a >= 5,
        "the scenario made too little 6-day-late content listable: {late_a}"
    );
    let found: u64 = r3["feeds"]
        .as_array()
        .expect("feeds")
        .iter()
        .filter(|f| f["tenant"] == TENANT_CERT)
        .map(|f| f["late_found"].as_u64().unwrap_or(0))
        .sum();
    assert!(found > 0, "the reconciliation pass found nothing: {r3}");
    assert_exactly_once(&emu, &written(&stack).await, t2, emu.now());
    assert!(
        stack.dead_letters().await.is_empty(),
        "nothing dead-lettered"
    );
    let _ = std::fs::remove_dir_all(dir);
}

// ------------------------------------------------------- finding 7: the dead-letter sweep

/// Finding 7 (the backstop): a job SQS moved to the dead-letter queue by itself (no `reason`:
/// its fetcher never answered, e.g. killed out of memory) is found by the next lister tick
/// (the built binary, on moto): the letter gets a reason and the ledger entry becomes
/// `failed` with a retry, so the blob is not left `pending` forever. The fetcher's own dead
/// letters (with a reason) stay visible in the DLQ for the operator and its alarm.
///
/// Before: such a job sat in the DLQ without a reason and its ledger entry never moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_7_a_job_sqs_dead_lettered_by_itself_gets_a_reason_and_a_retry_and_the_fetchers_letters_stay_visible()
 {
    let stack = Stack::create(2).await;
    let store = stack.store();
    let tenant = tenant_a();
    let now = Utc::now();
    let job = |n: u32| {
        let blob = ContentBlob {
            content_type: ContentType::Exchange,
            content_id: format!(
                "20261123071500123000001$2026112307251234500000{n}$audit_exchange$Audit_Exchange$na0001"
            ),
            content_uri: format!(
                "https://manage.office.com/api/v1.0/{TENANT_CERT}/activity/feed/audit/{n}"
            ),
            content_created: now - chrono::Duration::hours(2),
            content_expiration: now + chrono::Duration::days(6),
        };
        FetchJob::new(tenant.clone(), &blob, now)
    };
    // The lister claimed the blob and enqueued its job; the fetcher died on every receive and
    // SQS moved the message to the DLQ as it was (no attributes).
    let lost = job(1);
    store
        .claim_blob(&tenant, &lost.blob(), now)
        .await
        .expect("claim");
    let sqs = aws_sdk_sqs::Client::new(&stack.conf);
    sqs.send_message()
        .queue_url(&stack.dlq_url)
        .message_body(lost.to_json())
        .send()
        .await
        .expect("send");
    // Two jobs the fetcher dead-lettered itself, with their reasons.
    let dlq = SqsQueue::new(
        sqs.clone(),
        stack.queue_url.clone(),
        Some(stack.dlq_url.clone()),
    );
    let own = [
        (
            job(2),
            "gave up after 2 attempts: blob 2 did not finish before the function's deadline",
        ),
        (job(3), "tenant is not configured"),
    ];
    for (j, reason) in &own {
        dlq.dead_letter(&j.to_json(), reason)
            .await
            .expect("dead letter");
    }
    assert_eq!(queue_depth(&stack, &stack.dlq_url).await, (3, 0));

    let mut lister = LambdaProcess::spawn("lister", &stack.function_env(&[])).await;
    assert!(lister.init_error().is_none(), "{}", lister.logs());
    let report = tick(&mut lister).await;
    assert_eq!(report["dead_letters"]["recovered"], 1, "{report}");
    assert!(report["dead_letters"]["error"].is_null(), "{report}");
    // Right after the tick: the same three letters, all visible (none hidden by the sweep).
    assert_eq!(
        queue_depth(&stack, &stack.dlq_url).await,
        (3, 0),
        "the DLQ's visible count (what its alarm sees) is unchanged"
    );
    // The ledger entry is failed with a retry; the sweep's index holds it.
    let e = store
        .blob_entry(&tenant, &lost.content_id, Utc::now())
        .await
        .unwrap()
        .expect("entry");
    assert_eq!(e.state, BlobState::Failed, "{e:?}");
    assert!(e.next_attempt_at.is_some(), "{e:?}");
    let due = store
        .due_entries(&tenant, Utc::now() + chrono::Duration::days(1), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].blob.content_id, lost.content_id);

    // A second tick finds nothing more to annotate.
    let again = tick(&mut lister).await;
    assert_eq!(again["dead_letters"]["recovered"], 0, "{again}");
    assert_eq!(queue_depth(&stack, &stack.dlq_url).await, (3, 0));

    let letters: HashMap<String, String> = stack
        .dead_letters()
        .await
        .into_iter()
        .map(|(body, reason)| (FetchJob::parse(&body).expect("job").content_id, reason))
        .collect();
    assert_eq!(letters.len(), 3, "{letters:?}");
    let annotated = &letters[&lost.content_id];
    assert!(
        annotated.contains("never answered"),
        "the letter SQS moved now says why: {annotated}"
    );
    for (j, reason) in &own {
        assert_eq!(
            &letters[&j.content_id], reason,
            "the fetcher's letter is unchanged"
        );
    }
}
