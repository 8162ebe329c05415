//! Reading experiments: every supported form read as meant, every refused form refused
//! with its path and line, all problems of a file at once.

use std::time::Duration;

use serde_json::json;

use super::format::{Experiment, Kind};
use super::provider::{Arguments, HTTP_TIMEOUT, Provider};
use super::{Syntax, parse};
use crate::config::load::Problems;

fn env(name: &str) -> Option<String> {
    match name {
        "APP_PORT" => Some("18080".into()),
        "TOKEN" => Some("s3cret".into()),
        _ => None,
    }
}

fn json_ok(text: &str) -> Experiment {
    parse("exp.json", text, Syntax::Json, &env).unwrap_or_else(|p| panic!("{p}"))
}

fn refused(text: &str, syntax: Syntax) -> Problems {
    match parse("exp", text, syntax, &env) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(problems) => problems,
    }
}

/// The problem at `key`, whose message contains `says`; its line.
fn line_of(problems: &Problems, key: &str, says: &str) -> usize {
    let found = problems.problems.iter().find(|p| p.key == key);
    let found = found.unwrap_or_else(|| panic!("no problem at {key}:\n{problems}"));
    assert!(found.message.contains(says), "{key}: {}", found.message);
    found.line
}

const FULL: &str = r#"{
  "version": "1.0.0",
  "title": "checkout survives ${who}",
  "description": "every supported form",
  "tags": ["http", "process"],
  "contributions": {"reliability": "high"},
  "extensions": [{"name": "anything"}],
  "configuration": {
    "who": "a restart",
    "port": {"type": "env", "key": "APP_PORT", "env_var_type": "int"},
    "host": {"type": "env", "key": "APP_HOST", "default": "127.0.0.1"},
    "wait": 0.25
  },
  "secrets": {"app": {"token": {"type": "env", "key": "TOKEN"}, "plain": "p"}},
  "steady-state-hypothesis": {
    "title": "it answers",
    "probes": [
      {"type": "probe", "name": "status", "tolerance": 200,
       "provider": {"type": "http", "url": "http://${host}:${port}/health",
                    "headers": {"Authorization": "Bearer ${token}"}, "timeout": [1, 5]}},
      {"type": "probe", "name": "list", "tolerance": [200, 204],
       "provider": {"type": "http", "url": "http://${host}:${port}/", "timeout": "${wait}"}},
      {"type": "probe", "name": "range", "tolerance": {"type": "range", "range": [200, 299]},
       "provider": {"type": "http", "url": "http://${host}:${port}/"}},
      {"type": "probe", "name": "regex", "tolerance": {"type": "regex", "pattern": "ok", "target": "body"},
       "provider": {"type": "http", "url": "http://${host}:${port}/", "expected_status": 200}},
      {"type": "probe", "name": "exit", "tolerance": true,
       "provider": {"type": "process", "path": "true"}}
    ]
  },
  "method": [
    {"type": "action", "name": "restart", "background": true, "pauses": {"before": 1, "after": "${wait}"},
     "provider": {"type": "process", "path": "sh", "arguments": ["-c", "exit 0", "", null, 3], "timeout": 10}},
    {"type": "action", "name": "shell", "provider": {"type": "process", "path": "echo", "arguments": "a ${who}"}},
    {"type": "action", "name": "flags", "provider": {"type": "process", "path": "echo", "arguments": {"--n": 1, "-v": ""}}},
    {"type": "probe", "name": "post", "provider": {"type": "http", "method": "post", "url": "http://${host}:${port}/x",
     "arguments": {"k": "v"}}},
    {"ref": "status"}
  ],
  "rollbacks": [{"ref": "restart"}]
}"#;

