//! The checks of an experiment file beyond its schema: names that refer to something
//! defined, windows that can happen within the run, values in range. Each problem is
//! reported at its key.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use super::experiment::{
    Experiment, FaultSpec, Group, Hypothesis, MAX_DURATION, MAX_REQUESTS, PrometheusSpec, Window,
};
use crate::config::spans::Step;
use crate::toxic::toxics::{Toxic, ToxicRequest};

/// The route fault keys a game day may set.
const ROUTE_KEYS: [&str; 8] = [
    "abort_percent",
    "abort_status",
    "delay_percent",
    "delay",
    "body_percent",
    "body",
    "body_rate",
    "truncate_after",
];

type Report<'r> = &'r mut dyn FnMut(&[Step], String);

fn key(k: &str) -> Step {
    Step::Key(k.to_owned())
}

/// Calls `report` with each problem of `experiment`.
pub(super) fn check(experiment: &Experiment, report: Report<'_>) {
    if experiment.title.trim().is_empty() {
        report(
            &[key("title")],
            "empty; allowed: a sentence saying what the run shows".into(),
        );
    }
    let duration = experiment.duration;
    if duration < Duration::from_secs(1) || duration > MAX_DURATION {
        report(
            &[key("duration")],
            format!("{duration:?}; allowed: 1 s to 1 h"),
        );
    }
    check_load(experiment, report);
    let targets = names(experiment.targets.iter().map(|t| &t.name), "target", report);
    let proxies = names(experiment.proxies.iter().map(|p| &p.name), "proxy", report);
    for (i, target) in experiment.targets.iter().enumerate() {
        let at = |k: &str| [key("target"), Step::Index(i), key(k)];
        if target.command.is_empty() && target.ready.is_none() {
            report(
                &at("command"),
                "neither a command nor a ready address; allowed: command = [\"program\", \"arg\", ...] to start it, or ready = \"tcp://host:port\" (or an http:// URL) for a service already running".into(),
            );
        }
        if let Some(ready) = &target.ready
            && !(ready.starts_with("http://") || ready.starts_with("tcp://"))
        {
            report(
                &at("ready"),
                format!("{ready:?}; allowed: http://host:port/path or tcp://host:port"),
            );
        }
    }
    for (i, proxy) in experiment.proxies.iter().enumerate() {
        for (k, value) in [("listen", &proxy.listen), ("upstream", &proxy.upstream)] {
            if !is_host_port(value) {
                report(
                    &[key("proxy"), Step::Index(i), key(k)],
                    format!("{value:?}; allowed: host:port"),
                );
            }
        }
    }
    let probes = names(experiment.probes.iter().map(|p| &p.name), "probe", report);
    for (i, probe) in experiment.probes.iter().enumerate() {
        let at = |k: &str| [key("probe"), Step::Index(i), key(k)];
        match (&probe.http, &probe.metrics, &probe.metric) {
            (Some(url), None, None) => {
                if !url.starts_with("http://") {
                    report(&at("http"), format!("{url:?}; allowed: an http:// URL"));
                }
            }
            (None, Some(page), Some(metric)) => {
                if !page.starts_with("http://") {
                    report(
                        &at("metrics"),
                        format!("{page:?}; allowed: http://host:port/metrics"),
                    );
                }
                if super::probes::Selector::parse(metric).is_none() {
                    report(
                        &at("metric"),
                        format!("{metric:?}; allowed: name or name{{label=\"value\",...}}"),
                    );
                }
            }
            _ => report(
                &[key("probe"), Step::Index(i)],
                "allowed: metrics and metric (a Prometheus page's metric), or http (an HTTP check)"
                    .into(),
            ),
        }
    }
    if let Some(prometheus) = &experiment.prometheus {
        check_prometheus(prometheus, report);
    }
    let addresses: HashSet<String> = experiment
        .targets
        .iter()
        .filter(|t| t.command.is_empty())
        .map(|t| t.name.clone())
        .collect();
    for (i, fault) in experiment.faults.iter().enumerate() {
        let known = Known {
            targets: &targets,
            addresses: &addresses,
            proxies: &proxies,
        };
        check_fault(i, fault, duration, &known, report);
    }
    for (i, hypothesis) in experiment.hypotheses.iter().enumerate() {
        check_hypothesis(i, hypothesis, experiment, &probes, report);
    }
    if let Some(below) = experiment.abort.success_rate_below
        && !(below > 0.0 && below <= 1.0)
    {
        report(
            &[key("abort"), key("success_rate_below")],
            format!("{below}; allowed: a share above 0, at most 1"),
        );
    }
}

