use std::collections::BTreeMap;

use chrono::{Duration, TimeZone, Utc};
use serde_json::{Value, json};

use super::record::{api_calls, api_delta, certificates, fetcher_batch, lister_run};
use super::*;
use crate::api::ApiStats;
use crate::app::clients::ClientSnapshot;
use crate::app::fetcher::{BatchReport, JobOutcome, QueueMessage};
use crate::model::{ContentBlob, FetchJob, TenantId};

const T: &str = "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d";

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

fn written(m: &mut Metrics) -> Vec<Value> {
    let mut out = Vec::new();
    m.write_to(&mut out, at()).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| validate_line(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn a_line_has_the_directive_the_dimensions_and_the_values_at_the_root() {
    let mut m = Metrics::new("fetcher");
    let feed = Dims::feed(T, ContentType::Exchange);
    m.count(Metric::RecordsWritten, &feed, 120);
    m.count(Metric::RecordsWritten, &feed, 3);
    m.count(Metric::BytesWritten, &feed, 4096);
    m.observe(Metric::IngestionLagSeconds, &feed, 1.5);
    m.observe(Metric::IngestionLagSeconds, &feed, 30.0);
    m.count(Metric::ApiCalls, &Dims::tenant(T).with(STATUS, "429"), 2);
    let lines = written(&mut m);
    assert!(m.is_empty(), "written metrics are forgotten");
    assert_eq!(lines.len(), 2, "one line per dimension set");
    let feed_line = lines
        .iter()
        .find(|l| l.get("ContentType").is_some())
        .unwrap();
    assert_eq!(
        feed_line["_aws"],
        json!({"Timestamp": at().timestamp_millis(), "CloudWatchMetrics": [{
        "Namespace": "O365Collector",
        "Dimensions": [["TenantId", "ContentType"]],
        "Metrics": [
            {"Name": "RecordsWritten", "Unit": "Count"},
            {"Name": "BytesWritten", "Unit": "Bytes"},
            {"Name": "IngestionLagSeconds", "Unit": "Seconds"},
        ]}]})
    );
    assert_eq!(feed_line["TenantId"], T);
    assert_eq!(feed_line["ContentType"], "Audit.Exchange");
    assert_eq!(feed_line["Function"], "fetcher");
    assert_eq!(
        feed_line["RecordsWritten"], 123,
        "counters are summed, as integers"
    );
    assert_eq!(feed_line["IngestionLagSeconds"], json!([1.5, 30]));
    let api = lines.iter().find(|l| l.get("Status").is_some()).unwrap();
    assert_eq!(
        api["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["TenantId", "Status"]])
    );
    assert_eq!(api["ApiCalls"], 2);
}

#[test]
fn more_than_100_observations_continue_on_further_lines_and_counters_are_not_repeated() {
    let mut m = Metrics::new("fetcher");
    let feed = Dims::feed(T, ContentType::General);
    for i in 0..250 {
        m.observe(Metric::IngestionLagSeconds, &feed, f64::from(i));
    }
    m.count(Metric::RecordsWritten, &feed, 7);
    m.observe(Metric::IngestionLagSeconds, &feed, f64::NAN);
    let lines = written(&mut m);
    assert_eq!(lines.len(), 3);
    let values: usize = lines
        .iter()
        .map(|l| match &l["IngestionLagSeconds"] {
            Value::Array(a) => a.len(),
            Value::Number(_) => 1,
            _ => 0,
        })
        .sum();
    assert_eq!(values, 250, "every observation once, NaN dropped");
    let records: Vec<&Value> = lines
        .iter()
        .filter_map(|l| l.get("RecordsWritten"))
        .collect();
    assert_eq!(records, [&json!(7)]);
}

#[test]
fn every_metric_has_a_cloudwatch_unit_and_a_unique_name() {
    let mut m = Metrics::new("all");
    for metric in Metric::ALL {
        m.count(metric, &Dims::none(), 1);
    }
    let lines = written(&mut m);
    assert_eq!(lines.len(), 1);
    let defs = lines[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(defs, Metric::ALL.len());
    assert_eq!(
        lines[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([[]])
    );
}

fn good() -> Value {
    json!({"_aws": {"Timestamp": 1_795_000_000_000_i64, "CloudWatchMetrics": [{
        "Namespace": "O365Collector", "Dimensions": [["TenantId", "ContentType"]],
        "Metrics": [{"Name": "RecordsWritten", "Unit": "Count"}, {"Name": "IngestionLagSeconds", "Unit": "Seconds"}]}]},
        "TenantId": T, "ContentType": "Audit.Exchange", "RecordsWritten": 3, "IngestionLagSeconds": [1, 2.5]})
}

#[test]
fn the_checker_accepts_a_good_line_and_names_the_rule_each_bad_one_breaks() {
    validate_line(&good().to_string()).unwrap();
    type Breaker = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Breaker)> = vec![
        ("not JSON", Box::new(|_| {})),
        (
            "no `_aws`",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("_aws");
            }),
        ),
        (
            "epoch milliseconds",
            Box::new(|v| v["_aws"]["Timestamp"] = json!(1_795_000_000)),
        ),
        (
            "Timestamp",
            Box::new(|v| v["_aws"]["Timestamp"] = json!("2026-11-23")),
        ),
        (
            "Namespace",
            Box::new(|v| {
                v["_aws"]["CloudWatchMetrics"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("Namespace");
            }),
        ),
        (
            "Namespace",
            Box::new(|v| v["_aws"]["CloudWatchMetrics"][0]["Namespace"] = json!("AWS/Lambda")),
        ),
        (
            "is empty",
            Box::new(|v| v["_aws"]["CloudWatchMetrics"] = json!([])),
        ),
        (
            "dimension `ContentType`",
            Box::new(|v| v["ContentType"] = json!(5)),
        ),
        (
            "dimension `TenantId`",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("TenantId");
            }),
        ),
        (
            "keys",
            Box::new(|v| {
                let keys: Vec<String> = (0..31).map(|i| format!("D{i}")).collect();
                for k in &keys {
                    v[k.as_str()] = json!("x");
                }
                v["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([keys]);
            }),
        ),
        (
            "not a number",
            Box::new(|v| v["RecordsWritten"] = json!("3")),
        ),
        (
            "no value at the root",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("RecordsWritten");
            }),
        ),
        (
            "array of 1 to 100",
            Box::new(|v| v["IngestionLagSeconds"] = json!((0..101).collect::<Vec<_>>())),
        ),
        (
            "array of 1 to 100",
            Box::new(|v| v["IngestionLagSeconds"] = json!([1, "2"])),
        ),
        (
            "not a CloudWatch unit",
            Box::new(|v| {
                v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Records");
            }),
        ),
        (
            "repeated",
            Box::new(|v| {
                v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Name"] = json!("RecordsWritten");
            }),
        ),
        (
            "StorageResolution",
            Box::new(|v| {
                v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["StorageResolution"] = json!(5);
            }),
        ),
        (
            "both a metric and a dimension",
            Box::new(|v| {
                v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] = json!("TenantId");
            }),
        ),
        (
            "metrics in a directive",
            Box::new(|v| v["_aws"]["CloudWatchMetrics"][0]["Metrics"] = json!([])),
        ),
    ];
    for (i, (rule, break_it)) in cases.iter().enumerate() {
        let line = if i == 0 {
            "{\"_aws\": ".to_owned()
        } else {
            let mut v = good();
            break_it(&mut v);
            v.to_string()
        };
        let e = validate_line(&line).expect_err(rule);
        assert!(
            e.to_string().contains(rule),
            "case {i}: {e} (wanted {rule})"
        );
    }
}

