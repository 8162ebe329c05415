//! Experiment files as the runner reads them: windows scoped to a fault, and the
//! standard pack in the repository.

use std::path::Path;
use std::time::Duration;

use super::experiment::{Experiment, Window};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Two scenarios in turn, the second of two faults under one name.
const TWO_SCENARIOS: &str = r#"
title = "two in turn"
duration = "30s"
[load]
url = "http://127.0.0.1:1/"
rate = 10
[[proxy]]
name = "p"
listen = "127.0.0.1:2"
upstream = "127.0.0.1:3"
[[fault]]
name = "first"
at = "5s"
for = "5s"
down = "p"
[[fault]]
name = "second"
at = "15s"
for = "3s"
toxic = { proxy = "p", type = "latency", stream = "upstream", attributes = { latency = 1 } }
[[fault]]
name = "second"
at = "16s"
for = "4s"
toxic = { proxy = "p", type = "latency", attributes = { latency = 1 } }
[[hypothesis]]
name = "a"
fault = "first"
window = "before"
success_rate = { at_least = 0.9 }
[[hypothesis]]
name = "b"
fault = "first"
window = "after"
success_rate = { at_least = 0.9 }
[[hypothesis]]
name = "c"
fault = "second"
window = "during"
success_rate = { at_least = 0.9 }
[[hypothesis]]
name = "d"
fault = "second"
window = "after"
success_rate = { at_least = 0.9 }
[[hypothesis]]
name = "e"
fault = "second"
window = "before"
success_rate = { at_least = 0.9 }
[[hypothesis]]
name = "f"
window = "during"
success_rate = { at_least = 0.9 }
"#;

#[test]
fn a_faults_windows_run_between_its_neighbours() {
    let experiment = Experiment::parse("two.toml", TWO_SCENARIOS).unwrap_or_else(|p| panic!("{p}"));
    let windows: Vec<(Duration, Duration)> = experiment
        .hypotheses
        .iter()
        .map(|h| experiment.window_of(h))
        .collect();
    assert_eq!(
        windows,
        vec![
            (secs(0), secs(5)),   // before the first: from the start
            (secs(10), secs(15)), // after the first: until the second begins
            (secs(15), secs(20)), // during the second: both its faults' span
            (secs(20), secs(30)), // after the last: until the end
            (secs(10), secs(15)), // before the second: from the first's end
            (secs(5), secs(20)),  // no fault named: every fault's span
        ]
    );
    assert_eq!(experiment.hypotheses[0].window, Window::Before);
}

#[test]
fn a_hypothesis_on_a_fault_the_file_lacks_is_refused() {
    let text = TWO_SCENARIOS.replace(
        "fault = \"second\"\nwindow = \"during\"",
        "fault = \"third\"\nwindow = \"during\"",
    );
    let problems = Experiment::parse("two.toml", &text)
        .expect_err("refused")
        .to_string();
    assert!(
        problems.contains("hypothesis[2].fault: no fault named \"third\""),
        "{problems}"
    );
}

#[test]
fn the_standard_pack_is_a_valid_experiment_that_fits_in_two_minutes() {
    let pack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gamedays/standard.toml");
    let experiment = Experiment::load(&pack).unwrap_or_else(|p| panic!("{p}"));
    assert!(
        experiment.duration <= secs(100),
        "{:?}",
        experiment.duration
    );
    let scenarios = [
        "crash",
        "hang",
        "50% errors",
        "+300 ms",
        "gray failure",
        "partition",
        "dependency down",
    ];
    for scenario in scenarios {
        let judged = experiment
            .hypotheses
            .iter()
            .filter(|h| h.fault.as_deref() == Some(scenario))
            .count();
        assert!(judged >= 2, "{scenario}: {judged} hypotheses");
    }
}
