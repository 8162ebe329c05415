//! Black-box harness: the real `palisade` binary on free loopback ports, in front of real
//! HTTP upstream servers started by the test.
//!
//! Everything started here is stopped on drop: the proxy child process is killed and
//! waited for, upstream servers are shut down with their connections. Every wait is a
//! bounded polling loop.
//!
//! - `upstream`: the HTTP servers behind the proxy, which record what they received;
//! - `client`: the tests' HTTP client, pooled or on one kept connection;
//! - `proxy`: the `palisade` binary run as a child process, and `palisade check`;
//! - `gameday`: `palisade gameday` run on experiment files;
//! - `prometheus`: `/metrics` read back as samples;
//! - `sagas`: the checkout saga's sidecar config;
//! - `browser`: headless Chromium driven by `tests/browser/driver.mjs`;
//! - here: ports, waits and temp files.

// Each test binary includes this harness and uses only part of it.
#![allow(dead_code, missing_docs, unused_imports)]

mod browser;
mod client;
mod gameday;
mod prometheus;
mod proxy;
mod sagas;
mod toxic;
mod upstream;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

pub use browser::*;
pub use client::*;
pub use gameday::*;
pub use prometheus::*;
pub use proxy::*;
pub use sagas::*;
pub use toxic::*;
pub use upstream::*;

/// Milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Reads (and discards) from `stream` until the other side closes it or `limit` passes;
/// true if it was closed in time.
pub async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let closed = timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    closed.is_ok()
}

/// A loopback port nobody listens on right now (bound, read, closed).
pub fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A loopback address nobody listens on: requests to it fail to connect.
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Polls `f` every 10 ms until it returns `Some`, for at most `limit`; panics naming
/// `what` when the limit passes.
pub async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = f().await {
            return t;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        sleep(ms(10)).await;
    }
}

/// A unique file in the temp dir.
pub fn temp_path(stem: &str, ext: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "palisade-test-{}-{stem}-{n}.{ext}",
        std::process::id()
    ))
}
