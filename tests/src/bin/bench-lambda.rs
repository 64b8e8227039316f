//! `bench-lambda`: the Lambda-shaped path measured end to end — the function binaries (the
//! release `bootstrap`s of `scripts/lambda-build.sh` when present) driven through the Runtime API
//! emulator, on moto behind a counting proxy, against the emulator of Microsoft's endpoints.
//!
//! Prints per function: init time, invocations, duration per invocation, peak RSS; AWS requests
//! per service and operation, per blob and per 1,000 records. Then the life of a blob: after the
//! collection, `--life-ticks` lister ticks five minutes apart (the emulator's clock moved before
//! each; new content keeps arriving and the fetcher drains the queue after each tick), which at
//! the default 74 (a little over 6 h) include the reconciliation pass falling due; a deployment
//! with an idle tenant ticks alongside. The proxy meters DynamoDB capacity (item sizes from the bodies it
//! sees), so the report gives requests and WRU/RRU (a) per blob over its life, (b) per record for
//! the cross-blob claims and (c) per idle tenant per tick. These are the inputs of docs/cost.md.
//!
//! ```sh
//! bash scripts/lambda-build.sh                     # release bootstraps (optional: else debug)
//! cargo run -p integration-tests --bin bench-lambda -- --records-per-hour 400 --records-per-blob 100
//! ```
//! Uses `MOTO_ENDPOINT` when set, else starts `.venv/bin/moto_server` itself.
// A benchmark harness: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use integration_tests::proxy::{Capacity, CountingProxy};
use integration_tests::runtime::LambdaProcess;
use integration_tests::stack::Stack;
use serde_json::Value;
use shared::store::StateStore;

const TENANT: &str = "6b1f3c2e-8d4a-4f7b-9c1e-2a3b4c5d6e7f";
const IDLE_TENANT: &str = "7c2a4d3f-9e5b-4a8c-8d2f-3b4c5d6e7f80";
const APP: &str = "0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b";
const SECRET: &str = "bench-secret-value";
/// Minutes between two scheduled lister ticks (template.yaml).
const TICK_MINUTES: i64 = 5;
/// `RECONCILE_EVERY_MINUTES` default: a reconciliation pass completes every 6 h.
const RECONCILE_MINUTES: i64 = 360;
/// `RELIST_BAND_MINUTES` default.
const BAND_MINUTES: i64 = 150;
/// `FIRST_RUN_LOOKBACK_HOURS` default: the first listing (and so every pass until 7 days have
/// passed) starts this far back.
const FIRST_RUN_LOOKBACK_HOURS: i64 = 24;
/// Reconciliation windows (1 h) of a pass over the whole 7 days: from now − 7 d + 5 min to the
/// cursor less the band.
const FULL_PASS_WINDOWS: f64 = 166.0;

struct Args {
    records_per_hour: u32,
    records_per_blob: u32,
    hours: i64,
    life_ticks: u32,
    cross_blob_dedupe: bool,
    metrics_detail: String,
    throttle_rate: f64,
    meter: bool,
}

