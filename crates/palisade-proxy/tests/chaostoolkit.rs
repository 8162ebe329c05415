//! `palisade gameday` on Chaos Toolkit experiments, black-box: the real binary runs JSON
//! and YAML experiment files written by the tests, with http probes against a real HTTP
//! server on loopback and process actions. One whose steady state holds passes with a
//! journal in Chaos Toolkit's shape; one whose action breaks the steady state deviates
//! and still plays its rollbacks; a python provider is refused with its location; a
//! runner killed outright, or interrupted, during a long process action leaves no process
//! behind.

mod support;

use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::process::Command;
use tokio::time::{Instant, sleep, timeout};

use support::{Behaviour, Upstream, bin, gameday_file, ms, processes_with, secs, temp_path};

fn names(runs: &Value) -> Vec<&str> {
    runs.as_array()
        .expect("a list of runs")
        .iter()
        .map(|r| r["activity"]["name"].as_str().unwrap_or("?"))
        .collect()
}

#[tokio::test]
async fn an_experiment_whose_steady_state_holds_passes_with_chaos_toolkit_s_journal() {
    let app = Upstream::start("app", Behaviour::Ok).await;
    let experiment = json!({
        "version": "1.0.0",
        "title": "the app answers while things happen",
        "description": "http probes and process actions that break nothing",
        "tags": ["test"],
        "configuration": {"base": format!("http://{}", app.addr())},
        "steady-state-hypothesis": {
            "title": "the app answers ok",
            "probes": [
                {"type": "probe", "name": "status is 200", "tolerance": 200,
                 "provider": {"type": "http", "url": "${base}/health", "timeout": [1, 2]}},
                {"type": "probe", "name": "body says ok", "tolerance": {"type": "regex", "pattern": "^ok from app$"},
                 "provider": {"type": "http", "url": "${base}/data"}},
                {"type": "probe", "name": "a process agrees", "tolerance": 0,
                 "provider": {"type": "process", "path": "sh", "arguments": ["-c", "exit 0"]}}
            ]
        },
        "method": [
            {"type": "action", "name": "in the background", "background": true,
             "provider": {"type": "process", "path": "sleep", "arguments": ["0.3"]}},
            {"type": "action", "name": "say hello", "pauses": {"after": 0.1},
             "provider": {"type": "process", "path": "echo", "arguments": "hello ${base}"}},
            {"type": "action", "name": "post", "provider": {"type": "http", "method": "POST",
             "url": "${base}/orders", "headers": {"Content-Type": "application/json"},
             "arguments": {"item": 7}}}
        ],
        "rollbacks": [{"ref": "say hello"}]
    });
    let ran = gameday_file(&experiment.to_string(), "json").await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("[method] action \"say hello\": succeeded"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("PASSED"), "{}", ran.stdout);
    let journal = ran.journal();
    for key in [
        "chaoslib-version",
        "platform",
        "node",
        "start",
        "end",
        "duration",
    ] {
        assert!(journal.get(key).is_some(), "journal.{key}");
    }
    assert_eq!(journal["status"], json!("completed"));
    assert_eq!(journal["deviated"], json!(false));
    assert_eq!(journal["experiment"]["title"], experiment["title"]);
    for when in ["before", "after"] {
        let state = &journal["steady_states"][when];
        assert_eq!(state["steady_state_met"], json!(true), "{when}");
        assert_eq!(state["probes"].as_array().map(Vec::len), Some(3), "{when}");
        assert_eq!(state["probes"][0]["tolerance_met"], json!(true));
        assert_eq!(state["probes"][0]["output"]["status"], json!(200));
    }
    let runs = &journal["run"];
    let mut ran_names = names(runs);
    ran_names.sort_unstable();
    assert_eq!(ran_names, ["in the background", "post", "say hello"]);
    for r in runs.as_array().expect("runs") {
        assert_eq!(r["status"], json!("succeeded"), "{r}");
        assert!(r["duration"].as_f64().is_some() && r["start"].is_string() && r["end"].is_string());
    }
    let hello = runs
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["activity"]["name"] == "say hello")
        .expect("hello");
    let addr = app.addr().to_string();
    assert_eq!(
        hello["output"]["stdout"],
        json!(format!("hello http://{addr}\n"))
    );
    assert_eq!(names(&journal["rollbacks"]), ["say hello"]);
    let posted = app
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("the POST arrived");
    assert_eq!(posted.path, "/orders");
    assert_eq!(
        serde_json::from_slice::<Value>(&posted.body).ok(),
        Some(json!({"item": 7}))
    );
    let junit = std::fs::read_to_string(ran.out.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("tests=\"6\" failures=\"0\""), "{junit}");
    assert!(
        junit.contains("classname=\"steady state after\" name=\"body says ok\""),
        "{junit}"
    );
}

