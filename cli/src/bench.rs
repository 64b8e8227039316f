//! `bench memory` and `bench run`: figures of a real collection against the emulator;
//! `bench lister-scale` ([`lister_scale`]): the lister's tick over many tenants, in process.
//!
//! Both keep the measured collector apart from everything else: the emulator runs as its own
//! process (`o365-collector emulate --scenario FILE --port 0`) and each measured collection is a
//! fresh `o365-collector run --once --config FILE` child, so its peak RSS and CPU time are the
//! collector's alone and start from a clean heap. The child reports its own resource use when
//! `O365_REPORT_RUSAGE=1` is set ([`report_rusage`]), read from `/proc/self` just before it exits
//! (Linux; elsewhere the figures are missing).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::time::Instant;

use chrono::{Duration, SecondsFormat, Utc};
use rand::SeedableRng;

mod lister_scale;
pub use lister_scale::{ListerScaleArgs, lister_scale};

/// Environment variable that makes `run --once` print a final [`RUSAGE_PREFIX`] line.
pub const RUSAGE_ENV: &str = "O365_REPORT_RUSAGE";
/// Start of the line [`report_rusage`] prints.
const RUSAGE_PREFIX: &str = "rusage: ";
/// Start of the line `emulate` prints with its base URL (`main.rs`).
const LISTENING_PREFIX: &str = "emulator listening on ";
/// Content type of the memory benchmark's single blob.
const MEMORY_CONTENT_TYPE: &str = "Audit.SharePoint";
/// The allocator setting template.yaml gives every function (`MALLOC_ARENA_MAX`): glibc's
/// per-thread arenas otherwise keep freed memory, and a 100 MB blob peaks ~20 MiB higher.
const LAMBDA_ENV: &[(&str, &str)] = &[("MALLOC_ARENA_MAX", "2")];

/// Records of the memory benchmark's baseline blob.
const BASELINE_RECORDS: u32 = 10;
/// Peak RSS allowed for the 100 MB blob (the issue's target).
const TARGET_PEAK_MIB: f64 = 64.0;

/// Options of `bench memory`.
#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    /// Blob sizes in MB (10^6 bytes), comma-separated; each is one run with a single blob.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub sizes: Vec<u32>,
}

/// Options of `bench run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Records per hour of each of the five content types.
    #[arg(long, default_value_t = 2000)]
    pub records_per_hour: u32,
    /// Hours of content (1-160), all listable when the run starts.
    #[arg(long, default_value_t = 24)]
    pub hours: i64,
    /// Probability of an AF429 throttling answer per listing page and blob request.
    #[arg(long, default_value_t = 0.05)]
    pub throttle_rate: f64,
    /// Probability of a 500 answer per blob request.
    #[arg(long, default_value_t = 0.02)]
    pub error_rate: f64,
    /// Records per blob.
    #[arg(long, default_value_t = 100)]
    pub records_per_blob: u32,
    /// Blobs per listing page (small: the listing pages).
    #[arg(long, default_value_t = 20)]
    pub page_size: usize,
    /// Fetch workers of the collector.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
}

/// Resource use of a process, as [`report_rusage`] prints it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rusage {
    /// Peak resident set size (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// User CPU time, ms.
    pub user_ms: u64,
    /// System CPU time, ms.
    pub sys_ms: u64,
}

impl Rusage {
    fn peak_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
    fn cpu_secs(&self) -> f64 {
        (self.user_ms + self.sys_ms) as f64 / 1000.0
    }
    fn parse(line: &str) -> Option<Rusage> {
        let mut out = Rusage::default();
        let mut seen = 0;
        for part in line.strip_prefix(RUSAGE_PREFIX)?.split_whitespace() {
            let (k, v) = part.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            match k {
                "peak_rss_kib" => out.peak_rss_kib = v,
                "user_ms" => out.user_ms = v,
                "sys_ms" => out.sys_ms = v,
                _ => continue,
            }
            seen += 1;
        }
        (seen == 3).then_some(out)
    }
}

