//! PostgreSQL for tests: the machine's server at 127.0.0.1:5432 (user postgres, database
//! `test`), a fresh schema per store. Unreachable: a failure when `CI` is set, else a loud
//! skip.

use std::sync::atomic::{AtomicUsize, Ordering};

pub const BASE: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3";

/// The server to test against: `PALISADE_SAGA_PG`, or [`BASE`].
pub fn base() -> String {
    std::env::var("PALISADE_SAGA_PG").unwrap_or_else(|_| BASE.to_owned())
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A connection string whose search_path is a new, empty schema; `None` (after a loud
/// message) when PostgreSQL is unreachable outside CI.
pub fn fresh_url() -> Option<String> {
    fresh_url_on(base())
}

/// As [`fresh_url`], on the server `base` names.
pub fn fresh_url_on(base: String) -> Option<String> {
    let schema = format!(
        "saga_t_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::thread::current().name().unwrap_or("x").len()
    );
    let b = base.clone();
    let s = schema.clone();
    let made = std::thread::spawn(move || -> Result<(), String> {
        let mut c = postgres::Client::connect(&b, postgres::NoTls).map_err(|e| e.to_string())?;
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s}"
        ))
        .map_err(|e| e.to_string())
    })
    .join()
    .unwrap_or_else(|_| Err("panicked".into()));
    match made {
        Ok(()) => Some(format!("{base} options='-c search_path={schema}'")),
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL unreachable at {base} and CI is set: {e}");
            }
            eprintln!(
                "\n!!!!!!!! SKIPPED: PostgreSQL unreachable at {base}: {e} (set CI to make this a failure) !!!!!!!!\n"
            );
            None
        }
    }
}

/// Drops the schema a [`fresh_url`] created.
pub fn drop_schema(url: &str) {
    let Some(schema) = url
        .split("search_path=")
        .nth(1)
        .map(|s| s.trim_end_matches('\'').to_owned())
    else {
        return;
    };
    let base = base();
    let _ = std::thread::spawn(move || {
        if let Ok(mut c) = postgres::Client::connect(&base, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    })
    .join();
}

#[allow(unused_imports)] // only the tests that stop a server use it
pub use palisade_testkit::postgres::OwnServer;
