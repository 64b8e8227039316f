//! Normalization: every audit record becomes one OCSF event (see docs/schema.md).
//!
//! One pass over the record by reference picks out what the OCSF class needs; the record is
//! then moved whole into `unmapped`. Class selection:
//!
//! | record | class |
//! |---|---|
//! | DLP (`DLP.All`, RecordType 11/13/33/63/107, `Dlp*` operations) | 2004 Detection Finding |
//! | Entra sign-ins (RecordType 15, 9) | 3002 Authentication |
//! | Entra directory changes (RecordType 8) | 3001 / 3004 / 3005 / 3006 |
//! | Exchange `Send`/`SendAs`/`SendOnBehalf` | 4009 Email Activity |
//! | other Exchange mailbox operations, admin cmdlets | 6003 API Activity |
//! | SharePoint / OneDrive | 6006 File Hosting Activity |
//! | everything else | 6003 API Activity |

use std::borrow::Cow;
use std::net::IpAddr;

use chrono::{DateTime, Datelike, Utc};
use serde_json::{Map, Value};

use crate::model::ContentType;

mod directory;
mod dlp;
mod entra;
mod exchange;
mod general;
mod ip;
mod read;
mod sharepoint;
mod tables;
#[cfg(test)]
mod tests;

pub use directory::{DirectoryIndex, enrich};
use read::{TimeSource, int_of, non_empty_str, str_field, text_of};
use tables::Class;

/// The OCSF schema version events are written in.
pub const OCSF_VERSION: &str = "1.1.0";

/// `metadata.product.name` of every event.
const PRODUCT_NAME: &str = "Microsoft 365";
/// `metadata.product.vendor_name` of every event.
const VENDOR_NAME: &str = "Microsoft";

/// Where a record came from and when it was collected.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Tenant GUID.
    pub tenant_id: &'a str,
    /// Content type of the blob.
    pub content_type: ContentType,
    /// Content id of the blob.
    pub content_id: &'a str,
    /// `contentCreated` of the blob.
    pub content_created: DateTime<Utc>,
    /// When the collector received the blob.
    pub received_at: DateTime<Utc>,
}

/// One normalized event.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The OCSF event (a JSON object).
    pub event: serde_json::Value,
    /// Its OCSF `class_uid`.
    pub class_uid: u32,
    /// The event time (`CreationTime`), when the record has a usable one.
    pub event_time: Option<DateTime<Utc>>,
    /// The record `Id`, when present.
    pub record_id: Option<String>,
}

/// Maps one record (any JSON value; never panics) to an OCSF event. The record is moved into
/// the event whole (`unmapped`), so nothing Microsoft sent is lost.
pub fn normalize(record: serde_json::Value, ctx: &Context<'_>) -> Normalized {
    match record {
        Value::Object(rec) => {
            let (mut ev, class_uid, event_time, record_id) = build(&rec, ctx);
            ev.insert("unmapped".into(), Value::Object(rec));
            Normalized {
                event: Value::Object(ev),
                class_uid,
                event_time,
                record_id,
            }
        }
        other => {
            let shape = match &other {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            let raw = other.to_string();
            let detail = format!("record is a JSON {shape}, not an object");
            base_without_record(raw, detail, None, ctx)
        }
    }
}

/// An event for input that is not JSON at all: the raw text is kept with a parse-error marker.
pub fn normalize_unparsable(raw: &str, error: &str, ctx: &Context<'_>) -> Normalized {
    base_without_record(
        raw.to_owned(),
        format!("unparsable record: {error}"),
        Some(error),
        ctx,
    )
}

/// Parses a client address in every observed form: `IPv4`, `IPv4:port`, `IPv6`, `[IPv6]:port`,
/// `::ffff:a.b.c.d` (returned as IPv4); junk → `None`.
pub fn parse_ip(s: &str) -> Option<(IpAddr, Option<u16>)> {
    ip::parse(s)
}

// ---------------------------------------------------------------------------------------------
// Shared plumbing for the class mappers
// ---------------------------------------------------------------------------------------------

/// Facts every mapper needs, read once by reference.
struct Common<'r> {
    /// The raw record.
    rec: &'r Map<String, Value>,
    /// `Operation` ("" when missing).
    op: &'r str,
    /// `Workload`.
    workload: Option<&'r str>,
    /// `RecordType` (number or stringly number).
    record_type: Option<i64>,
    /// `UserId`.
    user_id: Option<&'r str>,
    /// `ResultStatus`.
    result_status: Option<&'r str>,
    /// The blob's content type.
    content_type: ContentType,
}