fn args() -> Args {
    let mut a = Args {
        records_per_hour: 400,
        records_per_blob: 100,
        hours: 24,
        life_ticks: 74,
        cross_blob_dedupe: true,
        metrics_detail: "tenant".into(),
        throttle_rate: 0.0,
        meter: true,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        let num = |s: &str| -> u64 {
            s.parse()
                .unwrap_or_else(|_| panic!("{} needs a whole number, got `{s}`", argv[i]))
        };
        match argv[i].as_str() {
            "--records-per-hour" => a.records_per_hour = num(&v) as u32,
            "--records-per-blob" => a.records_per_blob = num(&v) as u32,
            "--hours" => a.hours = num(&v) as i64,
            "--life-ticks" => a.life_ticks = num(&v) as u32,
            "--metrics-detail" => a.metrics_detail = v.clone(),
            "--throttle-rate" => {
                a.throttle_rate = v
                    .parse()
                    .unwrap_or_else(|_| panic!("--throttle-rate needs a number, got `{v}`"))
            }
            "--no-cross-blob-dedupe" => {
                a.cross_blob_dedupe = false;
                i += 1;
                continue;
            }
            "--no-meter" => {
                a.meter = false;
                i += 1;
                continue;
            }
            "-h" | "--help" => {
                println!(
                    "bench-lambda [--records-per-hour N (per content type, 400)] [--records-per-blob N (100)] [--hours H (24)] [--life-ticks N (74: 6 h of 5-min ticks and a little more; the reconciliation pass falls due after 6 h)] [--no-cross-blob-dedupe] [--metrics-detail feed|tenant|deployment] [--throttle-rate R (AF429 on listings and blobs, 0)] [--no-meter (no DynamoDB capacity estimates: the proxy's uncounted reads of each written item slow moto, so durations are measured without them)]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other} (see --help)"),
        }
        i += 2;
    }
    a
}

/// The release bootstrap of `name` if built, else the release binary, else the debug one.
fn binary(name: &str) -> (PathBuf, &'static str) {
    match integration_tests::runtime::preferred_binary(name) {
        Some((p, "debug")) => (p, "DEBUG build: durations not representative"),
        Some(found) => found,
        None => panic!(
            "no binary for {name}: run `bash scripts/lambda-build.sh` or `cargo build --bins`"
        ),
    }
}

fn scenario(a: &Args) -> o365_emulator::Scenario {
    let rate = a.records_per_hour;
    let text = format!(
        r#"
seed = 5
page_size = 100

[[tenant]]
id = "{TENANT}"
users = 50
[tenant.data]
hours_back = {hours}
hours_ahead = {ahead}
records_per_blob = {blob}
records_per_hour = {{ "Audit.AzureActiveDirectory" = {rate}, "Audit.Exchange" = {rate}, "Audit.SharePoint" = {rate}, "Audit.General" = {rate}, "DLP.All" = {dlp} }}

[[tenant]]
id = "{IDLE_TENANT}"
domain = "idle.onmicrosoft.com"
users = 5
[tenant.data]
records_per_hour = {{}}

[[app]]
client_id = "{APP}"
home_tenant = "{TENANT}"
multi_tenant = true
consented_tenants = ["{IDLE_TENANT}"]
secrets = [{{ value = "{SECRET}" }}]
manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]
graph_roles = ["User.Read.All"]
{throttle}
"#,
        throttle = if a.throttle_rate > 0.0 {
            format!(
                "[[fault]]\nkind = \"af429\"\nendpoints = [\"content\", \"blob\"]\nrate = {}\n",
                a.throttle_rate
            )
        } else {
            String::new()
        },
        hours = a.hours,
        ahead = i64::from(a.life_ticks) * TICK_MINUTES / 60 + 2,
        blob = a.records_per_blob,
        dlp = (rate / 10).max(1),
    );
    o365_emulator::Scenario::from_toml(&text).expect("scenario")
}

fn tenant(id: &str, base: &str, secret_file: &Path) -> shared::model::Tenant {
    let spec: shared::config::TenantSpec = toml::from_str(&format!(
        r#"
id = "{id}"
cloud = "custom"
login_url = "{base}"
manage_url = "{base}"
graph_url = "{base}"
client_id = "{APP}"
client_secret_file = "{}"
"#,
        secret_file.display()
    ))
    .expect("tenant spec");
    spec.into_tenant(None).expect("tenant")
}

#[derive(Default)]
struct Figures {
    kind: &'static str,
    init: Option<Duration>,
    durations: Vec<Duration>,
    peak_rss_kib: Option<u64>,
    requests: BTreeMap<String, u64>,
}

impl Figures {
    fn row(&self, name: &str) {
        let mut d = self.durations.clone();
        d.sort();
        let ms = |x: Duration| x.as_secs_f64() * 1000.0;
        let total: Duration = d.iter().sum();
        let mean = if d.is_empty() {
            0.0
        } else {
            ms(total) / d.len() as f64
        };
        let p95 = d
            .get(((d.len() as f64 * 0.95).ceil() as usize).saturating_sub(1))
            .copied()
            .map(ms)
            .unwrap_or(0.0);
        println!(
            "| {name:<14} | {:>8.1} | {:>11} | {:>9.1} | {:>9.1} | {:>10.1} | {:>9.1} | {} |",
            self.init.map(ms).unwrap_or(f64::NAN),
            d.len(),
            mean,
            p95,
            ms(total),
            self.peak_rss_kib
                .map(|k| k as f64 / 1024.0)
                .unwrap_or(f64::NAN),
            self.kind
        );
    }
}

async fn spawn(name: &str, env: &[(String, String)]) -> (LambdaProcess, Figures) {
    let (path, kind) = binary(name);
    let p = LambdaProcess::spawn_binary(name, &path, env).await;
    assert!(p.init_error().is_none(), "{name} init failed: {}", p.logs());
    let f = Figures {
        kind,
        init: p.init_time,
        ..Figures::default()
    };
    (p, f)
}

async fn invoke(p: &mut LambdaProcess, f: &mut Figures, event: Value) -> Value {
    let t = Instant::now();
    let r = p
        .invoke(event, Duration::from_secs(300))
        .await
        .unwrap_or_else(|e| panic!("invocation failed: {e:?}\n{}", p.logs()));
    f.durations.push(t.elapsed());
    r
}

