//! The emulator, exercised from the outside over HTTP.
// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod activity;
mod common;
mod date;
mod faults;
mod graph;
mod token;
