//! `palisade demo`, the README's first command: it runs with no setup, ends by itself
//! after `--duration`, and its summary shows the proxy answering what the upstreams
//! alone did not.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

#[tokio::test]
async fn the_demo_runs_with_no_setup_and_summarises() {
    let mut child = Command::new(bin())
        .args(["demo", "--duration", "3s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start palisade demo");
    // Bounded: the demo must end by itself well within 60 s.
    let mut ended = false;
    for _ in 0..600 {
        if child.try_wait().expect("wait").is_some() {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !ended {
        let _ = child.kill();
        panic!("palisade demo --duration 3s did not end within 60 s");
    }
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("Dashboard: http://127.0.0.1:") && first.contains("/dashboard"),
        "the dashboard's address comes first: {stdout}"
    );
    assert!(stdout.contains("Summary"), "{stdout}");
    let answered = stdout
        .lines()
        .find(|line| line.starts_with("Answered:"))
        .unwrap_or_else(|| panic!("no Answered line: {stdout}"));
    assert!(answered.contains("through palisade"), "{answered}");
    assert!(
        stdout.contains("checkout 1: completed"),
        "the demo's saga ran: {stdout}"
    );
    assert!(stdout.contains("Sagas: "), "{stdout}");
}
