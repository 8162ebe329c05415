//! The tests' HTTP client: a pooling one with a bound on every call, and a single kept
//! connection for tests about what happens on one socket.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use super::secs;
use super::upstream::Body;

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
    /// `resp` read whole; `elapsed` counts from `start`.
    async fn read(resp: Response<Incoming>, start: Instant) -> Result<Resp, String> {
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
    }

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
            Resp::read(resp, start).await
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
            Resp::read(resp, start).await
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
