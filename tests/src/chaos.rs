//! The chaos run: the built `lister` and `fetcher` binaries, driven like an AWS deployment would
//! drive them (a schedule tick, then the SQS event source mapping's batches of up to 10, several
//! fetcher instances at once), against the emulator of Microsoft's endpoints with every fault it
//! knows, on moto behind a proxy that injects AWS errors at the adapter boundary, with processes
//! killed at random points. At the end the S3 output is checked against the emulator's ground
//! truth: every record exactly once by `Id` (or its blobs reported as lost upstream or failing
//! for good), no duplicate objects, every blob that can never be fetched `failed` with its
//! reason (and dead-lettered with it) or `expired`, and nothing else in the DLQ but the poison
//! jobs, each with its reason.
//!
//! Everything random follows the seed: the scenario (data, late/duplicate/expired blobs, which
//! requests the emulator faults), the AWS faults and the kill decisions. What a kill interrupts
//! depends on timing, so two runs of a seed agree on the data and the decisions, not on every
//! interleaving — the assertions hold for every interleaving.
//!
//! `tests/integration/chaos.rs` runs it small in CI; `cargo run -p integration-tests --bin chaos
//! -- --seed N --blobs 3000` runs it large. See docs/chaos.md.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use shared::model::{BlobState, TenantId};
use shared::store::StateStore;

use crate::proxy::{AwsFaults, CountingProxy};
use crate::runtime::{InvokeError, LambdaProcess};
use crate::stack::Stack;

/// The multi-tenant app (client secret in Secrets Manager) of every tenant but the first.
const APP: &str = "5d0c3b9a-8e7f-4a61-9b2c-7d3e4f5a6b7c";
/// The certificate app of the first tenant.
const CERT_APP: &str = "c4b3a291-0f1e-4d2c-8b3a-495867a7b8c9";
const SECRET: &str = "chaos~secret.value";
/// The emulator's clock starts this far behind the collector's (clock skew); by the end of the
/// run it is almost a day ahead.
const SKEW_SECS: i64 = 3600;
/// The fetcher's invocation deadline: below the queue's 30 s visibility timeout, as a deployment
/// must configure it.
const FETCHER_TIMEOUT: Duration = Duration::from_secs(25);
const LISTER_TIMEOUT: Duration = Duration::from_secs(240);

/// What a chaos run does.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Seed of everything random.
    pub seed: u64,
    /// Blobs to generate (the run makes at least this many).
    pub blobs: usize,
    /// Tenants (each with its own late delay); at least 2.
    pub tenants: usize,
    /// Records per blob (duplicated records come on top).
    pub records_per_blob: u32,
    /// Blobs per listing page (`NextPageUri` paging).
    pub page_size: usize,
    /// Emulator: AF429 (HTTP 403) rate on content listing and blob GETs.
    pub af429_rate: f64,
    /// Emulator: 5xx rate (half `internal-error` 500, half `unavailable` 503) on listing, blobs
    /// and tokens.
    pub server_error_rate: f64,
    /// Emulator: dropped connections on listing and blobs.
    pub drop_rate: f64,
    /// Emulator: 401 (token refused as if expired early) on listing and blobs.
    pub unauthorized_rate: f64,
    /// Fraction of blobs listable only late.
    pub late_fraction: f64,
    /// The latest delay of late blobs, seconds: tenants get ranges spread up to this, each
    /// late blob a delay drawn in its tenant's range (the emulator's `late_by_secs_max`).
    pub max_late_secs: i64,
    /// Fraction of blobs whose every GET is cut short (a `truncate` fault with
    /// `blob_fraction`): they can never be fetched and must end `failed` with their reason
    /// (and in the DLQ) or `expired`; their records that other blobs also hold are written
    /// from those.
    pub failing_blob_fraction: f64,
    /// `RECONCILE_EVERY_MINUTES` of the lister: small, so reconciliation passes (which find
    /// content later than the re-list band) run at every clock step.
    pub reconcile_every_minutes: u32,
    /// Fraction of records repeated in the next blob.
    pub duplicate_fraction: f64,
    /// Fraction of blobs that expire early (at once, or half a clock step after they appear).
    pub expired_fraction: f64,
    /// Access token lifetime at the emulator (the clock jumps make tokens expire mid-run).
    pub token_lifetime_secs: u64,
    /// Clock steps over which the emulator clock reveals all late content.
    pub clock_steps: u32,
    /// AWS faults at the proxy.
    pub aws: AwsFaults,
    /// Probability that a lister invocation is killed at a random point.
    pub kill_lister: f64,
    /// Probability that a fetcher invocation is killed at a random point.
    pub kill_fetcher: f64,
    /// Fraction of delivered messages sent again (SQS at-least-once delivery).
    pub redeliver_fraction: f64,
    /// Fetcher instances working the queue at once.
    pub fetchers: usize,
    /// `FETCHER_MAX_RECEIVES`, which is also the queue's redrive `maxReceiveCount` (one value,
    /// as in template.yaml): at the last receive the fetcher dead-letters a failing job with
    /// its reason and marks its ledger entry failed with a retry.
    pub fetcher_max_receives: u32,
    /// moto endpoint.
    pub moto_endpoint: String,
    /// The lister binary and what build it is.
    pub lister_binary: (PathBuf, String),
    /// The fetcher binary and what build it is.
    pub fetcher_binary: (PathBuf, String),
    /// Progress lines on stderr.
    pub verbose: bool,
}

impl ChaosConfig {
    /// The issue's figures: AF429 5 %, 5xx 2 %, drops 1 %, 10 % of blobs late by up to 6 days,
    /// duplicates, expired blobs, blobs that fail for good, AWS faults 3 %, kills; the debug
    /// binaries.
    pub fn new(seed: u64, blobs: usize, moto_endpoint: &str) -> ChaosConfig {
        let debug = |n: &str| (crate::runtime::function_binary(n), "debug".to_owned());
        ChaosConfig::with_binaries(
            seed,
            blobs,
            moto_endpoint,
            debug("lister"),
            debug("fetcher"),
        )
    }

    /// [`ChaosConfig::new`] with the given lister and fetcher binaries (path, kind of build).
    pub fn with_binaries(
        seed: u64,
        blobs: usize,
        moto_endpoint: &str,
        lister_binary: (PathBuf, String),
        fetcher_binary: (PathBuf, String),
    ) -> ChaosConfig {
        ChaosConfig {
            seed,
            blobs,
            tenants: 4,
            records_per_blob: 4,
            page_size: if blobs > 1000 { 10 } else { 5 },
            af429_rate: 0.05,
            server_error_rate: 0.02,
            drop_rate: 0.01,
            unauthorized_rate: 0.003,
            late_fraction: 0.1,
            max_late_secs: 6 * 24 * 3600 - 3600,
            failing_blob_fraction: 0.02,
            reconcile_every_minutes: 60,
            duplicate_fraction: 0.05,
            expired_fraction: 0.03,
            token_lifetime_secs: 600,
            clock_steps: if blobs > 1000 { 8 } else { 5 },
            aws: AwsFaults {
                seed,
                throttle: 0.015,
                error: 0.01,
                drop: 0.005,
            },
            kill_lister: 0.3,
            kill_fetcher: 0.08,
            redeliver_fraction: 0.02,
            fetchers: 2,
            fetcher_max_receives: 10,
            moto_endpoint: moto_endpoint.trim_end_matches('/').to_owned(),
            lister_binary,
            fetcher_binary,
            verbose: false,
        }
    }
}

