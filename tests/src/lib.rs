//! Integration-test helpers: the Lambda Runtime API emulator, a moto "deployment", fixtures.
// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

pub mod chaos;
pub mod moto;
pub mod proxy;
pub mod runtime;
pub mod stack;
