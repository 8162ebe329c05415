//! Black-box harness: the real `palisade` binary on free loopback ports, in front of real
//! HTTP upstream servers started by the test.
//!
//! Everything started here is stopped on drop: the proxy child process is killed and
//! waited for, upstream servers are shut down with their connections. Every wait is a
//! bounded polling loop.

#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, timeout};

/// Milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Reads (and discards) from `stream` until the other side closes it or `limit` passes;
/// true if it was closed in time.
pub async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let closed = timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    closed.is_ok()
}

/// A loopback port nobody listens on right now (bound, read, closed).
pub fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A loopback address nobody listens on: requests to it fail to connect.
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Polls `f` every 10 ms until it returns `Some`, for at most `limit`; panics naming
/// `what` when the limit passes.
pub async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = f().await {
            return t;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        sleep(ms(10)).await;
    }
}

/// A unique file in the temp dir.
pub fn temp_path(stem: &str, ext: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "palisade-test-{}-{stem}-{n}.{ext}",
        std::process::id()
    ))
}

// ---------------------------------------------------------------------------------------
// Upstream test servers
// ---------------------------------------------------------------------------------------

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

type Body = Full<Bytes>;

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
    if let Behaviour::FailFirst(n, inner) = behaviour {
        behaviour = if index < n { *inner } else { Behaviour::Ok };
    }
    match behaviour {
        Behaviour::Ok | Behaviour::FailFirst(..) => ok(name),
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

// ---------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// From sending the request to having the whole body.
    pub elapsed: Duration,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `x-palisade-reason`.
    pub fn reason(&self) -> Option<&str> {
        self.header("x-palisade-reason")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A pooling HTTP/1 client with a bound on every call.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Body>,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    pub fn new() -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(secs(5))
            .build_http();
        Http { client }
    }

    /// Sends a request; `Err` on a transport failure or after 20 s.
    pub async fn try_send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Resp, String> {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).expect("request");
        let start = Instant::now();
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("{e:?}"))?
                .to_bytes();
            Ok(Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
                elapsed: start.elapsed(),
            })
        };
        match timeout(secs(20), call).await {
            Ok(r) => r,
            Err(_) => Err(format!("{method} {url}: no response within 20s")),
        }
    }

    /// Sends a request; panics on a transport failure.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        self.try_send(method, url, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    pub async fn get(&self, url: &str) -> Resp {
        self.send("GET", url, &[], Bytes::new()).await
    }
}

/// One HTTP/1 connection, kept: every request goes over the same socket.
pub struct Conn {
    send: hyper::client::conn::http1::SendRequest<Body>,
    task: JoinHandle<()>,
    host: String,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Conn {
            send,
            task,
            host: addr.to_string(),
        }
    }

    /// Sends a GET on this connection; `Err` if the connection is gone.
    pub async fn get(&mut self, path: &str) -> Result<Resp, String> {
        timeout(secs(20), self.send.ready())
            .await
            .map_err(|_| "connection not ready within 20s".to_owned())?
            .map_err(|e| format!("connection closed: {e:?}"))?;
        let req = Request::builder()
            .uri(path)
            .header("host", &self.host)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let start = Instant::now();
        let call = async {
            let resp = self
                .send
                .send_request(req)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("{e:?}"))?
                .to_bytes();
            Ok(Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
                elapsed: start.elapsed(),
            })
        };
        timeout(secs(20), call)
            .await
            .unwrap_or_else(|_| Err(format!("GET {path}: no response within 20s")))
    }

    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// Prometheus text
// ---------------------------------------------------------------------------------------

/// One sample: labels and value.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample in a Prometheus text exposition.
pub fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name_labels, value) = match line.rfind('}') {
            Some(close) => (&line[..=close], line[close + 1..].trim()),
            None => match line.split_once(char::is_whitespace) {
                Some((n, v)) => (n, v.trim()),
                None => continue,
            },
        };
        let value = value.split_whitespace().next().unwrap_or("");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        let (name, labels) = match name_labels.find('{') {
            Some(open) => (
                &name_labels[..open],
                parse_labels(&name_labels[open + 1..name_labels.len() - 1]),
            ),
            None => (name_labels, BTreeMap::new()),
        };
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_owned();
        rest = &rest[eq + 1..];
        let Some(stripped) = rest.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut chars = stripped.char_indices();
        let mut end = stripped.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key, value);
        rest = &stripped[end..];
    }
    out
}

