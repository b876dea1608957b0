//! Integration tests: one binary, one module per area.
#![allow(unreachable_pub, missing_docs)] // a test binary has no API
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod admin;
mod attack;
mod backends;
mod cli;
mod common;
mod connections;
mod contract;
mod failure;
mod fleet;
#[cfg(feature = "pkcs11")]
mod hsm;
mod interop;
mod legacy;
mod pg_fleet;
mod pg_rollback;
mod pg_store;
mod pg_work;
mod properties;
mod refusals;
mod replicas;
mod revocation;
mod rfc;
mod server;
mod service;
mod store;
mod verifier;
mod verifier_checks;
