use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::*;
use crate::deadline;

async fn sleepy(d: Duration) -> Result<&'static str, Error<&'static str>> {
    sleep(d).await;
    Ok("done")
}

#[tokio::test(start_paused = true)]
async fn fast_operation_passes_through() {
    let t = Timeout::new(Duration::from_millis(100));
    let r = t
        .execute(&crate::DefaultClassifier, || {
            sleepy(Duration::from_millis(99))
        })
        .await;
    assert_eq!(r.unwrap(), "done");
}

#[tokio::test(start_paused = true)]
async fn slow_operation_is_cancelled_at_the_timeout() {
    let t = Timeout::new(Duration::from_millis(100));
    let start = Instant::now();
    let r = t
        .execute(&crate::DefaultClassifier, || sleepy(Duration::from_secs(5)))
        .await;
    assert!(matches!(r, Err(Error::Timeout { after }) if after == Duration::from_millis(100)));
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn cancelled_operation_is_dropped() {
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    struct SetOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let t = Timeout::new(Duration::from_millis(10));
    let flag = dropped.clone();
    let r = t
        .execute(&crate::DefaultClassifier, || {
            let guard = SetOnDrop(flag.clone());
            async move {
                let _guard = guard;
                sleep(Duration::from_secs(60)).await;
                Ok::<_, Error<()>>(())
            }
        })
        .await;
    assert!(r.is_err());
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_wins_and_is_reported_as_such() {
    let t = Timeout::new(Duration::from_secs(10));
    let start = Instant::now();
    let r = deadline::scope_for(Duration::from_millis(30), async {
        t.execute(&crate::DefaultClassifier, || sleepy(Duration::from_secs(1)))
            .await
    })
    .await;
    assert!(matches!(r, Err(Error::DeadlineExceeded)));
    assert_eq!(start.elapsed(), Duration::from_millis(30));
}

#[tokio::test(start_paused = true)]
async fn a_spent_deadline_never_starts_the_operation() {
    let t = Timeout::new(Duration::from_secs(1));
    let started = std::sync::atomic::AtomicU32::new(0);
    let r = deadline::scope(Instant::now(), async {
        t.execute(&crate::DefaultClassifier, || {
            started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            sleepy(Duration::ZERO)
        })
        .await
    })
    .await;
    assert!(matches!(r, Err(Error::DeadlineExceeded)));
    assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn the_timeout_sets_a_deadline_for_what_it_wraps() {
    let outer = Timeout::new(Duration::from_millis(200));
    let seen = outer
        .execute(&crate::DefaultClassifier, || async {
            Ok::<_, Error<()>>(deadline::remaining())
        })
        .await
        .unwrap();
    assert_eq!(seen, Some(Duration::from_millis(200)));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_fixed_when_the_operation_first_waits() {
    let t = Timeout::new(Duration::from_millis(200));
    let start = Instant::now();
    let (before, after, left) = t
        .execute(&crate::DefaultClassifier, || async {
            // Before the first wait the scope carries a budget: `current` reads the
            // clock, `remaining` does not need to.
            let before = deadline::current();
            sleep(Duration::from_millis(50)).await;
            // After it, an instant that does not move with the clock.
            let after = deadline::current();
            Ok::<_, Error<()>>((before, after, deadline::remaining()))
        })
        .await
        .unwrap();
    assert_eq!(before, Some(start + Duration::from_millis(200)));
    assert_eq!(after, Some(start + Duration::from_millis(200)));
    assert_eq!(left, Some(Duration::from_millis(150)));
}

#[tokio::test(start_paused = true)]
async fn nested_timeouts_compose_before_either_reads_the_clock() {
    let outer = Timeout::new(Duration::from_millis(50));
    let inner = Timeout::new(Duration::from_millis(100));
    let start = Instant::now();
    let r = outer
        .execute(&crate::DefaultClassifier, || {
            inner.execute(&crate::DefaultClassifier, || sleepy(Duration::from_secs(5)))
        })
        .await;
    // The inner timeout took the outer budget as its deadline: it noticed first, but the
    // time that ran out was the outer timeout's own.
    assert!(
        matches!(r, Err(Error::Timeout { after }) if after == Duration::from_millis(50)),
        "{r:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(50));

    let outer = Timeout::new(Duration::from_millis(100));
    let inner = Timeout::new(Duration::from_millis(50));
    let start = Instant::now();
    let r = outer
        .execute(&crate::DefaultClassifier, || {
            inner.execute(&crate::DefaultClassifier, || sleepy(Duration::from_secs(5)))
        })
        .await;
    assert!(matches!(r, Err(Error::Timeout { after }) if after == Duration::from_millis(50)));
    assert_eq!(start.elapsed(), Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn an_inner_timeout_started_after_the_first_wait_sees_the_fixed_deadline() {
    let outer = Timeout::new(Duration::from_millis(100));
    let inner = Timeout::new(Duration::from_millis(80));
    let start = Instant::now();
    let r = outer
        .execute(&crate::DefaultClassifier, || async {
            sleep(Duration::from_millis(60)).await;
            // 40 ms of the outer budget are left: less than the inner 80 ms.
            inner
                .execute(&crate::DefaultClassifier, || sleepy(Duration::from_secs(5)))
                .await
        })
        .await;
    assert!(
        matches!(r, Err(Error::Timeout { after }) if after == Duration::from_millis(100)),
        "{r:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn an_inner_timeout_started_as_the_outer_time_runs_out_reports_the_outer_timeout() {
    let outer = Timeout::new(Duration::from_millis(100));
    let inner = Timeout::new(Duration::from_secs(1));
    let started = std::sync::atomic::AtomicU32::new(0);
    let r = outer
        .execute(&crate::DefaultClassifier, || async {
            // Ends as the outer timer is due: the inner timeout finds no time left.
            sleep(Duration::from_millis(100)).await;
            inner
                .execute(&crate::DefaultClassifier, || {
                    started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    sleepy(Duration::ZERO)
                })
                .await
        })
        .await;
    assert!(
        matches!(r, Err(Error::Timeout { after }) if after == Duration::from_millis(100)),
        "{r:?}"
    );
    assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_set_inside_the_operation_is_not_the_timeout_s_own() {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = heard.clone();
    let outer = Timeout::builder()
        .after(Duration::from_millis(200))
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let inner = Timeout::new(Duration::from_secs(1));
    let start = Instant::now();
    let r = outer
        .execute(&crate::DefaultClassifier, || {
            deadline::scope_for(Duration::from_millis(30), async {
                inner
                    .execute(&crate::DefaultClassifier, || sleepy(Duration::from_secs(5)))
                    .await
            })
        })
        .await;
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    assert!(heard.lock().unwrap().is_empty());
}

/// Polled once, moves the paused clock by `by` during that poll; then never ends.
async fn stall(by: Duration) {
    let mut advance = std::pin::pin!(tokio::time::advance(by));
    let waker = std::task::Waker::noop();
    let _ = advance
        .as_mut()
        .poll(&mut std::task::Context::from_waker(waker));
    std::future::pending::<()>().await;
}

#[tokio::test(start_paused = true)]
async fn a_budget_two_timeouts_share_is_fixed_once_though_the_clock_moves_mid_poll() {
    let outer = Timeout::new(Duration::from_millis(50));
    let inner = Timeout::new(Duration::from_secs(1));
    let start = Instant::now();
    let r = outer
        .execute(&crate::DefaultClassifier, || async {
            // The inner timeout fixes the outer budget when it first waits; the clock then
            // moves 2 ms before the outer timeout fixes it too. Both must fix it alike.
            let attempt =
                inner.execute(&crate::DefaultClassifier, || sleepy(Duration::from_secs(5)));
            tokio::select! {
                biased;
                r = attempt => r,
                () = stall(Duration::from_millis(2)) => unreachable!(),
            }
        })
        .await;
    assert!(
        matches!(r, Err(Error::Timeout { after }) if after == Duration::from_millis(50)),
        "{r:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn listener_hears_the_timeout() {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = heard.clone();
    let t = Timeout::builder()
        .name("db")
        .after(Duration::from_millis(5))
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let _ = t
        .execute(&crate::DefaultClassifier, || sleepy(Duration::from_secs(1)))
        .await;
    let heard = heard.lock().unwrap();
    assert_eq!(
        *heard,
        vec![crate::events::Event::TimedOut {
            name: "db".into(),
            after: Duration::from_millis(5)
        }]
    );
}

#[test]
fn zero_timeout_is_a_config_error() {
    let err = TimeoutConfig {
        after: Duration::ZERO,
        ..TimeoutConfig::default()
    }
    .build()
    .unwrap_err();
    assert_eq!(err.field, "after");
}

#[tokio::test(start_paused = true)]
async fn tower_service_times_out_and_keeps_errors_flat() {
    use tower::{ServiceExt, service_fn};
    let svc = Timeout::new(Duration::from_millis(50))
        .layer()
        .layer(service_fn(|d: u64| async move {
            sleep(Duration::from_millis(d)).await;
            Ok::<_, std::io::Error>(d)
        }));
    use tower_layer::Layer as _;
    assert_eq!(svc.clone().oneshot(10).await.unwrap(), 10);
    let err = svc.oneshot(500).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }));
}

#[tokio::test(start_paused = true)]
async fn absurd_durations_do_not_panic() {
    let t = Timeout::new(Duration::MAX);
    let r = t
        .execute(&crate::DefaultClassifier, || {
            sleepy(Duration::from_millis(5))
        })
        .await;
    assert_eq!(r.unwrap(), "done");
    let r = deadline::scope_for(Duration::MAX, async { deadline::remaining() }).await;
    assert!(r.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_tower_timeout_takes_the_deadline_around_its_response_future() {
    use tower::{Service, ServiceExt, service_fn};
    use tower_layer::Layer as _;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let mut svc = Timeout::new(Duration::from_secs(1))
        .layer()
        .layer(service_fn(move |d: u64| {
            let record = record.clone();
            async move {
                *record.lock().unwrap() = deadline::remaining();
                sleep(Duration::from_millis(d)).await;
                Ok::<_, std::io::Error>(d)
            }
        }));
    svc.ready().await.unwrap();
    let start = Instant::now();
    let at = start + Duration::from_millis(30);
    let r = deadline::scope(at, svc.call(5000)).await;
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    assert_eq!(*seen.lock().unwrap(), Some(Duration::from_millis(30)));
}

#[tokio::test(start_paused = true)]
async fn a_tower_timeout_never_polls_the_service_once_the_deadline_passed() {
    use tower::{Service, ServiceExt, service_fn};
    use tower_layer::Layer as _;
    let polled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = polled.clone();
    let mut svc = Timeout::new(Duration::from_secs(1))
        .layer()
        .layer(service_fn(move |()| {
            let flag = flag.clone();
            async move {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, std::io::Error>(())
            }
        }));
    svc.ready().await.unwrap();
    let response = svc.call(());
    let r = deadline::scope(Instant::now(), response).await;
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    assert!(!polled.load(std::sync::atomic::Ordering::SeqCst));
}
