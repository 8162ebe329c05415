//! Upstream test servers: small real HTTP/1 servers on 127.0.0.1 that behave as told
//! (healthy, failing, slow, hanging, closing) and record every request they receive.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep};

use super::{eventually, secs};

/// What an upstream does with a request (health checks aside).
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// 200 with body `ok from NAME`.
    Ok,
    /// This status, body `status N from NAME`.
    Status(u16),
    /// A full response.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Waits, then 200.
    Delay(Duration),
    /// Never answers (until the server is stopped).
    Hang,
    /// Waits until the gate is opened (`Upstream::open_gate`), then 200.
    Gate,
    /// 200 with a JSON body describing the request.
    Echo,
    /// The first `n` requests (counted from when this behaviour was set) get the inner
    /// behaviour; later ones 200.
    FailFirst(usize, Box<Behaviour>),
    /// Requests with this method get the inner behaviour; others 200.
    ForMethod(&'static str, Box<Behaviour>),
    /// Requests whose path starts with this get the inner behaviour; others 200.
    ForPath(&'static str, Box<Behaviour>),
}

impl Behaviour {
    /// `FailFirst(n, Status(status))`.
    pub fn fail_first(n: usize, status: u16) -> Self {
        Behaviour::FailFirst(n, Box::new(Behaviour::Status(status)))
    }
}

/// One request an upstream received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub at: Instant,
}

impl Recorded {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    name: String,
    health_path: Mutex<String>,
    behaviour: Mutex<Behaviour>,
    since_set: AtomicUsize,
    healthy: AtomicBool,
    gate: watch::Sender<bool>,
    requests: Mutex<Vec<Recorded>>,
    health_checks: Mutex<Vec<Recorded>>,
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// A small HTTP/1 server on 127.0.0.1 that records every request.
///
/// Requests to the health path (default `/health/ready`) are answered 200 while
/// `set_healthy(true)` (the default), else 503, and are recorded apart.
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

impl Upstream {
    /// Starts a server on a free port.
    pub async fn start(name: &str, behaviour: Behaviour) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let (gate, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            health_path: Mutex::new("/health/ready".to_owned()),
            behaviour: Mutex::new(behaviour),
            since_set: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            gate,
            requests: Mutex::new(Vec::new()),
            health_checks: Mutex::new(Vec::new()),
        });
        let up = Upstream {
            addr,
            shared,
            running: Mutex::new(None),
        };
        up.spawn(listener);
        up
    }

    fn spawn(&self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, self.shared.clone(), stopped));
        *self.running.lock().unwrap() = Some(Running { stop, task });
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name, as it appears in `ok from NAME` and `x-upstream`.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Changes what later requests get (restarts `FailFirst`'s count).
    pub fn set_behaviour(&self, b: Behaviour) {
        let mut guard = self.shared.behaviour.lock().unwrap();
        *guard = b;
        self.shared.since_set.store(0, Ordering::SeqCst);
    }

    /// Health checks get 200 when true, 503 when false.
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Which path counts as the health check.
    pub fn set_health_path(&self, path: &str) {
        *self.shared.health_path.lock().unwrap() = path.to_owned();
    }

    /// Lets every `Gate` request (waiting or later) through.
    pub fn open_gate(&self) {
        self.shared.gate.send_replace(true);
    }

    /// Holds later `Gate` requests again.
    pub fn close_gate(&self) {
        self.shared.gate.send_replace(false);
    }

    /// Every request received (health checks excluded).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many requests were received (health checks excluded).
    pub fn count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Health checks received.
    pub fn health_checks(&self) -> Vec<Recorded> {
        self.shared.health_checks.lock().unwrap().clone()
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        self.shared.requests.lock().unwrap().clear();
        self.shared.health_checks.lock().unwrap().clear();
    }

    /// Waits (bounded) until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize, limit: Duration) {
        let what = format!("{} to receive {n} requests", self.name());
        eventually(&what, limit, async || (self.count() >= n).then_some(())).await;
    }

    /// Waits (bounded, 5 s) until at least `n` health checks have arrived.
    pub async fn wait_for_health_checks(&self, n: usize) {
        let what = format!("{} to receive {n} health checks", self.name());
        eventually(&what, secs(5), async || {
            (self.health_checks().len() >= n).then_some(())
        })
        .await;
    }

    /// Shuts the server down: the port is closed and open connections are dropped.
    pub async fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(r) = running {
            let _ = r.stop.send(());
            let _ = r.task.await;
        }
    }

    /// Starts serving again on the same port.
    pub async fn restart(&self) {
        self.stop().await;
        let addr = self.addr;
        let listener = eventually("the upstream port to be free again", secs(5), async || {
            TcpListener::bind(addr).await.ok()
        })
        .await;
        self.spawn(listener);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(r) = self.running.lock().unwrap().take() {
            let _ = r.stop.send(());
            r.task.abort();
        }
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

pub(super) type Body = Full<Bytes>;

fn respond(name: &str, status: u16, headers: &[(String, String)], body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).expect("test status");
    r.headers_mut()
        .insert("x-upstream", HeaderValue::from_str(name).expect("name"));
    for (k, v) in headers {
        r.headers_mut().append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    r
}

fn ok(name: &str) -> Response<Body> {
    respond(name, 200, &[], format!("ok from {name}"))
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let rec = Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        at: Instant::now(),
    };
    let name = shared.name.clone();
    let is_health = parts.uri.path() == *shared.health_path.lock().unwrap();
    if is_health {
        shared.health_checks.lock().unwrap().push(rec);
        let status = if shared.healthy.load(Ordering::SeqCst) {
            200
        } else {
            503
        };
        return Ok(respond(
            &name,
            status,
            &[],
            format!("health {status} from {name}"),
        ));
    }
    let behaviour = {
        let b = shared.behaviour.lock().unwrap();
        shared.requests.lock().unwrap().push(rec.clone());
        b.clone()
    };
    let index = shared.since_set.fetch_add(1, Ordering::SeqCst);
    Ok(act(&shared, &name, behaviour, index, &rec).await)
}

