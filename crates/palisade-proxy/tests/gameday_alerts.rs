//! A game day proves an alert fires: the runner starts a real Prometheus (Debian's
//! `prometheus` package; outside CI a missing one skips loudly), which scrapes the
//! sidecar every second and evaluates the rules `palisade alerts` writes for its config;
//! a route fault answering every request 503 must make the fast error-budget burn alert
//! fire, and a game day without that fault must see it stay quiet.

mod support;

use support::{Behaviour, Proxy, Upstream, gameday, installed, list};

fn experiment(proxy: &Proxy, abort_percent: u32) -> String {
    format!(
        r#"
title = "the error budget alert fires"
duration = "16s"
[load]
url = "{url}"
rate = 50
timeout = "1s"
[prometheus]
scrape = ["http://{admin}/metrics"]
alerts_for = "{config}"
[[fault]]
name = "every request fails"
at = "3s"
for = "12s"
route = {{ admin = "http://{admin}", route = 0, abort_percent = {abort_percent} }}
[[hypothesis]]
name = "the fast burn alert fires"
window = "during"
alert = {{ name = "PalisadeErrorBudgetFastBurn", labels = {{ route = "/" }}, within = "10s" }}
"#,
        url = proxy.url("/data"),
        admin = proxy.admin,
        config = proxy.config_path().display(),
    )
}

#[tokio::test]
async fn an_alert_game_day_sees_the_burn_alert_fire_in_a_real_prometheus() {
    if !installed("prometheus", "prometheus") {
        return;
    }
    let up = Upstream::start("app", Behaviour::Ok).await;
    let proxy = Proxy::start(&format!(
        "[[upstream]]\nname = \"app\"\nendpoints = [{}]\n[[route]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        list(&[&up])
    ))
    .await;

    let ran = gameday(&experiment(&proxy, 100)).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let journal = ran.journal();
    let series = journal["series"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("alert ")))
        })
        .expect("the alert's series");
    let states: Vec<f64> = series["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter_map(|p| p[1].as_f64())
        .collect();
    assert!(states.first() == Some(&0.0), "quiet at first: {states:?}");
    assert!(states.contains(&2.0), "then firing: {states:?}");
    let rules = std::fs::read_to_string(ran.out.join("prometheus/alerts.yml")).expect("rules kept");
    assert!(rules.contains("PalisadeErrorBudgetFastBurn"), "{rules}");
    assert!(
        !ran.out.join("prometheus/data").exists(),
        "its database removed"
    );

    let quiet = gameday(&experiment(&proxy, 0)).await;
    assert_eq!(quiet.code, 1, "{}\n{}", quiet.stdout, quiet.stderr);
    assert!(
        quiet.stdout.contains("never in the window"),
        "{}",
        quiet.stdout
    );
}
