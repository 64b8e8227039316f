//! The operator commands through the CLI binary against an in-process emulator: `run --once`
//! stopped by a real SIGINT/SIGTERM at seeded points and resumed, its exit statuses (0, 1, 3),
//! `status --json` (also while `run` holds the state file), `redrive` on local state and a
//! deployment (moto), and `backfill`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use integration_tests::runtime::function_binary;
use o365_emulator::{Emulator, Scenario};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::local_run::{objects, read_written};
use crate::support::*;

/// Base seed of the interrupt points (each case adds its own number).
const SEED: u64 = 20_261_205;

/// One tenant (certificate app), its emulator and a `run` configuration in a fresh folder.
struct Rig {
    emu: Emulator,
    dir: PathBuf,
    config: PathBuf,
}

impl Rig {
    /// `data`: the `[tenant.data]` lines; `faults`: `[[fault]]` tables; `collection`: lines of
    /// the configuration's `[collection]`.
    async fn start(seed: u64, data: &str, faults: &str, collection: &str) -> Rig {
        let cert_text = cert().cert_pem.replace('\n', "\\n");
        let scenario = Scenario::from_toml(&format!(
            r#"
seed = {seed}
page_size = 5

[[tenant]]
id = "{TENANT_CERT}"
domain = "contoso.onmicrosoft.com"
users = 8
[tenant.data]
{data}

[[app]]
client_id = "{APP_CERT}"
home_tenant = "{TENANT_CERT}"
certificates = ["{cert_text}"]
manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]
{faults}
"#
        ))
        .expect("scenario");
        let emu = Emulator::start(scenario).await.expect("emulator");
        let dir = std::env::temp_dir().join(format!("o365-ops-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.pem"), &cert().pem).unwrap();
        let base = emu.base_url();
        let config = dir.join("collector.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[storage]
output = "out"
state = "state/collector.redb"

[collection]
fetch_workers = 4
{collection}

[[tenant]]
id = "{TENANT_CERT}"
cloud = "custom"
login_url = "{base}"
manage_url = "{base}"
graph_url = "{base}"
client_id = "{APP_CERT}"
certificate_file = "a.pem"
"#
            ),
        )
        .unwrap();
        Rig { emu, dir, config }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(function_binary("o365-collector"));
        c.args(args)
            .env("O365_LOG", "warn")
            .env_remove("STATE_TABLE")
            .env_remove("QUEUE_URL")
            .stdin(Stdio::null());
        c
    }

    /// Runs a command to its end.
    async fn run(&self, args: &[&str]) -> Output {
        let mut c = self.command(args);
        tokio::task::spawn_blocking(move || c.output().expect("run the CLI"))
            .await
            .unwrap()
    }

    /// `run --once --config …`.
    async fn run_once(&self) -> Output {
        let config = self.config.display().to_string();
        self.run(&["run", "--once", "--config", &config]).await
    }

    /// `status --json --config …`: its exit status and report.
    async fn status(&self) -> (Option<i32>, Value) {
        let config = self.config.display().to_string();
        let out = self.run(&["status", "--json", "--config", &config]).await;
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json is not JSON ({e}):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), json)
    }

    /// Blobs fetched so far (one raw archive object each).
    fn raw_blobs(&self) -> usize {
        objects(&self.dir.join("out"), "raw").len()
    }

    /// Blobs available (and not expired) now.
    fn available_blobs(&self) -> usize {
        self.emu
            .truth()
            .iter()
            .filter(|b| b.available && !b.expired)
            .count()
    }

    /// Every record available at `must_by` is written exactly once, nothing that was not
    /// available by `may_by` is; returns the records checked.
    fn assert_exactly_once(&self, must_by: DateTime<Utc>, may_by: DateTime<Utc>) -> usize {
        let written = read_written(&objects(&self.dir.join("out"), "ocsf"));
        let must = self.emu.record_ids_available_by(must_by, false);
        let may = self.emu.record_ids_available_by(may_by, true);
        for (key, ids) in &written {
            for (id, n) in ids {
                assert_eq!(*n, 1, "record {id} of {key:?} written {n} times");
                assert!(
                    may.get(key).is_some_and(|s| s.contains(id)),
                    "record {id} of {key:?} was never made available"
                );
            }
        }
        let mut total = 0;
        for (key, ids) in &must {
            let got: BTreeSet<&String> = written
                .get(key)
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            let missing = ids.iter().filter(|id| !got.contains(id)).count();
            assert_eq!(missing, 0, "{missing} records of {key:?} are missing");
            total += ids.len();
        }
        assert!(total > 0, "the scenario had no content");
        total
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Enough content that a pass takes several seconds: 150 blobs, listing and blob answers slowed.
const BIG: &str = r#"hours_back = 6
records_per_blob = 4
records_per_hour = { "Audit.AzureActiveDirectory" = 20, "Audit.Exchange" = 20, "Audit.SharePoint" = 20, "Audit.General" = 20, "DLP.All" = 20 }"#;

const SLOW: &str = r#"
[[fault]]
kind = "slow"
endpoints = ["content"]
rate = 1.0
delay_ms = 150

[[fault]]
kind = "slow"
endpoints = ["blob"]
rate = 1.0
delay_ms = 150
"#;

#[derive(Debug, Clone, Copy)]
enum Point {
    /// While listing: after 12–23 pages of listings were answered (of several dozen).
    Early,
    /// With 30–60 % of the blobs fetched.
    Mid,
    /// With 80–95 % of the blobs fetched.
    Late,
}

fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// Waits for `child` with a timeout; its output from the files it wrote to.
fn wait_output(mut child: Child, dir: &Path, timeout: Duration) -> Output {
    let until = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!(
                "the collector did not exit within {timeout:?} of the signal:\n{}",
                std::fs::read_to_string(dir.join("run.err")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(dir.join("run.out")).unwrap_or_default(),
        stderr: std::fs::read(dir.join("run.err")).unwrap_or_default(),
    }
}

/// `run --once` stopped by `signal` at `point` (seeded), then run again to the end: the first
/// exits with the signal's status and says what it left open; after the second every
/// available record is written exactly once.
async fn interrupted_then_resumed(case: u64, point: Point, signal: &str, expected_code: i32) {
    let seed = SEED + case;
    let mut rng = StdRng::seed_from_u64(seed);
    // Listing starts where the content does (an empty day of windows first otherwise).
    let rig = Rig::start(7, BIG, SLOW, "first_run_lookback_hours = 7").await;
    let t0 = rig.emu.now();
    let blobs = rig.available_blobs();
    assert!(blobs > 100, "{blobs} blobs");
    let mut cmd = rig.command(&[
        "run",
        "--once",
        "--config",
        &rig.config.display().to_string(),
    ]);
    cmd.stdout(std::fs::File::create(rig.dir.join("run.out")).unwrap())
        .stderr(std::fs::File::create(rig.dir.join("run.err")).unwrap());
    let child = cmd.spawn().expect("spawn the collector");
    let state = rig.dir.join("state/collector.redb");
    let started = Instant::now();
    let poll = |what: &dyn Fn() -> bool| {
        while !what() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the run never got there:\n{}",
                std::fs::read_to_string(rig.dir.join("run.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // The handlers are installed before the state file is opened.
    poll(&|| state.exists());
    let mut status_during_run = None;
    match point {
        Point::Early => {
            let pages = rng.random_range(12..24);
            poll(&|| {
                rig.emu
                    .requests()
                    .iter()
                    .filter(|r| r.endpoint == "content" && r.status == 200)
                    .count()
                    >= pages
            });
        }
        Point::Mid | Point::Late => {
            let share = match point {
                Point::Mid => rng.random_range(0.30..0.60),
                _ => rng.random_range(0.80..0.95),
            };
            let target = (blobs as f64 * share) as usize;
            poll(&|| rig.raw_blobs() >= target);
            if matches!(point, Point::Mid) {
                // `status` reads the state file the run holds, from a copy.
                let t = Instant::now();
                status_during_run = Some(rig.status().await);
                eprintln!("status during the run took {:?}", t.elapsed());
            }
        }
    }
    let fetched_at_signal = rig.raw_blobs();
    send_signal(&child, signal);
    if matches!(point, Point::Early) {
        assert!(
            fetched_at_signal * 4 < blobs,
            "not early: {fetched_at_signal}/{blobs}"
        );
    }
    let dir = rig.dir.clone();
    let first =
        tokio::task::spawn_blocking(move || wait_output(child, &dir, Duration::from_secs(30)))
            .await
            .unwrap();
    let err = String::from_utf8_lossy(&first.stderr);
    assert_eq!(
        first.status.code(),
        Some(expected_code),
        "case {case} ({point:?}, {signal}, seed {seed}, {fetched_at_signal}/{blobs} fetched at the signal)\n{}",
        text(&first)
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("interrupted: "))
        .unwrap_or_else(|| panic!("no `interrupted:` line\n{}", text(&first)));
    assert!(
        line.contains("left open in the ledger — the next run collects them"),
        "{line}"
    );
    let left: u64 = line
        .split(", ")
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of open entries: {line}"));
    if matches!(point, Point::Mid | Point::Late) {
        assert!(
            left > 0,
            "interrupted with blobs to go, none left open: {line}"
        );
    }
    if let Some((code, json)) = status_during_run {
        assert_eq!(code, Some(0), "{json}");
        assert_eq!(json["snapshot"], true, "{json}");
        assert!(
            json["source"]
                .as_str()
                .unwrap()
                .contains("snapshot of a state file in use"),
            "{json}"
        );
        assert_eq!(json["feeds"].as_array().unwrap().len(), 5, "{json}");
    }

    let second = rig.run_once().await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let records = rig.assert_exactly_once(t0, rig.emu.now());
    assert!(rig.raw_blobs() >= blobs);
    eprintln!(
        "case {case} ({point:?}, {signal}): signal at {fetched_at_signal}/{blobs} blobs, {left} left open; {records} records exactly once after the second run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_early_during_listing_then_a_second_run_collects_everything_once() {
    interrupted_then_resumed(1, Point::Early, "INT", 130).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_fetch_then_a_second_run_collects_everything_once() {
    interrupted_then_resumed(2, Point::Mid, "INT", 130).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_late_then_a_second_run_collects_everything_once() {
    interrupted_then_resumed(3, Point::Late, "INT", 130).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_fetch_then_a_second_run_collects_everything_once() {
    interrupted_then_resumed(4, Point::Mid, "TERM", 143).await;
}

const SMALL: &str = r#"hours_back = 3
records_per_blob = 4
records_per_hour = { "Audit.AzureActiveDirectory" = 8, "Audit.Exchange" = 8, "Audit.SharePoint" = 8, "Audit.General" = 4, "DLP.All" = 4 }"#;

/// Exit status 1 with the failed blob and its reason; `status` shows the reason and exits 1;
/// `redrive` on local state says what the next run re-drives; the next run collects it: 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_blob_is_exit_status_1_with_its_reason_shown_by_status_and_the_next_run_fixes_it()
{
    // The first blob answer is an HTML page; one attempt per blob in a pass.
    let garbage = "\n[[fault]]\nkind = \"garbage\"\nendpoints = [\"blob\"]\nevery = 1\nlimit = 1\n";
    let rig = Rig::start(21, SMALL, garbage, "max_attempts = 1").await;
    let t0 = rig.emu.now();
    let first = rig.run_once().await;
    let out = String::from_utf8_lossy(&first.stdout);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    let failed: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("FAILED "))
        .collect();
    assert_eq!(failed.len(), 1, "{out}");
    let (content_id, reason) = failed[0].split_once(": ").expect("id: reason");
    assert!(reason.contains("JSON array"), "{reason}");
    assert!(out.contains("the next run retries them"), "{out}");

    let (code, json) = rig.status().await;
    assert_eq!(code, Some(1), "a failed entry: exit 1\n{json}");
    assert_eq!(json["snapshot"], false);
    let feeds = json["feeds"].as_array().unwrap();
    assert_eq!(feeds.len(), 5, "every feed of the tenant: {json}");
    for f in feeds {
        assert_eq!(f["tenant"], TENANT_CERT);
        assert!(
            f["lag_secs"].as_i64().is_some(),
            "a lag for every feed: {f}"
        );
        assert!(f["listed_until"].is_string(), "{f}");
        assert!(f["entries"].as_u64().unwrap() > 0, "{f}");
        assert_eq!(f["reconciliation"], "idle", "{f}");
        assert!(f["reconciled_at"].is_string(), "{f}");
        for k in ["open", "failed", "expired", "oldest_open_secs", "lateness"] {
            assert!(f.get(k).is_some(), "{k} missing: {f}");
        }
    }
    let total: u64 = feeds.iter().map(|f| f["entries"].as_u64().unwrap()).sum();
    assert_eq!(json["totals"]["entries"].as_u64(), Some(total));
    assert_eq!(json["totals"]["failed"], 1, "{json}");
    assert_eq!(
        json["totals"]["open"], 1,
        "the failed blob is retried: open"
    );
    let entry = &json["failed"][0];
    assert_eq!(entry["content_id"], content_id, "{json}");
    assert!(
        entry["reason"].as_str().unwrap().contains("JSON array"),
        "the reason: {entry}"
    );
    assert!(entry["next_attempt_at"].is_string(), "retried: {entry}");
    // The table says the same for people.
    let config = rig.config.display().to_string();
    let table = rig.run(&["status", "--config", &config]).await;
    let t = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.status.code(), Some(1), "{t}");
    assert!(t.contains(content_id) && t.contains("next retry in"), "{t}");

    let redrive = rig
        .run(&["redrive", "--config", &config, "--only", "failed"])
        .await;
    let r = String::from_utf8_lossy(&redrive.stdout);
    assert_eq!(redrive.status.code(), Some(0), "{}", text(&redrive));
    assert!(r.contains("1 entries will be re-driven: 1 failed"), "{r}");

    let second = rig.run_once().await;
    let out2 = String::from_utf8_lossy(&second.stdout);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert!(out2.contains("re-driven at start: 1 blobs"), "{out2}");
    rig.assert_exactly_once(t0, rig.emu.now());
    let (code, json) = rig.status().await;
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["totals"]["failed"], 0);
    assert_eq!(json["totals"]["open"], 0);
}

/// Content Microsoft expired before it could be fetched: exit status 3 naming the content ids
/// (exactly the emulator's expired blobs); `status` counts them and exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_content_is_exit_status_3_with_the_content_ids() {
    let data = format!("{SMALL}\nexpired_fraction = 0.25\nexpire_after_secs = 0");
    let rig = Rig::start(31, &data, "", "").await;
    let t0 = rig.emu.now();
    let expired: BTreeSet<String> = rig
        .emu
        .truth()
        .into_iter()
        .filter(|b| b.expired && b.available_at <= t0)
        .map(|b| b.content_id)
        .collect();
    assert!(
        !expired.is_empty() && expired.len() <= 20,
        "{} expired",
        expired.len()
    );
    let first = rig.run_once().await;
    let out = String::from_utf8_lossy(&first.stdout);
    assert_eq!(first.status.code(), Some(3), "{}", text(&first));
    let lost: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.split("before it could be fetched): ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(lost, expired, "{out}");
    rig.assert_exactly_once(t0, rig.emu.now());

    let (code, json) = rig.status().await;
    assert_eq!(code, Some(1), "expired entries: exit 1\n{json}");
    assert_eq!(
        json["totals"]["expired"].as_u64(),
        Some(expired.len() as u64)
    );
    let listed: BTreeSet<String> = json["expired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, expired);
}

/// `backfill` of a range inside the 7 days collects content older than the first run's
/// lookback, each record once; a start older than 7 days less 10 minutes is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_collects_content_older_than_the_first_run_lookback_exactly_once() {
    let data = r#"hours_back = 30
records_per_blob = 4
records_per_hour = { "Audit.Exchange" = 8, "DLP.All" = 4 }"#;
    let rig = Rig::start(41, data, "", "first_run_lookback_hours = 3").await;
    let t0 = rig.emu.now();
    let first = rig.run_once().await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let after_first = rig.raw_blobs();
    let available = rig.available_blobs();
    assert!(
        after_first * 3 < available,
        "the first run's 3 h lookback fetched {after_first} of {available} blobs"
    );

    let config = rig.config.display().to_string();
    for too_old in ["8d", "6d23h55m"] {
        let out = rig
            .run(&[
                "backfill",
                "--config",
                &config,
                "--tenant",
                TENANT_CERT,
                "--since",
                too_old,
            ])
            .await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            err.contains("Microsoft keeps content 7 days") && err.contains("10 minutes"),
            "{err}"
        );
    }

    let out = rig
        .run(&[
            "backfill",
            "--config",
            &config,
            "--tenant",
            TENANT_CERT,
            "--since",
            "31h",
            "--content-type",
            "Audit.Exchange,DLP.All",
        ])
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let new: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("backfill: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no backfill line:\n{stdout}"));
    assert!(new > 0, "{stdout}");
    assert!(
        rig.raw_blobs() >= available,
        "{} of {available} blobs after the backfill",
        rig.raw_blobs()
    );
    let records = rig.assert_exactly_once(t0, rig.emu.now());
    eprintln!("backfill: {new} new blobs; {records} records exactly once");
}

/// On a deployment (moto): `redrive` re-enqueues failed ledger entries to the fetch queue and
/// moves the dead-letter queue's messages back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_on_a_deployment_reenqueues_failed_entries_and_empties_the_dlq() {
    use shared::model::{BlobState, ContentBlob, ContentType, LedgerEntry, TenantId};
    use shared::store::StateStore;

    let stack = integration_tests::stack::Stack::create(3).await;
    let store = stack.store();
    let emu = Emulator::start(scenario("")).await.expect("emulator");
    let dir = deploy_tenants(&stack, &emu).await;
    let tenant = TenantId::parse(TENANT_CERT).unwrap();
    let now = Utc::now();
    let blob = |i: u32| ContentBlob {
        content_type: ContentType::Exchange,
        content_id: format!("20261205{i:02}$redrive-{i}"),
        content_uri: format!(
            "{}/api/v1.0/{TENANT_CERT}/activity/feed/audit/20261205{i:02}$redrive-{i}",
            emu.base_url()
        ),
        content_created: now - chrono::Duration::hours(2),
        content_expiration: now + chrono::Duration::days(6),
    };
    // Two failed entries (retried later), one failed for good, one done.
    for i in 0..4 {
        let b = blob(i);
        store.claim_blob(&tenant, &b, now).await.unwrap();
        let entry = match i {
            0 | 1 => LedgerEntry {
                next_attempt_at: Some(now + chrono::Duration::hours(1)),
                ..LedgerEntry::new(BlobState::Failed, now).because("HTTP 500 five times")
            },
            2 => LedgerEntry::new(BlobState::Failed, now).because("foreign content URI"),
            _ => LedgerEntry::new(BlobState::Done, now),
        };
        assert!(store.set_blob_state(&tenant, &b, &entry).await.unwrap());
    }
    let sqs = aws_sdk_sqs::Client::new(&stack.conf);
    for i in 0..3 {
        sqs.send_message()
            .queue_url(&stack.dlq_url)
            .message_body(format!("{{\"dead\":{i}}}"))
            .send()
            .await
            .unwrap();
    }
    let bin = function_binary("o365-collector");
    let args = [
        "redrive".to_owned(),
        "--table".to_owned(),
        stack.table.clone(),
        "--queue-url".to_owned(),
        stack.queue_url.clone(),
        "--dlq-url".to_owned(),
        stack.dlq_url.clone(),
        "--tenant".to_owned(),
        TENANT_CERT.to_owned(),
    ];
    let endpoint = stack.endpoint.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(&args)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("O365_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout.contains("re-driven: 2 jobs"), "{stdout}");
    assert!(
        stdout.contains("dead-letter queue: 3 messages moved back"),
        "{stdout}"
    );
    // The fetch queue holds the two jobs and the three moved messages; the DLQ is empty.
    let mut bodies = Vec::new();
    for _ in 0..10 {
        let (_, handles) = stack
            .receive_event(&stack.queue_url, Duration::from_secs(1))
            .await;
        if handles.is_empty() {
            break;
        }
        for (_, h) in &handles {
            sqs.delete_message()
                .queue_url(&stack.queue_url)
                .receipt_handle(h)
                .send()
                .await
                .unwrap();
        }
        bodies.extend(handles);
    }
    assert_eq!(bodies.len(), 5, "{bodies:?}");
    let (_, dlq) = stack
        .receive_event(&stack.dlq_url, Duration::from_secs(1))
        .await;
    assert!(dlq.is_empty(), "the DLQ was emptied");
    for i in 0..2 {
        let e = store
            .blob_entry(&tenant, &blob(i).content_id, Utc::now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.state, BlobState::Enqueued, "{e:?}");
        assert_eq!(e.attempts, 1);
    }
    let e = store
        .blob_entry(&tenant, &blob(2).content_id, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.state, BlobState::Failed, "failed for good stays failed");
    let _ = std::fs::remove_dir_all(dir);
}
