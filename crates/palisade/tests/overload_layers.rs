//! The overload policies as tower layers: each refuses or injects exactly as its call form
//! does, never calling the inner service when it refuses, and composes in a pipeline layer.

#![cfg(not(palisade_loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade::policy::adaptive_concurrency::{AdaptiveConcurrency, AdaptiveConcurrencyConfig};
use palisade::policy::fault::{FaultConfig, FaultInjection};
use palisade::policy::shed::{LoadShedder, ShedConfig};
use palisade::policy::throttle::{AdaptiveThrottle, ThrottleConfig};
use palisade::{Error, Pipeline};
use tower::{Layer, ServiceExt, service_fn};

/// A service that sleeps `ms` milliseconds (the request), counting calls.
fn sleeper(
    calls: Arc<AtomicU32>,
) -> impl tower::Service<u64, Response = u64, Error = std::io::Error, Future = impl Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |ms: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, std::io::Error>(ms)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn adaptive_limit_layer_refuses_beyond_the_limit() {
    let limiter = AdaptiveConcurrency::new(AdaptiveConcurrencyConfig {
        initial_limit: 1,
        ..Default::default()
    })
    .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let svc = limiter.layer().layer(sleeper(calls.clone()));
    let busy = tokio::spawn(svc.clone().oneshot(1000));
    tokio::task::yield_now().await;
    assert!(matches!(
        svc.clone().oneshot(1).await,
        Err(Error::BulkheadFull { .. })
    ));
    assert_eq!(busy.await.unwrap().unwrap(), 1000);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the refused call never reached the service"
    );
    assert_eq!(svc.oneshot(1).await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn shedding_layer_sheds_when_full() {
    let shedder = LoadShedder::new(ShedConfig {
        max_concurrent: 1,
        max_queue: 0,
        ..Default::default()
    })
    .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let svc = shedder.layer().layer(sleeper(calls.clone()));
    let busy = tokio::spawn(svc.clone().oneshot(1000));
    tokio::task::yield_now().await;
    assert!(matches!(
        svc.clone().oneshot(1).await,
        Err(Error::Shed { .. })
    ));
    busy.await.unwrap().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn throttle_layer_stops_calling_a_refusing_backend() {
    let throttle = AdaptiveThrottle::new(ThrottleConfig {
        seed: Some(5),
        ..Default::default()
    })
    .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let svc = throttle.layer().layer(service_fn(move |_: ()| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(std::io::Error::other("503")) }
    }));
    let mut shed = 0;
    for _ in 0..1000 {
        if let Err(Error::Shed { .. }) = svc.clone().oneshot(()).await {
            shed += 1;
        }
    }
    assert!(shed > 500, "{shed} of 1000 throttled");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1000 - shed,
        "throttled calls never reached the service"
    );
}

#[tokio::test(start_paused = true)]
async fn fault_layer_injects_without_calling_and_passes_through_when_off() {
    let chaos = FaultInjection::<u64, std::io::Error>::builder(FaultConfig {
        error_rate: 1.0,
        seed: Some(1),
        ..Default::default()
    })
    .inject(|| Err(Error::Inner(std::io::Error::other("injected"))))
    .build()
    .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let svc = chaos.layer().layer(sleeper(calls.clone()));
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1, "off by default");
    chaos.enable();
    assert!(matches!(svc.oneshot(1).await, Err(Error::Inner(e)) if e.to_string() == "injected"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn overload_policies_compose_in_a_pipeline_layer() {
    let shedder = LoadShedder::new(ShedConfig {
        max_concurrent: 1,
        max_queue: 0,
        ..Default::default()
    })
    .unwrap();
    let throttle = AdaptiveThrottle::new(ThrottleConfig::default()).unwrap();
    let limiter = AdaptiveConcurrency::new(AdaptiveConcurrencyConfig::default()).unwrap();
    let pipeline = Pipeline::builder()
        .push(throttle)
        .push(shedder)
        .push(limiter)
        .build();
    let calls = Arc::new(AtomicU32::new(0));
    let svc = pipeline.layer().layer(sleeper(calls.clone()));
    let busy = tokio::spawn(svc.clone().oneshot(1000));
    tokio::task::yield_now().await;
    assert!(
        matches!(svc.clone().oneshot(1).await, Err(Error::Shed { .. })),
        "the shedder inside the pipeline refuses"
    );
    assert_eq!(busy.await.unwrap().unwrap(), 1000);
    assert_eq!(svc.oneshot(5).await.unwrap(), 5);
}
