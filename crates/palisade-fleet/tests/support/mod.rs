//! What the fleet's integration tests share: raw commands to the test's own Redis and
//! the reading of their answers. Each test file uses a part of it.
#![allow(dead_code)]

use palisade_fleet::RedisStore;
use redis::Value;

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
