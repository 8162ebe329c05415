//! `palisade gameday`, black-box: the real binary runs experiment files written by the
//! tests against real HTTP servers (and the sidecar itself as a target) on loopback
//! ports. A game day that must pass passes and one that must fail fails; bad files are
//! refused with their lines; a target that does not start fails the run with its output;
//! an abort removes every fault within 500 ms; a runner killed with SIGKILL leaves no
//! process and no fault behind (20 times).

mod support;

use serde_json::Value;
use tokio::time::{Instant, sleep};

use support::{
    Behaviour, Upstream, accepts, bin, experiment, free_port, gameday, installed, ms,
    processes_with, secs, spawn_runner, temp_path, write_sidecar_config,
};

const LATENCY_FAULT: &str = r#"
[[fault]]
name = "200 ms more"
at = "1s"
for = "1500ms"
toxic = { proxy = "app", type = "latency", attributes = { latency = 200 } }
"#;

#[tokio::test]
async fn a_game_day_that_must_pass_passes_and_one_the_fault_breaks_fails() {
    let upstream = Upstream::start("app", Behaviour::Ok).await;
    let passing = format!(
        "{LATENCY_FAULT}{}",
        r#"
[[hypothesis]]
name = "every request is answered"
success_rate = { at_least = 0.99 }
[[hypothesis]]
name = "fast before the fault"
window = "before"
latency = { percentile = 99, at_most = "100ms" }
[[hypothesis]]
name = "fast again after it"
window = "after"
latency = { percentile = 50, at_most = "100ms" }
[[hypothesis]]
name = "the control group, around the fault, stays fast"
window = "during"
group = "control"
latency = { percentile = 50, at_most = "100ms" }
"#
    );
    let control = format!(
        "[load.control]\nurl = \"http://{}/data\"\nshare = 0.3\n",
        upstream.addr()
    );
    let ran = gameday(&experiment(
        &upstream,
        free_port(),
        "4s",
        &format!("{control}{passing}"),
    ))
    .await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("PASSED"), "{}", ran.stdout);
    let journal = ran.journal();
    assert_eq!(journal["passed"], Value::Bool(true));
    let junit = std::fs::read_to_string(ran.out.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("fast before the fault"), "{junit}");
    let html = std::fs::read_to_string(ran.out.join("report.html")).expect("report.html");
    assert!(html.contains("200 ms more"), "the fault's band is labelled");
    let window = &journal["faults"][0];
    let (start, end) = (
        window["start_ms"].as_u64().expect("start"),
        window["end_ms"].as_u64().expect("ended"),
    );
    assert!((1000..1200).contains(&start), "began at {start} ms");
    assert!((2500..2700).contains(&end), "ended at {end} ms");
    let seconds = journal["seconds"].as_array().expect("seconds");
    assert_eq!(seconds.len(), 4);
    let slow = seconds[1]["p50_ms"].as_f64().expect("a p50 in second 1");
    assert!(
        slow >= 200.0,
        "the toxic's 200 ms measured at the client: {slow}"
    );
    let control = journal["control"][1]["p50_ms"]
        .as_f64()
        .expect("the control group's p50");
    assert!(
        control < 100.0,
        "the control group bypasses the fault: {control}"
    );

    // The same fault against a claim it breaks.
    let failing = format!(
        "{LATENCY_FAULT}{}",
        r#"
[[hypothesis]]
name = "fast during the fault"
window = "during"
latency = { percentile = 50, at_most = "100ms" }
"#
    );
    let ran = gameday(&experiment(&upstream, free_port(), "3s", &failing)).await;
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("FAIL fast during the fault"),
        "{}",
        ran.stdout
    );
    assert_eq!(ran.journal()["verdicts"][0]["passed"], Value::Bool(false));
}

