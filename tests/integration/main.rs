//! Integration tests: one binary (links once). Tests that need AWS run against moto
//! (`MOTO_ENDPOINT`, started by scripts/test.sh); Microsoft is the in-process emulator; the
//! Lambda functions are their built binaries driven through a Runtime API emulator.
// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod bench_cli;
mod chaos;
mod crash;
mod doctor;
mod events;
mod hostile;
mod keygen;
mod lambda_e2e;
mod ledger;
mod local_run;
mod metrics;
mod no_secrets;
mod operator_cli;
mod queue_sqs;
mod secrets_aws;
mod sink_s3;
mod store_dynamodb;
mod support;
mod users_sync;