/// What a chaos run saw and found. `violations` empty = every assertion held.
#[derive(Debug, Clone, Default)]
pub struct ChaosSummary {
    /// Seed.
    pub seed: u64,
    /// Tenants.
    pub tenants: usize,
    /// Blobs the emulator made available by the end.
    pub blobs: usize,
    /// Of those, listed late.
    pub late_blobs: usize,
    /// Of the late ones, listable more than 24 h after `contentCreated`.
    pub very_late_blobs: usize,
    /// The longest delay of a late blob, hours.
    pub max_late_hours: f64,
    /// Of those, expired by the end (early expiry).
    pub expired_blobs: usize,
    /// Blobs every GET of which is cut short (can never be fetched).
    pub failing_blobs: usize,
    /// Of those, `failed` in the ledger (with a reason, and dead-lettered with it).
    pub failing_blobs_failed: usize,
    /// Of those, `expired` in the ledger (Microsoft expired them while they were retried).
    pub failing_blobs_expired: usize,
    /// Blobs the collector wrote (ledger `done`).
    pub blobs_done: usize,
    /// Blobs reported as lost upstream (ledger `expired`).
    pub blobs_lost_upstream: usize,
    /// Unique record `Id`s made available by the end.
    pub records_available: usize,
    /// Record `Id`s that Microsoft delivered in more than one blob.
    pub records_in_several_blobs: usize,
    /// Records written (unique `Id`s in S3).
    pub records_written: usize,
    /// Record copies of fetched blobs that were not written again (same `Id`).
    pub duplicates_dropped: usize,
    /// Records lost upstream: every blob holding them expired before it was fetched.
    pub records_lost_upstream: usize,
    /// Records held only by blobs that fail for good (or expired): not written, their blobs
    /// reported `failed` (or `expired`).
    pub records_only_in_failing_blobs: usize,
    /// Records of blobs that fail for good written from another blob holding them.
    pub records_saved_by_another_copy: usize,
    /// Events objects (`ocsf/`) and raw archive objects (`raw/`).
    pub objects: (usize, usize),
    /// Emulator requests in all.
    pub emulator_requests: u64,
    /// Emulator faults fired, by `endpoint kind`.
    pub emulator_faults: BTreeMap<String, u64>,
    /// 401s for tokens that expired as the emulator clock jumped (no fault involved).
    pub expired_token_401s: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// AWS requests the functions made (through the proxy).
    pub aws_requests: u64,
    /// AWS faults injected, by `service kind`.
    pub aws_faults: BTreeMap<String, u64>,
    /// Lister processes killed mid-invocation.
    pub kills_lister: u32,
    /// Fetcher processes killed mid-invocation.
    pub kills_fetcher: u32,
    /// Lister invocations (ticks).
    pub lister_ticks: u32,
    /// Of those, after the last clock step (until nothing is open).
    pub closing_ticks: u32,
    /// New blobs found by reconciliation passes (content later than the re-list band).
    pub late_found: u64,
    /// Reconciliation windows listed.
    pub reconciled_windows: u64,
    /// Failed ledger entries the sweep enqueued again.
    pub sweep_redriven: u64,
    /// Failed ledger entries the sweep marked expired (past `contentExpiration`).
    pub sweep_expired: u64,
    /// Jobs SQS dead-lettered by itself that the lister's dead-letter sweep recovered.
    pub dead_letters_recovered: u64,
    /// Lister ticks where a feed or tenant failed (retried by the next tick).
    pub lister_feed_failures: u32,
    /// Distinct feed errors the lister reported (first words), with counts.
    pub lister_errors: BTreeMap<String, u64>,
    /// Blob listings that found an already known blob (re-list band, deep re-list, restarts).
    pub duplicate_listings: u64,
    /// Fetcher invocations.
    pub fetcher_invocations: u32,
    /// Messages delivered to fetchers.
    pub messages: u64,
    /// Messages the fetcher reported as failed (retried).
    pub batch_item_failures: u64,
    /// Messages sent again to simulate duplicate delivery.
    pub redeliveries: u64,
    /// Poison jobs put on the queue.
    pub poison_jobs: usize,
    /// DLQ messages at the end.
    pub dlq_messages: usize,
    /// Of those, jobs of blobs that fail for good (one per time the sweep re-drove one and it
    /// ran out of receives again).
    pub dlq_failing_jobs: usize,
    /// Of those, other real jobs SQS moved by itself, recovered by the lister (reason given,
    /// blob done since).
    pub dlq_recovered_jobs: usize,
    /// Emulator clock: steps and total advance in hours.
    pub clock: (u32, f64),
    /// Binaries used.
    pub binaries: String,
    /// Wall time.
    pub wall: Duration,
    /// Every assertion that failed.
    pub violations: Vec<String>,
}

impl ChaosSummary {
    /// Every assertion held.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

fn map_line(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".to_owned();
    }
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for ChaosSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
        let rows: Vec<(&str, String)> = vec![
            ("seed", self.seed.to_string()),
            ("tenants × content types", format!("{} × 5", self.tenants)),
            (
                "blobs available (late / expired early / failing for good)",
                format!(
                    "{} ({} / {} / {})",
                    self.blobs, self.late_blobs, self.expired_blobs, self.failing_blobs
                ),
            ),
            (
                "late blobs over 24 h (longest delay)",
                format!("{} ({:.1} h)", self.very_late_blobs, self.max_late_hours),
            ),
            ("blobs written (ledger done)", self.blobs_done.to_string()),
            (
                "blobs expired before fetch (ledger expired, lost upstream)",
                self.blobs_lost_upstream.to_string(),
            ),
            (
                "blobs failing for good: ledger failed (reason, DLQ) / expired",
                format!(
                    "{} / {}",
                    self.failing_blobs_failed, self.failing_blobs_expired
                ),
            ),
            (
                "records available (unique Id)",
                self.records_available.to_string(),
            ),
            (
                "records Microsoft sent in several blobs",
                self.records_in_several_blobs.to_string(),
            ),
            (
                "records written (exactly once)",
                self.records_written.to_string(),
            ),
            (
                "duplicate copies dropped",
                self.duplicates_dropped.to_string(),
            ),
            (
                "records lost upstream (reported)",
                self.records_lost_upstream.to_string(),
            ),
            (
                "records only in blobs failing for good (reported) / written from another copy",
                format!(
                    "{} / {}",
                    self.records_only_in_failing_blobs, self.records_saved_by_another_copy
                ),
            ),
            (
                "objects ocsf/ + raw/",
                format!("{} + {}", self.objects.0, self.objects.1),
            ),
            (
                "emulator requests / faults fired",
                format!(
                    "{} / {}",
                    self.emulator_requests,
                    total(&self.emulator_faults)
                ),
            ),
            ("emulator faults by kind", map_line(&self.emulator_faults)),
            (
                "tokens issued / 401 for tokens expired by the clock",
                format!("{} / {}", self.tokens_issued, self.expired_token_401s),
            ),
            (
                "AWS requests / faults injected",
                format!("{} / {}", self.aws_requests, total(&self.aws_faults)),
            ),
            ("AWS faults by kind", map_line(&self.aws_faults)),
            (
                "kills lister / fetcher",
                format!("{} / {}", self.kills_lister, self.kills_fetcher),
            ),
            (
                "lister ticks (with a failed feed) / closing ticks",
                format!(
                    "{} ({}) / {}",
                    self.lister_ticks, self.lister_feed_failures, self.closing_ticks
                ),
            ),
            (
                "reconciliation windows / late blobs found by them",
                format!("{} / {}", self.reconciled_windows, self.late_found),
            ),
            (
                "sweep: re-driven / expired; dead letters recovered",
                format!(
                    "{} / {}; {}",
                    self.sweep_redriven, self.sweep_expired, self.dead_letters_recovered
                ),
            ),
            (
                "duplicate listings (known blobs)",
                self.duplicate_listings.to_string(),
            ),
            (
                "fetcher invocations / messages / item failures",
                format!(
                    "{} / {} / {}",
                    self.fetcher_invocations, self.messages, self.batch_item_failures
                ),
            ),
            (
                "duplicate deliveries injected",
                self.redeliveries.to_string(),
            ),
            (
                "DLQ messages: poison / failing blobs' jobs / recovered",
                format!(
                    "{}: {} / {} / {}",
                    self.dlq_messages,
                    self.poison_jobs,
                    self.dlq_failing_jobs,
                    self.dlq_recovered_jobs
                ),
            ),
            (
                "emulator clock",
                format!(
                    "{} steps, +{:.1} h in all (starts {} h behind the collector)",
                    self.clock.0,
                    self.clock.1,
                    SKEW_SECS / 3600
                ),
            ),
            ("binaries", self.binaries.clone()),
            ("wall time", format!("{:.1} s", self.wall.as_secs_f64())),
            (
                "result",
                if self.ok() {
                    "PASS: every assertion held".to_owned()
                } else {
                    format!("FAIL: {} violation(s)", self.violations.len())
                },
            ),
        ];
        writeln!(f, "| chaos run | |")?;
        writeln!(f, "|---|---:|")?;
        for (k, v) in rows {
            writeln!(f, "| {k} | {v} |")?;
        }
        for (e, n) in &self.lister_errors {
            writeln!(f, "lister feed error ×{n} (retried next tick): {e}")?;
        }
        for v in self.violations.iter().take(25) {
            writeln!(f, "VIOLATION: {v}")?;
        }
        if self.violations.len() > 25 {
            writeln!(f, "… and {} more", self.violations.len() - 25)?;
        }
        Ok(())
    }
}

