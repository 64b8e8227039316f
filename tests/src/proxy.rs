//! A counting HTTP proxy in front of moto: every AWS request a function binary sends passes
//! through it and is counted by service and operation (`dynamodb.PutItem`, `sqs.SendMessageBatch`,
//! `s3.PutObject`, …), so benchmarks can state requests per blob as measured, not as assumed.
//!
//! With [`CountingProxy::start_metering`] it also estimates the DynamoDB capacity each request
//! consumes ([`Capacity`]): item sizes from the request and response bodies, and — to know the
//! size of the item a write replaces or produces — an uncounted `GetItem` of the item straight
//! to moto before the write (and after an `UpdateItem`), since moto's own `ConsumedCapacity`
//! figures are fixed placeholders.
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
use serde_json::{Value, json};

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
    /// DynamoDB capacity by `operation kind` (only when metering).
    meter: Option<Mutex<BTreeMap<String, Capacity>>>,
    /// Key attributes of each table (from `DescribeTable`), for metering.
    keys: Mutex<BTreeMap<String, TableKeys>>,
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
        let metered = self.meter.is_some() && op.starts_with("dynamodb.");
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_owned();
        let before = if metered {
            self.clone().image_before(&op, &parts.headers, &body).await
        } else {
            None
        };
        let request_body = metered.then(|| body.clone());
        let (status, headers, answer) = self
            .forward(parts.method, &path, &parts.headers, body)
            .await;
        if let (Some(request), Some(before)) = (request_body, before) {
            self.clone()
                .record(&op, &parts.headers, &request, before, status, &answer)
                .await;
        }
        let mut out = response(status, answer);
        for (k, v) in &headers {
            if k != "content-length" && k != "transfer-encoding" && k != "connection" {
                out.headers_mut().insert(k, v.clone());
            }
        }
        Ok(out)
    }

    /// Sends a request to the upstream as it came; a transport failure is a 502.
    async fn forward(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let url = format!("{}{path}", self.upstream);
        let mut req = self.http.request(method, &url).body(body);
        for (k, v) in headers {
            if k != "host" && k != "content-length" {
                req = req.header(k, v);
            }
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                let body = resp.bytes().await.unwrap_or_default();
                (status, headers, body)
            }
            Err(e) => (
                StatusCode::BAD_GATEWAY,
                HeaderMap::new(),
                Bytes::from(format!("proxy: {e}")),
            ),
        }
    }

    /// An uncounted DynamoDB call straight to the upstream (metering only), signed as the
    /// request it serves was (moto reads the region from the `Authorization` header).
    async fn shadow(&self, headers: &HeaderMap, target: &str, body: &Value) -> Option<Value> {
        let mut h = HeaderMap::new();
        if let Some(auth) = headers.get("authorization") {
            h.insert("authorization", auth.clone());
        }
        h.insert(
            "x-amz-target",
            HeaderValue::from_str(&format!("DynamoDB_20120810.{target}")).ok()?,
        );
        h.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        let (status, _, answer) = self
            .forward(
                Method::POST,
                "/",
                &h,
                Bytes::from(serde_json::to_vec(body).ok()?),
            )
            .await;
        if !status.is_success() {
            return None;
        }
        serde_json::from_slice(&answer).ok()
    }

    /// The key attributes of `table` (cached after one `DescribeTable`).
    async fn table_keys(&self, headers: &HeaderMap, table: &str) -> Option<TableKeys> {
        if let Some(k) = self.keys.lock().expect("lock").get(table) {
            return Some(k.clone());
        }
        let d = self
            .shadow(headers, "DescribeTable", &json!({ "TableName": table }))
            .await?;
        let schema = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k["AttributeName"].as_str().map(str::to_owned))
                .collect()
        };
        let t = &d["Table"];
        let keys = TableKeys {
            key: schema(&t["KeySchema"]),
            indexes: t["GlobalSecondaryIndexes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|g| schema(&g["KeySchema"]))
                .collect(),
        };
        self.keys
            .lock()
            .expect("lock")
            .insert(table.to_owned(), keys.clone());
        Some(keys)
    }

    /// The stored item a write is about to replace (`Some(None)`: none; `None`: not a write,
    /// or not metered).
    async fn get_item(
        &self,
        headers: &HeaderMap,
        table: &str,
        key: &serde_json::Map<String, Value>,
    ) -> Option<Value> {
        let got = self
            .shadow(
                headers,
                "GetItem",
                &json!({ "TableName": table, "Key": key, "ConsistentRead": true }),
            )
            .await?;
        got.get("Item").filter(|i| i.is_object()).cloned()
    }

    async fn image_before(
        self: Arc<Self>,
        op: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Option<Option<Value>> {
        let req: Value = serde_json::from_slice(body).ok()?;
        let table = req["TableName"].as_str()?.to_owned();
        let key = match op {
            "dynamodb.PutItem" => {
                let keys = self.table_keys(headers, &table).await?;
                let item = req["Item"].as_object()?;
                keys.key
                    .iter()
                    .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
                    .collect()
            }
            "dynamodb.UpdateItem" | "dynamodb.DeleteItem" => req["Key"].as_object()?.clone(),
            _ => return Some(None),
        };
        Some(self.get_item(headers, &table, &key).await)
    }

    /// Adds one DynamoDB request's estimated capacity to the meter.
    async fn record(
        self: Arc<Self>,
        op: &str,
        headers: &HeaderMap,
        request: &Bytes,
        before: Option<Value>,
        status: StatusCode,
        answer: &Bytes,
    ) {
        let Ok(req) = serde_json::from_slice::<Value>(request) else {
            return;
        };
        let resp: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
        let failed_condition = !status.is_success()
            && resp["__type"]
                .as_str()
                .is_some_and(|t| t.ends_with("ConditionalCheckFailedException"));
        if !status.is_success() && !failed_condition {
            // Throttled or refused: no capacity consumed; counted as a request only.
            self.add(format!("{op} (error)"), Capacity::request());
            return;
        }
        let table = req["TableName"].as_str().unwrap_or("").to_owned();
        let factor = |consistent: bool| if consistent { 1.0 } else { 0.5 };
        let mut c = Capacity::request();
        let kind;
        match op {
            "dynamodb.GetItem" => {
                let size = resp.get("Item").map_or(0, item_size);
                kind = key_kind(&req["Key"]);
                c.item_bytes = size;
                c.rru = read_units(size) * factor(req["ConsistentRead"] == json!(true));
            }
            "dynamodb.Query" | "dynamodb.Scan" => {
                let size: u64 = resp["Items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(item_size)
                    .sum();
                kind = query_kind(&req);
                c.item_bytes = size;
                c.items = resp["Items"].as_array().map_or(0, |a| a.len() as u64);
                let consistent =
                    req["ConsistentRead"] == json!(true) && req.get("IndexName").is_none();
                c.rru = read_units(size) * factor(consistent);
            }
            "dynamodb.BatchGetItem" => {
                kind = "batch".to_owned();
                for (t, items) in resp["Responses"].as_object().into_iter().flatten() {
                    let consistent = req["RequestItems"][t]["ConsistentRead"] == json!(true);
                    for i in items.as_array().into_iter().flatten() {
                        let size = item_size(i);
                        c.item_bytes += size;
                        c.items += 1;
                        c.rru += read_units(size) * factor(consistent);
                    }
                }
            }
            "dynamodb.PutItem" | "dynamodb.UpdateItem" | "dynamodb.DeleteItem" => {
                let after = if failed_condition {
                    before.clone()
                } else if op == "dynamodb.PutItem" {
                    Some(req["Item"].clone())
                } else if op == "dynamodb.DeleteItem" {
                    None
                } else {
                    let key = req["Key"].as_object().cloned().unwrap_or_default();
                    self.get_item(headers, &table, &key).await
                };
                kind = key_kind(if op == "dynamodb.PutItem" {
                    &req["Item"]
                } else {
                    &req["Key"]
                });
                let old = before.as_ref().map_or(0, item_size);
                let new = after.as_ref().map_or(0, item_size);
                c.item_bytes = new.max(old);
                if failed_condition {
                    // A failed condition still consumes the write, sized by the item there.
                    c.failed_conditions = 1;
                    c.wru = write_units(old);
                } else {
                    c.wru = write_units(old.max(new));
                    if let Some(keys) = self.keys.lock().expect("lock").get(&table) {
                        for index in &keys.indexes {
                            c.index_wru +=
                                index_write_units(index, before.as_ref(), after.as_ref());
                        }
                    }
                }
            }
            _ => kind = "other".to_owned(),
        }
        self.add(format!("{op} {kind}"), c);
    }

    fn add(&self, key: String, c: Capacity) {
        if let Some(meter) = &self.meter {
            meter.lock().expect("lock").entry(key).or_default().add(&c);
        }
    }
}

/// Estimated DynamoDB capacity of a set of requests (on-demand request units).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Capacity {
    /// Requests.
    pub requests: u64,
    /// Write request units of the table: 1 per KB (rounded up) of the larger of the item before
    /// and after the write; a write whose condition failed: of the item there (at least 1).
    pub wru: f64,
    /// Write request units of global secondary indexes: an item entering, leaving or changing
    /// in an index (1 per KB of the indexed item; 2 writes when its index key changes).
    pub index_wru: f64,
    /// Read request units: 1 per 4 KB (rounded up, at least 1) strongly consistent, half that
    /// eventually consistent (a global secondary index is always eventually consistent).
    pub rru: f64,
    /// Item bytes read or written (DynamoDB's item size: attribute names plus values).
    pub item_bytes: u64,
    /// Items a Query, Scan or BatchGetItem returned.
    pub items: u64,
    /// Writes refused by their condition (they still consume their units).
    pub failed_conditions: u64,
}

