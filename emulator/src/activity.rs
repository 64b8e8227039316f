//! Office 365 Management Activity API (fact sheet §2): subscriptions, content listing with the
//! window rules and `NextPageUri` paging, and blob retrieval.

// Handlers return a ready `Response` as their error: it is the answer to send, not a value to
// propagate further, so its size does not matter.
#![allow(clippy::result_large_err)]

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};

use crate::clouds::Api;
use crate::scenario::{Endpoint, canonical_content_type};
use crate::server::{Ctx, QueryParams, af_error, bearer, guarded, json, unauthorized};
use crate::state::{Call, Sub, TenantState, lock};

const MAX_WINDOW_HOURS: i64 = 24;
const MAX_LOOKBACK_DAYS: i64 = 7;

/// Checks the bearer token and the tenant of a Management API call (fact sheet §2.2).
fn authorize<'w>(
    ctx: &'w Ctx,
    headers: &HeaderMap,
    tenant: &str,
) -> Result<&'w TenantState, Response> {
    let now = ctx.world.clock.now();
    let claims = ctx
        .world
        .tokens
        .verify(bearer(headers), Api::Manage, ctx.cloud, now)
        .map_err(|_| unauthorized(Endpoint::Content))?;
    if uuid::Uuid::parse_str(tenant).is_err() {
        return Err(af_error(
            StatusCode::BAD_REQUEST,
            "AF20013",
            &format!("The tenant ID passed in the URL ({tenant}) is not a valid GUID."),
        ));
    }
    if !claims.tid.eq_ignore_ascii_case(tenant) {
        return Err(af_error(
            StatusCode::FORBIDDEN,
            "AF20010",
            &format!(
                "The tenant ID passed in the URL ({tenant}) does not match the tenant ID passed in the access token ({}).",
                claims.tid
            ),
        ));
    }
    if !claims.roles.iter().any(|r| r == "ActivityFeed.Read") {
        return Err(af_error(
            StatusCode::UNAUTHORIZED,
            "AF10001",
            &format!(
                "The permission set ({}) sent in the request does not include the expected permission.",
                claims.roles.join(",")
            ),
        ));
    }
    match ctx.world.tenant(tenant) {
        Some(t) if t.spec.cloud == ctx.cloud => Ok(t),
        _ => Err(af_error(
            StatusCode::BAD_REQUEST,
            "AF20011",
            &format!(
                "Specified tenant ID ({tenant}) does not exist in the system or has been deleted."
            ),
        )),
    }
}

/// `/subscriptions/{start|stop|list|content}`.
pub(crate) async fn subscriptions(
    State(ctx): State<Ctx>,
    Path((_ver, tenant, op)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let q = QueryParams::parse(&uri);
    let (endpoint, method_name) = match op.to_ascii_lowercase().as_str() {
        "content" => (Endpoint::Content, "ListContent"),
        "start" => (Endpoint::Subscriptions, "StartSubscription"),
        "stop" => (Endpoint::Subscriptions, "StopSubscription"),
        "list" => (Endpoint::Subscriptions, "ListSubscriptions"),
        _ => (Endpoint::Subscriptions, "Unknown"),
    };
    let call = Call {
        endpoint,
        tenant: Some(tenant.clone()),
        publisher_identifier: q.get("PublisherIdentifier").map(str::to_owned),
        method_name,
        blob: None,
    };
    let ctx2 = ctx.clone();
    let m = method.clone();
    guarded(&ctx, &method, &uri, call, || async move {
        let ctx = ctx2;
        let t = match authorize(&ctx, &headers, &tenant) {
            Ok(t) => t,
            Err(r) => return r,
        };
        match (op.to_ascii_lowercase().as_str(), m) {
            ("content", Method::GET) => list_content(&ctx, t, &tenant, &q, &headers),
            ("start", Method::POST) => start(&ctx, t, &tenant, &q),
            ("stop", Method::POST) => stop(t, &q),
            ("list", Method::GET) => list_subscriptions(t),
            _ => af_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "No HTTP resource was found that matches the request URI.",
            ),
        }
    })
    .await
}

fn content_type_param(q: &QueryParams) -> Result<&'static str, Response> {
    let invalid = || {
        af_error(
            StatusCode::BAD_REQUEST,
            "AF20020",
            "The specified content type is not valid.",
        )
    };
    match q.get("contentType") {
        None => Err(af_error(
            StatusCode::BAD_REQUEST,
            "AF20001",
            "Missing parameter: contentType",
        )),
        Some(v) => canonical_content_type(v).ok_or_else(invalid),
    }
}

