//! AWS SDK configuration shared by the functions, the local CLI and the tests, and the error
//! classification every AWS adapter uses.

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// The region used when neither `AWS_REGION` nor a profile names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Loads the SDK configuration: region from the environment (`AWS_REGION`, profile…), else
/// [`DEFAULT_REGION`]; credentials from the default chain (on Lambda: the function role).
///
/// With `endpoint_url` every client built from it talks to that endpoint instead of AWS: this
/// is how tests and local runs reach a moto server (`http://127.0.0.1:PORT`).
pub async fn sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
    let region = RegionProviderChain::default_provider().or_else(DEFAULT_REGION);
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// An S3 client. `force_path_style` puts the bucket in the path (`http://host/bucket/key`),
/// which a local endpoint such as moto needs; keep it off for AWS.
pub fn s3_client(conf: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(conf)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// Error codes that mean "slow down / try later" across S3, DynamoDB, SQS and Secrets Manager.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServiceError",
    "InternalServiceErrorException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "KMSThrottlingException",
    "AWS.SimpleQueueService.RequestThrottled",
];

/// What the adapters need to know about an SDK error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Classified {
    /// The service's error code, when the service answered.
    pub code: Option<String>,
    /// A one-line description (code and message, or the transport failure); never a request
    /// or item body.
    pub message: String,
    /// Retrying later may succeed (throttling, 5xx, timeouts, network).
    pub retryable: bool,
}

/// Classifies an SDK error: throttling, 5xx, timeouts and transport failures are retryable;
/// other service errors (validation, access denied, missing resource) are not.
pub(crate) fn classify<E>(err: &SdkError<E, HttpResponse>) -> Classified
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let code = err.code().map(str::to_owned);
            let status = ctx.raw().status();
            let retryable = status.is_server_error()
                || status.as_u16() == 429
                || code
                    .as_deref()
                    .is_some_and(|c| RETRYABLE_CODES.contains(&c));
            let message = match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m} (HTTP {})", status.as_u16()),
                (Some(c), None) => format!("{c} (HTTP {})", status.as_u16()),
                _ => format!("HTTP {}: {}", status.as_u16(), DisplayErrorContext(err)),
            };
            Classified {
                code,
                message,
                retryable,
            }
        }
        SdkError::ConstructionFailure(_) => Classified {
            code: None,
            message: format!("request could not be built: {}", DisplayErrorContext(err)),
            retryable: false,
        },
        SdkError::TimeoutError(_) => Classified {
            code: None,
            message: format!("timed out: {}", DisplayErrorContext(err)),
            retryable: true,
        },
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => Classified {
            code: None,
            message: format!("could not reach the service: {}", DisplayErrorContext(err)),
            retryable: true,
        },
        SdkError::DispatchFailure(d) if d.is_user() => Classified {
            code: None,
            message: format!(
                "the request could not be sent: {}",
                DisplayErrorContext(err)
            ),
            retryable: false,
        },
        SdkError::DispatchFailure(_) => Classified {
            code: None,
            // Typically credentials that could not be loaded (on Lambda: a transient hiccup;
            // locally: no AWS credentials configured).
            message: format!(
                "the request was not sent (check the AWS credentials): {}",
                DisplayErrorContext(err)
            ),
            retryable: true,
        },
        _ => Classified {
            code: None,
            message: DisplayErrorContext(err).to_string(),
            retryable: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoint_url_and_default_region_are_applied() {
        let conf = sdk_config(Some("http://127.0.0.1:1")).await;
        assert_eq!(conf.endpoint_url(), Some("http://127.0.0.1:1"));
        assert!(conf.region().is_some(), "a region is always set");
        let _s3 = s3_client(&conf, true);
    }
}
