//! `run`: the lister and fetchers in one process, with local or AWS storage; a pass is
//! stopped cleanly by Ctrl-C or SIGTERM.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use shared::api::http_client;
use shared::app::SystemClock;
use shared::app::clients::TenantClients;
use shared::app::local::{LocalReport, LocalSettings, run_pass};
use shared::config::LocalConfig;
use shared::model::{BlobState, ContentType};
use shared::retry::RetryPolicy;
use shared::secrets::AwsSecrets;
use shared::store::StateStore;

use crate::local::{AnySink, AnyStore, open_sink, open_store};
use crate::progress::{BarSlot, RunProgress};
use crate::signals::Interrupt;

/// Exit status: everything available was collected.
pub const EXIT_OK: u8 = 0;
/// Exit status: something is still open or failed (the next run retries it).
pub const EXIT_OPEN: u8 = 1;
/// Exit status: a usage or configuration error (nothing was collected).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: Microsoft expired content before it could be fetched (data lost upstream).
pub const EXIT_LOST: u8 = 3;

/// Most failed blobs printed one per line (then a count).
const MAX_FAILED_LINES: usize = 10;
/// Most lost blobs printed one per line (then a count).
const MAX_LOST_LINES: usize = 20;

/// The settings of a local pass from a checked configuration.
pub fn settings(cfg: &LocalConfig) -> LocalSettings {
    LocalSettings {
        lister: cfg.lister.clone(),
        fetcher: cfg.fetcher.clone(),
        workers: cfg.workers,
        queue_capacity: cfg.queue_capacity,
        ..LocalSettings::default()
    }
}

/// A pass, with what the ledger says after it.
#[derive(Debug)]
pub struct PassOutcome {
    /// The pass's report.
    pub report: LocalReport,
    /// Blobs Microsoft expired before they could be fetched that this pass found, with the
    /// reason: the report's and those the re-drive at the start of the pass marked.
    pub lost: Vec<(String, String)>,
    /// Open entries in the ledger after the pass (`None`: not counted).
    pub open_in_ledger: Option<u64>,
}

impl PassOutcome {
    /// The exit status of `run --once` for this pass (a signal's status is the caller's).
    pub fn exit_code(&self) -> u8 {
        if !self.lost.is_empty() {
            EXIT_LOST
        } else if !self.report.complete() || !self.report.dead_letters.is_empty() {
            EXIT_OPEN
        } else {
            EXIT_OK
        }
    }
}

/// The collector's dependencies for local passes.
pub struct Collector {
    /// State.
    pub store: Arc<AnyStore>,
    /// Objects.
    pub sink: Arc<AnySink>,
    /// Management API clients.
    pub apis: Arc<TenantClients<AwsSecrets>>,
    /// Pass knobs.
    pub settings: LocalSettings,
}

impl Collector {
    /// Opens the configuration's store and sink and registers its tenants in the store.
    ///
    /// # Errors
    /// A message naming what cannot be opened.
    pub async fn open(config: &Path, cfg: &LocalConfig) -> Result<Collector, String> {
        if cfg.tenants.is_empty() {
            return Err(format!(
                "{} lists no [[tenant]]: add one (docs/config.md), or try `o365-collector demo`",
                config.display()
            ));
        }
        let store = Arc::new(open_store(&cfg.state).await?);
        let sink = Arc::new(open_sink(&cfg.output).await?);
        for t in &cfg.tenants {
            store.put_tenant(t).await.map_err(|e| e.to_string())?;
        }
        let conf = shared::aws::sdk_config(None).await;
        let secrets = AwsSecrets::new(aws_sdk_secretsmanager::Client::new(&conf));
        let apis = Arc::new(TenantClients::new(
            http_client(),
            secrets,
            RetryPolicy::default(),
        ));
        Ok(Collector {
            store,
            sink,
            apis,
            settings: settings(cfg),
        })
    }

