//! Tests of the normalizer: golden records per class, IP forms, time, status rules, emulator
//! coverage and a property test that nothing panics.

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::*;

mod emulator;
mod golden;
mod props;

const TENANT: &str = "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d";

/// A context for `content_type` with fixed times.
fn ctx(content_type: ContentType) -> Context<'static> {
    Context {
        tenant_id: TENANT,
        content_type,
        content_id: "20260302120512345000001$20260302121230456000002$audit_test$Audit_Test$emea0001",
        content_created: Utc.with_ymd_and_hms(2026, 3, 2, 12, 12, 30).unwrap(),
        received_at: Utc.with_ymd_and_hms(2026, 3, 2, 12, 20, 0).unwrap(),
    }
}

/// Normalizes a record given as JSON text.
fn norm(content_type: ContentType, record: &str) -> Normalized {
    let v: Value = serde_json::from_str(record).expect("test record is JSON");
    normalize(v, &ctx(content_type))
}

/// Epoch ms of a UTC date-time.
fn ms_of(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .unwrap()
        .timestamp_millis()
}

/// Asserts the head every event has: class, type_uid = class*100 + activity, metadata basics.
fn assert_head(e: &Value, class_uid: u64, activity_id: u64) {
    assert_eq!(e["class_uid"], json!(class_uid), "class_uid in {e}");
    assert_eq!(e["activity_id"], json!(activity_id), "activity_id");
    assert_eq!(e["type_uid"], json!(class_uid * 100 + activity_id), "type_uid");
    assert_eq!(e["category_uid"], json!(class_uid / 1000), "category_uid");
    assert_eq!(e["metadata"]["version"], json!(OCSF_VERSION));
    assert_eq!(e["metadata"]["product"]["name"], json!("Microsoft 365"));
    assert_eq!(e["metadata"]["product"]["vendor_name"], json!("Microsoft"));
    assert!(e["severity_id"].is_u64());
    assert!(e["time"].is_i64());
}

#[test]
fn size_report() {
    // Prints how the output compares with the input (run with --nocapture).
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let users = o365_emulator::data::make_users(&mut rng, "contoso.onmicrosoft.com", 50);
    for ct in ContentType::ALL {
        let (mut inb, mut outb, mut unmapped) = (0usize, 0usize, 0usize);
        let mut keys: std::collections::BTreeMap<String, usize> = Default::default();
        for i in 0..500 {
            let rctx = o365_emulator::data::RecordContext {
                tenant_id: TENANT,
                tenant_domain: "contoso.onmicrosoft.com",
                users: &users,
                creation_time: Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()
                    + chrono::Duration::seconds(i),
                id: uuid::Builder::from_random_bytes(rand::Rng::random(&mut rng)).into_uuid(),
            };
            let r = o365_emulator::data::make_record(&mut rng, ct.as_str(), &rctx);
            inb += serde_json::to_vec(&r).unwrap().len();
            let n = normalize(r, &ctx(ct));
            outb += serde_json::to_vec(&n.event).unwrap().len();
            for (k, v) in n.event.as_object().unwrap() {
                let l = serde_json::to_vec(v).unwrap().len() + k.len() + 4;
                if k == "unmapped" {
                    unmapped += l;
                } else {
                    *keys.entry(k.clone()).or_default() += l;
                }
            }
        }
        println!(
            "{ct}: in {} out {} (x{:.2}) unmapped {}",
            inb / 500,
            outb / 500,
            outb as f64 / inb as f64,
            unmapped / 500
        );
        let mut ks: Vec<_> = keys.into_iter().collect();
        ks.sort_by_key(|(_, v)| std::cmp::Reverse(*v));
        for (k, v) in ks.iter().take(12) {
            print!("{k}={} ", v / 500);
        }
        println!();
    }
}
