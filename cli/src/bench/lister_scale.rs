//! `bench lister-scale`: the real lister tick (`shared::app::lister::run`) over many tenants.
//!
//! The emulator of Microsoft's endpoints serves N tenants × 5 content types from its own tokio
//! runtime (threads named `emulator`, so its CPU time is told apart from the lister's); the
//! lister runs with `ListerSettings::default()` against a [`MemoryStore`] behind a counting
//! [`StateStore`] adapter and a [`MemoryQueue`]. A first tick (the first-run backfill and the
//! first reconciliation pass) is followed by `--ticks` steady ticks five minutes apart (the
//! emulator's clock and the lister's are moved together), then one steady tick in which the
//! reconciliation pass is due (every blob known). Every tick is measured: wall and CPU time,
//! Management API requests (the emulator's request log), state-store operations by kind, jobs
//! enqueued, and whether every feed's live tail moved. A projection turns the request counts
//! into tick durations at Microsoft's latency.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng};
use shared::api::{ActivityApi, ApiError, BlobBody, ManagementClient, StartOutcome, Subscription};
use shared::app::clients::TenantClients;
use shared::app::lister::{self, ListerReport, ListerSettings};
use shared::app::{ApiProvider, OffsetClock, SetupError};
use shared::model::{
    ContentBlob, ContentType, Cursor, DirectorySync, LedgerEntry, LedgerItem, Tenant, TenantId,
    Versioned, Window,
};
use shared::queue::MemoryQueue;
use shared::retry::RetryPolicy;
use shared::secrets::LocalSecrets;
use shared::store::{Claim, MemoryStore, RecordClaim, StateStore, StoreError};

use super::{TempDir, cpu_ms, warn_if_debug};

/// Time between two scheduled ticks (EventBridge Scheduler, template.yaml).
const TICK: i64 = 5;
/// The Lambda timeout of the lister (template.yaml): the deadline of every measured tick.
const INVOCATION_SECS: u64 = 300;
/// Thread name of the emulator's runtime.
const EMULATOR_THREAD: &str = "emulator";
/// Share of a busy tenant's records per content type (sign-ins and Exchange dominate).
const BUSY_SHARES: [(&str, f64); 5] = [
    ("Audit.AzureActiveDirectory", 0.36),
    ("Audit.Exchange", 0.30),
    ("Audit.SharePoint", 0.24),
    ("Audit.General", 0.09),
    ("DLP.All", 0.01),
];
/// The only content type of a quiet tenant (one record an hour).
const QUIET_TYPE: &str = "Audit.AzureActiveDirectory";
const APP: &str = "5c0a1e00-0b5e-4c4e-9a11-5ca1e5ca1e00";
const SECRET: &str = "lister-scale-secret";

/// Options of `bench lister-scale`.
#[derive(Debug, clap::Args)]
pub struct ListerScaleArgs {
    /// Tenants of the deployment (each with the five content types).
    #[arg(long, default_value_t = 1000)]
    pub tenants: usize,
    /// Busy tenants among them (`--busy-records-per-day` across the five content types).
    #[arg(long, default_value_t = 5)]
    pub busy: usize,
    /// Tenants with no audit activity at all; the rest are quiet (one Entra record an hour).
    #[arg(long, default_value_t = 100)]
    pub idle: usize,
    /// Records a day of a busy tenant.
    #[arg(long, default_value_t = 20_000)]
    pub busy_records_per_day: u32,
    /// Records per blob.
    #[arg(long, default_value_t = 100)]
    pub records_per_blob: u32,
    /// Steady ticks after the first, five minutes apart.
    #[arg(long, default_value_t = 3)]
    pub ticks: u32,
    /// Microsoft's latency per Management API request for the projection, ms.
    #[arg(long, default_value_t = 150.0)]
    pub latency_ms: f64,
    /// DynamoDB latency per state-store operation for the second projection, ms.
    #[arg(long, default_value_t = 6.0)]
    pub store_latency_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Class {
    Busy,
    Quiet,
    Idle,
}

impl Class {
    const ALL: [Class; 3] = [Class::Busy, Class::Quiet, Class::Idle];
    fn name(self) -> &'static str {
        match self {
            Class::Busy => "busy",
            Class::Quiet => "quiet",
            Class::Idle => "idle",
        }
    }
}