impl Capacity {
    fn request() -> Capacity {
        Capacity {
            requests: 1,
            ..Capacity::default()
        }
    }

    /// Adds `other` to this.
    pub fn add(&mut self, other: &Capacity) {
        self.requests += other.requests;
        self.wru += other.wru;
        self.index_wru += other.index_wru;
        self.rru += other.rru;
        self.item_bytes += other.item_bytes;
        self.items += other.items;
        self.failed_conditions += other.failed_conditions;
    }
}

/// Key attribute names of a table and of each of its global secondary indexes.
#[derive(Debug, Clone, Default)]
struct TableKeys {
    key: Vec<String>,
    indexes: Vec<Vec<String>>,
}

/// DynamoDB's size of an item in the JSON wire format (`{"name": {"S": "…"}, …}`): the UTF-8
/// length of every attribute name plus the size of its value (strings: UTF-8 length; numbers:
/// about one byte per two significant digits plus one; binary: the decoded length; sets: the
/// sum of their members; maps and lists: 3 bytes plus one per element plus the elements;
/// booleans and null: 1).
pub fn item_size(item: &Value) -> u64 {
    item.as_object().map_or(0, |m| {
        m.iter()
            .map(|(name, v)| name.len() as u64 + value_size(v))
            .sum()
    })
}

