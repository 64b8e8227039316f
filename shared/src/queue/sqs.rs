//! [`JobQueue`] and [`DeadLetters`] on SQS.

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue, SendMessageBatchRequestEntry,
};

use super::{DeadLetter, DeadLetterInbox, DeadLetters, EnqueueReport, JobQueue, QueueError};
use crate::aws::classify;
use crate::model::FetchJob;

/// Most entries in one `SendMessageBatch`.
const MAX_BATCH_ENTRIES: usize = 10;
/// Most bytes of message bodies in one `SendMessageBatch` (and in one message).
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Retries of the entries a batch reports as failed (after the first try).
const ENTRY_RETRIES: u32 = 3;
/// Tries of a whole call that failed with a retryable error (on top of the SDK's own retries).
const CALL_ATTEMPTS: u32 = 3;
/// The first backoff; doubles on every retry.
const BASE_DELAY: Duration = Duration::from_millis(100);
/// Longest `reason` attribute of a dead letter, in bytes.
const MAX_REASON_BYTES: usize = 1024;
/// Most dead letters one scan of the dead-letter queue looks at.
const DLQ_SCAN_LIMIT: usize = 500;
/// The `source` attribute of dead letters.
const DEAD_LETTER_SOURCE: &str = "fetcher";

/// The job queue (and its dead-letter queue) on SQS.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dlq_url: Option<String>,
}

impl SqsQueue {
    /// Jobs go to `queue_url` (the stack's `QUEUE_URL`); dead letters to `dlq_url`
    /// (`DLQ_URL`), without which [`DeadLetters::dead_letter`] fails.
    pub fn new(client: Client, queue_url: String, dlq_url: Option<String>) -> SqsQueue {
        SqsQueue {
            client,
            queue_url,
            dlq_url,
        }
    }

    /// The job queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends one batch, retrying its failed entries; failures that remain go to `report`.
    async fn send_batch(
        &self,
        jobs: &[FetchJob],
        mut entries: Vec<(usize, String)>,
        report: &mut EnqueueReport,
    ) -> Result<(), QueueError> {
        for attempt in 0..=ENTRY_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(BASE_DELAY * 2u32.pow(attempt - 1)).await;
            }
            let mut request = Vec::with_capacity(entries.len());
            for (i, body) in &entries {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(format!("j{i}"))
                    .message_body(body.clone())
                    .build()
                    .map_err(|e| QueueError {
                        operation: "enqueue",
                        message: format!("cannot build a batch entry: {e}"),
                    })?;
                request.push(entry);
            }
            let out = with_retries("enqueue", &self.queue_url, || {
                self.client
                    .send_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(request.clone()))
                    .send()
            })
            .await?;
            let ok: HashSet<&str> = out.successful().iter().map(|s| s.id()).collect();
            let failed: HashMap<&str, _> = out.failed().iter().map(|f| (f.id(), f)).collect();
            let mut again = Vec::new();
            for (i, body) in entries {
                let id = format!("j{i}");
                if ok.contains(id.as_str()) {
                    continue;
                }
                let (reason, sender_fault) = match failed.get(id.as_str()) {
                    Some(f) => (
                        format!("{}: {}", f.code(), f.message().unwrap_or("no message")),
                        f.sender_fault(),
                    ),
                    None => ("SQS returned no result for the entry".to_owned(), false),
                };
                if sender_fault || attempt == ENTRY_RETRIES {
                    // A sender fault (bad entry) fails the same way every time.
                    report.failed.push((jobs[i].content_id.clone(), reason));
                } else {
                    again.push((i, body));
                }
            }
            entries = again;
            if entries.is_empty() {
                break;
            }
            tracing::warn!(
                entries = entries.len(),
                attempt = attempt + 1,
                "SQS rejected batch entries; retrying them"
            );
        }
        Ok(())
    }
}

/// Runs an SDK call, retrying retryable failures a few times with backoff.
async fn with_retries<T, E, F, Fut>(
    operation: &'static str,
    url: &str,
    mut call: F,
) -> Result<T, QueueError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + StdError + 'static,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(out) => return Ok(out),
            Err(e) => {
                let c = classify(&e);
                if !c.retryable || attempt >= CALL_ATTEMPTS {
                    return Err(QueueError {
                        operation,
                        message: describe(url, c.code.as_deref(), &c.message, attempt),
                    });
                }
                tracing::warn!(operation, attempt, error = %c.message, "SQS call failed; retrying");
                tokio::time::sleep(BASE_DELAY * 2u32.pow(attempt - 1)).await;
                attempt += 1;
            }
        }
    }
}

fn describe(url: &str, code: Option<&str>, message: &str, attempts: u32) -> String {
    let hint = match code {
        Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist") => {
            ": the queue does not exist; deploy the stack or set QUEUE_URL / DLQ_URL to its queues"
        }
        Some("AccessDenied" | "AccessDeniedException") => {
            ": grant sqs:SendMessage on the queue to the function role"
        }
        _ => "",
    };
    format!("{url}: {message} (after {attempts} attempt(s)){hint}")
}

/// Splits `(index, body)` entries into batches of at most 10 entries and 256 KiB.
fn batches(entries: Vec<(usize, String)>) -> Vec<Vec<(usize, String)>> {
    let mut out: Vec<Vec<(usize, String)>> = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let len = entry.1.len();
        match out.last_mut() {
            Some(b) if b.len() < MAX_BATCH_ENTRIES && bytes + len <= MAX_BATCH_BYTES => {
                bytes += len;
                b.push(entry);
            }
            _ => {
                bytes = len;
                out.push(vec![entry]);
            }
        }
    }
    out
}