    /// One pass with progress, stopped by `interrupt`. With `check_ledger` (a `--once` run or
    /// an interrupted one) the ledger is read afterwards for what is still open and what was
    /// lost upstream.
    ///
    /// # Errors
    /// When the tenant list cannot be read.
    pub async fn pass(
        &self,
        bar: &BarSlot,
        interrupt: &Interrupt,
        check_ledger: bool,
    ) -> Result<PassOutcome, String> {
        let started = Utc::now();
        let progress = RunProgress::start(bar);
        let logger = progress.spawn_logger();
        let report = run_pass(
            self.store.clone(),
            self.sink.clone(),
            self.apis.clone(),
            Arc::new(SystemClock),
            &self.settings,
            progress.clone(),
            interrupt.stop_signal(),
        )
        .await;
        if let Some(l) = logger {
            l.abort();
        }
        progress.finish(bar);
        let report = report.map_err(|e| e.to_string())?;
        let mut lost: Vec<(String, String)> = report
            .expired
            .iter()
            .map(|id| (id.clone(), String::new()))
            .collect();
        let mut open_in_ledger = None;
        if check_ledger || report.interrupted {
            match self.after_pass(started).await {
                Ok((open, expired)) => {
                    open_in_ledger = Some(open);
                    for (id, reason) in expired {
                        match lost.iter_mut().find(|(l, _)| *l == id) {
                            Some(l) => l.1 = reason,
                            None => lost.push((id, reason)),
                        }
                    }
                }
                Err(e) => eprintln!("warning: cannot read the ledger after the pass: {e}"),
            }
        }
        Ok(PassOutcome {
            report,
            lost,
            open_in_ledger,
        })
    }

    /// Open entries now, and entries marked expired since `started` (content id, reason).
    async fn after_pass(
        &self,
        started: DateTime<Utc>,
    ) -> Result<(u64, Vec<(String, String)>), String> {
        let now = Utc::now();
        // One second of slack: the pass stamps entries with the same clock.
        let since = started - chrono::Duration::seconds(1);
        let mut open = 0u64;
        let mut expired = Vec::new();
        for t in self.store.list_tenants().await.map_err(|e| e.to_string())? {
            for item in self
                .store
                .ledger(&t.id, now)
                .await
                .map_err(|e| e.to_string())?
            {
                if item.entry.is_open() {
                    open += 1;
                }
                if item.entry.state == BlobState::Expired && item.entry.updated_at >= since {
                    expired.push((item.blob.content_id, item.entry.reason.unwrap_or_default()));
                }
            }
        }
        Ok((open, expired))
    }
}

/// Prints a pass report for people (stdout).
pub fn print_report(report: &LocalReport) {
    let lost: Vec<(String, String)> = report
        .expired
        .iter()
        .map(|id| (id.clone(), String::new()))
        .collect();
    print_report_with(report, &lost);
}