impl Common<'_> {
    /// Whether `Workload` equals `w` (any case).
    fn workload_is(&self, w: &str) -> bool {
        self.workload.is_some_and(|x| x.eq_ignore_ascii_case(w))
    }
}

/// An event status.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Status {
    /// OCSF `status_id`.
    id: u8,
    /// OCSF `status` caption (or the source value for 99).
    name: Cow<'static, str>,
    /// `status_code`.
    code: Option<String>,
    /// `status_detail`.
    detail: Option<String>,
}

impl Status {
    fn success() -> Self {
        Self::of(1, "Success")
    }
    fn failure() -> Self {
        Self::of(2, "Failure")
    }
    fn of(id: u8, name: &'static str) -> Self {
        Status {
            id,
            name: Cow::Borrowed(name),
            code: None,
            detail: None,
        }
    }
}

/// `ResultStatus` → status: `Succeeded`/`Success`/`True` → Success, `Failed`/`Failure`/`False`
/// → Failure, `PartiallySucceeded` → Other, missing → Unknown, anything else → Other (the value
/// kept as `status`). Case-insensitive.
fn status_from_result(rs: Option<&str>) -> Status {
    let Some(s) = rs else {
        return Status::of(0, "Unknown");
    };
    const OK: [&str; 3] = ["succeeded", "success", "true"];
    const FAIL: [&str; 3] = ["failed", "failure", "false"];
    if OK.iter().any(|k| s.eq_ignore_ascii_case(k)) {
        Status::success()
    } else if FAIL.iter().any(|k| s.eq_ignore_ascii_case(k)) {
        Status::failure()
    } else if s.eq_ignore_ascii_case("partiallysucceeded") {
        Status::of(99, "PartiallySucceeded")
    } else {
        Status {
            id: 99,
            name: Cow::Owned(s.to_owned()),
            code: None,
            detail: None,
        }
    }
}

/// What a mapper decided.
struct Mapped {
    class: Class,
    activity_id: u32,
    /// Caption of the activity (`activity_name` when the record has no `Operation`).
    activity: &'static str,
    /// Overrides the `ResultStatus`-derived status.
    status: Option<Status>,
    severity_id: u8,
}

impl Mapped {
    fn new(class: Class, activity_id: u32, activity: &'static str) -> Self {
        Mapped {
            class,
            activity_id,
            activity,
            status: None,
            severity_id: 1,
        }
    }
}

/// Where mappers write: the event, the actor and the `o365` block.
struct Out {
    ev: Map<String, Value>,
    actor: Map<String, Value>,
    o365: Map<String, Value>,
}

/// Inserts `k => v`.
fn put(m: &mut Map<String, Value>, k: &str, v: impl Into<Value>) {
    m.insert(k.to_owned(), v.into());
}

/// Inserts `k => v` when `v` is `Some`.
fn put_opt<V: Into<Value>>(m: &mut Map<String, Value>, k: &str, v: Option<V>) {
    if let Some(v) = v {
        m.insert(k.to_owned(), v.into());
    }
}

/// Inserts `k => m` when `m` is not empty.
fn put_obj(m: &mut Map<String, Value>, k: &str, o: Map<String, Value>) {
    if !o.is_empty() {
        m.insert(k.to_owned(), Value::Object(o));
    }
}

/// A string field copied out as a JSON string.
fn s(rec: &Map<String, Value>, k: &str) -> Option<Value> {
    str_field(rec, k).map(|v| Value::String(v.to_owned()))
}