/// Samples named exactly `name` whose labels include every `(key, value)` of `with`.
pub fn matching<'a>(all: &'a [Sample], name: &str, with: &[(&str, &str)]) -> Vec<&'a Sample> {
    all.iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The sum of those samples.
pub fn sum(all: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    matching(all, name, with).iter().map(|s| s.value).sum()
}

/// Whether any sample's name is `name` or starts with `name_` (histogram series).
pub fn has_metric(all: &[Sample], name: &str) -> bool {
    all.iter().any(|s| {
        s.name == name
            || s.name
                .strip_prefix(name)
                .is_some_and(|r| r.starts_with('_'))
    })
}

// ---------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------

/// The path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_palisade")
}

/// A running `palisade run`; killed and waited for on drop.
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    log_path: PathBuf,
    pub http: Http,
    exited: Option<ExitStatus>,
}

/// Extra lines for the `[listener]` and `[admin]` sections.
#[derive(Clone, Debug, Default)]
pub struct Sections {
    pub listener: String,
    pub admin: String,
}

impl Proxy {
    /// Starts the proxy with `body` (upstreams and routes) after generated `[listener]`
    /// and `[admin]` sections, and waits until `/health/live` answers 200.
    pub async fn start(body: &str) -> Proxy {
        Self::start_with(&Sections::default(), body).await
    }

