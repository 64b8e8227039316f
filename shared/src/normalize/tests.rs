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
    assert_eq!(
        e["type_uid"],
        json!(class_uid * 100 + activity_id),
        "type_uid"
    );
    assert_eq!(e["category_uid"], json!(class_uid / 1000), "category_uid");
    assert_eq!(e["metadata"]["version"], json!(OCSF_VERSION));
    assert_eq!(e["metadata"]["product"]["name"], json!("Microsoft 365"));
    assert_eq!(e["metadata"]["product"]["vendor_name"], json!("Microsoft"));
    assert!(e["severity_id"].is_u64());
    assert!(e["time"].is_i64());
}

#[test]
#[ignore = "report"]
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

/// The CLI's `bench normalize` in miniature (run in release with --ignored --nocapture).
#[test]
#[ignore = "benchmark"]
fn bench_ratio() {
    use std::io::Write;
    use std::time::Instant;

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let users = o365_emulator::data::make_users(&mut rng, "contoso.onmicrosoft.com", 50);
    let mut blobs = Vec::new();
    for ct in ContentType::ALL {
        for _ in 0..20 {
            let mut blob = Vec::new();
            for i in 0..100 {
                let rctx = o365_emulator::data::RecordContext {
                    tenant_id: TENANT,
                    tenant_domain: "contoso.onmicrosoft.com",
                    users: &users,
                    creation_time: Utc::now() - chrono::Duration::seconds(i),
                    id: uuid::Builder::from_random_bytes(rand::Rng::random(&mut rng)).into_uuid(),
                };
                blob.push(o365_emulator::data::make_record(
                    &mut rng,
                    ct.as_str(),
                    &rctx,
                ));
            }
            blobs.push((ct, serde_json::to_vec(&blob).unwrap()));
        }
    }
    for gzip in [false, true] {
        let sink = || -> Box<dyn Write> {
            if gzip {
                Box::new(GzEncoder::new(std::io::sink(), Compression::default()))
            } else {
                Box::new(std::io::sink())
            }
        };
        let (mut best_ref, mut best_norm) = (f64::MAX, f64::MAX);
        for _ in 0..3 {
            let t = Instant::now();
            let mut w = sink();
            for (_, blob) in &blobs {
                let records: Vec<Value> = serde_json::from_slice(blob).unwrap();
                for r in &records {
                    serde_json::to_writer(&mut w, r).unwrap();
                    w.write_all(b"\n").unwrap();
                }
            }
            w.flush().unwrap();
            drop(w);
            best_ref = best_ref.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let mut w = sink();
            for (ct, blob) in &blobs {
                let records: Vec<Value> = serde_json::from_slice(blob).unwrap();
                let mut c = ctx(*ct);
                c.content_id = "bench";
                for r in records {
                    let n = normalize(r, &c);
                    serde_json::to_writer(&mut w, &n.event).unwrap();
                    w.write_all(b"\n").unwrap();
                }
            }
            w.flush().unwrap();
            drop(w);
            best_norm = best_norm.min(t.elapsed().as_secs_f64());
        }
        println!("gzip {gzip}: ratio {:.0}%", best_ref / best_norm * 100.0);
    }
}

/// Where the time goes: parse, normalize, serialize (run in release with --ignored).
#[test]
#[ignore = "benchmark"]
fn bench_phases() {
    use std::time::Instant;

    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let users = o365_emulator::data::make_users(&mut rng, "contoso.onmicrosoft.com", 50);
    for ct in ContentType::ALL {
        let mut blob = Vec::new();
        for i in 0..4000 {
            let rctx = o365_emulator::data::RecordContext {
                tenant_id: TENANT,
                tenant_domain: "contoso.onmicrosoft.com",
                users: &users,
                creation_time: Utc::now() - chrono::Duration::seconds(i),
                id: uuid::Builder::from_random_bytes(rand::Rng::random(&mut rng)).into_uuid(),
            };
            blob.push(o365_emulator::data::make_record(
                &mut rng,
                ct.as_str(),
                &rctx,
            ));
        }
        let bytes = serde_json::to_vec(&blob).unwrap();
        let t = Instant::now();
        let records: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
        let parse = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut n = 0;
        for r in &records {
            n += serde_json::to_vec(r).unwrap().len();
        }
        let ser_raw = t.elapsed().as_secs_f64();
        let c = ctx(ct);
        let t = Instant::now();
        let events: Vec<Normalized> = records.into_iter().map(|r| normalize(r, &c)).collect();
        let norm = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut m = 0;
        for e in &events {
            m += serde_json::to_vec(&e.event).unwrap().len();
        }
        let ser = t.elapsed().as_secs_f64();
        let t = Instant::now();
        drop(events);
        let dr = t.elapsed().as_secs_f64();
        println!(
            "{ct}: parse {:.1}ms ser_raw {:.1}ms normalize {:.1}ms ser_event {:.1}ms drop {:.1}ms bytes {n}->{m}",
            parse * 1e3,
            ser_raw * 1e3,
            norm * 1e3,
            ser * 1e3,
            dr * 1e3
        );
    }
}
