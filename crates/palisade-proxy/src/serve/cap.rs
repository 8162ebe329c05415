//! The cap on a port's open connections.
//!
//! Each connection holds a place from its accept until it ends; a connection accepted
//! when every place is taken is closed at once, counted in
//! `palisade_connections_refused_total{port}` and logged at debug level. Connections
//! already open are never closed to make room. The places are one semaphore shared by
//! everything that serves the port (every worker of the proxy port), so the cap holds
//! for the port as a whole.
//!
//! The cap keeps idle and slow clients, which the header timeout ends only after it
//! has passed, from taking every file descriptor the process may open: past the cap,
//! new clients are refused, and clients already served keep being served.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The places of one port's connections.
#[derive(Clone)]
pub(crate) struct Cap {
    /// One permit per connection that may be open (connections).
    places: Arc<Semaphore>,
    /// `palisade_connections_refused_total` for this port.
    refused: metrics::Counter,
    /// The port's name in logs and in the metric's `port` label.
    port: &'static str,
}

/// A connection's place, given back when dropped.
pub(crate) type Place = OwnedSemaphorePermit;

// === impl Cap ===

impl Cap {
    /// At most `max` connections open at once on the port named `port`.
    pub(crate) fn new(max: usize, port: &'static str) -> Self {
        Self {
            places: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            refused: metrics::counter!("palisade_connections_refused_total", "port" => port),
            port,
        }
    }

    /// A place for the connection just accepted from `client`, or `None` when every
    /// place is taken (the refusal is counted and logged; the caller drops the
    /// connection, which closes it).
    pub(crate) fn admit(&self, client: SocketAddr) -> Option<Place> {
        match self.places.clone().try_acquire_owned() {
            Ok(place) => Some(place),
            Err(_) => {
                self.refused.increment(1);
                tracing::debug!(port = self.port, %client, "connection refused: the port's connection cap is reached");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_past_the_cap_is_refused_until_a_place_is_given_back() {
        let cap = Cap::new(2, "test");
        let client = SocketAddr::from(([127, 0, 0, 1], 1));
        let first = cap.admit(client).expect("first place");
        let _second = cap.admit(client).expect("second place");
        assert!(
            cap.admit(client).is_none(),
            "a third connection was admitted"
        );
        drop(first);
        assert!(
            cap.admit(client).is_some(),
            "the place given back was not reused"
        );
    }
}
