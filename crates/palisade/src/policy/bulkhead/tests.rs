use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::{Instant, advance, sleep};

use super::*;

fn bulkhead(max: usize, queue: usize, timeout_ms: u64) -> Bulkhead {
    Bulkhead::builder()
        .name("b")
        .max_concurrent(max)
        .queue(queue, Duration::from_millis(timeout_ms))
        .build()
        .unwrap()
}

async fn hold(b: &Bulkhead, for_ms: u64) -> Result<(), Error<()>> {
    b.call(|| async move {
        sleep(Duration::from_millis(for_ms)).await;
        Ok::<_, ()>(())
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn never_more_than_max_concurrent_run() {
    let b = bulkhead(3, 100, 10_000);
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (b, running, most) = (b.clone(), running.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            b.call(|| async {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                sleep(Duration::from_millis(10)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ()>(())
            })
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 3);
    let s = b.snapshot();
    assert_eq!(
        (s.accepted, s.rejected, s.active, s.queued, s.peak),
        (20, 0, 0, 0, 3)
    );
    assert_eq!(s.waited, 17);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_rejects_at_once_not_after_the_queue_timeout() {
    let b = bulkhead(1, 1, 500);
    let busy = tokio::spawn({
        let b = b.clone();
        async move { hold(&b, 1000).await }
    });
    tokio::task::yield_now().await;
    let queued = tokio::spawn({
        let b = b.clone();
        async move { hold(&b, 1).await }
    });
    tokio::task::yield_now().await;
    assert_eq!(b.snapshot().queued, 1);
    let start = Instant::now();
    let refused = hold(&b, 1).await;
    assert_eq!(start.elapsed(), Duration::ZERO, "rejected at once");
    assert!(matches!(
        refused,
        Err(Error::BulkheadFull {
            active: 1,
            max: 1,
            ..
        })
    ));
    // The queued call times out after its queue timeout, not before.
    let start = Instant::now();
    let timed_out = queued.await.unwrap();
    assert!(matches!(timed_out, Err(Error::BulkheadFull { .. })));
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    busy.await.unwrap().unwrap();
    let s = b.snapshot();
    assert_eq!((s.accepted, s.rejected), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_runs_as_soon_as_a_slot_frees() {
    let b = bulkhead(1, 4, 1000);
    let first = tokio::spawn({
        let b = b.clone();
        async move { hold(&b, 100).await }
    });
    tokio::task::yield_now().await;
    let start = Instant::now();
    hold(&b, 0).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    first.await.unwrap().unwrap();
    assert_eq!(b.snapshot().total_wait, Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn queued_calls_are_served_in_arrival_order_before_newcomers() {
    let b = bulkhead(1, 10, 10_000);
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let first = b.try_acquire_owned().unwrap();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (b, order) = (b.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            b.call(|| async {
                order.lock().unwrap().push(i);
                sleep(Duration::from_millis(1)).await;
                Ok::<_, ()>(())
            })
            .await
        }));
        tokio::task::yield_now().await;
    }
    assert!(
        b.try_acquire().is_none(),
        "a newcomer does not overtake the queue"
    );
    drop(first);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_frees_its_slot_and_its_queue_place() {
    let b = bulkhead(1, 1, 10_000);
    let running = tokio::spawn({
        let b = b.clone();
        async move { hold(&b, 10_000).await }
    });
    tokio::task::yield_now().await;
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { hold(&b, 0).await }
    });
    tokio::task::yield_now().await;
    assert_eq!((b.snapshot().active, b.snapshot().queued), (1, 1));
    waiting.abort();
    let _ = waiting.await;
    assert_eq!(b.snapshot().queued, 0);
    running.abort();
    let _ = running.await;
    assert_eq!(b.snapshot().active, 0);
    hold(&b, 0).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn no_queue_means_immediate_rejection() {
    let b = bulkhead(1, 0, 0);
    let _held = b.try_acquire().unwrap();
    assert!(matches!(hold(&b, 0).await, Err(Error::BulkheadFull { .. })));
}

#[tokio::test(start_paused = true)]
async fn rejections_are_reported_as_events() {
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let b = Bulkhead::builder()
        .name("db")
        .max_concurrent(1)
        .queue(0, Duration::ZERO)
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let _held = b.try_acquire().unwrap();
    let _ = hold(&b, 0).await;
    let events = events.lock().unwrap();
    assert!(matches!(
        &events[..],
        [Event::BulkheadRejected { snapshot, after_waiting: false }] if snapshot.name == "db" && snapshot.active == 1
    ));
}

#[test]
fn invalid_configs_name_the_field() {
    let e = BulkheadConfig {
        max_concurrent: 0,
        ..Default::default()
    }
    .build()
    .unwrap_err();
    assert_eq!(e.field, "max_concurrent");
    let e = BulkheadConfig {
        max_queue: 5,
        queue_timeout: Duration::ZERO,
        ..Default::default()
    }
    .build()
    .unwrap_err();
    assert_eq!(e.field, "queue_timeout");
    let e = BlockingBulkhead::new(BulkheadConfig {
        max_concurrent: 5000,
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.field, "max_concurrent");
}

#[tokio::test(start_paused = true)]
async fn tower_layer_holds_a_slot_and_queues() {
    use tower::{Layer, ServiceExt, service_fn};
    let b = bulkhead(1, 1, 50);
    let svc = b.layer().layer(service_fn(|ms: u64| async move {
        sleep(Duration::from_millis(ms)).await;
        Ok::<_, std::io::Error>(ms)
    }));
    let slow = tokio::spawn(svc.clone().oneshot(30));
    tokio::task::yield_now().await;
    assert_eq!(b.snapshot().active, 1);
    // Queued: waits for the slow call (30 ms < 50 ms queue timeout), then runs.
    let start = Instant::now();
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
    assert_eq!(start.elapsed(), Duration::from_millis(31));
    assert_eq!(slow.await.unwrap().unwrap(), 30);
    assert_eq!(b.snapshot().active, 0);
}

// --- blocking ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_calls_run_on_the_pool_and_a_timed_out_call_keeps_its_slot() {
    let pool = BlockingBulkhead::new(BulkheadConfig {
        name: "cpu".into(),
        max_concurrent: 1,
        max_queue: 0,
        queue_timeout: Duration::ZERO,
    })
    .unwrap();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    let blocked = pool
        .call_timeout(Duration::from_millis(20), move || {
            let _ = gate.lock().unwrap().recv(); // blocks until released
            Ok::<_, ()>(thread_name())
        })
        .await;
    assert!(matches!(blocked, Err(Error::Timeout { .. })));
    assert_eq!(
        pool.snapshot().active,
        1,
        "the closure still runs and keeps its slot"
    );
    let refused = pool.call(|| Ok::<_, ()>(String::new())).await;
    assert!(matches!(refused, Err(Error::BulkheadFull { .. })));
    release.send(()).unwrap();
    // Wait (bounded) for the worker to finish and free the slot.
    for _ in 0..1000 {
        if pool.snapshot().active == 0 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(pool.snapshot().active, 0);
    let name = pool.call(|| Ok::<_, ()>(thread_name())).await.unwrap();
    assert_eq!(name, "palisade-cpu-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_blocking_call_frees_its_slot_and_panics_the_caller() {
    let pool = BlockingBulkhead::new(BulkheadConfig {
        max_concurrent: 1,
        ..Default::default()
    })
    .unwrap();
    let caller = tokio::spawn({
        let pool = pool.clone();
        async move { pool.call(|| -> Result<(), ()> { panic!("boom") }).await }
    });
    assert!(caller.await.unwrap_err().is_panic());
    assert_eq!(pool.call(|| Ok::<_, ()>(7)).await.unwrap(), 7);
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or_default().to_owned()
}

#[tokio::test(start_paused = true)]
async fn registry_snapshots_every_bulkhead() {
    let registry = BulkheadRegistry::new(1).unwrap();
    let db = registry
        .register(BulkheadConfig {
            name: "db".into(),
            ..Default::default()
        })
        .unwrap();
    let _permit = db.try_acquire().unwrap();
    assert_eq!(registry.snapshot()[0].active, 1);
    assert!(
        registry
            .register(BulkheadConfig {
                name: "other".into(),
                ..Default::default()
            })
            .is_err()
    );
    advance(Duration::ZERO).await;
}

/// Gauges read from a debugging recorder, whose snapshots hand over what changed since
/// the last one: the values are kept here as running totals.
struct Gauges {
    snapshotter: metrics_util::debugging::Snapshotter,
    totals: std::collections::HashMap<String, f64>,
}

impl Gauges {
    fn of(recorder: &metrics_util::debugging::DebuggingRecorder) -> Self {
        Self {
            snapshotter: recorder.snapshotter(),
            totals: Default::default(),
        }
    }

    fn value(&mut self, name: &str) -> f64 {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            if let metrics_util::debugging::DebugValue::Gauge(v) = value {
                *self.totals.entry(key.key().name().to_string()).or_default() += v.into_inner();
            }
        }
        self.totals.get(name).copied().unwrap_or(0.0)
    }
}

#[test]
fn gauges_of_the_same_name_add_up_and_never_go_negative() {
    // Two bulkheads of one name (an old and a new runtime across a reload) report into
    // the same gauge: it counts the calls of both.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let mut gauges = Gauges::of(&recorder);
    let (old, new) =
        metrics::with_local_recorder(&recorder, || (bulkhead(4, 0, 100), bulkhead(4, 0, 100)));
    let a = old.try_acquire_counted().expect("slot");
    let b = old.try_acquire_counted().expect("slot");
    let c = new.try_acquire_counted().expect("slot");
    assert_eq!(gauges.value(names::BULKHEAD_ACTIVE), 3.0);
    drop((a, b));
    assert_eq!(gauges.value(names::BULKHEAD_ACTIVE), 1.0);
    drop(c);
    assert_eq!(gauges.value(names::BULKHEAD_ACTIVE), 0.0);
}

#[test]
fn the_active_gauge_counts_calls_admitted_on_many_threads() {
    const THREADS: usize = 8;
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let mut gauges = Gauges::of(&recorder);
    let b = metrics::with_local_recorder(&recorder, || bulkhead(THREADS, 0, 100));
    for _ in 0..100 {
        let start = std::sync::Barrier::new(THREADS);
        let held = std::sync::Barrier::new(THREADS + 1);
        let release = std::sync::Barrier::new(THREADS + 1);
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    start.wait();
                    let permit = b.try_acquire_counted().expect("a slot for each thread");
                    held.wait();
                    release.wait();
                    drop(permit);
                });
            }
            held.wait();
            assert_eq!(gauges.value(names::BULKHEAD_ACTIVE), THREADS as f64);
            release.wait();
        });
        assert_eq!(gauges.value(names::BULKHEAD_ACTIVE), 0.0);
    }
}

#[tokio::test(start_paused = true)]
async fn the_queued_gauge_counts_waiting_calls() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let mut gauges = Gauges::of(&recorder);
    let b = Arc::new(metrics::with_local_recorder(&recorder, || {
        bulkhead(1, 2, 1_000)
    }));
    let running = tokio::spawn({
        let b = b.clone();
        async move { hold(&b, 500).await }
    });
    tokio::task::yield_now().await;
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { hold(&b, 10).await })
        })
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(gauges.value(names::BULKHEAD_QUEUED), 2.0);
    running.await.expect("task").expect("ran");
    for call in waiting {
        call.await.expect("task").expect("ran after waiting");
    }
    assert_eq!(gauges.value(names::BULKHEAD_QUEUED), 0.0);
    assert_eq!(gauges.value(names::BULKHEAD_ACTIVE), 0.0);
}
