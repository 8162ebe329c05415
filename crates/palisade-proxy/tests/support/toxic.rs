//! `palisade toxic`, the fault proxy, as a test drives it: its Toxiproxy-compatible API
//! on a loopback port.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use tokio::time::sleep;

use super::{Http, bin, free_port, ms};

/// A running `palisade toxic`; killed on drop.
pub struct Toxic {
    child: Child,
    api: String,
    pub port: u16,
    pub http: Http,
}

impl Toxic {
    pub async fn start() -> Toxic {
        let port = free_port();
        let child = Command::new(bin())
            .args(["toxic", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("palisade toxic starts");
        let toxic = Toxic {
            child,
            api: format!("http://127.0.0.1:{port}"),
            port,
            http: Http::new(),
        };
        for _ in 0..200 {
            if toxic
                .http
                .try_send("GET", &toxic.url("/version"), &[], "")
                .await
                .is_ok()
            {
                return toxic;
            }
            sleep(ms(25)).await;
        }
        panic!("palisade toxic did not answer on port {port}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// Sends `body` (JSON) with `method`; the status and the JSON answer (null if none).
    pub async fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let resp = self.http.send(method, &self.url(path), &[], body).await;
        let json = if resp.body.is_empty() {
            Value::Null
        } else {
            resp.json()
        };
        (resp.status, json)
    }

    /// Creates proxy `name` to `upstream`; its listen address.
    pub async fn proxy(&self, name: &str, upstream: SocketAddr) -> SocketAddr {
        let (status, proxy) = self
            .call(
                "POST",
                "/proxies",
                json!({"name": name, "upstream": upstream.to_string()}),
            )
            .await;
        assert_eq!(status, 201, "{proxy}");
        proxy["listen"]
            .as_str()
            .expect("listen")
            .parse()
            .expect("an address")
    }

    pub async fn toxic(&self, proxy: &str, toxic: Value) {
        let (status, answer) = self
            .call("POST", &format!("/proxies/{proxy}/toxics"), toxic)
            .await;
        assert_eq!(status, 200, "{answer}");
    }
}

impl Drop for Toxic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
