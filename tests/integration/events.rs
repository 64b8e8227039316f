//! Every sample payload in events/ parses as the event its function receives.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use shared::model::FetchJob;

fn read(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn every_sample_event_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut seen = 0;
    for function in ["lister", "fetcher", "subscriptions", "users-sync"] {
        for entry in std::fs::read_dir(dir.join(function)).expect("events folder") {
            let path = entry.unwrap().path();
            let rel = format!("{function}/{}", path.file_name().unwrap().to_string_lossy());
            let text = read(&rel);
            match function {
                "fetcher" => {
                    let e: SqsEvent =
                        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
                    assert!(!e.records.is_empty(), "{rel}: no records");
                }
                _ => {
                    let _: EventBridgeEvent<serde_json::Value> =
                        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
                }
            }
            seen += 1;
        }
    }
    assert!(seen >= 5, "sample events missing");
}

#[test]
fn the_mixed_batch_holds_one_valid_job_and_the_documented_bad_ones() {
    let e: SqsEvent = serde_json::from_str(&read("fetcher/sqs-mixed-batch.json")).unwrap();
    let parsed: Vec<bool> = e
        .records
        .iter()
        .map(|r| FetchJob::parse(r.body.as_deref().unwrap_or("")).is_ok())
        .collect();
    assert_eq!(
        parsed,
        [true, false, true, true],
        "the foreign-host job is well-formed; it is refused later"
    );
    let one: SqsEvent = serde_json::from_str(&read("fetcher/sqs-one-job.json")).unwrap();
    assert!(FetchJob::parse(one.records[0].body.as_deref().unwrap()).is_ok());
}
