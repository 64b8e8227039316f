//! Hostile and broken input, through the real pieces: the fetcher use case with its real HTTP,
//! token and credential adapters (in-process, over a memory store, a folder sink and a memory
//! dead-letter queue) against the emulator's hostile faults; the fetcher binary with malformed
//! and oversized SQS messages (moto); the CLI with broken config files.
//!
//! For each input: a clear outcome (which `JobOutcome`, which text names the fix), nothing lost
//! (retried, dead-lettered with its reason, or reported), no panic (a panic fails the test).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use integration_tests::runtime::{InvokeError, LambdaProcess, function_binary};
use integration_tests::stack::Stack;
use o365_emulator::{BlobTruth, Emulator, Scenario};
use serde_json::{Value, json};
use shared::api::http_client;
use shared::app::SystemClock;
use shared::app::clients::TenantClients;
use shared::app::fetcher::{
    Fetcher, FetcherSettings, JobOutcome, MAX_RECORD_BYTES, QueueMessage, raw_key,
};
use shared::model::{
    BlobState, ContentBlob, ContentType, CredentialRef, FetchJob, SecretRef, Tenant, TenantId,
};
use shared::queue::MemoryQueue;
use shared::retry::RetryPolicy;
use shared::secrets::LocalSecrets;
use shared::sink::{FolderSink, ObjectSink};
use shared::store::{MemoryStore, StateStore};

use crate::support::{APP_CERT, TENANT_CERT, cert, tenants};

/// A secret app of tenant A (the support scenario's secret app lives in the GCC High tenant).
const APP_SECRET_A: &str = "c8211949-8d9d-4a4e-b721-3f1052cee785";
const SECRET_A: &str = "hostile~secret.value-123";
const EXPIRED_SECRET_A: &str = "hostile~expired.value-456";
const MAX_RECEIVES: u32 = 3;

/// Tenant A only, Exchange content only, no faults but `faults`.
fn scenario(faults: &str) -> Scenario {
    let cert = cert().cert_pem.replace('\n', "\\n");
    Scenario::from_toml(&format!(
        r#"
seed = 21
page_size = 50

[[tenant]]
id = "{TENANT_CERT}"
domain = "contoso.onmicrosoft.com"
users = 4
subscriptions = {{ "Audit.Exchange" = "enabled" }}
[tenant.data]
hours_back = 3
records_per_blob = 4
records_per_hour = {{ "Audit.Exchange" = 12 }}

[[app]]
client_id = "{APP_CERT}"
home_tenant = "{TENANT_CERT}"
certificates = ["{cert}"]
manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]

[[app]]
client_id = "{APP_SECRET_A}"
home_tenant = "{TENANT_CERT}"
secrets = [{{ value = "{SECRET_A}" }}, {{ value = "{EXPIRED_SECRET_A}", expires = "2021-01-01T00:00:00Z" }}]
manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]
{faults}
"#
    ))
    .expect("scenario")
}

type LocalFetcher = Fetcher<
    Arc<MemoryStore>,
    Arc<FolderSink>,
    Arc<MemoryQueue>,
    Arc<TenantClients<LocalSecrets>>,
    SystemClock,
>;

/// The fetcher use case with real adapters, against an emulator with faults.
struct Rig {
    emu: Emulator,
    fetcher: LocalFetcher,
    store: Arc<MemoryStore>,
    sink: Arc<FolderSink>,
    dead: Arc<MemoryQueue>,
    dir: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn settings() -> FetcherSettings {
    FetcherSettings {
        max_receives: MAX_RECEIVES,
        ..FetcherSettings::default()
    }
}

impl Rig {
    /// Tenant A with its certificate.
    async fn start(faults: &str, settings: FetcherSettings) -> Rig {
        Rig::with_tenant(faults, settings, |_, _| {}).await
    }

