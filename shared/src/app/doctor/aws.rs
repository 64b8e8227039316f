//! [`DeploymentProbe`] on AWS: DescribeTable, GetQueueAttributes, HeadBucket, ListObjectsV2.

use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::head_bucket::HeadBucketError;
use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, Utc};

use super::{DeploymentProbe, NewestObject, ProbeError, QueueDepth, TableInfo};
use crate::aws::classify;

/// Most ListObjectsV2 pages read per prefix (1,000 keys each).
const MAX_LIST_PAGES: usize = 100;

/// The AWS clients doctor reads the deployment with.
#[derive(Debug, Clone)]
pub struct AwsDeployment {
    ddb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
}

impl AwsDeployment {
    /// Clients built from `conf`; `s3` from [`crate::aws::s3_client`] (path style for moto).
    pub fn new(conf: &aws_config::SdkConfig, s3: aws_sdk_s3::Client) -> AwsDeployment {
        AwsDeployment {
            ddb: aws_sdk_dynamodb::Client::new(conf),
            sqs: aws_sdk_sqs::Client::new(conf),
            s3,
        }
    }
}

fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

fn denied(code: Option<&str>, status: Option<u16>) -> bool {
    matches!(
        code,
        Some("AccessDenied" | "AccessDeniedException" | "UnrecognizedClientException")
    ) || status == Some(403)
}

fn credentials_hint(message: &str) -> String {
    if message.contains("credentials") || message.contains("could not reach") {
        "check the AWS credentials and region of this shell (AWS_PROFILE, AWS_REGION), and network access to AWS".into()
    } else {
        "check the AWS credentials and region of this shell (AWS_PROFILE, AWS_REGION)".into()
    }
}

impl DeploymentProbe for AwsDeployment {
    async fn table(&self, name: &str) -> Result<TableInfo, ProbeError> {
        match self.ddb.describe_table().table_name(name).send().await {
            Ok(out) => {
                let t = out.table();
                Ok(TableInfo {
                    status: t
                        .and_then(|t| t.table_status())
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_else(|| "UNKNOWN".into()),
                    items: t.and_then(|t| t.item_count()),
                })
            }
            Err(e) => {
                let c = classify(&e);
                let fix = if matches!(
                    e.as_service_error(),
                    Some(DescribeTableError::ResourceNotFoundException(_))
                ) {
                    "no such table in this account and region: give the stack output StateTableName with --table (or STATE_TABLE), and check AWS_REGION".to_owned()
                } else if denied(c.code.as_deref(), status_of(&e)) {
                    "access denied: grant dynamodb:DescribeTable on the table to the identity running doctor".to_owned()
                } else {
                    credentials_hint(&c.message)
                };
                Err(ProbeError {
                    message: c.message,
                    fix,
                })
            }
        }
    }

    async fn queue(&self, url: &str) -> Result<QueueDepth, ProbeError> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await;
        match out {
            Ok(out) => {
                let get = |a: QueueAttributeName| {
                    out.attributes()
                        .and_then(|m| m.get(&a))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                Ok(QueueDepth {
                    visible: get(QueueAttributeName::ApproximateNumberOfMessages),
                    in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
                })
            }
            Err(e) => {
                let c = classify(&e);
                let missing = e
                    .as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist())
                    || matches!(
                        c.code.as_deref(),
                        Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist")
                    );
                let fix = if missing {
                    "no such queue: give the stack outputs FetchQueueUrl with --queue-url (QUEUE_URL) and FetchDeadLetterQueueUrl with --dlq-url (DLQ_URL)".to_owned()
                } else if denied(c.code.as_deref(), status_of(&e)) {
                    "access denied: grant sqs:GetQueueAttributes on the queue to the identity running doctor".to_owned()
                } else {
                    credentials_hint(&c.message)
                };
                Err(ProbeError {
                    message: c.message,
                    fix,
                })
            }
        }
    }

    async fn bucket(&self, name: &str) -> Result<(), ProbeError> {
        match self.s3.head_bucket().bucket(name).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let c = classify(&e);
                let status = status_of(&e);
                let fix = if matches!(e.as_service_error(), Some(HeadBucketError::NotFound(_)))
                    || status == Some(404)
                {
                    "no such bucket: give the stack output EventsBucketName with --bucket (or BUCKET)"
                        .to_owned()
                } else if denied(c.code.as_deref(), status) {
                    "access denied: grant s3:ListBucket on the bucket to the identity running doctor"
                        .to_owned()
                } else if status == Some(301) {
                    "the bucket is in another region: set AWS_REGION to the stack's region"
                        .to_owned()
                } else {
                    credentials_hint(&c.message)
                };
                Err(ProbeError {
                    message: c.message,
                    fix,
                })
            }
        }
    }

    async fn newest_object(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Option<NewestObject>, ProbeError> {
        let mut newest: Option<NewestObject> = None;
        let mut token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await;
            let out = match out {
                Ok(o) => o,
                Err(e) => {
                    let c = classify(&e);
                    let fix = if c.code.as_deref() == Some("NoSuchBucket") {
                        "no such bucket: give the stack output EventsBucketName with --bucket (or BUCKET)".to_owned()
                    } else if denied(e.code(), status_of(&e)) {
                        "access denied: grant s3:ListBucket on the bucket to the identity running doctor".to_owned()
                    } else {
                        credentials_hint(&c.message)
                    };
                    return Err(ProbeError {
                        message: c.message,
                        fix,
                    });
                }
            };
            for o in out.contents() {
                let (Some(key), Some(m)) = (o.key(), o.last_modified()) else {
                    continue;
                };
                let Some(modified) = DateTime::<Utc>::from_timestamp(m.secs(), m.subsec_nanos())
                else {
                    continue;
                };
                if newest.as_ref().is_none_or(|n| modified > n.modified) {
                    newest = Some(NewestObject {
                        key: key.to_owned(),
                        modified,
                    });
                }
            }
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(newest)
    }
}
