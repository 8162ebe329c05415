//! The GCRA script (`gcra.lua`) and the reading of its answer.
//!
//! The answer is read defensively: anything but the three integers the script returns,
//! in their ranges, is [`FleetError::Malformed`] — never an admission, never a panic.

use std::time::Duration;

use redis::Value;

use super::Decision;
use crate::error::FleetError;

/// The script's source: GCRA over N limits on the server's clock, all or nothing.
pub(crate) const SOURCE: &str = include_str!("gcra.lua");

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

fn integer(value: &Value) -> Result<i64, FleetError> {
    match value {
        Value::Int(i) => Ok(*i),
        other => Err(FleetError::malformed(format!(
            "expected an integer, got {}",
            shape(other)
        ))),
    }
}

/// A short name of a value's kind, for messages (never its content, which may be long).
fn shape(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) => "a bulk string",
        Value::Array(_) => "an array",
        Value::SimpleString(_) => "a simple string",
        Value::Okay => "OK",
        Value::Map(_) => "a map",
        Value::Attribute { .. } => "an attribute",
        Value::Set(_) => "a set",
        Value::Double(_) => "a double",
        Value::Boolean(_) => "a boolean",
        Value::VerbatimString { .. } => "a verbatim string",
        Value::BigNumber(_) => "a big number",
        Value::Push { .. } => "a push",
        Value::ServerError(_) => "a server error",
    }
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

    #[test]
    fn a_year_is_the_longest_wait() {
        assert!(matches!(
            parse_reply(&reply(0, MAX_WAIT_MICROS, 1), 1),
            Ok(Decision::Refused { .. })
        ));
    }
}
