//! The embedded metric format rules a line must follow for CloudWatch Logs to extract its
//! metrics (the "Specification: Embedded metric format" page of the CloudWatch guide), as a
//! checker used by the tests of the writer and by the end-to-end tests on real function output.

use serde_json::Value;

/// Most metrics in one directive.
pub const MAX_METRICS: usize = 100;
/// Most values in one metric's array.
pub const MAX_VALUES: usize = 100;
/// Most dimension keys in one dimension set.
pub const MAX_DIMENSIONS: usize = 30;
/// Largest log event CloudWatch Logs accepts for EMF (the older, smaller of the documented
/// limits, to be safe).
const MAX_LINE_BYTES: usize = 256 * 1024;

/// Units CloudWatch accepts.
const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Why a line is not valid EMF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid EMF: {0}")]
pub struct EmfError(pub String);

fn bad<T>(m: impl Into<String>) -> Result<T, EmfError> {
    Err(EmfError(m.into()))
}

/// Checks one log line against the EMF rules and returns it parsed.
///
/// Checked: the line is one JSON object; `_aws.Timestamp` is a whole number of epoch
/// milliseconds (not seconds); `_aws.CloudWatchMetrics` is a non-empty array of directives,
/// each with a non-empty `Namespace` (not `AWS/…`), `Dimensions` as an array of dimension sets of
/// at most 30 keys, each key a non-empty string member of the root, and 1 to 100 `Metrics` with
/// a unique `Name` and an optional `Unit` from CloudWatch's list and `StorageResolution` 1 or
/// 60; every metric named is a number or a non-empty array of at most 100 numbers at the root
/// and is not also a dimension.
///
/// # Errors
/// [`EmfError`] saying which rule the line breaks.
pub fn validate_line(line: &str) -> Result<Value, EmfError> {
    if line.len() > MAX_LINE_BYTES {
        return bad(format!("line of {} bytes is too large", line.len()));
    }
    let root: Value =
        serde_json::from_str(line).map_err(|e| EmfError(format!("not JSON ({e})")))?;
    let Some(obj) = root.as_object() else {
        return bad("not a JSON object");
    };
    let Some(aws) = obj.get("_aws").and_then(Value::as_object) else {
        return bad("no `_aws` object");
    };
    match aws.get("Timestamp").and_then(Value::as_i64) {
        // 2001-09-09 .. 5138-11-16 in milliseconds: seconds would be far below.
        Some(t) if (1_000_000_000_000..100_000_000_000_000).contains(&t) => {}
        Some(t) => return bad(format!("Timestamp {t} is not epoch milliseconds")),
        None => return bad("`_aws.Timestamp` is not a whole number"),
    }
    let Some(directives) = aws.get("CloudWatchMetrics").and_then(Value::as_array) else {
        return bad("`_aws.CloudWatchMetrics` is not an array");
    };
    if directives.is_empty() {
        return bad("`_aws.CloudWatchMetrics` is empty");
    }
    for d in directives {
        let Some(d) = d.as_object() else {
            return bad("a directive is not an object");
        };
        match d.get("Namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns.len() <= 255 && !ns.starts_with("AWS/") => {}
            _ => return bad("`Namespace` is missing, empty, too long or AWS/…"),
        }
        let Some(sets) = d.get("Dimensions").and_then(Value::as_array) else {
            return bad("`Dimensions` is not an array");
        };
        let mut dimension_keys = Vec::new();
        for set in sets {
            let Some(keys) = set.as_array() else {
                return bad("a dimension set is not an array");
            };
            if keys.len() > MAX_DIMENSIONS {
                return bad(format!("a dimension set has {} keys", keys.len()));
            }
            for k in keys {
                let Some(k) = k.as_str() else {
                    return bad("a dimension key is not a string");
                };
                match obj.get(k).and_then(Value::as_str) {
                    Some(v) if !v.is_empty() && v.len() <= 1024 => dimension_keys.push(k),
                    _ => return bad(format!("dimension `{k}` is not a non-empty string member")),
                }
            }
        }
        let Some(metrics) = d.get("Metrics").and_then(Value::as_array) else {
            return bad("`Metrics` is not an array");
        };
        if metrics.is_empty() || metrics.len() > MAX_METRICS {
            return bad(format!("{} metrics in a directive", metrics.len()));
        }
        let mut names = std::collections::HashSet::new();
        for m in metrics {
            let Some(name) = m.get("Name").and_then(Value::as_str) else {
                return bad("a metric has no `Name`");
            };
            if name.is_empty() || name.len() > 255 || !names.insert(name) {
                return bad(format!(
                    "metric name `{name}` is empty, too long or repeated"
                ));
            }
            if dimension_keys.contains(&name) {
                return bad(format!("`{name}` is both a metric and a dimension"));
            }
            if let Some(u) = m.get("Unit")
                && !u.as_str().is_some_and(|u| UNITS.contains(&u))
            {
                return bad(format!(
                    "metric `{name}` has unit {u}, not a CloudWatch unit"
                ));
            }
            if let Some(r) = m.get("StorageResolution")
                && !matches!(r.as_u64(), Some(1 | 60))
            {
                return bad(format!("metric `{name}` has StorageResolution {r}"));
            }
            match obj.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(vs))
                    if !vs.is_empty()
                        && vs.len() <= MAX_VALUES
                        && vs.iter().all(Value::is_number) => {}
                Some(other) => {
                    return bad(format!(
                        "metric `{name}` is {other}, not a number or an array of 1 to 100 numbers"
                    ));
                }
                None => return bad(format!("metric `{name}` has no value at the root")),
            }
        }
    }
    Ok(root)
}