/// This process's peak RSS and CPU time from `/proc/self/status` (`VmHWM`) and
/// `/proc/self/stat` (`utime`, `stime`: fields 14 and 15, in clock ticks). `None` off Linux.
fn own_rusage() -> Option<Rusage> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let (user_ms, sys_ms) = cpu_ms("/proc/self/stat")?;
    Some(Rusage {
        peak_rss_kib,
        user_ms,
        sys_ms,
    })
}

/// User and system CPU time in ms from a `/proc/<pid>/stat` file (fields 14 and 15, in ticks).
fn cpu_ms(stat_path: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    // What follows starts at field 3, so fields 14 and 15 are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let hz = clock_ticks_per_second();
    Some((utime * 1000 / hz, stime * 1000 / hz))
}

/// `getconf CLK_TCK` (100 on every mainstream Linux when it cannot be asked).
fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|hz| *hz > 0)
        .unwrap_or(100)
}

/// When `O365_REPORT_RUSAGE=1`, prints `rusage: peak_rss_kib=… user_ms=… sys_ms=…` for this
/// process (the benchmarks read it from a `run --once` child as it exits). Hidden on purpose:
/// it is a measuring hook, not an operator feature.
pub fn report_rusage() {
    if std::env::var_os(RUSAGE_ENV).is_none_or(|v| v != "1") {
        return;
    }
    match own_rusage() {
        Some(r) => println!(
            "{RUSAGE_PREFIX}peak_rss_kib={} user_ms={} sys_ms={}",
            r.peak_rss_kib, r.user_ms, r.sys_ms
        ),
        None => println!("{RUSAGE_PREFIX}unavailable (needs /proc)"),
    }
}

/// The emulator, serving in a child process; killed when dropped.
struct EmulatorProcess {
    child: Child,
    // Kept open so the child never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    base: String,
}