#[test]
fn every_supported_form_is_read_as_meant() {
    let e = json_ok(FULL);
    assert_eq!(e.title, "checkout survives a restart");
    let hypothesis = e.hypothesis.as_ref().expect("a hypothesis");
    assert_eq!(hypothesis.probes.len(), 5);
    let Provider::Http(status) = &hypothesis.probes[0].provider else {
        panic!("http");
    };
    assert_eq!(status.url, "http://127.0.0.1:18080/health");
    assert_eq!(
        status.headers,
        [("Authorization".to_owned(), "Bearer s3cret".to_owned())]
    );
    assert_eq!(
        (status.connect, status.read),
        (Duration::from_secs(1), Duration::from_secs(5))
    );
    let Provider::Http(list) = &hypothesis.probes[1].provider else {
        panic!("http");
    };
    assert_eq!(
        list.read,
        Duration::from_millis(250),
        "a substituted number keeps its type"
    );
    let Provider::Http(regex) = &hypothesis.probes[3].provider else {
        panic!("http");
    };
    assert_eq!(regex.expected_status, Some(200));
    assert_eq!(regex.connect, HTTP_TIMEOUT);

    assert_eq!(e.method.len(), 5);
    let restart = &e.method[0];
    assert!(restart.background);
    assert_eq!(restart.kind, Kind::Action);
    assert_eq!(
        (restart.pause_before, restart.pause_after),
        (Duration::from_secs(1), Duration::from_millis(250))
    );
    let Provider::Process(p) = &restart.provider else {
        panic!("process");
    };
    assert!(p.program.is_absolute(), "found on PATH: {:?}", p.program);
    assert_eq!(p.timeout, Some(Duration::from_secs(10)));
    assert!(matches!(&p.arguments, Arguments::List(a) if a == &["-c", "exit 0", "3"]));
    let Provider::Process(shell) = &e.method[1].provider else {
        panic!("process");
    };
    assert!(matches!(&shell.arguments, Arguments::Shell(s) if s == "a a restart"));
    let Provider::Process(flags) = &e.method[2].provider else {
        panic!("process");
    };
    assert!(matches!(&flags.arguments, Arguments::List(a) if a == &["--n", "1", "-v"]));
    let Provider::Http(post) = &e.method[3].provider else {
        panic!("http");
    };
    assert_eq!(post.method, http::Method::POST);
    assert_eq!(post.arguments, Some(json!({"k": "v"})));
    assert_eq!(e.method[4].name, "status", "a ref is the activity named");
    assert_eq!(e.rollbacks[0].name, "restart");
    // The journal's copy is the file as written: no secret substituted into it.
    assert!(!e.raw.to_string().contains("s3cret"));
}

#[test]
fn yaml_reads_the_same_as_json() {
    let yaml = "
title: t
description: d
configuration:
  url: http://127.0.0.1:1/
steady-state-hypothesis:
  title: h
  probes:
    - type: probe
      name: up
      tolerance: 200
      provider: {type: http, url: '${url}', timeout: 2}
method:
  - type: action
    name: a
    provider:
      type: process
      path: echo
      arguments: [one, 2]
";
    let e = parse("exp.yaml", yaml, Syntax::Yaml, &env).unwrap_or_else(|p| panic!("{p}"));
    let probe = &e.hypothesis.as_ref().expect("hypothesis").probes[0];
    assert!(matches!(&probe.provider, Provider::Http(h) if h.url == "http://127.0.0.1:1/"));
    assert!(
        matches!(&e.method[0].provider, Provider::Process(p) if matches!(&p.arguments, Arguments::List(a) if a == &["one", "2"]))
    );
}

#[test]
fn python_providers_and_controls_are_refused_with_where_they_are() {
    let text = r#"{
  "title": "t",
  "description": "d",
  "controls": [{"name": "x"}],
  "method": [
    {"type": "action", "name": "ok", "provider": {"type": "process", "path": "true"}},
    {"type": "action", "name": "ok2", "provider": {"type": "process", "path": "true"}},
    {"type": "action", "name": "py",
     "provider": {"type": "python", "module": "os", "func": "getcwd"}}
  ]
}"#;
    let problems = refused(text, Syntax::Json);
    assert_eq!(
        line_of(
            &problems,
            "method[2].provider.type",
            "only http and process"
        ),
        9
    );
    assert_eq!(line_of(&problems, "controls", "not supported"), 4);
    let shown = problems.to_string();
    assert!(
        shown.contains("exp:9: method[2].provider.type: python providers"),
        "{shown}"
    );
}

