//! Exchange: admin cmdlets → API Activity with `Parameters` as `api.request.data`; mailbox
//! operations → API Activity (or Email Activity for sends), non-owner access made visible.

use serde_json::{Map, Value};

use super::read::{
    bool_of, int_field, list_field, modified_map, non_empty_str, nv_map, str_field, text_of,
};
use super::tables::{self, API_ACTIVITY, EMAIL_ACTIVITY};
use super::{Common, Mapped, Out, put, put_obj, put_opt, s, status_from_result};

/// How many folders/items become `resources` at most (the raw record keeps them all).
const MAX_RESOURCES: usize = 10;

/// `Verb-Noun` with a capitalised alphabetic verb.
pub(super) fn cmdlet_parts(op: &str) -> Option<(&str, &str)> {
    let (verb, noun) = op.split_once('-')?;
    (!verb.is_empty()
        && !noun.is_empty()
        && verb.bytes().all(|b| b.is_ascii_alphabetic())
        && verb.as_bytes()[0].is_ascii_uppercase()
        && noun.bytes().all(|b| b.is_ascii_alphanumeric()))
    .then_some((verb, noun))
}

/// API Activity activity from a cmdlet verb.
pub(super) fn cmdlet_activity(verb: &str) -> (u32, &'static str) {
    const CREATE: [&str; 6] = ["New", "Add", "Install", "Register", "Import", "Copy"];
    const READ: [&str; 6] = ["Get", "Search", "Export", "Test", "Read", "Find"];
    const UPDATE: [&str; 15] = [
        "Set", "Update", "Enable", "Disable", "Edit", "Start", "Stop", "Suspend", "Resume", "Move",
        "Rename", "Restore", "Grant", "Revoke", "Clear",
    ];
    const DELETE: [&str; 4] = ["Remove", "Delete", "Uninstall", "Unregister"];
    let is = |set: &[&str]| set.iter().any(|v| v.eq_ignore_ascii_case(verb));
    if is(&CREATE) {
        (1, "Create")
    } else if is(&READ) {
        (2, "Read")
    } else if is(&UPDATE) {
        (3, "Update")
    } else if is(&DELETE) {
        (4, "Delete")
    } else {
        (99, "Other")
    }
}

/// Admin cmdlets: Exchange admin (1), and the other cmdlet record types (10, 18, 23).
pub(super) fn is_admin(c: &Common<'_>) -> bool {
    matches!(c.record_type, Some(1 | 10 | 18 | 23))
        || (c.workload_is("Exchange")
            && cmdlet_parts(c.op).is_some()
            && c.rec.contains_key("Parameters"))
}

/// Mailbox audit records (2, 3, 19, 50, or anything Exchange with a mailbox owner).
pub(super) fn is_mailbox(c: &Common<'_>) -> bool {
    matches!(c.record_type, Some(2 | 3 | 19 | 50))
        || (c.workload_is("Exchange")
            && (c.rec.contains_key("MailboxOwnerUPN")
                || c.rec.contains_key("MailboxGuid")
                || c.rec.contains_key("LogonType")))
}

/// `api` with `operation` and `service.name`.
pub(super) fn api(op: &str, service: &str) -> Map<String, Value> {
    let mut api = Map::new();
    put(
        &mut api,
        "operation",
        if op.is_empty() { "Unknown" } else { op },
    );
    let mut svc = Map::new();
    put(&mut svc, "name", service);
    put(&mut api, "service", Value::Object(svc));
    api
}