    /// Tenant A as `adjust` leaves it (`adjust` gets the tenant and a folder for its files).
    async fn with_tenant(
        faults: &str,
        settings: FetcherSettings,
        adjust: impl FnOnce(&mut Tenant, &Path),
    ) -> Rig {
        let emu = Emulator::start(scenario(faults)).await.expect("emulator");
        let dir = std::env::temp_dir().join(format!("o365-hostile-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("a.pem");
        std::fs::write(&pem, &cert().pem).unwrap();
        let mut tenant = tenants(
            &emu,
            &pem.display().to_string(),
            SecretRef::Env("UNUSED".into()),
        )
        .remove(0);
        adjust(&mut tenant, &dir);
        let store = Arc::new(MemoryStore::default());
        store.put_tenant(&tenant).await.unwrap();
        let sink = Arc::new(FolderSink::new(dir.join("out")));
        let dead = Arc::new(MemoryQueue::new());
        let retry = RetryPolicy {
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            ..RetryPolicy::default()
        };
        let apis = Arc::new(TenantClients::new(http_client(), LocalSecrets, retry));
        let fetcher = Fetcher::new(
            store.clone(),
            sink.clone(),
            dead.clone(),
            apis,
            SystemClock,
            settings,
        );
        Rig {
            emu,
            fetcher,
            store,
            sink,
            dead,
            dir,
        }
    }

    /// The available blobs of tenant A, in a stable order.
    fn blobs(&self) -> Vec<BlobTruth> {
        let mut v: Vec<BlobTruth> = self
            .emu
            .truth()
            .into_iter()
            .filter(|b| b.tenant == TENANT_CERT && b.available && !b.expired)
            .filter(|b| !b.record_ids.is_empty())
            .collect();
        v.sort_by(|a, b| a.content_id.cmp(&b.content_id));
        assert!(v.len() >= 3, "the scenario has too few blobs");
        v
    }

    fn blob_uri(&self, b: &BlobTruth) -> String {
        format!(
            "{}/api/v1.0/{TENANT_CERT}/activity/feed/audit/{}",
            self.emu.base_url(),
            b.content_id
        )
    }

    fn job_at(&self, b: &BlobTruth, uri: &str) -> FetchJob {
        FetchJob::new(
            TenantId::parse(TENANT_CERT).unwrap(),
            &ContentBlob {
                content_type: b.content_type.parse::<ContentType>().unwrap(),
                content_id: b.content_id.clone(),
                content_uri: uri.to_owned(),
                content_created: b.content_created,
                content_expiration: b.expiration,
            },
            chrono::Utc::now(),
        )
    }

    fn job(&self, b: &BlobTruth) -> FetchJob {
        self.job_at(b, &self.blob_uri(b))
    }

    async fn handle(&self, job: &FetchJob, receive_count: u32) -> JobOutcome {
        self.handle_body(&job.to_json(), receive_count).await
    }

    async fn handle_body(&self, body: &str, receive_count: u32) -> JobOutcome {
        self.fetcher
            .handle(&QueueMessage {
                id: format!("m-{receive_count}"),
                body: body.to_owned(),
                receive_count,
            })
            .await
    }

    /// Every OCSF event written so far.
    async fn events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for key in self.sink.list("ocsf/").await.unwrap() {
            let gz = self.sink.get(&key).await.unwrap().unwrap();
            for line in gunzip(&gz).split(|b| *b == b'\n') {
                if !line.is_empty() {
                    out.push(serde_json::from_slice(line).expect("an NDJSON line"));
                }
            }
        }
        out
    }

    /// The raw archive of a job, decompressed, if one was written.
    async fn raw(&self, job: &FetchJob) -> Option<Vec<u8>> {
        self.sink
            .get(&raw_key(job))
            .await
            .unwrap()
            .map(|gz| gunzip(&gz))
    }

    async fn ledger_state(&self, job: &FetchJob) -> Option<(BlobState, Option<String>)> {
        self.store
            .blob_entry(&job.tenant_id, &job.content_id, chrono::Utc::now())
            .await
            .unwrap()
            .map(|e| (e.state, e.reason))
    }

    /// The job is written with exactly the truth's records.
    async fn assert_written(&self, job: &FetchJob, b: &BlobTruth) {
        let outcome = self.handle(job, 1).await;
        let JobOutcome::Written { records, .. } = outcome else {
            panic!("{}: {outcome:?}", b.content_id)
        };
        assert_eq!(records as usize, b.record_ids.len(), "{}", b.content_id);
        let events = self.events().await;
        for id in &b.record_ids {
            assert!(
                events.iter().any(|e| e["metadata"]["uid"] == id.as_str()),
                "record {id} lost"
            );
        }
        assert_eq!(
            self.ledger_state(job).await.map(|s| s.0),
            Some(BlobState::Done)
        );
    }
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

fn reason(outcome: &JobOutcome) -> &str {
    match outcome {
        JobOutcome::Retry { reason } | JobOutcome::DeadLettered { reason } => reason,
        other => panic!("expected a failure with a reason, got {other:?}"),
    }
}

fn fault(kind: &str, endpoints: &str, extra: &str) -> String {
    format!(
        "\n[[fault]]\nkind = \"{kind}\"\nendpoints = [\"{endpoints}\"]\nevery = 1\nlimit = 1\n{extra}\n"
    )
}

/// A listener that counts every connection made to it.
async fn trap() -> (String, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU32::new(0));
    let seen = hits.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (format!("http://{addr}"), hits)
}

// ---------------------------------------------------------------------------------------------
// Broken blobs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_json_blob_is_retried_then_dead_lettered_with_its_reason_and_its_bytes_kept() {
    let faults = format!(
        "\n[[fault]]\nkind = \"garbage\"\nendpoints = [\"blob\"]\nevery = 1\nlimit = {MAX_RECEIVES}\n"
    );
    let rig = Rig::start(&faults, settings()).await;
    let b = &rig.blobs()[0];
    let job = rig.job(b);
    for attempt in 1..MAX_RECEIVES {
        let outcome = rig.handle(&job, attempt).await;
        assert!(outcome.is_retry(), "attempt {attempt}: {outcome:?}");
        let r = reason(&outcome);
        assert!(r.contains("JSON array") && r.contains(&b.content_id), "{r}");
    }
    let outcome = rig.handle(&job, MAX_RECEIVES).await;
    assert!(
        matches!(outcome, JobOutcome::DeadLettered { .. }),
        "{outcome:?}"
    );
    let r = reason(&outcome);
    assert!(
        r.starts_with(&format!("gave up after {MAX_RECEIVES} attempts"))
            && r.contains("JSON array"),
        "{r}"
    );
    // Nothing lost: the job is in the dead-letter queue with its reason, the ledger says why,
    // and the raw archive keeps what arrived.
    assert_eq!(rig.dead.dead_letters(), vec![(job.to_json(), r.to_owned())]);
    let (state, why) = rig.ledger_state(&job).await.expect("ledger entry");
    assert_eq!(state, BlobState::Failed);
    assert_eq!(why.as_deref(), Some(r));
    let raw = rig
        .raw(&job)
        .await
        .expect("the raw archive of what arrived");
    assert!(String::from_utf8_lossy(&raw).contains("<html>"), "{raw:?}");
    assert!(
        rig.events().await.is_empty(),
        "no events from a broken blob"
    );
    // Redriven from the dead-letter queue once the service answers again: every record.
    rig.assert_written(&job, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_blob_is_retried_whatever_its_content_length_says() {
    let faults = [
        fault("truncate", "blob", "truncate_at = 0.4"),
        fault("truncate", "blob", "content_length = \"none\""),
        fault("truncate", "blob", "content_length = \"full\""),
    ]
    .concat();
    let rig = Rig::start(&faults, settings()).await;
    let b = &rig.blobs()[0];
    let job = rig.job(b);
    // Cut, with a Content-Length of the cut body: a complete answer, an incomplete array.
    let outcome = rig.handle(&job, 1).await;
    assert!(outcome.is_retry(), "{outcome:?}");
    assert!(reason(&outcome).contains("JSON array"), "{outcome:?}");
    let first_raw = rig.raw(&job).await.expect("what arrived is kept");
    // Cut, chunked, ending cleanly.
    let outcome = rig.handle(&job, 2).await;
    assert!(outcome.is_retry(), "{outcome:?}");
    assert!(reason(&outcome).contains("JSON array"), "{outcome:?}");
    assert!(rig.events().await.is_empty(), "no events from a cut blob");
    // The whole length announced, the connection closed early: a transport failure of that
    // blob, retried (or, if the cut came before the headers, retried inside the client).
    let outcome = rig.handle(&job, 1).await;
    match &outcome {
        JobOutcome::Retry { reason } => {
            assert!(reason.contains(&b.content_id), "{reason}");
            rig.assert_written(&job, b).await;
        }
        JobOutcome::Written { records, .. } => {
            assert_eq!(*records as usize, b.record_ids.len());
        }
        other => panic!("{other:?}"),
    }
    let full = rig.raw(&job).await.unwrap();
    assert!(
        full.len() > first_raw.len() && full.starts_with(&first_raw),
        "the first raw archive held the cut prefix"
    );
    assert!(rig.dead.dead_letters().is_empty());
}

/// Waits on the streaming fetcher: a record that is not valid JSON is kept, not the blob failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_invalid_utf8_is_kept_whole_in_raw_data() {
    let rig = Rig::start(&fault("non-utf8", "blob", ""), settings()).await;
    let b = &rig.blobs()[0];
    let job = rig.job(b);
    let outcome = rig.handle(&job, 1).await;
    let JobOutcome::Written { records, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(*records as usize, b.record_ids.len(), "{outcome:?}");
    let events = rig.events().await;
    assert_eq!(events.len(), b.record_ids.len());
    // The damaged record is the blob's first: kept as an event with its text in raw_data.
    let damaged = &b.record_ids[0];
    let kept: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["raw_data"]
                .as_str()
                .is_some_and(|r| r.contains(damaged.as_str()))
        })
        .collect();
    assert_eq!(kept.len(), 1, "{events:#?}");
    assert!(
        kept[0]["raw_data"].as_str().unwrap().contains('\u{FFFD}'),
        "{}",
        kept[0]
    );
    for id in &b.record_ids[1..] {
        assert!(
            events.iter().any(|e| e["metadata"]["uid"] == id.as_str()),
            "record {id} lost"
        );
    }
    // The raw archive holds the bytes exactly as they came.
    let raw = rig.raw(&job).await.unwrap();
    assert!(raw.windows(2).any(|w| w == [0xFF, 0xFE]));
}

/// Finding 9: one record over the record limit is quarantined (kept whole in the raw archive,
/// listed with its reason in the blob's quarantine object); the rest of the blob is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_record_limit_is_quarantined_and_the_rest_of_its_blob_written() {
    let faults = [
        fault(
            "huge-record",
            "blob",
            &format!("record_bytes = {}", MAX_RECORD_BYTES + 64 * 1024),
        ),
        fault("huge-record", "blob", "record_bytes = 3000000"),
    ]
    .concat();
    let rig = Rig::start(&faults, settings()).await;
    let blobs = rig.blobs();
    let job = rig.job(&blobs[0]);
    let outcome = rig.handle(&job, 1).await;
    let JobOutcome::Written {
        records,
        quarantined,
        keys,
        ..
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(*quarantined, 1);
    assert_eq!(
        *records as usize,
        blobs[0].record_ids.len(),
        "the others are written"
    );
    assert!(rig.dead.dead_letters().is_empty());
    assert_eq!(
        rig.ledger_state(&job).await.map(|s| s.0),
        Some(BlobState::Done)
    );
    let raw = rig.raw(&job).await.expect("the raw archive is complete");
    assert!(raw.len() > MAX_RECORD_BYTES, "the big record is in it");
    serde_json::from_slice::<Value>(&raw).expect("the whole blob, a valid JSON array");
    let q = rig
        .sink
        .get(keys.last().unwrap())
        .await
        .unwrap()
        .expect("a quarantine object");
    let q: Value = serde_json::from_slice(&q).unwrap();
    assert!(
        q["records"][0]["reason"]
            .as_str()
            .unwrap()
            .contains(&MAX_RECORD_BYTES.to_string()),
        "{q}"
    );
    // A large record under the limit is written like any other.
    let job = rig.job(&blobs[1]);
    let outcome = rig.handle(&job, 1).await;
    let JobOutcome::Written { records, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(records as usize, blobs[1].record_ids.len() + 1);
    let events = rig.events().await;
    let huge = events
        .iter()
        .find(|e| e["metadata"]["uid"] == "huge-record-0001")
        .expect("the large record");
    assert_eq!(
        huge["unmapped"]["Padding"].as_str().map(str::len),
        Some(3_000_000 - 115),
        "kept whole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_never_ends_is_cut_at_the_size_limit_and_dead_lettered_naming_it() {
    let limit = 64 * 1024;
    let faults = [
        fault("endless", "blob", ""),
        fault("endless", "blob", "interval_ms = 5"),
        // A blob that announces its size: refused on its Content-Length.
        fault("huge-record", "blob", "record_bytes = 100000"),
    ]
    .concat();
    let rig = Rig::start(
        &faults,
        FetcherSettings {
            max_blob_bytes: limit,
            ..settings()
        },
    )
    .await;
    let blobs = rig.blobs();
    for (i, b) in blobs.iter().take(3).enumerate() {
        let job = rig.job(b);
        let t = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(60), rig.handle(&job, 1))
            .await
            .unwrap_or_else(|_| panic!("blob {i}: not bounded by the size limit"));
        assert!(
            matches!(outcome, JobOutcome::DeadLettered { .. }),
            "blob {i}: {outcome:?}"
        );
        let r = reason(&outcome);
        assert!(
            r.contains(&limit.to_string()) && r.contains("larger than"),
            "blob {i}: {r}"
        );
        if i == 2 {
            assert!(r.contains("announced"), "{r}");
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    }
    assert_eq!(rig.dead.dead_letters().len(), 3);
    assert!(rig.events().await.is_empty());
    // The faults spent, a normal blob under the limit is written whole.
    assert!(blobs.len() >= 4, "the scenario has too few blobs");
    rig.assert_written(&rig.job(&blobs[3]), &blobs[3]).await;
}

// ---------------------------------------------------------------------------------------------
// Forged URIs and redirects

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_uris_of_another_scheme_or_host_are_refused_before_any_request() {
    let rig = Rig::start("", settings()).await;
    let (trap_url, connections) = trap().await;
    let trap_host = trap_url.trim_start_matches("http://").to_owned();
    let port = rig.emu.addr().port();
    let b = &rig.blobs()[0];
    let path = format!(
        "/api/v1.0/{TENANT_CERT}/activity/feed/audit/{}",
        b.content_id
    );
    let uris = [
        format!("https://127.0.0.1:{port}{path}"),
        format!("ftp://127.0.0.1:{port}{path}"),
        format!("file://{path}"),
        "file:///etc/passwd".to_owned(),
        format!("gopher://127.0.0.1:{port}{path}"),
        format!("ws://127.0.0.1:{port}{path}"),
        "data:application/json,[{\"Id\":\"x\"}]".to_owned(),
        format!("{trap_url}{path}"),
        format!("http://127.0.0.1:{port}@{trap_host}{path}"),
        format!("//{trap_host}{path}"),
        format!("http://[::1]:{port}{path}"),
        format!("HTTP://LOCALHOST:{port}{path}"),
        String::new(),
    ];
    for uri in &uris {
        let job = rig.job_at(b, uri);
        let outcome = rig.handle(&job, 1).await;
        assert!(
            matches!(outcome, JobOutcome::DeadLettered { .. }),
            "{uri}: {outcome:?}"
        );
        let r = reason(&outcome);
        assert!(r.contains("refused URL"), "{uri}: {r}");
    }
    assert_eq!(rig.dead.dead_letters().len(), uris.len());
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a request left for another host"
    );
    assert_eq!(
        rig.emu.request_summary().total,
        0,
        "not even a token was requested for a refused URI"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_of_the_token_endpoint_and_of_blobs_are_never_followed() {
    let (trap_url, connections) = trap().await;
    let faults = [
        fault(
            "redirect",
            "token",
            &format!("redirect_status = 307\nlocation = \"{trap_url}/token\""),
        ),
        fault(
            "redirect",
            "blob",
            &format!("location = \"{trap_url}/steal\""),
        ),
    ]
    .concat();
    let rig = Rig::start(&faults, settings()).await;
    let b = &rig.blobs()[0];
    let job = rig.job(b);
    // The token endpoint redirects: no token, the job is retried.
    let outcome = rig.handle(&job, 1).await;
    assert!(outcome.is_retry(), "{outcome:?}");
    assert!(reason(&outcome).contains("307"), "{outcome:?}");
    // The blob redirects: refused, dead-lettered with a reason naming the redirect.
    let outcome = rig.handle(&job, 2).await;
    assert!(
        matches!(outcome, JobOutcome::DeadLettered { .. }),
        "{outcome:?}"
    );
    let r = reason(&outcome);
    assert!(r.contains("redirect") && r.contains("302"), "{r}");
    assert!(r.contains("endpoints.manage"), "the fix is named: {r}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a redirect was followed"
    );
    assert_eq!(rig.dead.dead_letters().len(), 1);
    let summary = rig.emu.request_summary();
    assert_eq!(summary.by_endpoint_status.get("token 307"), Some(&1));
    assert_eq!(summary.by_endpoint_status.get("blob 302"), Some(&1));
    // Redriven: written whole.
    rig.assert_written(&job, b).await;
}

// ---------------------------------------------------------------------------------------------
// Tokens and credentials

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_answering_garbage_is_a_decode_error_that_is_retried() {
    let faults = [
        fault("garbage", "token", ""),
        fault(
            "garbage",
            "token",
            r#"body = '{"token_type":"Bearer","expires_in":3599}'"#,
        ),
        fault("garbage", "token", r#"body = '{"access_token": 42}'"#),
        fault("garbage", "token", r#"body = ''"#),
    ]
    .concat();
    let rig = Rig::start(&faults, settings()).await;
    let b = &rig.blobs()[0];
    let job = rig.job(b);
    let expected = ["not JSON", "access_token", "access_token", "not JSON"];
    for (i, what) in expected.iter().enumerate() {
        let outcome = rig.handle(&job, 1).await;
        assert!(outcome.is_retry(), "answer {i}: {outcome:?}");
        let r = reason(&outcome);
        assert!(
            r.contains("unusable token response (HTTP 200)") && r.contains(what),
            "answer {i}: {r}"
        );
        assert!(
            r.contains(
                shared::auth::AuthError::Decode {
                    tenant: String::new(),
                    client_id: String::new(),
                    status: 200,
                    message: String::new(),
                }
                .fix()
            ),
            "the fix is named: {r}"
        );
    }
    assert!(rig.dead.dead_letters().is_empty());
    assert_eq!(
        rig.emu.request_summary().by_endpoint_status.get("blob 200"),
        None,
        "no blob is fetched without a token"
    );
    rig.assert_written(&job, b).await;
}

fn secret_tenant(value: &'static str) -> impl FnOnce(&mut Tenant, &Path) {
    move |t, dir| {
        let file = dir.join("secret.txt");
        std::fs::write(&file, value).unwrap();
        t.client_id = APP_SECRET_A.to_owned();
        t.credential = CredentialRef::Secret {
            secret: SecretRef::File(file.display().to_string()),
        };
    }
}

fn pem_tenant(pem: String) -> impl FnOnce(&mut Tenant, &Path) {
    move |t, dir| {
        let file = dir.join("other.pem");
        std::fs::write(&file, pem).unwrap();
        t.credential = CredentialRef::Certificate {
            pem: SecretRef::File(file.display().to_string()),
            alg: shared::model::AssertionAlg::RS256,
        };
    }
}

/// Each receive is retried with the same reason, then the job is dead-lettered with it.
async fn assert_retried_then_dead_lettered(rig: &Rig, job: &FetchJob, needles: &[&str]) -> String {
    let mut last = String::new();
    for attempt in 1..=MAX_RECEIVES {
        let outcome = rig.handle(job, attempt).await;
        if attempt < MAX_RECEIVES {
            assert!(outcome.is_retry(), "attempt {attempt}: {outcome:?}");
        } else {
            assert!(
                matches!(outcome, JobOutcome::DeadLettered { .. }),
                "{outcome:?}"
            );
        }
        last = reason(&outcome).to_owned();
        for n in needles {
            assert!(
                last.contains(n),
                "attempt {attempt}: `{n}` missing from {last}"
            );
        }
    }
    assert_eq!(rig.dead.dead_letters(), vec![(job.to_json(), last.clone())]);
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_expired_secrets_name_their_fix_and_the_job_is_kept() {
    for (value, needles) in [
        (
            EXPIRED_SECRET_A,
            &[
                "AADSTS7000222",
                "the client secret has expired: create a new one",
            ][..],
        ),
        (
            "a-secret-id-not-its-value",
            &["AADSTS7000215", "store the secret's VALUE"][..],
        ),
    ] {
        let rig = Rig::with_tenant("", settings(), secret_tenant(value)).await;
        let job = rig.job(&rig.blobs()[0]);
        let r = assert_retried_then_dead_lettered(&rig, &job, needles).await;
        assert!(!r.contains(value), "the secret leaked: {r}");
        assert_eq!(
            rig.emu.request_summary().by_endpoint_status.get("blob 200"),
            None
        );
    }
    // The right secret collects.
    let rig = Rig::with_tenant("", settings(), secret_tenant(SECRET_A)).await;
    let b = &rig.blobs()[0];
    rig.assert_written(&rig.job(b), b).await;
}

struct Pair {
    key_pem: String,
    cert_pem: String,
}

fn generate(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Pair {
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["collector.example".into()]).unwrap();
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&key).expect("cert");
    Pair {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_certificate_pems_name_their_fix_and_the_job_is_kept() {
    let other = generate((2024, 1, 1), (2049, 1, 1));
    let key_a = cert()
        .pem
        .split("-----BEGIN CERTIFICATE-----")
        .next()
        .unwrap()
        .to_owned();
    let encrypted = format!(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n{}",
        cert().cert_pem
    );
    for (pem, needle) in [
        (
            format!("{key_a}{}", other.cert_pem),
            "does not belong to the certificate",
        ),
        (encrypted, "encrypted"),
        (cert().cert_pem.clone(), "no private key in the PEM"),
        ("not a pem at all".to_owned(), "PRIVATE KEY"),
    ] {
        let rig = Rig::with_tenant("", settings(), pem_tenant(pem)).await;
        let job = rig.job(&rig.blobs()[0]);
        let r = assert_retried_then_dead_lettered(&rig, &job, &[needle]).await;
        assert!(!r.contains("MII"), "key material in the reason: {r}");
        assert_eq!(
            rig.emu.request_summary().total,
            0,
            "nothing is sent with an unusable credential"
        );
    }
}

/// Entra's answer to an assertion signed with an expired certificate (the emulator does not
/// model certificate expiry, so a small server plays the token endpoint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_with_the_renew_fix() {
    let expired = generate((2020, 1, 1), (2021, 1, 1));
    let pem = format!("{}{}", expired.key_pem, expired.cert_pem);
    let loaded =
        shared::auth::Credential::certificate_from_pem(&pem, shared::model::AssertionAlg::RS256)
            .expect("an expired certificate still loads (Entra decides)");
    let c = loaded.certificate().unwrap();
    assert!(c.not_after().is_some_and(|t| t < chrono::Utc::now()));
    let body = json!({
        "error": "invalid_client",
        "error_description": format!("AADSTS700027: Client assertion failed signature validation. [Reason - The key used is expired., Thumbprint of key used by client: '{}', Found key 'Start=01/01/2020 00:00:00, End=01/01/2021 00:00:00'] Trace ID: 1 Correlation ID: 2 Timestamp: 2026-11-23 07:00:00Z", c.thumbprint_hex()),
        "error_codes": [700027],
    })
    .to_string();
    let (login, hits) = fixed_server(http_response("401 Unauthorized", &body)).await;
    let rig = Rig::with_tenant("", settings(), move |t, dir| {
        pem_tenant(pem)(t, dir);
        t.endpoints.login = login;
    })
    .await;
    let job = rig.job(&rig.blobs()[0]);
    let r = assert_retried_then_dead_lettered(
        &rig,
        &job,
        &["AADSTS700027", shared::auth::EXPIRED_CERTIFICATE_FIX],
    )
    .await;
    assert!(r.contains(c.thumbprint_hex()), "the thumbprint sent: {r}");
    assert_eq!(hits.load(Ordering::SeqCst), MAX_RECEIVES);
    assert_eq!(rig.emu.request_summary().total, 0);
}

fn http_response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A server on 127.0.0.1 answering every request with `response`; counts requests.
async fn fixed_server(response: String) -> (String, Arc<AtomicU32>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let response = response.clone();
            tokio::spawn(async move {
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

// ---------------------------------------------------------------------------------------------
// The fetcher binary: malformed and oversized SQS messages

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_sqs_messages_are_dead_lettered_by_the_fetcher_binary() {
    let stack = Stack::create(20).await;
    let job = |patch: &dyn Fn(&mut Value)| {
        let mut j = json!({"v":1,"tenant_id":TENANT_CERT,"content_type":"Audit.Exchange",
            "content_id":"a$b$audit_exchange$Audit_Exchange$na0001",
            "content_uri":format!("https://manage.office.com/api/v1.0/{TENANT_CERT}/activity/feed/audit/a$b$c"),
            "content_created":"2026-11-23T07:25:12.345Z",
            "content_expiration":"2026-11-30T07:25:12.345Z","listed_at":"2026-11-23T08:00:03Z"});
        patch(&mut j);
        j.to_string()
    };
    let oversized = job(&|j| j["content_id"] = json!("x".repeat(64 * 1024)));
    let nested = format!("{}{}", "[".repeat(3000), "]".repeat(3000));
    let bodies: Vec<(String, &str)> = vec![
        ("not json".into(), "malformed"),
        ("[]".into(), "malformed"),
        ("null".into(), "malformed"),
        ("{}".into(), "malformed"),
        (nested, "malformed"),
        (oversized, "16384"),
        (job(&|j| j["v"] = json!(2)), "version 2"),
        (job(&|j| j["tenant_id"] = json!("contoso")), "GUID"),
        (job(&|j| j["content_id"] = json!("  ")), "empty contentId"),
        (
            job(&|j| j["content_type"] = json!("Audit.Nope")),
            "malformed",
        ),
        (
            job(&|j| j["content_created"] = json!("yesterday")),
            "malformed",
        ),
        (job(&|j| j["evil"] = json!(true)), "malformed"),
        (job(&|j| j["content_uri"] = json!(42)), "malformed"),
        ("{\"v\":1,\"tenant_id\":\u{1F600}}".into(), "malformed"),
        (
            job(&|j| {
                j.as_object_mut().unwrap().remove("content_uri");
            }),
            "malformed",
        ),
    ];
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, (body, _))| {
            json!({"messageId": format!("m{i}"), "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "eventSource": "aws:sqs", "awsRegion": "us-east-1"})
        })
        .collect();
    let mut fetcher = LambdaProcess::spawn("fetcher", &stack.function_env(&[])).await;
    assert!(fetcher.init_error().is_none(), "{}", fetcher.logs());
    // Batches of up to 10, as the event source mapping sends.
    for chunk in records.chunks(10) {
        let response = fetcher
            .invoke(json!({ "Records": chunk }), Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("fetcher failed: {e:?}\n{}", fetcher.logs()));
        assert_eq!(
            response["batchItemFailures"],
            json!([]),
            "a malformed message is final, not retried"
        );
    }
    let dead = stack.dead_letters().await;
    assert_eq!(dead.len(), bodies.len(), "{dead:?}");
    for (body, needle) in &bodies {
        let (_, reason) = dead
            .iter()
            .find(|(b, _)| b == body)
            .unwrap_or_else(|| panic!("not dead-lettered: {}", &body[..body.len().min(80)]));
        assert!(
            reason.contains(needle),
            "`{needle}` missing from the reason {reason}"
        );
    }
    // An event that is not an SQS batch is an error of that invocation, not a crash.
    match fetcher
        .invoke(json!({"Records": "nope"}), Duration::from_secs(30))
        .await
    {
        Err(InvokeError::Function(_)) => {}
        other => panic!(
            "expected a function error, got {other:?}\n{}",
            fetcher.logs()
        ),
    }
    let response = fetcher
        .invoke(json!({"Records": []}), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("the fetcher died: {e:?}\n{}", fetcher.logs()));
    assert_eq!(response["batchItemFailures"], json!([]));
    assert!(!fetcher.logs().contains("panicked"), "{}", fetcher.logs());
}

// ---------------------------------------------------------------------------------------------
// Invalid config files

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_files_exit_2_with_a_message_naming_the_setting() {
    let dir = std::env::temp_dir().join(format!("o365-badcfg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret.txt"), "s").unwrap();
    let storage = "[storage]\noutput = \"out\"\nstate = \"state.redb\"\n";
    let tenant = |extra: &str| {
        format!(
            "{storage}\n[[tenant]]\nid = \"{TENANT_CERT}\"\nclient_id = \"{APP_CERT}\"\nclient_secret_file = \"secret.txt\"\n{extra}"
        )
    };
    let s = |t: String| Some(t.into_bytes());
    let cases: Vec<(&str, Option<Vec<u8>>, Vec<&str>)> = vec![
        ("missing.toml", None, vec!["missing.toml", "cannot read"]),
        (
            "broken.toml",
            s("[storage\noutput = ".into()),
            vec!["config file"],
        ),
        (
            "unknown-key.toml",
            s(format!("{storage}[collection]\nfetch_workerz = 3\n")),
            vec!["fetch_workerz"],
        ),
        (
            "unknown-tenant-key.toml",
            s(tenant("client_secrte = \"x\"")),
            vec!["client_secrte"],
        ),
        (
            "bad-guid.toml",
            s(tenant("").replace(TENANT_CERT, "contoso.onmicrosoft.com")),
            vec!["contoso.onmicrosoft.com", "GUID"],
        ),
        (
            "bad-client-id.toml",
            s(tenant("").replace(APP_CERT, "my-app")),
            vec!["client_id", "my-app"],
        ),
        (
            "two-credentials.toml",
            s(tenant("certificate_file = \"a.pem\"")),
            vec!["exactly one"],
        ),
        (
            "bad-lookback.toml",
            s(format!(
                "{storage}[collection]\nfirst_run_lookback_hours = 500\n"
            )),
            vec!["collection.first_run_lookback_hours"],
        ),
        (
            "bad-type.toml",
            s(format!("{storage}[collection]\nfetch_workers = \"many\"\n")),
            vec!["fetch_workers"],
        ),
        (
            "custom-without-url.toml",
            s(tenant("cloud = \"custom\"")),
            vec!["manage_url"],
        ),
        (
            "bad-content-type.toml",
            s(tenant("content_types = [\"Audit.Nope\"]")),
            vec!["Audit.Nope", "DLP.All"],
        ),
        ("no-tenant.toml", s(storage.into()), vec!["[[tenant]]"]),
        (
            "not-utf8.toml",
            Some(b"[storage]\noutput = \"\xff\"\n".to_vec()),
            vec!["not-utf8.toml", "UTF-8"],
        ),
    ];
    let bin = function_binary("o365-collector");
    for (name, text, needles) in cases {
        let path = dir.join(name);
        if let Some(t) = &text {
            std::fs::write(&path, t).unwrap();
        }
        let bin = bin.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin)
                .args(["run", "--once", "--config"])
                .arg(&path)
                .env("O365_LOG", "warn")
                .output()
                .expect("run the CLI")
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{name}: `{n}` missing from {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(!dir.join("state.redb").exists(), "{name}: state was opened");
    }
    let _ = std::fs::remove_dir_all(dir);
}
