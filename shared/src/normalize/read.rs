//! Lenient readers over a raw record: numbers as strings and strings as numbers, JSON inside
//! strings, `Name`/`Value` lists, `CreationTime` in every observed shape. Nothing here panics.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value};

/// Strings longer than this are never parsed as embedded JSON (kept as text).
const MAX_EMBEDDED_JSON: usize = 64 * 1024;

/// A non-empty (after trimming) string field.
pub(super) fn str_field<'a>(rec: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    rec.get(key).and_then(non_empty_str)
}

/// A non-empty (after trimming) string value, trimmed.
pub(super) fn non_empty_str(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then_some(t)
        }
        _ => None,
    }
}

/// An integer from a number (integral float accepted) or a string holding one.
pub(super) fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<i64>().ok().or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
        }
        _ => None,
    }
}

/// An integer field (see [`int_of`]).
pub(super) fn int_field(rec: &Map<String, Value>, key: &str) -> Option<i64> {
    rec.get(key).and_then(int_of)
}

/// A boolean from `true`/`false`, `"True"`/`"False"` (any case), `1`/`0` or `"1"`/`"0"`.
pub(super) fn bool_of(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        Value::String(s) => {
            let t = s.trim();
            if t.eq_ignore_ascii_case("true") || t == "1" {
                Some(true)
            } else if t.eq_ignore_ascii_case("false") || t == "0" {
                Some(false)
            } else {
                // Entra prints booleans as one-element arrays: "[true]".
                match parse_embedded(t) {
                    Some(Value::Array(a)) if a.len() == 1 => bool_of(&a[0]),
                    _ => None,
                }
            }
        }
        Value::Array(a) if a.len() == 1 => bool_of(&a[0]),
        _ => None,
    }
}

/// A scalar as text: strings as they are (trimmed, non-empty), numbers and booleans printed.
pub(super) fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(_) => non_empty_str(v).map(str::to_owned),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// JSON held inside a string (`"[true]"`, `"{\"a\":1}"`), when it is an array or object.
pub(super) fn parse_embedded(s: &str) -> Option<Value> {
    let t = s.trim();
    if t.len() > MAX_EMBEDDED_JSON {
        return None;
    }
    let (first, last) = (t.as_bytes().first()?, t.as_bytes().last()?);
    if (*first == b'[' && *last == b']') || (*first == b'{' && *last == b'}') {
        serde_json::from_str(t).ok()
    } else {
        None
    }
}

/// A value with JSON-in-string expanded: `"[true]"` → `[true]`; any other value cloned.
pub(super) fn expand(v: &Value) -> Value {
    match v {
        Value::String(s) => parse_embedded(s).unwrap_or_else(|| v.clone()),
        _ => v.clone(),
    }
}

/// A list field as an array value, also when the list arrives as a JSON string.
pub(super) fn list_field<'a>(
    rec: &'a Map<String, Value>,
    key: &str,
) -> Option<std::borrow::Cow<'a, Value>> {
    match rec.get(key)? {
        v @ Value::Array(_) => Some(std::borrow::Cow::Borrowed(v)),
        Value::String(s) => match parse_embedded(s) {
            Some(v @ Value::Array(_)) => Some(std::borrow::Cow::Owned(v)),
            _ => None,
        },
        _ => None,
    }
}

/// A `Name`/`Value` list as an array, also when the list arrives as a JSON string.
fn list_of(v: &Value) -> Option<std::borrow::Cow<'_, [Value]>> {
    match v {
        Value::Array(a) => Some(std::borrow::Cow::Borrowed(a.as_slice())),
        Value::String(s) => match parse_embedded(s) {
            Some(Value::Array(a)) => Some(std::borrow::Cow::Owned(a)),
            _ => None,
        },
        _ => None,
    }
}

/// The `Name` of a list entry (`Name` or `name`).
fn entry_name(e: &Map<String, Value>) -> Option<&str> {
    e.get("Name")
        .or_else(|| e.get("name"))
        .and_then(non_empty_str)
}