fn value_size(v: &Value) -> u64 {
    let Some((t, inner)) = v.as_object().and_then(|m| m.iter().next()) else {
        return 0;
    };
    let number = |n: &str| {
        let digits = n
            .trim_start_matches('-')
            .chars()
            .filter(char::is_ascii_digit)
            .collect::<String>();
        let significant = digits
            .trim_start_matches('0')
            .trim_end_matches('0')
            .len()
            .max(1);
        significant.div_ceil(2) as u64 + 1
    };
    let binary = |b: &str| (b.len() as u64 * 3 / 4).saturating_sub(b.matches('=').count() as u64);
    let strs = || {
        inner
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    };
    match t.as_str() {
        "S" => inner.as_str().map_or(0, |s| s.len() as u64),
        "N" => inner.as_str().map_or(0, number),
        "B" => inner.as_str().map_or(0, binary),
        "SS" => strs().map(|s| s.len() as u64).sum(),
        "NS" => strs().map(number).sum(),
        "BS" => strs().map(binary).sum(),
        "BOOL" | "NULL" => 1,
        "L" => {
            let items = inner.as_array().map(Vec::as_slice).unwrap_or_default();
            3 + items.iter().map(|e| 1 + value_size(e)).sum::<u64>()
        }
        "M" => 3 + item_size(inner) + inner.as_object().map_or(0, |m| m.len() as u64),
        _ => 0,
    }
}

fn read_units(bytes: u64) -> f64 {
    bytes.div_ceil(4096).max(1) as f64
}

fn write_units(bytes: u64) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

/// Write units a write costs in one global secondary index (key attributes `index`).
fn index_write_units(index: &[String], before: Option<&Value>, after: Option<&Value>) -> f64 {
    let key_of = |i: Option<&Value>| -> Option<Vec<Value>> {
        let i = i?;
        index.iter().map(|k| i.get(k).cloned()).collect()
    };
    let (old, new) = (key_of(before), key_of(after));
    let size = |i: Option<&Value>| write_units(i.map_or(0, item_size));
    match (old, new) {
        (None, None) => 0.0,
        (None, Some(_)) => size(after),
        (Some(_), None) => size(before),
        (Some(a), Some(b)) if a == b => size(after),
        (Some(_), Some(_)) => size(before) + size(after),
    }
}