    pub async fn start_with(sections: &Sections, body: &str) -> Proxy {
        // A port found free may be taken by another test before the proxy binds it:
        // then start again on other ports (bounded).
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut proxy = Self::spawn(sections, body);
            match proxy.wait_live().await {
                Ok(()) => return proxy,
                Err(log) if attempt < 5 && log.contains("Address already in use") => continue,
                Err(log) => panic!("palisade did not become live; log:\n{log}"),
            }
        }
    }

    fn spawn(sections: &Sections, body: &str) -> Proxy {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config_path = temp_path("config", "toml");
        let log_path = temp_path("log", "txt");
        std::fs::write(&config_path, config_text(addr, admin, sections, body))
            .expect("write config");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(bin())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn palisade");
        Proxy {
            child,
            addr,
            admin,
            config_path,
            log_path,
            http: Http::new(),
            exited: None,
        }
    }

    /// Polls `/health/live` until 200 (10 s at most); `Err(log)` if the process exits
    /// first or the time passes.
    async fn wait_live(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + secs(10);
        let url = self.admin_url("/health/live");
        loop {
            if let Some(status) = self.try_wait() {
                return Err(format!(
                    "exited ({status}) before it was live\n{}",
                    self.log()
                ));
            }
            if let Ok(r) = self.http.try_send("GET", &url, &[], Bytes::new()).await
                && r.status == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("not live within 10s\n{}", self.log()));
            }
            sleep(ms(10)).await;
        }
    }

    /// Replaces the config file (same listener and admin ports).
    pub fn rewrite_config(&self, sections: &Sections, body: &str) {
        std::fs::write(
            &self.config_path,
            config_text(self.addr, self.admin, sections, body),
        )
        .expect("rewrite config");
    }

    /// Writes `text` verbatim as the config file.
    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("write config");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_wait() {
                return s;
            }
            if Instant::now() >= deadline {
                panic!(
                    "palisade did not exit within {limit:?}; log:\n{}",
                    self.log()
                );
            }
            sleep(ms(10)).await;
        }
    }

    /// What the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.http.get(&self.url(path)).await
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        self.http.send(method, &self.url(path), headers, body).await
    }

    pub async fn admin_get(&self, path: &str) -> Resp {
        self.http.get(&self.admin_url(path)).await
    }

    pub async fn admin_post(&self, path: &str, json: &str) -> Resp {
        self.admin_post_with(path, &[], json).await
    }

    pub async fn admin_post_with(&self, path: &str, headers: &[(&str, &str)], json: &str) -> Resp {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.http
            .send(
                "POST",
                &self.admin_url(path),
                &h,
                Bytes::from(json.to_owned()),
            )
            .await
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> Vec<Sample> {
        let r = self.admin_get("/metrics").await;
        assert_eq!(r.status, 200, "GET /metrics: {}", r.text());
        samples(&r.text())
    }

    /// `GET /admin/state`, parsed.
    pub async fn state(&self) -> serde_json::Value {
        let r = self.admin_get("/admin/state").await;
        assert_eq!(r.status, 200, "GET /admin/state: {}", r.text());
        r.json()
    }

    /// The breaker state of every endpoint of upstream `name`, by address (endpoints
    /// without a breaker of their own are left out).
    pub async fn breaker_states(&self, name: &str) -> BTreeMap<String, String> {
        endpoints_of(&self.state().await, name)
            .iter()
            .filter(|e| e["breaker"].is_object())
            .map(|e| {
                (
                    e["address"].as_str().unwrap_or_default().to_owned(),
                    e["breaker"]["state"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }

    /// Every breaker state of upstream `name`: its own breaker (scope `upstream`, key
    /// `upstream`) and its endpoints' (by address). Never empty.
    pub async fn all_breaker_states(&self, name: &str) -> BTreeMap<String, String> {
        let state = self.state().await;
        let mut out = BTreeMap::new();
        let upstream = state["upstreams"]
            .as_array()
            .and_then(|us| us.iter().find(|u| u["name"] == name))
            .unwrap_or_else(|| panic!("no upstream {name:?} in {state}"));
        if let Some(s) = upstream["breaker"]["state"].as_str() {
            out.insert("upstream".to_owned(), s.to_owned());
        }
        for e in endpoints_of(&state, name) {
            if let Some(s) = e["breaker"]["state"].as_str() {
                out.insert(
                    e["address"].as_str().unwrap_or_default().to_owned(),
                    s.to_owned(),
                );
            }
        }
        assert!(!out.is_empty(), "no breaker state for {name:?} in {state}");
        out
    }
}

/// The endpoints array of upstream `name` in an `/admin/state` document.
pub fn endpoints_of(state: &serde_json::Value, name: &str) -> Vec<serde_json::Value> {
    state["upstreams"]
        .as_array()
        .unwrap_or_else(|| panic!("no upstreams array in {state}"))
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no upstream {name:?} in {state}"))["endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("no endpoints for {name:?} in {state}"))
        .clone()
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- palisade log ({}) ----\n{}",
                self.log_path.display(),
                self.log()
            );
        }
        let _ = std::fs::remove_file(&self.config_path);
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// The whole config file.
pub fn config_text(addr: SocketAddr, admin: SocketAddr, sections: &Sections, body: &str) -> String {
    format!(
        "[listener]\naddress = \"{addr}\"\n{}\n[admin]\naddress = \"{admin}\"\n{}\n{body}\n",
        sections.listener, sections.admin
    )
}

/// `"a", "b"` for a TOML array of addresses.
pub fn list(upstreams: &[&Upstream]) -> String {
    upstreams
        .iter()
        .map(|u| format!("\"{}\"", u.addr()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `palisade check` said.
#[derive(Debug)]
pub struct CheckOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The config file's path, as passed on the command line.
    pub path: String,
}

/// `palisade check --config FILE` on `text` (bounded: killed after 10 s).
pub async fn check(text: &str) -> CheckOutput {
    let path = temp_path("check", "toml");
    std::fs::write(&path, text).expect("write config");
    let out = check_file(&path).await;
    let _ = std::fs::remove_file(&path);
    out
}

/// `palisade check --config PATH` (bounded: killed after 10 s).
pub async fn check_file(path: &std::path::Path) -> CheckOutput {
    let out_path = temp_path("check-stdout", "txt");
    let err_path = temp_path("check-stderr", "txt");
    let mut child = Command::new(bin())
        .arg("check")
        .arg("--config")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("run palisade check");
    let deadline = Instant::now() + secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("palisade check did not exit within 10s");
        }
        sleep(ms(10)).await;
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    for p in [&out_path, &err_path] {
        let _ = std::fs::remove_file(p);
    }
    CheckOutput {
        status,
        stdout,
        stderr,
        path: path.display().to_string(),
    }
}
