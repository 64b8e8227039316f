//! `bench-lambda`: the Lambda-shaped path measured end to end — the function binaries (the
//! release `bootstrap`s of `scripts/lambda-build.sh` when present) driven through the Runtime API
//! emulator, on moto behind a counting proxy, against the emulator of Microsoft's endpoints.
//!
//! Prints per function: init time, invocations, duration per invocation, peak RSS; AWS requests
//! per service and operation, per blob and per 1,000 records; and the idle figures (a lister
//! tick with nothing new). These are the inputs of docs/cost.md.
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

use integration_tests::proxy::CountingProxy;
use integration_tests::runtime::LambdaProcess;
use integration_tests::stack::Stack;
use serde_json::Value;
use shared::store::StateStore;

const TENANT: &str = "6b1f3c2e-8d4a-4f7b-9c1e-2a3b4c5d6e7f";
const IDLE_TENANT: &str = "7c2a4d3f-9e5b-4a8c-8d2f-3b4c5d6e7f80";
const APP: &str = "0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b";
const SECRET: &str = "bench-secret-value";

struct Args {
    records_per_hour: u32,
    records_per_blob: u32,
    hours: i64,
    idle_ticks: u32,
    cross_blob_dedupe: bool,
    metrics_detail: String,
    throttle_rate: f64,
}

fn args() -> Args {
    let mut a = Args {
        records_per_hour: 400,
        records_per_blob: 100,
        hours: 24,
        idle_ticks: 3,
        cross_blob_dedupe: true,
        metrics_detail: "tenant".into(),
        throttle_rate: 0.0,
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
            "--idle-ticks" => a.idle_ticks = num(&v) as u32,
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
            "-h" | "--help" => {
                println!(
                    "bench-lambda [--records-per-hour N (per content type, 400)] [--records-per-blob N (100)] [--hours H (24)] [--idle-ticks N (3)] [--no-cross-blob-dedupe] [--metrics-detail feed|tenant|deployment] [--throttle-rate R (AF429 on listings and blobs, 0)]"
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let (moto_url, moto_server) = integration_tests::moto::MotoServer::from_env_or_start();
    let proxy = CountingProxy::start(&moto_url).await;
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
        ("RUST_LOG", "warn"),
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
    proxy.take();
    invoke(&mut subs, &mut subs_f, upkeep.clone()).await;
    subs_f.peak_rss_kib = subs.peak_rss_kib();
    subs_f.requests = proxy.take();

    let (mut lister, mut lister_f) = spawn("lister", &env).await;
    proxy.take();
    let report = invoke(&mut lister, &mut lister_f, scheduled.clone()).await;
    let jobs: u64 = report["feeds"]
        .as_array()
        .map(|f| f.iter().filter_map(|x| x["enqueued"].as_u64()).sum())
        .unwrap_or(0);
    lister_f.requests = proxy.take();

    // The fetcher, fed as the SQS event source mapping would (batches of up to 10).
    let (mut fetcher, mut fetcher_f) = spawn("fetcher", &env).await;
    proxy.take();
    let (mut batches, mut messages, mut empty) = (0u64, 0u64, 0);
    while empty < 2 {
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
        let response = invoke(&mut fetcher, &mut fetcher_f, event).await;
        stack.settle(&stack.queue_url, &handles, &response).await;
    }
    fetcher_f.peak_rss_kib = fetcher.peak_rss_kib();
    fetcher_f.requests = proxy.take();
    let collect_secs = started.elapsed().as_secs_f64();
    let collect_cpu = [&subs, &lister, &fetcher]
        .iter()
        .filter_map(|p| p.cpu_seconds())
        .sum::<f64>();
    let microsoft = emu.request_summary();

    // Idle: ticks with nothing new (the re-list band still re-lists the last 30 minutes).
    let mut tick_f = Figures {
        kind: lister_f.kind,
        ..Figures::default()
    };
    for _ in 0..a.idle_ticks {
        invoke(&mut lister, &mut tick_f, scheduled.clone()).await;
    }
    tick_f.requests = proxy.take();
    lister_f.peak_rss_kib = lister.peak_rss_kib();

    // An idle tenant (no audit activity at all), in a deployment of its own.
    let idle_env = idle_stack.function_env(&overrides);
    let (mut idle_lister, mut idle_f) = spawn("lister", &idle_env).await;
    proxy.take();
    for _ in 0..a.idle_ticks.max(1) {
        invoke(&mut idle_lister, &mut idle_f, scheduled.clone()).await;
    }
    idle_f.requests = proxy.take();
    idle_f.peak_rss_kib = idle_lister.peak_rss_kib();

    // Directory sync, when the function exists.
    let (users, users_proc) = if binary_exists("users-sync") {
        let (mut us, mut us_f) = spawn("users-sync", &env).await;
        proxy.take();
        invoke(&mut us, &mut us_f, scheduled.clone()).await;
        us_f.peak_rss_kib = us.peak_rss_kib();
        us_f.requests = proxy.take();
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
    println!();
    println!(
        "| function       | init ms  | invocations | mean ms   | p95 ms    | total ms   | peak MiB  | binary |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    subs_f.row("subscriptions");
    lister_f.row("lister backfill");
    fetcher_f.row("fetcher");
    tick_f.row("lister tick");
    idle_f.row("lister idle");
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
    println!("## AWS requests (measured at the proxy)");
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
    println!();
    println!("## Idle (per lister tick)");
    println!("| tenant | request | per tick |");
    println!("|---|---|---:|");
    for (name, f, ticks) in [
        ("active, nothing new (re-list band)", &tick_f, a.idle_ticks),
        ("no audit activity", &idle_f, a.idle_ticks.max(1)),
    ] {
        for (op, n) in &f.requests {
            println!("| {name} | {op} | {:.2} |", per(*n, u64::from(ticks)));
        }
    }

    drop(fetcher);
    drop(lister);
    drop(idle_lister);
    drop(subs);
    drop(moto_server);
    let _ = std::fs::remove_dir_all(&dir);
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
