use std::time::Duration;

use tokio::time::advance;

use super::*;

fn timeout<T>() -> Result<T, Error<&'static str>> {
    Err(Error::Timeout {
        after: Duration::from_secs(1),
    })
}

#[tokio::test(start_paused = true)]
async fn replaces_only_the_chosen_errors() {
    let f = Fallback::<u32, &str>::builder()
        .on(&[Trigger::Timeout, Trigger::CircuitOpen])
        .value(0)
        .build()
        .unwrap();
    assert_eq!(f.apply(timeout()).unwrap(), 0);
    assert!(matches!(
        f.apply(Err(Error::Inner("boom"))),
        Err(Error::Inner("boom"))
    ));
    assert_eq!(f.apply(Ok(5)).unwrap(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_predicate_narrows_further_and_compute_sees_the_error() {
    let f = Fallback::<String, &str>::builder()
        .when(|e| matches!(e, Error::Inner(msg) if msg.starts_with("soft")))
        .compute(|e| format!("fallback for {}", e.reason()))
        .build()
        .unwrap();
    assert_eq!(
        f.apply(Err(Error::Inner("soft fail"))).unwrap(),
        "fallback for inner"
    );
    assert!(f.apply(Err(Error::Inner("hard fail"))).is_err());
}

#[tokio::test(start_paused = true)]
async fn last_good_value_is_served_while_fresh() {
    let f = Fallback::<u32, &str>::builder()
        .last_good(Duration::from_secs(30))
        .value(0)
        .build()
        .unwrap();
    assert_eq!(
        f.apply(timeout()).unwrap(),
        0,
        "nothing good yet: the value"
    );
    f.apply(Ok(42)).unwrap();
    advance(Duration::from_secs(30)).await;
    assert_eq!(f.apply(timeout()).unwrap(), 42);
    advance(Duration::from_secs(1)).await;
    assert_eq!(f.apply(timeout()).unwrap(), 0, "too old: the value again");
}

#[tokio::test(start_paused = true)]
async fn without_a_source_a_stale_last_good_passes_the_error_on() {
    let f = Fallback::<u32, &str>::builder()
        .last_good(Duration::from_secs(1))
        .build()
        .unwrap();
    f.apply(Ok(1)).unwrap();
    advance(Duration::from_secs(2)).await;
    assert!(matches!(f.apply(timeout()), Err(Error::Timeout { .. })));
}

#[tokio::test(start_paused = true)]
async fn uses_are_reported() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let f = Fallback::<u32, &str>::builder()
        .name("menu")
        .value(0)
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let _ = f
        .execute(&crate::DefaultClassifier, || async { timeout() })
        .await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Event::FallbackUsed {
            name: "menu".into(),
            reason: "timeout"
        }]
    );
}

#[test]
fn a_fallback_without_a_source_is_a_config_error() {
    let e = Fallback::<u32, ()>::builder().build().unwrap_err();
    assert_eq!(e.field, "source");
    let e = Fallback::<u32, ()>::builder()
        .on(&[])
        .value(1)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "on");
}

#[tokio::test(start_paused = true)]
async fn tower_layer_answers_with_the_fallback() {
    use tower::{Layer, ServiceExt, service_fn};
    let f = Fallback::<&'static str, std::io::Error>::builder()
        .value("cached")
        .build()
        .unwrap();
    let svc = f.layer().layer(service_fn(|fail: bool| async move {
        if fail {
            Err(std::io::Error::other("down"))
        } else {
            Ok("fresh")
        }
    }));
    assert_eq!(svc.clone().oneshot(false).await.unwrap(), "fresh");
    assert_eq!(svc.oneshot(true).await.unwrap(), "cached");
}

/// A response such as `http::Response<axum::body::Body>`: neither `Clone` nor `Sync`.
#[derive(Debug, PartialEq)]
struct Page {
    body: String,
    /// Makes it `!Sync`, as a streaming body is.
    _unsync: std::marker::PhantomData<std::cell::Cell<()>>,
}

fn page(body: &str) -> Page {
    Page {
        body: body.to_owned(),
        _unsync: std::marker::PhantomData,
    }
}

#[tokio::test(start_paused = true)]
async fn a_computed_fallback_needs_no_clone_through_call() {
    let f = Fallback::<Page, &str>::builder()
        .compute(|e| page(&format!("degraded: {}", e.reason())))
        .build()
        .unwrap();
    let answer = f.call(|| async { Err("down") }).await.unwrap();
    assert_eq!(answer, page("degraded: inner"));
    let answer = f.call(|| async { Ok(page("fresh")) }).await.unwrap();
    assert_eq!(answer, page("fresh"));
}

#[tokio::test(start_paused = true)]
async fn a_computed_fallback_needs_no_clone_as_a_layer() {
    use tower::{Layer, ServiceExt, service_fn};
    let f = Fallback::<Page, std::io::Error>::builder()
        .on(&[Trigger::Inner])
        .compute(|_| page("degraded"))
        .build()
        .unwrap();
    let svc = f.layer().layer(service_fn(|fail: bool| async move {
        if fail {
            Err(std::io::Error::other("down"))
        } else {
            Ok(page("fresh"))
        }
    }));
    assert_eq!(svc.clone().oneshot(false).await.unwrap(), page("fresh"));
    assert_eq!(svc.oneshot(true).await.unwrap(), page("degraded"));
}
