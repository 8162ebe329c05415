//! The scripts (`gcra.lua`, `lease.lua`) and the reading of their answers.
//!
//! The answers are read defensively: anything but the integers a script returns, in
//! their ranges, is [`FleetError::Malformed`] — never an admission nor a grant, never a
//! panic.

use std::time::Duration;

use redis::Value;

use super::Decision;
use crate::error::FleetError;
use crate::reply::{integer, shape};

/// The script's source: GCRA over N limits on the server's clock, all or nothing.
pub(crate) const SOURCE: &str = include_str!("gcra.lua");

/// The lease script's source: up to `want` GCRA admissions of one limit at once.
pub(crate) const LEASE_SOURCE: &str = include_str!("lease.lua");

/// What `lease.lua` granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    /// Tokens granted, `0..=want`.
    pub(crate) tokens: u64,
    /// Until the next token fits, by the server's clock (zero when one fits now; never
    /// zero when nothing was granted).
    pub(crate) wait: Duration,
}

/// The longest wait an answer may carry: a year (a quota's interval is at most a year;
/// more is a server clock that jumped back or an answer that is not ours).
const MAX_WAIT_MICROS: i64 = 366 * 86_400 * 1_000_000;

/// Reads the script's answer for a call of `checks` limits.
pub(crate) fn parse_reply(value: &Value, checks: usize) -> Result<Decision, FleetError> {
    let Value::Array(items) = value else {
        return Err(FleetError::malformed(format!(
            "expected an array of 3 integers, got {}",
            shape(value)
        )));
    };
    let [admitted, wait, index] = items.as_slice() else {
        return Err(FleetError::malformed(format!(
            "expected 3 integers, got {} items",
            items.len()
        )));
    };
    let (admitted, wait, index) = (integer(admitted)?, integer(wait)?, integer(index)?);
    match admitted {
        1 if wait == 0 && index == 0 => Ok(Decision::Admitted),
        1 => Err(FleetError::malformed(format!(
            "admitted with wait {wait} and limit {index}"
        ))),
        0 => {
            let limit = usize::try_from(index)
                .ok()
                .filter(|i| (1..=checks).contains(i))
                .ok_or_else(|| {
                    FleetError::malformed(format!(
                        "refused by limit {index}, not one of 1..={checks}"
                    ))
                })?;
            if !(1..=MAX_WAIT_MICROS).contains(&wait) {
                return Err(FleetError::malformed(format!(
                    "refused with wait {wait} µs, not 1 µs to a year"
                )));
            }
            let micros = u64::try_from(wait)
                .map_err(|_| FleetError::malformed(format!("negative wait {wait}")))?;
            Ok(Decision::Refused {
                retry_after: Duration::from_micros(micros),
                limit: limit - 1,
            })
        }
        other => Err(FleetError::malformed(format!(
            "admitted flag {other}, not 0 or 1"
        ))),
    }
}

