//! HAProxy in the outage game, given its best resilience settings for this service: a
//! queue at the proxy in front of each endpoint's real capacity (`maxconn`), ordered by
//! criticality (`set-priority-class`); active health checks; passive ejection on errors
//! (`observe layer7`); one retry on another endpoint for connect failures, timeouts and
//! 5xx (`retry-on`, `option redispatch`); the same per-try and queue bounds as palisade's.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use super::support::{free_port, temp_path};

pub struct Haproxy {
    child: Child,
    pub addr: SocketAddr,
}

/// The binary, or `None` when the machine has none.
pub fn binary() -> Option<&'static str> {
    let found = Command::new("haproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then_some("haproxy")
}

fn config(addr: SocketAddr, endpoints: &[SocketAddr], capacity: usize) -> String {
    let servers: String = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| format!("    server e{i} {e} check\n"))
        .collect();
    format!(
        r#"global
    maxconn 4000

defaults
    mode http
    timeout connect 250ms
    timeout client 10s
    timeout server 250ms
    timeout queue 1s
    timeout check 250ms
    retries 1
    option redispatch 1
    retry-on all-retryable-errors

frontend game
    bind {addr}
    http-request set-priority-class int(-10) if {{ req.hdr(x-criticality) -m str critical }}
    default_backend endpoints

backend endpoints
    balance leastconn
    option httpchk GET /health/ready
    default-server inter 500ms fall 2 rise 1 maxconn {capacity} observe layer7 error-limit 10 on-error mark-down
{servers}"#
    )
}

// === impl Haproxy ===

impl Haproxy {
    /// Starts HAProxy in front of `endpoints`; panics with its own words when it refuses
    /// the config or does not listen.
    pub async fn start(endpoints: &[SocketAddr], capacity: usize) -> Haproxy {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let path = temp_path("haproxy", "cfg");
        std::fs::write(&path, config(addr, endpoints, capacity)).expect("write haproxy.cfg");
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("run haproxy -c");
        assert!(
            check.status.success(),
            "haproxy refused its config:\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let log_path = temp_path("haproxy", "log");
        let log = std::fs::File::create(&log_path).expect("haproxy log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn haproxy");
        let mut haproxy = Haproxy { child, addr };
        for _ in 0..1000 {
            if let Ok(Some(status)) = haproxy.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("haproxy exited ({status}) before it listened:\n{log}");
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return haproxy;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("haproxy did not listen on {addr} within 10 s")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
