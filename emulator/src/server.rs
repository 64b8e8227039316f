//! HTTP plumbing: routes per cloud, fault injection and the request log around every handler,
//! the `Date` header of every response, error bodies, query parsing, token endpoints and the
//! `/_emulator` admin API.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use crate::clouds::Cloud;
use crate::faults::Fired;
use crate::scenario::{Endpoint, FaultKind, LengthMode};
use crate::state::{Call, RequestRecord, World, lock};
use crate::token::{TokenRequest, TokenVersion};

/// State of the routes of one cloud.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    pub(crate) world: Arc<World>,
    pub(crate) cloud: Cloud,
    /// Path prefix this cloud is served under (`""` at the root).
    pub(crate) prefix: &'static str,
}

impl Ctx {
    /// `http://host[:port]/prefix` as the caller reached us; used to build `contentUri`,
    /// `NextPageUri` and `@odata.nextLink` values.
    pub(crate) fn base_url(&self, headers: &HeaderMap) -> String {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        format!("http://{host}{}", self.prefix)
    }
}

/// The whole router: every cloud under its prefix, the default cloud at the root, admin API;
/// every response, fallbacks included, dated by the emulator's clock.
pub(crate) fn router(world: Arc<World>) -> Router {
    let default = world.scenario.default_cloud;
    let mut app = cloud_router(Ctx {
        world: world.clone(),
        cloud: default,
        prefix: "",
    });
    for cloud in Cloud::ALL {
        let prefix: &'static str = match cloud {
            Cloud::Commercial => "/commercial",
            Cloud::Gcc => "/gcc",
            Cloud::GccHigh => "/gcc-high",
            Cloud::Dod => "/dod",
        };
        app = app.nest(
            prefix,
            cloud_router(Ctx {
                world: world.clone(),
                cloud,
                prefix,
            }),
        );
    }
    app.nest("/_emulator", admin_router(world.clone())).layer(
        axum::middleware::map_response_with_state(world, date_header),
    )
}

/// Sets `Date` from the emulator's clock, as Microsoft's servers date their answers by theirs,
/// so a test that moves the clock sees the skew a collector would. (hyper adds its own `Date`,
/// wall time, only to a response that has none.)
async fn date_header(State(world): State<Arc<World>>, mut response: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&http_date(world.clock.now())) {
        response.headers_mut().insert(header::DATE, v);
    }
    response
}

/// `t` as an HTTP date (IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn cloud_router(ctx: Ctx) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/token", post(token_v1))
        .route("/{tenant}/oauth2/v2.0/token", post(token_v2))
        .route(
            "/api/{ver}/{tenant}/activity/feed/subscriptions/{op}",
            get(crate::activity::subscriptions).post(crate::activity::subscriptions),
        )
        .route(
            "/api/{ver}/{tenant}/activity/feed/audit/{content_id}",
            get(crate::activity::blob),
        )
        .route("/v1.0/users", get(crate::graph::users))
        .route("/v1.0/users/delta", get(crate::graph::delta))
        .with_state(ctx)
}