/// The value named `name` (case-insensitive) in a `Name`/`Value` list.
pub(super) fn nv_get<'a>(list: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    let Some(Value::Array(a)) = list else {
        return None;
    };
    a.iter().find_map(|e| {
        let e = e.as_object()?;
        entry_name(e)
            .filter(|n| n.eq_ignore_ascii_case(name))
            .and_then(|_| e.get("Value").or_else(|| e.get("value")))
    })
}

/// A text value named `name` in a `Name`/`Value` list.
pub(super) fn nv_text(list: Option<&Value>, name: &str) -> Option<String> {
    nv_get(list, name).and_then(text_of)
}

/// `[{"Name":n,"Value":v}]` → `{n: v}` with JSON-in-string values expanded. Later duplicates
/// win. `None` when the value is not such a list or the list is empty.
pub(super) fn nv_map(v: Option<&Value>) -> Option<Map<String, Value>> {
    let list = list_of(v?)?;
    let mut out = Map::new();
    for e in list.iter() {
        let Some(e) = e.as_object() else { continue };
        let Some(name) = entry_name(e) else { continue };
        let value = e
            .get("Value")
            .or_else(|| e.get("value"))
            .map_or(Value::Null, expand);
        out.insert(name.to_owned(), value);
    }
    (!out.is_empty()).then_some(out)
}

/// `ModifiedProperties` (`[{"Name","NewValue","OldValue"}]`) → `{Name: {"new": …, "old": …}}`,
/// JSON-in-string values expanded.
pub(super) fn modified_map(v: Option<&Value>) -> Option<Map<String, Value>> {
    let list = list_of(v?)?;
    let mut out = Map::new();
    for e in list.iter() {
        let Some(e) = e.as_object() else { continue };
        let Some(name) = entry_name(e) else { continue };
        let mut pair = Map::new();
        pair.insert("new".into(), e.get("NewValue").map_or(Value::Null, expand));
        pair.insert("old".into(), e.get("OldValue").map_or(Value::Null, expand));
        out.insert(name.to_owned(), Value::Object(pair));
    }
    (!out.is_empty()).then_some(out)
}

/// The first non-empty text of a `ModifiedProperties` entry's new value, falling back to the
/// old one (removals carry the name only in `OldValue`). One-element arrays are unwrapped.
pub(super) fn modified_text(v: Option<&Value>, name: &str) -> Option<String> {
    let Some(Value::Array(a)) = v else {
        return None;
    };
    let e = a.iter().find_map(|e| {
        let e = e.as_object()?;
        entry_name(e)
            .filter(|n| n.eq_ignore_ascii_case(name))
            .map(|_| e)
    })?;
    let pick = |k: &str| -> Option<String> {
        let v = e.get(k)?;
        match expand(v) {
            Value::Array(a) => a.first().and_then(text_of),
            other => text_of(&other),
        }
    };
    pick("NewValue").or_else(|| pick("OldValue"))
}

/// How the event time was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeSource {
    /// From the record's `CreationTime`.
    CreationTime,
    /// `CreationTime` missing or unusable: the blob's `contentCreated` was used.
    ContentCreated,
}

/// Parses `CreationTime`: with or without fraction, with or without zone (none = UTC), `T` or
/// space, epoch seconds/milliseconds as a number, PowerShell's `/Date(ms)/`.
pub(super) fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => parse_time_str(s),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .and_then(epoch_guess),
        _ => None,
    }
}

