//! `SqsQueue` against moto: batching, retries of rejected entries, dead letters, redrive.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::config::interceptors::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextMut,
};
use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::error::BoxError;
use aws_sdk_sqs::operation::send_message_batch::{SendMessageBatchInput, SendMessageBatchOutput};
use aws_sdk_sqs::types::{BatchResultErrorEntry, MessageSystemAttributeName};
use chrono::{Duration as ChronoDuration, Utc};
use integration_tests::moto::{Moto, unique};
use shared::model::{ContentBlob, ContentType, FetchJob, TenantId};
use shared::queue::{DeadLetters, JobQueue, SqsQueue};

fn jobs(n: usize) -> Vec<FetchJob> {
    let tenant = TenantId::parse(&uuid::Uuid::new_v4().to_string()).expect("a GUID");
    let now = Utc::now();
    (0..n)
        .map(|i| {
            let blob = ContentBlob {
                content_type: ContentType::ALL[i % 5],
                content_id: format!("20261122{i:04}$blob{i}$audit$na0001"),
                content_uri: format!(
                    "https://manage.office.com/api/v1.0/{tenant}/activity/feed/audit/{i}"
                ),
                content_created: now,
                content_expiration: now + ChronoDuration::days(7),
            };
            FetchJob::new(tenant.clone(), &blob, now)
        })
        .collect()
}

/// Receives until `n` messages came back (deleting them) or 20 s passed.
async fn receive(moto: &Moto, url: &str, n: usize) -> Vec<aws_sdk_sqs::types::Message> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < n && tokio::time::Instant::now() < deadline {
        let res = moto
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receive");
        for m in res.messages() {
            moto.sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().expect("receipt handle"))
                .send()
                .await
                .expect("delete");
            out.push(m.clone());
        }
    }
    out
}

/// Records the entry count of every `SendMessageBatch` call, and turns chosen entries of its
/// results into (retryable, `SenderFault=false`) failures: `id -> how many more times`.
#[derive(Debug, Clone, Default)]
struct Spy {
    batches: Arc<Mutex<Vec<usize>>>,
    fail: Arc<Mutex<HashMap<String, usize>>>,
}

impl Intercept for Spy {
    fn name(&self) -> &'static str {
        "Spy"
    }

    fn read_before_execution(
        &self,
        ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(input) = ctx.input().downcast_ref::<SendMessageBatchInput>() {
            self.batches
                .lock()
                .expect("lock")
                .push(input.entries().len());
        }
        Ok(())
    }

    fn modify_before_attempt_completion(
        &self,
        ctx: &mut FinalizerInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(output)) = ctx.output_or_error_mut() else {
            return Ok(());
        };
        let Some(out) = output.downcast_mut::<SendMessageBatchOutput>() else {
            return Ok(());
        };
        let mut fail = self.fail.lock().expect("lock");
        let mut kept = Vec::new();
        for ok in std::mem::take(&mut out.successful) {
            match fail.get_mut(ok.id()) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    out.failed.push(
                        BatchResultErrorEntry::builder()
                            .id(ok.id())
                            .sender_fault(false)
                            .code("InternalError")
                            .message("injected by the test")
                            .build()
                            .expect("entry"),
                    );
                }
                _ => kept.push(ok),
            }
        }
        out.successful = kept;
        Ok(())
    }
}

fn spied(moto: &Moto, spy: &Spy) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::config::Builder::from(&moto.conf)
        .interceptor(spy.clone())
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

#[tokio::test]
async fn twenty_five_jobs_go_in_three_batches_and_come_back_intact() {
    let moto = Moto::connect().await;
    let url = moto.queue("jobs", None).await;
    let spy = Spy::default();
    let queue = SqsQueue::new(spied(&moto, &spy), url.clone(), None);
    let sent = jobs(25);
    let report = queue.enqueue(&sent).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(*spy.batches.lock().unwrap(), [10, 10, 5]);

    let received = receive(&moto, &url, 25).await;
    assert_eq!(received.len(), 25);
    let mut got: BTreeMap<String, FetchJob> = BTreeMap::new();
    for m in &received {
        let job = FetchJob::parse(m.body().unwrap()).unwrap();
        got.insert(job.content_id.clone(), job);
    }
    let want: BTreeMap<String, FetchJob> = sent
        .into_iter()
        .map(|j| (j.content_id.clone(), j))
        .collect();
    assert_eq!(got, want, "every job came back exactly as sent");
}

#[tokio::test]
async fn rejected_entries_are_retried_then_reported() {
    let moto = Moto::connect().await;
    let url = moto.queue("retry", None).await;
    let spy = Spy::default();
    // j3 fails twice then succeeds; j7 fails every time.
    spy.fail
        .lock()
        .unwrap()
        .extend([("j3".to_owned(), 2), ("j7".to_owned(), usize::MAX)]);
    let queue = SqsQueue::new(spied(&moto, &spy), url.clone(), None);
    let sent = jobs(12);
    let started = std::time::Instant::now();
    let report = queue.enqueue(&sent).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let (id, reason) = &report.failed[0];
    assert_eq!(id, &sent[7].content_id);
    assert!(
        reason.contains("InternalError") && reason.contains("injected"),
        "{reason}"
    );
    // First try + 3 retries of the rejected entries, then the second batch.
    assert_eq!(*spy.batches.lock().unwrap(), [10, 2, 2, 1, 2]);
    assert!(started.elapsed() < Duration::from_secs(5), "short backoff");
}