#[tokio::test]
async fn bad_experiment_files_are_refused_with_their_lines() {
    let upstream = Upstream::start("app", Behaviour::Ok).await;
    let port = free_port();
    for (rest, says) in [
        ("colour = \"red\"\n", "unknown key"),
        (
            "[[fault]]\nat = \"1s\"\nfor = \"1s\"\ndown = \"nowhere\"\n",
            "fault[0].down: no proxy named \"nowhere\"",
        ),
        (
            "[[fault]]\nat = \"2s\"\nfor = \"5s\"\ndown = \"app\"\n",
            "ends after the run's",
        ),
        (
            "[[fault]]\nat = \"1s\"\nfor = \"2s\"\ndown = \"app\"\n[[hypothesis]]\nname = \"h\"\nwindow = \"after\"\nsuccess_rate = { at_least = 1.0 }\n",
            "hypothesis[0].window: After is empty",
        ),
        (
            "[[fault]]\nat = \"1s\"\nfor = \"1s\"\ntoxic = { proxy = \"app\", type = \"latency\", attributes = { latncy = 5 } }\n",
            "no attribute \"latncy\"",
        ),
        (
            "[[target]]\nname = \"t\"\ncommand = [\"true\"]\n[[fault]]\nat = \"1s\"\nfor = \"1s\"\nskew = { target = \"t\", offset = \"5s\" }\n",
            "allowed: + or - and a duration",
        ),
        (
            "[[fault]]\nat = \"1s\"\nfor = \"1s\"\npressure = { cpu = 500 }\n",
            "cpu = 1 to 64 workers",
        ),
        (
            "[[target]]\nname = \"running\"\nready = \"tcp://127.0.0.1:1\"\n[[fault]]\nat = \"1s\"\nfor = \"1s\"\nprocess = { target = \"running\", action = \"kill\" }\n",
            "\"running\" is an address the run does not start",
        ),
        (
            "[[probe]]\nname = \"p\"\nhttp = \"http://127.0.0.1:1/\"\nmetric = \"x\"\n",
            "or http (an HTTP check)",
        ),
        (
            "[[fault]]\nat = \"1s\"\nfor = \"1s\"\nroute = { admin = \"http://127.0.0.1:1\", route = 0, abort_percnt = 5, lease = \"1s\" }\n",
            "unknown key \"abort_percnt\"",
        ),
        (
            "[[fault]]\nat = \"1s\"\nfor = \"1s\"\nroute = { admin = \"http://127.0.0.1:1\", route = 0, lease = \"10ms\" }\n",
            "fault[0].route.lease: 10ms; allowed: 1s to 1h",
        ),
        (
            "[[hypothesis]]\nname = \"h\"\nalert = { name = \"A\", within = \"1s\" }\n",
            "no Prometheus to fire it",
        ),
        (
            "[prometheus]\nscrape = [\"127.0.0.1:9/metrics\"]\nalerts_for = \"/nonexistent.toml\"\n",
            "allowed: http://host:port/path",
        ),
        (
            "[prometheus]\nscrape = [\"http://127.0.0.1:9/metrics\"]\nalerts_for = \"/nonexistent.toml\"\n",
            "prometheus.alerts_for: \"/nonexistent.toml\" is not a sidecar config that loads",
        ),
    ] {
        let ran = gameday(&experiment(&upstream, port, "3s", rest)).await;
        assert_eq!(ran.code, 2, "{rest}: {}", ran.stderr);
        assert!(ran.stderr.contains(says), "{rest}: {}", ran.stderr);
        let line = ran
            .stderr
            .split(':')
            .nth(1)
            .and_then(|l| l.parse::<usize>().ok());
        assert!(line.is_some_and(|l| l > 1), "a line number: {}", ran.stderr);
    }
}

#[tokio::test]
async fn a_target_that_does_not_start_fails_the_run_with_its_output() {
    let upstream = Upstream::start("app", Behaviour::Ok).await;
    let rest = format!(
        r#"
[[target]]
name = "broken"
command = ["sh", "-c", "echo 'cannot read settings.ini' >&2; exit 3"]
ready = "tcp://127.0.0.1:{}"
"#,
        free_port()
    );
    let ran = gameday(&experiment(&upstream, free_port(), "2s", &rest)).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("target broken exited"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("cannot read settings.ini"),
        "{}",
        ran.stderr
    );
}

