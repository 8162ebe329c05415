//! A process provider's program, run through the game day's guard (`palisade
//! gameday-guard`) in a process group of its own: if the runner is killed outright the
//! guard kills the group within 100 ms; if the activity is cancelled (Ctrl-C) or runs past
//! its timeout the runner kills the group itself. Whatever the program left running in
//! its group is killed when it ends, so an activity's processes never outlive it.
//!
//! The output is `{status, stdout, stderr}`; at most 64 KiB of each stream is kept (the
//! rest is read and dropped, so the program never blocks on a full pipe).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::time::Instant;

use super::provider::{Arguments, ProcessCall};
use crate::gameday::guard::signal_group;

/// The most of each output stream kept.
pub const MAX_OUTPUT: usize = 64 * 1024;
/// How long the output may still flow after the program ended.
const DRAIN: Duration = Duration::from_secs(1);

/// Why a process activity failed.
#[derive(Debug)]
pub(super) enum ProcessError {
    /// The guard could not be started or did not report the program's pid.
    Start(String),
    /// It ran past its timeout and was killed.
    Timeout,
}

impl std::fmt::Display for ProcessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessError::Start(why) => write!(f, "{why}"),
            ProcessError::Timeout => write!(f, "process activity took too long to complete"),
        }
    }
}

/// Kills the program's process group when dropped: on every way out, cancellation
/// included.
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            signal_group(pid, "CONT");
            signal_group(pid, "KILL");
        }
    }
}

/// Runs `spec` to its end; `pid_file` (in the output directory) is where the guard
/// reports the program's pid, removed afterwards.
pub(super) async fn run(spec: &ProcessCall, pid_file: &Path) -> Result<Value, ProcessError> {
    let (program, args): (PathBuf, Vec<String>) = match &spec.arguments {
        Arguments::List(list) => (spec.program.clone(), list.clone()),
        Arguments::Shell(line) => (
            PathBuf::from("/bin/sh"),
            vec!["-c".into(), format!("{} {line}", spec.program.display())],
        ),
    };
    let runner = std::env::current_exe()
        .map_err(|e| ProcessError::Start(format!("the runner's own path: {e}")))?;
    let _ = std::fs::remove_file(pid_file);
    let mut guard = Command::new(runner)
        .arg("gameday-guard")
        .arg(std::process::id().to_string())
        .arg(pid_file)
        .arg("--")
        .arg(&program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ProcessError::Start(format!("cannot start {}: {e}", program.display())))?;
    let stdout = guard.stdout.take().map(|s| tokio::spawn(bounded(s)));
    let stderr = guard.stderr.take().map(|s| tokio::spawn(bounded(s)));
    let mut group = Group(None);
    let started = Instant::now();
    // The guard writes the pid before it waits; it may also fail to start the program.
    while group.0.is_none() && started.elapsed() < Duration::from_secs(5) {
        group.0 = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        if group.0.is_some() || matches!(guard.try_wait(), Ok(Some(_))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = std::fs::remove_file(pid_file);
    let waited = match spec.timeout {
        Some(limit) => tokio::time::timeout(limit.saturating_sub(started.elapsed()), guard.wait())
            .await
            .ok(),
        None => Some(guard.wait().await),
    };
    // Ended or not, nothing of it outlives the activity.
    drop(group);
    let Some(status) = waited else {
        let _ = guard.kill().await;
        return Err(ProcessError::Timeout);
    };
    let status = status.map_err(|e| ProcessError::Start(format!("waiting for it: {e}")))?;
    let code = status.code().unwrap_or(-1);
    let read = |task: Option<tokio::task::JoinHandle<Vec<u8>>>| async move {
        match task {
            Some(task) => tokio::time::timeout(DRAIN, task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => Vec::new(),
        }
    };
    let stdout = read(stdout).await;
    let stderr = read(stderr).await;
    Ok(serde_json::json!({
        "status": code,
        "stdout": String::from_utf8_lossy(&stdout),
        "stderr": String::from_utf8_lossy(&stderr),
    }))
}

/// Reads `stream` to its end, keeping the first [`MAX_OUTPUT`] bytes.
async fn bounded(mut stream: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}
