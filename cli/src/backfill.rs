//! `backfill`: lists a past range of a tenant's content (inside Microsoft's 7 days) and hands
//! new blobs on exactly like the lister: to a deployment's fetch queue, or locally to the ledger,
//! after which a local pass fetches them.

use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use shared::api::http_client;
use shared::app::clients::TenantClients;
use shared::app::lister::{self, FeedReport, ListerSettings};
use shared::app::{ApiProvider, SystemClock};
use shared::model::{ContentType, FetchJob, MAX_LOOKBACK, Tenant, TenantId};
use shared::queue::{EnqueueReport, JobQueue, QueueError, SqsQueue};
use shared::retry::RetryPolicy;
use shared::secrets::AwsSecrets;
use shared::store::StateStore;

use crate::local::AnyStore;
use crate::progress::BarSlot;
use crate::run::{Collector, EXIT_OPEN, print_interrupted, print_report_with};
use crate::signals::Interrupt;
use crate::state::{StateArgs, Target, blank};

/// Options of `backfill`.
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The tenant (its GUID).
    #[arg(long)]
    pub tenant: String,
    /// Start: RFC 3339 (`2026-11-20T06:00:00Z`), a date (`2026-11-20`, UTC) or an age
    /// (`3d`, `36h`, `90m`, `2d12h`). At most 7 days less 10 minutes back.
    #[arg(long)]
    pub since: String,
    /// End (same forms; default now).
    #[arg(long)]
    pub until: Option<String>,
    /// Content types (repeat, or comma-separated; default the tenant's).
    #[arg(long = "content-type", value_delimiter = ',')]
    pub content_types: Vec<String>,
    /// The deployment's fetch queue (stack output FetchQueueUrl): needed with --table.
    #[arg(long, env = "QUEUE_URL")]
    pub queue_url: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
}

/// Parses a point in time: RFC 3339, `YYYY-MM-DDTHH:MM[:SS]` (UTC), `YYYY-MM-DD` (UTC midnight)
/// or an age before `now` (`3d`, `36h`, `90m`, `45s`, `1w`, combined like `2d12h`).
///
/// # Errors
/// A message saying which forms are accepted.
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    parse_age(s).map(|age| now - age).ok_or_else(|| {
        format!("`{s}` is not a time: give RFC 3339 (2026-11-20T06:00:00Z), a date (2026-11-20) or an age (3d, 36h, 90m, 2d12h)")
    })
}

/// `3d`, `36h`, `2d12h`, `90m`, `45s`, `1w`.
fn parse_age(s: &str) -> Option<Duration> {
    let mut total = Duration::zero();
    let mut digits = String::new();
    let mut any = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        let unit = match c.to_ascii_lowercase() {
            'w' => Duration::try_weeks(n)?,
            'd' => Duration::try_days(n)?,
            'h' => Duration::try_hours(n)?,
            'm' => Duration::try_minutes(n)?,
            's' => Duration::try_seconds(n)?,
            _ => return None,
        };
        total = total.checked_add(&unit)?;
        any = true;
    }
    (any && digits.is_empty()).then_some(total)
}