/// The shape of the generated data and of the clock.
#[derive(Debug, Clone)]
struct Plan {
    hours: i64,
    records_per_hour: u32,
    /// Per tenant: the range of delays of its late blobs, seconds.
    late_by: Vec<(i64, i64)>,
    expire_after: Vec<i64>,
    step: chrono::Duration,
    relist_band_minutes: i64,
    lookback_hours: i64,
}

fn plan(c: &ChaosConfig) -> Plan {
    let tenants = c.tenants.max(2);
    let slots = tenants * 5;
    // Blobs per (tenant, content type, hour), then hours to reach the target.
    let per_hour = c.blobs.div_ceil(slots * 12).max(1);
    let hours = c.blobs.div_ceil(slots * per_hour).clamp(1, 20) as i64;
    let total = chrono::Duration::seconds(c.max_late_secs) + chrono::Duration::minutes(32);
    let step = total / i32::try_from(c.clock_steps.max(1)).unwrap_or(1);
    // Tenant i of n: delays between a quarter of and ((i + 1) / n)² × the latest: with 4
    // tenants up to 9 h, 36 h, 81 h and 143 h (6 days) — beyond the band and beyond a day.
    let late_by = (0..tenants)
        .map(|i| {
            let f = (i + 1) as f64 / tenants as f64;
            let max = ((c.max_late_secs as f64 * f * f) as i64).max(600);
            ((max / 4).max(600), max)
        })
        .collect();
    let expire_after = (0..tenants)
        .map(|i| {
            if i % 2 == 0 {
                0
            } else {
                step.num_seconds() / 2
            }
        })
        .collect();
    Plan {
        hours,
        records_per_hour: per_hour as u32 * c.records_per_blob,
        late_by,
        expire_after,
        step,
        // The product's band: content later than it is found by reconciliation passes, which
        // run at every clock step (`reconcile_every_minutes`).
        relist_band_minutes: 150,
        lookback_hours: hours + 2,
    }
}

fn tenant_ids(seed: u64, n: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7e4a_4715);
    (0..n)
        .map(|_| {
            uuid::Builder::from_random_bytes(rng.random())
                .into_uuid()
                .to_string()
        })
        .collect()
}