#[tokio::test]
async fn an_abort_removes_every_fault_within_500_ms() {
    let upstream = Upstream::start("app", Behaviour::Ok).await;
    let proxy_port = free_port();
    let rest = r#"
[[fault]]
name = "the dependency down"
at = "1s"
for = "4s"
down = "app"
[[fault]]
name = "and slow"
at = "1s"
for = "4s"
toxic = { proxy = "app", type = "latency", attributes = { latency = 50 } }
[abort]
success_rate_below = 0.8
"#;
    let ran = gameday(&experiment(&upstream, proxy_port, "6s", rest)).await;
    assert_eq!(ran.code, 1, "an aborted run fails: {}", ran.stdout);
    let journal = ran.journal();
    let aborted = &journal["aborted"];
    let at = aborted["at_ms"].as_u64().expect("aborted");
    assert!(
        at < 2500,
        "the breach seen within the checks' period: at {at} ms"
    );
    let cleared = aborted["cleared_in_ms"].as_u64().expect("cleared");
    assert!(cleared <= 500, "every fault removed in {cleared} ms");
    for fault in journal["faults"].as_array().expect("faults") {
        let end = fault["end_ms"].as_u64().expect("every fault ended");
        assert!(end <= at + 500, "{fault} ended long after the abort");
    }
    // Afterwards the dependency is back: the last second is all served.
    let last = &journal["seconds"][5];
    assert_eq!(last["ok"], last["sent"], "{last}");
}

/// The pids of processes whose command line contains `marker`.
#[tokio::test]
async fn a_runner_killed_outright_leaves_no_process_and_no_fault_behind() {
    let upstream = Upstream::start("app", Behaviour::Ok).await;
    for round in 0..20 {
        let proxy_port = free_port();
        let marker = format!("{}", 900_000 + std::process::id() * 100 % 90_000 + round);
        let rest = format!(
            r#"
[[target]]
name = "sleeper"
command = ["sleep", "{marker}"]
[[fault]]
at = "0s"
for = "20s"
toxic = {{ proxy = "app", type = "timeout", attributes = {{ timeout = 0 }} }}
"#
        );
        let file = temp_path("gameday-kill", "toml");
        std::fs::write(&file, experiment(&upstream, proxy_port, "30s", &rest)).expect("write");
        let out = temp_path("gameday-kill-out", "d");
        let mut runner = spawn_runner(&file, &out);
        let started = Instant::now();
        loop {
            let started_all =
                accepts(proxy_port).await && !processes_with(&format!("sleep {marker}")).is_empty();
            if started_all {
                break;
            }
            assert!(
                started.elapsed() < secs(10),
                "round {round}: the run did not start"
            );
            sleep(ms(20)).await;
        }
        runner.start_kill().expect("SIGKILL");
        runner.wait().await.expect("reaped");
        let killed = Instant::now();
        loop {
            let left = processes_with(&format!("sleep {marker}"));
            let listening = accepts(proxy_port).await;
            if left.is_empty() && !listening {
                break;
            }
            assert!(
                killed.elapsed() < secs(1),
                "round {round}: 1 s after the kill, processes {left:?}, proxy listening {listening}"
            );
            sleep(ms(20)).await;
        }
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[tokio::test]
async fn a_game_day_proves_the_sidecar_s_breaker_opens_and_closes_again() {
    let upstream = Upstream::start("app", Behaviour::Ok).await;
    let (proxy_port, listen, admin) = (free_port(), free_port(), free_port());
    let sidecar = write_sidecar_config(listen, admin, proxy_port);
    let rest = format!(
        r#"
[[target]]
name = "sidecar"
command = ["{bin}", "run", "--config", "{config}"]
ready = "http://127.0.0.1:{admin}/health/live"

[[probe]]
name = "breaker"
metrics = "http://127.0.0.1:{admin}/metrics"
metric = "palisade_circuit_state"

[[fault]]
name = "the upstream down"
at = "1s"
for = "3s"
down = "app"

[[hypothesis]]
name = "the breaker opens within 2 s"
window = "during"
probe = {{ name = "breaker", reaches = 1, within = "2s" }}
[[hypothesis]]
name = "it closes within 3 s of recovery"
window = "after"
probe = {{ name = "breaker", reaches = 0, within = "3s" }}
"#,
        bin = bin(),
        config = sidecar.display()
    );
    let text = experiment(&upstream, proxy_port, "8s", &rest).replace(
        &format!("http://127.0.0.1:{proxy_port}/data"),
        &format!("http://127.0.0.1:{listen}/data"),
    );
    let ran = gameday(&text).await;
    let _ = std::fs::remove_file(&sidecar);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let journal = ran.journal();
    let series = &journal["series"][0]["points"];
    assert!(
        series.as_array().is_some_and(|p| p.len() > 10),
        "sampled: {series}"
    );
}

#[tokio::test]
async fn a_skewed_target_runs_on_a_moved_clock_and_is_put_back() {
    if !installed("faketime", "faketime") {
        return;
    }
    let upstream = Upstream::start("app", Behaviour::Ok).await;
    let stamps = temp_path("gameday-clock", "txt");
    let rest = format!(
        r#"
[[target]]
name = "clock"
command = ["sh", "-c", "date +%s >> {stamps}; exec sleep {sleep}"]
[[fault]]
at = "1s"
for = "1s"
skew = {{ target = "clock", offset = "+1h" }}
"#,
        stamps = stamps.display(),
        sleep = 800_000 + std::process::id() % 100_000
    );
    let ran = gameday(&experiment(&upstream, free_port(), "3s", &rest)).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let text = std::fs::read_to_string(&stamps).expect("the target's stamps");
    let _ = std::fs::remove_file(&stamps);
    let stamps: Vec<i64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(stamps.len(), 3, "started, skewed, put back: {text}");
    assert!(stamps[1] - stamps[0] >= 3590, "an hour ahead: {stamps:?}");
    assert!(
        (stamps[2] - stamps[0]).abs() < 60,
        "the real time again: {stamps:?}"
    );
    let sleep = format!("sleep {}", 800_000 + std::process::id() % 100_000);
    assert!(
        processes_with(&sleep).is_empty(),
        "the target outlived the run"
    );
}

#[tokio::test]
async fn pressure_runs_for_its_window_only() {
    if !installed("stress-ng", "stress-ng") {
        return;
    }
    let upstream = Upstream::start("app", Behaviour::Ok).await;
    let marker = format!("{}", 3000 + std::process::id() % 1000);
    let rest = format!(
        r#"
[[fault]]
at = "500ms"
for = "1s"
pressure = {{ cpu = 1, memory = "{marker}K" }}
"#
    );
    let run =
        tokio::spawn(
            async move { gameday(&experiment(&upstream, free_port(), "3s", &rest)).await },
        );
    let needle = format!("{marker}K");
    let started = Instant::now();
    let mut seen = false;
    while started.elapsed() < secs(3) && !seen {
        seen = processes_with("stress-ng").iter().any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        });
        sleep(ms(50)).await;
    }
    let ran = run.await.expect("joined");
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(seen, "stress-ng ran during the window");
    let left: Vec<u32> = processes_with("stress-ng")
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect();
    assert!(left.is_empty(), "stress-ng left running: {left:?}");
}