/// Makes `reason` a valid SQS attribute value (no control characters other than tab and
/// newlines, at least one character) of at most [`MAX_REASON_BYTES`].
fn attribute_text(reason: &str) -> String {
    let clean: String = reason
        .chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
                '?'
            } else {
                c
            }
        })
        .collect();
    let clean = if clean.trim().is_empty() {
        "unspecified".to_owned()
    } else {
        clean
    };
    if clean.len() <= MAX_REASON_BYTES {
        return clean;
    }
    const MORE: &str = "…";
    let mut end = MAX_REASON_BYTES - MORE.len();
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MORE}", &clean[..end])
}

impl JobQueue for SqsQueue {
    async fn enqueue(&self, jobs: &[FetchJob]) -> Result<EnqueueReport, QueueError> {
        let mut report = EnqueueReport::default();
        let mut entries = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            let body = job.to_json();
            if body.len() > MAX_BATCH_BYTES {
                report.failed.push((
                    job.content_id.clone(),
                    format!(
                        "job message is {} bytes, over the SQS limit of {MAX_BATCH_BYTES}",
                        body.len()
                    ),
                ));
            } else {
                entries.push((i, body));
            }
        }
        for batch in batches(entries) {
            self.send_batch(jobs, batch, &mut report).await?;
        }
        Ok(report)
    }
}

impl DeadLetters for SqsQueue {
    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError> {
        let Some(dlq) = &self.dlq_url else {
            return Err(QueueError {
                operation: "dead_letter",
                message: "no dead-letter queue is configured: set DLQ_URL".to_owned(),
            });
        };
        let attr = |v: String| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| QueueError {
                    operation: "dead_letter",
                    message: format!("cannot build a message attribute: {e}"),
                })
        };
        let reason = attr(attribute_text(reason))?;
        let source = attr(DEAD_LETTER_SOURCE.to_owned())?;
        with_retries("dead_letter", dlq, || {
            self.client
                .send_message()
                .queue_url(dlq)
                .message_body(body)
                .message_attributes("reason", reason.clone())
                .message_attributes("source", source.clone())
                .send()
        })
        .await?;
        Ok(())
    }
}

impl DeadLetterInbox for SqsQueue {
    /// Scans up to [`DLQ_SCAN_LIMIT`] messages: the fetcher's own dead letters (with a reason)
    /// are held invisible while the scan goes on, so every receive brings new ones, and made
    /// visible again at the end (operators and the DLQ alarm keep seeing them).
    async fn receive(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let Some(dlq) = &self.dlq_url else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut held: Vec<String> = Vec::new();
        let mut scanned = 0usize;
        let result = async {
            while out.len() < max && scanned < DLQ_SCAN_LIMIT {
                let got = with_retries("receive_dead_letters", dlq, || {
                    self.client
                        .receive_message()
                        .queue_url(dlq)
                        .max_number_of_messages(10)
                        .visibility_timeout(60)
                        .message_attribute_names("reason")
                        .send()
                })
                .await?;
                let messages = got.messages.unwrap_or_default();
                if messages.is_empty() {
                    break;
                }
                for m in messages {
                    scanned += 1;
                    let (Some(receipt), Some(body)) = (m.receipt_handle, m.body) else {
                        continue;
                    };
                    let reason = m
                        .message_attributes
                        .as_ref()
                        .and_then(|a| a.get("reason"))
                        .and_then(|v| v.string_value.clone());
                    if reason.is_some() {
                        held.push(receipt);
                    } else {
                        out.push(DeadLetter {
                            receipt,
                            body,
                            reason,
                        });
                    }
                }
            }
            Ok::<(), QueueError>(())
        }
        .await;
        for chunk in held.chunks(10) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(0)
                        .build()
                        .ok()
                })
                .collect();
            if let Err(e) = self
                .client
                .change_message_visibility_batch()
                .queue_url(dlq)
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::warn!(error = %e, "dead letters stay hidden for a minute (could not make them visible again)");
            }
        }
        result?;
        Ok(out)
    }

    async fn annotate(&self, letter: &DeadLetter, reason: &str) -> Result<(), QueueError> {
        let Some(dlq) = &self.dlq_url else {
            return Ok(());
        };
        self.dead_letter(&letter.body, reason).await?;
        with_retries("delete_dead_letter", dlq, || {
            self.client
                .delete_message()
                .queue_url(dlq)
                .receipt_handle(&letter.receipt)
                .send()
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_at_most_ten_entries_and_256_kib() {
        let small: Vec<(usize, String)> = (0..25).map(|i| (i, "x".repeat(100))).collect();
        let sizes: Vec<usize> = batches(small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let big: Vec<(usize, String)> = (0..5).map(|i| (i, "x".repeat(100 * 1024))).collect();
        let b = batches(big);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(
            b.concat().iter().map(|e| e.0).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4],
            "order kept"
        );
        assert!(batches(Vec::new()).is_empty());
    }

    #[test]
    fn reasons_are_cleaned_and_truncated_to_1_kib() {
        assert_eq!(attribute_text("bad\u{0}byte"), "bad?byte");
        assert_eq!(attribute_text("  "), "unspecified");
        let long = "é".repeat(2000);
        let t = attribute_text(&long);
        assert!(t.len() <= MAX_REASON_BYTES, "{}", t.len());
        assert!(t.ends_with('…'));
    }
}
