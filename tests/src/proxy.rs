//! A counting HTTP proxy in front of moto: every AWS request a function binary sends passes
//! through it and is counted by service and operation (`dynamodb.PutItem`, `sqs.SendMessageBatch`,
//! `s3.PutObject`, …), so benchmarks can state requests per blob as measured, not as assumed.
//!
//! With [`AwsFaults`] it is also the adapter boundary's chaos monkey: per request, with seeded
//! probabilities, it answers the service's throttling error (DynamoDB
//! `ProvisionedThroughputExceededException`, SQS `RequestThrottled`, S3 `SlowDown`, Secrets
//! Manager `ThrottlingException`) or a 500 internal error, or closes the connection without an
//! answer — always WITHOUT forwarding the request, so a retry is never a second write.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Faults the proxy injects, each a probability per request (0 = never).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AwsFaults {
    /// Seed of the fault decisions.
    pub seed: u64,
    /// The service's throttling error.
    pub throttle: f64,
    /// HTTP 500 internal error.
    pub error: f64,
    /// The connection is closed without a response.
    pub drop: f64,
}

/// What the proxy did instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Throttling error.
    Throttle,
    /// 500 internal error.
    Error,
    /// Connection closed.
    Drop,
}

impl Injected {
    /// Stable name (`throttle`, `500`, `drop`).
    pub fn as_str(self) -> &'static str {
        match self {
            Injected::Throttle => "throttle",
            Injected::Error => "500",
            Injected::Drop => "drop",
        }
    }
}

struct Inner {
    upstream: String,
    http: reqwest::Client,
    counts: Mutex<BTreeMap<String, u64>>,
    faults: AwsFaults,
    rng: Mutex<StdRng>,
    injected: Mutex<BTreeMap<String, u64>>,
}

/// The running proxy.
pub struct CountingProxy {
    url: String,
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for CountingProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingProxy")
            .field("url", &self.url)
            .field("faults", &self.inner.faults)
            .finish_non_exhaustive()
    }
}

/// The operation of an AWS request: `X-Amz-Target` for the JSON protocols (DynamoDB, SQS,
/// Secrets Manager), the method and query shape for S3's REST API.
pub fn operation(method: &Method, uri: &Uri, headers: &HeaderMap) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (service, op) = target.split_once('.').unwrap_or(("unknown", target));
        let service = match service {
            s if s.starts_with("DynamoDB") => "dynamodb",
            s if s.starts_with("AmazonSQS") => "sqs",
            "secretsmanager" => "secretsmanager",
            other => other,
        };
        return format!("{service}.{op}");
    }
    let path = uri.path().trim_start_matches('/');
    let has_key = path.split_once('/').is_some_and(|(_, k)| !k.is_empty());
    let query = uri.query().unwrap_or("");
    let op = match (method.as_str(), has_key) {
        ("PUT", true) if query.contains("uploadId") => "UploadPart",
        ("PUT", true) => "PutObject",
        ("POST", true) if query.contains("uploads") => "CreateMultipartUpload",
        ("POST", true) => "CompleteMultipartUpload",
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("DELETE", true) => "DeleteObject",
        ("GET", false) if query.contains("list-type=2") => "ListObjectsV2",
        ("GET", false) => "ListObjects",
        ("HEAD", false) => "HeadBucket",
        ("PUT", false) => "CreateBucket",
        _ => "other",
    };
    format!("s3.{op}")
}

/// The answer a service gives for an injected fault: status, content type, extra header and
/// body, in the service's own protocol (JSON 1.0 for DynamoDB, SQS and Secrets Manager, REST XML
/// for S3), so the SDK classifies it as that service's throttling or server error.
pub fn fault_response(
    service: &str,
    kind: Injected,
    head: bool,
) -> (
    StatusCode,
    &'static str,
    Option<(&'static str, &'static str)>,
    String,
) {
    let json = "application/x-amz-json-1.0";
    let (status, ctype, header, body) = match (service, kind) {
        (_, Injected::Drop) => (StatusCode::BAD_GATEWAY, "text/plain", None, String::new()),
        ("dynamodb", Injected::Throttle) => (
            StatusCode::BAD_REQUEST,
            json,
            None,
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded. (chaos)"}"#.to_owned(),
        ),
        ("dynamodb", Injected::Error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json,
            None,
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error (chaos)"}"#.to_owned(),
        ),
        ("sqs", Injected::Throttle) => (
            StatusCode::BAD_REQUEST,
            json,
            Some(("x-amzn-query-error", "RequestThrottled;Sender")),
            r#"{"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded (chaos)"}"#.to_owned(),
        ),
        ("sqs", Injected::Error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json,
            Some(("x-amzn-query-error", "InternalFailure;Receiver")),
            r#"{"__type":"com.amazonaws.sqs#InternalFailure","message":"The request processing has failed because of an unknown error. (chaos)"}"#.to_owned(),
        ),
        ("s3", Injected::Throttle) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "application/xml",
            None,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate. (chaos)</Message><RequestId>chaos</RequestId></Error>".to_owned(),
        ),
        ("s3", Injected::Error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/xml",
            None,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again. (chaos)</Message><RequestId>chaos</RequestId></Error>".to_owned(),
        ),
        (_, Injected::Throttle) => (
            StatusCode::BAD_REQUEST,
            "application/x-amz-json-1.1",
            None,
            r#"{"__type":"ThrottlingException","message":"Rate exceeded (chaos)"}"#.to_owned(),
        ),
        (_, Injected::Error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/x-amz-json-1.1",
            None,
            r#"{"__type":"InternalServiceError","message":"internal error (chaos)"}"#.to_owned(),
        ),
    };
    (
        status,
        ctype,
        header,
        if head { String::new() } else { body },
    )
}