/// What a key or item is in o365-collector's table layout (docs in `shared::store`).
fn key_kind(key: &Value) -> String {
    let pk = key["pk"]["S"].as_str().unwrap_or("");
    let sk = key["sk"]["S"].as_str().unwrap_or("");
    if pk == "TENANTS" {
        "tenant"
    } else if pk.starts_with("REC#") {
        "record-claim"
    } else if sk.starts_with("CURSOR#") {
        "cursor"
    } else if sk.starts_with("BLOB#") {
        "ledger-entry"
    } else if sk.starts_with("SEEN#") {
        "summary"
    } else if sk == "DIRECTORY" {
        "directory"
    } else {
        "other"
    }
    .to_owned()
}

fn query_kind(req: &Value) -> String {
    if let Some(index) = req["IndexName"].as_str() {
        return format!("index-{index}");
    }
    match req["ExpressionAttributeValues"][":pk"]["S"].as_str() {
        Some("TENANTS") => "tenant-list".to_owned(),
        _ => "ledger".to_owned(),
    }
}

impl CountingProxy {
    /// Starts a proxy on 127.0.0.1 forwarding to `upstream` (e.g. the moto server).
    pub async fn start(upstream: &str) -> CountingProxy {
        CountingProxy::start_with_faults(upstream, AwsFaults::default()).await
    }

    /// [`CountingProxy::start`], injecting `faults` instead of forwarding some requests.
    pub async fn start_with_faults(upstream: &str, faults: AwsFaults) -> CountingProxy {
        CountingProxy::start_inner(upstream, faults, false).await
    }

    /// [`CountingProxy::start`] that also meters DynamoDB capacity ([`CountingProxy::take_capacity`]).
    pub async fn start_metering(upstream: &str) -> CountingProxy {
        CountingProxy::start_inner(upstream, AwsFaults::default(), true).await
    }

    async fn start_inner(upstream: &str, faults: AwsFaults, metering: bool) -> CountingProxy {
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
            meter: metering.then(|| Mutex::new(BTreeMap::new())),
            keys: Mutex::new(BTreeMap::new()),
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

    /// Estimated DynamoDB capacity so far per `dynamodb.Operation kind` (`kind`: what the item
    /// is in the collector's table — `ledger-entry`, `summary`, `cursor`, `record-claim`, … —
    /// or the Query's target); empty unless started with [`CountingProxy::start_metering`].
    /// Resets the meter.
    pub fn take_capacity(&self) -> BTreeMap<String, Capacity> {
        self.inner
            .meter
            .as_ref()
            .map(|m| std::mem::take(&mut *m.lock().expect("lock")))
            .unwrap_or_default()
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
    fn item_sizes_and_units_follow_dynamodb_rules() {
        // "pk"(2) + 12, "sk"(2) + 4, "n"(1) + 3 significant digits → 3, "ids"(3) + 2 × 8 bytes.
        let item = json!({
            "pk": {"S": "TENANT#abcde"},
            "sk": {"S": "SEEN"},
            "n": {"N": "1230"},
            "ids": {"BS": ["AAAAAAAAAAA=", "AQIDBAUGBwg="]},
        });
        assert_eq!(item_size(&item), 14 + 6 + 4 + 19);
        assert_eq!(write_units(0), 1.0);
        assert_eq!(write_units(1024), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(read_units(4097), 2.0);
        let open = vec!["open_pk".to_owned(), "due".to_owned()];
        let failed = json!({"pk": {"S": "a"}, "open_pk": {"S": "a"}, "due": {"S": "1"}});
        let retried = json!({"pk": {"S": "a"}, "open_pk": {"S": "a"}, "due": {"S": "2"}});
        let done = json!({"pk": {"S": "a"}});
        assert_eq!(index_write_units(&open, Some(&done), Some(&done)), 0.0);
        assert_eq!(index_write_units(&open, None, Some(&failed)), 1.0);
        assert_eq!(index_write_units(&open, Some(&failed), Some(&done)), 1.0);
        assert_eq!(index_write_units(&open, Some(&failed), Some(&retried)), 2.0);
        assert_eq!(
            key_kind(&json!({"pk": {"S": "TENANT#x"}, "sk": {"S": "SEEN#Audit.General#2026"}})),
            "summary"
        );
        assert_eq!(
            key_kind(&json!({"pk": {"S": "REC#x#y"}, "sk": {"S": "REC"}})),
            "record-claim"
        );
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
                meter: None,
                keys: Mutex::new(BTreeMap::new()),
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
