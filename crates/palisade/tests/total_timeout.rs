//! A total timeout outside a retry, and per-try timeouts inside it: whichever timeout
//! notices first, the total's own expiry is reported as the total's `Timeout` (with its
//! event and metric), through the call API and through tower layers alike; only a
//! deadline the caller set is reported as `DeadlineExceeded`. A tower timeout fixes its
//! limit when its response future is first polled, where the budget around it is known.

#![cfg(not(palisade_loom))]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use palisade::events::Event;
use palisade::policy::fallback::{Fallback, Trigger};
use palisade::policy::retry::{BackoffKind, Jitter, Retry};
use palisade::policy::timeout::Timeout;
use palisade::{Error, Pipeline, Policy, deadline};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

const TOTAL: Duration = Duration::from_millis(200);
const PER_TRY: Duration = Duration::from_secs(1);

/// The events every policy built here reports.
type Heard = Arc<Mutex<Vec<Event>>>;

/// A total and a per-try timeout reporting to `heard`, their metrics to `recorder`.
fn timeouts(recorder: &DebuggingRecorder, heard: &Heard) -> (Timeout, Timeout) {
    let build = |name: &str, after: Duration| {
        let sink = heard.clone();
        metrics::with_local_recorder(recorder, || {
            Timeout::builder()
                .name(name)
                .after(after)
                .on_event(move |e| sink.lock().unwrap().push(e.clone()))
                .build()
                .unwrap()
        })
    };
    (build("total", TOTAL), build("per-try", PER_TRY))
}

fn retry() -> Retry {
    Retry::builder()
        .max_attempts(3)
        .backoff(
            BackoffKind::Constant,
            Duration::from_millis(10),
            Duration::from_secs(1),
        )
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

/// `palisade_timeouts_total` of the timeout named `policy`.
fn fired(snapshotter: &Snapshotter, policy: &str) -> Option<DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, ..)| {
            key.key().name() == "palisade_timeouts_total"
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "policy" && l.value() == policy)
        })
        .map(|(.., value)| value)
}

/// Only the total timeout fired: its error, one event, one count.
fn assert_the_total_fired(
    result: &Result<(), Error<&'static str>>,
    heard: &Heard,
    snapshotter: &Snapshotter,
) {
    assert!(
        matches!(result, Err(Error::Timeout { after }) if *after == TOTAL),
        "{result:?}"
    );
    assert_eq!(
        *heard.lock().unwrap(),
        vec![Event::TimedOut {
            name: "total".into(),
            after: TOTAL
        }]
    );
    assert_eq!(fired(snapshotter, "total"), Some(DebugValue::Counter(1)));
    assert_eq!(fired(snapshotter, "per-try"), Some(DebugValue::Counter(0)));
}

/// An operation that never answers.
async fn hangs() -> Result<(), &'static str> {
    std::future::pending().await
}

#[tokio::test(start_paused = true)]
async fn a_total_timeout_cutting_an_attempt_reports_its_own_timeout() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let heard = Heard::default();
    let (total, per_try) = timeouts(&recorder, &heard);
    let pipeline = Pipeline::builder()
        .push(total)
        .push(retry())
        .push(per_try)
        .build();
    let start = Instant::now();
    let r = pipeline.call(hangs).await;
    assert_eq!(start.elapsed(), TOTAL);
    assert_the_total_fired(&r, &heard, &snapshotter);
}

#[tokio::test(start_paused = true)]
async fn a_fallback_on_timeouts_answers_when_the_total_timeout_cuts_an_attempt() {
    let recorder = DebuggingRecorder::new();
    let heard = Heard::default();
    let (total, per_try) = timeouts(&recorder, &heard);
    let fallback = Fallback::<&str, &str>::builder()
        .on(&[Trigger::Timeout])
        .value("stale")
        .build()
        .unwrap();
    let pipeline = Pipeline::builder()
        .push(fallback)
        .push(total)
        .push(retry())
        .push(per_try)
        .build();
    let r = pipeline
        .call(|| async { std::future::pending::<Result<&str, &str>>().await })
        .await;
    assert_eq!(r.unwrap(), "stale");
}

#[tokio::test(start_paused = true)]
async fn a_caller_deadline_nearer_than_the_total_is_still_reported_as_such() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let heard = Heard::default();
    let (total, per_try) = timeouts(&recorder, &heard);
    let pipeline = Pipeline::builder()
        .push(total)
        .push(retry())
        .push(per_try)
        .build();
    let start = Instant::now();
    let r = deadline::scope_for(Duration::from_millis(30), pipeline.call(hangs)).await;
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    assert_eq!(start.elapsed(), Duration::from_millis(30));
    assert!(heard.lock().unwrap().is_empty());
    assert_eq!(fired(&snapshotter, "total"), Some(DebugValue::Counter(0)));
}

/// A service that records the time left when it is polled, and never answers.
fn recording(
    seen: &Arc<Mutex<Vec<Option<Duration>>>>,
) -> impl tower::Service<
    (),
    Response = (),
    Error = Error<&'static str>,
    Future = impl Future<Output = Result<(), Error<&'static str>>> + Send,
> + Clone {
    let seen = seen.clone();
    service_fn(move |(): ()| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(deadline::remaining());
            hangs().await.map_err(Error::Inner)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_tower_stack_gives_the_per_try_timeout_and_the_service_the_total_budget() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let heard = Heard::default();
    let (total, per_try) = timeouts(&recorder, &heard);
    let seen = Arc::default();
    let mut svc = ServiceBuilder::new()
        .layer(total.layer())
        .layer(retry().layer())
        .layer(per_try.layer())
        .service(recording(&seen));
    svc.ready().await.unwrap();
    let response = svc.call(());
    // Time passes between `call` and the first poll: the budgets start when polled.
    tokio::time::advance(Duration::from_millis(10)).await;
    let start = Instant::now();
    let r = response.await;
    assert_eq!(start.elapsed(), TOTAL);
    assert_eq!(*seen.lock().unwrap(), vec![Some(TOTAL)]);
    assert_the_total_fired(&r, &heard, &snapshotter);
}

#[tokio::test(start_paused = true)]
async fn the_same_pipeline_as_a_tower_layer_reports_the_same() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let heard = Heard::default();
    let (total, per_try) = timeouts(&recorder, &heard);
    let pipeline = Pipeline::builder()
        .push(total)
        .push(retry())
        .push(per_try)
        .build();
    let seen = Arc::default();
    let svc = pipeline.layer().layer(recording(&seen));
    let start = Instant::now();
    let r = svc.oneshot(()).await;
    assert_eq!(start.elapsed(), TOTAL);
    assert_eq!(*seen.lock().unwrap(), vec![Some(TOTAL)]);
    assert_the_total_fired(&r, &heard, &snapshotter);
}
