//! Users-sync Lambda: on each schedule tick, sync every enabled tenant's Entra users through
//! Graph `users/delta` into a snapshot under `directory/` in the events bucket (the fetcher
//! enriches actors from it). Thin: all logic is in `shared::app::users_sync`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::app::users_sync::{self, UsersSyncSettings};
use shared::lambda::{Deps, deadline_from_epoch_ms, init_logging};
use shared::metrics::{Metrics, record};

/// Margin kept before the invocation deadline for writing the report.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let deps = Deps::from_env().await?;
    let deps = &deps;
    let settings = &UsersSyncSettings::default();
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let started = std::time::Instant::now();
            let end = deadline_from_epoch_ms(event.context.deadline);
            let deadline = end.checked_sub(DEADLINE_MARGIN).unwrap_or(end);
            deps.graphs.set_deadline(Some(deadline));
            let report = users_sync::run(
                &deps.store,
                &deps.sink,
                &deps.graphs,
                &deps.clock,
                settings,
                deadline,
            )
            .await?;
            let mut metrics = Metrics::new("users-sync").with_detail(deps.config.metrics_detail);
            record::users_sync(&mut metrics, &report);
            metrics.emit();
            tracing::info!(
                request_id = %event.context.request_id,
                tenants = report.tenants.len(),
                resyncs = report.resyncs(),
                failures = report.failures(),
                duration_ms = started.elapsed().as_millis() as u64,
                "users-sync invocation done"
            );
            Ok::<_, Error>(serde_json::to_value(&report)?)
        },
    ))
    .await
}