fn check_load(experiment: &Experiment, report: Report<'_>) {
    let load = &experiment.load;
    let at = |k: &str| [key("load"), key(k)];
    if !load.url.starts_with("http://") || load.url.parse::<http::Uri>().is_err() {
        report(
            &at("url"),
            format!("{:?}; allowed: an http:// URL", load.url),
        );
    }
    const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    if !METHODS.contains(&load.method.as_str()) {
        report(
            &at("method"),
            format!("{:?}; allowed: {}", load.method, METHODS.join(", ")),
        );
    }
    let requests = load.rate * experiment.duration.as_secs_f64();
    if load.rate.is_nan() || load.rate <= 0.0 || requests > MAX_REQUESTS {
        report(
            &at("rate"),
            format!(
                "{}/s for {:?}; allowed: above 0, at most {MAX_REQUESTS} requests in a run",
                load.rate, experiment.duration
            ),
        );
    }
    if let Some(control) = &load.control {
        let at = [key("load"), key("control")];
        if !control.url.starts_with("http://") || control.url.parse::<http::Uri>().is_err() {
            report(
                &at,
                format!("url {:?}; allowed: an http:// URL", control.url),
            );
        }
        if !(control.share > 0.0 && control.share < 1.0) {
            report(
                &at,
                format!("share {}; allowed: above 0 and below 1", control.share),
            );
        }
    }
    if load.timeout.is_zero() || load.timeout > Duration::from_secs(60) {
        report(
            &at("timeout"),
            format!("{:?}; allowed: above 0, at most 60 s", load.timeout),
        );
    }
}

/// The set of `names`; a repeated or empty one is reported under `section`.
fn names<'n>(
    names: impl Iterator<Item = &'n String>,
    section: &str,
    report: Report<'_>,
) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        if name.is_empty() || !seen.insert(name.clone()) {
            report(
                &[key(section), Step::Index(i), key("name")],
                format!("{name:?} is empty or used twice; allowed: a name of its own"),
            );
        }
    }
    seen
}

/// The names a fault may refer to.
struct Known<'k> {
    /// Every target's.
    targets: &'k HashSet<String>,
    /// The targets the run does not start (no command).
    addresses: &'k HashSet<String>,
    /// The fault proxies'.
    proxies: &'k HashSet<String>,
}

fn check_fault(
    i: usize,
    fault: &FaultSpec,
    duration: Duration,
    known: &Known<'_>,
    report: Report<'_>,
) {
    let Known {
        targets,
        addresses,
        proxies,
    } = *known;
    let at = |k: &str| vec![key("fault"), Step::Index(i), key(k)];
    let kinds = [
        fault.toxic.is_some(),
        fault.down.is_some(),
        fault.process.is_some(),
        fault.route.is_some(),
        fault.skew.is_some(),
        fault.pressure.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        report(
            &[key("fault"), Step::Index(i)],
            "needs exactly one of toxic, down, process, route, skew, pressure".into(),
        );
    }
    if fault.lasts.is_zero() || fault.at + fault.lasts > duration {
        report(
            &at("for"),
            format!(
                "{:?} from {:?} ends after the run's {duration:?}; allowed: a window within the run",
                fault.lasts, fault.at
            ),
        );
    }
    let missing = |kind: &str, name: &str| {
        format!("no {kind} named {name:?}; allowed: one of the [[{kind}]] names")
    };
    if let Some(skew) = &fault.skew {
        if !targets.contains(&skew.target) {
            let path = [key("fault"), Step::Index(i), key("skew"), key("target")];
            report(&path, missing("target", &skew.target));
        }
        if skew.seconds().is_none() {
            report(
                &at("skew"),
                format!(
                    "offset {:?}; allowed: + or - and a duration, e.g. \"+5s\"",
                    skew.offset
                ),
            );
        }
    }
    if let Some(pressure) = &fault.pressure
        && pressure.command(fault.lasts).is_none()
    {
        report(
            &at("pressure"),
            "allowed: cpu = 1 to 64 workers, memory = \"<n>[K|M|G]\" from 1K to 64G".into(),
        );
    }
    if let Some(toxic) = &fault.toxic {
        if !proxies.contains(&toxic.proxy) {
            report(
                &[key("fault"), Step::Index(i), key("toxic"), key("proxy")],
                missing("proxy", &toxic.proxy),
            );
        }
        let request = ToxicRequest::new(
            None,
            toxic.kind.clone(),
            toxic.stream.clone(),
            toxic.toxicity,
            toxic.attributes.clone(),
        );
        if let Err(error) = Toxic::create(request) {
            report(&at("toxic"), error.message);
        }
    }
    if let Some(proxy) = &fault.down
        && !proxies.contains(proxy)
    {
        report(&at("down"), missing("proxy", proxy));
    }
    if let Some(process) = &fault.process
        && !targets.contains(&process.target)
    {
        report(
            &[key("fault"), Step::Index(i), key("process"), key("target")],
            missing("target", &process.target),
        );
    }
    let signalled = [
        fault.process.as_ref().map(|p| (&p.target, "process")),
        fault.skew.as_ref().map(|s| (&s.target, "skew")),
    ];
    for (target, kind) in signalled.into_iter().flatten() {
        if addresses.contains(target) {
            report(
                &[key("fault"), Step::Index(i), key(kind), key("target")],
                format!(
                    "{target:?} is an address the run does not start; allowed: a target with a command"
                ),
            );
        }
    }
    if let Some(route) = &fault.route {
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&route.lease) {
            report(
                &[key("fault"), Step::Index(i), key("route"), key("lease")],
                format!("{:?}; allowed: 1s to 1h", route.lease),
            );
        }
        if !route.admin.starts_with("http://") {
            report(
                &at("route"),
                format!("admin {:?}; allowed: http://host:port", route.admin),
            );
        }
        if let Some(unknown) = route
            .keys
            .keys()
            .find(|k| !ROUTE_KEYS.contains(&k.as_str()))
        {
            report(
                &at("route"),
                format!(
                    "unknown key {unknown:?}; allowed: admin, route, lease, {}",
                    ROUTE_KEYS.join(", ")
                ),
            );
        }
    }
}

