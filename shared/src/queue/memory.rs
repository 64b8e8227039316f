//! [`JobQueue`] and [`DeadLetters`] in memory, for tests and local runs.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{DeadLetter, DeadLetterInbox, DeadLetters, EnqueueReport, JobQueue, QueueError};
use crate::model::FetchJob;

#[derive(Debug, Default)]
struct Inner {
    jobs: VecDeque<FetchJob>,
    fail_next: usize,
    dead: Vec<(String, String)>,
    /// Messages SQS would have moved to the dead-letter queue itself (no reason).
    moved: Vec<String>,
}

/// An in-process FIFO job queue and dead-letter list. Clones share the same queue.
///
/// [`MemoryQueue::fail_next`] makes the next entries fail, to test how callers handle an
/// [`EnqueueReport`] with failures.
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> MemoryQueue {
        MemoryQueue::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes every queued job, oldest first.
    pub fn drain(&self) -> Vec<FetchJob> {
        self.lock().jobs.drain(..).collect()
    }

    /// Takes the oldest job, if any.
    pub fn pop(&self) -> Option<FetchJob> {
        self.lock().jobs.pop_front()
    }

    /// Number of queued jobs.
    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// True when no job is queued.
    pub fn is_empty(&self) -> bool {
        self.lock().jobs.is_empty()
    }

    /// Makes the next `n` enqueued entries fail (reported in [`EnqueueReport::failed`], not
    /// queued). Replaces any count still pending.
    pub fn fail_next(&self, n: usize) {
        self.lock().fail_next = n;
    }

    /// `(body, reason)` of every dead-lettered message, oldest first.
    pub fn dead_letters(&self) -> Vec<(String, String)> {
        self.lock().dead.clone()
    }

    /// Puts `body` in the dead-letter queue without a reason, as SQS does when a message's
    /// receive count runs out.
    pub fn move_to_dead_letters(&self, body: &str) {
        self.lock().moved.push(body.to_owned());
    }

    /// Messages still without a reason.
    pub fn moved(&self) -> Vec<String> {
        self.lock().moved.clone()
    }
}

impl JobQueue for MemoryQueue {
    async fn enqueue(&self, jobs: &[FetchJob]) -> Result<EnqueueReport, QueueError> {
        let mut inner = self.lock();
        let mut report = EnqueueReport::default();
        for job in jobs {
            if inner.fail_next > 0 {
                inner.fail_next -= 1;
                report.failed.push((
                    job.content_id.clone(),
                    "InjectedFailure: MemoryQueue::fail_next".to_owned(),
                ));
            } else {
                inner.jobs.push_back(job.clone());
            }
        }
        Ok(report)
    }
}

impl DeadLetters for MemoryQueue {
    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError> {
        self.lock().dead.push((body.to_owned(), reason.to_owned()));
        Ok(())
    }
}

impl DeadLetterInbox for MemoryQueue {
    async fn receive(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let inner = self.lock();
        Ok(inner
            .moved
            .iter()
            .enumerate()
            .map(|(i, b)| DeadLetter {
                receipt: format!("moved-{i}"),
                body: b.clone(),
                reason: None,
            })
            .take(max)
            .collect())
    }

    async fn annotate(&self, letter: &DeadLetter, reason: &str) -> Result<(), QueueError> {
        let mut inner = self.lock();
        if let Some(i) = letter
            .receipt
            .strip_prefix("moved-")
            .and_then(|i| i.parse::<usize>().ok())
            && i < inner.moved.len()
        {
            let body = inner.moved.remove(i);
            inner.dead.push((body, reason.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::model::{ContentBlob, ContentType, TenantId};

    fn job(i: usize) -> FetchJob {
        let blob = ContentBlob {
            content_type: ContentType::General,
            content_id: format!("blob{i}"),
            content_uri: format!("https://manage.office.com/x/{i}"),
            content_created: Utc::now(),
            content_expiration: Utc::now(),
        };
        FetchJob::new(
            TenantId::parse("3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d").unwrap(),
            &blob,
            Utc::now(),
        )
    }

    #[tokio::test]
    async fn fifo_with_injected_failures_and_dead_letters() {
        let q = MemoryQueue::new();
        let jobs: Vec<FetchJob> = (0..5).map(job).collect();
        q.fail_next(2);
        let report = q.clone().enqueue(&jobs).await.unwrap();
        let failed: Vec<&str> = report.failed.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(failed, ["blob0", "blob1"]);
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some(jobs[2].clone()));
        assert_eq!(q.drain(), jobs[3..].to_vec());
        assert!(q.is_empty());
        assert!(
            q.enqueue(&jobs[..1]).await.unwrap().failed.is_empty(),
            "the switch is used up"
        );

        q.dead_letter("{\"v\":1}", "gave up after 5 attempts")
            .await
            .unwrap();
        assert_eq!(
            q.dead_letters(),
            vec![(
                "{\"v\":1}".to_owned(),
                "gave up after 5 attempts".to_owned()
            )]
        );
    }
}
