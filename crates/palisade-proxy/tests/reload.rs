//! SIGHUP re-reads the config: a valid file replaces the old one without dropping
//! connections; an invalid one is refused and the old config keeps serving.

mod support;

use support::*;

fn upstream(name: &str, up: &Upstream, prefix: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "{name}"
endpoints = [{endpoints}]

[[route]]
path_prefix = "{prefix}"
upstream = "{name}"
"#,
        endpoints = list(&[up])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_valid_config_adds_a_route_and_keeps_connections() {
    let one = Upstream::start("one", Behaviour::Ok).await;
    let two = Upstream::start("two", Behaviour::Ok).await;
    let first = upstream("one", &one, "/one");
    let proxy = Proxy::start(&first).await;

    let mut conn = Conn::open(proxy.addr).await;
    let r = conn.get("/one/x").await.expect("first request");
    assert_eq!((r.status, r.text()), (200, "ok from one".to_owned()));
    let r = conn.get("/two/x").await.expect("unrouted request");
    assert_ne!(r.status, 200, "no route yet: {r:?}");
    assert_eq!(two.count(), 0);

    proxy.rewrite_config(
        &Sections::default(),
        &format!("{first}{}", upstream("two", &two, "/two")),
    );
    proxy.signal("HUP");

    let c = &mut conn;
    let r = eventually("the new route to serve", secs(5), async || {
        let r = c
            .get("/two/x")
            .await
            .expect("the kept connection was dropped by the reload");
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(r.text(), "ok from two");
    let r = conn
        .get("/one/x")
        .await
        .expect("old route on the kept connection");
    assert_eq!((r.status, r.text()), (200, "ok from one".to_owned()));
    assert!(!conn.is_closed());

    let state = proxy.state().await;
    assert_eq!(state["routes"].as_array().map(Vec::len), Some(2), "{state}");
    assert_eq!(two.requests()[0].path, "/two/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_an_invalid_config_keeps_the_old_one() {
    let one = Upstream::start("one", Behaviour::Ok).await;
    let first = upstream("one", &one, "/one");
    let mut proxy = Proxy::start(&first).await;
    assert_eq!(proxy.get("/one/x").await.status, 200);

    let broken = format!("{first}\n[upstream.circuit_breaker]\nfailure_rate = 1.5\n");
    proxy.rewrite_config(&Sections::default(), &broken);
    proxy.signal("HUP");

    // The refusal is logged, naming the bad key.
    let p = &proxy;
    eventually("the refused reload to be logged", secs(5), async || {
        p.log().contains("failure_rate").then_some(())
    })
    .await;
    assert!(
        proxy.try_wait().is_none(),
        "palisade exited on a bad reload; log:\n{}",
        proxy.log()
    );
    for i in 0..5 {
        let r = proxy.get("/one/x").await;
        assert_eq!(r.status, 200, "request {i} after the refused reload: {r:?}");
    }
    assert_eq!(proxy.admin_get("/health/live").await.status, 200);

    // A file that is not even TOML is refused too.
    proxy.write_raw_config("this is [not toml");
    proxy.signal("HUP");
    for i in 0..5 {
        let r = proxy.get("/one/x").await;
        assert_eq!(
            r.status, 200,
            "request {i} after the second refused reload: {r:?}"
        );
    }
    assert!(
        proxy.try_wait().is_none(),
        "palisade exited on a bad reload; log:\n{}",
        proxy.log()
    );
    assert_eq!(one.count(), 11);
}
