//! The processes a game day starts: each through a guard (`guard.rs`), its output to a log
//! file in the output directory, waited for until ready; signalled by the faults; all
//! stopped at the end.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::experiment::Target;
use super::guard::signal_group;
use super::http::Client;

/// The program of `command`: the runner's own binary for `palisade`, so an experiment
/// runs the sidecar, the demo's upstreams and the fault proxy of the runner's version
/// wherever it is installed.
fn program<'c>(command: &'c [String], runner: &'c Path) -> Option<&'c std::ffi::OsStr> {
    let first = command.first()?;
    Some(if first == "palisade" {
        runner.as_os_str()
    } else {
        std::ffi::OsStr::new(first)
    })
}

/// Waits for a target the run does not start (no command): a service already running,
/// found at its `ready` address (checked before the run).
async fn wait_for_address(spec: &Target, client: &Client) -> Result<(), String> {
    let ready = spec.ready.as_deref().unwrap_or_default();
    let until = Instant::now() + spec.ready_timeout;
    while Instant::now() < until {
        if is_up(ready, client).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "target {} not ready at {ready} within {:?} (an address the run does not start)",
        spec.name, spec.ready_timeout
    ))
}

/// Whether `ready` answers: `tcp://host:port` accepts, or the URL answers at all.
async fn is_up(ready: &str, client: &Client) -> bool {
    match ready.strip_prefix("tcp://") {
        Some(address) => TcpStream::connect(address).await.is_ok(),
        None => client.get(ready, Duration::from_millis(500)).await.is_ok(),
    }
}

/// A started target.
pub(super) struct Running {
    pub(super) spec: Target,
    guard: Child,
    pid: u32,
    log: PathBuf,
}

/// Every started target; dropping this kills them all.
pub(super) struct Targets {
    running: Vec<Running>,
    dir: PathBuf,
}

// === impl Targets ===

impl Targets {
    /// Starts each of `specs` in order, each ready before the next starts; on a failure,
    /// the ones started are stopped and the error carries the failing one's output.
    pub(super) async fn start(
        specs: &[Target],
        dir: &Path,
        client: &Client,
    ) -> Result<Self, String> {
        let mut targets = Self {
            running: Vec::new(),
            dir: dir.to_owned(),
        };
        for spec in specs {
            if spec.command.is_empty() {
                wait_for_address(spec, client).await?;
                continue;
            }
            let running = targets.launch(spec, &[], client).await?;
            targets.running.push(running);
        }
        Ok(targets)
    }

    /// Starts `spec`'s command with `env` added to its environment, and waits until it
    /// is ready.
    async fn launch(
        &self,
        spec: &Target,
        env: &[(String, String)],
        client: &Client,
    ) -> Result<Running, String> {
        let log = self.dir.join(format!("{}.log", spec.name));
        let pid_file = self.dir.join(format!("{}.pid", spec.name));
        let _ = std::fs::remove_file(&pid_file);
        let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let binary = std::env::current_exe().map_err(|e| format!("the runner's own path: {e}"))?;
        let guard = Command::new(&binary)
            .arg("gameday-guard")
            .arg(std::process::id().to_string())
            .arg(&pid_file)
            .arg("--")
            .args(program(&spec.command, &binary))
            .args(spec.command.iter().skip(1))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("target {}: cannot start: {e}", spec.name))?;
        let mut running = Running {
            spec: spec.clone(),
            guard,
            pid: 0,
            log,
        };
        running.pid = running.wait_for_pid(&pid_file).await?;
        let _ = std::fs::remove_file(&pid_file);
        running.wait_ready(client).await?;
        Ok(running)
    }

    fn find(&mut self, name: &str) -> Result<&mut Running, String> {
        self.running
            .iter_mut()
            .find(|r| r.spec.name == name)
            .ok_or_else(|| format!("no target {name:?}"))
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`) to target `name` and every process it
    /// started (its process group).
    pub(super) fn signal(&mut self, name: &str, signal: &str) -> Result<(), String> {
        let pid = self.find(name)?.pid;
        if signal_group(pid, signal) {
            Ok(())
        } else {
            Err(format!("kill -{signal} -- -{pid} failed"))
        }
    }

    /// Starts target `name` again, with `env` added to its environment, and waits until
    /// it is ready; the running one (if it still runs) is stopped first.
    pub(super) async fn restart(
        &mut self,
        name: &str,
        env: &[(String, String)],
        client: &Client,
    ) -> Result<(), String> {
        let old = self.find(name)?;
        old.stop();
        let spec = old.spec.clone();
        let fresh = self.launch(&spec, env, client).await?;
        *self.find(name)? = fresh;
        Ok(())
    }

    /// Starts a process that is no target of the file (a fault's own, like stress-ng, or
    /// the run's Prometheus) under the same guard, as `name`, ready as `ready` says.
    pub(super) async fn add(
        &mut self,
        name: &str,
        command: Vec<String>,
        ready: Option<String>,
        ready_timeout: Duration,
        client: &Client,
    ) -> Result<(), String> {
        let spec = Target {
            name: name.to_owned(),
            command,
            ready,
            ready_timeout,
        };
        let running = self.launch(&spec, &[], client).await?;
        self.running.push(running);
        Ok(())
    }

    /// Stops and forgets the process `name` (one [`add`](Self::add) started).
    pub(super) fn remove(&mut self, name: &str) -> Result<(), String> {
        let index = self
            .running
            .iter()
            .position(|r| r.spec.name == name)
            .ok_or_else(|| format!("no process {name:?}"))?;
        self.running.remove(index).stop();
        Ok(())
    }

    /// Stops every target: SIGCONT (a stopped one), then SIGKILL, and waits for them.
    pub(super) fn stop_all(&mut self) {
        for running in &mut self.running {
            running.stop();
        }
        self.running.clear();
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        self.stop_all();
    }
}

// === impl Running ===

impl Running {
    async fn wait_for_pid(&mut self, pid_file: &Path) -> Result<u32, String> {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                return Ok(pid);
            }
            if let Ok(Some(_)) = self.guard.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(self.failed("did not start"))
    }

    async fn wait_ready(&mut self, client: &Client) -> Result<(), String> {
        let Some(ready) = self.spec.ready.clone() else {
            return Ok(());
        };
        let until = Instant::now() + self.spec.ready_timeout;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.guard.try_wait() {
                return Err(self.failed(&format!("exited ({status}) before it was ready")));
            }
            if is_up(&ready, client).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let why = format!("not ready at {ready} within {:?}", self.spec.ready_timeout);
        Err(self.failed(&why))
    }

    /// Why it failed, with the end of its output.
    fn failed(&mut self, why: &str) -> String {
        self.stop();
        let output = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = output.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "target {} {why}; its output ({}):\n{}",
            self.spec.name,
            self.log.display(),
            tail.join("\n")
        )
    }

    fn stop(&mut self) {
        if self.pid != 0 {
            signal_group(self.pid, "CONT");
            signal_group(self.pid, "KILL");
        }
        let _ = self.guard.kill();
        let _ = self.guard.wait();
    }
}
