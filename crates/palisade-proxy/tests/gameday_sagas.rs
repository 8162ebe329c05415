//! A game day's hypothesis that sagas end consistent: a load of checkouts (POSTs to a
//! saga route) through the real sidecar, then the sagas read from its admin API once the
//! load has ended — all completed or compensated passes; a compensation that keeps
//! failing parks its saga, and the game day fails naming it.

mod support;

use support::*;

fn experiment(proxy: &Proxy) -> String {
    format!(
        r#"
title = "every checkout ends consistent"
duration = "3s"
[load]
url = "{url}"
method = "POST"
rate = 20
[[hypothesis]]
name = "checkouts end completed or compensated"
sagas = {{ admin = "http://{admin}", saga = "checkout", within = "5s" }}
"#,
        url = proxy.url("/checkout"),
        admin = proxy.admin
    )
}

async fn play(inventory: Behaviour, payments: Behaviour) -> Ran {
    let inventory = Upstream::start("inventory", inventory).await;
    let payments = Upstream::start("payments", payments).await;
    let store = temp_path("gameday-sagas", "db");
    let proxy = Proxy::start(&saga_config(&inventory, &payments, &store, "300ms")).await;
    let ran = gameday(&experiment(&proxy)).await;
    drop(proxy);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
    ran
}

#[tokio::test]
async fn checkouts_completed_or_compensated_pass() {
    let declined_half = Behaviour::fail_first(20, 402);
    let ran = play(Behaviour::Ok, declined_half).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let verdict = &ran.journal()["verdicts"][0];
    let measured = verdict["measured"].as_str().unwrap_or_default();
    assert!(
        measured.starts_with("all ") && measured.contains("consistent"),
        "{verdict}"
    );
}

#[tokio::test]
async fn a_parked_saga_fails_the_game_day_and_is_named() {
    let refunds_fail = Behaviour::ForMethod("DELETE", Box::new(Behaviour::Status(500)));
    let ran = play(refunds_fail, Behaviour::Status(402)).await;
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let verdict = &ran.journal()["verdicts"][0];
    assert_eq!(verdict["passed"], false);
    assert!(
        verdict["measured"]
            .as_str()
            .unwrap_or_default()
            .contains("parked"),
        "{verdict}"
    );
}
