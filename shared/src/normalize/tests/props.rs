//! Property tests: arbitrary JSON and arbitrary text never panic and always give an event.

use proptest::prelude::*;

use super::*;

/// Arbitrary JSON values, nested.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys the normalizer reads, so that arbitrary values land where they matter.
const KEYS: &[&str] = &[
    "CreationTime",
    "Id",
    "Operation",
    "OrganizationId",
    "RecordType",
    "ResultStatus",
    "UserKey",
    "UserType",
    "Workload",
    "ClientIP",
    "ClientIPAddress",
    "ActorIpAddress",
    "ObjectId",
    "UserId",
    "ExtendedProperties",
    "ModifiedProperties",
    "Parameters",
    "DeviceProperties",
    "OperationProperties",
    "Actor",
    "Target",
    "ErrorCode",
    "LogonError",
    "LoginStatus",
    "LogonType",
    "MailboxOwnerUPN",
    "Item",
    "Folders",
    "AffectedItems",
    "SiteUrl",
    "SourceFileName",
    "ItemType",
    "PolicyDetails",
    "ExchangeMetaData",
    "SharePointMetaData",
    "EndpointMetaData",
    "ExceptionInfo",
    "DestinationFileName",
    "Folder",
    "recipientList",
];

/// Record-like objects: known keys with arbitrary values, and plausible values for the
/// dispatch keys.
fn record_like() -> impl Strategy<Value = Value> {
    let op = prop_oneof![
        Just("UserLoggedIn".to_string()),
        Just("UserLoginFailed".to_string()),
        Just("Add member to role.".to_string()),
        Just("Consent to application.".to_string()),
        Just("Add member to group.".to_string()),
        Just("New-InboxRule".to_string()),
        Just("MailItemsAccessed".to_string()),
        Just("SendAs".to_string()),
        Just("FileCopied".to_string()),
        Just("DlpRuleMatch".to_string()),
        Just("DlpRuleUndo".to_string()),
        ".{0,20}",
    ];
    let rt = prop_oneof![
        prop::sample::select(vec![1i64, 2, 6, 8, 9, 13, 14, 15, 18, 25, 50, 63, 261, 999])
            .prop_map(Value::from),
        any::<i64>().prop_map(|n| Value::String(n.to_string())),
        any_json(),
    ];
    (
        prop::collection::vec((prop::sample::select(KEYS), any_json()), 0..16),
        op,
        rt,
        prop::sample::select(vec![
            "AzureActiveDirectory",
            "Exchange",
            "SharePoint",
            "OneDrive",
            "MicrosoftTeams",
            "",
        ]),
    )
        .prop_map(|(pairs, op, rt, workload)| {
            let mut m = serde_json::Map::new();
            m.insert("Operation".into(), Value::String(op));
            m.insert("RecordType".into(), rt);
            m.insert("Workload".into(), Value::String(workload.into()));
            for (k, v) in pairs {
                m.insert(k.to_string(), v);
            }
            Value::Object(m)
        })
}

/// What every event must satisfy.
fn check(n: &Normalized, input: Option<&Value>) {
    let e = n.event.as_object().expect("event is an object");
    let class = e["class_uid"].as_u64().expect("class_uid");
    assert_eq!(u64::from(n.class_uid), class);
    assert!([2004, 3001, 3002, 3004, 3005, 3006, 4009, 6003, 6006].contains(&class));
    let activity = e["activity_id"].as_u64().expect("activity_id");
    assert_eq!(e["type_uid"].as_u64(), Some(class * 100 + activity));
    assert!(e["time"].is_i64(), "time");
    let uid = &e["metadata"]["uid"];
    assert!(uid.is_null() || uid.is_string(), "metadata.uid");
    assert_eq!(e["metadata"]["version"], json!(OCSF_VERSION));
    assert!(e.contains_key("o365"));
    if let Some(v @ Value::Object(_)) = input {
        assert_eq!(&e["unmapped"], v);
    }
    // Serializes.
    serde_json::to_vec(&n.event).expect("serializes");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn prop_any_json_never_panics(v in any_json(), ct in prop::sample::select(ContentType::ALL.to_vec())) {
        let n = normalize(v.clone(), &ctx(ct));
        check(&n, Some(&v));
    }

    #[test]
    fn prop_record_like_never_panics(v in record_like(), ct in prop::sample::select(ContentType::ALL.to_vec())) {
        let n = normalize(v.clone(), &ctx(ct));
        check(&n, Some(&v));
    }

    #[test]
    fn prop_unparsable_never_panics(raw in ".{0,200}", err in ".{0,50}") {
        let n = normalize_unparsable(&raw, &err, &ctx(ContentType::General));
        check(&n, None);
        prop_assert_eq!(&n.event["raw_data"], &json!(raw));
    }

    #[test]
    fn prop_parse_ip_never_panics(s in ".{0,60}") {
        let _ = parse_ip(&s);
    }

    #[test]
    fn prop_parse_ip_round_trips(a in any::<[u8; 4]>(), b in any::<[u16; 8]>(), port in any::<u16>()) {
        let v4 = std::net::Ipv4Addr::from(a);
        prop_assert_eq!(parse_ip(&v4.to_string()), Some((IpAddr::V4(v4), None)));
        prop_assert_eq!(parse_ip(&format!("{v4}:{port}")), Some((IpAddr::V4(v4), Some(port))));
        prop_assert_eq!(parse_ip(&format!("::ffff:{v4}")), Some((IpAddr::V4(v4), None)));
        let v6 = std::net::Ipv6Addr::from(b);
        let want = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
        prop_assert_eq!(parse_ip(&v6.to_string()), Some((want, None)));
        prop_assert_eq!(parse_ip(&format!("[{v6}]:{port}")), Some((want, Some(port))));
    }
}
