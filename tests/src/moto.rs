//! Reaching the moto server the tests run against, and making uniquely named resources on it.
//!
//! Tests run in parallel against one server, so every test makes its own table, queue or
//! bucket (uuid suffix) and nothing ever resets the server.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::{Credentials, Region, SharedCredentialsProvider};
use aws_sdk_sqs::types::QueueAttributeName;
use shared::store::DynamoDbStore;

/// The variable naming the moto server.
pub const MOTO_ENDPOINT_VAR: &str = "MOTO_ENDPOINT";

/// The moto server's URL, from `MOTO_ENDPOINT`.
///
/// # Panics
/// When `MOTO_ENDPOINT` is not set: these tests never skip silently.
pub fn endpoint() -> String {
    match std::env::var(MOTO_ENDPOINT_VAR) {
        Ok(v) if !v.trim().is_empty() => v.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "MOTO_ENDPOINT is not set: run scripts/test.sh, which starts moto_server, or export MOTO_ENDPOINT=http://127.0.0.1:PORT"
        ),
    }
}

/// SDK configuration for moto: the shared loader with the endpoint, plus region `us-east-1`
/// and static test credentials (moto accepts any).
pub async fn config() -> SdkConfig {
    config_at(&endpoint()).await
}

/// [`config`] for the moto server at `endpoint`.
pub async fn config_at(endpoint: &str) -> SdkConfig {
    let conf = shared::aws::sdk_config(Some(endpoint)).await;
    conf.to_builder()
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "moto",
        )))
        .build()
}

/// A unique lower-case name: `{prefix}-{32 hex digits}` (fits buckets, tables and queues).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Clients of every service the collector uses, all on moto.
#[derive(Debug, Clone)]
pub struct Moto {
    /// The configuration they were built from.
    pub conf: SdkConfig,
    /// DynamoDB.
    pub ddb: aws_sdk_dynamodb::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// S3 (path-style).
    pub s3: aws_sdk_s3::Client,
    /// Secrets Manager.
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Moto {
    /// Clients on the moto server of `MOTO_ENDPOINT` (panics when it is not set).
    pub async fn connect() -> Moto {
        let conf = config().await;
        Moto {
            ddb: aws_sdk_dynamodb::Client::new(&conf),
            sqs: aws_sdk_sqs::Client::new(&conf),
            s3: shared::aws::s3_client(&conf, true),
            secrets: aws_sdk_secretsmanager::Client::new(&conf),
            conf,
        }
    }

    /// A new state table with the collector's layout; returns its name.
    pub async fn table(&self) -> String {
        let name = unique("state");
        DynamoDbStore::create_table(&self.ddb, &name)
            .await
            .unwrap_or_else(|e| panic!("creating table {name} on moto: {e}"));
        name
    }

    /// A new standard queue, optionally redriving to `dlq_arn` after `max_receives`; returns
    /// its URL.
    pub async fn queue(&self, prefix: &str, redrive: Option<(&str, u32)>) -> String {
        let name = unique(prefix);
        let mut req = self.sqs.create_queue().queue_name(&name);
        if let Some((arn, max)) = redrive {
            let policy = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max });
            req = req.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        let out = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating queue {name} on moto: {e:?}"));
        out.queue_url()
            .unwrap_or_else(|| panic!("moto returned no URL for queue {name}"))
            .to_owned()
    }

    /// The ARN of a queue.
    pub async fn queue_arn(&self, url: &str) -> String {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("reading the ARN of {url}: {e:?}"));
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .unwrap_or_else(|| panic!("moto returned no ARN for {url}"))
            .clone()
    }

    /// A new bucket; returns its name.
    pub async fn bucket(&self) -> String {
        let name = unique("events");
        self.s3
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating bucket {name} on moto: {e:?}"));
        name
    }
}

/// A moto server this process started (from `.venv/bin/moto_server`), killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    /// Its URL.
    pub url: String,
    child: std::process::Child,
}

impl MotoServer {
    /// `MOTO_ENDPOINT` when set (`None` is returned as the server: nothing to stop), else a
    /// moto server started here on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// When `.venv/bin/moto_server` is missing or does not start.
    pub fn from_env_or_start() -> (String, Option<MotoServer>) {
        if let Ok(u) = std::env::var(MOTO_ENDPOINT_VAR)
            && !u.trim().is_empty()
        {
            return (u.trim().trim_end_matches('/').to_owned(), None);
        }
        let s = MotoServer::start();
        (s.url.clone(), Some(s))
    }

    /// Starts `.venv/bin/moto_server` on a free port and waits until it accepts connections.
    ///
    /// # Panics
    /// When the server is missing or does not start.
    pub fn start() -> MotoServer {
        let server =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
        assert!(
            server.exists(),
            "{} is missing: run `bash scripts/test.sh` once (it makes .venv), or export MOTO_ENDPOINT",
            server.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = std::process::Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server");
        let mut s = MotoServer {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        for _ in 0..150 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                std::thread::sleep(std::time::Duration::from_millis(300));
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = s.child.kill();
        let _ = s.child.wait();
        panic!("moto_server did not start on {}", s.url);
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
