//! Subscriptions Lambda (daily): make sure every tenant's content types are subscribed and
//! report disabled or failing ones. Thin: all logic is in `shared::app::subscriptions`; metrics
//! (EMF on stdout) in `shared::metrics::record`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::app::subscriptions;
use shared::lambda::{Deps, deadline_from_epoch_ms, init_logging};
use shared::metrics::{Metrics, record};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let deps = Deps::from_env().await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let started = std::time::Instant::now();
            deps.apis
                .set_deadline(Some(deadline_from_epoch_ms(event.context.deadline)));
            let before = deps.apis.snapshot().await;
            let result = subscriptions::ensure(&deps.store, &deps.apis).await;
            let after = deps.apis.snapshot().await;
            let mut metrics = Metrics::new("subscriptions").with_detail(deps.config.metrics_detail);
            record::api_calls(&mut metrics, &before, &after);
            let api = record::api_totals(&before, &after);
            let duration_ms = started.elapsed().as_millis() as u64;
            let report = match result {
                Ok(report) => report,
                Err(e) => {
                    metrics.emit();
                    tracing::error!(request_id = %event.context.request_id, error = %e,
                        api_calls = api.calls, duration_ms, "subscriptions invocation failed");
                    return Err(e.into());
                }
            };
            record::subscriptions(&mut metrics, &report);
            metrics.emit();
            let errors = report.iter().filter(|r| r.error.is_some()).count();
            tracing::info!(
                request_id = %event.context.request_id,
                subscriptions = report.len(),
                errors,
                api_calls = api.calls,
                duration_ms,
                "subscriptions invocation done"
            );
            Ok::<_, Error>(serde_json::to_value(&report)?)
        },
    ))
    .await
}
