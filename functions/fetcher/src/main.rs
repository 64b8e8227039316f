//! Fetcher Lambda: for each SQS job, download the blob, write its records to S3 and mark it
//! done; failed jobs are reported per message (`ReportBatchItemFailures`). Thin: all logic is
//! in `shared::app::fetcher`; metrics (EMF on stdout) in `shared::metrics::record`.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::app::fetcher::{Fetcher, QueueMessage};
use shared::lambda::{Deps, deadline_from_epoch_ms, init_logging};
use shared::metrics::{Metrics, record};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let deps = Deps::from_env().await?;
    let settings = deps.config.fetcher.clone();
    let detail = deps.config.metrics_detail;
    let apis = std::sync::Arc::new(deps.apis);
    let fetcher = Fetcher::new(
        deps.store,
        deps.sink,
        deps.queue,
        apis.clone(),
        deps.clock,
        settings,
    );
    let (fetcher, apis) = (&fetcher, &apis);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let started = std::time::Instant::now();
        let deadline = deadline_from_epoch_ms(event.context.deadline);
        apis.set_deadline(Some(deadline));
        let before = apis.snapshot().await;
        let messages: Vec<QueueMessage> = event
            .payload
            .records
            .iter()
            .map(|r| QueueMessage {
                id: r.message_id.clone().unwrap_or_default(),
                body: r.body.clone().unwrap_or_default(),
                receive_count: r
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
            })
            .collect();
        let report = fetcher.handle_batch_until(&messages, Some(deadline)).await;
        let after = apis.snapshot().await;
        let mut metrics = Metrics::new("fetcher").with_detail(detail);
        record::fetcher_batch(&mut metrics, &messages, &report);
        record::api_calls(&mut metrics, &before, &after);
        metrics.emit();
        let api = record::api_totals(&before, &after);
        report.log_summary(
            &event.context.request_id,
            &api,
            started.elapsed().as_millis() as u64,
        );
        let mut response = SqsBatchResponse::default();
        for id in report.failures() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
        Ok::<_, Error>(response)
    }))
    .await
}