#[test]
fn every_problem_of_a_file_is_reported_at_once_with_its_line() {
    let yaml = "title: t
runtime:
  rollbacks: {strategy: always}
secrets:
  vault:
    token: {type: vault, path: x}
configuration:
  missing: {type: env, key: NOT_SET_ANYWHERE}
  dynamic: {type: probe, name: p}
steady-state-hypothesis:
  title: h
  probes:
    - type: action
      name: not a probe
      tolerance: '200'
      provider: {type: http, url: 'http://127.0.0.1:1/'}
    - type: probe
      name: bad list
      tolerance: [200, x]
      provider: {type: http, url: 'http://127.0.0.1:1/', timeout: [1]}
    - type: probe
      name: jp
      tolerance: {type: jsonpath, path: $.a}
      provider: {type: process, path: /no/such/program}
method:
  - type: probe
    name: m
    pauses: {before: -1, during: 1}
    background: yes please
    provider: {type: http, url: 'ftp://x', method: 'NOT A METHOD', expected_status: 42}
  - ref: nowhere
  - {type: action, name: n, provider: {type: shell}}
rollbacks: {not: a list}
";
    let p = refused(yaml, Syntax::Yaml);
    assert_eq!(line_of(&p, "description", "required"), 1);
    assert_eq!(line_of(&p, "runtime", "always played"), 2);
    assert_eq!(line_of(&p, "secrets.vault.token", "not supported"), 6);
    assert_eq!(
        line_of(&p, "configuration.missing", "NOT_SET_ANYWHERE is not set"),
        8
    );
    assert_eq!(
        line_of(&p, "configuration.dynamic", "dynamic configuration"),
        9
    );
    assert_eq!(
        line_of(&p, "steady-state-hypothesis.probes[0].type", "probes only"),
        13
    );
    assert_eq!(
        line_of(
            &p,
            "steady-state-hypothesis.probes[0].tolerance",
            "string tolerance"
        ),
        15
    );
    assert_eq!(
        line_of(
            &p,
            "steady-state-hypothesis.probes[1].tolerance[1]",
            "integers"
        ),
        19
    );
    assert_eq!(
        line_of(
            &p,
            "steady-state-hypothesis.probes[1].provider.timeout",
            "[connect, read]"
        ),
        20
    );
    assert_eq!(
        line_of(
            &p,
            "steady-state-hypothesis.probes[2].provider.path",
            "not an executable"
        ),
        24
    );
    assert_eq!(line_of(&p, "method[0].pauses.before", "seconds"), 28);
    assert_eq!(line_of(&p, "method[0].pauses.during", "unknown key"), 28);
    assert_eq!(line_of(&p, "method[0].background", "true, false"), 29);
    assert_eq!(line_of(&p, "method[0].provider.url", "http:// URL"), 30);
    assert_eq!(line_of(&p, "method[1].ref", "no activity named"), 31);
    assert_eq!(
        line_of(&p, "method[2].provider.type", "only http and process"),
        32
    );
    assert_eq!(line_of(&p, "rollbacks", "a list"), 33);
    let lines: Vec<usize> = p.problems.iter().map(|p| p.line).collect();
    assert!(
        lines.windows(2).all(|w| w[0] <= w[1]),
        "in file order: {lines:?}"
    );
}

#[test]
fn a_jsonpath_tolerance_is_refused_at_its_type() {
    let text = r#"{"title": "t", "description": "d", "method": [],
"steady-state-hypothesis": {"title": "h", "probes": [
  {"type": "probe", "name": "p", "provider": {"type": "http", "url": "http://127.0.0.1:1/"},
   "tolerance": {"type": "jsonpath",
                 "path": "$.a"}}]}}"#;
    let p = refused(text, Syntax::Json);
    assert_eq!(
        line_of(
            &p,
            "steady-state-hypothesis.probes[0].tolerance.type",
            "jsonpath"
        ),
        4
    );
}

#[test]
fn unknown_keys_are_refused_and_the_specs_extensions_accepted() {
    let text = r#"{"title": "t", "description": "d", "method": [], "colour": "red",
"extensions": [{"name": "x"}], "contributions": {"a": "b"}, "version": "1"}"#;
    let p = refused(text, Syntax::Json);
    assert_eq!(p.problems.len(), 1, "{p}");
    assert_eq!(
        line_of(&p, "colour", "unknown key; allowed: version, title"),
        1
    );
    let p = refused(r#"{"title": "t", "description": "d"}"#, Syntax::Json);
    line_of(&p, "method", "required");
}

#[test]
fn syntax_errors_are_one_problem_with_their_line() {
    let p = refused("{\n  \"title\": \"t\",\n  oops\n}", Syntax::Json);
    assert_eq!(p.problems.len(), 1);
    assert_eq!(p.problems[0].line, 3);
    let p = refused("[1, 2]", Syntax::Json);
    assert!(p.problems[0].message.contains("mapping"), "{p}");
}
