//! DLP matches → Detection Finding (OCSF 1.1.0 has no Data Security Finding; it came in 1.2.0).

use serde_json::{Map, Value};

use super::read::{bool_of, int_of, non_empty_str, str_field, text_of};
use super::tables::DETECTION_FINDING;
use super::{Common, Mapped, Out, Status, put, put_opt, s};
use crate::model::ContentType;

/// DLP records: the `DLP.All` content type, the DLP record types, or a `Dlp*` operation with
/// `PolicyDetails`.
pub(super) fn applies(c: &Common<'_>) -> bool {
    c.content_type == ContentType::DlpAll
        || matches!(c.record_type, Some(11 | 13 | 33 | 63 | 107))
        || (["DlpRuleMatch", "DlpRuleUndo", "DlpInfo"]
            .iter()
            .any(|o| o.eq_ignore_ascii_case(c.op)))
}

/// DLP rule `Severity` → OCSF `severity_id`.
fn severity(s: &str) -> u8 {
    let l = s.trim();
    if l.eq_ignore_ascii_case("low") {
        2
    } else if l.eq_ignore_ascii_case("medium") {
        3
    } else if l.eq_ignore_ascii_case("high") {
        4
    } else if l.eq_ignore_ascii_case("critical") {
        5
    } else if l.eq_ignore_ascii_case("informational") || l.eq_ignore_ascii_case("info") {
        1
    } else {
        0
    }
}

/// A list of strings (or one string) as a JSON array of strings.
fn strings(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(text_of).map(Value::String).collect(),
        Some(v) => text_of(v).map(Value::String).into_iter().collect(),
        None => Vec::new(),
    }
}

/// One DLP rule as an OCSF analytic.
fn analytic(rule: &Map<String, Value>, policy: Option<&str>) -> Map<String, Value> {
    let mut a = Map::new();
    put_opt(&mut a, "name", s(rule, "RuleName"));
    put_opt(&mut a, "uid", s(rule, "RuleId"));
    put(&mut a, "type_id", 1);
    put(&mut a, "type", "Rule");
    put_opt(&mut a, "category", policy);
    a
}