/// A JSON response with Microsoft's content type.
pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// `{"error":{"code":…,"message":…}}`, the Management Activity API error envelope.
pub(crate) fn af_error(status: StatusCode, code: &str, message: &str) -> Response {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

/// Query parameters, matched case-insensitively by name as the real service does.
#[derive(Debug, Default)]
pub(crate) struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub(crate) fn parse(uri: &Uri) -> QueryParams {
        QueryParams(
            url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Runs a handler under fault injection and logs the outcome.
pub(crate) async fn guarded<F, Fut>(
    ctx: &Ctx,
    method: &Method,
    uri: &Uri,
    call: Call,
    f: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let fired =
        lock(&ctx.world.faults).decide(call.endpoint, call.tenant.as_deref(), call.blob.as_deref());
    let mut fault_name = None;
    let response = match fired.clone() {
        None => f().await,
        Some(fired) => {
            fault_name = Some(format!("{:?}", fired.kind));
            match fired.kind {
                FaultKind::Slow => {
                    tokio::time::sleep(StdDuration::from_millis(fired.delay_ms)).await;
                    f().await
                }
                FaultKind::Af429 => {
                    if call.endpoint == Endpoint::Token || call.endpoint == Endpoint::Graph {
                        too_many(call.endpoint, fired.retry_after_secs)
                    } else {
                        let publisher = call
                            .publisher_identifier
                            .clone()
                            .unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into());
                        af_error(
                            StatusCode::FORBIDDEN,
                            "AF429",
                            &format!(
                                "Too many requests. Method={}, PublisherId={publisher}",
                                call.method_name
                            ),
                        )
                    }
                }
                FaultKind::TooManyRequests => too_many(call.endpoint, fired.retry_after_secs),
                FaultKind::InternalError => af_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "AF50000",
                    "An internal error occurred. Retry the request.",
                ),
                FaultKind::Unavailable => af_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "AF50000",
                    "An internal error occurred. Retry the request.",
                ),
                FaultKind::Unauthorized => unauthorized(call.endpoint),
                FaultKind::Drop => dropped(),
                FaultKind::Redirect => redirect(&fired),
                FaultKind::Garbage => garbage(&fired),
                FaultKind::Endless => endless(&fired),
                FaultKind::Truncate | FaultKind::NonUtf8 | FaultKind::HugeRecord => {
                    let normal = f().await;
                    if normal.status() == StatusCode::OK {
                        damage(normal, &fired).await
                    } else {
                        normal
                    }
                }
            }
        }
    };
    let dropped = fired.as_ref().is_some_and(|f| {
        f.kind == FaultKind::Drop
            || (f.kind == FaultKind::Truncate && f.spec.content_length == LengthMode::Full)
    });
    ctx.world.record(RequestRecord {
        endpoint: call.endpoint.as_str(),
        method: method.to_string(),
        path: uri.path().to_owned(),
        status: if dropped {
            0
        } else {
            response.status().as_u16()
        },
        publisher_identifier: call.publisher_identifier,
        tenant: call.tenant,
        fault: fault_name,
    });
    response
}

fn too_many(endpoint: Endpoint, retry_after: f64) -> Response {
    let body = if endpoint == Endpoint::Graph {
        serde_json::json!({"error": {"code": "TooManyRequests",
            "innerError": {"code": "429", "date": chrono::Utc::now().to_rfc3339()},
            "message": "Please retry again later."}})
    } else {
        serde_json::json!({"error": {"code": "AF429", "message": "Too many requests."}})
    };
    let mut r = json(StatusCode::TOO_MANY_REQUESTS, &body);
    let v = if retry_after.fract() == 0.0 {
        format!("{retry_after:.0}")
    } else {
        format!("{retry_after:.3}")
    };
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// 401 for a missing, invalid or expired bearer token.
pub(crate) fn unauthorized(endpoint: Endpoint) -> Response {
    let mut r = if endpoint == Endpoint::Graph {
        json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": {"code": "InvalidAuthenticationToken",
                "message": "Access token has expired or is not yet valid.",
                "innerError": {"date": chrono::Utc::now().to_rfc3339()}}}),
        )
    } else {
        json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": {"code": "Unauthorized",
                "message": "Authorization has been denied for this request."}}),
        )
    };
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// A response whose body fails after the headers: the client sees the connection cut.
fn dropped() -> Response {
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"[{\"Id\":")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "emulated dropped connection",
        )),
    ];
    let mut r = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn with_content_type(mut r: Response, value: &'static str) -> Response {
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
    r
}

