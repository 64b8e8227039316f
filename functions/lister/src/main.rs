//! Lister Lambda: on each schedule tick, list new content of every tenant and content type and
//! enqueue one fetch job per new blob. Thin: all logic is in `shared::app::lister`; metrics
//! (EMF on stdout) in `shared::metrics::record`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::app::lister;
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
            let deadline = deadline_from_epoch_ms(event.context.deadline);
            deps.apis.set_deadline(Some(deadline));
            let before = deps.apis.snapshot().await;
            let result = lister::run(
                &deps.store,
                &deps.queue,
                &deps.apis,
                &deps.clock,
                &deps.config.lister,
                deadline,
            )
            .await;
            let after = deps.apis.snapshot().await;
            let mut metrics = Metrics::new("lister").with_detail(deps.config.metrics_detail);
            record::api_calls(&mut metrics, &before, &after);
            let expiring = record::certificates(&mut metrics, &after, chrono::Utc::now());
            let api = record::api_totals(&before, &after);
            let duration_ms = started.elapsed().as_millis() as u64;
            let mut report = match result {
                Ok(report) => report,
                Err(e) => {
                    metrics.emit();
                    tracing::error!(request_id = %event.context.request_id, error = %e,
                        api_calls = api.calls, duration_ms, "lister invocation failed");
                    return Err(e.into());
                }
            };
            report.dead_letters =
                lister::dead_letter_sweep(&deps.store, &deps.queue, &deps.clock, 50).await;
            record::lister_run(&mut metrics, &report);
            metrics.emit();
            report.log_summary(&event.context.request_id, &api, expiring.len(), duration_ms);
            Ok::<_, Error>(serde_json::to_value(&report)?)
        },
    ))
    .await
}
