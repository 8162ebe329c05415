//! The proxy under test: `palisade run` started as a child process on free loopback
//! ports with a config the test writes, and `palisade check` on a config text.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, sleep};

use super::client::{Http, Resp};
use super::prometheus::{Sample, samples};
use super::upstream::Upstream;
use super::{free_port, ms, secs, temp_path};

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
    /// Environment variables for the process (e.g. libfaketime's `LD_PRELOAD` and
    /// `FAKETIME`: set on the process itself, so that killing it kills the sidecar).
    pub env: Vec<(String, String)>,
}

impl Proxy {
    /// Starts the proxy with `body` (upstreams and routes) after generated `[listener]`
    /// and `[admin]` sections, and waits until `/health/live` answers 200.
    pub async fn start(body: &str) -> Proxy {
        Self::start_with(&Sections::default(), body).await
    }

    pub async fn start_with(sections: &Sections, body: &str) -> Proxy {
        Self::start_bin(bin(), sections, body).await
    }

    /// As [`Proxy::start_with`], running the binary at `program` (a release build, for
    /// a measurement).
    pub async fn start_bin(program: &str, sections: &Sections, body: &str) -> Proxy {
        // A port found free may be taken by another test before the proxy binds it:
        // then start again on other ports (bounded).
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut proxy = Self::spawn(program, sections, body);
            match proxy.wait_live().await {
                Ok(()) => return proxy,
                Err(log) if attempt < 5 && log.contains("Address already in use") => continue,
                Err(log) => panic!("palisade did not become live; log:\n{log}"),
            }
        }
    }

    fn spawn(program: &str, sections: &Sections, body: &str) -> Proxy {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config_path = temp_path("config", "toml");
        let log_path = temp_path("log", "txt");
        std::fs::write(&config_path, config_text(addr, admin, sections, body))
            .expect("write config");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(program)
            .envs(sections.env.iter().map(|(k, v)| (k, v)))
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

    /// Its config file.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// Runs `palisade ARGS --config` with its config file (bounded: 10 s); exit status and
    /// stdout, stderr.
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let mut command = tokio::process::Command::new(bin());
        command
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .kill_on_drop(true);
        let out = tokio::time::timeout(secs(10), command.output())
            .await
            .expect("palisade CLI within 10 s")
            .expect("run palisade CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
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

    /// Sets upstream `name`'s breakers to `state` (open, closed, auto) through the admin
    /// API; panics unless it is accepted.
    pub async fn set_circuit(&self, name: &str, state: &str) {
        let path = format!("/admin/upstream/{name}/circuit");
        let r = self
            .admin_post(&path, &format!(r#"{{"state":"{state}"}}"#))
            .await;
        assert!((200..300).contains(&r.status), "{path} {state}: {r:?}");
    }

    /// Sets route `index`'s fault injection through the admin API (aborts answered 503);
    /// panics unless it is accepted.
    pub async fn set_fault(
        &self,
        index: usize,
        abort_percent: u32,
        delay_percent: u32,
        delay: &str,
    ) {
        let path = format!("/admin/route/{index}/fault");
        let json = format!(
            r#"{{"abort_percent":{abort_percent},"abort_status":503,"delay_percent":{delay_percent},"delay":"{delay}"}}"#
        );
        let r = self.admin_post(&path, &json).await;
        assert!((200..300).contains(&r.status), "{path} {json}: {r:?}");
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

/// What `palisade check` (or another command run to its end) said.
#[derive(Debug)]
pub struct CheckOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The config file's path, as passed on the command line (`check`).
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
    let mut out = palisade(&["check".as_ref(), "--config".as_ref(), path.as_os_str()]).await;
    out.path = path.display().to_string();
    out
}

/// `palisade ARGS…` run to its end (bounded: killed after 10 s): its exit status and
/// output.
pub async fn palisade(args: &[&std::ffi::OsStr]) -> CheckOutput {
    let out_path = temp_path("palisade-stdout", "txt");
    let err_path = temp_path("palisade-stderr", "txt");
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("run palisade");
    let deadline = Instant::now() + secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("palisade {args:?} did not exit within 10s");
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
        path: String::new(),
    }
}
