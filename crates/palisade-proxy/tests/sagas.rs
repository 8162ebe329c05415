//! Sagas over HTTP, black-box: a route with `saga = "checkout"` in front of two real
//! upstreams (inventory, payments), the saga logged in a SQLite file. A checkout that
//! completes, one whose charge is declined (compensated), one whose charge times out
//! (unknown: compensated too), a client's retry with the same key, and a compensation that
//! keeps failing (parked) resumed by an operator.

mod support;

use support::*;

struct Shop {
    inventory: Upstream,
    payments: Upstream,
    proxy: Proxy,
    _store: std::path::PathBuf,
}

async fn shop(inventory: Behaviour, payments: Behaviour) -> Shop {
    let inventory = Upstream::start("inventory", inventory).await;
    let payments = Upstream::start("payments", payments).await;
    let store = temp_path("sagas", "db");
    let proxy = Proxy::start(&saga_config(&inventory, &payments, &store, "300ms")).await;
    Shop {
        inventory,
        payments,
        proxy,
        _store: store,
    }
}

impl Shop {
    async fn checkout(&self, key: &str) -> Resp {
        self.proxy
            .send(
                "POST",
                "/checkout",
                &[
                    ("idempotency-key", key),
                    ("content-type", "application/json"),
                ],
                r#"{"cart":7}"#,
            )
            .await
    }
}