/// An OCSF user object: name, uid, and type/type_id from a Microsoft `UserType`.
fn user_obj(
    name: Option<&str>,
    uid: Option<String>,
    user_type: Option<&Value>,
) -> Map<String, Value> {
    let mut u = Map::new();
    put_opt(&mut u, "name", name);
    put_opt(&mut u, "uid", uid);
    if let Some(n) = user_type
        .and_then(|v| int_of(v).or_else(|| non_empty_str(v).and_then(tables::user_type_by_name)))
    {
        match tables::user_type(n) {
            Some((name, id)) => {
                put(&mut u, "type", name);
                put(&mut u, "type_id", id);
            }
            None => {
                put(&mut u, "type", n.to_string());
                put(&mut u, "type_id", 99);
            }
        }
    }
    u
}

/// Epoch milliseconds.
fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The event time from `CreationTime` when plausible (1990–2199).
fn event_time(rec: &Map<String, Value>) -> Option<DateTime<Utc>> {
    rec.get("CreationTime")
        .and_then(read::parse_time)
        .filter(|t| (1990..2200).contains(&t.year()))
}

/// Builds the event (without `unmapped`) for an object record.
fn build(
    rec: &Map<String, Value>,
    ctx: &Context<'_>,
) -> (
    Map<String, Value>,
    u32,
    Option<DateTime<Utc>>,
    Option<String>,
) {
    let time = event_time(rec);
    let c = Common {
        rec,
        op: str_field(rec, "Operation").unwrap_or(""),
        workload: str_field(rec, "Workload"),
        record_type: rec.get("RecordType").and_then(int_of),
        user_id: str_field(rec, "UserId"),
        result_status: str_field(rec, "ResultStatus"),
        content_type: ctx.content_type,
    };
    let record_id = rec.get("Id").and_then(text_of);

    let mut out = Out {
        ev: Map::new(),
        actor: Map::new(),
        o365: Map::new(),
    };
    // Actor: the user who did it.
    let actor_user = user_obj(
        c.user_id,
        rec.get("UserKey").and_then(text_of),
        rec.get("UserType"),
    );
    put_obj(&mut out.actor, "user", actor_user);

    // Source endpoint: the first field that holds a valid address.
    let mut src = Map::new();
    if let Some((addr, port, _)) = ip::pick(rec) {
        put(&mut src, "ip", addr.to_string());
        put_opt(&mut src, "port", port);
    }
    out.ev.insert("src_endpoint".into(), Value::Object(src));

    let mut mapped = dispatch(&c, &mut out);

    let status = mapped
        .status
        .take()
        .unwrap_or_else(|| status_from_result(c.result_status));
    let Out {
        mut ev,
        actor,
        mut o365,
    } = out;
    head(&mut ev, &mapped, c.op);
    put(&mut ev, "status_id", status.id);
    put(&mut ev, "status", status.name.into_owned());
    put_opt(&mut ev, "status_code", status.code);
    put_opt(&mut ev, "status_detail", status.detail);
    put_obj(&mut ev, "actor", actor);

    // Time: CreationTime, else the blob's contentCreated (marked in o365.time_source).
    let (when, source) = match time {
        Some(t) => (t, TimeSource::CreationTime),
        None => (ctx.content_created, TimeSource::ContentCreated),
    };
    put(&mut ev, "time", ms(when));

    let mut meta = metadata(ctx, rec.get("OrganizationId").and_then(non_empty_str));
    put_opt(&mut meta, "uid", record_id.clone());
    if let Some(w) = c.workload {
        let mut feature = Map::new();
        put(&mut feature, "name", w);
        if let Some(Value::Object(p)) = meta.get_mut("product") {
            p.insert("feature".into(), Value::Object(feature));
        }
    }
    ev.insert("metadata".into(), Value::Object(meta));

    // The o365 block: collector context and Microsoft-specific facts.
    put(&mut o365, "content_id", ctx.content_id);
    put(
        &mut o365,
        "record_type",
        c.record_type.map_or(Value::Null, Value::from),
    );
    put(
        &mut o365,
        "record_type_name",
        c.record_type
            .and_then(tables::record_type_name)
            .map_or(Value::Null, Value::from),
    );
    if source == TimeSource::ContentCreated {
        put(&mut o365, "time_source", "contentCreated");
    }
    ev.insert("o365".into(), Value::Object(o365));

    (ev, mapped.class.uid, time, record_id)
}

