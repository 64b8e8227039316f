//! Lister Lambda: on each schedule tick, list new content of every tenant and content type and
//! enqueue one fetch job per new blob. Thin: all logic is in `shared::app::lister`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::app::lister;
use shared::lambda::{Deps, deadline_from_epoch_ms, init_logging};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let deps = Deps::from_env().await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = deadline_from_epoch_ms(event.context.deadline);
            deps.apis.set_deadline(Some(deadline));
            let report = lister::run(
                &deps.store,
                &deps.queue,
                &deps.apis,
                &deps.clock,
                &deps.config.lister,
                deadline,
            )
            .await?;
            tracing::info!(
                request_id = %event.context.request_id,
                feeds = report.feeds.len(),
                jobs = report.jobs(),
                failures = report.failures(),
                "lister invocation done"
            );
            Ok::<_, Error>(serde_json::to_value(&report)?)
        },
    ))
    .await
}
