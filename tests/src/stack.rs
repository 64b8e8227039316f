//! A deployment's AWS resources, created on moto with the real SDK clients: the state table,
//! the fetch queue with its dead-letter queue, and the events bucket — named uniquely per test.

use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};

/// The resources of one test "deployment".
#[derive(Debug, Clone)]
pub struct Stack {
    /// moto endpoint.
    pub endpoint: String,
    /// SDK configuration pointing at moto.
    pub conf: aws_config::SdkConfig,
    /// State table name.
    pub table: String,
    /// Fetch queue URL.
    pub queue_url: String,
    /// Dead-letter queue URL.
    pub dlq_url: String,
    /// Events bucket.
    pub bucket: String,
}

impl Stack {
    /// Creates everything with unique names.
    pub async fn create(max_receive_count: u32) -> Stack {
        Stack::create_at(&crate::moto::endpoint(), max_receive_count).await
    }

    /// [`Stack::create`] on the moto server at `endpoint`.
    pub async fn create_at(endpoint: &str, max_receive_count: u32) -> Stack {
        let endpoint = endpoint.to_owned();
        let conf = crate::moto::config_at(&endpoint).await;
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let table = format!("state-{suffix}");
        shared::store::dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&conf), &table)
            .await
            .expect("create table");
        let sqs = aws_sdk_sqs::Client::new(&conf);
        let dlq_url = sqs
            .create_queue()
            .queue_name(format!("dlq-{suffix}"))
            .send()
            .await
            .expect("create dlq")
            .queue_url
            .expect("dlq url");
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("dlq attributes")
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("dlq arn");
        let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
            .to_string();
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("jobs-{suffix}"))
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .attributes(QueueAttributeName::VisibilityTimeout, "30")
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        let bucket = format!("events-{suffix}");
        shared::aws::s3_client(&conf, true)
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        Stack {
            endpoint,
            conf,
            table,
            queue_url,
            dlq_url,
            bucket,
        }
    }

    /// The environment template.yaml gives the functions, pointed at moto.
    pub fn function_env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = vec![
            ("STATE_TABLE".to_owned(), self.table.clone()),
            ("BUCKET".to_owned(), self.bucket.clone()),
            ("QUEUE_URL".to_owned(), self.queue_url.clone()),
            ("DLQ_URL".to_owned(), self.dlq_url.clone()),
            ("AWS_ENDPOINT_URL".to_owned(), self.endpoint.clone()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ];
        for (k, v) in extra {
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        env
    }

    /// The state store of this stack.
    pub fn store(&self) -> shared::store::DynamoDbStore {
        shared::store::DynamoDbStore::new(
            aws_sdk_dynamodb::Client::new(&self.conf),
            self.table.clone(),
        )
    }

    /// The events bucket as a sink.
    pub fn sink(&self) -> shared::sink::S3Sink {
        shared::sink::S3Sink::new(
            shared::aws::s3_client(&self.conf, true),
            self.bucket.clone(),
        )
    }

    /// Receives up to 10 messages as an SQS Lambda event (what the event source mapping sends),
    /// with their receipt handles.
    pub async fn receive_event(
        &self,
        queue_url: &str,
        wait: Duration,
    ) -> (Value, Vec<(String, String)>) {
        let sqs = aws_sdk_sqs::Client::new(&self.conf);
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(1))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        let mut records = Vec::new();
        let mut handles = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let id = m.message_id.clone().unwrap_or_default();
            let count = m
                .attributes
                .as_ref()
                .and_then(|a| {
                    a.get(&MessageSystemAttributeName::ApproximateReceiveCount)
                        .cloned()
                })
                .unwrap_or_else(|| "1".into());
            handles.push((id.clone(), m.receipt_handle.clone().unwrap_or_default()));
            records.push(json!({
                "messageId": id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": {"ApproximateReceiveCount": count},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:jobs",
                "awsRegion": "us-east-1",
            }));
        }
        (json!({"Records": records}), handles)
    }

    /// Acknowledges what the fetcher handled: deletes every message not in its
    /// `batchItemFailures`, and makes the failed ones visible again at once (the retry).
    pub async fn settle(
        &self,
        queue_url: &str,
        handles: &[(String, String)],
        response: &Value,
    ) -> usize {
        let sqs = aws_sdk_sqs::Client::new(&self.conf);
        let failed: Vec<&str> = response["batchItemFailures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f["itemIdentifier"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        for (id, handle) in handles {
            if failed.contains(&id.as_str()) {
                sqs.change_message_visibility()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .expect("change visibility");
            } else {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("delete");
            }
        }
        failed.len()
    }

    /// Messages of the dead-letter queue with their `reason` attribute.
    pub async fn dead_letters(&self) -> Vec<(String, String)> {
        let sqs = aws_sdk_sqs::Client::new(&self.conf);
        let mut out = Vec::new();
        loop {
            let r = sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .message_attribute_names("All")
                .visibility_timeout(60)
                .send()
                .await
                .expect("receive dlq");
            let msgs = r.messages.unwrap_or_default();
            if msgs.is_empty() {
                return out;
            }
            for m in msgs {
                let reason = m
                    .message_attributes
                    .as_ref()
                    .and_then(|a| a.get("reason"))
                    .and_then(|v| v.string_value.clone())
                    .unwrap_or_default();
                out.push((m.body.unwrap_or_default(), reason));
            }
        }
    }

    /// Every object key of the bucket.
    pub async fn object_keys(&self) -> Vec<String> {
        let s3 = shared::aws::s3_client(&self.conf, true);
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let r = s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list objects");
            keys.extend(
                r.contents
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| o.key),
            );
            match r.next_continuation_token {
                Some(t) => token = Some(t),
                None => return keys,
            }
        }
    }

    /// The gunzipped lines of an object.
    pub async fn object_lines(&self, key: &str) -> Vec<Value> {
        use std::io::Read;
        let s3 = shared::aws::s3_client(&self.conf, true);
        let body = s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("get object")
            .body
            .collect()
            .await
            .expect("read object")
            .into_bytes();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .expect("gzip");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("ndjson line"))
            .collect()
    }
}
