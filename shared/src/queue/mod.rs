//! The job queue between lister and fetcher, and the dead-letter queue.
//!
//! Adapters: [`SqsQueue`] (AWS) and [`MemoryQueue`] (tests and local runs).

use std::future::Future;

use crate::model::FetchJob;

mod memory;
mod sqs;

pub use memory::MemoryQueue;
pub use sqs::SqsQueue;

/// Jobs that could not be enqueued, with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueReport {
    /// `(content_id, reason)` of every job that was not accepted after retries.
    pub failed: Vec<(String, String)>,
}

/// Errors of the queue.
#[derive(Debug, thiserror::Error)]
#[error("queue {operation} failed: {message}")]
pub struct QueueError {
    /// The operation.
    pub operation: &'static str,
    /// What the backend said.
    pub message: String,
}

/// Sends fetch jobs.
pub trait JobQueue: Send + Sync {
    /// Enqueues jobs (batched); entries the backend rejects are retried a few times, then
    /// reported in [`EnqueueReport::failed`] instead of failing the whole call.
    ///
    /// # Errors
    /// [`QueueError`] when the backend is unreachable.
    fn enqueue(
        &self,
        jobs: &[FetchJob],
    ) -> impl Future<Output = Result<EnqueueReport, QueueError>> + Send;
}

/// Parks messages that cannot succeed, with the reason, for an operator to inspect.
pub trait DeadLetters: Send + Sync {
    /// Sends `body` (the original message) with `reason` (a message attribute on SQS).
    ///
    /// # Errors
    /// [`QueueError`]; the caller then leaves the message to the queue's redrive policy.
    fn dead_letter(
        &self,
        body: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// A message in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Handle to delete it with (SQS receipt handle).
    pub receipt: String,
    /// The job as it was sent.
    pub body: String,
    /// Why it is there: set by the fetcher; `None` when SQS moved it itself (its receive
    /// count ran out without the fetcher ever answering: killed, out of memory).
    pub reason: Option<String>,
}

/// Reads the dead-letter queue, to find the jobs SQS moved there without a reason.
pub trait DeadLetterInbox: Send + Sync {
    /// Up to `max` of the messages without a reason (they come back after a short visibility
    /// timeout unless annotated); those with a reason are left visible.
    ///
    /// # Errors
    /// [`QueueError`].
    fn receive(
        &self,
        max: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, QueueError>> + Send;

    /// Replaces `letter` by the same body with `reason` (sent first, then the original is
    /// deleted: a crash between the two leaves a duplicate, never a loss).
    ///
    /// # Errors
    /// [`QueueError`].
    fn annotate(
        &self,
        letter: &DeadLetter,
        reason: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

impl<T: JobQueue + ?Sized> JobQueue for std::sync::Arc<T> {
    fn enqueue(
        &self,
        jobs: &[FetchJob],
    ) -> impl Future<Output = Result<EnqueueReport, QueueError>> + Send {
        (**self).enqueue(jobs)
    }
}

impl<T: DeadLetters + ?Sized> DeadLetters for std::sync::Arc<T> {
    fn dead_letter(
        &self,
        body: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).dead_letter(body, reason)
    }
}