/// Checks a range against Microsoft's 7 days; `until` defaults to (and is capped at) `now`.
///
/// # Errors
/// A message saying what is wrong and what to give instead.
pub fn check_range(
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let oldest = now - MAX_LOOKBACK;
    if since < oldest {
        return Err(format!(
            "--since {} is too far back: Microsoft keeps content 7 days and the collector lists no further back than 7 days less 10 minutes (from {}); anything older is gone at Microsoft",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            oldest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    let until = until.unwrap_or(now).min(now);
    if until <= since {
        return Err(format!(
            "--until {} is not after --since {}",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    Ok((since, until))
}

/// Locally, jobs need no queue: the claim in the ledger is enough, because a local pass
/// re-drives every open ledger entry at its start.
#[derive(Debug, Default)]
struct LedgerOnly;

impl JobQueue for LedgerOnly {
    async fn enqueue(&self, _jobs: &[FetchJob]) -> Result<EnqueueReport, QueueError> {
        Ok(EnqueueReport::default())
    }
}

/// Where new blobs go.
enum Destination {
    /// A local run configuration: the ledger, then a local pass.
    LocalPass(Box<Collector>),
    /// A local state file without a configuration: the ledger (the next `run` fetches).
    Ledger(Arc<AnyStore>),
    /// A deployment: its fetch queue.
    Queue(Arc<AnyStore>, SqsQueue),
}

/// `o365-collector backfill`.
pub async fn run(args: &BackfillArgs, bar: &BarSlot) -> Result<ExitCode, String> {
    let interrupt = Interrupt::install()?;
    let now = Utc::now();
    let since = parse_time(&args.since, now)?;
    let until = args
        .until
        .as_deref()
        .map(|u| parse_time(u, now))
        .transpose()?;
    let (since, until) = check_range(since, until, now)?;
    let tenant_id = TenantId::parse(&args.tenant).map_err(|e| e.to_string())?;
    let mut requested = Vec::new();
    for ct in &args.content_types {
        let ct: ContentType = ct
            .parse()
            .map_err(|e: shared::model::UnknownContentType| e.to_string())?;
        if !requested.contains(&ct) {
            requested.push(ct);
        }
    }
    let target = args.state.target()?;
    let mut settings = ListerSettings::default();
    let dest = match target {
        Target::Config(path, cfg) => {
            if blank(args.queue_url.as_deref()).is_some() {
                return Err("--queue-url goes with --table (a deployment); with --config the blobs are fetched by a local pass".into());
            }
            settings = cfg.lister.clone();
            Destination::LocalPass(Box::new(Collector::open(&path, &cfg).await?))
        }
        Target::File(_) => {
            if blank(args.queue_url.as_deref()).is_some() {
                return Err("--queue-url goes with --table (a deployment)".into());
            }
            Destination::Ledger(Arc::new(args.state.open_write().await?.store))
        }
        Target::Table(_) => {
            let queue_url = blank(args.queue_url.as_deref()).ok_or(
                "give --queue-url URL (stack output FetchQueueUrl, or QUEUE_URL): the queue the jobs go to",
            )?;
            let conf = args.state.sdk_config().await;
            let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&conf), queue_url, None);
            Destination::Queue(Arc::new(args.state.open_write().await?.store), queue)
        }
    };
    // Windows of at most an hour, as the lister's.
    settings.window = settings.window.min(Duration::hours(1));
    let store = match &dest {
        Destination::LocalPass(c) => c.store.clone(),
        Destination::Ledger(s) | Destination::Queue(s, _) => s.clone(),
    };
    let tenant: Tenant = store
        .list_tenants()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|t| t.id == tenant_id)
        .ok_or_else(|| format!("tenant {tenant_id} is not configured"))?;
    let content_types = if requested.is_empty() {
        tenant.content_types.clone()
    } else {
        requested
    };
    let apis = match &dest {
        Destination::LocalPass(c) => c.apis.clone(),
        _ => {
            let conf = args.state.sdk_config().await;
            Arc::new(TenantClients::new(
                http_client(),
                AwsSecrets::new(aws_sdk_secretsmanager::Client::new(&conf)),
                RetryPolicy::default(),
            ))
        }
    };
    let api = apis.api(&tenant).await.map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(24 * 3600);
    eprintln!(
        "backfill: tenant {} {} → {}, {}",
        tenant.id,
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        content_types
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let listing = async {
        match &dest {
            Destination::Queue(_, q) => {
                lister::backfill(
                    store.as_ref(),
                    q,
                    api.clone(),
                    &SystemClock,
                    &settings,
                    &tenant,
                    &content_types,
                    since,
                    Some(until),
                    deadline,
                )
                .await
            }
            _ => {
                lister::backfill(
                    store.as_ref(),
                    &LedgerOnly,
                    api.clone(),
                    &SystemClock,
                    &settings,
                    &tenant,
                    &content_types,
                    since,
                    Some(until),
                    deadline,
                )
                .await
            }
        }
    };
    let feeds = tokio::select! {
        r = listing => r?,
        () = interrupt.stopped() => {
            eprintln!("interrupted while listing: blobs claimed so far stay open in the ledger (the next run collects them); run the backfill again for the rest");
            return Ok(ExitCode::from(interrupt.code().unwrap_or(EXIT_OPEN)));
        }
    };
    let listing_ok = print_feeds(&feeds, &dest);
    match dest {
        Destination::LocalPass(collector) => {
            println!("fetching (a local pass)…");
            let outcome = collector.pass(bar, &interrupt, true).await?;
            if let Some(code) = interrupt.code() {
                print_interrupted(&outcome);
                return Ok(ExitCode::from(code));
            }
            print_report_with(&outcome.report, &outcome.lost);
            let code = outcome.exit_code();
            Ok(ExitCode::from(if code == 0 && !listing_ok {
                EXIT_OPEN
            } else {
                code
            }))
        }
        _ => Ok(if listing_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_OPEN)
        }),
    }
}

/// Prints what the listing did; false when a feed failed or stopped early.
fn print_feeds(feeds: &[FeedReport], dest: &Destination) -> bool {
    let mut ok = true;
    println!(
        "  {:<28} {:>8} {:>8} {:>8} {:>8}",
        "content type", "windows", "listed", "new", "known"
    );
    for f in feeds {
        println!(
            "  {:<28} {:>8} {:>8} {:>8} {:>8}",
            f.content_type.as_str(),
            f.windows,
            f.listed,
            f.enqueued + f.redriven,
            f.known
        );
        if let Some(e) = &f.error {
            ok = false;
            println!("  FEED FAILED {} {}: {e}", f.tenant, f.content_type);
        }
        if f.stopped_early {
            ok = false;
            println!("  {} stopped early: run the backfill again", f.content_type);
        }
    }
    let new: u64 = feeds.iter().map(|f| f.enqueued + f.redriven).sum();
    let refused: u64 = feeds.iter().map(|f| f.refused).sum();
    match dest {
        Destination::LocalPass(_) => println!("backfill: {new} new blobs in the ledger"),
        Destination::Ledger(_) => println!(
            "backfill: {new} new blobs in the ledger: the next `o365-collector run` with this state fetches them"
        ),
        Destination::Queue(_, q) => println!(
            "backfill: {new} jobs sent to {}{}",
            q.queue_url(),
            if refused > 0 {
                format!(
                    " ({refused} refused by the queue: failed entries the lister's sweep retries)"
                )
            } else {
                String::new()
            }
        ),
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn times_parse_in_every_form() {
        let now = t("2026-11-23T12:00:00Z");
        assert_eq!(parse_time("3d", now).unwrap(), t("2026-11-20T12:00:00Z"));
        assert_eq!(parse_time("36h", now).unwrap(), t("2026-11-22T00:00:00Z"));
        assert_eq!(parse_time("2d12h", now).unwrap(), t("2026-11-21T00:00:00Z"));
        assert_eq!(parse_time("90m", now).unwrap(), t("2026-11-23T10:30:00Z"));
        assert_eq!(
            parse_time("2026-11-20T06:00:00+01:00", now).unwrap(),
            t("2026-11-20T05:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-20T06:00", now).unwrap(),
            t("2026-11-20T06:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-20", now).unwrap(),
            t("2026-11-20T00:00:00Z")
        );
        for bad in ["", "3", "d", "3x", "yesterday", "3d4"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_start_older_than_seven_days_less_ten_minutes_is_refused() {
        let now = t("2026-11-23T12:00:00Z");
        let e = check_range(now - Duration::days(7), None, now).unwrap_err();
        assert!(e.contains("7 days"), "{e}");
        let ok = now - Duration::days(7) + Duration::minutes(11);
        assert_eq!(check_range(ok, None, now).unwrap(), (ok, now));
        assert!(
            check_range(
                now - Duration::hours(1),
                Some(now - Duration::hours(2)),
                now
            )
            .is_err()
        );
        // An end in the future is capped at now.
        assert_eq!(
            check_range(ok, Some(now + Duration::hours(1)), now)
                .unwrap()
                .1,
            now
        );
    }
}