impl EmulatorProcess {
    fn spawn(exe: &Path, scenario: &Path) -> Result<EmulatorProcess, String> {
        let mut child = Command::new(exe)
            .args(["emulate", "--port", "0", "--scenario"])
            .arg(scenario)
            .env("O365_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the emulator ({}): {e}", exe.display()))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the emulator's stdout is not piped".into());
        };
        let mut me = EmulatorProcess {
            child,
            _stdout: BufReader::new(stdout),
            base: String::new(),
        };
        // Read the banner to its last line, so nothing is left to block on.
        let mut line = String::new();
        loop {
            line.clear();
            let n = me
                ._stdout
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the emulator's output: {e}"))?;
            if n == 0 {
                return Err("the emulator exited before it was listening".into());
            }
            if let Some(url) = line.trim().strip_prefix(LISTENING_PREFIX) {
                me.base = url.to_owned();
            }
            if line.starts_with("press Ctrl-C") {
                break;
            }
        }
        if me.base.is_empty() {
            return Err("the emulator did not say where it listens".into());
        }
        Ok(me)
    }

    /// CPU seconds (user + system) the emulator has used so far (Linux).
    fn cpu_secs(&self) -> Option<f64> {
        let (u, s) = cpu_ms(&format!("/proc/{}/stat", self.child.id()))?;
        Some((u + s) as f64 / 1000.0)
    }

    /// `GET {base}{path}` as JSON.
    async fn get_json(&self, path: &str) -> Result<serde_json::Value, String> {
        let url = format!("{}{path}", self.base);
        let resp = shared::api::http_client()
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Result<TempDir, String> {
        let p = std::env::temp_dir().join(format!("o365-bench-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Tenant id, client id and secret of the bundled demo scenario.
struct Identity {
    tenant: String,
    domain: String,
    client_id: String,
    secret: String,
}

fn identity() -> Result<Identity, String> {
    let demo = o365_emulator::Scenario::demo().map_err(|e| e.to_string())?;
    let t = demo.tenants.first().ok_or("demo scenario has no tenant")?;
    let app = demo.apps.first().ok_or("demo scenario has no app")?;
    let secret = app
        .secrets
        .first()
        .ok_or("demo scenario app has no secret")?;
    Ok(Identity {
        tenant: t.id.clone(),
        domain: t.domain.clone(),
        client_id: app.client_id.clone(),
        secret: secret.value.clone(),
    })
}

/// The scenario's content: records per hour of each type, from `start` (hours before now and
/// 45 minutes, so that every hour's blobs are listable when the run starts).
struct Content<'a> {
    hours: i64,
    records_per_hour: &'a [(&'a str, u32)],
    records_per_blob: u32,
    duplicate_fraction: f64,
    page_size: usize,
    faults: &'a str,
}

fn scenario_toml(id: &Identity, c: &Content<'_>) -> Result<String, String> {
    // A slot's blobs appear 30 s to 30 min after it ends: ending all slots 45 min ago makes
    // them all listable now, and `hours` whole slots fit between `start` and now.
    let start = Utc::now() - Duration::hours(c.hours) - Duration::minutes(45);
    let rates: String = c
        .records_per_hour
        .iter()
        .map(|(ct, n)| format!("\"{ct}\" = {n}\n"))
        .collect();
    let text = format!(
        r#"seed = 2026
page_size = {page_size}

[[tenant]]
id = "{tenant}"
domain = "{domain}"
users = 25

[tenant.data]
start = "{start}"
hours_ahead = 0
records_per_blob = {per_blob}
duplicate_fraction = {dup}
[tenant.data.records_per_hour]
{rates}
[[app]]
client_id = "{client}"
home_tenant = "{tenant}"
secrets = [{{ value = "{secret}" }}]
manage_roles = ["ActivityFeed.Read", "ActivityFeed.ReadDlp"]
graph_roles = ["User.Read.All"]
{faults}"#,
        page_size = c.page_size.max(1),
        tenant = id.tenant,
        domain = id.domain,
        start = start.to_rfc3339_opts(SecondsFormat::Secs, true),
        per_blob = c.records_per_blob.max(1),
        dup = c.duplicate_fraction,
        client = id.client_id,
        secret = id.secret,
        faults = c.faults,
    );
    o365_emulator::Scenario::from_toml(&text).map_err(|e| format!("bench scenario: {e}"))?;
    Ok(text)
}

fn config_toml(
    id: &Identity,
    base: &str,
    lookback_hours: i64,
    workers: usize,
    content_types: &[&str],
) -> String {
    let types: Vec<String> = content_types.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        r#"[storage]
output = "out"
state = "state.redb"

[collection]
first_run_lookback_hours = {lookback}
fetch_workers = {workers}

[[tenant]]
id = "{tenant}"
name = "bench"
cloud = "custom"
login_url = "{base}"
manage_url = "{base}"
graph_url = "{base}"
client_id = "{client}"
client_secret_file = "secret.txt"
content_types = [{types}]
"#,
        lookback = lookback_hours.clamp(1, 167),
        workers = workers.max(1),
        tenant = id.tenant,
        client = id.client_id,
        types = types.join(", "),
    )
}

/// What a measured `run --once` child did.
#[derive(Debug, Default)]
struct RunResult {
    rusage: Rusage,
    /// The process, from spawn to exit.
    wall_secs: f64,
    /// The pass itself (`collected in … s`).
    pass_secs: f64,
    records: u64,
    blobs: u64,
    retries: u64,
    failed: bool,
    stdout: String,
}

