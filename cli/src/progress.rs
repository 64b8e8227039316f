//! Progress of `run`: a live bar on a terminal (blobs listed and fetched, records per content
//! type), plain log lines every few seconds otherwise (CI, `nohup`, a pipe).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared::app::fetcher::JobOutcome;
use shared::app::local::Progress;
use shared::model::{ContentType, FetchJob};

/// How often a plain progress line is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts of one content type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Row {
    /// Blobs put on the queue.
    pub listed: u64,
    /// Jobs ended (written, already done, expired, dead-lettered or given up).
    pub fetched: u64,
    /// Records written.
    pub records: u64,
}

/// The counts so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Per content type.
    pub rows: BTreeMap<ContentType, Row>,
    /// Jobs that ended without their records written (dead-lettered or given up).
    pub failed: u64,
}

impl Counts {
    fn total(&self) -> Row {
        self.rows.values().fold(Row::default(), |a, r| Row {
            listed: a.listed + r.listed,
            fetched: a.fetched + r.fetched,
            records: a.records + r.records,
        })
    }

    /// One line: totals, then records per content type.
    pub fn line(&self) -> String {
        let t = self.total();
        let per: Vec<String> = self
            .rows
            .iter()
            .map(|(ct, r)| {
                format!(
                    "{} {}/{} blobs {} rec",
                    short(*ct),
                    r.fetched,
                    r.listed,
                    r.records
                )
            })
            .collect();
        let failed = if self.failed > 0 {
            format!(", {} FAILED", self.failed)
        } else {
            String::new()
        };
        format!(
            "blobs {}/{} fetched, {} records{failed} | {}",
            t.fetched,
            t.listed,
            t.records,
            per.join(" · ")
        )
    }
}

fn short(ct: ContentType) -> &'static str {
    match ct {
        ContentType::AzureActiveDirectory => "AAD",
        ContentType::Exchange => "EXO",
        ContentType::SharePoint => "SPO",
        ContentType::General => "GEN",
        ContentType::DlpAll => "DLP",
    }
}

/// The bar currently drawn, shared with the log writer so log lines print above it.
#[derive(Debug, Clone, Default)]
pub struct BarSlot(Arc<Mutex<Option<ProgressBar>>>);

impl BarSlot {
    fn get(&self) -> Option<ProgressBar> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn set(&self, bar: Option<ProgressBar>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = bar;
    }
}

/// Log lines to stderr; while a bar is drawn, printed above it instead of through it.
pub struct SlotWriter {
    slot: BarSlot,
    buf: Vec<u8>,
}

impl Write for SlotWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SlotWriter {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let write = || {
            let _ = std::io::stderr().write_all(&buf);
        };
        match self.slot.get() {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BarSlot {
    type Writer = SlotWriter;
    fn make_writer(&'a self) -> SlotWriter {
        SlotWriter {
            slot: self.clone(),
            buf: Vec::new(),
        }
    }
}

/// Logging for `run`: as the other commands (`O365_LOG`, default `info`), through `slot`.
pub fn init_tracing(slot: &BarSlot) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("O365_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(slot.clone())
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The progress of one pass.
#[derive(Debug)]
pub struct RunProgress {
    counts: Mutex<Counts>,
    bar: Option<ProgressBar>,
}

impl RunProgress {
    /// Starts a pass: a bar when stderr is a terminal (registered in `slot`), otherwise none.
    pub fn start(slot: &BarSlot) -> Arc<RunProgress> {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} blobs  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        slot.set(bar.clone());
        Arc::new(RunProgress {
            counts: Mutex::new(Counts::default()),
            bar,
        })
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Logs a progress line every [`LOG_EVERY`] while there is no bar, until the returned
    /// handle is aborted.
    pub fn spawn_logger(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if self.bar.is_some() {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(LOG_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                tracing::info!("progress: {}", me.counts().line());
            }
        }))
    }

    /// Ends the pass: clears the bar and logs the final counts.
    pub fn finish(&self, slot: &BarSlot) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        slot.set(None);
        tracing::info!("progress: {}", self.counts().line());
    }

    fn update<F: FnOnce(&mut Counts)>(&self, f: F) {
        let line = {
            let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut c);
            self.bar.as_ref().map(|_| {
                let per: Vec<String> = c
                    .rows
                    .iter()
                    .map(|(ct, r)| format!("{} {}", short(*ct), r.records))
                    .collect();
                let failed = if c.failed > 0 {
                    format!("  {} FAILED", c.failed)
                } else {
                    String::new()
                };
                format!("records: {}{failed}", per.join(" · "))
            })
        };
        if let (Some(bar), Some(line)) = (&self.bar, line) {
            bar.set_message(line);
        }
    }
}

impl Progress for RunProgress {
    fn listed(&self, job: &FetchJob) {
        self.update(|c| c.rows.entry(job.content_type).or_default().listed += 1);
        if let Some(bar) = &self.bar {
            bar.inc_length(1);
        }
    }

    fn finished(&self, job: &FetchJob, outcome: &JobOutcome) {
        self.update(|c| {
            let row = c.rows.entry(job.content_type).or_default();
            row.fetched += 1;
            match outcome {
                JobOutcome::Written { records, .. } => row.records += records,
                JobOutcome::DeadLettered { .. } | JobOutcome::Retry { .. } => c.failed += 1,
                JobOutcome::AlreadyDone { .. } | JobOutcome::Expired { .. } => {}
            }
        });
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(ct: ContentType, id: &str) -> FetchJob {
        let now = chrono::Utc::now();
        FetchJob {
            v: shared::model::JOB_VERSION,
            tenant_id: shared::model::TenantId::parse("11111111-2222-3333-4444-555555555555")
                .expect("tenant id"),
            content_type: ct,
            content_id: id.to_owned(),
            content_uri: format!("https://manage.office.com/api/v1.0/t/activity/feed/audit/{id}"),
            content_created: now,
            content_expiration: now,
            listed_at: now,
        }
    }

    #[test]
    fn counts_follow_listing_and_outcomes() {
        let slot = BarSlot::default();
        let p = RunProgress::start(&slot);
        let a = job(ContentType::Exchange, "a");
        let b = job(ContentType::Exchange, "b");
        let c = job(ContentType::DlpAll, "c");
        for j in [&a, &b, &c] {
            p.listed(j);
        }
        p.finished(
            &a,
            &JobOutcome::AlreadyDone {
                content_id: "a".into(),
            },
        );
        p.finished(
            &c,
            &JobOutcome::DeadLettered {
                reason: "malformed".into(),
            },
        );
        let counts = p.counts();
        assert_eq!(
            counts.rows[&ContentType::Exchange],
            Row {
                listed: 2,
                fetched: 1,
                records: 0
            }
        );
        assert_eq!(counts.rows[&ContentType::DlpAll].fetched, 1);
        assert_eq!(counts.failed, 1);
        let line = counts.line();
        assert!(
            line.starts_with("blobs 2/3 fetched, 0 records, 1 FAILED"),
            "{line}"
        );
        assert!(line.contains("EXO 1/2 blobs"), "{line}");
    }
}
