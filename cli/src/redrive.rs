//! `redrive`: sends unfinished ledger entries to the fetchers again (a deployment), or says what
//! the next local run re-drives (local state: a local run re-drives every open entry at its
//! start anyway, its in-process queue having died with the previous process).

use std::collections::BTreeMap;
use std::process::ExitCode;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chrono::Utc;
use shared::app::lister::redrive_unfinished;
use shared::model::BlobState;
use shared::queue::SqsQueue;
use shared::store::StateStore;

use crate::state::{StateArgs, Target, blank, tenants};

/// Most DLQ messages moved in one `redrive` (run it again for more).
const MAX_DLQ_MOVES: usize = 10_000;

/// Which ledger entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Failed entries that are retried (the default).
    Failed,
    /// Entries whose job is (or was) on the queue after a re-drive.
    Enqueued,
    /// Claims whose job a lister may not have handed on.
    Pending,
    /// All of them.
    All,
}

impl Which {
    fn states(self) -> Vec<BlobState> {
        match self {
            Which::Failed => vec![BlobState::Failed],
            Which::Enqueued => vec![BlobState::Enqueued],
            Which::Pending => vec![BlobState::Pending],
            Which::All => vec![BlobState::Pending, BlobState::Enqueued, BlobState::Failed],
        }
    }
}

/// Options of `redrive`.
#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    /// This tenant only (its GUID).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Which unfinished ledger entries (not `--state`: that names the state file).
    #[arg(long, value_enum, default_value = "failed")]
    pub only: Which,
    /// The deployment's fetch queue (stack output FetchQueueUrl): needed with --table.
    #[arg(long, env = "QUEUE_URL")]
    pub queue_url: Option<String>,
    /// The dead-letter queue (stack output FetchDeadLetterQueueUrl): its messages are moved
    /// back to the fetch queue.
    #[arg(long)]
    pub dlq_url: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
}

/// `o365-collector redrive`.
pub async fn run(args: &RedriveArgs) -> Result<ExitCode, String> {
    match args.state.target()? {
        Target::Table(_) => deployment(args).await,
        Target::Config(_, cfg) if cfg.state.starts_with("dynamodb://") => {
            // A local run's state in a table: still a local run's (its queue is in-process).
            local(args).await
        }
        _ => {
            if blank(args.queue_url.as_deref()).is_some() || args.dlq_url.is_some() {
                return Err("--queue-url and --dlq-url go with --table (a deployment); local state has no queue: the next `run` re-drives what is open".into());
            }
            local(args).await
        }
    }
}