fn message(id: &str, content_type: ContentType) -> QueueMessage {
    let blob = ContentBlob {
        content_type,
        content_id: format!("c-{id}"),
        content_uri: "https://manage.office.com/x".into(),
        content_created: at(),
        content_expiration: at(),
    };
    QueueMessage {
        id: id.into(),
        body: FetchJob::new(TenantId::parse(T).unwrap(), &blob, at()).to_json(),
        receive_count: 1,
    }
}

#[test]
fn a_fetcher_batch_is_counted_per_tenant_and_content_type() {
    let messages = vec![
        message("m1", ContentType::Exchange),
        message("m2", ContentType::Exchange),
        message("m3", ContentType::SharePoint),
        message("m4", ContentType::SharePoint),
        QueueMessage {
            id: "m5".into(),
            body: "{}".into(),
            receive_count: 1,
        },
    ];
    let report = BatchReport {
        outcomes: vec![
            (
                "m1".into(),
                JobOutcome::Written {
                    content_id: "c-m1".into(),
                    keys: vec![],
                    records: 10,
                    duplicates: 1,
                    cross_blob_duplicates: 2,
                    quarantined: 0,
                    bytes: 500,
                    lag: LagSample::from_lags(vec![1000, 3000]),
                },
            ),
            (
                "m2".into(),
                JobOutcome::Written {
                    content_id: "c-m2".into(),
                    keys: vec![],
                    records: 5,
                    duplicates: 0,
                    cross_blob_duplicates: 0,
                    quarantined: 0,
                    bytes: 100,
                    lag: LagSample::from_lags(vec![500]),
                },
            ),
            (
                "m3".into(),
                JobOutcome::Expired {
                    content_id: "c-m3".into(),
                },
            ),
            ("m4".into(), JobOutcome::Retry { reason: "x".into() }),
            (
                "m5".into(),
                JobOutcome::DeadLettered {
                    reason: "malformed".into(),
                },
            ),
        ],
    };
    let mut m = Metrics::new("fetcher");
    fetcher_batch(&mut m, &messages, &report);
    let lines = written(&mut m);
    let line = |ct: Option<&str>| {
        lines
            .iter()
            .find(|l| l.get("ContentType").and_then(Value::as_str) == ct)
            .unwrap()
    };
    let ex = line(Some("Audit.Exchange"));
    assert_eq!(
        (
            &ex["RecordsWritten"],
            &ex["BlobsWritten"],
            &ex["BytesWritten"],
            &ex["DuplicatesDropped"]
        ),
        (&json!(15), &json!(2), &json!(600), &json!(3))
    );
    assert_eq!(ex["IngestionLagSeconds"], json!([1, 3, 0.5]));
    let sp = line(Some("Audit.SharePoint"));
    assert_eq!(
        (&sp["ExpiredBlobs"], &sp["JobsRetried"]),
        (&json!(1), &json!(1))
    );
    assert!(sp.get("RecordsWritten").is_none());
    assert_eq!(
        line(None)["DeadLettered"],
        1,
        "a malformed job, no dimensions"
    );
}

