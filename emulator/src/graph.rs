//! Microsoft Graph users (fact sheet §5): `/v1.0/users` with `$select`/`$top` and
//! `@odata.nextLink`; `/v1.0/users/delta` with `@odata.deltaLink`, `@removed` entries and
//! 410 Gone for an expired delta token.

// Handlers return a ready `Response` as their error: it is the answer to send, not a value to
// propagate further, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::clouds::Api;
use crate::data::DirectoryUser;
use crate::scenario::Endpoint;
use crate::server::{Ctx, QueryParams, guarded, json, unauthorized};
use crate::state::{Call, TenantState, lock};

const DEFAULT_PROPERTIES: [&str; 11] = [
    "businessPhones",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
];

const READ_ROLES: [&str; 4] = [
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message,
            "innerError": {"date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                "request-id": uuid::Uuid::new_v4().to_string(),
                "client-request-id": uuid::Uuid::new_v4().to_string()}}}),
    )
}

fn authorize<'w>(ctx: &'w Ctx, headers: &HeaderMap) -> Result<&'w TenantState, Response> {
    let now = ctx.world.clock.now();
    let claims = ctx
        .world
        .tokens
        .verify(crate::server::bearer(headers), Api::Graph, ctx.cloud, now)
        .map_err(|_| unauthorized(Endpoint::Graph))?;
    if !claims
        .roles
        .iter()
        .any(|r| READ_ROLES.contains(&r.as_str()))
    {
        return Err(graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ));
    }
    ctx.world.tenant(&claims.tid).ok_or_else(|| {
        graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "The tenant of the token is unknown.",
        )
    })
}

/// A user as Graph returns it, limited to `select` (always with `id`).
fn render(u: &DirectoryUser, select: &[String]) -> serde_json::Value {
    let full = serde_json::json!({
        "id": u.id,
        "businessPhones": [],
        "displayName": u.display_name,
        "givenName": u.given_name,
        "surname": u.surname,
        "jobTitle": u.job_title,
        "department": u.department,
        "mail": u.mail,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": null,
        "userPrincipalName": u.user_principal_name,
        "accountEnabled": u.account_enabled,
        "userType": u.user_type,
    });
    let mut out = serde_json::Map::new();
    out.insert("id".into(), full["id"].clone());
    let wanted: Vec<&str> = if select.is_empty() {
        DEFAULT_PROPERTIES.to_vec()
    } else {
        select.iter().map(String::as_str).collect()
    };
    for p in wanted {
        if let Some((k, v)) = full
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(p)))
        {
            out.insert(k.clone(), v.clone());
        }
    }
    serde_json::Value::Object(out)
}

fn parse_select(q: &QueryParams) -> Vec<String> {
    q.get("$select")
        .map(|s| {
            s.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Opaque paging/delta state, carried in `$skiptoken` / `$deltatoken`.
#[derive(Debug, Serialize, Deserialize)]
struct TokenState {
    /// `list`, `full` (first delta round) or `changes` (later rounds).
    k: String,
    /// Directory version the round started from (`full`: the snapshot's; `changes`: since).
    v: u64,
    /// Directory version the `changes` round runs up to.
    #[serde(default)]
    u: u64,
    /// Offset of the next page.
    o: usize,
    /// `$select`.
    s: Vec<String>,
    /// `$top` (list only).
    #[serde(default)]
    t: usize,
    /// Issue time (epoch seconds) of a delta token.
    #[serde(default)]
    i: i64,
}

fn encode(t: &TokenState) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(t).unwrap_or_default())
}

fn decode(s: &str) -> Option<TokenState> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()
}

fn call(ctx: &Ctx, headers: &HeaderMap) -> Call {
    let now = ctx.world.clock.now();
    let tenant = ctx
        .world
        .tokens
        .verify(crate::server::bearer(headers), Api::Graph, ctx.cloud, now)
        .ok()
        .map(|c| c.tid);
    Call {
        endpoint: Endpoint::Graph,
        tenant,
        publisher_identifier: None,
        method_name: "Graph",
        blob: None,
    }
}

/// `GET /v1.0/users`.
pub(crate) async fn users(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let c = call(&ctx, &headers);
    let ctx2 = ctx.clone();
    let q = QueryParams::parse(&uri);
    guarded(&ctx, &method, &uri, c, || async move {
        let ctx = ctx2;
        let t = match authorize(&ctx, &headers) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let state = match q.get("$skiptoken") {
            Some(tok) => match decode(tok).filter(|s| s.k == "list") {
                Some(s) => s,
                None => {
                    return graph_error(
                        StatusCode::BAD_REQUEST,
                        "Directory_InvalidSkipToken",
                        "The specified page token value has expired or is invalid.",
                    );
                }
            },
            None => {
                let top = match q.get("$top") {
                    None => ctx.world.scenario.graph_page_size,
                    Some(v) => match v.parse::<usize>() {
                        Ok(n) if (1..=999).contains(&n) => n,
                        _ => {
                            return graph_error(
                                StatusCode::BAD_REQUEST,
                                "Request_UnsupportedQuery",
                                &format!("Invalid page size specified: '{v}'. Must be between 1 and 999 inclusive."),
                            );
                        }
                    },
                };
                TokenState {
                    k: "list".into(),
                    v: 0,
                    u: 0,
                    o: 0,
                    s: parse_select(&q),
                    t: top,
                    i: 0,
                }
            }
        };
        let dir = lock(&t.directory);
        let page: Vec<serde_json::Value> = dir
            .users
            .iter()
            .skip(state.o)
            .take(state.t)
            .map(|u| render(u, &state.s))
            .collect();
        let base = ctx.base_url(&headers);
        let mut body = serde_json::json!({
            "@odata.context": format!("{base}/v1.0/$metadata#users"),
            "value": page,
        });
        if state.o + state.t < dir.users.len() {
            let next = TokenState {
                o: state.o + state.t,
                ..state
            };
            body["@odata.nextLink"] = serde_json::Value::String(format!(
                "{base}/v1.0/users?$skiptoken={}",
                encode(&next)
            ));
        }
        json(StatusCode::OK, &body)
    })
    .await
}

