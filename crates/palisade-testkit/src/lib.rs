//! Test support shared by palisade's crates: servers of a test's own (PostgreSQL, Redis)
//! on free loopback ports, which a test may stop and start again. Without the server's
//! programs a test skips loudly, or fails when `CI` is set.

#![forbid(unsafe_code)]
// Test support: a failure to set up is the test's failure.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_methods,
    missing_docs
)]

pub mod postgres;
pub mod redis;

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Says loudly that `what` is missing, so the test skips; panics instead when `CI` is set.
pub fn skipped(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} missing and CI is set");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {what} missing (set CI to make this a failure) !!!!!!!!\n");
}
