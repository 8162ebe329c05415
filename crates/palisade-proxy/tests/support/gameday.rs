//! `palisade gameday` run as a child process: experiment files written to temp files,
//! the run's output and journal read back, and the sidecar config the game days put in
//! front of a test upstream.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::timeout;

use super::{Upstream, bin, secs, temp_path};

/// What a run printed and how it ended.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub out: PathBuf,
}

impl Drop for Ran {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.out);
    }
}

impl Ran {
    pub fn journal(&self) -> Value {
        let text = std::fs::read_to_string(self.out.join("journal.json")).expect("journal.json");
        serde_json::from_str(&text).expect("a JSON journal")
    }
}

/// Writes `experiment` and runs `palisade gameday` on it (bounded by 60 s).
pub async fn gameday(experiment: &str) -> Ran {
    gameday_file(experiment, "toml").await
}

/// Writes `experiment` as a `.ext` file (`toml`, or a Chaos Toolkit `json`, `yaml`) and
/// runs `palisade gameday` on it (bounded by 60 s).
pub async fn gameday_file(experiment: &str, ext: &str) -> Ran {
    let file = temp_path("gameday", ext);
    std::fs::write(&file, experiment).expect("write the experiment");
    let out = temp_path("gameday-out", "d");
    let run = Command::new(bin())
        .arg("gameday")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .output();
    let output = timeout(secs(60), run)
        .await
        .expect("the run ends")
        .expect("it runs");
    let _ = std::fs::remove_file(&file);
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        out,
    }
}

/// An experiment against `upstream` through the run's proxy on `proxy_port`: 50 requests
/// a second for `duration`, then `rest` (faults, hypotheses, targets).
pub fn experiment(upstream: &Upstream, proxy_port: u16, duration: &str, rest: &str) -> String {
    format!(
        r#"
title = "test"
seed = 7
duration = "{duration}"

[[proxy]]
name = "app"
listen = "127.0.0.1:{proxy_port}"
upstream = "{upstream}"

[load]
url = "http://127.0.0.1:{proxy_port}/data"
rate = 50
timeout = "1s"
{rest}
"#,
        upstream = upstream.addr()
    )
}

pub fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(marker)
            })
        })
        .collect()
}

pub async fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).await.is_ok()
}

pub fn write_sidecar_config(listen: u16, admin: u16, endpoint: u16) -> PathBuf {
    let path = temp_path("gameday-sidecar", "toml");
    let text = format!(
        r#"
[listener]
address = "127.0.0.1:{listen}"
[admin]
address = "127.0.0.1:{admin}"
[[upstream]]
name = "app"
endpoints = ["127.0.0.1:{endpoint}"]
[upstream.timeout]
total = "1s"
per_try = "500ms"
[upstream.circuit_breaker]
window = "count"
size = 10
minimum_calls = 5
failure_rate = 0.5
open_for = "500ms"
[[route]]
path_prefix = "/"
upstream = "app"
"#
    );
    std::fs::write(&path, text).expect("write the sidecar's config");
    path
}

/// Whether `program` is installed; outside CI a missing one skips loudly, in CI it fails.
pub fn installed(program: &str, package: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is not installed: .ci/run installs it (apt-get install {package})"
        );
        eprintln!("\n*** SKIPPED: {program} is not installed; apt-get install {package} ***\n");
    }
    found
}

/// Starts `palisade gameday FILE --out OUT` in the background, its output discarded (for
/// tests that kill the runner).
pub fn spawn_runner(file: &std::path::Path, out: &std::path::Path) -> tokio::process::Child {
    Command::new(bin())
        .arg("gameday")
        .arg(file)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the runner starts")
}
