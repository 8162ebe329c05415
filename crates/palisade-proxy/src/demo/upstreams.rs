//! Simulated upstreams for the demo: real HTTP servers on loopback with scripted trouble.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};

/// How a simulated upstream behaves at a moment of the demo.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Mood {
    /// Answers in 5–15 ms; `slow` of calls take 400 ms; `failing` of calls get 503.
    Fine { slow: f64, failing: f64 },
    /// A share of calls never answer.
    Hanging { share: f64 },
    /// Not listening at all: connections are refused.
    Down,
}

/// The script of a simulated upstream: its mood as a function of the demo's progress (0–1).
pub(crate) type Script = fn(f64) -> Mood;

/// A running simulated upstream.
pub(crate) struct Simulated {
    pub(crate) name: &'static str,
    pub(crate) address: SocketAddr,
    script: Script,
    started: Instant,
    length: Duration,
    server: Mutex<Option<JoinSet<()>>>,
}

impl Simulated {
    /// Binds a free loopback port and starts serving.
    pub(crate) async fn start(
        name: &'static str,
        script: Script,
        length: Duration,
    ) -> std::io::Result<Arc<Self>> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), name, script, length).await
    }

    /// Binds `address` and starts serving.
    pub(crate) async fn start_on(
        address: SocketAddr,
        name: &'static str,
        script: Script,
        length: Duration,
    ) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let upstream = Arc::new(Self {
            name,
            address,
            script,
            started: Instant::now(),
            length,
            server: Mutex::new(None),
        });
        upstream.serve(listener);
        tokio::spawn(follow_script(upstream.clone()));
        Ok(upstream)
    }

    fn progress(&self) -> f64 {
        (self.started.elapsed().as_secs_f64() / self.length.as_secs_f64()).clamp(0.0, 1.0)
    }

    fn serve(self: &Arc<Self>, listener: TcpListener) {
        let mut tasks = JoinSet::new();
        let me = self.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let me = me.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.answer(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(tasks);
    }

    async fn answer(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() == "/health" {
            return text(StatusCode::OK, "ok");
        }
        let roll: f64 = rand::rng().random();
        match (self.script)(self.progress()) {
            Mood::Fine { slow, failing } => {
                let wait = if roll < slow {
                    400
                } else {
                    5 + (roll * 1000.0) as u64 % 11
                };
                sleep(Duration::from_millis(wait)).await;
                if rand::rng().random::<f64>() < failing {
                    text(StatusCode::SERVICE_UNAVAILABLE, "overloaded")
                } else {
                    text(StatusCode::OK, self.name)
                }
            }
            Mood::Hanging { share } if roll < share => std::future::pending().await,
            Mood::Hanging { .. } => {
                sleep(Duration::from_millis(20)).await;
                text(StatusCode::OK, self.name)
            }
            Mood::Down => text(StatusCode::SERVICE_UNAVAILABLE, "going down"),
        }
    }
}

/// Stops listening while the script says `Down`, listens again when it does not.
async fn follow_script(upstream: Arc<Simulated>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        let down = (upstream.script)(upstream.progress()) == Mood::Down;
        let serving = upstream
            .server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if down && serving {
            // Dropping the JoinSet aborts the accept loop and every connection.
            upstream
                .server
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
        } else if !down && !serving {
            if let Ok(listener) = TcpListener::bind(upstream.address).await {
                upstream.serve(listener);
            }
        }
        if upstream.progress() >= 1.0 {
            return;
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}