/// The number right after `label` in `line`, if `line` has it.
fn number_after(line: &str, label: &str) -> Option<f64> {
    let at = line.find(label)? + label.len();
    line[at..]
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

fn parse_run(stdout: &str) -> RunResult {
    let mut r = RunResult {
        stdout: stdout.to_owned(),
        ..RunResult::default()
    };
    for line in stdout.lines() {
        if let Some(u) = Rusage::parse(line) {
            r.rusage = u;
        }
        if let Some(s) = number_after(line, "collected in ") {
            r.pass_secs = s;
        }
        let t = line.trim_start();
        if t.starts_with("total ") {
            r.records = number_after(t, "total").unwrap_or(0.0) as u64;
        }
        if let Some(n) = number_after(t, "blobs written ") {
            r.blobs = n as u64;
        }
        if let Some(n) = number_after(t, "fetch retries ") {
            r.retries = n as u64;
        }
        if t.starts_with("FEED FAILED")
            || t.starts_with("TENANT FAILED")
            || t.starts_with("SWEEP FAILED")
            || t.starts_with("FAILED ")
            || t.starts_with("DEAD-")
        {
            r.failed = true;
        }
    }
    r
}

/// Runs `run --once --config CONFIG` as a child and reads its report and resource use.
fn run_collector(exe: &Path, config: &Path, env: &[(&str, &str)]) -> Result<RunResult, String> {
    let started = Instant::now();
    let out = Command::new(exe)
        .args(["run", "--once", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .env(RUSAGE_ENV, "1")
        .env("O365_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run the collector: {e}"))?;
    let wall = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut r = parse_run(&stdout);
    r.wall_secs = wall;
    if r.rusage.peak_rss_kib == 0 {
        return Err(format!(
            "the collector reported no resource use (exit {}; needs Linux /proc):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if !out.status.success() {
        r.failed = true;
    }
    Ok(r)
}

/// Writes the scenario, starts the emulator, writes the config and secret; the caller runs.
fn prepare(
    dir: &Path,
    exe: &Path,
    id: &Identity,
    scenario: &str,
    lookback_hours: i64,
    workers: usize,
    content_types: &[&str],
) -> Result<(EmulatorProcess, PathBuf), String> {
    let scenario_path = dir.join("scenario.toml");
    std::fs::write(&scenario_path, scenario)
        .map_err(|e| format!("cannot write {}: {e}", scenario_path.display()))?;
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, &id.secret)
        .map_err(|e| format!("cannot write {}: {e}", secret.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600));
    }
    let emu = EmulatorProcess::spawn(exe, &scenario_path)?;
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        config_toml(id, &emu.base, lookback_hours, workers, content_types),
    )
    .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    Ok((emu, config))
}

/// Decompressed bytes of the raw archive objects under `root` (the blobs as received).
fn raw_blob_bytes(root: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".json.gz")
                && let Ok(file) = std::fs::File::open(&path)
            {
                let mut gz = flate2::read::GzDecoder::new(BufReader::new(file));
                total += std::io::copy(&mut gz, &mut std::io::sink()).unwrap_or(0);
            }
        }
    }
    total
}

/// Mean serialized size of a generated record of `content_type`, array commas included.
fn mean_record_bytes(id: &Identity, content_type: &str) -> f64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let users = o365_emulator::data::make_users(&mut rng, &id.domain, 25);
    let n = 2000;
    let records: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let ctx = o365_emulator::data::RecordContext {
                tenant_id: &id.tenant,
                tenant_domain: &id.domain,
                users: &users,
                creation_time: Utc::now() - Duration::seconds(i),
                id: uuid::Builder::from_random_bytes(rand::Rng::random(&mut rng)).into_uuid(),
            };
            o365_emulator::data::make_record(&mut rng, content_type, &ctx)
        })
        .collect();
    let bytes = serde_json::to_vec(&records).map_or(0, |v| v.len());
    (bytes as f64 / n as f64).max(1.0)
}

fn warn_if_debug() {
    if cfg!(debug_assertions) {
        println!(
            "warning: this is a debug build, its figures are meaningless: \
             cargo run --release -p o365-collector -- bench …"
        );
    }
}

fn current_exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))
}