fn response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(body));
    *out.status_mut() = status;
    out
}

impl Inner {
    fn decide(&self) -> Option<Injected> {
        let f = self.faults;
        if f.throttle <= 0.0 && f.error <= 0.0 && f.drop <= 0.0 {
            return None;
        }
        let x: f64 = self.rng.lock().expect("lock").random();
        if x < f.throttle {
            Some(Injected::Throttle)
        } else if x < f.throttle + f.error {
            Some(Injected::Error)
        } else if x < f.throttle + f.error + f.drop {
            Some(Injected::Drop)
        } else {
            None
        }
    }

    async fn handle(
        self: Arc<Self>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, std::io::Error> {
        let (parts, body) = req.into_parts();
        let op = operation(&parts.method, &parts.uri, &parts.headers);
        *self
            .counts
            .lock()
            .expect("lock")
            .entry(op.clone())
            .or_default() += 1;
        let body = body
            .collect()
            .await
            .map_err(|e| std::io::Error::other(format!("reading the request: {e}")))?
            .to_bytes();
        if let Some(kind) = self.decide() {
            let service = op.split_once('.').map_or("unknown", |(s, _)| s);
            *self
                .injected
                .lock()
                .expect("lock")
                .entry(format!("{service} {}", kind.as_str()))
                .or_default() += 1;
            if kind == Injected::Drop {
                // A service error makes hyper close the connection without a response.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "chaos: connection dropped",
                ));
            }
            let (status, ctype, header, text) =
                fault_response(service, kind, parts.method == Method::HEAD);
            let mut out = response(status, Bytes::from(text));
            let h = out.headers_mut();
            h.insert("content-type", HeaderValue::from_static(ctype));
            h.insert("x-amzn-requestid", HeaderValue::from_static("chaos"));
            if let Some((k, v)) = header {
                h.insert(k, HeaderValue::from_static(v));
            }
            return Ok(out);
        }
        let url = format!(
            "{}{}",
            self.upstream,
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        );
        let mut req = self.http.request(parts.method, &url).body(body);
        for (k, v) in &parts.headers {
            if k != "host" && k != "content-length" {
                req = req.header(k, v);
            }
        }
        Ok(match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                let body = resp.bytes().await.unwrap_or_default();
                let mut out = response(status, body);
                for (k, v) in &headers {
                    if k != "content-length" && k != "transfer-encoding" && k != "connection" {
                        out.headers_mut().insert(k, v.clone());
                    }
                }
                out
            }
            Err(e) => response(StatusCode::BAD_GATEWAY, Bytes::from(format!("proxy: {e}"))),
        })
    }
}

impl CountingProxy {
    /// Starts a proxy on 127.0.0.1 forwarding to `upstream` (e.g. the moto server).
    pub async fn start(upstream: &str) -> CountingProxy {
        CountingProxy::start_with_faults(upstream, AwsFaults::default()).await
    }