/// `GET /v1.0/users/delta`.
pub(crate) async fn delta(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let c = call(&ctx, &headers);
    let ctx2 = ctx.clone();
    let q = QueryParams::parse(&uri);
    guarded(&ctx, &method, &uri, c, || async move {
        let ctx = ctx2;
        let t = match authorize(&ctx, &headers) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let now = ctx.world.clock.now();
        let base = ctx.base_url(&headers);
        let page_size = ctx.world.scenario.graph_page_size;
        let dir = lock(&t.directory);
        let state = if let Some(tok) = q.get("$skiptoken") {
            match decode(tok).filter(|s| s.k == "full" || s.k == "changes") {
                Some(s) => s,
                None => {
                    return graph_error(
                        StatusCode::BAD_REQUEST,
                        "Directory_InvalidSkipToken",
                        "The specified page token value has expired or is invalid.",
                    );
                }
            }
        } else if let Some(tok) = q.get("$deltatoken") {
            if tok == "latest" {
                let link = TokenState {
                    k: "delta".into(),
                    v: dir.version,
                    u: 0,
                    o: 0,
                    s: parse_select(&q),
                    t: 0,
                    i: now.timestamp(),
                };
                return json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "@odata.context": format!("{base}/v1.0/$metadata#users"),
                        "@odata.deltaLink": format!("{base}/v1.0/users/delta?$deltatoken={}", encode(&link)),
                        "value": [],
                    }),
                );
            }
            match decode(tok).filter(|s| s.k == "delta" && s.v <= dir.version) {
                Some(d) if now.timestamp() - d.i > ctx.world.scenario.delta_token_ttl_secs => {
                    let mut r = graph_error(
                        StatusCode::GONE,
                        "syncStateNotFound",
                        "The delta token has expired; start a full synchronization.",
                    );
                    if let Ok(v) = HeaderValue::from_str(&format!("{base}/v1.0/users/delta")) {
                        r.headers_mut().insert(header::LOCATION, v);
                    }
                    return r;
                }
                Some(d) => TokenState {
                    k: "changes".into(),
                    v: d.v,
                    u: dir.version,
                    o: 0,
                    s: d.s,
                    t: 0,
                    i: 0,
                },
                None => {
                    return graph_error(
                        StatusCode::BAD_REQUEST,
                        "badRequest",
                        "The delta token is invalid.",
                    );
                }
            }
        } else {
            TokenState {
                k: "full".into(),
                v: dir.version,
                u: dir.version,
                o: 0,
                s: parse_select(&q),
                t: 0,
                i: 0,
            }
        };
        let items: Vec<serde_json::Value> = if state.k == "full" {
            dir.users.iter().map(|u| render(u, &state.s)).collect()
        } else {
            // Last change per user between the two versions, in version order.
            let mut last: BTreeMap<u64, (&str, bool)> = BTreeMap::new();
            let mut seen = std::collections::HashSet::new();
            for ch in dir.changes.iter().rev() {
                if ch.version > state.v && ch.version <= state.u && seen.insert(ch.user_id.as_str()) {
                    last.insert(ch.version, (ch.user_id.as_str(), ch.removed));
                }
            }
            last.values()
                .map(|(id, removed)| {
                    match (removed, dir.users.iter().find(|u| u.id == *id)) {
                        (false, Some(u)) => render(u, &state.s),
                        _ => serde_json::json!({"id": id, "@removed": {"reason": "deleted"}}),
                    }
                })
                .collect()
        };
        let page: Vec<serde_json::Value> = items.iter().skip(state.o).take(page_size).cloned().collect();
        let mut body = serde_json::json!({
            "@odata.context": format!("{base}/v1.0/$metadata#users"),
            "value": page,
        });
        if state.o + page_size < items.len() {
            let next = TokenState {
                o: state.o + page_size,
                ..state
            };
            body["@odata.nextLink"] =
                serde_json::Value::String(format!("{base}/v1.0/users/delta?$skiptoken={}", encode(&next)));
        } else {
            let link = TokenState {
                k: "delta".into(),
                v: state.u,
                u: 0,
                o: 0,
                s: state.s,
                t: 0,
                i: now.timestamp(),
            };
            body["@odata.deltaLink"] =
                serde_json::Value::String(format!("{base}/v1.0/users/delta?$deltatoken={}", encode(&link)));
        }
        json(StatusCode::OK, &body)
    })
    .await
}