/// Chooses the class and fills the class-specific attributes.
fn dispatch(c: &Common<'_>, out: &mut Out) -> Mapped {
    if dlp::applies(c) {
        return dlp::map(c, out);
    }
    match c.record_type {
        Some(15 | 9) => return entra::sign_in(c, out),
        Some(8) => return entra::directory(c, out),
        _ => {}
    }
    if entra::is_sign_in_operation(c) {
        return entra::sign_in(c, out);
    }
    if exchange::is_admin(c) {
        return exchange::admin(c, out);
    }
    if exchange::is_mailbox(c) {
        return exchange::mailbox(c, out);
    }
    if sharepoint::applies(c) {
        return sharepoint::map(c, out);
    }
    general::map(c, out)
}

/// The class/activity/type/severity head of an event.
fn head(ev: &mut Map<String, Value>, m: &Mapped, operation: &str) {
    let class = m.class;
    put(ev, "class_uid", class.uid);
    put(ev, "class_name", class.name);
    put(ev, "category_uid", class.category_uid);
    put(ev, "activity_id", m.activity_id);
    put(
        ev,
        "activity_name",
        if operation.is_empty() {
            m.activity
        } else {
            operation
        },
    );
    put(
        ev,
        "type_uid",
        u64::from(class.uid) * 100 + u64::from(m.activity_id),
    );
    put(ev, "severity_id", m.severity_id);
}

/// `metadata` without the record-specific parts.
fn metadata(ctx: &Context<'_>, org: Option<&str>) -> Map<String, Value> {
    let mut product = Map::new();
    put(&mut product, "name", PRODUCT_NAME);
    put(&mut product, "vendor_name", VENDOR_NAME);
    let mut meta = Map::new();
    put(&mut meta, "version", OCSF_VERSION);
    meta.insert("product".into(), Value::Object(product));
    put(&mut meta, "tenant_uid", org.unwrap_or(ctx.tenant_id));
    put(&mut meta, "logged_time", ms(ctx.content_created));
    put(&mut meta, "processed_time", ms(ctx.received_at));
    put(&mut meta, "log_name", ctx.content_type.as_str());
    meta
}

/// A base API Activity event for input that is not a JSON object: `raw_data` keeps the input.
fn base_without_record(
    raw: String,
    detail: String,
    parse_error: Option<&str>,
    ctx: &Context<'_>,
) -> Normalized {
    let mut ev = Map::new();
    let mapped = Mapped::new(tables::API_ACTIVITY, 0, "Unknown");
    head(&mut ev, &mapped, "");
    put(&mut ev, "status_id", 0);
    put(&mut ev, "status", "Unknown");
    put(&mut ev, "status_detail", detail);
    put(&mut ev, "time", ms(ctx.content_created));
    let mut api = Map::new();
    put(&mut api, "operation", "Unknown");
    ev.insert("api".into(), Value::Object(api));
    ev.insert("actor".into(), Value::Object(Map::new()));
    ev.insert("src_endpoint".into(), Value::Object(Map::new()));
    ev.insert("metadata".into(), Value::Object(metadata(ctx, None)));
    put(&mut ev, "raw_data", raw);
    let mut o365 = Map::new();
    put(&mut o365, "content_id", ctx.content_id);
    put(&mut o365, "record_type", Value::Null);
    put(&mut o365, "record_type_name", Value::Null);
    put(&mut o365, "time_source", "contentCreated");
    put_opt(&mut o365, "parse_error", parse_error);
    ev.insert("o365".into(), Value::Object(o365));
    Normalized {
        event: Value::Object(ev),
        class_uid: tables::API_ACTIVITY.uid,
        event_time: None,
        record_id: None,
    }
}