/// One memory measurement: a single blob of `records` records.
fn memory_once(
    exe: &Path,
    id: &Identity,
    records: u32,
    env: &[(&str, &str)],
) -> Result<(RunResult, u64), String> {
    let dir = TempDir::new("memory")?;
    let scenario = scenario_toml(
        id,
        &Content {
            hours: 1,
            records_per_hour: &[(MEMORY_CONTENT_TYPE, records)],
            records_per_blob: records,
            duplicate_fraction: 0.0,
            page_size: 100,
            faults: "",
        },
    )?;
    let (emu, config) = prepare(&dir.0, exe, id, &scenario, 3, 1, &[MEMORY_CONTENT_TYPE])?;
    let run = run_collector(exe, &config, env)?;
    drop(emu);
    let bytes = raw_blob_bytes(&dir.0.join("out").join("raw"));
    if run.failed || run.blobs != 1 {
        println!(
            "warning: expected one blob written, the run reported {} (output follows)\n{}",
            run.blobs, run.stdout
        );
    }
    Ok((run, bytes))
}

/// `o365-collector bench memory [--sizes 1,10,100]`.
pub async fn memory(args: &MemoryArgs) -> Result<ExitCode, String> {
    warn_if_debug();
    let exe = current_exe()?;
    let id = identity()?;
    let per_record = mean_record_bytes(&id, MEMORY_CONTENT_TYPE);
    println!(
        "one tenant, one {MEMORY_CONTENT_TYPE} blob per run, fetch_workers = 1; emulator and \
         each collection in their own processes (mean record {per_record:.0} bytes)"
    );
    let (base, base_bytes) = memory_once(&exe, &id, BASELINE_RECORDS, LAMBDA_ENV)?;
    let (glibc_base, _) = memory_once(&exe, &id, BASELINE_RECORDS, &[])?;
    println!(
        "{:<10} {:>12} {:>9} {:>13} {:>7} {:>7} {:>16} {:>15}",
        "blob",
        "bytes",
        "records",
        "peak RSS MiB",
        "CPU s",
        "wall s",
        "(RSS-base)/blob",
        "glibc-default"
    );
    let row = |label: &str, r: &RunResult, bytes: u64, ratio: Option<f64>, glibc: &RunResult| {
        println!(
            "{label:<10} {bytes:>12} {:>9} {:>13.1} {:>7.2} {:>7.2} {:>16} {:>15.1}",
            r.records,
            r.rusage.peak_mib(),
            r.rusage.cpu_secs(),
            r.wall_secs,
            ratio.map_or_else(|| "-".to_owned(), |x| format!("{x:.2}")),
            glibc.rusage.peak_mib(),
        );
    };
    row("baseline", &base, base_bytes, None, &glibc_base);
    let mut target: Option<f64> = None;
    for &mb in &args.sizes {
        let records = ((f64::from(mb) * 1e6 / per_record).round() as u32).max(1);
        let (r, bytes) = memory_once(&exe, &id, records, LAMBDA_ENV)?;
        let (glibc, _) = memory_once(&exe, &id, records, &[])?;
        let actual_mb = bytes as f64 / 1e6;
        let extra = (r.rusage.peak_rss_kib as f64 - base.rusage.peak_rss_kib as f64) * 1024.0;
        let ratio = (bytes > 0).then(|| extra / bytes as f64);
        row(&format!("{actual_mb:.1} MB"), &r, bytes, ratio, &glibc);
        if mb == 100 {
            target = Some(r.rusage.peak_mib());
        }
    }
    println!(
        "peak RSS MiB: with MALLOC_ARENA_MAX=2, as template.yaml runs the functions; \
         glibc-default: the same run without it (glibc keeps up to 8 arenas per core)"
    );
    println!(
        "peak RSS is the collector process's high-water mark (VmHWM); baseline = the same run \
         with a {BASELINE_RECORDS}-record blob; the ratio is the growth per byte of blob"
    );
    if let Some(peak) = target {
        println!(
            "target: peak RSS <= {TARGET_PEAK_MIB:.0} MiB for the 100 MB blob: {} ({peak:.1} MiB)",
            if peak <= TARGET_PEAK_MIB {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Counts of the emulator's request log.
#[derive(Debug, Default)]
struct Calls {
    total: u64,
    by_endpoint_status: BTreeMap<String, u64>,
    by_fault: BTreeMap<String, u64>,
    blob_calls: u64,
    server_errors: u64,
}

fn count_calls(log: &serde_json::Value) -> Calls {
    let mut c = Calls::default();
    for r in log.as_array().map(Vec::as_slice).unwrap_or_default() {
        let endpoint = r["endpoint"].as_str().unwrap_or("?");
        let status = r["status"].as_u64().unwrap_or(0);
        c.total += 1;
        *c.by_endpoint_status
            .entry(format!("{endpoint} {status}"))
            .or_default() += 1;
        if let Some(f) = r["fault"].as_str() {
            *c.by_fault.entry(f.to_owned()).or_default() += 1;
        }
        if endpoint == "blob" {
            c.blob_calls += 1;
        }
        if status >= 500 {
            c.server_errors += 1;
        }
    }
    c
}

/// Unique record ids of the blobs the emulator lists now (what the run must collect).
fn expected_records(truth: &serde_json::Value) -> u64 {
    let mut ids = std::collections::HashSet::new();
    for b in truth.as_array().map(Vec::as_slice).unwrap_or_default() {
        if b["available"].as_bool() == Some(true) && b["expired"].as_bool() != Some(true) {
            for id in b["record_ids"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if let Some(s) = id.as_str() {
                    ids.insert(s.to_owned());
                }
            }
        }
    }
    ids.len() as u64
}

/// `o365-collector bench run`.
pub async fn run(args: &RunArgs) -> Result<ExitCode, String> {
    warn_if_debug();
    if !(1..=160).contains(&args.hours) {
        return Err("--hours must be between 1 and 160".into());
    }
    for (name, rate) in [
        ("--throttle-rate", args.throttle_rate),
        ("--error-rate", args.error_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("{name} must be between 0 and 1"));
        }
    }
    let exe = current_exe()?;
    let id = identity()?;
    let mut faults = String::new();
    if args.throttle_rate > 0.0 {
        faults.push_str(&format!(
            "\n[[fault]]\nkind = \"af429\"\nendpoints = [\"content\", \"blob\"]\nrate = {}\n",
            args.throttle_rate
        ));
    }
    if args.error_rate > 0.0 {
        faults.push_str(&format!(
            "\n[[fault]]\nkind = \"internal-error\"\nendpoints = [\"blob\"]\nrate = {}\n",
            args.error_rate
        ));
    }
    let rates: Vec<(&str, u32)> = o365_emulator::scenario::CONTENT_TYPES
        .into_iter()
        .map(|ct| (ct, args.records_per_hour))
        .collect();
    let scenario = scenario_toml(
        &id,
        &Content {
            hours: args.hours,
            records_per_hour: &rates,
            records_per_blob: args.records_per_blob,
            duplicate_fraction: 0.05,
            page_size: args.page_size,
            faults: &faults,
        },
    )?;
    println!(
        "one tenant, all five content types, {} records/h each over {} h, {} records per blob, \
         pages of {} blobs, AF429 at {} (listing and blobs), 500 at {} (blobs), 5 % duplicates, \
         {} fetch workers",
        args.records_per_hour,
        args.hours,
        args.records_per_blob,
        args.page_size,
        args.throttle_rate,
        args.error_rate,
        args.workers
    );
    let dir = TempDir::new("run")?;
    let (emu, config) = prepare(
        &dir.0,
        &exe,
        &id,
        &scenario,
        args.hours + 2,
        args.workers,
        &o365_emulator::scenario::CONTENT_TYPES,
    )?;
    let emu_cpu_before = emu.cpu_secs();
    let r = run_collector(&exe, &config, &[])?;
    let emu_cpu = emu
        .cpu_secs()
        .zip(emu_cpu_before)
        .map(|(after, before)| after - before);
    let calls = count_calls(&emu.get_json("/_emulator/requests").await?);
    let expected = expected_records(&emu.get_json("/_emulator/truth").await?);
    drop(emu);
    if r.failed {
        println!(
            "warning: the run reported failures (output follows)\n{}",
            r.stdout
        );
    }
    let secs = r.pass_secs.max(1e-9);
    let per_blob = |n: u64| {
        if r.blobs == 0 {
            0.0
        } else {
            n as f64 / r.blobs as f64
        }
    };
    let throttled: u64 = calls
        .by_fault
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k.contains("429") || k.contains("toomany")
        })
        .map(|(_, n)| n)
        .sum();
    let line = |label: &str, value: String| println!("  {label:<26} {value}");
    line("blobs", r.blobs.to_string());
    line(
        "records",
        format!("{} (emulator ground truth: {expected} unique)", r.records),
    );
    line(
        "wall s",
        format!("{:.2} (process: {:.2})", secs, r.wall_secs),
    );
    line("blobs/s", format!("{:.1}", r.blobs as f64 / secs));
    line("records/s", format!("{:.0}", r.records as f64 / secs));
    line(
        "CPU s",
        format!(
            "{:.2} (user {:.2}, sys {:.2})",
            r.rusage.cpu_secs(),
            r.rusage.user_ms as f64 / 1000.0,
            r.rusage.sys_ms as f64 / 1000.0
        ),
    );
    line(
        "emulator CPU s",
        emu_cpu.map_or_else(|| "-".to_owned(), |c| format!("{c:.2} (not counted above)")),
    );
    line("peak RSS MiB", format!("{:.1}", r.rusage.peak_mib()));
    line("API calls", calls.total.to_string());
    line(
        "API calls per blob",
        format!("{:.2}", per_blob(calls.total)),
    );
    line(
        "blob GETs per blob",
        format!("{:.2}", per_blob(calls.blob_calls)),
    );
    line("throttled answers", throttled.to_string());
    line("5xx answers", calls.server_errors.to_string());
    line("fetch retries (jobs)", r.retries.to_string());
    println!("  calls by endpoint and status:");
    for (k, n) in &calls.by_endpoint_status {
        println!("    {k:<24} {n:>8}");
    }
    if !calls.by_fault.is_empty() {
        println!("  faults injected:");
        for (k, n) in &calls.by_fault {
            println!("    {k:<24} {n:>8}");
        }
    }
    Ok(if r.records == 0 || r.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rusage_line_and_the_report() {
        assert_eq!(
            Rusage::parse("rusage: peak_rss_kib=2048 user_ms=10 sys_ms=5"),
            Some(Rusage {
                peak_rss_kib: 2048,
                user_ms: 10,
                sys_ms: 5
            })
        );
        assert_eq!(Rusage::parse("rusage: unavailable (needs /proc)"), None);
        let r = parse_run(
            "collected in 1.5 s\n  total        42\n  blobs written 3, already collected 0, \
             duplicate records dropped 0 (inside blobs) + 0 (across blobs), fetch retries 2\n",
        );
        assert_eq!(
            (r.pass_secs, r.records, r.blobs, r.retries),
            (1.5, 42, 3, 2)
        );
    }

    #[test]
    fn reads_its_own_resource_use_on_linux() {
        if cfg!(target_os = "linux") {
            let r = own_rusage().unwrap_or_default();
            assert!(r.peak_rss_kib > 0, "{r:?}");
        }
    }

    #[test]
    fn the_scenarios_parse() {
        let id = Identity {
            tenant: "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d".into(),
            domain: "contoso.onmicrosoft.com".into(),
            client_id: "a6099727-6b7b-482c-b509-1df309acc563".into(),
            secret: "s".into(),
        };
        let text = scenario_toml(
            &id,
            &Content {
                hours: 2,
                records_per_hour: &[("Audit.Exchange", 10)],
                records_per_blob: 5,
                duplicate_fraction: 0.05,
                page_size: 20,
                faults: "\n[[fault]]\nkind = \"af429\"\nendpoints = [\"blob\"]\nrate = 0.1\n",
            },
        );
        assert!(text.is_ok(), "{text:?}");
    }
}