/// Reads the lease script's answer to a request of `want` tokens: `{n, wait}` with
/// `0 ≤ n ≤ want`, `0 ≤ wait ≤ a year`, and `wait ≥ 1` when `n = 0`.
pub(crate) fn parse_lease_reply(value: &Value, want: u64) -> Result<Grant, FleetError> {
    let Value::Array(items) = value else {
        return Err(FleetError::malformed(format!(
            "expected an array of 2 integers, got {}",
            shape(value)
        )));
    };
    let [tokens, wait] = items.as_slice() else {
        return Err(FleetError::malformed(format!(
            "expected 2 integers, got {} items",
            items.len()
        )));
    };
    let (tokens, wait) = (integer(tokens)?, integer(wait)?);
    let tokens = u64::try_from(tokens)
        .ok()
        .filter(|n| *n <= want)
        .ok_or_else(|| FleetError::malformed(format!("granted {tokens}, not 0..={want}")))?;
    let low = if tokens == 0 { 1 } else { 0 };
    if !(low..=MAX_WAIT_MICROS).contains(&wait) {
        return Err(FleetError::malformed(format!(
            "granted {tokens} with wait {wait} µs, not {low} µs to a year"
        )));
    }
    let micros =
        u64::try_from(wait).map_err(|_| FleetError::malformed(format!("negative wait {wait}")))?;
    Ok(Grant {
        tokens,
        wait: Duration::from_micros(micros),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(a: i64, w: i64, i: i64) -> Value {
        Value::Array(vec![Value::Int(a), Value::Int(w), Value::Int(i)])
    }

    #[test]
    fn reads_an_admission() {
        assert_eq!(parse_reply(&reply(1, 0, 0), 2), Ok(Decision::Admitted));
    }

    #[test]
    fn reads_a_refusal_with_its_wait_and_limit() {
        assert_eq!(
            parse_reply(&reply(0, 1_500, 2), 3),
            Ok(Decision::Refused {
                retry_after: Duration::from_micros(1_500),
                limit: 1
            })
        );
    }

    fn malformed(value: &Value, checks: usize) {
        match parse_reply(value, checks) {
            Err(FleetError::Malformed { .. }) => {}
            other => panic!("{value:?} read as {other:?}"),
        }
    }

    #[test]
    fn odd_shapes_are_malformed() {
        malformed(&Value::Nil, 1);
        malformed(&Value::Okay, 1);
        malformed(&Value::Int(1), 1);
        malformed(&Value::SimpleString("OK".into()), 1);
        malformed(&Value::BulkString(b"1".to_vec()), 1);
        malformed(&Value::Array(vec![]), 1);
        malformed(&Value::Array(vec![Value::Int(1)]), 1);
        malformed(&Value::Array(vec![Value::Int(1), Value::Int(0)]), 1);
        malformed(
            &Value::Array(vec![
                Value::Int(1),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
            ]),
            1,
        );
        // Integers as strings, doubles, booleans, nested arrays: not ours.
        malformed(
            &Value::Array(vec![
                Value::BulkString(b"1".to_vec()),
                Value::Int(0),
                Value::Int(0),
            ]),
            1,
        );
        malformed(
            &Value::Array(vec![Value::Double(1.0), Value::Int(0), Value::Int(0)]),
            1,
        );
        malformed(
            &Value::Array(vec![Value::Boolean(true), Value::Int(0), Value::Int(0)]),
            1,
        );
        malformed(
            &Value::Array(vec![Value::Array(vec![]), Value::Int(0), Value::Int(0)]),
            1,
        );
        malformed(&Value::Map(vec![(Value::Int(1), Value::Int(0))]), 1);
    }

    #[test]
    fn out_of_range_values_are_malformed() {
        malformed(&reply(2, 0, 0), 1); // a flag that is neither
        malformed(&reply(-1, 0, 0), 1);
        malformed(&reply(1, 5, 0), 1); // admitted with a wait
        malformed(&reply(1, 0, 1), 1); // admitted naming a limit
        malformed(&reply(0, 0, 1), 1); // refused without a wait
        malformed(&reply(0, -5, 1), 1);
        malformed(&reply(0, MAX_WAIT_MICROS + 1, 1), 1);
        malformed(&reply(0, i64::MAX, 1), 1);
        malformed(&reply(0, 10, 0), 1); // refused by no limit
        malformed(&reply(0, 10, 3), 2); // refused by a limit not asked
        malformed(&reply(0, 10, -1), 2);
        malformed(&reply(i64::MIN, i64::MIN, i64::MIN), 2);
    }

    fn lease(n: i64, w: i64) -> Value {
        Value::Array(vec![Value::Int(n), Value::Int(w)])
    }

    #[test]
    fn reads_a_grant() {
        assert_eq!(
            parse_lease_reply(&lease(5, 0), 8),
            Ok(Grant {
                tokens: 5,
                wait: Duration::ZERO
            })
        );
        assert_eq!(
            parse_lease_reply(&lease(8, 1_000), 8),
            Ok(Grant {
                tokens: 8,
                wait: Duration::from_millis(1)
            })
        );
        assert_eq!(
            parse_lease_reply(&lease(0, 2_500), 8),
            Ok(Grant {
                tokens: 0,
                wait: Duration::from_micros(2_500)
            })
        );
    }

    fn not_a_grant(value: &Value, want: u64) {
        match parse_lease_reply(value, want) {
            Err(FleetError::Malformed { .. }) => {}
            other => panic!("{value:?} read as {other:?}"),
        }
    }

    #[test]
    fn odd_lease_replies_are_malformed_never_a_grant() {
        not_a_grant(&Value::Nil, 4);
        not_a_grant(&Value::Okay, 4);
        not_a_grant(&Value::Int(4), 4);
        not_a_grant(&Value::BulkString(b"4".to_vec()), 4);
        not_a_grant(&Value::Array(vec![]), 4);
        not_a_grant(&Value::Array(vec![Value::Int(4)]), 4);
        not_a_grant(&reply(1, 0, 0), 4); // the exact script's answer
        not_a_grant(
            &Value::Array(vec![Value::BulkString(b"4".to_vec()), Value::Int(0)]),
            4,
        );
        not_a_grant(&Value::Array(vec![Value::Double(4.0), Value::Int(0)]), 4);
        not_a_grant(&Value::Array(vec![Value::Int(4), Value::Nil]), 4);
        not_a_grant(&Value::Map(vec![(Value::Int(4), Value::Int(0))]), 4);
        not_a_grant(&lease(5, 0), 4); // more than asked
        not_a_grant(&lease(-1, 0), 4);
        not_a_grant(&lease(i64::MAX, 0), 4);
        not_a_grant(&lease(0, 0), 4); // nothing, and no wait
        not_a_grant(&lease(0, -3), 4);
        not_a_grant(&lease(2, -3), 4);
        not_a_grant(&lease(0, MAX_WAIT_MICROS + 1), 4);
        not_a_grant(&lease(i64::MIN, i64::MIN), 4);
    }

    #[test]
    fn a_year_is_the_longest_wait() {
        assert!(matches!(
            parse_reply(&reply(0, MAX_WAIT_MICROS, 1), 1),
            Ok(Decision::Refused { .. })
        ));
    }
}