/// Local state: what the next `run` re-drives (every open entry) and what it leaves.
async fn local(args: &RedriveArgs) -> Result<ExitCode, String> {
    let opened = args.state.open_read().await?;
    let tenants = tenants(&opened, args.tenant.as_deref(), false).await?;
    let now = Utc::now();
    let states = args.only.states();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut for_good: Vec<(String, String)> = Vec::new();
    let mut expired_meanwhile = 0u64;
    for t in &tenants {
        for item in opened
            .store
            .ledger(&t.id, now)
            .await
            .map_err(|e| e.to_string())?
        {
            if !states.contains(&item.entry.state) {
                continue;
            }
            if !item.entry.is_open() {
                if item.entry.state == BlobState::Failed {
                    for_good.push((item.blob.content_id, item.entry.reason.unwrap_or_default()));
                }
                continue;
            }
            if now >= item.blob.content_expiration {
                expired_meanwhile += 1;
            }
            *counts.entry(item.entry.state.as_str()).or_default() += 1;
        }
    }
    println!("{}", opened.source);
    let total: u64 = counts.values().sum();
    let per: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!(
        "local state: nothing to send now — the next `o365-collector run` re-drives every open ledger entry at its start (its in-process queue died with the previous run)"
    );
    println!(
        "  {total} entries will be re-driven{}",
        if per.is_empty() {
            String::new()
        } else {
            format!(": {}", per.join(", "))
        }
    );
    if expired_meanwhile > 0 {
        println!(
            "  {expired_meanwhile} of them are past Microsoft's expiry already: the run marks them lost upstream"
        );
    }
    if !for_good.is_empty() {
        println!(
            "  {} failed entries are not retried (they cannot succeed), e.g. {}: {}",
            for_good.len(),
            for_good[0].0,
            for_good[0].1
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A deployment: re-enqueues matching entries to the fetch queue, and moves the DLQ back.
async fn deployment(args: &RedriveArgs) -> Result<ExitCode, String> {
    let queue_url = blank(args.queue_url.as_deref()).ok_or(
        "give --queue-url URL (stack output FetchQueueUrl, or QUEUE_URL): the queue the jobs go to",
    )?;
    let opened = args.state.open_write().await?;
    let tenants = tenants(&opened, args.tenant.as_deref(), false).await?;
    let conf = args.state.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let queue = SqsQueue::new(sqs.clone(), queue_url.clone(), None);
    let states = args.only.states();
    println!("{}", opened.source);
    let mut failed = false;
    let (mut redriven, mut expired) = (0u64, 0u64);
    for t in &tenants {
        match redrive_unfinished(&opened.store, &queue, &t.id, &states, Utc::now()).await {
            Ok(r) => {
                println!(
                    "  tenant {}: {} re-enqueued, {} marked lost upstream (expired at Microsoft)",
                    t.id, r.redriven, r.expired
                );
                redriven += r.redriven;
                expired += r.expired;
            }
            Err(e) => {
                failed = true;
                println!("  tenant {}: FAILED: {e}", t.id);
            }
        }
    }
    println!(
        "re-driven: {redriven} jobs to {queue_url}{}",
        if expired > 0 {
            format!("; {expired} blobs were past Microsoft's expiry (data lost upstream)")
        } else {
            String::new()
        }
    );
    if let Some(dlq) = blank(args.dlq_url.as_deref()) {
        match move_dlq(&sqs, &dlq, &queue_url).await {
            Ok(n) => println!("dead-letter queue: {n} messages moved back to the fetch queue"),
            Err((n, e)) => {
                failed = true;
                println!("dead-letter queue: {n} messages moved back, then FAILED: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Moves the DLQ's messages to the fetch queue (receive, send, delete), at most
/// [`MAX_DLQ_MOVES`]; stops when a receive comes back empty. A message is deleted from the DLQ
/// only once sent: a failure leaves it there (it becomes visible again).
async fn move_dlq(
    sqs: &aws_sdk_sqs::Client,
    dlq: &str,
    queue: &str,
) -> Result<usize, (usize, String)> {
    let mut moved = 0usize;
    let mut empty = 0;
    while moved < MAX_DLQ_MOVES && empty < 2 {
        let out = sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .send()
            .await
            .map_err(|e| (moved, format!("receive from {dlq}: {}", sdk(&e))))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        let mut entries = Vec::new();
        let mut handles = BTreeMap::new();
        for (i, m) in messages.iter().enumerate() {
            let (Some(body), Some(handle)) = (m.body(), m.receipt_handle()) else {
                continue;
            };
            let id = format!("m{i}");
            entries.push(
                SendMessageBatchRequestEntry::builder()
                    .id(&id)
                    .message_body(body)
                    .build()
                    .map_err(|e| (moved, e.to_string()))?,
            );
            handles.insert(id, handle.to_owned());
        }
        if entries.is_empty() {
            continue;
        }
        let sent = sqs
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| (moved, format!("send to {queue}: {}", sdk(&e))))?;
        let refused: Vec<String> = sent
            .failed
            .iter()
            .map(|f| format!("{}: {}", f.id, f.message.as_deref().unwrap_or(&f.code)))
            .collect();
        for ok in &sent.successful {
            if let Some(handle) = handles.get(&ok.id) {
                sqs.delete_message()
                    .queue_url(dlq)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|e| (moved, format!("delete from {dlq}: {}", sdk(&e))))?;
                moved += 1;
            }
        }
        if !refused.is_empty() {
            return Err((
                moved,
                format!("the fetch queue refused {}", refused.join("; ")),
            ));
        }
    }
    Ok(moved)
}

fn sdk<E: std::error::Error + 'static>(e: &E) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