/// Epoch seconds or milliseconds (by magnitude).
fn epoch_guess(n: i64) -> Option<DateTime<Utc>> {
    if n.unsigned_abs() >= 100_000_000_000 {
        Utc.timestamp_millis_opt(n).single()
    } else {
        Utc.timestamp_opt(n, 0).single()
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

/// Fast path for the wire format `YYYY-MM-DDTHH:MM:SS` (no zone, no fraction).
fn parse_plain(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(digits(&b[0..4])?).ok()?,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    )?;
    let t = date.and_hms_opt(
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    )?;
    Some(Utc.from_utc_datetime(&t))
}

fn parse_time_str(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Some(t) = parse_plain(s.as_bytes()) {
        return Some(t);
    }
    if s.len() > 64 {
        return None;
    }
    // PowerShell exports: "/Date(1728364117000)/".
    if let Some(ms) = s
        .strip_prefix("/Date(")
        .and_then(|r| r.strip_suffix(")/"))
        .and_then(|r| r.parse::<i64>().ok())
    {
        return Utc.timestamp_millis_opt(ms).single();
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let bare = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix('z'))
        .unwrap_or(s);
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(bare, fmt) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f %z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    if let Ok(n) = s.parse::<i64>() {
        return epoch_guess(n);
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn time_shapes_parse_as_utc() {
        let want = Utc.with_ymd_and_hms(2026, 3, 2, 8, 14, 51).unwrap();
        for s in [
            "2026-03-02T08:14:51",
            "2026-03-02 08:14:51",
            "2026-03-02T08:14:51Z",
            "2026-03-02T08:14:51.000",
            "2026-03-02T08:14:51.0000000Z",
            "2026-03-02T09:14:51+01:00",
            " 2026-03-02T08:14:51 ",
        ] {
            assert_eq!(parse_time(&json!(s)), Some(want), "{s}");
        }
        assert_eq!(parse_time(&json!(want.timestamp_millis())), Some(want));
        assert_eq!(parse_time(&json!(want.timestamp())), Some(want));
        assert_eq!(
            parse_time(&json!(format!("/Date({})/", want.timestamp_millis()))),
            Some(want)
        );
        for bad in [
            json!(""),
            json!("yesterday"),
            json!("2026-13-02T08:14:51"),
            json!("2026-02-30T08:14:51"),
            json!(null),
            json!([]),
            json!({}),
        ] {
            assert_eq!(parse_time(&bad), None, "{bad}");
        }
    }

    #[test]
    fn lenient_numbers_and_bools() {
        assert_eq!(int_of(&json!("15")), Some(15));
        assert_eq!(int_of(&json!(" 15 ")), Some(15));
        assert_eq!(int_of(&json!(15.0)), Some(15));
        assert_eq!(int_of(&json!("15.5")), None);
        assert_eq!(int_of(&json!("x")), None);
        assert_eq!(bool_of(&json!("True")), Some(true));
        assert_eq!(bool_of(&json!("[true]")), Some(true));
        assert_eq!(bool_of(&json!("[\r\n  false\r\n]")), Some(false));
        assert_eq!(bool_of(&json!("maybe")), None);
    }

    #[test]
    fn name_value_lists_become_maps() {
        let list = json!([
            {"Name": "a", "Value": "1"},
            {"Name": "b", "Value": "{\"x\":[1,2]}"},
            {"Name": "c"},
            {"Value": "no name"},
            "junk"
        ]);
        let m = nv_map(Some(&list)).unwrap();
        assert_eq!(m["a"], json!("1"));
        assert_eq!(m["b"], json!({"x": [1, 2]}));
        assert_eq!(m["c"], Value::Null);
        assert_eq!(m.len(), 3);
        // A list sent as a string.
        let s = json!("[{\"Name\":\"k\",\"Value\":\"v\"}]");
        assert_eq!(nv_map(Some(&s)).unwrap()["k"], json!("v"));
        assert!(nv_map(Some(&json!([]))).is_none());
        assert!(nv_map(Some(&json!(7))).is_none());
        let mods = json!([{"Name": "AccountEnabled", "NewValue": "[true]", "OldValue": "[]"}]);
        let m = modified_map(Some(&mods)).unwrap();
        assert_eq!(m["AccountEnabled"], json!({"new": [true], "old": []}));
        assert_eq!(
            modified_text(Some(&mods), "accountenabled").as_deref(),
            Some("true")
        );
    }
}