    /// [`CountingProxy::start`], injecting `faults` instead of forwarding some requests.
    pub async fn start_with_faults(upstream: &str, faults: AwsFaults) -> CountingProxy {
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            counts: Mutex::new(BTreeMap::new()),
            faults,
            rng: Mutex::new(StdRng::seed_from_u64(faults.seed ^ 0xa5a5_0aa5)),
            injected: Mutex::new(BTreeMap::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let served = inner.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    s = listener.accept() => match s {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                    _ = &mut rx => return,
                };
                let inner = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| inner.clone().handle(req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        CountingProxy {
            url: format!("http://{addr}"),
            inner,
            shutdown: Some(tx),
        }
    }

    /// The proxy's URL (give it to the functions as `AWS_ENDPOINT_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests so far per `service.Operation` (faulted ones included); resets the counts.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.inner.counts.lock().expect("lock"))
    }

    /// Faults injected so far per `service kind` (`dynamodb throttle`, `s3 500`, `sqs drop`).
    pub fn injected(&self) -> BTreeMap<String, u64> {
        self.inner.injected.lock().expect("lock").clone()
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &str, uri: &str, target: Option<&str>) -> String {
        let mut h = HeaderMap::new();
        if let Some(t) = target {
            h.insert("x-amz-target", t.parse().expect("header"));
        }
        operation(
            &method.parse().expect("method"),
            &uri.parse().expect("uri"),
            &h,
        )
    }

    #[test]
    fn operations_are_named_by_service() {
        assert_eq!(
            op("POST", "/", Some("DynamoDB_20120810.PutItem")),
            "dynamodb.PutItem"
        );
        assert_eq!(
            op("POST", "/", Some("AmazonSQS.SendMessageBatch")),
            "sqs.SendMessageBatch"
        );
        assert_eq!(
            op("POST", "/", Some("secretsmanager.GetSecretValue")),
            "secretsmanager.GetSecretValue"
        );
        assert_eq!(
            op("PUT", "/bucket/ocsf/a.ndjson.gz?x-id=PutObject", None),
            "s3.PutObject"
        );
        assert_eq!(
            op("GET", "/bucket/directory/users.json.gz", None),
            "s3.GetObject"
        );
        assert_eq!(
            op("GET", "/bucket?list-type=2&prefix=x", None),
            "s3.ListObjectsV2"
        );
        assert_eq!(
            op("PUT", "/bucket/k?partNumber=1&uploadId=u", None),
            "s3.UploadPart"
        );
    }

    /// A proxy that faults every request: nothing reaches the upstream (there is none), and
    /// the SDK's classification of the answer is what the adapters rely on.
    async fn always(faults: AwsFaults) -> (CountingProxy, aws_config::SdkConfig) {
        let proxy = CountingProxy::start_with_faults("http://127.0.0.1:9", faults).await;
        let conf = crate::moto::config_at(proxy.url()).await;
        (proxy, conf)
    }

    #[tokio::test]
    async fn injected_throttling_is_retried_by_the_sdk_and_classified_as_throttling() {
        use aws_sdk_dynamodb::error::ProvideErrorMetadata;
        let (proxy, conf) = always(AwsFaults {
            throttle: 1.0,
            ..AwsFaults::default()
        })
        .await;
        let err = aws_sdk_dynamodb::Client::new(&conf)
            .list_tables()
            .send()
            .await
            .expect_err("every request is throttled");
        assert_eq!(err.code(), Some("ProvisionedThroughputExceededException"));
        let s3 = crate::moto::config_at(proxy.url()).await;
        let err = shared::aws::s3_client(&s3, true)
            .put_object()
            .bucket("b")
            .key("k")
            .send()
            .await
            .expect_err("throttled");
        assert_eq!(err.code(), Some("SlowDown"));
        let err = aws_sdk_sqs::Client::new(&conf)
            .send_message()
            .queue_url(format!("{}/123456789012/q", proxy.url()))
            .message_body("x")
            .send()
            .await
            .expect_err("throttled");
        assert_eq!(err.code(), Some("RequestThrottled"), "{err:?}");
        let injected = proxy.injected();
        // The SDK's standard retry mode makes 3 attempts of each call.
        assert_eq!(injected.get("dynamodb throttle"), Some(&3), "{injected:?}");
        assert_eq!(injected.get("s3 throttle"), Some(&3), "{injected:?}");
        assert_eq!(injected.get("sqs throttle"), Some(&3), "{injected:?}");
        assert_eq!(proxy.take().get("dynamodb.ListTables"), Some(&3));
    }

    #[tokio::test]
    async fn a_dropped_connection_and_a_500_are_retried_by_the_sdk() {
        for (kind, faults) in [
            (
                "drop",
                AwsFaults {
                    drop: 1.0,
                    ..AwsFaults::default()
                },
            ),
            (
                "500",
                AwsFaults {
                    error: 1.0,
                    ..AwsFaults::default()
                },
            ),
        ] {
            let (proxy, conf) = always(faults).await;
            let err = aws_sdk_dynamodb::Client::new(&conf)
                .list_tables()
                .send()
                .await
                .expect_err("every request fails");
            let injected = proxy.injected();
            assert_eq!(
                injected.get(&format!("dynamodb {kind}")),
                Some(&3),
                "{kind}: {injected:?} {err:?}"
            );
        }
    }

    #[test]
    fn fault_decisions_follow_the_seed_and_the_rates() {
        let decide = |seed| {
            let inner = Inner {
                upstream: String::new(),
                http: reqwest::Client::new(),
                counts: Mutex::new(BTreeMap::new()),
                faults: AwsFaults {
                    seed,
                    throttle: 0.1,
                    error: 0.05,
                    drop: 0.05,
                },
                rng: Mutex::new(StdRng::seed_from_u64(seed)),
                injected: Mutex::new(BTreeMap::new()),
            };
            (0..4000).map(|_| inner.decide()).collect::<Vec<_>>()
        };
        let a = decide(3);
        assert_eq!(a, decide(3));
        assert_ne!(a, decide(4));
        let n = |k| a.iter().filter(|d| **d == Some(k)).count();
        assert!(
            (300..500).contains(&n(Injected::Throttle)),
            "{}",
            n(Injected::Throttle)
        );
        assert!((130..270).contains(&n(Injected::Error)));
        assert!((130..270).contains(&n(Injected::Drop)));
    }
}
