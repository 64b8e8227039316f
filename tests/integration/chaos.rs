//! The chaos suite at CI scale: a few hundred blobs through the built lister and fetcher
//! binaries with every emulator fault, AWS errors at the adapter boundary and processes killed
//! at random points; every record exactly once or reported lost upstream, nothing else in the
//! DLQ than the poison jobs. The large run is `cargo run -p integration-tests --bin chaos`
//! (docs/chaos.md).

use integration_tests::chaos::{self, ChaosConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_small_every_record_once_or_reported_lost_upstream_and_only_poison_dead_lettered() {
    let mut config = ChaosConfig::new(20261123, 300, &integration_tests::moto::endpoint());
    config.verbose = true;
    let summary = chaos::run(config).await;
    println!("{summary}");
    assert!(summary.ok(), "chaos run failed:\n{summary}");
    // The chaos really happened: the run would prove nothing otherwise.
    assert!(summary.blobs >= 300, "{summary}");
    assert!(
        summary.kills_lister > 0 && summary.kills_fetcher > 0,
        "no kills:\n{summary}"
    );
    assert!(
        summary.expired_token_401s > 0,
        "no token expired mid-run:\n{summary}"
    );
    assert!(
        summary.blobs_lost_upstream > 0,
        "no blob expired before its fetch:\n{summary}"
    );
    assert!(
        summary.duplicates_dropped > 0,
        "no duplicate dropped:\n{summary}"
    );
    assert!(
        summary.redeliveries > 0 && summary.duplicate_listings > 0,
        "{summary}"
    );
    assert_eq!(summary.dlq_messages, summary.poison_jobs, "{summary}");
}