fn check_hypothesis(
    i: usize,
    hypothesis: &Hypothesis,
    experiment: &Experiment,
    probes: &HashSet<String>,
    report: Report<'_>,
) {
    let at = |k: &str| vec![key("hypothesis"), Step::Index(i), key(k)];
    let measures = [
        hypothesis.success_rate.is_some(),
        hypothesis.latency.is_some(),
        hypothesis.probe.is_some(),
        hypothesis.alert.is_some(),
        hypothesis.sagas.is_some(),
    ];
    if measures.iter().filter(|m| **m).count() != 1 {
        report(
            &[key("hypothesis"), Step::Index(i)],
            "needs exactly one of success_rate, latency, probe, alert, sagas".into(),
        );
    }
    if let Some(sagas) = &hypothesis.sagas {
        if !sagas.admin.starts_with("http://") {
            report(
                &at("sagas"),
                format!("admin {:?}; allowed: http://host:port", sagas.admin),
            );
        }
        if hypothesis.window != Window::Throughout {
            report(
                &at("window"),
                "sagas are judged once the load has ended; allowed: throughout (the default)"
                    .into(),
            );
        }
    }
    if let Some(alert) = &hypothesis.alert {
        if experiment.prometheus.is_none() {
            report(
                &at("alert"),
                "no Prometheus to fire it; allowed: add [prometheus]".into(),
            );
        }
        if alert.name.trim().is_empty() {
            report(
                &at("alert"),
                "an empty name; allowed: the alert's name".into(),
            );
        }
    }
    if let Some(name) = &hypothesis.fault
        && !experiment.faults.iter().any(|f| &f.label() == name)
    {
        report(
            &at("fault"),
            format!("no fault named {name:?}; allowed: one of the [[fault]] names"),
        );
    }
    if hypothesis.window != Window::Throughout {
        let (start, end) = experiment.window_of(hypothesis);
        if experiment.fault_span().is_none() || end <= start {
            report(
                &at("window"),
                format!(
                    "{:?} is empty in this run (faults from {:?}); allowed: a window the faults leave",
                    hypothesis.window,
                    experiment.fault_span()
                ),
            );
        }
    }
    if let Some(rate) = hypothesis.success_rate
        && !(0.0..=1.0).contains(&rate.at_least)
    {
        report(
            &at("success_rate"),
            format!("{}; allowed: a share from 0 to 1", rate.at_least),
        );
    }
    if let Some(latency) = hypothesis.latency
        && !(latency.percentile > 0.0 && latency.percentile <= 100.0)
    {
        report(
            &at("latency"),
            format!(
                "percentile {}; allowed: above 0, at most 100",
                latency.percentile
            ),
        );
    }
    if hypothesis.group == Group::Control && experiment.load.control.is_none() {
        report(
            &at("group"),
            "the load has no control group; allowed: add [load.control]".into(),
        );
    }
    if let Some(probe) = &hypothesis.probe
        && !probes.contains(&probe.name)
    {
        report(
            &at("probe"),
            format!(
                "no probe named {:?}; allowed: one of the [[probe]] names",
                probe.name
            ),
        );
    }
}

fn check_prometheus(prometheus: &PrometheusSpec, report: Report<'_>) {
    let at = |k: &str| [key("prometheus"), key(k)];
    if prometheus.scrape.is_empty() {
        report(
            &at("scrape"),
            "empty; allowed: [\"http://host:port/metrics\", ...]".into(),
        );
    }
    for page in &prometheus.scrape {
        if super::prometheus::split_page(page).is_none() {
            report(
                &at("scrape"),
                format!("{page:?}; allowed: http://host:port/path"),
            );
        }
    }
    if let Err(problems) = crate::config::load(Path::new(&prometheus.alerts_for)) {
        report(
            &at("alerts_for"),
            format!(
                "{:?} is not a sidecar config that loads: {problems}",
                prometheus.alerts_for
            ),
        );
    }
}

/// `host:port` with a valid port.
pub(super) fn is_host_port(value: &str) -> bool {
    value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}