/// State-store operations, by method and tenant class (`None`: no tenant, e.g. the tenant list).
type OpCounts = BTreeMap<(&'static str, Option<Class>), u64>;

/// A [`StateStore`] that counts every call, by method and by the tenant's class.
#[derive(Debug)]
struct CountingStore {
    inner: MemoryStore,
    class_of: HashMap<String, Class>,
    counts: Mutex<OpCounts>,
}

impl CountingStore {
    fn count(&self, op: &'static str, tenant: Option<&TenantId>) {
        let class = tenant.and_then(|t| self.class_of.get(t.as_str()).copied());
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((op, class))
            .or_default() += 1;
    }

    fn take(&self) -> OpCounts {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl StateStore for CountingStore {
    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        self.count("put_tenant", Some(&tenant.id));
        self.inner.put_tenant(tenant).await
    }
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.count("list_tenants", None);
        self.inner.list_tenants().await
    }
    async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        self.count("delete_tenant", Some(id));
        self.inner.delete_tenant(id).await
    }
    async fn load_cursor(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
    ) -> Result<Option<Versioned<Cursor>>, StoreError> {
        self.count("load_cursor", Some(tenant));
        self.inner.load_cursor(tenant, content_type).await
    }
    async fn save_cursor(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        cursor: &Cursor,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.count("save_cursor", Some(tenant));
        self.inner
            .save_cursor(tenant, content_type, cursor, expected)
            .await
    }
    async fn claim_blob(
        &self,
        tenant: &TenantId,
        blob: &ContentBlob,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let claim = self.inner.claim_blob(tenant, blob, now).await;
        self.count(
            match claim {
                Ok(Claim::New) => "claim_blob",
                _ => "claim_blob (existing)",
            },
            Some(tenant),
        );
        claim
    }
    async fn set_blob_state(
        &self,
        tenant: &TenantId,
        blob: &ContentBlob,
        entry: &LedgerEntry,
    ) -> Result<bool, StoreError> {
        self.count("set_blob_state", Some(tenant));
        self.inner.set_blob_state(tenant, blob, entry).await
    }
    async fn due_entries(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<LedgerItem>, StoreError> {
        self.count("due_entries", Some(tenant));
        self.inner.due_entries(tenant, now, limit).await
    }
    async fn ledger(
        &self,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<Vec<LedgerItem>, StoreError> {
        self.count("ledger", Some(tenant));
        self.inner.ledger(tenant, now).await
    }
    async fn seen(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        hour: DateTime<Utc>,
    ) -> Result<HashSet<u64>, StoreError> {
        self.count("seen", Some(tenant));
        self.inner.seen(tenant, content_type, hour).await
    }
    async fn add_seen(
        &self,
        tenant: &TenantId,
        content_type: ContentType,
        hour: DateTime<Utc>,
        digests: &[u64],
    ) -> Result<(), StoreError> {
        self.count("add_seen", Some(tenant));
        self.inner
            .add_seen(tenant, content_type, hour, digests)
            .await
    }
    async fn blob_entry(
        &self,
        tenant: &TenantId,
        content_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        self.count("blob_entry", Some(tenant));
        self.inner.blob_entry(tenant, content_id, now).await
    }
    async fn claim_records(
        &self,
        tenant: &TenantId,
        content_id: &str,
        record_ids: &[String],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RecordClaim>, StoreError> {
        self.count("claim_records", Some(tenant));
        self.inner
            .claim_records(tenant, content_id, record_ids, expires_at, now)
            .await
    }
    async fn take_over_record(
        &self,
        tenant: &TenantId,
        record_id: &str,
        from: &str,
        to: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.count("take_over_record", Some(tenant));
        self.inner
            .take_over_record(tenant, record_id, from, to, expires_at)
            .await
    }
    async fn release_records(
        &self,
        tenant: &TenantId,
        content_id: &str,
        record_ids: &[String],
    ) -> Result<(), StoreError> {
        self.count("release_records", Some(tenant));
        self.inner
            .release_records(tenant, content_id, record_ids)
            .await
    }
    async fn load_directory_sync(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<DirectorySync>, StoreError> {
        self.count("load_directory_sync", Some(tenant));
        self.inner.load_directory_sync(tenant).await
    }
    async fn save_directory_sync(
        &self,
        tenant: &TenantId,
        sync: &DirectorySync,
    ) -> Result<(), StoreError> {
        self.count("save_directory_sync", Some(tenant));
        self.inner.save_directory_sync(tenant, sync).await
    }
}

/// A tenant's Management API client whose clock reading ages as if ticks were five minutes
/// apart: the bench runs them seconds apart, so the client's own age of its `Date` reading
/// (real time) would always look fresh and the lister would skip the per-tick
/// `subscriptions/list` that a real tick sends (step 0 of the lister).
#[derive(Debug)]
struct AgedApi {
    inner: Arc<ManagementClient>,
    /// The tick in which this tenant's reading was last refreshed.
    refreshed: Arc<AtomicU64>,
    /// The tick under way.
    tick: Arc<AtomicU64>,
}

impl AgedApi {
    fn mark(&self) {
        self.refreshed
            .store(self.tick.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

impl ActivityApi for AgedApi {
    async fn list_content(
        &self,
        content_type: ContentType,
        window: &Window,
    ) -> Result<Vec<ContentBlob>, ApiError> {
        let r = self.inner.list_content(content_type, window).await;
        self.mark();
        r
    }
    async fn fetch_blob(&self, content_uri: &str) -> Result<BlobBody, ApiError> {
        let r = self.inner.fetch_blob(content_uri).await;
        self.mark();
        r
    }
    async fn start_subscription(
        &self,
        content_type: ContentType,
    ) -> Result<StartOutcome, ApiError> {
        let r = self.inner.start_subscription(content_type).await;
        self.mark();
        r
    }
    async fn list_subscriptions(&self) -> Result<Vec<Subscription>, ApiError> {
        let r = self.inner.list_subscriptions().await;
        self.mark();
        r
    }
    fn server_skew(&self) -> Option<chrono::Duration> {
        self.inner.server_skew()
    }
    fn server_skew_age(&self) -> Option<StdDuration> {
        let age = self.inner.server_skew_age()?;
        if self.refreshed.load(Ordering::SeqCst) < self.tick.load(Ordering::SeqCst) {
            // Measured in an earlier tick: at least a tick interval ago.
            Some(age + StdDuration::from_secs(TICK as u64 * 60))
        } else {
            Some(age)
        }
    }
}

/// The production client provider, handing out [`AgedApi`]s.
#[derive(Debug)]
struct AgedClients {
    clients: TenantClients<LocalSecrets>,
    tick: Arc<AtomicU64>,
    refreshed: Mutex<HashMap<TenantId, Arc<AtomicU64>>>,
}

impl ApiProvider for AgedClients {
    type Api = AgedApi;

    async fn api(&self, tenant: &Tenant) -> Result<Arc<AgedApi>, SetupError> {
        let inner = self.clients.api(tenant).await?;
        let refreshed = self
            .refreshed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant.id.clone())
            .or_default()
            .clone();
        Ok(Arc::new(AgedApi {
            inner,
            refreshed,
            tick: self.tick.clone(),
        }))
    }
}

/// The deployment: tenant ids and classes, busy ones spread among the others.
fn tenants(args: &ListerScaleArgs) -> Vec<(String, Class)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    (0..args.tenants)
        .map(|i| {
            let class = if i < args.busy {
                Class::Busy
            } else if i < args.busy + args.idle {
                Class::Idle
            } else {
                Class::Quiet
            };
            let id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
            (id.to_string(), class)
        })
        .collect()
}

fn busy_rates(per_day: u32) -> Vec<(&'static str, u32)> {
    BUSY_SHARES
        .iter()
        .map(|(ct, share)| {
            (
                *ct,
                ((f64::from(per_day) * share / 24.0).round() as u32).max(1),
            )
        })
        .collect()
}

/// The scenario as TOML: one `[[tenant]]` block per tenant, every subscription enabled (the
/// subscriptions function's job, not the lister's), content from 25 h back to 2 h ahead.
fn scenario_toml(ids: &[(String, Class)], args: &ListerScaleArgs) -> String {
    use std::fmt::Write as _;
    let subs: Vec<String> = o365_emulator::scenario::CONTENT_TYPES
        .iter()
        .map(|ct| format!("\"{ct}\" = \"enabled\""))
        .collect();
    let subs = subs.join(", ");
    let busy: Vec<String> = busy_rates(args.busy_records_per_day)
        .iter()
        .map(|(ct, n)| format!("\"{ct}\" = {n}"))
        .collect();
    let busy = busy.join(", ");
    let mut text = String::from("seed = 11\npage_size = 100\n");
    for (i, (id, class)) in ids.iter().enumerate() {
        let rates = match class {
            Class::Busy => busy.clone(),
            Class::Quiet => format!("\"{QUIET_TYPE}\" = 1"),
            Class::Idle => String::new(),
        };
        let _ = write!(
            text,
            "\n[[tenant]]\nid = \"{id}\"\ndomain = \"t{i}.onmicrosoft.com\"\nusers = 3\n\
             subscriptions = {{ {subs} }}\n[tenant.data]\nhours_back = 25\nhours_ahead = 2\n\
             records_per_blob = {}\nrecords_per_hour = {{ {rates} }}\n",
            args.records_per_blob.max(1)
        );
    }
    let consented: Vec<String> = ids
        .iter()
        .skip(1)
        .map(|(id, _)| format!("\"{id}\""))
        .collect();
    let _ = write!(
        text,
        "\n[[app]]\nclient_id = \"{APP}\"\nhome_tenant = \"{}\"\nmulti_tenant = true\n\
         consented_tenants = [{}]\nsecrets = [{{ value = \"{SECRET}\" }}]\n\
         manage_roles = [\"ActivityFeed.Read\", \"ActivityFeed.ReadDlp\"]\n",
        ids.first().map_or("", |(id, _)| id.as_str()),
        consented.join(", ")
    );
    text
}

fn tenant(id: &str, base: &str, secret_file: &std::path::Path) -> Result<Tenant, String> {
    let spec: shared::config::TenantSpec = toml::from_str(&format!(
        "id = \"{id}\"\ncloud = \"custom\"\nlogin_url = \"{base}\"\nmanage_url = \"{base}\"\n\
         graph_url = \"{base}\"\nclient_id = \"{APP}\"\nclient_secret_file = \"{}\"\n",
        secret_file.display()
    ))
    .map_err(|e| format!("tenant spec: {e}"))?;
    spec.into_tenant(None).map_err(|e| e.to_string())
}

/// CPU seconds of the whole process and of the emulator's threads (Linux `/proc`).
fn cpu_split() -> (f64, f64) {
    let total = cpu_ms("/proc/self/stat").map_or(0, |(u, s)| u + s);
    let mut emulator = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let dir = task.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.trim() == EMULATOR_THREAD {
                let stat = dir.join("stat");
                emulator += cpu_ms(&stat.to_string_lossy()).map_or(0, |(u, s)| u + s);
            }
        }
    }
    (total as f64 / 1000.0, emulator as f64 / 1000.0)
}

/// What one tick did.
#[derive(Debug, Default)]
struct TickFigures {
    label: String,
    wall_secs: f64,
    lister_cpu: f64,
    emulator_cpu: f64,
    /// Management API requests by (endpoint, class).
    requests: BTreeMap<(String, Option<Class>), u64>,
    store: OpCounts,
    jobs: BTreeMap<Class, u64>,
    live_windows: u64,
    reconciled_windows: u64,
    listed: u64,
    feeds: usize,
    moved: usize,
    stopped_early: usize,
    failures: usize,
    /// Every feed's live tail moved (cursor strictly later than after the previous tick).
    all_moved: bool,
}

impl TickFigures {
    fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }
    fn requests_of(&self, class: Class) -> u64 {
        self.requests
            .iter()
            .filter(|((_, c), _)| *c == Some(class))
            .map(|(_, n)| n)
            .sum()
    }
    fn endpoint_of(&self, endpoint: &str, class: Option<Class>) -> u64 {
        self.requests
            .iter()
            .filter(|((e, c), _)| e == endpoint && (class.is_none() || *c == class))
            .map(|(_, n)| n)
            .sum()
    }
    fn store_of(&self, op: &str, class: Option<Class>) -> u64 {
        self.store
            .iter()
            .filter(|((o, c), _)| *o == op && (class.is_none() || *c == class))
            .map(|(_, n)| n)
            .sum()
    }
    fn store_total_of(&self, class: Option<Class>) -> u64 {
        self.store
            .iter()
            .filter(|((_, c), _)| class.is_none() || *c == class)
            .map(|(_, n)| n)
            .sum()
    }
}

/// `o365-collector bench lister-scale`.
pub async fn lister_scale(args: &ListerScaleArgs) -> Result<ExitCode, String> {
    warn_if_debug();
    if args.tenants == 0 || args.busy + args.idle > args.tenants {
        return Err("--tenants must be at least 1 and at least --busy + --idle".into());
    }
    let ids = tenants(args);
    let class_of: HashMap<String, Class> = ids.iter().cloned().collect();
    let count = |c: Class| ids.iter().filter(|(_, k)| *k == c).count();
    let class_n: BTreeMap<Class, usize> = Class::ALL.iter().map(|&c| (c, count(c))).collect();
    let settings = ListerSettings::default();
    let feeds = args.tenants * ContentType::ALL.len();
    println!(
        "lister-scale: {} tenants × 5 content types = {feeds} feeds: {} busy ({} records/day, {} \
         records/blob), {} quiet (1 record/h of {QUIET_TYPE}: 24 a day), {} idle (no activity)",
        args.tenants,
        class_n[&Class::Busy],
        args.busy_records_per_day,
        args.records_per_blob,
        class_n[&Class::Quiet],
        class_n[&Class::Idle],
    );
    println!(
        "lister: shared::app::lister::run with ListerSettings::default() (concurrency {}, band {} \
         min, first-run lookback {} h, reconciliation every {} h in {}-h windows, {} windows per \
         round), deadline {INVOCATION_SECS} s less a {} s margin; MemoryStore behind a counting \
         adapter, MemoryQueue; emulator in-process on its own runtime threads",
        settings.concurrency,
        settings.relist_band.num_minutes(),
        settings.first_run_lookback.num_hours(),
        settings.reconcile_every.map_or(0, |d| d.num_hours()),
        settings.reconcile_window.num_hours(),
        settings.windows_per_round,
        settings.stop_margin.as_secs(),
    );

    let text = scenario_toml(&ids, args);
    let scenario =
        o365_emulator::Scenario::from_toml(&text).map_err(|e| format!("bench scenario: {e}"))?;
    let emu_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(EMULATOR_THREAD)
        .enable_all()
        .build()
        .map_err(|e| format!("emulator runtime: {e}"))?;
    let built = Instant::now();
    let emu = emu_rt
        .spawn(o365_emulator::Emulator::start(scenario))
        .await
        .map_err(|e| format!("emulator: {e}"))?
        .map_err(|e| format!("emulator: {e}"))?;
    let truth = emu.truth();
    println!(
        "emulator: {} blobs, {} records generated in {:.1} s",
        truth.len(),
        truth.iter().map(|b| b.record_ids.len()).sum::<usize>(),
        built.elapsed().as_secs_f64()
    );
    drop(truth);

    let dir = TempDir::new("lister-scale")?;
    let secret = dir.0.join("secret.txt");
    std::fs::write(&secret, SECRET).map_err(|e| format!("{}: {e}", secret.display()))?;
    let store = CountingStore {
        inner: MemoryStore::default(),
        class_of: class_of.clone(),
        counts: Mutex::new(BTreeMap::new()),
    };
    let base = emu.base_url();
    for (id, _) in &ids {
        store
            .inner
            .put_tenant(&tenant(id, &base, &secret)?)
            .await
            .map_err(|e| e.to_string())?;
    }
    let queue = MemoryQueue::new();
    let tick_no = Arc::new(AtomicU64::new(0));
    let apis = AgedClients {
        clients: TenantClients::new(
            shared::api::http_client(),
            LocalSecrets,
            RetryPolicy::default(),
        ),
        tick: tick_no.clone(),
        refreshed: Mutex::new(HashMap::new()),
    };
    let clock = OffsetClock::default();

    let mut cursors: HashMap<(String, ContentType), DateTime<Utc>> = HashMap::new();
    let mut figures: Vec<TickFigures> = Vec::new();
    let mut log_seen = 0usize;
    let total_ticks = args.ticks + 2;
    for t in 0..total_ticks {
        let mut tick_settings = settings.clone();
        let label = if t == 0 {
            "first: backfill + first pass".to_owned()
        } else if t + 1 < total_ticks {
            format!("steady {t}")
        } else {
            // The pass is due every 6 h: moving `reconcile_every` below the time since the first
            // pass makes this steady tick the one in 72 that runs it.
            tick_settings.reconcile_every = Some(Duration::minutes(1));
            "steady, pass due".to_owned()
        };
        if t > 0 {
            emu.advance_clock(Duration::minutes(TICK));
            clock.advance(Duration::minutes(TICK));
        }
        tick_no.store(u64::from(t), Ordering::SeqCst);
        store.take();
        let (cpu0, emu_cpu0) = cpu_split();
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(INVOCATION_SECS);
        apis.clients.set_deadline(Some(deadline));
        let report = lister::run(&store, &queue, &apis, &clock, &tick_settings, deadline)
            .await
            .map_err(|e| format!("lister: {e}"))?;
        // The lister Lambda's dead-letter sweep: one SQS ReceiveMessage per tick (nothing there).
        let _ = lister::dead_letter_sweep(&store, &queue, &clock, 50).await;
        let wall = started.elapsed().as_secs_f64();
        let (cpu1, emu_cpu1) = cpu_split();
        let mut f = TickFigures {
            label,
            wall_secs: wall,
            emulator_cpu: emu_cpu1 - emu_cpu0,
            lister_cpu: (cpu1 - cpu0) - (emu_cpu1 - emu_cpu0),
            store: store.take(),
            ..TickFigures::default()
        };
        for job in queue.drain() {
            if let Some(&c) = class_of.get(job.tenant_id.as_str()) {
                *f.jobs.entry(c).or_default() += 1;
            }
        }
        let log = emu.requests();
        for r in log.iter().skip(log_seen) {
            let class = r
                .tenant
                .as_deref()
                .and_then(|t| class_of.get(&t.to_ascii_lowercase()).copied());
            *f.requests
                .entry((r.endpoint.to_owned(), class))
                .or_default() += 1;
        }
        log_seen = log.len();
        drop(log);
        summarize(&report, &mut cursors, &mut f);
        println!(
            "tick {t} ({}): {:.1} s wall, {} API requests, {} live + {} reconciliation windows, \
             {} jobs, {}/{} feeds moved{}",
            f.label,
            f.wall_secs,
            f.total_requests(),
            f.live_windows,
            f.reconciled_windows,
            f.jobs.values().sum::<u64>(),
            f.moved,
            f.feeds,
            if f.stopped_early > 0 {
                format!(", {} feeds stopped early", f.stopped_early)
            } else {
                String::new()
            }
        );
        figures.push(f);
    }
    drop(emu);
    emu_rt.shutdown_background();

    print_tables(args, &class_n, &figures, &settings);
    let failed = figures.iter().any(|f| f.failures > 0);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn summarize(
    report: &ListerReport,
    cursors: &mut HashMap<(String, ContentType), DateTime<Utc>>,
    f: &mut TickFigures,
) {
    f.feeds = report.feeds.len();
    f.failures = report.failures();
    for feed in &report.feeds {
        f.live_windows += u64::from(feed.windows);
        f.reconciled_windows += u64::from(feed.reconciled_windows);
        f.listed += feed.listed;
        if feed.stopped_early {
            f.stopped_early += 1;
        }
        let key = (feed.tenant.clone(), feed.content_type);
        let moved = match (feed.cursor, cursors.get(&key)) {
            (Some(now), Some(before)) => now > *before,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if moved {
            f.moved += 1;
        }
        if let Some(c) = feed.cursor {
            cursors.insert(key, c);
        }
    }
    f.all_moved = f.moved == f.feeds && f.feeds > 0;
}

/// Store operations shown as columns (the rest are summed under `other`).
const STORE_COLUMNS: [(&str, &str); 7] = [
    ("load_cursor", "cursor GET"),
    ("save_cursor", "cursor PUT"),
    ("seen", "summary GET"),
    ("add_seen", "summary ADD"),
    ("claim_blob", "claim"),
    ("claim_blob (existing)", "claim (known)"),
    ("due_entries", "sweep Query"),
];

fn print_tables(
    args: &ListerScaleArgs,
    class_n: &BTreeMap<Class, usize>,
    figures: &[TickFigures],
    settings: &ListerSettings,
) {
    let n = args.tenants as f64;
    println!();
    println!(
        "| tick | wall s | lister CPU s | emulator CPU s | API requests | live windows | reconciliation windows | blobs listed | jobs | every feed's cursor moved | stopped early |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for (i, f) in figures.iter().enumerate() {
        println!(
            "| {i} {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} ({}/{}) | {} |",
            f.label,
            f.wall_secs,
            f.lister_cpu,
            f.emulator_cpu,
            f.total_requests(),
            f.live_windows,
            f.reconciled_windows,
            f.listed,
            f.jobs.values().sum::<u64>(),
            if f.all_moved { "yes" } else { "NO" },
            f.moved,
            f.feeds,
            f.stopped_early,
        );
    }

    println!();
    println!(
        "Per tenant per tick, by class (Management API requests from the emulator's log; state-store calls counted at the adapter):"
    );
    let mut head = String::from(
        "| tick | class | API requests | token | subscriptions/list | content listings |",
    );
    let mut rule = String::from("|---|---|---:|---:|---:|---:|");
    for (_, name) in STORE_COLUMNS {
        head.push_str(&format!(" {name} |"));
        rule.push_str("---:|");
    }
    head.push_str(" store other | store total | jobs |");
    rule.push_str("---:|---:|---:|");
    println!("{head}");
    println!("{rule}");
    for (i, f) in figures.iter().enumerate() {
        for class in Class::ALL {
            let k = class_n[&class];
            if k == 0 {
                continue;
            }
            let per = |x: u64| x as f64 / k as f64;
            let mut line = format!(
                "| {i} | {} ({k}) | {:.2} | {:.2} | {:.2} | {:.2} |",
                class.name(),
                per(f.requests_of(class)),
                per(f.endpoint_of("token", Some(class))),
                per(f.endpoint_of("subscriptions", Some(class))),
                per(f.endpoint_of("content", Some(class))),
            );
            let mut shown = 0;
            for (op, _) in STORE_COLUMNS {
                let v = f.store_of(op, Some(class));
                shown += v;
                line.push_str(&format!(" {:.2} |", per(v)));
            }
            let total = f.store_total_of(Some(class));
            line.push_str(&format!(
                " {:.2} | {:.2} | {:.2} |",
                per(total - shown),
                per(total),
                per(f.jobs.get(&class).copied().unwrap_or(0))
            ));
            println!("{line}");
        }
    }
    println!(
        "Per deployment per tick, not per tenant: 1 tenant list (state store Query) and 1 DLQ receive (SQS ReceiveMessage)."
    );

    // Projection.
    let c = settings.concurrency.max(1) as f64;
    let l = args.latency_ms / 1000.0;
    let s = args.store_latency_ms / 1000.0;
    let budget = (INVOCATION_SECS - settings.stop_margin.as_secs()) as f64;
    let est = |requests: f64, store_ops: f64| (requests * l + store_ops * s) / c;
    println!();
    println!(
        "Projection: tick ≈ requests / C × L with C = {c:.0} (feeds listed at once) and Microsoft's L = {:.0} ms; \
         + state-store calls / C × {:.0} ms (DynamoDB) in the second column; budget {budget:.0} s ({INVOCATION_SECS} s less the {} s margin)",
        args.latency_ms,
        args.store_latency_ms,
        settings.stop_margin.as_secs()
    );
    println!(
        "| tick | API requests | store calls | est. s (API) | est. s (API + store) | fits one invocation |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    for (i, f) in figures.iter().enumerate() {
        let r = f.total_requests() as f64;
        let st = f.store_total_of(None) as f64;
        let e = est(r, st);
        println!(
            "| {i} {} | {r:.0} | {st:.0} | {:.1} | {e:.1} | {} |",
            f.label,
            est(r, 0.0),
            if e <= budget {
                "yes".to_owned()
            } else {
                format!("no: {:.1} invocations", e / budget)
            }
        );
    }
    // Steady state: the average of the steady ticks without a pass, plus the pass spread over
    // the 72 ticks of 6 h, scaled from the measured pass (windows since the first listing) to
    // a pass over the whole 7 days.
    let steady: Vec<&TickFigures> = figures
        .iter()
        .skip(1)
        .take(figures.len().saturating_sub(2))
        .collect();
    let (Some(pass), false) = (figures.last(), steady.is_empty()) else {
        return;
    };
    let avg = |g: &dyn Fn(&TickFigures) -> f64| {
        steady.iter().map(|f| g(f)).sum::<f64>() / steady.len() as f64
    };
    let steady_req = avg(&|f| f.total_requests() as f64);
    let steady_store = avg(&|f| f.store_total_of(None) as f64);
    let pass_windows = pass.reconciled_windows as f64;
    let pass_req = (pass.total_requests() as f64 - steady_req).max(0.0);
    let pass_store = (pass.store_total_of(None) as f64 - steady_store).max(0.0);
    let feeds = (args.tenants * ContentType::ALL.len()) as f64;
    let window_h = settings.reconcile_window.num_minutes().max(1) as f64 / 60.0;
    let full_windows_per_feed =
        ((7.0 * 24.0 - 5.0 / 60.0 - settings.relist_band.num_minutes() as f64 / 60.0) / window_h)
            .ceil();
    let ticks_per_pass = settings
        .reconcile_every
        .map_or(f64::INFINITY, |d| d.num_minutes() as f64 / TICK as f64);
    let per_window_req = if pass_windows > 0.0 {
        pass_req / pass_windows
    } else {
        0.0
    };
    let per_window_store = if pass_windows > 0.0 {
        pass_store / pass_windows
    } else {
        0.0
    };
    let full_pass_req = per_window_req * full_windows_per_feed * feeds;
    let full_pass_store = per_window_store * full_windows_per_feed * feeds;
    let amort_req = steady_req + full_pass_req / ticks_per_pass;
    let amort_store = steady_store + full_pass_store / ticks_per_pass;
    println!();
    println!(
        "Steady state at {} tenants: steady tick {steady_req:.0} requests + {steady_store:.0} store calls \
         ({:.2} + {:.2} per tenant); the pass-due tick listed {pass_windows:.0} reconciliation windows \
         ({:.1} per feed: the pass reaches back to the first listing, 24 h) at {per_window_req:.2} requests + \
         {per_window_store:.2} store calls per window; a pass over the whole 7 days is {full_windows_per_feed:.0} \
         windows per feed = {full_pass_req:.0} requests + {full_pass_store:.0} store calls, every {ticks_per_pass:.0} ticks",
        args.tenants,
        steady_req / n,
        steady_store / n,
        pass_windows / feeds,
    );
    println!(
        "  averaged over the {ticks_per_pass:.0} ticks: {amort_req:.0} requests + {amort_store:.0} store calls per tick \
         ({:.2} + {:.2} per tenant, {:.2} reconciliation windows per feed per tick) ≈ {:.1} s (API) / {:.1} s (API + store)",
        amort_req / n,
        amort_store / n,
        full_windows_per_feed / ticks_per_pass,
        est(amort_req, 0.0),
        est(amort_req, amort_store),
    );
    println!(
        "  but the lister runs a due pass to its end inside one tick: the tick in which it is due needs \
         ≈ {:.1} s (API + store) and, past the budget, the pass goes on in the following ticks \
         (the live tail of every feed still comes first in each)",
        est(steady_req + full_pass_req, steady_store + full_pass_store)
    );
    let per_tenant_steady = est(steady_req, steady_store) / n;
    let per_tenant_amort = est(amort_req, amort_store) / n;
    let per_tenant_first = figures.first().map_or(0.0, |f| {
        est(f.total_requests() as f64, f.store_total_of(None) as f64) / n
    });
    println!(
        "  one {INVOCATION_SECS}-s invocation per tick holds: the live tail and sweep of up to {:.0} tenants; \
         with the reconciliation averaged in (each 7-day pass done within its 6 h), up to {:.0} tenants; \
         a fresh start of {} tenants needs {:.1} invocations ({:.0} tenants fit in one)",
        budget / per_tenant_steady,
        budget / per_tenant_amort,
        args.tenants,
        per_tenant_first * n / budget,
        budget / per_tenant_first.max(1e-9),
    );
    let fits = est(amort_req, amort_store) <= budget;
    println!(
        "  {} tenants: {} in one invocation per tick on average ({:.0} s of {budget:.0} s)",
        args.tenants,
        if fits { "fit" } else { "do NOT fit" },
        est(amort_req, amort_store)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(tenants: usize) -> ListerScaleArgs {
        ListerScaleArgs {
            tenants,
            busy: 1,
            idle: 1,
            busy_records_per_day: 20_000,
            records_per_blob: 100,
            ticks: 1,
            latency_ms: 150.0,
            store_latency_ms: 6.0,
        }
    }

    #[test]
    fn the_scenario_of_many_tenants_parses() {
        let a = args(4);
        let ids = tenants(&a);
        assert_eq!(
            ids.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
            vec![Class::Busy, Class::Idle, Class::Quiet, Class::Quiet]
        );
        let s = o365_emulator::Scenario::from_toml(&scenario_toml(&ids, &a));
        assert!(s.is_ok(), "{s:?}");
        let total: u32 = busy_rates(20_000).iter().map(|(_, n)| n).sum();
        assert!((820..=845).contains(&total), "{total}");
    }
}
