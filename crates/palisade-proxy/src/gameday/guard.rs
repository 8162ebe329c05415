//! The guard between the runner and each process it starts (`palisade gameday-guard`):
//! it starts the process, writes its pid to a file, and kills it as soon as the runner is
//! gone — so a runner killed with SIGKILL, which runs no cleanup, still leaves no process
//! behind. The runner signals the process itself by that pid.

use std::path::Path;
use std::process::{Command, ExitCode};
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
    let mut child = match Command::new(program).args(args).spawn() {
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
        let _ = child.kill();
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
                // The runner is gone: take the process with it (a stopped one too).
                let _ = child.kill();
                let _ = child.wait();
                return ExitCode::from(1);
            }
        }
    }
}

/// The guard's one wait: it runs no event loop.
#[allow(clippy::disallowed_methods)]
fn pause() {
    std::thread::sleep(POLL);
}
