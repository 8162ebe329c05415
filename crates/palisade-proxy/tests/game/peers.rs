//! The outage game's peers — HAProxy, nginx and Caddy, from Debian's packages — each given
//! its best resilience settings for this service, with the same bounds as palisade's
//! (per-try 250 ms, one retry on another endpoint, health checks every 500 ms where the
//! proxy has them, a wait for a free endpoint of at most 1 s where it can wait):
//!
//! - HAProxy: a queue at the proxy in front of each endpoint's real capacity (`maxconn`),
//!   critical requests first in it (`set-priority-class`); active health checks; passive
//!   ejection (`observe layer7`); a retry elsewhere on connect failures, timeouts and 5xx
//!   (`retry-on`, `option redispatch`).
//! - nginx (open source): `least_conn` with each endpoint's capacity as `max_conns`;
//!   passive ejection (`max_fails`); a retry elsewhere on errors, timeouts and 5xx
//!   (`proxy_next_upstream`). It has no active checks and no queue.
//! - Caddy: `least_conn`, an endpoint at its capacity counts as unavailable
//!   (`unhealthy_request_count`) and a request waits up to 1 s for one that is
//!   (`lb_try_duration`); active and passive health checks.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::support::{free_port, temp_path};

#[derive(Clone, Copy, Debug)]
pub enum Peer {
    Haproxy,
    Nginx,
    Caddy,
}

/// A peer's process, killed on drop.
pub struct Running {
    child: Child,
    addr: SocketAddr,
}

// === impl Peer ===

impl Peer {
    pub const ALL: [Peer; 3] = [Peer::Haproxy, Peer::Nginx, Peer::Caddy];

    pub fn name(self) -> &'static str {
        match self {
            Peer::Haproxy => "haproxy",
            Peer::Nginx => "nginx",
            Peer::Caddy => "caddy",
        }
    }

    /// Its binary answers `-v` / `version`.
    pub fn installed(self) -> bool {
        let arg = match self {
            Peer::Caddy => "version",
            _ => "-v",
        };
        Command::new(self.name())
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn config(self, addr: SocketAddr, endpoints: &[SocketAddr], capacity: usize) -> String {
        match self {
            Peer::Haproxy => haproxy_config(addr, endpoints, capacity),
            Peer::Nginx => nginx_config(addr, endpoints, capacity),
            Peer::Caddy => caddy_config(addr, endpoints, capacity),
        }
    }

    /// The command that checks `config`, and the one that runs it in the foreground.
    fn commands(self, config: &Path) -> [Command; 2] {
        let mut check = Command::new(self.name());
        let mut run = Command::new(self.name());
        match self {
            Peer::Haproxy => {
                check.arg("-c").arg("-f").arg(config);
                run.arg("-db").arg("-f").arg(config);
            }
            Peer::Nginx => {
                check.arg("-t").arg("-c").arg(config);
                run.arg("-c").arg(config);
            }
            Peer::Caddy => {
                for cmd in [&mut check, &mut run] {
                    cmd.env("XDG_DATA_HOME", std::env::temp_dir())
                        .env("XDG_CONFIG_HOME", std::env::temp_dir());
                }
                check.args(["validate", "--adapter", "caddyfile", "--config"]);
                check.arg(config);
                run.args(["run", "--adapter", "caddyfile", "--config"]);
                run.arg(config);
            }
        }
        [check, run]
    }

    /// Starts the peer in front of `endpoints`; panics with its own words when it refuses
    /// the config or does not listen.
    pub async fn start(self, endpoints: &[SocketAddr], capacity: usize) -> Running {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = temp_path(self.name(), "conf");
        std::fs::write(&config, self.config(addr, endpoints, capacity)).expect("write config");
        let [mut check, mut run] = self.commands(&config);
        let checked = check.output().expect("run the config check");
        assert!(
            checked.status.success(),
            "{} refused its config:\n{}{}",
            self.name(),
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
        let log_path = temp_path(self.name(), "log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = run
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn the peer");
        let mut running = Running { child, addr };
        for _ in 0..1000 {
            if let Ok(Some(status)) = running.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!(
                    "{} exited ({status}) before it listened:\n{log}",
                    self.name()
                );
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return running;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} did not listen on {addr} within 10 s", self.name())
    }
}

fn haproxy_config(addr: SocketAddr, endpoints: &[SocketAddr], capacity: usize) -> String {
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

fn nginx_config(addr: SocketAddr, endpoints: &[SocketAddr], capacity: usize) -> String {
    let servers: String = endpoints
        .iter()
        .map(|e| format!("        server {e} max_conns={capacity} max_fails=10 fail_timeout=1s;\n"))
        .collect();
    let dir = std::env::temp_dir();
    let dir = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {dir}/palisade-game-nginx-{port}.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir};
    proxy_temp_path {dir};
    upstream endpoints {{
        least_conn;
{servers}        keepalive 64;
    }}
    server {{
        listen {addr};
        location / {{
            proxy_pass http://endpoints;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 250ms;
            proxy_send_timeout 250ms;
            proxy_read_timeout 250ms;
            proxy_next_upstream error timeout http_500 http_502 http_503 http_504;
            proxy_next_upstream_tries 2;
            proxy_next_upstream_timeout 1s;
        }}
    }}
}}
"#,
        port = addr.port()
    )
}

fn caddy_config(addr: SocketAddr, endpoints: &[SocketAddr], capacity: usize) -> String {
    let list: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    format!(
        r#"{{
    admin off
    auto_https off
}}

http://{addr} {{
    reverse_proxy {} {{
        lb_policy least_conn
        lb_try_duration 1s
        lb_try_interval 5ms
        fail_duration 1s
        max_fails 10
        unhealthy_status 5xx
        unhealthy_request_count {capacity}
        health_uri /health/ready
        health_interval 500ms
        health_timeout 250ms
        transport http {{
            dial_timeout 250ms
            response_header_timeout 250ms
        }}
    }}
}}
"#,
        list.join(" ")
    )
}

// === impl Running ===

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