/// `redirect`: a 3xx to `location`, with an empty body.
fn redirect(fired: &Fired) -> Response {
    let status = StatusCode::from_u16(fired.spec.redirect_status).unwrap_or(StatusCode::FOUND);
    let location = fired
        .spec
        .location
        .clone()
        .unwrap_or_else(|| "https://redirect.invalid/".to_owned());
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

const GARBAGE_PAGE: &str = "<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body><h1>The service is temporarily unavailable</h1><p>Please try again later.</p></body></html>";

/// `garbage`: HTTP 200 with a body that is not JSON.
fn garbage(fired: &Fired) -> Response {
    let body = fired
        .spec
        .body
        .clone()
        .unwrap_or_else(|| GARBAGE_PAGE.to_owned());
    with_content_type(Response::new(Body::from(body)), "text/html; charset=utf-8")
}

/// `endless`: `[` then records, one every `interval_ms`, until the client goes away.
fn endless(fired: &Fired) -> Response {
    let interval = StdDuration::from_millis(fired.spec.interval_ms);
    let padding = "x".repeat(900);
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
    let chunks = futures_util::stream::unfold(0u64, move |n| {
        let padding = padding.clone();
        let now = now.clone();
        async move {
            if n > 0 && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            let lead = if n == 0 { "[" } else { "," };
            let chunk = format!(
                r#"{lead}{{"Id":"endless-{n:012}","Operation":"Endless","RecordType":1,"CreationTime":"{now}","Padding":"{padding}"}}"#
            );
            Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), n + 1))
        }
    });
    with_content_type(
        Response::new(Body::from_stream(chunks)),
        "application/json; charset=utf-8",
    )
}

/// `truncate`, `non-utf8` and `huge-record`: the normal answer, damaged.
async fn damage(normal: Response, fired: &Fired) -> Response {
    let (parts, body) = normal.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return dropped();
    };
    let mut r = match fired.kind {
        FaultKind::Truncate => truncated(&bytes, fired),
        FaultKind::NonUtf8 => Response::new(Body::from(non_utf8(&bytes))),
        _ => Response::new(Body::from(huge_record(&bytes, fired))),
    };
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
    }
    r
}

fn truncated(bytes: &Bytes, fired: &Fired) -> Response {
    let len = bytes.len();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let keep =
        ((len as f64 * fired.spec.truncate_at) as usize).clamp(1, len.saturating_sub(1).max(1));
    let cut = bytes.slice(..keep.min(len));
    match fired.spec.content_length {
        LengthMode::Cut => Response::new(Body::from(cut)),
        LengthMode::None => Response::new(Body::from_stream(futures_util::stream::iter([Ok::<
            Bytes,
            std::io::Error,
        >(
            cut
        )]))),
        LengthMode::Full => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(cut),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "emulated truncated body",
                )),
            ];
            let mut r = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
            if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
                r.headers_mut().insert(header::CONTENT_LENGTH, v);
            }
            r
        }
    }
}

/// Invalid UTF-8 (`0xFF 0xFE`) at the start of the first record's `Operation` value, else of
/// its first string value.
fn non_utf8(bytes: &[u8]) -> Vec<u8> {
    let find = |needle: &[u8]| {
        bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + needle.len())
    };
    let at = find(b"\"Operation\":\"").or_else(|| find(b"\":\""));
    let mut out = bytes.to_vec();
    if let Some(at) = at {
        out.splice(at..at, [0xFF, 0xFE]);
    }
    out
}

/// One extra record of `record_bytes` bytes at the start of the array.
fn huge_record(bytes: &[u8], fired: &Fired) -> Vec<u8> {
    let Some(open) = bytes.iter().position(|b| *b == b'[') else {
        return bytes.to_vec();
    };
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S");
    let head = format!(
        r#"{{"Id":"huge-record-{:04}","Operation":"HugeRecord","RecordType":1,"CreationTime":"{now}","Padding":""#,
        fired.firing
    );
    let tail = "\"}";
    let want = usize::try_from(fired.spec.record_bytes).unwrap_or(usize::MAX);
    let pad = want.saturating_sub(head.len() + tail.len());
    let empty = bytes[open + 1..]
        .iter()
        .all(|b| b.is_ascii_whitespace() || *b == b']');
    let mut out = Vec::with_capacity(bytes.len() + want + 1);
    out.extend_from_slice(&bytes[..=open]);
    out.extend_from_slice(head.as_bytes());
    out.resize(out.len() + pad, b'a');
    out.extend_from_slice(tail.as_bytes());
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&bytes[open + 1..]);
    out
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