fn calls(up: &Upstream) -> Vec<(String, String, Option<String>)> {
    up.requests()
        .iter()
        .map(|r| {
            (
                r.method.clone(),
                r.path.clone(),
                r.header("idempotency-key").map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_completes_and_a_retry_with_its_key_answers_the_same_saga() {
    let shop = shop(Behaviour::Ok, Behaviour::Ok).await;
    let first = shop.checkout("order-1").await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.header("x-palisade-saga-id"), Some("order-1"));
    let body = first.json();
    assert_eq!(body["state"], "completed");
    assert_eq!(body["steps"]["reserve"], "ok from inventory");
    assert_eq!(body["steps"]["charge"], "ok from payments");

    let reserve = &shop.inventory.requests()[0];
    assert_eq!(reserve.header("x-saga-id"), Some("order-1"));
    assert_eq!(reserve.header("idempotency-key"), Some("order-1/reserve"));
    assert_eq!(
        &reserve.body[..],
        br#"{"cart":7}"#,
        "the saga's input is each step's body"
    );

    let again = shop.checkout("order-1").await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json()["steps"], body["steps"]);
    assert_eq!(shop.inventory.count(), 1, "a retry starts no second saga");
    assert_eq!(shop.payments.count(), 1);

    let view = shop.proxy.admin_get("/admin/sagas/order-1").await;
    assert_eq!(view.status, 200);
    assert_eq!(view.json()["state"], "completed");
    let list = shop.proxy.admin_get("/admin/sagas?state=completed").await;
    assert_eq!(list.json()["sagas"][0]["id"], "order-1", "{}", list.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_charge_is_compensated_and_not_refunded() {
    let shop = shop(Behaviour::Ok, Behaviour::Status(402)).await;
    let r = shop.checkout("order-2").await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.reason(), Some("saga-compensated"));
    let body = r.json();
    assert_eq!(body["state"], "compensated");
    assert_eq!(body["failed_step"], "charge");
    assert_eq!(
        calls(&shop.inventory),
        [
            (
                "POST".into(),
                "/reservations".into(),
                Some("order-2/reserve".into())
            ),
            (
                "DELETE".into(),
                "/reservations/order-2".into(),
                Some("order-2/reserve/compensate".into())
            ),
        ]
    );
    assert_eq!(
        calls(&shop.payments).len(),
        1,
        "a definitive refusal is not compensated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_whose_outcome_is_unknown_is_refunded() {
    // The charge hangs past the per-try timeout: it may have happened.
    let shop = shop(
        Behaviour::Ok,
        Behaviour::ForPath("/charges", Box::new(Behaviour::Hang)),
    )
    .await;
    let r = shop.checkout("order-3").await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.reason(), Some("saga-compensated"));
    let payments = calls(&shop.payments);
    assert_eq!(
        payments,
        [
            (
                "POST".into(),
                "/charges".into(),
                Some("order-3/charge".into())
            ),
            (
                "POST".into(),
                "/refunds".into(),
                Some("order-3/charge/compensate".into())
            ),
        ]
    );
    assert_eq!(calls(&shop.inventory).len(), 2, "reserved, then released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_that_keeps_failing_parks_the_saga_until_an_operator_resumes_it() {
    let shop = shop(
        Behaviour::ForMethod("DELETE", Box::new(Behaviour::Status(500))),
        Behaviour::Status(402),
    )
    .await;
    let r = shop.checkout("order-4").await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.reason(), Some("saga-parked"), "{}", r.text());
    assert!(
        r.json()["reason"]
            .as_str()
            .is_some_and(|reason| reason.starts_with("compensation_failed")),
        "{}",
        r.text()
    );
    let gauge = |m: &[Sample]| sum(m, "palisade_sagas_parked", &[("saga", "checkout")]);
    assert_eq!(
        gauge(&shop.proxy.metrics().await),
        1.0,
        "the parked saga is counted"
    );
    // The inventory recovers; an operator resumes the saga.
    shop.inventory.set_behaviour(Behaviour::Ok);
    let refused = shop.proxy.admin_post("/admin/sagas/nope/resume", "").await;
    assert_eq!(refused.status, 404, "{refused:?}");
    // The operator's commands go through the running proxy's admin port.
    let (ok, parked, err) = shop.proxy.cli(&["saga", "list", "--state", "parked"]).await;
    assert!(ok && parked.contains("order-4"), "{parked}{err}");
    let (ok, out, err) = shop.proxy.cli(&["saga", "resume", "order-4"]).await;
    assert!(ok, "{out}{err}");
    let done = eventually("the resumed saga to be compensated", secs(5), async || {
        let r = shop.proxy.get("/checkout/order-4").await;
        (r.json()["state"] == "compensated").then_some(r)
    })
    .await;
    assert_eq!(done.status, 409);
    assert_eq!(done.reason(), Some("saga-compensated"));
    let m = shop.proxy.metrics().await;
    assert_eq!(gauge(&m), 0.0, "a resumed saga is no longer counted");
    assert!(
        !matching(&m, "palisade_sagas_parked", &[("saga", "checkout")]).is_empty(),
        "the gauge stays, at 0"
    );
    let deletes = calls(&shop.inventory)
        .into_iter()
        .filter(|(m, _, _)| m == "DELETE")
        .count();
    assert_eq!(deletes, 3, "two failed attempts, then the resumed one");
    let (ok, _, err) = shop.proxy.cli(&["saga", "abort", "order-4"]).await;
    assert!(
        !ok && err.contains("409"),
        "a saga no longer parked cannot be aborted: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_on_a_saga_route_get_clear_answers() {
    let shop = shop(Behaviour::Ok, Behaviour::Ok).await;
    let not_json = shop
        .proxy
        .send("POST", "/checkout", &[("idempotency-key", "k")], "cart=7")
        .await;
    assert_eq!(not_json.status, 400, "{not_json:?}");
    let bad_key = shop
        .proxy
        .send("POST", "/checkout", &[("idempotency-key", "a/b")], "{}")
        .await;
    assert_eq!(bad_key.status, 400, "{bad_key:?}");
    let wrong_method = shop.proxy.send("PUT", "/checkout", &[], "{}").await;
    assert_eq!(wrong_method.status, 405);
    let unknown = shop.proxy.get("/checkout/no-such-saga").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(shop.inventory.count(), 0, "nothing reached the upstreams");
}

#[tokio::test]
async fn saga_config_errors_name_their_line() {
    let out = check(
        r#"
[listener]
address = "127.0.0.1:0"
[[upstream]]
name = "payments"
endpoints = ["127.0.0.1:1"]
[saga_store]
url = "mysql://db"
[[saga]]
name = "checkout"
[[saga.step]]
name = "charge"
upstream = "nowhere"
method = "POST"
path = "charges"
[[route]]
path_prefix = "/checkout"
saga = "missing"
"#,
    )
    .await;
    assert!(!out.status.success(), "{out:?}");
    for expected in [
        ":8: saga_store.url",
        ":13: saga[0].step[0].upstream",
        ":15: saga[0].step[0].path",
        ":18: route[0].saga",
    ] {
        assert!(
            out.stderr.contains(expected),
            "{expected} in:\n{}",
            out.stderr
        );
    }
}

/// The process dies while a step is in flight: started again on the same store, it runs
/// the step again with the same idempotency key (at-least-once; the key makes it once)
/// and finishes the saga.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_in_flight_when_the_process_dies_is_run_again_with_its_key() {
    let inventory = Upstream::start("inventory", Behaviour::Ok).await;
    let payments = Upstream::start("payments", Behaviour::Gate).await;
    let store = temp_path("sagas", "db");
    // The charge hangs until the process is killed.
    let text = saga_config(&inventory, &payments, &store, "10s");
    let mut first = Proxy::start(&text).await;
    let answer = first
        .send(
            "POST",
            "/checkout",
            &[("idempotency-key", "order-5"), ("x-request-timeout", "100")],
            "{}",
        )
        .await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.header("location"), Some("/checkout/order-5"));
    payments.wait_for(1, secs(5)).await;
    first.signal("KILL");
    first.wait_exit(secs(5)).await;

    payments.open_gate();
    let second = Proxy::start(&text).await;
    let done = eventually(
        "the saga to finish after the restart",
        secs(10),
        async || {
            let r = second.get("/checkout/order-5").await;
            (r.status == 200).then_some(r)
        },
    )
    .await;
    assert_eq!(done.json()["state"], "completed");
    let keys: Vec<_> = calls(&payments)
        .into_iter()
        .map(|(_, _, key)| key)
        .collect();
    assert_eq!(
        keys,
        [
            Some("order-5/charge".to_owned()),
            Some("order-5/charge".to_owned())
        ],
        "the charge was sent again, with the same key"
    );
    assert_eq!(inventory.count(), 1, "the reservation was not repeated");
}

/// A store that cannot be opened stops the start, saying why.
#[tokio::test]
async fn a_store_that_cannot_be_opened_fails_the_start_with_the_reason() {
    let payments = Upstream::start("payments", Behaviour::Ok).await;
    let store = std::path::Path::new("/nonexistent-palisade-dir/sagas.db");
    let text = saga_config(&payments, &payments, store, "300ms");
    let body = format!(
        "[listener]\naddress = \"127.0.0.1:{}\"\n[admin]\naddress = \"127.0.0.1:{}\"\n{text}",
        free_port(),
        free_port()
    );
    let path = temp_path("bad-store", "toml");
    std::fs::write(&path, body).unwrap();
    let run = tokio::process::Command::new(bin())
        .arg("run")
        .arg("--config")
        .arg(&path)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(secs(10), run)
        .await
        .expect("exits within 10 s")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("saga store sqlite:///nonexistent-palisade-dir/sagas.db"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_step_without_a_method_is_a_config_error_on_its_line() {
    let out = check(
        r#"
[listener]
address = "127.0.0.1:0"
[[upstream]]
name = "payments"
endpoints = ["127.0.0.1:1"]
[[saga]]
name = "checkout"
[[saga.step]]
name = "charge"
upstream = "payments"
path = "/charges"
[[route]]
path_prefix = "/checkout"
saga = "checkout"
"#,
    )
    .await;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains(":9: method: required, and missing"),
        "{}",
        out.stderr
    );
}