#[test]
fn api_calls_are_the_difference_of_two_snapshots_and_certificates_report_days_left() {
    let tenant = TenantId::parse(T).unwrap();
    let stats = |calls: u64, ok: u64, throttled: u64, retries: u64| ApiStats {
        calls,
        by_status: [(200, ok), (403, throttled)].into_iter().collect(),
        retries,
        throttled,
        ..ApiStats::default()
    };
    let snap = |s: ApiStats, days: Option<i64>| {
        BTreeMap::from([(
            tenant.clone(),
            ClientSnapshot {
                stats: s,
                certificate_not_after: days.map(|d| at() + Duration::days(d)),
            },
        )])
    };
    let before = snap(stats(10, 8, 2, 2), Some(20));
    let after = snap(stats(25, 20, 5, 6), Some(20));
    let mut m = Metrics::new("lister");
    api_calls(&mut m, &before, &after);
    api_calls(&mut m, &after, &after); // no call since: nothing reported
    let warned = certificates(&mut m, &after, at());
    assert_eq!(
        warned,
        std::slice::from_ref(&tenant),
        "20 days left is within the warning"
    );
    let lines = written(&mut m);
    let status = |s: &str| {
        lines
            .iter()
            .find(|l| l.get("Status").and_then(Value::as_str) == Some(s))
            .map(|l| l["ApiCalls"].clone())
    };
    assert_eq!(status("200"), Some(json!(12)));
    assert_eq!(status("403"), Some(json!(3)));
    let tenant_line = lines.iter().find(|l| l.get("Status").is_none()).unwrap();
    assert_eq!(tenant_line["Throttles"], 3);
    assert_eq!(tenant_line["Retries"], 4);
    assert_eq!(tenant_line["CertificateDaysLeft"], 20);
    // A client rebuilt since (its counters restarted) counts from zero.
    let d = api_delta(&stats(100, 100, 0, 0), &stats(3, 3, 0, 0));
    assert_eq!((d.calls, d.by_status.get(&200).copied()), (3, Some(3)));
}

#[test]
fn a_lister_run_reports_every_feed_with_zeros_included() {
    let report = crate::app::lister::ListerReport {
        feeds: vec![crate::app::lister::FeedReport {
            windows: 1,
            listed: 4,
            enqueued: 2,
            redriven: 1,
            known: 1,
            ..crate::app::lister::FeedReport::new(T.into(), ContentType::DlpAll)
        }],
        sweeps: vec![crate::app::lister::SweepReport {
            tenant: T.into(),
            open_failed: 2,
            redriven: 1,
            expired: 0,
            oldest_open_secs: Some(7200),
            error: None,
        }],
        tenant_errors: vec!["tenant x: no secret".into()],
        dead_letters: crate::app::lister::DeadLetterReport::default(),
    };
    let mut m = Metrics::new("lister");
    lister_run(&mut m, &report);
    let lines = written(&mut m);
    let feed = lines
        .iter()
        .find(|l| l.get("ContentType").is_some())
        .unwrap();
    assert_eq!(
        (
            &feed["BlobsListed"],
            &feed["JobsEnqueued"],
            &feed["FeedFailures"]
        ),
        (&json!(4), &json!(3), &json!(0))
    );
    assert!(lines.iter().any(|l| l["TenantSetupFailures"] == 1));
    let sweep = lines
        .iter()
        .find(|l| l.get("SweepRedriven").is_some())
        .unwrap();
    assert_eq!(sweep["SweepRedriven"], json!(1));
    assert_eq!(sweep["OldestOpenEntryAgeSeconds"], json!(7200));
}