#[tokio::test]
async fn oversized_jobs_are_reported_without_failing_the_rest() {
    let moto = Moto::connect().await;
    let url = moto.queue("big", None).await;
    let queue = SqsQueue::new(moto.sqs.clone(), url.clone(), None);
    let mut sent = jobs(3);
    sent[1].content_uri = format!("https://manage.office.com/{}", "x".repeat(300 * 1024));
    let report = queue.enqueue(&sent).await.unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, sent[1].content_id);
    assert!(
        report.failed[0].1.contains("over the SQS limit"),
        "{:?}",
        report.failed
    );
    assert_eq!(receive(&moto, &url, 2).await.len(), 2);
}

#[tokio::test]
async fn a_dead_letter_carries_its_reason() {
    let moto = Moto::connect().await;
    let url = moto.queue("jobs", None).await;
    let dlq = moto.queue("dlq", None).await;
    let queue = SqsQueue::new(moto.sqs.clone(), url, Some(dlq.clone()));
    let body = jobs(1)[0].to_json();
    queue
        .dead_letter(
            &body,
            "HTTP 403 from the Management API: the app lacks ActivityFeed.Read",
        )
        .await
        .unwrap();
    let long = "é".repeat(3000);
    queue.dead_letter("{\"v\":1}", &long).await.unwrap();

    let got = receive(&moto, &dlq, 2).await;
    assert_eq!(got.len(), 2);
    let first = got
        .iter()
        .find(|m| m.body() == Some(body.as_str()))
        .expect("body intact");
    let attrs = first.message_attributes().unwrap();
    assert_eq!(
        attrs["reason"].string_value(),
        Some("HTTP 403 from the Management API: the app lacks ActivityFeed.Read")
    );
    assert_eq!(attrs["reason"].data_type(), "String");
    assert_eq!(attrs["source"].string_value(), Some("fetcher"));
    let second = got.iter().find(|m| m.body() == Some("{\"v\":1}")).unwrap();
    let reason = second.message_attributes().unwrap()["reason"]
        .string_value()
        .unwrap();
    assert!(
        reason.len() <= 1024 && reason.starts_with("éé"),
        "{}",
        reason.len()
    );
}

#[tokio::test]
async fn dead_lettering_without_a_dlq_is_an_error() {
    let moto = Moto::connect().await;
    let url = moto.queue("jobs", None).await;
    let err = SqsQueue::new(moto.sqs.clone(), url, None)
        .dead_letter("{}", "x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DLQ_URL"), "{err}");
}

#[tokio::test]
async fn the_redrive_policy_moves_a_job_to_the_dlq_after_max_receives() {
    let moto = Moto::connect().await;
    let dlq = moto.queue("dlq", None).await;
    let dlq_arn = moto.queue_arn(&dlq).await;
    let url = moto.queue("jobs", Some((&dlq_arn, 2))).await;
    let queue = SqsQueue::new(moto.sqs.clone(), url.clone(), Some(dlq.clone()));
    let job = jobs(1).remove(0);
    assert!(
        queue
            .enqueue(std::slice::from_ref(&job))
            .await
            .unwrap()
            .failed
            .is_empty()
    );

    // Two failed attempts: received, then made visible again without being deleted.
    for attempt in 1..=2 {
        let res = moto
            .sqs
            .receive_message()
            .queue_url(&url)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .unwrap();
        let m = res
            .messages()
            .first()
            .unwrap_or_else(|| panic!("attempt {attempt}: no message"));
        let count = &m.attributes().unwrap()[&MessageSystemAttributeName::ApproximateReceiveCount];
        assert_eq!(count, &attempt.to_string());
        moto.sqs
            .change_message_visibility()
            .queue_url(&url)
            .receipt_handle(m.receipt_handle().unwrap())
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    // The third receive finds it moved.
    let res = moto
        .sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(res.messages().is_empty(), "the job left the queue");
    let moved = receive(&moto, &dlq, 1).await;
    assert_eq!(moved.len(), 1);
    assert_eq!(FetchJob::parse(moved[0].body().unwrap()).unwrap(), job);
}

#[tokio::test]
async fn a_missing_queue_is_an_error_that_names_it() {
    let moto = Moto::connect().await;
    let url = format!(
        "{}/123456789012/{}",
        moto.conf.endpoint_url().unwrap(),
        unique("nope")
    );
    let err = SqsQueue::new(moto.sqs.clone(), url.clone(), None)
        .enqueue(&jobs(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");
}