#[tokio::test]
async fn a_steady_state_the_action_breaks_deviates_and_the_rollbacks_still_run() {
    let marker = temp_path("ctk-marker", "flag");
    let marker = marker.display();
    let yaml = format!(
        r#"
title: nothing marks the spot
description: the action creates the file the steady state says is absent
steady-state-hypothesis:
  title: no marker
  probes:
    - type: probe
      name: the marker is absent
      tolerance: 0
      provider:
        type: process
        path: sh
        arguments: ["-c", "test ! -e {marker}"]
method:
  - type: action
    name: mark the spot
    provider:
      type: process
      path: touch
      arguments: ["{marker}"]
rollbacks:
  - type: action
    name: remove the marker
    provider:
      type: process
      path: rm
      arguments: ["-f", "{marker}"]
"#
    );
    let ran = gameday_file(&yaml, "yaml").await;
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("NOT within its tolerance (status 1)"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("FAILED"), "{}", ran.stdout);
    let journal = ran.journal();
    assert_eq!(journal["deviated"], json!(true));
    assert_eq!(journal["status"], json!("completed"));
    assert_eq!(
        journal["steady_states"]["before"]["steady_state_met"],
        json!(true)
    );
    assert_eq!(
        journal["steady_states"]["after"]["steady_state_met"],
        json!(false)
    );
    assert_eq!(
        journal["steady_states"]["after"]["probes"][0]["tolerance_met"],
        json!(false)
    );
    assert_eq!(names(&journal["rollbacks"]), ["remove the marker"]);
    assert_eq!(journal["rollbacks"][0]["status"], json!("succeeded"));
    assert!(
        !Path::new(&marker.to_string()).exists(),
        "the rollback removed the marker"
    );
    let junit = std::fs::read_to_string(ran.out.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("failures=\"1\""), "{junit}");
}

#[tokio::test]
async fn a_steady_state_that_does_not_hold_before_fails_the_run_without_its_method() {
    let app = Upstream::start("app", Behaviour::Status(500)).await;
    let marker = temp_path("ctk-never", "flag");
    let yaml = format!(
        "title: t\ndescription: d\nsteady-state-hypothesis:\n  title: up\n  probes:\n  - {{type: probe, name: up, tolerance: [200, 204], provider: {{type: http, url: 'http://{}/'}}}}\nmethod:\n- {{type: action, name: never, provider: {{type: process, path: touch, arguments: ['{}']}}}}\nrollbacks:\n- {{type: action, name: undo, provider: {{type: process, path: 'true'}}}}\n",
        app.addr(),
        marker.display()
    );
    let ran = gameday_file(&yaml, "yml").await;
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let journal = ran.journal();
    assert_eq!(journal["status"], json!("failed"));
    assert_eq!(journal["deviated"], json!(false));
    assert_eq!(journal["run"], json!([]), "the method was not played");
    assert!(!marker.exists());
    assert_eq!(journal["steady_states"]["after"], Value::Null);
    assert_eq!(
        names(&journal["rollbacks"]),
        ["undo"],
        "rollbacks are always played"
    );
}

#[tokio::test]
async fn a_python_provider_is_refused_with_its_location() {
    let text = r#"{
  "title": "t",
  "description": "d",
  "method": [
    {"type": "action", "name": "fine", "provider": {"type": "process", "path": "true"}},
    {"type": "action", "name": "python",
     "provider": {"type": "python", "module": "chaosk8s.pod.actions", "func": "terminate_pods"}}
  ]
}"#;
    let ran = gameday_file(text, "json").await;
    assert_eq!(ran.code, 2, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr
            .contains(":7: method[1].provider.type: python providers"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("only http and process"),
        "{}",
        ran.stderr
    );
    assert!(!ran.out.join("journal.json").exists(), "nothing ran");
}

