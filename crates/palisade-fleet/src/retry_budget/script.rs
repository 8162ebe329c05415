//! The ledger's script (`budget.lua`) and the reading of its answer.
//!
//! The answer is read defensively: anything but the two integers the script returns, in
//! their ranges, is [`FleetError::Malformed`] — never a grant, never a panic.

use redis::Value;

use crate::error::FleetError;
use crate::reply::{integer, shape};

/// The script's source: deposit, expire, grant, on the server's clock.
pub(crate) const SOURCE: &str = include_str!("budget.lua");

/// The largest balance an answer may carry: 2^53, the last whole number a Lua double
/// holds exactly (more is not an answer of ours).
const MAX_BALANCE: i64 = 1 << 53;

/// What the server answered to one exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    /// Tokens granted to this instance, already counted as withdrawn by the fleet.
    pub(crate) granted: u64,
    /// Whole tokens left in the fleet's balance after the grant.
    pub(crate) balance: u64,
}

/// Reads the answer to an exchange that asked for `want` tokens.
pub(crate) fn parse_reply(value: &Value, want: u64) -> Result<Reply, FleetError> {
    let Value::Array(items) = value else {
        return Err(FleetError::malformed(format!(
            "expected an array of 2 integers, got {}",
            shape(value)
        )));
    };
    let [granted, balance] = items.as_slice() else {
        return Err(FleetError::malformed(format!(
            "expected 2 integers, got {} items",
            items.len()
        )));
    };
    let (granted, balance) = (integer(granted)?, integer(balance)?);
    let granted = u64::try_from(granted)
        .ok()
        .filter(|g| *g <= want)
        .ok_or_else(|| {
            FleetError::malformed(format!("granted {granted} tokens, not 0 to {want}"))
        })?;
    let balance = u64::try_from(balance)
        .ok()
        .filter(|_| balance <= MAX_BALANCE)
        .ok_or_else(|| FleetError::malformed(format!("a balance of {balance}, not 0 to 2^53")))?;
    Ok(Reply { granted, balance })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(granted: i64, balance: i64) -> Value {
        Value::Array(vec![Value::Int(granted), Value::Int(balance)])
    }

    fn malformed(value: &Value, want: u64) {
        match parse_reply(value, want) {
            Err(FleetError::Malformed { .. }) => {}
            other => panic!("{value:?} read as {other:?}"),
        }
    }

    #[test]
    fn reads_a_grant_and_the_balance() {
        assert_eq!(
            parse_reply(&reply(1, 41), 1),
            Ok(Reply {
                granted: 1,
                balance: 41
            })
        );
        assert_eq!(
            parse_reply(&reply(0, 0), 3),
            Ok(Reply {
                granted: 0,
                balance: 0
            })
        );
        assert_eq!(
            parse_reply(&reply(0, MAX_BALANCE), 0).map(|r| r.balance),
            Ok(1 << 53)
        );
    }

    #[test]
    fn odd_shapes_are_malformed() {
        malformed(&Value::Nil, 1);
        malformed(&Value::Okay, 1);
        malformed(&Value::Int(1), 1);
        malformed(&Value::SimpleString("1".into()), 1);
        malformed(&Value::BulkString(b"1".to_vec()), 1);
        malformed(&Value::Array(vec![]), 1);
        malformed(&Value::Array(vec![Value::Int(1)]), 1);
        malformed(
            &Value::Array(vec![Value::Int(1), Value::Int(0), Value::Int(0)]),
            1,
        );
        malformed(
            &Value::Array(vec![Value::BulkString(b"1".to_vec()), Value::Int(0)]),
            1,
        );
        malformed(&Value::Array(vec![Value::Double(1.0), Value::Int(0)]), 1);
        malformed(&Value::Array(vec![Value::Boolean(true), Value::Int(0)]), 1);
        malformed(&Value::Array(vec![Value::Int(1), Value::Nil]), 1);
        malformed(&Value::Array(vec![Value::Array(vec![]), Value::Int(0)]), 1);
        malformed(&Value::Map(vec![(Value::Int(1), Value::Int(0))]), 1);
    }

    #[test]
    fn out_of_range_values_are_malformed() {
        malformed(&reply(2, 0), 1); // more than asked
        malformed(&reply(1, 0), 0);
        malformed(&reply(-1, 0), 1);
        malformed(&reply(0, -1), 1);
        malformed(&reply(0, MAX_BALANCE + 1), 1);
        malformed(&reply(i64::MAX, i64::MAX), u64::MAX);
        malformed(&reply(i64::MIN, i64::MIN), 1);
    }

    #[test]
    fn the_script_takes_time_from_the_server_only_and_names_its_key() {
        assert_eq!(SOURCE.matches("redis.call('TIME')").count(), 1);
        // Every key it touches is KEYS[1], so it runs on Redis Cluster.
        for call in SOURCE.split("redis.call(").skip(1) {
            assert!(
                call.starts_with("'TIME')") || call.contains("KEYS[1]"),
                "a call on a key not named in KEYS: {call}"
            );
        }
    }
}
