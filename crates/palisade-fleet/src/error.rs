//! The one error a fleet call returns.
//!
//! Every failure of a call to Redis is one of four answers, so that a caller (the
//! fallback modes of a fleet limit) can choose what to do without reading messages:
//! the server did not answer in time, could not be reached or refused to work, answered
//! something that is not a decision, or was not asked because the store's breaker is
//! open. A fifth, [`FleetError::InvalidCheck`], is the caller's own mistake and never
//! reaches Redis.

use std::time::Duration;

/// Why a fleet call has no answer. None of these admits anything.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// Redis did not answer within the store's timeout (or the caller's deadline).
    #[error("redis did not answer within {after:?}")]
    Timeout {
        /// The limit that fired.
        after: Duration,
    },
    /// Redis could not be reached or would not work: connection refused or lost,
    /// loading, read-only replica, out of memory, busy script, cluster down.
    #[error("redis unavailable: {reason}")]
    Unavailable {
        /// What the client library or the server said.
        reason: String,
    },
    /// Redis answered, but not with a decision this crate can read (wrong shape, values
    /// out of range, a script error).
    #[error("malformed answer from redis: {reason}")]
    Malformed {
        /// What was wrong with it.
        reason: String,
    },
    /// The store's circuit breaker is open: Redis failed several calls in a row (timed
    /// out or unavailable), so this call was answered at once without being sent.
    #[error("redis not asked: the store's breaker is open for {retry_after:?} more")]
    CircuitOpen {
        /// How long until the breaker lets a call probe Redis again.
        retry_after: Duration,
    },
    /// The store's configuration cannot work (a URL that does not parse, a timeout out
    /// of range); returned by [`RedisStore::connect`](crate::RedisStore::connect).
    #[error("invalid fleet store config: {0}")]
    Config(#[from] palisade::ConfigError),
    /// The call itself was invalid (no limits, too many, a key too long); nothing was
    /// sent.
    #[error("invalid check: {reason}")]
    InvalidCheck {
        /// What was wrong with it.
        reason: &'static str,
    },
}

impl FleetError {
    /// A stable code for logs, metrics and headers.
    pub fn reason(&self) -> &'static str {
        match self {
            FleetError::Timeout { .. } => "fleet-timeout",
            FleetError::Unavailable { .. } => "fleet-unavailable",
            FleetError::Malformed { .. } => "fleet-malformed",
            FleetError::CircuitOpen { .. } => "fleet-breaker-open",
            FleetError::InvalidCheck { .. } => "fleet-invalid-check",
            FleetError::Config(_) => "fleet-config",
        }
    }

    /// True when the store failed (timeout, unavailable, malformed, breaker open): the
    /// case a fallback mode takes over. False for the caller's own mistakes (a bad check or config).
    pub fn is_store_failure(&self) -> bool {
        !matches!(
            self,
            FleetError::InvalidCheck { .. } | FleetError::Config(_)
        )
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        FleetError::Malformed {
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_reason_and_a_side() {
        let cases = [
            (
                FleetError::Timeout {
                    after: Duration::from_millis(5),
                },
                "fleet-timeout",
                true,
            ),
            (
                FleetError::Unavailable { reason: "x".into() },
                "fleet-unavailable",
                true,
            ),
            (FleetError::malformed("x"), "fleet-malformed", true),
            (
                FleetError::CircuitOpen {
                    retry_after: Duration::from_millis(250),
                },
                "fleet-breaker-open",
                true,
            ),
            (
                FleetError::InvalidCheck { reason: "x" },
                "fleet-invalid-check",
                false,
            ),
            (
                FleetError::Config(palisade::ConfigError::new("url", "x", "y")),
                "fleet-config",
                false,
            ),
        ];
        for (error, reason, store) in cases {
            assert_eq!(error.reason(), reason, "{error}");
            assert_eq!(error.is_store_failure(), store, "{error}");
        }
    }
}