fn start(ctx: &Ctx, t: &TenantState, tenant: &str, q: &QueryParams) -> Response {
    let ct = match content_type_param(q) {
        Ok(ct) => ct,
        Err(r) => return r,
    };
    let caller_spelling = q.get("contentType").unwrap_or(ct).to_owned();
    if !t.spec.audit_enabled {
        let publisher = q
            .get("PublisherIdentifier")
            .unwrap_or("00000000-0000-0000-0000-000000000000");
        return af_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "StartSubscription [TenantId={tenant},ContentType={ct},ApplicationId=,PublisherId={publisher}] failed. Exception"
            ),
            &format!(
                "Microsoft.Office.Compliance.Audit.DataServiceException: Tenant {tenant} does not exist.\r\n   at Microsoft.Office.Compliance.Audit.API.AuditApiDataService.StartSubscription()"
            ),
        );
    }
    let now = ctx.world.clock.now();
    let mut subs = lock(&t.subs);
    match subs.get(ct) {
        Some(Sub::Enabled { started_at }) => {
            if ctx.world.scenario.enforce_start_interval
                && now - *started_at < Duration::minutes(15)
            {
                return af_error(
                    StatusCode::FORBIDDEN,
                    "AF429",
                    "Too many requests. Method=StartSubscription, PublisherId=",
                );
            }
            return af_error(
                StatusCode::BAD_REQUEST,
                "AF20024",
                "The subscription is already enabled. No property change.",
            );
        }
        Some(Sub::Disabled) | None => {
            subs.insert(ct, Sub::Enabled { started_at: now });
        }
    }
    json(
        StatusCode::OK,
        &serde_json::json!({"contentType": caller_spelling, "status": "enabled", "webhook": null}),
    )
}

fn stop(t: &TenantState, q: &QueryParams) -> Response {
    let ct = match content_type_param(q) {
        Ok(ct) => ct,
        Err(r) => return r,
    };
    let mut subs = lock(&t.subs);
    if subs.remove(ct).is_none() {
        return af_error(
            StatusCode::BAD_REQUEST,
            "AF20022",
            "No subscription found for the specified content type.",
        );
    }
    let mut r = json(StatusCode::OK, &serde_json::Value::Null);
    *r.body_mut() = axum::body::Body::empty();
    r
}

fn list_subscriptions(t: &TenantState) -> Response {
    let subs = lock(&t.subs);
    let mut items: Vec<(&str, &Sub)> = subs.iter().map(|(k, v)| (*k, v)).collect();
    items.sort_by_key(|(k, _)| *k);
    let body: Vec<serde_json::Value> = items
        .into_iter()
        .map(|(ct, s)| {
            serde_json::json!({
                "contentType": ct,
                "status": match s { Sub::Enabled { .. } => "enabled", Sub::Disabled => "disabled" },
                "webhook": null,
            })
        })
        .collect();
    json(StatusCode::OK, &serde_json::Value::Array(body))
}

/// Parses the documented formats (`YYYY-MM-DD`, `YYYY-MM-DDTHH:MM`, `YYYY-MM-DDTHH:MM:SS`) and
/// RFC 3339 (with a zone or fractions), all taken as UTC when no zone is given.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

const WINDOW_RULE: &str = "Start time and end time must both be specified (or both omitted) and must be less than or equal to 24 hours apart, with the start time prior to end time and start time no more than 7 days in the past.";