#[tokio::test]
async fn a_process_past_its_timeout_is_killed_and_its_action_fails() {
    let tag = format!("{}.{}", 700 + std::process::id() % 200, std::process::id());
    let text = json!({
        "title": "t", "description": "d",
        "method": [{"type": "action", "name": "hangs", "provider":
            {"type": "process", "path": "sleep", "arguments": [tag], "timeout": 0.5}}]
    });
    let started = Instant::now();
    let ran = gameday_file(&text.to_string(), "json").await;
    assert!(started.elapsed() < secs(10), "took {:?}", started.elapsed());
    assert_eq!(ran.code, 1, "a failed action fails the run: {}", ran.stdout);
    let journal = ran.journal();
    assert_eq!(journal["status"], json!("completed"));
    assert_eq!(journal["run"][0]["status"], json!("failed"));
    let why = journal["run"][0]["exception"][0]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("took too long"), "{why}");
    assert!(processes_with(&format!("sleep {tag}")).is_empty());
}

/// A runner stopped (`signal`) while its action sleeps `tag` seconds; the journal dir.
async fn stop_during_a_long_action(
    signal: &str,
    tag: &str,
    rollback_marker: &Path,
) -> std::path::PathBuf {
    let text = json!({
        "title": "t", "description": "d",
        "method": [{"type": "action", "name": "long", "provider":
            {"type": "process", "path": "sh", "arguments": ["-c", format!("sleep {tag}")]}}],
        "rollbacks": [{"type": "action", "name": "undo", "provider":
            {"type": "process", "path": "touch", "arguments": [rollback_marker.display().to_string()]}}]
    });
    let file = temp_path("ctk-stop", "json");
    std::fs::write(&file, text.to_string()).expect("write");
    let out = temp_path("ctk-stop-out", "d");
    let mut runner = Command::new(bin())
        .arg("gameday")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the runner starts");
    let started = Instant::now();
    while processes_with(&format!("sleep {tag}")).len() < 2 {
        assert!(started.elapsed() < secs(10), "the action did not start");
        sleep(ms(20)).await;
    }
    let pid = runner.id().expect("a pid");
    let sent = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = timeout(secs(10), runner.wait())
        .await
        .expect("it ends")
        .expect("reaped");
    let stopped = Instant::now();
    loop {
        let left = processes_with(&format!("sleep {tag}"));
        if left.is_empty() {
            break;
        }
        assert!(
            stopped.elapsed() < secs(1),
            "1 s after {signal}: processes {left:?} left"
        );
        sleep(ms(20)).await;
    }
    if signal == "INT" {
        assert_eq!(status.code(), Some(1));
    }
    let _ = std::fs::remove_file(&file);
    out
}

#[tokio::test]
async fn a_runner_killed_outright_during_a_long_process_action_leaves_no_process_behind() {
    for round in 0..5 {
        let tag = format!(
            "{}.{round}{}",
            800 + std::process::id() % 100,
            std::process::id()
        );
        let marker = temp_path("ctk-killed", "flag");
        let out = stop_during_a_long_action("KILL", &tag, &marker).await;
        assert!(!marker.exists(), "a killed runner plays nothing more");
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[tokio::test]
async fn an_interrupted_run_kills_its_action_and_plays_the_rollbacks() {
    let tag = format!("{}.{}", 600 + std::process::id() % 100, std::process::id());
    let marker = temp_path("ctk-interrupted", "flag");
    let out = stop_during_a_long_action("INT", &tag, &marker).await;
    assert!(marker.exists(), "the rollback ran");
    let _ = std::fs::remove_file(&marker);
    let text = std::fs::read_to_string(out.join("journal.json")).expect("journal.json");
    let journal: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(journal["status"], json!("interrupted"));
    assert_eq!(names(&journal["rollbacks"]), ["undo"]);
    let _ = std::fs::remove_dir_all(&out);
}
