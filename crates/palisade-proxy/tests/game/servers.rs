//! The outage game's endpoints: real HTTP/1 servers with a real capacity. Each serves
//! `capacity` requests at a time, each for `service` time, and queues the rest (FIFO,
//! unbounded as a real server's accept backlog is, in effect); a request that waits in the
//! queue is slow, as on an overloaded server.
//!
//! Behaviours the script sets: serving; down (the port closed, connections dropped); gray
//! (a share of data requests answered 503 at once while the health path passes); hanging
//! (every request, health checks included, held unanswered until the behaviour changes).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// What an endpoint does with data requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behaviour {
    Serving,
    /// This share of data requests answered 503 at once; health checks pass.
    Gray(f64),
    /// Nothing answered (health checks neither) until the behaviour changes.
    Hanging,
}

/// One endpoint: a server on a fixed loopback port that can be stopped and restarted.
pub struct Endpoint {
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Shared {
    slots: Semaphore,
    service: Duration,
    behaviour: watch::Sender<Behaviour>,
    /// Data requests received (for a deterministic "every other one" gray failure).
    received: AtomicU64,
    /// Data requests being served or queued, and the most there were since last read.
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// Counts a data request in flight while it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        shared.peak.fetch_max(now, Ordering::Relaxed);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl Endpoint ===

impl Endpoint {
    pub async fn start(capacity: usize, service: Duration) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (behaviour, _) = watch::channel(Behaviour::Serving);
        let shared = Arc::new(Shared {
            slots: Semaphore::new(capacity),
            service,
            behaviour,
            received: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        });
        let ep = Endpoint {
            addr,
            shared,
            running: Mutex::new(None),
        };
        ep.serve(listener);
        ep
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.shared.behaviour.send_replace(behaviour);
    }

    /// The most data requests it held at once (served or queued) since the last call.
    pub fn take_peak(&self) -> usize {
        self.shared.peak.swap(0, Ordering::Relaxed)
    }

    /// Closes the port and drops every connection.
    pub fn stop(&self) {
        if let Some(task) = self.running.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Serves again on the same port.
    pub async fn restart(&self) {
        self.stop();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            // Dropped with the task: every connection goes with the listener.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        let shared = shared.clone();
                        conns.spawn(async move {
                            let svc = hyper::service::service_fn(move |req| {
                                handle(shared.clone(), req)
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        *self.running.lock().unwrap() = Some(task);
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop();
    }
}

type Body = Full<Bytes>;

fn answer(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
    *r.status_mut() = status;
    r
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let health = req.uri().path() == "/health/ready";
    let mut behaviour = shared.behaviour.subscribe();
    // A hanging endpoint holds everything until it is told otherwise.
    let _ = behaviour.wait_for(|b| *b != Behaviour::Hanging).await;
    if health {
        return Ok(answer(StatusCode::OK));
    }
    let _counted = InFlight::enter(&shared);
    let n = shared.received.fetch_add(1, Ordering::Relaxed);
    if let Behaviour::Gray(share) = *behaviour.borrow() {
        // Deterministic and spread out: the n-th request fails when the running count of
        // failures due (n × share) steps up.
        if ((n + 1) as f64 * share).floor() > (n as f64 * share).floor() {
            return Ok(answer(StatusCode::SERVICE_UNAVAILABLE));
        }
    }
    let Ok(_slot) = shared.slots.acquire().await else {
        return Ok(answer(StatusCode::SERVICE_UNAVAILABLE));
    };
    tokio::time::sleep(shared.service).await;
    Ok(answer(StatusCode::OK))
}