fn per(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// AWS requests and estimated DynamoDB capacity of one phase, as the proxy counted them.
#[derive(Debug, Clone, Default)]
struct Phase {
    requests: BTreeMap<String, u64>,
    capacity: BTreeMap<String, Capacity>,
}

impl Phase {
    /// What the proxy counted since the last take.
    fn take(proxy: &CountingProxy) -> Phase {
        Phase {
            requests: proxy.take(),
            capacity: proxy.take_capacity(),
        }
    }

    fn add(&mut self, other: &Phase) {
        for (k, n) in &other.requests {
            *self.requests.entry(k.clone()).or_default() += n;
        }
        for (k, c) in &other.capacity {
            self.capacity.entry(k.clone()).or_default().add(c);
        }
    }

    /// Non-DynamoDB requests (DynamoDB ones are in `capacity`, by item kind).
    fn other_requests(&self) -> impl Iterator<Item = (&String, &u64)> {
        self.requests
            .iter()
            .filter(|(k, _)| !k.starts_with("dynamodb."))
    }
}

/// Requests and capacity lines that are the lister's fixed cost per tick (cursors, the tenant
/// list, the sweep's index Query, the dead-letter receive), not a blob's.
fn is_fixed(key: &str) -> bool {
    key.ends_with(" cursor")
        || key.ends_with(" tenant-list")
        || key.ends_with(" tenant")
        || key.contains(" index-")
        || key == "sqs.ReceiveMessage"
}

/// Jobs a lister invocation's report says it enqueued (new, re-driven and swept).
fn jobs_of(report: &Value) -> u64 {
    let feeds: u64 = report["feeds"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["enqueued"].as_u64().unwrap_or(0) + f["redriven"].as_u64().unwrap_or(0))
        .sum();
    let swept: u64 = report["sweeps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["redriven"].as_u64())
        .sum();
    feeds + swept
}

/// Reconciliation windows a lister invocation listed.
fn reconciled_of(report: &Value) -> u64 {
    report["feeds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["reconciled_windows"].as_u64())
        .sum()
}

/// (feeds whose cursor the invocation saved later than in `before`, feeds); updates `before`.
fn moved_feeds(report: &Value, before: &mut BTreeMap<String, String>) -> (usize, usize) {
    let mut moved = 0;
    let mut feeds = 0;
    for f in report["feeds"].as_array().into_iter().flatten() {
        feeds += 1;
        let key = format!(
            "{}/{}",
            f["tenant"].as_str().unwrap_or(""),
            f["content_type"].as_str().unwrap_or("")
        );
        if let Some(c) = f["cursor"].as_str() {
            let t = chrono::DateTime::parse_from_rfc3339(c).ok();
            let prev = before
                .get(&key)
                .and_then(|p| chrono::DateTime::parse_from_rfc3339(p).ok());
            if prev.is_none_or(|p| t.is_some_and(|t| t > p)) {
                moved += 1;
            }
            before.insert(key, c.to_owned());
        }
    }
    (moved, feeds)
}

/// Feeds the fetcher what the lister enqueued, as the SQS event source mapping would (batches
/// of up to 10), until `expected` messages are handled (or the queue stays empty twice).
/// Returns (batches, messages).
async fn drain(
    stack: &Stack,
    fetcher: &mut LambdaProcess,
    f: &mut Figures,
    expected: Option<u64>,
) -> (u64, u64) {
    let (mut batches, mut messages, mut empty) = (0u64, 0u64, 0);
    while empty < 2 && expected.is_none_or(|e| messages < e) {
        let (event, handles) = stack
            .receive_event(&stack.queue_url, Duration::from_secs(1))
            .await;
        if handles.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        batches += 1;
        messages += handles.len() as u64;
        let response = invoke(fetcher, f, event).await;
        stack.settle(&stack.queue_url, &handles, &response).await;
    }
    (batches, messages)
}

/// Requests and units as fractions (per blob, per tick).
#[derive(Debug, Clone, Copy, Default)]
struct Units {
    requests: f64,
    /// Table and index write units.
    wru: f64,
    rru: f64,
    bytes: f64,
}

impl Units {
    fn of(c: &Capacity) -> Units {
        Units {
            requests: c.requests as f64,
            wru: c.wru + c.index_wru,
            rru: c.rru,
            bytes: c.item_bytes as f64,
        }
    }
    fn scaled(self, by: f64) -> Units {
        Units {
            requests: self.requests * by,
            wru: self.wru * by,
            rru: self.rru * by,
            bytes: self.bytes * by,
        }
    }
    fn plus(self, o: Units) -> Units {
        Units {
            requests: self.requests + o.requests,
            wru: self.wru + o.wru,
            rru: self.rru + o.rru,
            bytes: self.bytes + o.bytes,
        }
    }
    /// `self − o`, never below zero.
    fn minus(self, o: Units) -> Units {
        Units {
            requests: (self.requests - o.requests).max(0.0),
            wru: (self.wru - o.wru).max(0.0),
            rru: (self.rru - o.rru).max(0.0),
            bytes: (self.bytes - o.bytes).max(0.0),
        }
    }
    fn mean_bytes(&self) -> f64 {
        if self.requests > 0.0 {
            self.bytes / self.requests
        } else {
            0.0
        }
    }
}

/// One row of the per-blob table.
fn unit_row(label: &str, key: &str, u: Units) {
    println!(
        "| {label} | {key} | {:.3} | {:.3} | {:.3} | {:.0} |",
        u.requests,
        u.wru,
        u.rru,
        u.mean_bytes()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let (moto_url, moto_server) = integration_tests::moto::MotoServer::from_env_or_start();
    let proxy = if a.meter {
        CountingProxy::start_metering(&moto_url).await
    } else {
        CountingProxy::start(&moto_url).await
    };
    let stack = Stack::create_at(&moto_url, 5).await;
    let idle_stack = Stack::create_at(&moto_url, 5).await;
    let emu = o365_emulator::Emulator::start(scenario(&a))
        .await
        .expect("emulator");
    let dir = std::env::temp_dir().join(format!("o365-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).expect("secret file");
    stack
        .store()
        .put_tenant(&tenant(TENANT, &emu.base_url(), &secret))
        .await
        .expect("tenant");
    idle_stack
        .store()
        .put_tenant(&tenant(IDLE_TENANT, &emu.base_url(), &secret))
        .await
        .expect("idle tenant");
    let dedupe = if a.cross_blob_dedupe { "true" } else { "false" };
    let overrides = [
        ("AWS_ENDPOINT_URL", proxy.url()),
        // As template.yaml: the log bytes per tick and per blob are part of the cost.
        ("RUST_LOG", "info"),
        ("CROSS_BLOB_DEDUPE", dedupe),
        ("METRICS_DETAIL", a.metrics_detail.as_str()),
    ];
    let env = stack.function_env(&overrides);
    let scheduled: Value =
        serde_json::from_str(include_str!("../../../events/lister/scheduled.json")).expect("event");
    let upkeep: Value =
        serde_json::from_str(include_str!("../../../events/subscriptions/scheduled.json"))
            .expect("event");
    let started = Instant::now();

    // Subscriptions first (a new deployment), then the backfill listing.
    let (mut subs, mut subs_f) = spawn("subscriptions", &env).await;
    Phase::take(&proxy);
    invoke(&mut subs, &mut subs_f, upkeep.clone()).await;
    subs_f.peak_rss_kib = subs.peak_rss_kib();
    let subs_p = Phase::take(&proxy);
    subs_f.requests = subs_p.requests.clone();

    let (mut lister, mut lister_f) = spawn("lister", &env).await;
    Phase::take(&proxy);
    let t0 = emu.now();
    let report = invoke(&mut lister, &mut lister_f, scheduled.clone()).await;
    let jobs = jobs_of(&report);
    let mut cursors = BTreeMap::new();
    moved_feeds(&report, &mut cursors);
    let backfill_p = Phase::take(&proxy);
    lister_f.requests = backfill_p.requests.clone();

    // The fetcher, fed as the SQS event source mapping would (batches of up to 10).
    let (mut fetcher, mut fetcher_f) = spawn("fetcher", &env).await;
    Phase::take(&proxy);
    let (batches, messages) = drain(&stack, &mut fetcher, &mut fetcher_f, None).await;
    fetcher_f.peak_rss_kib = fetcher.peak_rss_kib();
    let fetch_p = Phase::take(&proxy);
    fetcher_f.requests = fetch_p.requests.clone();
    let collect_secs = started.elapsed().as_secs_f64();
    let collect_cpu = [&subs, &lister, &fetcher]
        .iter()
        .filter_map(|p| p.cpu_seconds())
        .sum::<f64>();
    let microsoft = emu.request_summary();
    let truth = emu.truth();
    let blobs = truth
        .iter()
        .filter(|b| b.available && b.tenant == TENANT)
        .count() as u64;
    let records: u64 = truth
        .iter()
        .filter(|b| b.available && b.tenant == TENANT)
        .map(|b| b.record_ids.len() as u64)
        .sum();

    // The idle deployment's first tick (its backfill of nothing and its first pass).
    let idle_env = idle_stack.function_env(&overrides);
    let (mut idle_lister, mut idle_first_f) = spawn("lister", &idle_env).await;
    Phase::take(&proxy);
    let idle_first = invoke(&mut idle_lister, &mut idle_first_f, scheduled.clone()).await;
    let idle_first_p = Phase::take(&proxy);
    let mut idle_cursors = BTreeMap::new();
    moved_feeds(&idle_first, &mut idle_cursors);

    // The life of blobs: ticks five minutes apart (new content keeps arriving); the fetcher
    // drains after each; the idle deployment ticks too. The pass falls due RECONCILE_MINUTES
    // after the first one started (in the backfill tick).
    let mut tick_f = Figures {
        kind: lister_f.kind,
        ..Figures::default()
    };
    let mut pass_f = Figures {
        kind: lister_f.kind,
        ..Figures::default()
    };
    let mut life_fetch_f = Figures {
        kind: fetcher_f.kind,
        ..Figures::default()
    };
    let mut idle_f = Figures {
        kind: lister_f.kind,
        ..Figures::default()
    };
    let mut idle_pass_f = Figures {
        kind: lister_f.kind,
        ..Figures::default()
    };
    let (mut steady_p, mut pass_p, mut life_fetch_p) =
        (Phase::default(), Phase::default(), Phase::default());
    let (mut idle_steady_p, mut idle_pass_p) = (Phase::default(), Phase::default());
    let (mut steady_ticks, mut pass_ticks, mut idle_steady_ticks) = (0u64, 0u64, 0u64);
    let (mut steady_jobs, mut life_jobs, mut pass_windows, mut idle_pass_windows) =
        (0u64, 0u64, 0u64, 0u64);
    let (mut life_batches, mut life_messages) = (0u64, 0u64);
    let mut pass_at = None;
    let mut not_moved = 0usize;
    let life_started = Instant::now();
    let (lister_log0, idle_log0) = (lister.logs().len(), idle_lister.logs().len());
    for _ in 0..a.life_ticks {
        emu.advance_clock(chrono::Duration::minutes(TICK_MINUTES));
        let mut f = Figures::default();
        let report = invoke(&mut lister, &mut f, scheduled.clone()).await;
        let p = Phase::take(&proxy);
        let (moved, feeds) = moved_feeds(&report, &mut cursors);
        not_moved += feeds - moved;
        let j = jobs_of(&report);
        life_jobs += j;
        let recon = reconciled_of(&report);
        if recon > 0 {
            pass_p.add(&p);
            pass_windows += recon;
            pass_ticks += 1;
            pass_at = Some(emu.now());
            pass_f.durations.extend(f.durations);
        } else {
            steady_p.add(&p);
            steady_ticks += 1;
            steady_jobs += j;
            tick_f.durations.extend(f.durations);
        }
        let (b, m) = drain(&stack, &mut fetcher, &mut life_fetch_f, Some(j)).await;
        life_batches += b;
        life_messages += m;
        life_fetch_p.add(&Phase::take(&proxy));
        let mut g = Figures::default();
        let report = invoke(&mut idle_lister, &mut g, scheduled.clone()).await;
        let (moved, feeds) = moved_feeds(&report, &mut idle_cursors);
        not_moved += feeds - moved;
        let recon = reconciled_of(&report);
        let p = Phase::take(&proxy);
        if recon > 0 {
            idle_pass_p.add(&p);
            idle_pass_windows += recon;
            idle_pass_f.durations.extend(g.durations);
        } else {
            idle_steady_p.add(&p);
            idle_steady_ticks += 1;
            idle_f.durations.extend(g.durations);
        }
    }
    // Whatever is still on the queue (a job made visible again) is fetched too.
    let (b, m) = drain(&stack, &mut fetcher, &mut life_fetch_f, None).await;
    life_batches += b;
    life_messages += m;
    life_fetch_p.add(&Phase::take(&proxy));
    let life_secs = life_started.elapsed().as_secs_f64();
    lister_f.peak_rss_kib = lister.peak_rss_kib();
    tick_f.peak_rss_kib = lister_f.peak_rss_kib;
    idle_f.peak_rss_kib = idle_lister.peak_rss_kib();
    tick_f.requests = steady_p.requests.clone();
    idle_f.requests = idle_steady_p.requests.clone();

    // Directory sync, when the function exists.
    let (users, users_proc) = if binary_exists("users-sync") {
        let (mut us, mut us_f) = spawn("users-sync", &env).await;
        Phase::take(&proxy);
        invoke(&mut us, &mut us_f, scheduled.clone()).await;
        us_f.peak_rss_kib = us.peak_rss_kib();
        us_f.requests = Phase::take(&proxy).requests;
        (Some(us_f), Some(us))
    } else {
        (None, None)
    };

    let mut active_series = BTreeSet::new();
    for p in [&subs, &lister, &fetcher] {
        emf_series(&p.stdout_lines(), &mut active_series);
    }
    if let Some(u) = &users_proc {
        emf_series(&u.stdout_lines(), &mut active_series);
    }
    let s3_bytes: f64 = fetcher
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["BytesWritten"].as_f64())
        .sum();
    let mut idle_series = BTreeSet::new();
    emf_series(&idle_lister.stdout_lines(), &mut idle_series);

    println!("# bench-lambda");
    println!(
        "tenant: {} h of 5 content types, {} records/h per content type (DLP.All a tenth), {} records/blob; {blobs} blobs, {records} records; {jobs} jobs enqueued; {batches} fetcher batches ({messages} messages); CROSS_BLOB_DEDUPE={dedupe}; collected in {collect_secs:.1} s",
        a.hours, a.records_per_hour, a.records_per_blob
    );
    let throttled: u64 = microsoft
        .by_endpoint_status
        .iter()
        .filter(|(k, _)| k.ends_with(" 403") || k.ends_with(" 429"))
        .map(|(_, n)| *n)
        .sum();
    println!(
        "collection (subscriptions + backfill listing + fetch): {:.1} blobs/s, {:.0} records/s, {collect_cpu:.2} CPU s in the function processes; Microsoft API calls {} ({:.2} per blob, {throttled} throttled answers), AF429 rate {}",
        per(blobs, 1) / collect_secs,
        per(records, 1) / collect_secs,
        microsoft.total,
        per(microsoft.total, blobs),
        a.throttle_rate
    );
    println!(
        "S3 bytes written (gzip: raw archive + OCSF events): {:.0} per record, {:.0} per blob",
        s3_bytes / per(records, 1).max(1.0),
        s3_bytes / per(blobs, 1).max(1.0)
    );
    if !a.meter {
        println!(
            "--no-meter: no DynamoDB capacity estimates (the tables of units below are empty)"
        );
    } else {
        println!(
            "durations include the metering proxy's uncounted read of each item written (--no-meter for durations without it)"
        );
    }
    println!(
        "life: {} lister ticks 5 min apart ({steady_ticks} steady, {pass_ticks} with the reconciliation pass: {pass_windows} windows), {life_jobs} new blobs enqueued, fetched in {life_batches} batches ({life_messages} messages), an idle deployment ticking alongside; {life_secs:.1} s; feed ticks in which a cursor did not move: {not_moved}",
        a.life_ticks
    );
    println!();
    println!(
        "| function       | init ms  | invocations | mean ms   | p95 ms    | total ms   | peak MiB  | binary |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    subs_f.row("subscriptions");
    lister_f.row("lister backfill");
    fetcher_f.row("fetcher");
    tick_f.row("lister tick");
    pass_f.row("lister pass");
    life_fetch_f.row("fetcher (life)");
    idle_first_f.row("idle 1st tick");
    idle_f.row("lister idle");
    idle_pass_f.row("idle pass");
    if let Some(u) = &users {
        u.row("users-sync");
    }
    for (name, path) in ["lister", "fetcher", "subscriptions", "users-sync"]
        .iter()
        .filter(|n| binary_exists(n))
        .map(|n| (*n, binary(n).0))
    {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "binary {name}: {:.1} MB ({})",
            size as f64 / 1e6,
            path.display()
        );
    }

    println!();
    println!("## AWS requests of the collection (measured at the proxy)");
    println!("| phase | request | count | per blob | per 1,000 records |");
    println!("|---|---|---:|---:|---:|");
    let mut phases: Vec<(&str, &BTreeMap<String, u64>)> = vec![
        ("subscriptions", &subs_f.requests),
        ("lister backfill", &lister_f.requests),
        ("fetcher", &fetcher_f.requests),
    ];
    if let Some(u) = &users {
        phases.push(("users-sync", &u.requests));
    }
    for (phase, reqs) in &phases {
        for (op, n) in *reqs {
            println!(
                "| {phase} | {op} | {n} | {:.3} | {:.2} |",
                per(*n, blobs),
                per(*n * 1000, records)
            );
        }
    }
    println!(
        "| event source mapping | sqs.ReceiveMessage + sqs.DeleteMessageBatch | {} | {:.3} | {:.2} |",
        batches * 2,
        per(batches * 2, blobs),
        per(batches * 2000, records)
    );

    // DynamoDB capacity by phase and item kind.
    println!();
    println!(
        "## DynamoDB by phase and item (estimated on-demand units: WRU 1 per KB of the larger of the item before and after, + GSI writes; RRU 1 per 4 KB consistent, 0.5 eventually consistent)"
    );
    println!(
        "| phase | request item | requests | WRU | GSI WRU | RRU | failed conditions | mean item bytes |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (name, p) in [
        ("subscriptions", &subs_p),
        ("lister backfill", &backfill_p),
        ("fetcher (collection)", &fetch_p),
        ("lister steady ticks", &steady_p),
        ("lister pass tick", &pass_p),
        ("fetcher (life)", &life_fetch_p),
        ("idle first tick", &idle_first_p),
        ("idle steady ticks", &idle_steady_p),
        ("idle pass tick", &idle_pass_p),
    ] {
        for (k, c) in &p.capacity {
            println!(
                "| {name} | {k} | {} | {:.1} | {:.1} | {:.1} | {} | {:.0} |",
                c.requests,
                c.wru,
                c.index_wru,
                c.rru,
                c.failed_conditions,
                Units::of(c).mean_bytes()
            );
        }
        for (k, n) in p.other_requests() {
            println!("| {name} | {k} | {n} | | | | | |");
        }
    }

    if a.meter {
        // (a) Per blob over its life.
        let passes_per_life = 7.0 * 24.0 * 60.0 / RECONCILE_MINUTES as f64;
        let covered = pass_at.map_or(0, |at| {
            let from = t0 - chrono::Duration::hours(FIRST_RUN_LOOKBACK_HOURS);
            let to = at - chrono::Duration::minutes(BAND_MINUTES);
            emu.truth()
                .iter()
                .filter(|b| {
                    b.tenant == TENANT
                        && b.available
                        && b.content_created >= from
                        && b.content_created < to
                })
                .count() as u64
        });
        let steady_jobs_f = (steady_jobs as f64).max(1.0);
        let life_messages_f = (life_messages as f64).max(1.0);
        println!();
        println!(
            "## (a) DynamoDB and SQS per blob over its life (steady state: {steady_jobs} new blobs in {steady_ticks} steady ticks; the pass covered {covered} blobs, and a blob is in {passes_per_life:.0} passes over its 7 days; the fetcher's {life_messages} jobs of the life ticks)"
        );
        println!(
            "| step | request item | requests per blob | WRU per blob | RRU per blob | mean item bytes |"
        );
        println!("|---|---|---:|---:|---:|---:|");
        let mut total = Units::default();
        for (k, c) in steady_p.capacity.iter().filter(|(k, _)| !is_fixed(k)) {
            let u = Units::of(c).scaled(1.0 / steady_jobs_f);
            unit_row("lister: new blobs, live-tail re-listings", k, u);
            total = total.plus(u);
        }
        for (k, n) in steady_p.other_requests().filter(|(k, _)| !is_fixed(k)) {
            println!(
                "| lister: enqueue | {k} | {:.3} | | | |",
                *n as f64 / steady_jobs_f
            );
        }
        // The pass: what its tick did beyond a steady tick, per blob it covered, × passes.
        let steady_n = (steady_ticks as f64).max(1.0);
        if covered > 0 {
            for (k, c) in pass_p.capacity.iter().filter(|(k, _)| !is_fixed(k)) {
                let avg = steady_p
                    .capacity
                    .get(k)
                    .map_or(Units::default(), |s| Units::of(s).scaled(1.0 / steady_n));
                let u = Units::of(c)
                    .minus(avg)
                    .scaled(passes_per_life / covered as f64);
                unit_row(
                    &format!("reconciliation: {passes_per_life:.0} passes"),
                    k,
                    u,
                );
                total = total.plus(u);
            }
        }
        for (k, c) in life_fetch_p
            .capacity
            .iter()
            .filter(|(k, _)| !k.contains("record-claim"))
        {
            let u = Units::of(c).scaled(1.0 / life_messages_f);
            unit_row("fetcher", k, u);
            total = total.plus(u);
        }
        for (k, n) in life_fetch_p
            .other_requests()
            .filter(|(k, _)| k.starts_with("sqs."))
        {
            println!(
                "| fetcher | {k} | {:.3} | | | |",
                *n as f64 / life_messages_f
            );
        }
        println!(
            "| event source mapping | sqs.ReceiveMessage + sqs.DeleteMessageBatch | {:.3} | | | |",
            (life_batches * 2) as f64 / life_messages_f
        );
        println!(
            "| **total DynamoDB, record claims excluded** | | {:.2} | **{:.2}** | **{:.2}** | |",
            total.requests, total.wru, total.rru
        );
        println!(
            "target ≤ 3 WRU + 2 RRU per blob: WRU {} ({:.2}), RRU {} ({:.2})",
            if total.wru <= 3.0 { "met" } else { "NOT met" },
            total.wru,
            if total.rru <= 2.0 { "met" } else { "NOT met" },
            total.rru
        );

        // (b) Per record: the cross-blob claims (collection phase: the largest sample).
        println!();
        println!(
            "## (b) Cross-blob record claims per record (collection: {records} records in {blobs} blobs; CROSS_BLOB_DEDUPE={dedupe})"
        );
        println!(
            "| request item | per record | WRU per record | RRU per record | mean item bytes |"
        );
        println!("|---|---:|---:|---:|---:|");
        let r = (records as f64).max(1.0);
        for (k, c) in fetch_p
            .capacity
            .iter()
            .filter(|(k, _)| k.contains("record-claim"))
        {
            let u = Units::of(c);
            println!(
                "| {k} | {:.3} | {:.3} | {:.3} | {:.0} |",
                u.requests / r,
                u.wru / r,
                u.rru / r,
                u.mean_bytes()
            );
        }

        // (c) Per idle tenant per tick: the idle deployment (one tenant, no audit activity).
        let idle_n = (idle_steady_ticks as f64).max(1.0);
        let ticks_per_pass = (RECONCILE_MINUTES / TICK_MINUTES) as f64;
        let scale_pass = if idle_pass_windows == 0 {
            0.0
        } else {
            FULL_PASS_WINDOWS * 5.0 / idle_pass_windows as f64
        };
        println!();
        println!(
            "## (c) The lister's fixed cost per idle tenant per tick ({idle_steady_ticks} steady ticks of the idle deployment; its pass tick listed {idle_pass_windows} windows, a pass over the whole 7 days lists {FULL_PASS_WINDOWS:.0} per feed × 5 feeds, one every {ticks_per_pass:.0} ticks)"
        );
        println!(
            "| request item | per steady tick | pass, beyond a steady tick, scaled to 7 days | average per tick | WRU per tick | RRU per tick |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        let mut keys: BTreeSet<&String> = idle_steady_p.capacity.keys().collect();
        keys.extend(idle_pass_p.capacity.keys());
        let (mut idle_wru, mut idle_rru) = (0.0, 0.0);
        for k in keys {
            let steady = idle_steady_p
                .capacity
                .get(k)
                .map_or(Units::default(), |c| Units::of(c).scaled(1.0 / idle_n));
            let extra = idle_pass_p
                .capacity
                .get(k)
                .map_or(Units::default(), Units::of)
                .minus(steady)
                .scaled(scale_pass);
            let avg = steady.plus(extra.scaled(1.0 / ticks_per_pass));
            idle_wru += avg.wru;
            idle_rru += avg.rru;
            println!(
                "| {k} | {:.2} | {:.1} | {:.3} | {:.3} | {:.3} |",
                steady.requests, extra.requests, avg.requests, avg.wru, avg.rru
            );
        }
        for (k, n) in idle_steady_p.other_requests() {
            let steady = *n as f64 / idle_n;
            let pass = idle_pass_p.requests.get(k).copied().unwrap_or(0) as f64;
            let extra = (pass - steady).max(0.0) * scale_pass;
            println!(
                "| {k} | {steady:.2} | {extra:.1} | {:.3} | | |",
                steady + extra / ticks_per_pass
            );
        }
        println!("| **total DynamoDB** | | | | **{idle_wru:.3}** | **{idle_rru:.3}** |");
        let idle_ms = idle_microsoft(&emu);
        println!(
            "Microsoft (free) for the idle tenant: {idle_ms} requests in {} ticks, the first included ({:.2} per tick)",
            a.life_ticks + 1,
            idle_ms as f64 / f64::from(a.life_ticks + 1),
        );
    }
    let ticks = f64::from(a.life_ticks).max(1.0);
    println!();
    println!(
        "## CloudWatch Logs (RUST_LOG=info as template.yaml; JSON logs and EMF lines, without Lambda's own START/END/REPORT lines): lister {:.0} bytes per life tick (active tenant), {:.0} bytes per life tick (idle tenant), fetcher {:.0} bytes per blob",
        (lister.logs().len() - lister_log0) as f64 / ticks,
        (idle_lister.logs().len() - idle_log0) as f64 / ticks,
        fetcher.logs().len() as f64 / ((messages + life_messages) as f64).max(1.0)
    );
    println!();
    println!(
        "## CloudWatch custom metrics (METRICS_DETAIL={}): {} series for the active tenant (all functions), {} for the idle tenant (lister only)",
        a.metrics_detail,
        active_series.len(),
        idle_series.len()
    );
    for (name, dims) in &active_series {
        println!("- {name} [{dims}]");
    }

    drop(fetcher);
    drop(lister);
    drop(idle_lister);
    drop(subs);
    drop(moto_server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Management API and token requests the emulator logged for the idle tenant.
fn idle_microsoft(emu: &o365_emulator::Emulator) -> u64 {
    emu.requests()
        .iter()
        .filter(|r| {
            r.tenant
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(IDLE_TENANT))
        })
        .count() as u64
}

/// Adds the (metric, dimension names) series of the EMF lines among `lines`.
fn emf_series(lines: &[String], into: &mut BTreeSet<(String, String)>) {
    for l in lines {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        for d in v["_aws"]["CloudWatchMetrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let dims: Vec<String> = d["Dimensions"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|set| set.as_array().into_iter().flatten())
                .filter_map(|k| k.as_str())
                .map(|k| format!("{k}={}", v[k].as_str().unwrap_or("")))
                .collect();
            for m in d["Metrics"].as_array().into_iter().flatten() {
                if let Some(name) = m["Name"].as_str() {
                    into.insert((name.to_owned(), dims.join(",")));
                }
            }
        }
    }
}

fn binary_exists(name: &str) -> bool {
    integration_tests::runtime::preferred_binary(name).is_some()
}
