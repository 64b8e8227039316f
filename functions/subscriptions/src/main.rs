//! Subscriptions Lambda (daily): make sure every tenant's content types are subscribed and
//! report disabled or failing ones. Thin: all logic is in `shared::app::subscriptions`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::app::subscriptions;
use shared::lambda::{Deps, deadline_from_epoch_ms, init_logging};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let deps = Deps::from_env().await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        deps.apis.set_deadline(Some(deadline_from_epoch_ms(event.context.deadline)));
        let report = subscriptions::ensure(&deps.store, &deps.apis).await?;
        let errors = report.iter().filter(|r| r.error.is_some()).count();
        tracing::info!(request_id = %event.context.request_id, subscriptions = report.len(), errors, "subscriptions checked");
        Ok::<_, Error>(serde_json::to_value(&report)?)
    }))
    .await
}
