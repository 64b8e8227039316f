//! o365-collector's library: every piece of domain logic, behind small ports.
//!
//! ```text
//! EventBridge ─► lister ──► SQS ──► fetcher ──► S3 (gzip NDJSON)
//!                  │                  │
//!                  └──── DynamoDB: tenants, cursors, blob ledger ────┘
//! subscriptions (daily): ensure every tenant's content types are started
//! ```
//!
//! | module | what |
//! |---|---|
//! | [`model`] | content types, windows, tenants, directory users (pure types) |
//! | [`metrics`] | CloudWatch metrics in the embedded metric format (EMF lines on stdout) |
//! | [`graph`] | Microsoft Graph users/delta client (directory sync) |
#![warn(missing_docs)]

pub mod api;
pub mod app;
pub mod auth;
pub mod aws;
pub mod config;
pub mod graph;
pub mod jsonarray;
pub mod lambda;
pub mod metrics;
pub mod model;
pub mod normalize;
pub mod queue;
pub mod retry;
pub mod secrets;
pub mod sink;
pub mod store;
