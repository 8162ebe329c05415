//! Reading Redis's answers to the crate's scripts: the pieces every reply parser
//! shares. An answer of the wrong kind is [`FleetError::Malformed`] naming its kind,
//! never its content (which may be long), and never a panic.

use redis::Value;

use crate::error::FleetError;

/// The integer `value` is, or `Malformed` naming what it is instead.
pub(crate) fn integer(value: &Value) -> Result<i64, FleetError> {
    match value {
        Value::Int(i) => Ok(*i),
        other => Err(FleetError::malformed(format!(
            "expected an integer, got {}",
            shape(other)
        ))),
    }
}

/// A short name of a value's kind, for messages (never its content, which may be long).
pub(crate) fn shape(value: &Value) -> &'static str {
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
