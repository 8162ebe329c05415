//! A model of one endpoint: a server with a capacity (requests served at once) and an
//! unbounded queue in front of it, as a real server's accept backlog and worker pool.
//!
//! A request the caller gives up on (a per-try timeout, a losing hedge) stays in the
//! server's queue and is still served: a real server learns that its client left only
//! when it writes the answer. So requests sent beyond the capacity cost the endpoint
//! capacity whether or not anyone waits for them — the queue the proxy must not build.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Response, StatusCode};
use palisade::Error;
use palisade_http::classify::{TransportError, TransportErrorKind};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use tokio::sync::{Semaphore, oneshot};

/// What an endpoint does with a request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Behaviour {
    /// Serves in its service time, queueing beyond its capacity.
    Serving,
    /// Refuses connections: every attempt fails at once, having sent nothing.
    Down,
    /// Answers 503 at once to this share of requests, serves the rest (its health check
    /// would pass: a gray failure).
    Gray(f64),
    /// Accepts and never answers.
    Hanging,
}

/// The answer an attempt gets from a model endpoint.
pub(super) type Answer = Result<Response<()>, Error<TransportError>>;

/// One endpoint's model.
pub(super) struct Model {
    slots: Arc<Semaphore>,
    service: Duration,
    behaviour: Mutex<Behaviour>,
    rng: Mutex<SmallRng>,
    /// Requests queued or being served now.
    in_system: Arc<AtomicUsize>,
    /// The most there ever were.
    peak: Arc<AtomicUsize>,
}

// === impl Model ===

impl Model {
    /// An endpoint serving `capacity` requests at once, each in `service` (± 20%, drawn
    /// from `seed`).
    pub(super) fn new(capacity: usize, service: Duration, seed: u64) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(capacity)),
            service,
            behaviour: Mutex::new(Behaviour::Serving),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            in_system: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// From now on, the endpoint does `behaviour`.
    pub(super) fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner()) = behaviour;
    }

    /// The most requests it ever held at once, queued or served.
    pub(super) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Serves one request.
    pub(super) async fn serve(&self) -> Answer {
        let behaviour = *self.behaviour.lock().unwrap_or_else(|e| e.into_inner());
        match behaviour {
            Behaviour::Down => Err(Error::Inner(TransportError {
                kind: TransportErrorKind::ConnectFailure,
                message: "connection refused".into(),
            })),
            Behaviour::Hanging => std::future::pending().await,
            Behaviour::Gray(share) if self.draw() < share => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok(status(StatusCode::SERVICE_UNAVAILABLE))
            }
            Behaviour::Gray(_) | Behaviour::Serving => self.queue().await,
        }
    }

    /// Queues the request for a slot and serves it there, whether or not the caller
    /// still waits.
    async fn queue(&self) -> Answer {
        let (answer, answered) = oneshot::channel();
        let slots = self.slots.clone();
        let in_system = self.in_system.clone();
        let peak = self.peak.clone();
        let took = self.service.mul_f64(0.8 + 0.4 * self.draw());
        let now = in_system.fetch_add(1, Ordering::Relaxed) + 1;
        peak.fetch_max(now, Ordering::Relaxed);
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            tokio::time::sleep(took).await;
            in_system.fetch_sub(1, Ordering::Relaxed);
            let _ = answer.send(());
        });
        match answered.await {
            Ok(()) => Ok(status(StatusCode::OK)),
            Err(_) => Err(Error::Inner(TransportError {
                kind: TransportErrorKind::Reset,
                message: "the model dropped the request".into(),
            })),
        }
    }

    /// A uniform draw in [0, 1).
    fn draw(&self) -> f64 {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .random::<f64>()
    }
}

fn status(status: StatusCode) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = status;
    response
}
