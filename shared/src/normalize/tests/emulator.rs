//! Coverage over emulator records of every content type: each event has a known class for its
//! content type, a parsed time and the record whole in `unmapped`.

use std::collections::BTreeMap;

use o365_emulator::data::{RecordContext, make_record, make_users};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const PER_TYPE: usize = 2000;

/// The classes a content type may map to.
fn allowed(ct: ContentType) -> &'static [u64] {
    match ct {
        ContentType::AzureActiveDirectory => &[3001, 3002, 3004, 3005, 3006],
        ContentType::Exchange => &[4009, 6003],
        ContentType::SharePoint => &[6006],
        ContentType::General => &[6003],
        ContentType::DlpAll => &[2004],
    }
}

/// The class the emulator's Entra operations must map to.
fn entra_class(op: &str) -> u64 {
    match op {
        "UserLoggedIn" | "UserLoginFailed" => 3002,
        "Add user." | "Update user." | "Delete user." | "Reset user password." => 3001,
        "Add member to group." => 3006,
        "Add member to role."
        | "Consent to application."
        | "Add app role assignment to service principal." => 3005,
        "Add service principal." => 3004,
        other => panic!("unexpected emulator operation {other}"),
    }
}

#[test]
fn emulator_records_of_every_content_type() {
    let mut rng = StdRng::seed_from_u64(20260302);
    let users = make_users(&mut rng, "contoso.onmicrosoft.com", 80);
    let base = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
    for ct in ContentType::ALL {
        let c = ctx(ct);
        let mut classes: BTreeMap<u64, usize> = BTreeMap::new();
        for i in 0..PER_TYPE {
            let created = base + chrono::Duration::seconds(i as i64 * 13);
            let rctx = RecordContext {
                tenant_id: TENANT,
                tenant_domain: "contoso.onmicrosoft.com",
                users: &users,
                creation_time: created,
                id: uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
            };
            let record = make_record(&mut rng, ct.as_str(), &rctx);
            let raw = record.clone();
            let n = normalize(record, &c);
            let e = &n.event;
            let class = e["class_uid"].as_u64().expect("class_uid");
            assert_eq!(u64::from(n.class_uid), class);
            assert!(
                allowed(ct).contains(&class),
                "{ct}: class {class} for {raw}"
            );
            *classes.entry(class).or_default() += 1;
            let activity = e["activity_id"].as_u64().expect("activity_id");
            assert_eq!(e["type_uid"], json!(class * 100 + activity));
            assert_eq!(e["category_uid"], json!(class / 1000));
            // A parsed time: the record's own CreationTime.
            assert_eq!(n.event_time, Some(created), "{raw}");
            assert_eq!(e["time"], json!(created.timestamp_millis()));
            assert_eq!(e["metadata"]["uid"], raw["Id"]);
            assert_eq!(n.record_id.as_deref(), raw["Id"].as_str());
            assert_eq!(e["metadata"]["version"], json!(OCSF_VERSION));
            assert_eq!(e["metadata"]["product"]["feature"]["name"], raw["Workload"]);
            assert_eq!(e["metadata"]["tenant_uid"], json!(TENANT));
            assert_eq!(e["actor"]["user"]["name"], raw["UserId"]);
            assert!(e["status_id"].is_u64());
            // Every non-empty ClientIP the emulator writes is a valid address.
            if raw["ClientIP"].as_str().is_some_and(|s| !s.is_empty()) {
                let ip = e["src_endpoint"]["ip"].as_str().expect("src_endpoint.ip");
                assert!(ip.parse::<std::net::IpAddr>().is_ok());
                assert!(
                    !ip.starts_with("::ffff:"),
                    "mapped address not unwrapped: {ip}"
                );
            }
            assert_eq!(e["unmapped"], raw);
            let op = raw["Operation"].as_str().unwrap_or("");
            match ct {
                ContentType::AzureActiveDirectory => {
                    assert_eq!(class, entra_class(op), "{op}");
                    if op == "UserLoginFailed" {
                        assert_eq!(e["status_id"], json!(2), "{raw}");
                    }
                    if op == "UserLoggedIn" {
                        assert_eq!(e["status_id"], json!(1), "{raw}");
                    }
                }
                ContentType::Exchange => {
                    assert_ne!(activity, 99, "{op}");
                    if op == "Send" || op == "SendAs" {
                        assert_eq!(class, 4009);
                    }
                }
                ContentType::DlpAll => {
                    assert!(e["finding_info"]["uid"].is_string());
                    assert!(e["o365"]["dlp"]["policies"].is_array());
                }
                ContentType::SharePoint => {
                    assert!(e["file"]["name"].is_string(), "{raw}");
                }
                ContentType::General => {
                    assert_eq!(e["api"]["operation"], raw["Operation"]);
                    assert_eq!(e["api"]["service"]["name"], raw["Workload"]);
                }
            }
        }
        // The emulator's mix reaches more than one class where it should.
        assert!(!classes.is_empty());
        if ct == ContentType::AzureActiveDirectory {
            assert_eq!(classes.len(), 5, "{classes:?}");
        }
    }
}
