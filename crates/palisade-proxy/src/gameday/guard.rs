//! The guard between the runner and each process it starts (`palisade gameday-guard`):
//! it starts the process, writes its pid to a file, and kills it as soon as the runner is
//! gone — so a runner killed with SIGKILL, which runs no cleanup, still leaves no process
//! behind. The runner signals the process itself by that pid.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// How often the guard looks for its runner.
const POLL: Duration = Duration::from_millis(100);

/// Runs `command` for the runner of pid `runner`, writing its pid to `pid_file`; exits
/// when it does, with its status, or kills it when the runner is gone.
pub fn run(runner: u32, pid_file: &Path, command: &[String]) -> ExitCode {
    let Some((program, args)) = command.split_first() else {
        eprintln!("gameday-guard: no command");
        return ExitCode::from(2);
    };
    // Its own process group, so what it starts in turn is signalled and killed with it.
    let mut child = match Command::new(program).args(args).process_group(0).spawn() {
        Ok(child) => child,
        Err(error) => {
            eprintln!("gameday-guard: cannot start {program}: {error}");
            return ExitCode::from(127);
        }
    };
    if let Err(error) = std::fs::write(pid_file, child.id().to_string()) {
        eprintln!(
            "gameday-guard: cannot write {}: {error}",
            pid_file.display()
        );
        signal_group(child.id(), "KILL");
        let _ = child.wait();
        return ExitCode::from(2);
    }
    let runner_alive = || Path::new(&format!("/proc/{runner}")).exists();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let code = status.code().unwrap_or(1).clamp(0, 255) as u8;
                return ExitCode::from(code);
            }
            Ok(None) if runner_alive() => pause(),
            _ => {
                // The runner is gone: take the process and its group with it (a stopped
                // one too).
                signal_group(child.id(), "KILL");
                let _ = child.wait();
                return ExitCode::from(1);
            }
        }
    }
}

/// Sends `signal` (`KILL`, `STOP`, `CONT`) to the process group led by `pid` (a guarded
/// process leads its own); false when `kill` failed.
pub(crate) fn signal_group(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The guard's one wait: it runs no event loop.
#[allow(clippy::disallowed_methods)]
fn pause() {
    std::thread::sleep(POLL);
}
