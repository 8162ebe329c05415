//! What the fleet's integration tests share: raw commands to the test's own Redis and
//! the reading of their answers, and load paced at a fixed rate per caller. Each test
//! file uses a part of it.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_fleet::{
    Check, Counting, Decision, FleetLimit, FleetRateLimiter, RedisStore, SharedRateLimit,
};
use redis::Value;
use tokio::time::Instant;

/// Sends `args` as one command and returns the answer (the store's timeout applies).
pub async fn query(store: &RedisStore, args: &[&str]) -> Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    store.command(&cmd).await.unwrap()
}

/// The integer an answer is.
pub fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

/// The text an answer is.
pub fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("not text: {other:?}"),
    }
}

/// The server's clock, in microseconds (`TIME`).
pub async fn server_micros(store: &RedisStore) -> u64 {
    let Value::Array(parts) = query(store, &["TIME"]).await else {
        panic!("TIME")
    };
    let num = |v: &Value| text(v).parse::<u64>().unwrap();
    num(&parts[0]) * 1_000_000 + num(&parts[1])
}

/// How Redis ran the commands named `name` in `INFO commandstats` (`evalsha`, `eval`).
pub async fn calls_of(store: &RedisStore, name: &str) -> u64 {
    let mut info = redis::cmd("INFO");
    info.arg("commandstats");
    let Value::BulkString(text) = store.command(&info).await.unwrap() else {
        panic!("INFO")
    };
    let text = String::from_utf8(text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// How one paced call ended.
pub struct Call {
    /// Admitted or refused; `None`: no decision (an error).
    pub admitted: Option<bool>,
    /// Decided by Redis's count (not a fallback).
    pub shared: bool,
}

/// The calls of a paced run, counted.
#[derive(Debug, Default)]
pub struct Tally {
    pub admitted: u64,
    pub refused: u64,
    pub failed: u64,
    pub not_shared: u64,
}

/// `callers` tasks per instance, each calling `decide` with its instance once per
/// `period`, their phases spread over one period, until `run` has passed.
pub async fn paced<I, F, Fut>(
    instances: &[I],
    callers: usize,
    period: Duration,
    run: Duration,
    decide: F,
) -> Tally
where
    I: Clone + Send + 'static,
    F: Fn(I) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Call> + Send + 'static,
{
    let counts = Arc::new([const { AtomicU64::new(0) }; 4]);
    let end = Instant::now() + run;
    let mut tasks = Vec::new();
    for instance in instances {
        for caller in 0..callers {
            let (instance, decide, counts) = (instance.clone(), decide.clone(), counts.clone());
            tasks.push(tokio::spawn(async move {
                let offset = period.mul_f64(caller as f64 / callers as f64);
                let mut ticks = tokio::time::interval_at(Instant::now() + offset, period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while ticks.tick().await < end {
                    let call = decide(instance.clone()).await;
                    let slot = match call.admitted {
                        Some(true) => 0,
                        Some(false) => 1,
                        None => 2,
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                    if !call.shared {
                        counts[3].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let count = |i: usize| counts[i].load(Ordering::Relaxed);
    Tally {
        admitted: count(0),
        refused: count(1),
        failed: count(2),
        not_shared: count(3),
    }
}

/// One exact-mode decision of `limit` (global) as a paced call.
pub async fn exact_call(limiter: FleetRateLimiter, limit: Arc<FleetLimit>) -> Call {
    let admitted = match limiter.check(&[Check::global(&limit)]).await {
        Ok(Decision::Admitted) => Some(true),
        Ok(Decision::Refused { .. }) => Some(false),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    };
    Call {
        admitted,
        shared: admitted.is_some(),
    }
}

/// One decision of a fleet rate limit policy (global) as a paced call.
pub async fn shared_call(limit: SharedRateLimit) -> Call {
    let admit = limit.acquire(None).await;
    Call {
        admitted: Some(admit.is_admitted()),
        shared: admit.counting() == Counting::Shared,
    }
}
