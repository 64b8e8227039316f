//! Teams, Power BI, Forms, Flow, Viva Engage, Copilot and everything else → API Activity.

use serde_json::{Map, Value};

use super::exchange::{api, cmdlet_activity, cmdlet_parts};
use super::read::{list_field, nv_map, str_field, text_of};
use super::tables::API_ACTIVITY;
use super::{Common, Mapped, Out, put, put_obj, put_opt};

/// API Activity activity from an operation name: `Verb-Noun` cmdlets by verb, CamelCase
/// operations by their leading or trailing word (`TeamCreated`, `ViewReport`, `DeleteFlow`).
pub(super) fn activity(op: &str) -> (u32, &'static str) {
    if let Some((verb, _)) = cmdlet_parts(op) {
        return cmdlet_activity(verb);
    }
    const CREATE: [&str; 5] = ["Create", "Created", "Add", "Added", "New"];
    const READ: [&str; 12] = [
        "View",
        "Viewed",
        "Get",
        "Read",
        "Access",
        "Accessed",
        "Visited",
        "Export",
        "Exported",
        "Download",
        "Downloaded",
        "Search",
    ];
    const UPDATE: [&str; 9] = [
        "Update", "Updated", "Edit", "Edited", "Set", "Modify", "Modified", "Change", "Changed",
    ];
    const DELETE: [&str; 6] = ["Delete", "Deleted", "Remove", "Removed", "Purge", "Purged"];
    // First and last CamelCase words.
    let first_end = op
        .char_indices()
        .skip(1)
        .find(|(_, ch)| ch.is_ascii_uppercase())
        .map_or(op.len(), |(i, _)| i);
    let last_start = op
        .char_indices()
        .rev()
        .find(|(_, ch)| ch.is_ascii_uppercase())
        .map_or(0, |(i, _)| i);
    let words = [&op[..first_end], &op[last_start..]];
    let is = |set: &[&str]| {
        words
            .iter()
            .any(|w| set.iter().any(|v| v.eq_ignore_ascii_case(w)))
    };
    if is(&DELETE) {
        (4, "Delete")
    } else if is(&CREATE) {
        (1, "Create")
    } else if is(&UPDATE) {
        (3, "Update")
    } else if is(&READ) {
        (2, "Read")
    } else {
        (99, "Other")
    }
}

/// The object acted on, from the fields the general workloads use.
fn resource(rec: &Map<String, Value>) -> Option<Map<String, Value>> {
    let mut r = Map::new();
    let uid = str_field(rec, "ObjectId")
        .or_else(|| str_field(rec, "TeamGuid"))
        .or_else(|| str_field(rec, "ReportId"))
        .or_else(|| str_field(rec, "FormId"))
        .or_else(|| str_field(rec, "ItemId"));
    put_opt(&mut r, "uid", uid);
    put_opt(
        &mut r,
        "name",
        [
            "ItemName",
            "ReportName",
            "FormName",
            "ChannelName",
            "TeamName",
            "GroupName",
            "FileName",
        ]
        .iter()
        .find_map(|k| str_field(rec, k)),
    );
    put_opt(
        &mut r,
        "type",
        ["ReportType", "FormTypes", "CommunicationType", "ItemType"]
            .iter()
            .find_map(|k| rec.get(*k).and_then(text_of)),
    );
    (!r.is_empty()).then_some(r)
}

/// Any record → 6003 API Activity with `api.operation` = `Operation`, `api.service.name` =
/// `Workload`.
pub(super) fn map(c: &Common<'_>, out: &mut Out) -> Mapped {
    let rec = c.rec;
    let mut api = api(c.op, c.workload.unwrap_or("Unknown"));
    if let Some(Value::String(p)) = rec.get("Parameters") {
        let mut req = Map::new();
        put(&mut req, "data", p.as_str());
        put_opt(&mut req, "uid", str_field(rec, "Id"));
        put(&mut api, "request", Value::Object(req));
    } else if let Some(m) = nv_map(rec.get("Parameters")) {
        let mut req = Map::new();
        put(&mut req, "data", Value::Object(m));
        put_opt(&mut req, "uid", str_field(rec, "Id"));
        put(&mut api, "request", Value::Object(req));
    }
    put(&mut out.ev, "api", Value::Object(api));
    if let Some(r) = resource(rec) {
        put(
            &mut out.ev,
            "resources",
            Value::Array(vec![Value::Object(r)]),
        );
    }
    if let Some(ua) = str_field(rec, "UserAgent") {
        let mut http = Map::new();
        put(&mut http, "user_agent", ua);
        put_obj(&mut out.ev, "http_request", http);
    }
    for (key, name) in [
        ("ExtendedProperties", "extended_properties"),
        ("OperationProperties", "operation_properties"),
    ] {
        let list = list_field(rec, key);
        if let Some(m) = nv_map(list.as_deref()) {
            put(&mut out.o365, name, Value::Object(m));
        }
    }
    let (id, caption) = if c.op.is_empty() {
        (0, "Unknown")
    } else {
        activity(c.op)
    };
    Mapped::new(API_ACTIVITY, id, caption)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs() {
        assert_eq!(activity("TeamCreated"), (1, "Create"));
        assert_eq!(activity("MemberAdded"), (1, "Create"));
        assert_eq!(activity("ViewReport"), (2, "Read"));
        assert_eq!(activity("ExportReport"), (2, "Read"));
        assert_eq!(activity("DeleteFlow"), (4, "Delete"));
        assert_eq!(activity("Remove-DlpCompliancePolicy"), (4, "Delete"));
        assert_eq!(activity("MessageSent"), (99, "Other"));
        assert_eq!(activity("CopilotInteraction"), (99, "Other"));
        assert_eq!(activity("é"), (99, "Other"));
        assert_eq!(activity("x"), (99, "Other"));
    }
}
