//! Sorting the `redis` crate's errors into the answers a caller acts on.

use std::time::Duration;

use redis::{ErrorKind, RedisError};

use crate::error::FleetError;

/// Sorts a client or server error: [`FleetError::Timeout`], [`FleetError::Unavailable`]
/// (the server or cluster cannot work now) or [`FleetError::Malformed`] (it answered, but
/// not with something usable).
///
/// Cluster errors: `MOVED` and `ASK` are followed by the cluster client; one that still
/// reaches here (the retries spent while slots move) is `Unavailable`, as are
/// `CLUSTERDOWN`, `TRYAGAIN` and a slot whose node the client cannot reach. `CROSSSLOT`
/// (one call's keys in different slots) is the caller's mistake, not an outage: it is
/// `Malformed`, with a reason that says so.
pub(super) fn classify(e: &RedisError, after: Duration) -> FleetError {
    if e.is_timeout() {
        return FleetError::Timeout { after };
    }
    if e.kind() == ErrorKind::CrossSlot {
        return FleetError::malformed(format!(
            "the call's keys are in different cluster slots ({e}); every key of one call \
             must share a hash tag, as a fleet scope's keys do"
        ));
    }
    let unavailable = match e.kind() {
        ErrorKind::IoError
        | ErrorKind::BusyLoadingError
        | ErrorKind::TryAgain
        | ErrorKind::ClusterDown
        | ErrorKind::MasterDown
        | ErrorKind::Moved
        | ErrorKind::Ask
        | ErrorKind::ReadOnly
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::AuthenticationFailed
        | ErrorKind::InvalidClientConfig => true,
        ErrorKind::ExtensionError => matches!(e.code(), Some("OOM" | "BUSY" | "NOPERM")),
        _ => e.is_connection_dropped() || e.is_connection_refusal() || e.is_io_error(),
    };
    if unavailable {
        FleetError::Unavailable {
            reason: e.to_string(),
        }
    } else {
        FleetError::malformed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    const AFTER: Duration = Duration::from_millis(5);

    fn server(kind: ErrorKind, text: &'static str) -> RedisError {
        RedisError::from((kind, text))
    }

    #[test]
    fn io_failures_are_timeouts_or_unavailable() {
        let timed_out = RedisError::from(io::Error::from(io::ErrorKind::TimedOut));
        assert_eq!(
            classify(&timed_out, AFTER),
            FleetError::Timeout { after: AFTER }
        );
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::UnexpectedEof,
        ] {
            let e = RedisError::from(io::Error::from(kind));
            assert!(
                matches!(classify(&e, AFTER), FleetError::Unavailable { .. }),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn cluster_trouble_is_unavailable() {
        for kind in [
            ErrorKind::ClusterDown,
            ErrorKind::TryAgain,
            ErrorKind::MasterDown,
            ErrorKind::Moved,
            ErrorKind::Ask,
            ErrorKind::ClusterConnectionNotFound,
            ErrorKind::BusyLoadingError,
            ErrorKind::ReadOnly,
        ] {
            let e = server(kind, "cluster trouble");
            assert!(
                matches!(classify(&e, AFTER), FleetError::Unavailable { .. }),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn cross_slot_is_the_callers_mistake_and_says_so() {
        let e = server(
            ErrorKind::CrossSlot,
            "Keys in request don't hash to the same slot",
        );
        match classify(&e, AFTER) {
            FleetError::Malformed { reason } => {
                assert!(reason.contains("different cluster slots"), "{reason}");
                assert!(reason.contains("hash tag"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_that_are_not_usable_are_malformed() {
        for kind in [ErrorKind::ResponseError, ErrorKind::TypeError] {
            let e = server(kind, "odd");
            assert!(
                matches!(classify(&e, AFTER), FleetError::Malformed { .. }),
                "{kind:?}"
            );
        }
    }
}