/// DLP → 2004 Detection Finding.
pub(super) fn map(c: &Common<'_>, out: &mut Out) -> Mapped {
    let rec = c.rec;
    let mut sev = 0u8;
    let mut analytics: Vec<Map<String, Value>> = Vec::new();
    let mut policies_out = Vec::new();
    let mut actions_all: Vec<Value> = Vec::new();
    let mut sit_total = 0i64;
    // (sensitive information type name, total count), in order of appearance.
    let mut sits: Vec<(String, i64)> = Vec::new();
    let mut first_policy: Option<&str> = None;
    let mut first_rule: Option<&str> = None;

    if let Some(policies) = rec.get("PolicyDetails").and_then(Value::as_array) {
        for p in policies.iter().filter_map(Value::as_object) {
            let pname = str_field(p, "PolicyName");
            first_policy = first_policy.or(pname);
            for r in p
                .get("Rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
            {
                first_rule = first_rule.or_else(|| str_field(r, "RuleName"));
                let rsev = str_field(r, "Severity");
                sev = sev.max(rsev.map_or(0, severity));
                let actions = strings(r.get("Actions"));
                for a in &actions {
                    if !actions_all.contains(a) {
                        actions_all.push(a.clone());
                    }
                }
                for si in r
                    .get("ConditionsMatched")
                    .and_then(|m| m.get("SensitiveInformation"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_object)
                {
                    let count = si.get("Count").and_then(int_of).unwrap_or(0);
                    sit_total += count;
                    let name = str_field(si, "SensitiveInformationTypeName")
                        .or_else(|| str_field(si, "SensitiveType"))
                        .unwrap_or("Unknown");
                    match sits.iter_mut().find(|(n, _)| n == name) {
                        Some((_, c)) => *c += count,
                        None => sits.push((name.to_owned(), count)),
                    }
                }
                analytics.push(analytic(r, pname));
            }
            let mut po = Map::new();
            put_opt(&mut po, "uid", s(p, "PolicyId"));
            put_opt(&mut po, "name", pname);
            policies_out.push(Value::Object(po));
        }
    }

    // finding_info
    let mut fi = Map::new();
    put(
        &mut fi,
        "uid",
        str_field(rec, "IncidentId")
            .or_else(|| str_field(rec, "Id"))
            .unwrap_or(c.op),
    );
    let title = match (first_policy, first_rule) {
        (Some(p), Some(r)) => format!("DLP policy \"{p}\", rule \"{r}\""),
        (Some(p), None) => format!("DLP policy \"{p}\""),
        _ => format!("DLP {}", if c.op.is_empty() { "event" } else { c.op }),
    };
    put(&mut fi, "title", title);
    if !sits.is_empty() {
        let names: Vec<&str> = sits.iter().map(|(n, _)| n.as_str()).collect();
        put(
            &mut fi,
            "desc",
            format!("{sit_total} sensitive items matched: {}", names.join(", ")),
        );
    }
    put(
        &mut fi,
        "types",
        Value::Array(vec![Value::String("Data Loss Prevention".into())]),
    );
    let mut analytics = analytics.into_iter();
    if let Some(first) = analytics.next() {
        put(&mut fi, "analytic", Value::Object(first));
        let rest: Vec<Value> = analytics.map(Value::Object).collect();
        if !rest.is_empty() {
            put(&mut fi, "related_analytics", Value::Array(rest));
        }
    }
    put(&mut out.ev, "finding_info", Value::Object(fi));

    // The affected object.
    let mut res = Map::new();
    if let Some(sp) = rec.get("SharePointMetaData").and_then(Value::as_object) {
        put(&mut res, "type", "File");
        put_opt(&mut res, "name", s(sp, "FileName"));
        put_opt(
            &mut res,
            "uid",
            s(sp, "FilePathUrl").or_else(|| s(rec, "ObjectId")),
        );
        if let Some(owner) = str_field(sp, "FileOwner") {
            let mut u = Map::new();
            put(&mut u, "name", owner);
            put(&mut res, "owner", Value::Object(u));
        }
        if let Some(ext) = sp.get("IsViewableByExternalUsers").and_then(bool_of) {
            let mut data = Map::new();
            put(&mut data, "is_viewable_by_external_users", ext);
            put(&mut res, "data", Value::Object(data));
        }
    } else if let Some(ex) = rec.get("ExchangeMetaData").and_then(Value::as_object) {
        put(&mut res, "type", "Email");
        put_opt(
            &mut res,
            "uid",
            s(ex, "MessageID").or_else(|| s(rec, "ObjectId")),
        );
        put_opt(&mut res, "name", s(ex, "Subject"));
        let mut data = Map::new();
        put_opt(&mut data, "from", s(ex, "From"));
        put(&mut data, "to", Value::Array(strings(ex.get("To"))));
        let cc = strings(ex.get("CC"));
        if !cc.is_empty() {
            put(&mut data, "cc", Value::Array(cc));
        }
        put(&mut res, "data", Value::Object(data));
    } else if let Some(ep) = rec.get("EndpointMetaData").and_then(Value::as_object) {
        put(&mut res, "type", "File");
        let path = str_field(rec, "ObjectId");
        put_opt(&mut res, "uid", path);
        put_opt(
            &mut res,
            "name",
            path.map(|p| p.rsplit(['\\', '/']).next().unwrap_or(p)),
        );
        let mut data = Map::new();
        put_opt(&mut data, "device_name", s(ep, "DeviceName"));
        put_opt(&mut data, "operation", s(ep, "EndpointOperation"));
        put(&mut res, "data", Value::Object(data));
    } else if let Some(obj) = str_field(rec, "ObjectId") {
        put(&mut res, "uid", obj);
    }
    if !res.is_empty() {
        put(
            &mut out.ev,
            "resources",
            Value::Array(vec![Value::Object(res)]),
        );
    }

    // The o365.dlp block.
    let mut d = Map::new();
    put(&mut d, "policies", Value::Array(policies_out));
    put(&mut d, "actions", Value::Array(actions_all));
    let sensitive: Vec<Value> = sits
        .into_iter()
        .map(|(name, count)| {
            let mut o = Map::new();
            put(&mut o, "name", name);
            put(&mut o, "count", count);
            Value::Object(o)
        })
        .collect();
    put(&mut d, "sensitive_information", Value::Array(sensitive));
    put(&mut d, "sensitive_item_count", sit_total);
    let exception = rec.get("ExceptionInfo").and_then(Value::as_object);
    if let Some(e) = exception {
        let mut eo = Map::new();
        put_opt(&mut eo, "reason", s(e, "Reason"));
        put_opt(&mut eo, "justification", s(e, "Justification"));
        put_opt(
            &mut eo,
            "false_positive",
            e.get("FalsePositive").and_then(bool_of),
        );
        put(&mut d, "exception", Value::Object(eo));
    }
    put(&mut out.o365, "dlp", Value::Object(d));

    // Activity and finding status.
    let (activity_id, activity, status) = if c.op.eq_ignore_ascii_case("DlpRuleUndo") {
        let fp = exception
            .and_then(|e| e.get("FalsePositive"))
            .and_then(bool_of)
            .unwrap_or(false);
        let mut st = if fp {
            Status::of(3, "Suppressed")
        } else {
            Status::of(4, "Resolved")
        };
        st.detail = exception
            .and_then(|e| e.get("Reason"))
            .and_then(non_empty_str)
            .map(str::to_owned);
        (3, "Close", st)
    } else if c.op.eq_ignore_ascii_case("DlpRuleMatch") {
        (1, "Create", Status::of(1, "New"))
    } else {
        (99, "Other", Status::of(1, "New"))
    };
    let mut m = Mapped::new(DETECTION_FINDING, activity_id, activity);
    m.status = Some(status);
    m.severity_id = sev;
    m
}
