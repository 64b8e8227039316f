//! What the Lambda functions share: logging, the dependencies built once per cold start from
//! the environment, and the invocation deadline.

use std::time::Duration as StdDuration;

use tokio::time::Instant;

use crate::api::http_client;
use crate::app::SystemClock;
use crate::app::clients::TenantClients;
use crate::app::graph_clients::GraphClients;
use crate::config::{ConfigError, LambdaConfig};
use crate::queue::SqsQueue;
use crate::retry::RetryPolicy;
use crate::secrets::AwsSecrets;
use crate::sink::S3Sink;
use crate::store::DynamoDbStore;

/// JSON log lines on stderr (CloudWatch), level from `RUST_LOG` (default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr)
        .try_init();
}

/// Everything a function needs, built once per cold start.
#[derive(Debug)]
pub struct Deps {
    /// Settings.
    pub config: LambdaConfig,
    /// Tenants, cursors and the ledger.
    pub store: DynamoDbStore,
    /// The fetch queue (and its dead-letter queue).
    pub queue: SqsQueue,
    /// The events bucket.
    pub sink: S3Sink,
    /// Per-tenant Management API clients.
    pub apis: TenantClients<AwsSecrets>,
    /// Per-tenant Microsoft Graph clients (users-sync).
    pub graphs: GraphClients<AwsSecrets>,
    /// Wall clock.
    pub clock: SystemClock,
}

impl Deps {
    /// Reads the environment and builds the AWS clients.
    ///
    /// # Errors
    /// [`ConfigError`] naming the missing or invalid setting.
    pub async fn from_env() -> Result<Deps, ConfigError> {
        let config = LambdaConfig::from_env()?;
        let aws = crate::aws::sdk_config(config.aws_endpoint_url.as_deref()).await;
        let store = DynamoDbStore::new(
            aws_sdk_dynamodb::Client::new(&aws),
            config.state_table.clone(),
        );
        let queue = SqsQueue::new(
            aws_sdk_sqs::Client::new(&aws),
            config.queue_url.clone(),
            Some(config.dlq_url.clone()),
        );
        let sink = S3Sink::new(
            crate::aws::s3_client(&aws, config.aws_endpoint_url.is_some()),
            config.bucket.clone(),
        );
        let secrets = AwsSecrets::new(aws_sdk_secretsmanager::Client::new(&aws));
        let http = http_client();
        let graphs = GraphClients::new(http.clone(), secrets.clone(), RetryPolicy::default());
        let apis = TenantClients::new(http, secrets, RetryPolicy::default());
        Ok(Deps {
            config,
            store,
            queue,
            sink,
            apis,
            graphs,
            clock: SystemClock,
        })
    }
}

/// The invocation's deadline as an [`Instant`], from Lambda's epoch-milliseconds deadline.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    Instant::now() + StdDuration::from_millis(deadline_ms.saturating_sub(now_ms))
}