#[test]
fn a_directory_sync_reports_users_or_a_failure() {
    let mut m = Metrics::new("users-sync");
    super::record::directory_sync(&mut m, T, Some(42));
    super::record::directory_sync(&mut m, "9b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f", None);
    let lines = written(&mut m);
    let ok = lines.iter().find(|l| l["TenantId"] == T).unwrap();
    assert_eq!(
        (&ok["DirectoryUsers"], &ok["DirectorySyncFailures"]),
        (&json!(42), &json!(0))
    );
    let failed = lines.iter().find(|l| l["TenantId"] != T).unwrap();
    assert_eq!(failed["DirectorySyncFailures"], 1);
    assert!(failed.get("DirectoryUsers").is_none());
}

#[test]
fn coarser_detail_sums_over_content_types_and_tenants_but_keeps_the_alarm_metrics() {
    use crate::model::ContentType;
    let a = "11111111-2222-3333-4444-555555555555";
    let b = "66666666-7777-8888-9999-000000000000";
    let record = |m: &mut Metrics| {
        for (t, ct, n) in [
            (a, ContentType::Exchange, 3),
            (a, ContentType::SharePoint, 4),
            (b, ContentType::Exchange, 5),
        ] {
            m.count(Metric::RecordsWritten, &Dims::feed(t, ct), n);
            m.count(Metric::BlobsWritten, &Dims::feed(t, ct), 1);
            m.observe(
                Metric::IngestionLagSeconds,
                &Dims::feed(t, ct),
                f64::from(n as u32),
            );
        }
        m.observe(Metric::CertificateDaysLeft, &Dims::tenant(a), 40.0);
    };
    let lines = |d: Detail| -> Vec<serde_json::Value> {
        let mut m = Metrics::new("fetcher").with_detail(d);
        record(&mut m);
        m.lines(chrono::Utc::now())
            .iter()
            .map(|l| {
                validate_line(l).unwrap();
                serde_json::from_str(l).unwrap()
            })
            .collect()
    };
    let series = |ls: &[serde_json::Value],
                  metric: &str|
     -> Vec<(Option<String>, Option<String>, serde_json::Value)> {
        ls.iter()
            .filter(|l| l.get(metric).is_some())
            .map(|l| {
                (
                    l["TenantId"].as_str().map(str::to_owned),
                    l["ContentType"].as_str().map(str::to_owned),
                    l[metric].clone(),
                )
            })
            .collect()
    };
    for d in [Detail::Feed, Detail::Tenant, Detail::Deployment] {
        let ls = lines(d);
        // The "no records" alarms' metric is always per tenant and content type.
        assert_eq!(series(&ls, "RecordsWritten").len(), 3, "{d:?}");
        let certs = series(&ls, "CertificateDaysLeft");
        assert_eq!(certs.len(), 1);
        assert_eq!(
            certs[0].0.as_deref(),
            Some(a),
            "{d:?}: the certificate alarm's metric keeps its tenant"
        );
    }
    let feed = lines(Detail::Feed);
    assert_eq!(series(&feed, "BlobsWritten").len(), 3);
    let tenant = lines(Detail::Tenant);
    let blobs = series(&tenant, "BlobsWritten");
    assert_eq!(blobs.len(), 2, "one per tenant: {blobs:?}");
    assert!(blobs.iter().all(|(_, ct, _)| ct.is_none()));
    let of_a = blobs
        .iter()
        .find(|(t, _, _)| t.as_deref() == Some(a))
        .unwrap();
    assert_eq!(of_a.2, serde_json::json!(2), "summed over content types");
    let deployment = lines(Detail::Deployment);
    let blobs = series(&deployment, "BlobsWritten");
    assert_eq!(blobs, vec![(None, None, serde_json::json!(3))]);
    let lag = series(&deployment, "IngestionLagSeconds");
    assert_eq!(lag.len(), 1);
    assert_eq!(
        lag[0].2.as_array().map(Vec::len),
        Some(3),
        "every observation kept"
    );
    let mut off = Metrics::new("fetcher").with_detail(Detail::Off);
    record(&mut off);
    assert!(off.is_empty() && off.lines(chrono::Utc::now()).is_empty());
    assert_eq!(Detail::parse("tenant"), Some(Detail::Tenant));
    assert_eq!(Detail::parse("off"), Some(Detail::Off));
    assert_eq!(Detail::parse("everything"), None);
}
