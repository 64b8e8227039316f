//! A counting HTTP proxy in front of moto: every AWS request a function binary sends passes
//! through it and is counted by service and operation (`dynamodb.PutItem`, `sqs.SendMessageBatch`,
//! `s3.PutObject`, …), so benchmarks can state requests per blob as measured, not as assumed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

#[derive(Clone)]
struct Inner {
    upstream: String,
    http: reqwest::Client,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// The running proxy.
pub struct CountingProxy {
    url: String,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for CountingProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingProxy")
            .field("url", &self.url)
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

async fn forward(
    State(inner): State<Inner>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = operation(&method, &uri, &headers);
    *inner.counts.lock().expect("lock").entry(op).or_default() += 1;
    let url = format!(
        "{}{}",
        inner.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut req = inner.http.request(method, &url).body(body);
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.unwrap_or_default();
            let mut out = Response::new(Body::from(body));
            *out.status_mut() = status;
            for (k, v) in &headers {
                if k != "content-length" && k != "transfer-encoding" && k != "connection" {
                    out.headers_mut().insert(k, v.clone());
                }
            }
            out
        }
        Err(e) => {
            let mut out = Response::new(Body::from(format!("proxy: {e}")));
            *out.status_mut() = StatusCode::BAD_GATEWAY;
            out
        }
    }
}

impl CountingProxy {
    /// Starts a proxy on 127.0.0.1 forwarding to `upstream` (e.g. the moto server).
    pub async fn start(upstream: &str) -> CountingProxy {
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let inner = Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            counts: counts.clone(),
        };
        let app = Router::new().fallback(forward).with_state(inner);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        CountingProxy {
            url: format!("http://{addr}"),
            counts,
            shutdown: Some(tx),
        }
    }

    /// The proxy's URL (give it to the functions as `AWS_ENDPOINT_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests so far per `service.Operation`; resets the counts.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts.lock().expect("lock"))
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
}