async fn act(
    shared: &Shared,
    name: &str,
    behaviour: Behaviour,
    index: usize,
    rec: &Recorded,
) -> Response<Body> {
    let mut behaviour = behaviour;
    match behaviour {
        Behaviour::ForMethod(method, inner) => {
            behaviour = if rec.method == method {
                *inner
            } else {
                Behaviour::Ok
            };
        }
        Behaviour::ForPath(prefix, inner) => {
            behaviour = if rec.path.starts_with(prefix) {
                *inner
            } else {
                Behaviour::Ok
            };
        }
        other => behaviour = other,
    }
    if let Behaviour::FailFirst(n, inner) = behaviour {
        behaviour = if index < n { *inner } else { Behaviour::Ok };
    }
    match behaviour {
        Behaviour::Ok
        | Behaviour::FailFirst(..)
        | Behaviour::ForMethod(..)
        | Behaviour::ForPath(..) => ok(name),
        Behaviour::Status(s) => respond(name, s, &[], format!("status {s} from {name}")),
        Behaviour::Respond {
            status,
            headers,
            body,
        } => respond(name, status, &headers, body),
        Behaviour::Delay(d) => {
            sleep(d).await;
            ok(name)
        }
        Behaviour::Hang => std::future::pending().await,
        Behaviour::Gate => {
            let mut rx = shared.gate.subscribe();
            let _ = rx.wait_for(|open| *open).await;
            ok(name)
        }
        Behaviour::Echo => {
            let headers: BTreeMap<&str, &str> = rec
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let body = serde_json::json!({
                "upstream": name,
                "method": rec.method,
                "path": rec.path,
                "headers": headers,
                "body": String::from_utf8_lossy(&rec.body),
            });
            respond(
                name,
                200,
                &[("content-type".into(), "application/json".into())],
                body.to_string(),
            )
        }
    }
}
