//! The chaos suite at CI scale: a few hundred blobs through the built lister and fetcher
//! binaries with every emulator fault, AWS errors at the adapter boundary and processes killed
//! at random points, content late by up to 36 h (found by reconciliation passes) and blobs
//! that fail for good; every record exactly once or its blobs reported (lost upstream, failed
//! with a reason), nothing else in the DLQ than the poison jobs and the jobs of the blobs that
//! fail for good. The large run is `cargo run -p integration-tests --bin chaos`
//! (docs/chaos.md).

use integration_tests::chaos::{self, ChaosConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_small_every_record_once_or_reported_and_only_poison_or_failing_dead_lettered() {
    let mut config = ChaosConfig::new(20261123, 300, &integration_tests::moto::endpoint());
    config.verbose = true;
    // CI size: content up to 36 h late (beyond the band and beyond a day; 6 days is the
    // binary's default and `ledger::finding_12…`'s), 3 clock steps (each with a
    // reconciliation pass) and 5 receives before a failing job is dead-lettered keep the run
    // short.
    config.max_late_secs = 36 * 3600;
    // Few ticks at this size: kill the lister more often so that some tick surely dies.
    config.kill_lister = 0.6;
    config.clock_steps = 3;
    config.fetcher_max_receives = 5;
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
    // Blobs that fail for good: each reported (failed with its reason and dead-lettered, or
    // expired), and some of their records written from another blob holding them.
    assert!(summary.failing_blobs > 0, "{summary}");
    assert_eq!(
        summary.failing_blobs_failed + summary.failing_blobs_expired,
        summary.failing_blobs,
        "{summary}"
    );
    assert!(
        summary.dlq_failing_jobs >= summary.failing_blobs_failed,
        "{summary}"
    );
    assert_eq!(
        summary.dlq_messages,
        summary.poison_jobs + summary.dlq_failing_jobs + summary.dlq_recovered_jobs,
        "{summary}"
    );
    // Content later than a day, found by reconciliation, not the band; the sweep re-drove.
    assert!(
        summary.very_late_blobs > 0 && summary.late_found > 0,
        "{summary}"
    );
    assert!(summary.sweep_redriven > 0, "{summary}");
}