/// Exchange admin cmdlets → 6003 API Activity.
pub(super) fn admin(c: &Common<'_>, out: &mut Out) -> Mapped {
    let rec = c.rec;
    let (activity_id, activity) =
        cmdlet_parts(c.op).map_or((99, "Other"), |(v, _)| cmdlet_activity(v));
    let mut api = api(c.op, c.workload.unwrap_or("Exchange"));
    let mut request = Map::new();
    match rec.get("Parameters") {
        Some(Value::String(p)) if !p.trim().is_empty() => put(&mut request, "data", p.as_str()),
        Some(v) => {
            if let Some(m) = nv_map(Some(v)) {
                put(&mut request, "data", Value::Object(m));
            }
        }
        None => {}
    }
    if !request.is_empty() {
        put_opt(
            &mut request,
            "uid",
            str_field(rec, "RequestId").or_else(|| str_field(rec, "Id")),
        );
        put(&mut api, "request", Value::Object(request));
    }
    put(&mut out.ev, "api", Value::Object(api));

    if let Some(object) = str_field(rec, "ObjectId") {
        let mut res = Map::new();
        put(&mut res, "uid", object);
        put(
            &mut res,
            "name",
            str_field(rec, "ModifiedObjectResolvedName").unwrap_or(object),
        );
        put_opt(&mut res, "type", cmdlet_parts(c.op).map(|(_, noun)| noun));
        put(
            &mut out.ev,
            "resources",
            Value::Array(vec![Value::Object(res)]),
        );
    }
    if let Some(m) = modified_map(rec.get("ModifiedProperties")) {
        put_obj(&mut out.o365, "modified_properties", m);
    }
    put_opt(
        &mut out.o365,
        "external_access",
        rec.get("ExternalAccess").and_then(bool_of),
    );

    let mut m = Mapped::new(API_ACTIVITY, activity_id, activity);
    let mut st = status_from_result(c.result_status);
    if st.id == 2 {
        st.detail = str_field(rec, "ErrorMessage").map(str::to_owned);
    }
    m.status = Some(st);
    m
}

/// Mailbox operation → API Activity activity.
fn mailbox_activity(op: &str) -> (u32, &'static str) {
    const READ: [&str; 6] = [
        "MailItemsAccessed",
        "FolderBind",
        "MessageBind",
        "MailboxLogin",
        "SearchQueryInitiatedExchange",
        "PreviewItem",
    ];
    const CREATE: [&str; 3] = ["Create", "Copy", "AttachmentCreate"];
    const UPDATE: [&str; 9] = [
        "Update",
        "Move",
        "AddFolderPermissions",
        "ModifyFolderPermissions",
        "RemoveFolderPermissions",
        "UpdateFolderPermissions",
        "UpdateInboxRules",
        "UpdateCalendarDelegation",
        "UpdateComplianceTag",
    ];
    const DELETE: [&str; 3] = ["SoftDelete", "HardDelete", "MoveToDeletedItems"];
    let is = |set: &[&str]| set.iter().any(|v| v.eq_ignore_ascii_case(op));
    if is(&READ) {
        (2, "Read")
    } else if is(&CREATE) {
        (1, "Create")
    } else if is(&UPDATE) {
        (3, "Update")
    } else if is(&DELETE) {
        (4, "Delete")
    } else {
        (99, "Other")
    }
}

/// A `{Id, Path}` folder as a resource.
fn folder_resource(f: &Value, kind: &str) -> Option<Value> {
    let f = f.as_object()?;
    let mut r = Map::new();
    put(&mut r, "type", kind);
    put_opt(&mut r, "name", f.get("Path").and_then(non_empty_str));
    (r.len() > 1).then_some(Value::Object(r))
}

/// A mail item as a resource.
fn item_resource(i: &Value) -> Option<Value> {
    let i = i.as_object()?;
    let mut r = Map::new();
    put(&mut r, "type", "MailItem");
    put_opt(
        &mut r,
        "uid",
        i.get("InternetMessageId").and_then(non_empty_str),
    );
    put_opt(&mut r, "name", i.get("Subject").and_then(non_empty_str));
    (r.len() > 1).then_some(Value::Object(r))
}