#[tokio::test]
async fn a_running_service_is_a_target_by_address_and_http_checks_are_probes() {
    let upstream = Upstream::start("app", Behaviour::Ok).await;
    let proxy_port = free_port();
    let rest = format!(
        r#"
[[target]]
name = "app"
ready = "tcp://{upstream}"

[[probe]]
name = "through the proxy"
http = "http://127.0.0.1:{proxy_port}/data"

[[fault]]
name = "the app unreachable"
at = "1s"
for = "2s"
down = "app"

[[hypothesis]]
name = "the check fails during"
window = "during"
probe = {{ name = "through the proxy", reaches = 0, within = "1s" }}
[[hypothesis]]
name = "and answers 200 after"
window = "after"
probe = {{ name = "through the proxy", reaches = 200, within = "1s" }}
"#,
        upstream = upstream.addr()
    );
    let ran = gameday(&experiment(&upstream, proxy_port, "5s", &rest)).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let points = &ran.journal()["series"][0]["points"];
    let statuses: Vec<f64> = points
        .as_array()
        .expect("points")
        .iter()
        .filter_map(|p| p[1].as_f64())
        .collect();
    assert_eq!(statuses.first(), Some(&200.0), "{statuses:?}");
    assert!(statuses.contains(&0.0), "{statuses:?}");
}
