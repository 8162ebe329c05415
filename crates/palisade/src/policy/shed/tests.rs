use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::*;

fn shedder(max_concurrent: usize, max_queue: usize) -> LoadShedder {
    LoadShedder::new(ShedConfig {
        max_concurrent,
        max_queue,
        target: Duration::from_millis(5),
        interval: Duration::from_millis(50),
        ..Default::default()
    })
    .unwrap()
}

async fn run(s: &LoadShedder, class: Criticality, work: Duration) -> Result<(), Error<()>> {
    criticality::scope(
        class,
        s.call(|| async move {
            sleep(work).await;
            Ok::<_, ()>(())
        }),
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn a_freed_slot_goes_to_the_highest_class_waiting() {
    let s = shedder(1, 10);
    let busy = s.try_acquire(Criticality::Critical).unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for class in [
        Criticality::Sheddable,
        Criticality::Critical,
        Criticality::SheddablePlus,
    ] {
        let (s, order) = (s.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            criticality::scope(
                class,
                s.call(|| async {
                    order.lock().unwrap().push(class);
                    Ok::<_, ()>(())
                }),
            )
            .await
        }));
        tokio::task::yield_now().await;
    }
    drop(busy);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        *order.lock().unwrap(),
        [
            Criticality::Critical,
            Criticality::SheddablePlus,
            Criticality::Sheddable
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_displaces_a_lower_class_or_sheds_the_newcomer() {
    let s = shedder(1, 1);
    let _busy = s.try_acquire(Criticality::Critical).unwrap();
    let low = tokio::spawn({
        let s = s.clone();
        async move { run(&s, Criticality::Sheddable, Duration::ZERO).await }
    });
    tokio::task::yield_now().await;
    let high = tokio::spawn({
        let s = s.clone();
        async move { run(&s, Criticality::Critical, Duration::ZERO).await }
    });
    tokio::task::yield_now().await;
    assert!(
        matches!(low.await.unwrap(), Err(Error::Shed { .. })),
        "displaced by a critical call"
    );
    let start = Instant::now();
    let late = run(&s, Criticality::Sheddable, Duration::ZERO).await;
    assert!(matches!(late, Err(Error::Shed { .. })));
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "shed at once, not after a wait"
    );
    drop(_busy);
    high.await.unwrap().unwrap();
}

/// 3× overload, 30% critical: critical calls nearly all succeed, sheddable ones are
/// shed, and queue delay stays near CoDel's target.
#[tokio::test(start_paused = true)]
async fn three_times_overload_sheds_the_sheddable_and_keeps_queues_short() {
    let s = shedder(10, 200); // 10 slots × 10 ms = 1000 calls/s
    let served = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
    let shed = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
    let waits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..9_000u32 {
        // 3000 calls/s for 3 s, 30% critical.
        let class = if i % 10 < 3 {
            Criticality::Critical
        } else {
            Criticality::Sheddable
        };
        let index = usize::from(class == Criticality::Sheddable);
        let (s, served, shed, waits) = (s.clone(), served.clone(), shed.clone(), waits.clone());
        tasks.push(tokio::spawn(async move {
            let asked = Instant::now();
            let result = criticality::scope(
                class,
                s.call(|| {
                    let waited = asked.elapsed();
                    let waits = waits.clone();
                    async move {
                        waits.lock().unwrap().push(waited);
                        sleep(Duration::from_millis(10)).await;
                        Ok::<_, ()>(())
                    }
                }),
            )
            .await;
            let counter = if result.is_ok() {
                &served[index]
            } else {
                &shed[index]
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        if i % 3 == 2 {
            sleep(Duration::from_millis(1)).await;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let critical_ok = f64::from(served[0].load(Ordering::Relaxed));
    let critical_all = critical_ok + f64::from(shed[0].load(Ordering::Relaxed));
    assert!(
        critical_ok / critical_all >= 0.99,
        "critical success {critical_ok}/{critical_all}"
    );
    let sheddable_shed = f64::from(shed[1].load(Ordering::Relaxed));
    assert!(
        sheddable_shed / 6300.0 > 0.5,
        "sheddable shed: {sheddable_shed}"
    );
    let mut waits = waits.lock().unwrap().clone();
    waits.sort();
    let p90 = waits[waits.len() * 9 / 10];
    assert!(p90 <= Duration::from_millis(15), "p90 queue wait {p90:?}");
    assert!(
        *waits.last().unwrap() <= Duration::from_millis(60),
        "no wait beyond the interval: {:?}",
        waits.last()
    );
}

/// While congested, the sheddable class is served newest first, critical calls oldest
/// first; once the queue has been quiet for two intervals, it is not congested.
#[tokio::test(start_paused = true)]
async fn congestion_serves_sheddable_newest_first_critical_oldest_first_and_ends_when_quiet() {
    let s = shedder(1, 100);
    // A queue standing across a whole interval (50 ms) makes it congested.
    let busy = s.try_acquire(Criticality::Critical).unwrap();
    let first = {
        let s = s.clone();
        tokio::spawn(async move { run(&s, Criticality::Critical, Duration::from_millis(30)).await })
    };
    sleep(Duration::from_millis(30)).await;
    let second = {
        let s = s.clone();
        tokio::spawn(async move { run(&s, Criticality::Critical, Duration::ZERO).await })
    };
    sleep(Duration::from_millis(10)).await;
    drop(busy);
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert!(s.is_congested(), "a queue stood for a whole interval");

    let busy = s.try_acquire(Criticality::Critical).unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (i, class) in [
        Criticality::Critical,
        Criticality::Critical,
        Criticality::Sheddable,
        Criticality::Sheddable,
    ]
    .into_iter()
    .enumerate()
    {
        let (s, order) = (s.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            criticality::scope(
                class,
                s.call(|| async {
                    order.lock().unwrap().push(i);
                    Ok::<_, ()>(())
                }),
            )
            .await
        }));
        tokio::task::yield_now().await;
    }
    drop(busy);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        *order.lock().unwrap(),
        [0, 1, 3, 2],
        "critical oldest first, then sheddable newest first"
    );

    // Quiet for two intervals: the next waiter finds the queue not congested, and as a
    // sheddable call may wait longer than `target`.
    sleep(Duration::from_millis(100)).await;
    let busy = s.try_acquire(Criticality::Critical).unwrap();
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { run(&s, Criticality::Sheddable, Duration::ZERO).await })
    };
    tokio::task::yield_now().await;
    assert!(!s.is_congested(), "the verdict outlived the quiet queue");
    sleep(Duration::from_millis(20)).await;
    drop(busy);
    waiter
        .await
        .unwrap()
        .expect("served after waiting longer than target");
}

#[test]
fn invalid_configs_name_the_field() {
    let e = LoadShedder::new(ShedConfig {
        target: Duration::from_secs(1),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.field, "target");
    let e = LoadShedder::new(ShedConfig {
        max_concurrent: 0,
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.field, "max_concurrent");
}

#[tokio::test(start_paused = true)]
async fn a_capacity_read_at_each_admission_is_followed() {
    let capacity = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let read = capacity.clone();
    let s = LoadShedderBuilder::from_config(ShedConfig {
        max_concurrent: 64,
        max_queue: 0,
        ..Default::default()
    })
    .capacity_from(move || read.load(Ordering::Relaxed))
    .build()
    .unwrap();
    let first = s.try_acquire(Criticality::Critical).expect("a place of 1");
    assert!(
        s.try_acquire(Criticality::Critical).is_none(),
        "1, not max_concurrent's 64"
    );
    capacity.store(2, Ordering::Relaxed);
    let second = s
        .try_acquire(Criticality::Critical)
        .expect("the capacity grew to 2");
    drop((first, second));
    capacity.store(0, Ordering::Relaxed);
    let only = s
        .try_acquire(Criticality::Critical)
        .expect("0 is read as 1");
    assert!(s.try_acquire(Criticality::Critical).is_none());
    assert!(matches!(
        run(&s, Criticality::Critical, Duration::ZERO).await,
        Err(Error::Shed { .. })
    ));
    drop(only);
}