/// Applies the window rules of fact sheet §2.4.
fn window(
    ctx: &Ctx,
    q: &QueryParams,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Response> {
    let bad = |code: &str| af_error(StatusCode::BAD_REQUEST, code, WINDOW_RULE);
    match (q.get("startTime"), q.get("endTime")) {
        (None, None) => Ok((now - Duration::hours(MAX_WINDOW_HOURS), now)),
        (Some(_), None) | (None, Some(_)) => Err(bad("AF20030")),
        (Some(s), Some(e)) => {
            let parse = |name: &str, v: &str| {
                parse_time(v).ok_or_else(|| {
                    af_error(
                        StatusCode::BAD_REQUEST,
                        "AF20002",
                        &format!("Invalid parameter type: {name}. Expected type: datetime"),
                    )
                })
            };
            let start = parse("startTime", s)?;
            let end = parse("endTime", e)?;
            let width = end - start;
            if start >= end
                || width > Duration::hours(MAX_WINDOW_HOURS)
                || (ctx.world.scenario.reject_exact_24h
                    && width == Duration::hours(MAX_WINDOW_HOURS))
                || start < now - Duration::days(MAX_LOOKBACK_DAYS)
            {
                return Err(bad("AF20055"));
            }
            Ok((start, end))
        }
    }
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn list_content(
    ctx: &Ctx,
    t: &TenantState,
    tenant: &str,
    q: &QueryParams,
    headers: &HeaderMap,
) -> Response {
    let ct = match content_type_param(q) {
        Ok(ct) => ct,
        Err(r) => return r,
    };
    match lock(&t.subs).get(ct) {
        Some(Sub::Enabled { .. }) => {}
        Some(Sub::Disabled) => {
            return af_error(
                StatusCode::BAD_REQUEST,
                "AF20023",
                "The subscription was disabled by a tenant admin.",
            );
        }
        None => {
            return af_error(
                StatusCode::BAD_REQUEST,
                "AF20022",
                "No subscription found for the specified content type.",
            );
        }
    }
    let now = ctx.world.clock.now();
    let (start, end) = match window(ctx, q, now) {
        Ok(w) => w,
        Err(r) => return r,
    };
    // nextPage = "<as-of epoch ms>R<offset>": pages of one listing see one snapshot.
    let (as_of, offset) = match q.get("nextPage") {
        None => (now, 0usize),
        Some(token) => {
            let parsed = token.split_once('R').and_then(|(a, o)| {
                let a = a.parse::<i64>().ok()?;
                let o = o.parse::<usize>().ok()?;
                DateTime::<Utc>::from_timestamp_millis(a).map(|a| (a, o))
            });
            match parsed {
                Some(p) => p,
                None => {
                    return af_error(
                        StatusCode::BAD_REQUEST,
                        "AF20031",
                        &format!("Invalid nextPage Input: {token}."),
                    );
                }
            }
        }
    };
    let matching: Vec<&crate::state::Blob> = t
        .blobs
        .get(ct)
        .map(|v| {
            v.iter()
                .filter(|b| {
                    b.available_at <= as_of && b.content_created >= start && b.content_created < end
                })
                .collect()
        })
        .unwrap_or_default();
    let page_size = ctx.world.scenario.page_size;
    let base = ctx.base_url(headers);
    let page: Vec<serde_json::Value> = matching
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|b| {
            serde_json::json!({
                "contentType": ct,
                "contentId": b.content_id,
                "contentUri": format!("{base}/api/v1.0/{tenant}/activity/feed/audit/{}", b.content_id),
                "contentCreated": fmt_time(b.content_created),
                "contentExpiration": fmt_time(b.expiration),
            })
        })
        .collect();
    let mut r = json(StatusCode::OK, &serde_json::Value::Array(page));
    if offset + page_size < matching.len() {
        let mut next = url::Url::parse(&format!(
            "{base}/api/v1.0/{tenant}/activity/feed/subscriptions/content"
        ))
        .ok();
        if let Some(u) = next.as_mut() {
            let mut pairs = u.query_pairs_mut();
            pairs.append_pair("contentType", ct);
            pairs.append_pair("startTime", &start.format("%Y-%m-%dT%H:%M:%S").to_string());
            pairs.append_pair("endTime", &end.format("%Y-%m-%dT%H:%M:%S").to_string());
            if let Some(p) = q.get("PublisherIdentifier") {
                pairs.append_pair("PublisherIdentifier", p);
            }
            pairs.append_pair(
                "nextPage",
                &format!("{}R{}", as_of.timestamp_millis(), offset + page_size),
            );
        }
        if let Some(v) = next.and_then(|u| HeaderValue::from_str(u.as_str()).ok()) {
            r.headers_mut().insert("NextPageUri", v);
        }
    }
    r
}

/// `GET …/activity/feed/audit/{contentId}`.
pub(crate) async fn blob(
    State(ctx): State<Ctx>,
    Path((_ver, tenant, content_id)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let q = QueryParams::parse(&uri);
    let blob = ctx.world.tenant(&tenant).and_then(|t| {
        let (ct, i) = t.blob_index.get(&content_id)?;
        let b = t.blobs.get(ct)?.get(*i)?;
        Some(crate::state::blob_key(&t.spec.id, ct, b.seq))
    });
    let call = Call {
        endpoint: Endpoint::Blob,
        tenant: Some(tenant.clone()),
        publisher_identifier: q.get("PublisherIdentifier").map(str::to_owned),
        method_name: "GetBlob",
        blob,
    };
    let ctx2 = ctx.clone();
    guarded(&ctx, &method, &uri, call, || async move {
        let ctx = ctx2;
        let t = match authorize(&ctx, &headers, &tenant) {
            Ok(t) => t,
            Err(r) => return r,
        };
        if content_id.split('$').count() < 3 || content_id.chars().any(char::is_whitespace) {
            return af_error(
                StatusCode::BAD_REQUEST,
                "AF20052",
                &format!("Content ID {content_id} in the URL is invalid."),
            );
        }
        let now = ctx.world.clock.now();
        let found = t
            .blob_index
            .get(&content_id)
            .and_then(|(ct, i)| t.blobs.get(ct).and_then(|v| v.get(*i)))
            .filter(|b| b.available_at <= now);
        let Some(b) = found else {
            return af_error(
                StatusCode::NOT_FOUND,
                "AF20050",
                &format!("The specified content ({content_id}) does not exist."),
            );
        };
        if b.expiration <= now {
            return af_error(
                StatusCode::BAD_REQUEST,
                "AF20051",
                &format!(
                    "Content requested with the key {content_id} has already expired. Content older than 7 days cannot be retrieved."
                ),
            );
        }
        let mut r = Response::new(axum::body::Body::from(b.body.clone()));
        r.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        r
    })
    .await
}