async fn token_v1(
    State(ctx): State<Ctx>,
    Path(tenant): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(ctx, tenant, TokenVersion::V1, method, uri, headers, body).await
}

async fn token_v2(
    State(ctx): State<Ctx>,
    Path(tenant): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(ctx, tenant, TokenVersion::V2, method, uri, headers, body).await
}

async fn token(
    ctx: Ctx,
    tenant: String,
    version: TokenVersion,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call {
        endpoint: Endpoint::Token,
        tenant: Some(tenant.clone()),
        publisher_identifier: None,
        method_name: "Token",
        blob: None,
    };
    let ctx2 = ctx.clone();
    guarded(&ctx, &method, &uri, call, || async move {
        let ctx = ctx2;
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let basic_auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
        let now = ctx.world.clock.now();
        let mut tenant_forms = vec![tenant.clone()];
        if let Some(t) = ctx.world.tenants.values().find(|t| {
            t.spec.id.eq_ignore_ascii_case(&tenant) || t.spec.domain.eq_ignore_ascii_case(&tenant)
        }) {
            tenant_forms.push(t.spec.id.clone());
            tenant_forms.push(t.spec.domain.clone());
        }
        let base = ctx.base_url(&headers);
        let mut hosts = vec![base, ctx.cloud.login_host().to_owned()];
        if ctx.cloud.login_host() == Cloud::Commercial.login_host() {
            hosts.push("https://login.windows.net".to_owned());
        }
        let mut accepted_audiences = Vec::new();
        for h in &hosts {
            for t in &tenant_forms {
                accepted_audiences.push(format!("{h}/{t}/oauth2/v2.0/token"));
                accepted_audiences.push(format!("{h}/{t}/oauth2/token"));
            }
        }
        let req = TokenRequest {
            cloud: ctx.cloud,
            tenant,
            version,
            form,
            basic_auth,
            accepted_audiences,
            now,
            wall_now: chrono::Utc::now(),
        };
        match ctx.world.tokens.issue(&req) {
            Ok(body) => json(StatusCode::OK, &body),
            Err(e) => json(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                &e.body(now),
            ),
        }
    })
    .await
}

fn admin_router(world: Arc<World>) -> Router {
    Router::new()
        .route("/truth", get(admin_truth))
        .route("/requests", get(admin_requests))
        .route("/clock", get(admin_clock))
        .route("/clock/advance", post(admin_advance))
        .with_state(world)
}

async fn admin_truth(State(world): State<Arc<World>>) -> Response {
    json(
        StatusCode::OK,
        &serde_json::to_value(world.truth()).unwrap_or_default(),
    )
}

async fn admin_requests(State(world): State<Arc<World>>) -> Response {
    let log = lock(&world.log).clone();
    json(
        StatusCode::OK,
        &serde_json::to_value(log).unwrap_or_default(),
    )
}

async fn admin_clock(State(world): State<Arc<World>>) -> Response {
    json(
        StatusCode::OK,
        &serde_json::json!({"now": world.clock.now().to_rfc3339()}),
    )
}

#[derive(Deserialize)]
struct Advance {
    seconds: i64,
}

async fn admin_advance(State(world): State<Arc<World>>, Query(a): Query<Advance>) -> Response {
    world.clock.advance(Duration::seconds(a.seconds));
    admin_clock(State(world)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_imf_fixdates() {
        let t = DateTime::parse_from_rfc3339("1994-11-06T08:49:37.999Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        assert_eq!(
            t.map(http_date).as_deref(),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        let t = DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        assert_eq!(
            t.map(http_date).as_deref(),
            Some("Mon, 02 Mar 2026 10:00:00 GMT")
        );
    }
}