fn scenario(c: &ChaosConfig, p: &Plan, ids: &[String], cert_pem: &str) -> String {
    let ct_rates = |r: u32| {
        shared::model::ContentType::ALL
            .iter()
            .map(|ct| format!("\"{}\" = {r}", ct.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!(
        "seed = {}\npage_size = {}\ntoken_lifetime_secs = {}\nclock_offset_secs = {}\n",
        c.seed, c.page_size, c.token_lifetime_secs, -SKEW_SECS
    );
    for (i, id) in ids.iter().enumerate() {
        s += &format!(
            r#"
[[tenant]]
id = "{id}"
domain = "chaos{i}.onmicrosoft.com"
users = 10
[tenant.data]
hours_back = {hours}
records_per_blob = {rpb}
late_fraction = {late}
late_by_secs = {late_by}
late_by_secs_max = {late_by_max}
duplicate_fraction = {dup}
expired_fraction = {exp}
expire_after_secs = {exp_after}
records_per_hour = {{ {rates} }}
"#,
            hours = p.hours,
            rpb = c.records_per_blob,
            late = c.late_fraction,
            late_by = p.late_by[i].0,
            late_by_max = p.late_by[i].1,
            dup = c.duplicate_fraction,
            exp = c.expired_fraction,
            exp_after = p.expire_after[i],
            rates = ct_rates(p.records_per_hour),
        );
    }
    let consented: Vec<String> = ids[2..].iter().map(|i| format!("\"{i}\"")).collect();
    s += &format!(
        r#"
[[app]]
client_id = "{CERT_APP}"
home_tenant = "{t0}"
certificates = ["{cert}"]
manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]

[[app]]
client_id = "{APP}"
home_tenant = "{t1}"
multi_tenant = true
consented_tenants = [{consented}]
secrets = [{{ value = "{SECRET}" }}]
manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]
"#,
        t0 = ids[0],
        t1 = ids[1],
        cert = cert_pem.replace('\n', "\\n"),
        consented = consented.join(", "),
    );
    // First, so no other rule takes its turn: every GET of the selected blobs is cut short
    // (the ground truth's `targeted_by` says which).
    if c.failing_blob_fraction > 0.0 {
        s += &format!(
            "\n[[fault]]\nkind = \"truncate\"\nendpoints = [\"blob\"]\nevery = 1\nblob_fraction = {}\n",
            c.failing_blob_fraction
        );
    }
    let half = c.server_error_rate / 2.0;
    for (kind, endpoints, rate) in [
        ("af429", r#"["content", "blob"]"#, c.af429_rate),
        ("internal-error", r#"["content", "blob", "token"]"#, half),
        ("unavailable", r#"["content", "blob", "token"]"#, half),
        ("drop", r#"["content", "blob"]"#, c.drop_rate),
        (
            "unauthorized",
            r#"["content", "blob"]"#,
            c.unauthorized_rate,
        ),
    ] {
        if rate > 0.0 {
            s += &format!(
                "\n[[fault]]\nkind = \"{kind}\"\nendpoints = {endpoints}\nrate = {rate}\n"
            );
        }
    }
    s
}

fn cert_and_key() -> (String, String) {
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .expect("key");
    let cert = rcgen::CertificateParams::new(vec!["chaos.example".into()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    (format!("{}{}", key.serialize_pem(), cert.pem()), cert.pem())
}

fn tenants(
    ids: &[String],
    base: &str,
    pem_file: &std::path::Path,
    secret_arn: &str,
) -> Vec<shared::model::Tenant> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let cred = if i == 0 {
                format!(
                    "client_id = \"{CERT_APP}\"\ncertificate_file = \"{}\"",
                    pem_file.display()
                )
            } else {
                format!("client_id = \"{APP}\"\nclient_secret_arn = \"{secret_arn}\"")
            };
            let spec: shared::config::TenantSpec = toml::from_str(&format!(
                "id = \"{id}\"\ncloud = \"custom\"\nlogin_url = \"{base}\"\nmanage_url = \"{base}\"\ngraph_url = \"{base}\"\n{cred}\n"
            ))
            .expect("tenant spec");
            spec.into_tenant(None).expect("tenant")
        })
        .collect()
}

/// One function "instance": its process, restarted after a kill as Lambda would.
struct Function {
    name: &'static str,
    binary: PathBuf,
    env: Vec<(String, String)>,
    process: Option<LambdaProcess>,
    rng: StdRng,
    kill_probability: f64,
    /// Running mean of completed invocations, ms (kill points are drawn below it).
    mean_ms: f64,
    kills: u32,
    invocations: u32,
    failures: Vec<String>,
}

impl Function {
    async fn start(
        name: &'static str,
        binary: PathBuf,
        env: Vec<(String, String)>,
        seed: u64,
        kill_probability: f64,
        mean_ms: f64,
    ) -> Function {
        let process = LambdaProcess::spawn_binary(name, &binary, &env).await;
        if let Some(e) = process.init_error() {
            panic!("{name} failed to initialize: {e}\n{}", process.logs());
        }
        Function {
            name,
            binary,
            env,
            process: Some(process),
            rng: StdRng::seed_from_u64(seed),
            kill_probability,
            mean_ms,
            kills: 0,
            invocations: 0,
            failures: Vec::new(),
        }
    }

    async fn restart(&mut self, kill: bool) {
        if let Some(p) = self.process.take() {
            if kill {
                p.kill().await;
            } else {
                drop(p);
            }
        }
        self.process = Some(LambdaProcess::spawn_binary(self.name, &self.binary, &self.env).await);
    }

    /// One invocation; with the kill probability, the process is killed at a random point
    /// of it and a fresh one started (the next invocation's cold start).
    async fn invoke(&mut self, event: Value, timeout: Duration) -> Option<Value> {
        self.invocations += 1;
        let kill = self.kill_probability > 0.0 && self.rng.random_bool(self.kill_probability);
        let at = Duration::from_millis((self.rng.random::<f64>() * self.mean_ms * 0.9) as u64);
        let started = Instant::now();
        let p = self.process.as_mut().expect("a process");
        let result = if kill {
            tokio::select! {
                r = p.invoke(event, timeout) => Some(r),
                () = tokio::time::sleep(at) => None,
            }
        } else {
            Some(p.invoke(event, timeout).await)
        };
        match result {
            None => {
                self.kills += 1;
                self.restart(true).await;
                None
            }
            Some(Ok(v)) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                self.mean_ms = 0.7 * self.mean_ms + 0.3 * ms;
                Some(v)
            }
            Some(Err(InvokeError::Function(v))) => {
                let why = format!("{} reported an error: {v}", self.name);
                self.failures.push(why);
                None
            }
            Some(Err(e)) => {
                let logs = self.process.as_ref().map(|p| p.logs()).unwrap_or_default();
                let tail: String = logs
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                let why = format!("{} crashed or hung: {e:?}\n{tail}", self.name);
                self.failures.push(why);
                self.restart(false).await;
                None
            }
        }
    }
}

/// A fetcher instance working the queue, with what it counted.
struct Worker {
    f: Function,
    stack: Stack,
    rng: StdRng,
    redeliver_fraction: f64,
    messages: u64,
    item_failures: u64,
    redeliveries: u64,
    stuck: Option<String>,
}

async fn queue_is_empty(stack: &Stack) -> bool {
    let sqs = aws_sdk_sqs::Client::new(&stack.conf);
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&stack.queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    attrs.values().all(|v| v == "0")
}

impl Worker {
    /// Receives batches of up to 10 and invokes the fetcher until the queue is empty (nothing
    /// visible, in flight or delayed).
    async fn drain(mut self) -> Worker {
        let sqs = aws_sdk_sqs::Client::new(&self.stack.conf);
        let mut idle = 0u32;
        loop {
            let (event, handles) = self
                .stack
                .receive_event(&self.stack.queue_url, Duration::ZERO)
                .await;
            if handles.is_empty() {
                if queue_is_empty(&self.stack).await {
                    return self;
                }
                idle += 1;
                if idle > 3000 {
                    self.stuck = Some("the queue did not drain in 5 minutes".into());
                    return self;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            idle = 0;
            self.messages += handles.len() as u64;
            let bodies: Vec<String> = event["Records"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r["body"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let response = match self.f.invoke(event, FETCHER_TIMEOUT).await {
                Some(v) => v,
                // A crashed or failed invocation: every message of the batch comes back once
                // its visibility timeout passes (made visible at once here).
                None => json!({"batchItemFailures": handles.iter()
                    .map(|(id, _)| json!({"itemIdentifier": id})).collect::<Vec<_>>()}),
            };
            self.item_failures += self
                .stack
                .settle(&self.stack.queue_url, &handles, &response)
                .await as u64;
            for body in bodies {
                if self.rng.random_bool(self.redeliver_fraction) {
                    sqs.send_message()
                        .queue_url(&self.stack.queue_url)
                        .message_body(body)
                        .send()
                        .await
                        .expect("redeliver");
                    self.redeliveries += 1;
                }
            }
        }
    }
}

/// What one lister tick reported.
#[derive(Debug, Default)]
struct Tick {
    errors: Vec<String>,
    completed: bool,
    failures: u64,
    /// Jobs handed on: new blobs and re-driven claims of the listings, failed entries the
    /// sweep re-drove, dead letters recovered. A tick with none did no work.
    jobs: u64,
    known: u64,
    stopped_early: bool,
    sweep_redriven: u64,
    sweep_expired: u64,
    recovered: u64,
    late_found: u64,
    reconciled_windows: u64,
}

fn tick_report(v: &Value) -> Tick {
    let feeds = v["feeds"].as_array().cloned().unwrap_or_default();
    let n = |f: &Value, k: &str| f[k].as_u64().unwrap_or(0);
    let mut errors: Vec<String> = feeds
        .iter()
        .filter_map(|f| f["error"].as_str().map(str::to_owned))
        .collect();
    errors.extend(
        v["tenant_errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_owned)),
    );
    let sweeps = v["sweeps"].as_array().cloned().unwrap_or_default();
    errors.extend(
        sweeps
            .iter()
            .filter_map(|s| s["error"].as_str().map(|e| format!("sweep: {e}"))),
    );
    if let Some(e) = v["dead_letters"]["error"].as_str() {
        errors.push(format!("dead-letter sweep: {e}"));
    }
    let sweep_redriven: u64 = sweeps.iter().map(|s| n(s, "redriven")).sum();
    let recovered = n(&v["dead_letters"], "recovered");
    Tick {
        completed: true,
        failures: errors.len() as u64,
        errors,
        jobs: feeds
            .iter()
            .map(|f| n(f, "enqueued") + n(f, "redriven"))
            .sum::<u64>()
            + sweep_redriven
            + recovered,
        known: feeds.iter().map(|f| n(f, "known")).sum(),
        stopped_early: feeds.iter().any(|f| f["stopped_early"] == json!(true)),
        sweep_redriven,
        sweep_expired: sweeps.iter().map(|s| n(s, "expired")).sum(),
        recovered,
        late_found: feeds.iter().map(|f| n(f, "late_found")).sum(),
        reconciled_windows: feeds.iter().map(|f| n(f, "reconciled_windows")).sum(),
    }
}

/// Ledger entries of the blobs available now that are still open: not in the ledger (not
/// listed yet), `pending`, `enqueued`, or `failed` with a retry — except blobs that fail for
/// good, which stay failed (retried) until Microsoft expires them.
async fn open_entries(
    stack: &Stack,
    emu: &o365_emulator::Emulator,
) -> Vec<(String, Option<shared::model::LedgerEntry>)> {
    let now = emu.now();
    let keys: Vec<(String, String, bool)> = emu
        .truth()
        .into_iter()
        .filter(|b| b.available_at <= now && !b.expired)
        .map(|b| (b.tenant, b.content_id, !b.targeted_by.is_empty()))
        .collect();
    let st = stack.clone();
    let entries = parallel(keys, 6, move |(tenant, content_id, fails)| {
        let store = st.store();
        async move {
            let t = TenantId::parse(&tenant).expect("tenant id");
            let e = store
                .blob_entry(&t, &content_id, Utc::now())
                .await
                .expect("blob entry");
            (content_id, e, fails)
        }
    })
    .await;
    entries
        .into_iter()
        .filter(|(_, e, fails)| match e {
            None => true,
            Some(e) => match e.state {
                // A job SQS dead-lettered by itself leaves its entry enqueued until the
                // lister's dead-letter sweep (next tick) gives it a reason and a retry.
                BlobState::Pending | BlobState::Enqueued => true,
                BlobState::Failed => e.next_attempt_at.is_some() && !fails,
                _ => false,
            },
        })
        .map(|(id, e, _)| (id, e))
        .collect()
}

/// Poison jobs put straight on the queue: they must be dead-lettered, each with a reason.
fn poison_jobs(ids: &[String], emu_base: &str) -> Vec<String> {
    let id = "20261123071500123000001$20261123072512345000002$audit_exchange$Audit_Exchange$na9999";
    let job = |tenant: &str, uri: String| {
        json!({"v":1,"tenant_id":tenant,"content_type":"Audit.Exchange","content_id":id,
            "content_uri":uri,"content_created":"2026-11-23T07:25:12.345Z",
            "content_expiration":"2026-11-30T07:25:12.345Z","listed_at":"2026-11-23T08:00:03Z"})
        .to_string()
    };
    let t = &ids[1];
    vec![
        "{\"v\":1,\"tenant_id\":\"nope\"}".to_owned(),
        "not a job at all".to_owned(),
        // Another host than the tenant's Management API: refused before any request.
        job(
            t,
            format!("http://127.0.0.1:9/api/v1.0/{t}/activity/feed/audit/{id}"),
        ),
        // A tenant nobody configured.
        job(
            "0badc0de-0000-4000-8000-000000000000",
            format!(
                "{emu_base}/api/v1.0/0badc0de-0000-4000-8000-000000000000/activity/feed/audit/{id}"
            ),
        ),
    ]
}

/// `ocsf/tenant_id=…/content_type=…/event_date=…/<contentId>.ndjson.gz` → its parts, the
/// content id decoded.
fn events_key_parts(key: &str) -> Option<(String, String, String, String)> {
    let part = |name: &str| {
        key.split('/')
            .find_map(|seg| seg.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    let file = key.rsplit('/').next()?;
    let encoded = file.strip_suffix(".ndjson.gz")?;
    Some((
        part("tenant_id")?,
        part("content_type")?,
        part("event_date")?,
        percent_decode(encoded),
    ))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else if b[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `InternalError` → `internal-error` (the scenario's spelling of a fault kind).
fn kebab(s: &str) -> String {
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

/// Runs `f` over `items` with `n` tasks at once.
async fn parallel<T, R, F, Fut>(items: Vec<T>, n: usize, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = R> + Send,
{
    let mut chunks: Vec<Vec<T>> = (0..n.max(1)).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        chunks[i % n.max(1)].push(item);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in chunks {
        let f = f.clone();
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(chunk.len());
            for item in chunk {
                out.push(f(item).await);
            }
            out
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.extend(r.expect("task"));
    }
    out
}

/// Runs the chaos scenario of `c` and checks the result; never panics on a failed assertion
/// (it is a violation in the summary), only on a broken harness (moto unreachable, …).
pub async fn run(c: ChaosConfig) -> ChaosSummary {
    let started = Instant::now();
    let say = |m: String| {
        if c.verbose {
            eprintln!("[chaos {:>6.1}s] {m}", started.elapsed().as_secs_f64());
        }
    };
    let p = plan(&c);
    let ids = tenant_ids(c.seed, c.tenants.max(2));
    let stack = Stack::create_at(&c.moto_endpoint, c.fetcher_max_receives).await;
    let proxy = CountingProxy::start_with_faults(&c.moto_endpoint, c.aws).await;
    let (pem, cert_pem) = cert_and_key();
    let emu = o365_emulator::Emulator::start(
        o365_emulator::Scenario::from_toml(&scenario(&c, &p, &ids, &cert_pem)).expect("scenario"),
    )
    .await
    .expect("emulator");
    let dir = std::env::temp_dir().join(format!("o365-chaos-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pem_file = dir.join("tenant0.pem");
    std::fs::write(&pem_file, &pem).expect("pem file");
    let arn = aws_sdk_secretsmanager::Client::new(&stack.conf)
        .create_secret()
        .name(format!("o365-collector/chaos-{}", uuid::Uuid::new_v4()))
        .secret_string(SECRET)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");
    let store = stack.store();
    for t in tenants(&ids, &emu.base_url(), &pem_file, &arn) {
        store.put_tenant(&t).await.expect("put tenant");
    }
    let sqs = aws_sdk_sqs::Client::new(&stack.conf);
    let poison = poison_jobs(&ids, &emu.base_url());
    for body in &poison {
        sqs.send_message()
            .queue_url(&stack.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("poison job");
    }
    let band = p.relist_band_minutes.to_string();
    let lookback = p.lookback_hours.to_string();
    let max_receives = c.fetcher_max_receives.to_string();
    let reconcile = c.reconcile_every_minutes.to_string();
    let env = stack.function_env(&[
        ("AWS_ENDPOINT_URL", proxy.url()),
        ("RUST_LOG", "warn"),
        ("RELIST_BAND_MINUTES", &band),
        ("RECONCILE_EVERY_MINUTES", &reconcile),
        ("FIRST_RUN_LOOKBACK_HOURS", &lookback),
        ("FETCHER_MAX_RECEIVES", &max_receives),
    ]);
    let mut lister = Function::start(
        "lister",
        c.lister_binary.0.clone(),
        env.clone(),
        c.seed ^ 0x1157,
        c.kill_lister,
        3000.0,
    )
    .await;
    let mut workers = Vec::new();
    for i in 0..c.fetchers.max(1) {
        let f = Function::start(
            "fetcher",
            c.fetcher_binary.0.clone(),
            env.clone(),
            c.seed ^ (0xfe7c_0000 + i as u64),
            c.kill_fetcher,
            800.0,
        )
        .await;
        workers.push(Worker {
            f,
            stack: stack.clone(),
            rng: StdRng::seed_from_u64(c.seed ^ (0x4ede_0000 + i as u64)),
            redeliver_fraction: c.redeliver_fraction,
            messages: 0,
            item_failures: 0,
            redeliveries: 0,
            stuck: None,
        });
    }
    say(format!(
        "{} tenants, {} h of content, {} records/h per content type, clock step {:.1} h; band {} min",
        ids.len(),
        p.hours,
        p.records_per_hour,
        p.step.num_seconds() as f64 / 3600.0,
        band
    ));

    let mut s = ChaosSummary {
        seed: c.seed,
        tenants: ids.len(),
        poison_jobs: poison.len(),
        binaries: format!(
            "lister {} ({}), fetcher {} ({})",
            c.lister_binary.0.display(),
            c.lister_binary.1,
            c.fetcher_binary.0.display(),
            c.fetcher_binary.1
        ),
        ..ChaosSummary::default()
    };
    let scheduled: Value =
        serde_json::from_str(include_str!("../../events/lister/scheduled.json")).expect("event");
    let tick = async |lister: &mut Function, s: &mut ChaosSummary| -> Tick {
        s.lister_ticks += 1;
        match lister.invoke(scheduled.clone(), LISTER_TIMEOUT).await {
            Some(v) => {
                let t = tick_report(&v);
                s.duplicate_listings += t.known;
                s.sweep_redriven += t.sweep_redriven;
                s.sweep_expired += t.sweep_expired;
                s.dead_letters_recovered += t.recovered;
                s.late_found += t.late_found;
                s.reconciled_windows += t.reconciled_windows;
                for e in &t.errors {
                    let short: String = e.chars().take(160).collect();
                    *s.lister_errors.entry(short).or_default() += 1;
                }
                if t.failures > 0 {
                    s.lister_feed_failures += 1;
                }
                t
            }
            None => Tick::default(),
        }
    };
    let drain = async |workers: Vec<Worker>| -> Vec<Worker> {
        let mut tasks = tokio::task::JoinSet::new();
        for w in workers {
            tasks.spawn(w.drain());
        }
        let mut out = Vec::new();
        while let Some(w) = tasks.join_next().await {
            out.push(w.expect("fetcher worker"));
        }
        out
    };

    let mut last = Tick::default();
    for step in 0..=c.clock_steps {
        if step > 0 {
            emu.advance_clock(p.step);
        }
        let t0 = Instant::now();
        last = tick(&mut lister, &mut s).await;
        let t1 = Instant::now();
        workers = drain(workers).await;
        say(format!(
            "step {step}/{}: emulator clock {}, tick {:.1} s (jobs {}, reconciled windows {}, completed {}), drain {:.1} s, {} AWS faults, {} kills",
            c.clock_steps,
            emu.now().format("%m-%d %H:%M"),
            (t1 - t0).as_secs_f64(),
            last.jobs,
            last.reconciled_windows,
            last.completed,
            t1.elapsed().as_secs_f64(),
            proxy.injected().values().sum::<u64>(),
            lister.kills + workers.iter().map(|w| w.f.kills).sum::<u32>()
        ));
    }
    // Closing ticks, as the schedule keeps running: until one completes with every feed
    // listed and nothing handed on (listings, sweep, dead letters), and no ledger entry is
    // open. An idle tick with entries still open (a failed entry waiting for its retry, a
    // claim waiting for its grace, a blob for the next reconciliation pass) moves the
    // emulator's clock past what it waits for: the lister's clock is Microsoft's.
    let mut advanced = p.step * i32::try_from(c.clock_steps).unwrap_or(0);
    let mut closing = 0;
    loop {
        // Re-drives of the blobs that fail for good go on until Microsoft expires them (the
        // ledger's promise): a tick whose only work is the sweep's re-drives counts as idle
        // once the drain that follows has settled them; `open_entries` says whether anything
        // else is still open.
        let idle = last.completed
            && last.failures == 0
            && last.jobs == last.sweep_redriven
            && !last.stopped_early;
        let open = if idle {
            open_entries(&stack, &emu).await
        } else {
            Vec::new()
        };
        if idle && open.is_empty() {
            break;
        }
        closing += 1;
        if closing > 16 {
            let open = open_entries(&stack, &emu).await;
            let what: Vec<String> = open
                .iter()
                .take(10)
                .map(|(id, e)| format!("{id}: {e:?}"))
                .collect();
            s.violations.push(format!(
                "the lister never completed a clean tick with nothing open after the last clock step (open: {})",
                what.join("; ")
            ));
            break;
        }
        if idle {
            let now = emu.now();
            let by = open
                .iter()
                .map(|(_, e)| match e {
                    Some(e) if e.state == BlobState::Failed => e
                        .next_attempt_at
                        .map_or(chrono::Duration::minutes(61), |due| {
                            due - now + chrono::Duration::minutes(1)
                        }),
                    _ => chrono::Duration::minutes(61),
                })
                .max()
                .unwrap_or_default()
                .clamp(
                    chrono::Duration::minutes(1),
                    chrono::Duration::minutes(6 * 60 + 5),
                );
            emu.advance_clock(by);
            advanced += by;
            say(format!(
                "{} open entries; emulator clock +{} min",
                open.len(),
                by.num_minutes()
            ));
        }
        last = tick(&mut lister, &mut s).await;
        workers = drain(workers).await;
    }
    s.closing_ticks = closing;
    say(format!(
        "collection done after {closing} closing tick(s); checking"
    ));
    let end = emu.now();

    // --- Counters.
    s.kills_lister = lister.kills;
    for w in &workers {
        s.kills_fetcher += w.f.kills;
        s.fetcher_invocations += w.f.invocations;
        s.messages += w.messages;
        s.batch_item_failures += w.item_failures;
        s.redeliveries += w.redeliveries;
        if let Some(why) = &w.stuck {
            s.violations.push(why.clone());
        }
        for f in &w.f.failures {
            s.violations.push(format!("fetcher invocation failed: {f}"));
        }
    }
    for f in &lister.failures {
        // A lister invocation fails only when the tenant list cannot be read (the next tick
        // retries); a crash or hang is a product bug.
        if f.contains("crashed or hung") {
            s.violations.push(format!("lister: {f}"));
        }
    }
    s.aws_requests = proxy.take().values().sum();
    s.aws_faults = proxy.injected();
    let requests = emu.requests();
    s.emulator_requests = requests.len() as u64;
    for r in &requests {
        if let Some(f) = &r.fault {
            *s.emulator_faults
                .entry(format!("{} {}", r.endpoint, kebab(f)))
                .or_default() += 1;
        } else if r.status == 401 && matches!(r.endpoint, "content" | "blob") {
            s.expired_token_401s += 1;
        }
        if r.endpoint == "token" && r.status == 200 {
            s.tokens_issued += 1;
        }
    }

    // --- Ground truth.
    let truth: Vec<o365_emulator::BlobTruth> = emu
        .truth()
        .into_iter()
        .filter(|b| b.available_at <= end)
        .collect();
    s.blobs = truth.len();
    s.late_blobs = truth.iter().filter(|b| b.late).count();
    s.expired_blobs = truth.iter().filter(|b| b.expired).count();
    s.clock = (c.clock_steps, advanced.num_seconds() as f64 / 3600.0);
    s.very_late_blobs = truth
        .iter()
        .filter(|b| b.available_at - b.content_created > chrono::Duration::hours(24))
        .count();
    s.max_late_hours = truth
        .iter()
        .map(|b| (b.available_at - b.content_created).num_seconds())
        .max()
        .unwrap_or(0) as f64
        / 3600.0;
    let failing = |b: &o365_emulator::BlobTruth| !b.targeted_by.is_empty();
    s.failing_blobs = truth.iter().filter(|b| failing(b)).count();
    let by_blob: HashMap<(String, String), usize> = truth
        .iter()
        .enumerate()
        .map(|(i, b)| ((b.tenant.clone(), b.content_id.clone()), i))
        .collect();
    // record (tenant, content type, Id) → the blobs holding it.
    let mut holders: BTreeMap<(String, String, String), Vec<usize>> = BTreeMap::new();
    for (i, b) in truth.iter().enumerate() {
        for id in &b.record_ids {
            let h = holders
                .entry((b.tenant.clone(), b.content_type.to_owned(), id.clone()))
                .or_default();
            if !h.contains(&i) {
                h.push(i);
            }
        }
    }
    s.records_available = holders.len();
    s.records_in_several_blobs = holders.values().filter(|h| h.len() > 1).count();

    // --- The ledger: every blob done, or expired upstream (and then really expired).
    let keys: Vec<(String, String)> = truth
        .iter()
        .map(|b| (b.tenant.clone(), b.content_id.clone()))
        .collect();
    let ledger_stack = stack.clone();
    let entries = parallel(keys, 6, move |(tenant, content_id)| {
        let store = ledger_stack.store();
        async move {
            let t = TenantId::parse(&tenant).expect("tenant id");
            let e = store
                .blob_entry(&t, &content_id, Utc::now())
                .await
                .expect("blob entry");
            ((tenant, content_id), e)
        }
    })
    .await;
    let mut state: HashMap<(String, String), BlobState> = HashMap::new();
    for (k, e) in entries {
        let b = &truth[by_blob[&k]];
        match e {
            None => s.violations.push(format!(
                "blob {} of {} ({}, available {}) is not in the ledger: never listed",
                b.content_id, b.tenant, b.content_type, b.available_at
            )),
            Some(e) if failing(b) => {
                // Can never be fetched: failed with its reason (retried until Microsoft
                // expires it), or expired — never done, never left pending.
                match e.state {
                    BlobState::Failed
                        if e.reason.as_deref().is_some_and(|r| !r.trim().is_empty()) =>
                    {
                        s.failing_blobs_failed += 1;
                    }
                    BlobState::Expired if b.expired => s.failing_blobs_expired += 1,
                    other => s.violations.push(format!(
                        "blob {} of {} fails for good ({}) but is {other:?} at the end (expired upstream: {}; reason {:?})",
                        b.content_id,
                        b.tenant,
                        b.targeted_by.join(", "),
                        b.expired,
                        e.reason
                    )),
                }
                state.insert(k, e.state);
            }
            Some(e) => {
                match e.state {
                    BlobState::Done => s.blobs_done += 1,
                    BlobState::Expired if b.expired => s.blobs_lost_upstream += 1,
                    other => s.violations.push(format!(
                        "blob {} of {} is {other:?} at the end (expired upstream: {}; reason {:?})",
                        b.content_id, b.tenant, b.expired, e.reason
                    )),
                }
                state.insert(k, e.state);
            }
        }
    }

    // --- The output.
    let all_keys = stack.object_keys().await;
    let ocsf: Vec<String> = all_keys
        .iter()
        .filter(|k| k.starts_with("ocsf/"))
        .cloned()
        .collect();
    let raw = all_keys.iter().filter(|k| k.starts_with("raw/")).count();
    s.objects = (ocsf.len(), raw);
    let mut per_blob_date: BTreeMap<(String, String, String, String), u32> = BTreeMap::new();
    for k in &ocsf {
        match events_key_parts(k) {
            Some(parts) => *per_blob_date.entry(parts).or_default() += 1,
            None => s
                .violations
                .push(format!("events object {k} does not follow the key layout")),
        }
    }
    for (parts, n) in &per_blob_date {
        if *n > 1 {
            s.violations
                .push(format!("{n} objects for blob {} on {}", parts.3, parts.2));
        }
    }
    // One raw object per blob written; a blob that fails for good may have archived what it
    // received.
    if raw < s.blobs_done || raw > s.blobs_done + s.failing_blobs {
        s.violations.push(format!(
            "{raw} raw archive objects for {} blobs written ({} failing for good)",
            s.blobs_done, s.failing_blobs
        ));
    }
    let read_stack = stack.clone();
    let objects = parallel(ocsf, 6, move |key| {
        let st = read_stack.clone();
        async move {
            let lines = st.object_lines(&key).await;
            (key, lines)
        }
    })
    .await;
    let mut written: BTreeMap<(String, String, String), u32> = BTreeMap::new();
    for (key, lines) in &objects {
        let Some((tenant, ct, _date, content_id)) = events_key_parts(key) else {
            continue;
        };
        let blob = by_blob.get(&(tenant.clone(), content_id.clone()));
        if blob.is_none() {
            s.violations
                .push(format!("{key}: no such blob was made available"));
        }
        for l in lines {
            let id = l["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
            if l["unmapped"]["Id"].as_str() != Some(id.as_str()) {
                s.violations
                    .push(format!("{key}: metadata.uid {id} is not the record's Id"));
            }
            if let Some(i) = blob
                && !truth[*i].record_ids.contains(&id)
            {
                s.violations
                    .push(format!("{key}: record {id} is not a record of that blob"));
            }
            *written.entry((tenant.clone(), ct.clone(), id)).or_default() += 1;
        }
    }
    s.records_written = written.len();
    for (k, n) in &written {
        if *n > 1 {
            let in_objects: Vec<&str> = objects
                .iter()
                .filter(|(_, lines)| {
                    lines
                        .iter()
                        .any(|l| l["metadata"]["uid"].as_str() == Some(k.2.as_str()))
                })
                .map(|(key, _)| key.as_str())
                .collect();
            let mut states = Vec::new();
            for key in &in_objects {
                if let Some((tenant, _, _, content_id)) = events_key_parts(key)
                    && let Ok(t) = shared::model::TenantId::parse(&tenant)
                {
                    let e = shared::store::StateStore::blob_entry(
                        &stack.store(),
                        &t,
                        &content_id,
                        chrono::Utc::now(),
                    )
                    .await;
                    states.push(format!("{content_id}: {e:?}"));
                }
            }
            s.violations.push(format!(
                "record {} of {}/{} written {n} times: {states:?}",
                k.2, k.0, k.1
            ));
        }
        match holders.get(k) {
            None => s.violations.push(format!(
                "record {} of {}/{} was never made available (invented)",
                k.2, k.0, k.1
            )),
            Some(h) if h.iter().any(|i| failing(&truth[*i])) => {
                s.records_saved_by_another_copy += 1;
            }
            Some(_) => {}
        }
    }
    for (k, h) in &holders {
        if written.contains_key(k) {
            continue;
        }
        // Acceptable only when no blob holding it could be fetched: each expired upstream
        // (ledger expired) or failing for good (ledger failed with its reason, or expired).
        let excused = h.iter().all(|i| {
            let b = &truth[*i];
            let st = state.get(&(b.tenant.clone(), b.content_id.clone()));
            (b.expired && st == Some(&BlobState::Expired))
                || (failing(b) && matches!(st, Some(BlobState::Failed | BlobState::Expired)))
        });
        if excused && h.iter().any(|i| failing(&truth[*i])) {
            s.records_only_in_failing_blobs += 1;
        } else if excused {
            s.records_lost_upstream += 1;
        } else {
            let blobs: Vec<String> = h
                .iter()
                .map(|i| {
                    let b = &truth[*i];
                    format!(
                        "{} ({:?}{}{})",
                        b.content_id,
                        state.get(&(b.tenant.clone(), b.content_id.clone())),
                        if b.expired { ", expired upstream" } else { "" },
                        if failing(b) { ", fails for good" } else { "" }
                    )
                })
                .collect();
            s.violations.push(format!(
                "record {} of {}/{} LOST: in blob(s) {}",
                k.2,
                k.0,
                k.1,
                blobs.join(", ")
            ));
        }
    }
    let copies: usize = truth
        .iter()
        .filter(|b| state.get(&(b.tenant.clone(), b.content_id.clone())) == Some(&BlobState::Done))
        .map(|b| b.record_ids.len())
        .sum();
    s.duplicates_dropped = copies.saturating_sub(s.records_written);

    // --- The DLQ: the poison jobs and the jobs of blobs that fail for good, each with its
    // reason; a real job of another blob only when SQS moved it by itself and the lister
    // recovered it (its reason says so, the blob is done since).
    let dead = stack.dead_letters().await;
    s.dlq_messages = dead.len();
    let poison_set: BTreeSet<&String> = poison.iter().collect();
    let mut dead_blobs: BTreeSet<(String, String)> = BTreeSet::new();
    for (body, reason) in &dead {
        if reason.trim().is_empty() {
            s.violations
                .push(format!("dead letter without a reason: {body}"));
        }
        if poison_set.contains(body) {
            continue;
        }
        let job: Value = serde_json::from_str(body).unwrap_or_default();
        let key = (
            job["tenant_id"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase(),
            job["content_id"].as_str().unwrap_or_default().to_owned(),
        );
        let blob = by_blob.get(&key).map(|i| &truth[*i]);
        let recovered = reason.starts_with("the fetcher never answered")
            || reason.starts_with("moved here by SQS");
        match blob {
            Some(b) if failing(b) => {
                s.dlq_failing_jobs += 1;
                dead_blobs.insert(key);
            }
            Some(_) if recovered && state.get(&key) == Some(&BlobState::Done) => {
                s.dlq_recovered_jobs += 1;
            }
            _ => s
                .violations
                .push(format!("a real job was dead-lettered ({reason}): {body}")),
        }
    }
    for b in truth.iter().filter(|b| failing(b)) {
        let key = (b.tenant.clone(), b.content_id.clone());
        if state.get(&key) == Some(&BlobState::Failed) && !dead_blobs.contains(&key) {
            s.violations.push(format!(
                "blob {} of {} fails for good and is failed, but its job is not in the DLQ",
                b.content_id, b.tenant
            ));
        }
    }
    let dead_bodies: BTreeSet<&String> = dead.iter().map(|(b, _)| b).collect();
    for p in &poison {
        if !dead_bodies.contains(p) {
            s.violations
                .push(format!("poison job not dead-lettered: {p}"));
        }
    }

    // --- The chaos really happened.
    if s.blobs < c.blobs {
        s.violations.push(format!(
            "only {} blobs for a target of {}",
            s.blobs, c.blobs
        ));
    }
    let fired = |s: &ChaosSummary, what: &str| s.emulator_faults.keys().any(|k| k.ends_with(what));
    for (rate, what) in [
        (c.af429_rate, "af429"),
        (c.server_error_rate, "internal-error"),
        (c.drop_rate, "drop"),
    ] {
        if rate > 0.0 && !fired(&s, what) {
            s.violations.push(format!("no emulator fault {what} fired"));
        }
    }
    for (rate, what) in [
        (c.aws.throttle, "throttle"),
        (c.aws.error, "500"),
        (c.aws.drop, "drop"),
    ] {
        if rate > 0.0 && !s.aws_faults.keys().any(|k| k.ends_with(what)) {
            s.violations.push(format!("no AWS fault {what} injected"));
        }
    }
    if c.late_fraction > 0.0 && s.late_blobs == 0 {
        s.violations.push("no late blob".into());
    }
    if c.expired_fraction > 0.0 && s.expired_blobs == 0 {
        s.violations.push("no expired blob".into());
    }
    if c.duplicate_fraction > 0.0 && s.records_in_several_blobs == 0 {
        s.violations.push("no record in several blobs".into());
    }
    if c.failing_blob_fraction > 0.0 && s.failing_blobs == 0 {
        s.violations.push("no blob fails for good".into());
    }
    if c.max_late_secs > 24 * 3600 && c.late_fraction > 0.0 && s.very_late_blobs == 0 {
        s.violations.push("no blob later than a day".into());
    }
    drop(workers);
    drop(lister);
    let _ = std::fs::remove_dir_all(&dir);
    s.wall = started.elapsed();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unchecked(seed: u64, blobs: usize) -> ChaosConfig {
        let none = || (PathBuf::new(), String::new());
        ChaosConfig::with_binaries(seed, blobs, "", none(), none())
    }

    #[test]
    fn the_plan_reaches_the_blob_target_and_the_band_covers_the_content() {
        for blobs in [100, 300, 3000, 10_000] {
            let c = unchecked(1, blobs);
            let p = plan(&c);
            let per_hour = p.records_per_hour / c.records_per_blob;
            let made = c.tenants * 5 * p.hours as usize * per_hour as usize;
            assert!(made >= blobs || p.hours == 20, "{blobs}: {made}");
            assert!(p.relist_band_minutes <= 24 * 60, "{blobs}: {p:?}");
            assert_eq!(p.late_by.last().map(|r| r.1), Some(c.max_late_secs));
            assert!(p.late_by.iter().all(|(lo, hi)| lo <= hi));
            // Content is late by up to 6 days: reconciliation, not the band, finds it.
            assert!(c.max_late_secs > 5 * 24 * 3600 && c.max_late_secs <= 6 * 24 * 3600);
            let advance = p.step * i32::try_from(c.clock_steps).unwrap();
            assert!(advance >= chrono::Duration::seconds(c.max_late_secs + 1800));
        }
    }

    #[test]
    fn fault_kinds_are_spelled_as_in_scenarios() {
        assert_eq!(kebab("InternalError"), "internal-error");
        assert_eq!(kebab("Af429"), "af429");
        assert_eq!(kebab("too-many-requests"), "too-many-requests");
    }

    #[test]
    fn events_keys_are_parsed_back_to_their_blob() {
        let k = "ocsf/tenant_id=t/content_type=Audit.Exchange/event_date=2026-11-23/a%24b%24audit_exchange.ndjson.gz";
        assert_eq!(
            events_key_parts(k),
            Some((
                "t".into(),
                "Audit.Exchange".into(),
                "2026-11-23".into(),
                "a$b$audit_exchange".into()
            ))
        );
        assert_eq!(events_key_parts("ocsf/x.json"), None);
    }

    #[test]
    fn the_scenario_is_valid_and_seeded() {
        let c = unchecked(9, 300);
        let p = plan(&c);
        let ids = tenant_ids(9, 4);
        assert_eq!(ids, tenant_ids(9, 4));
        let text = scenario(
            &c,
            &p,
            &ids,
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        );
        let s = o365_emulator::Scenario::from_toml(&text).expect("valid scenario");
        assert_eq!(s.tenants.len(), 4);
        assert_eq!(s.faults.len(), 6);
        assert_eq!(s.faults[0].blob_fraction, Some(c.failing_blob_fraction));
    }
}