/// [`print_report`] with the blobs lost upstream found in the ledger as well.
pub fn print_report_with(report: &LocalReport, lost: &[(String, String)]) {
    println!("collected in {:.1} s", report.seconds);
    println!("  {:<28} {:>10}", "content type", "records");
    for ct in ContentType::ALL {
        let n = report.records.get(ct.as_str()).copied().unwrap_or(0);
        println!("  {:<28} {:>10}", ct.as_str(), n);
    }
    let total: u64 = report.records.values().sum();
    println!("  {:<28} {:>10}", "total", total);
    println!(
        "  blobs written {}, already collected {}, duplicate records dropped {} (inside blobs) + {} (across blobs), fetch retries {}",
        report.blobs_written,
        report.already_done,
        report.duplicates,
        report.cross_blob_duplicates,
        report.retries
    );
    println!(
        "  listing: {} jobs enqueued over {} feeds",
        report.lister.jobs(),
        report.lister.feeds.len()
    );
    if report.redriven_at_start > 0 {
        println!(
            "  re-driven at start: {} blobs earlier runs left unfinished",
            report.redriven_at_start
        );
    }
    for f in report.lister.feeds.iter().filter(|f| f.error.is_some()) {
        println!(
            "  FEED FAILED {} {}: {}",
            f.tenant,
            f.content_type,
            f.error.as_deref().unwrap_or("")
        );
    }
    for s in report.lister.sweeps.iter().filter(|s| s.error.is_some()) {
        println!(
            "  SWEEP FAILED {}: {}",
            s.tenant,
            s.error.as_deref().unwrap_or("")
        );
    }
    for e in &report.lister.tenant_errors {
        println!("  TENANT FAILED {e}");
    }
    for (id, reason) in lost.iter().take(MAX_LOST_LINES) {
        let why = if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        };
        println!(
            "  LOST UPSTREAM (blob expired at Microsoft before it could be fetched): {id}{why}"
        );
    }
    if lost.len() > MAX_LOST_LINES {
        println!(
            "  … and {} more lost upstream (`o365-collector status --json` lists them all)",
            lost.len() - MAX_LOST_LINES
        );
    }
    for (id, reason) in report.failed.iter().take(MAX_FAILED_LINES) {
        println!("  FAILED {id}: {reason}");
    }
    if report.failed.len() > MAX_FAILED_LINES {
        println!(
            "  … and {} more failed (`o365-collector status` shows them)",
            report.failed.len() - MAX_FAILED_LINES
        );
    }
    if !report.failed.is_empty() {
        println!(
            "  {} blobs failed: they stay open in the ledger and the next run retries them",
            report.failed.len()
        );
    }
    if report.left_open > 0 {
        println!(
            "  LEFT OPEN: {} blobs listed but not fetched in this pass (time limit); the next run collects them",
            report.left_open
        );
    }
    if report.lister.stopped_early() {
        println!("  listing stopped early (time limit); the next run resumes it");
    }
}

/// What an interrupted pass did and left, for stderr: one short block.
pub fn print_interrupted(outcome: &PassOutcome) {
    let r = &outcome.report;
    let records: u64 = r.records.values().sum();
    let left = match outcome.open_in_ledger {
        Some(n) => format!("{n} left open in the ledger"),
        None => "what was not finished stays open in the ledger".to_owned(),
    };
    eprintln!(
        "interrupted: {} blobs written ({records} records), {left} — the next run collects them",
        r.blobs_written
    );
    if !r.failed.is_empty() {
        eprintln!(
            "  {} blobs failed in this pass (the next run retries them), e.g. {}: {}",
            r.failed.len(),
            r.failed[0].0,
            r.failed[0].1
        );
    }
    if !outcome.lost.is_empty() {
        let ids: Vec<&str> = outcome
            .lost
            .iter()
            .take(MAX_FAILED_LINES)
            .map(|(id, _)| id.as_str())
            .collect();
        eprintln!(
            "  {} blobs expired at Microsoft before they could be fetched (data lost upstream): {}{}",
            outcome.lost.len(),
            ids.join(", "),
            if outcome.lost.len() > ids.len() {
                ", …"
            } else {
                ""
            }
        );
    }
}

/// `o365-collector run --config FILE [--once]`.
pub async fn run(config: &Path, once: bool, bar: &BarSlot) -> Result<ExitCode, String> {
    let interrupt = Interrupt::install()?;
    let cfg = LocalConfig::from_file(config).map_err(|e| e.to_string())?;
    let collector = Collector::open(config, &cfg).await?;
    loop {
        let outcome = collector.pass(bar, &interrupt, once).await?;
        if let Some(code) = interrupt.code() {
            print_interrupted(&outcome);
            return Ok(ExitCode::from(code));
        }
        print_report_with(&outcome.report, &outcome.lost);
        if once {
            // Benchmarks only (`O365_REPORT_RUSAGE=1`): peak RSS and CPU time, as the last line.
            crate::bench::report_rusage();
            return Ok(ExitCode::from(outcome.exit_code()));
        }
        tokio::select! {
            () = tokio::time::sleep(cfg.interval) => {}
            () = interrupt.stopped() => {
                eprintln!("interrupted between passes: nothing was in flight; the next run carries on");
                return Ok(ExitCode::from(interrupt.code().unwrap_or(EXIT_OPEN)));
            }
        }
    }
}