/// Mailbox operations → 6003 API Activity; sends → 4009 Email Activity.
pub(super) fn mailbox(c: &Common<'_>, out: &mut Out) -> Mapped {
    let rec = c.rec;
    let owner = str_field(rec, "MailboxOwnerUPN");
    let logon_type = int_field(rec, "LogonType");
    let non_owner = logon_type.is_some_and(|t| t != 0)
        || matches!((owner, c.user_id), (Some(o), Some(u)) if !o.eq_ignore_ascii_case(u));

    let o = &mut out.o365;
    if let Some(lt) = logon_type {
        put(o, "logon_type", lt);
        put_opt(o, "logon_type_name", tables::logon_type(lt));
    }
    put_opt(o, "mailbox_owner_upn", owner);
    put(o, "non_owner_access", non_owner);
    put_opt(
        o,
        "external_access",
        rec.get("ExternalAccess").and_then(bool_of),
    );
    let ops = list_field(rec, "OperationProperties");
    if let Some(m) = nv_map(ops.as_deref()) {
        if let Some(t) = m.get("MailAccessType").and_then(text_of) {
            put(o, "mail_access_type", t);
        }
        if let Some(b) = m.get("IsThrottled").and_then(bool_of) {
            put(o, "is_throttled", b);
        }
    }
    put_opt(o, "operation_count", int_field(rec, "OperationCount"));

    if let Some(ua) = str_field(rec, "ClientInfoString") {
        let mut http = Map::new();
        put(&mut http, "user_agent", ua);
        put_obj(&mut out.ev, "http_request", http);
    }

    let is_send = ["Send", "SendAs", "SendOnBehalf"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(c.op));
    if is_send {
        let item = rec.get("Item").and_then(Value::as_object);
        let mut email = Map::new();
        put_opt(
            &mut email,
            "from",
            str_field(rec, "SendAsUserSmtp")
                .or_else(|| str_field(rec, "SendOnBehalfOfUserSmtp"))
                .or(owner)
                .or(c.user_id),
        );
        let to: Vec<Value> = rec
            .get("recipientList")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| {
                        r.get("Address")
                            .and_then(non_empty_str)
                            .or_else(|| non_empty_str(r))
                    })
                    .map(|s| Value::String(s.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        put(&mut email, "to", Value::Array(to));
        if let Some(item) = item {
            put_opt(&mut email, "uid", s(item, "Id"));
            put_opt(&mut email, "message_uid", s(item, "InternetMessageId"));
            put_opt(&mut email, "subject", s(item, "Subject"));
            put_opt(&mut email, "size", int_field(item, "SizeInBytes"));
        }
        put(&mut out.ev, "email", Value::Object(email));
        put(&mut out.ev, "direction_id", 0);
        put(&mut out.ev, "direction", "Unknown");
        return Mapped::new(EMAIL_ACTIVITY, 1, "Send");
    }

    put(
        &mut out.ev,
        "api",
        Value::Object(api(c.op, c.workload.unwrap_or("Exchange"))),
    );
    let mut resources = Vec::new();
    let mut mailbox = Map::new();
    put(&mut mailbox, "type", "Mailbox");
    put_opt(&mut mailbox, "uid", str_field(rec, "MailboxGuid"));
    put_opt(&mut mailbox, "name", owner);
    if mailbox.len() > 1 {
        resources.push(Value::Object(mailbox));
    }
    if let Some(f) = rec.get("Folder").and_then(|f| folder_resource(f, "Folder")) {
        resources.push(f);
    }
    let mut items = 0usize;
    if let Some(folders) = rec.get("Folders").and_then(Value::as_array) {
        for f in folders {
            items += f
                .get("FolderItems")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if resources.len() < MAX_RESOURCES
                && let Some(r) = folder_resource(f, "Folder")
            {
                resources.push(r);
            }
        }
    }
    if let Some(f) = rec
        .get("DestFolder")
        .and_then(|f| folder_resource(f, "DestinationFolder"))
    {
        resources.push(f);
    }
    if let Some(i) = rec.get("Item").and_then(item_resource) {
        resources.push(i);
    }
    if let Some(affected) = rec.get("AffectedItems").and_then(Value::as_array) {
        items += affected.len();
        for i in affected {
            if resources.len() >= MAX_RESOURCES {
                break;
            }
            if let Some(r) = item_resource(i) {
                resources.push(r);
            }
        }
    }
    if items > 0 {
        put(&mut out.o365, "item_count", items);
    }
    if !resources.is_empty() {
        put(&mut out.ev, "resources", Value::Array(resources));
    }
    let (id, caption) = mailbox_activity(c.op);
    Mapped::new(API_ACTIVITY, id, caption)
}
