//! Fetcher Lambda: for each SQS job, download the blob, write its records to S3 and mark it
//! done; failed jobs are reported per message (`ReportBatchItemFailures`). Thin: all logic is
//! in `shared::app::fetcher`.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::app::fetcher::{Fetcher, QueueMessage};
use shared::lambda::{Deps, deadline_from_epoch_ms, init_logging};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let deps = Deps::from_env().await?;
    let settings = deps.config.fetcher.clone();
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
        apis.set_deadline(Some(deadline_from_epoch_ms(event.context.deadline)));
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
        let report = fetcher.handle_batch(&messages).await;
        let counts = report.counts();
        tracing::info!(
            request_id = %event.context.request_id,
            messages = messages.len(),
            records = report.records(),
            written = counts.get("written").copied().unwrap_or(0),
            already_done = counts.get("already_done").copied().unwrap_or(0),
            expired = counts.get("expired").copied().unwrap_or(0),
            dead_lettered = counts.get("dead_lettered").copied().unwrap_or(0),
            retry = counts.get("retry").copied().unwrap_or(0),
            "fetcher invocation done"
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
