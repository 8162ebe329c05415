//! Runners sharing one PostgreSQL: a dead runner's sagas are taken over within the lease
//! plus a second, and the old owner's late writes are refused.

mod common;

use std::time::Duration;

use common::{Act, definition, ledger, open, quick_retry, script_act};
use palisade_saga::{Runner, SagaState, StartOptions, WallClock};
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn a_dead_runners_sagas_are_taken_over_within_the_lease_plus_a_second() {
    let Some(url) = common::pg::fresh_url() else {
        return;
    };
    let kind = common::Kind::Postgres(url.clone());
    let l = ledger();
    script_act(&l, 1, &[Act::Hang; 5]);
    let lease = Duration::from_secs(2);
    let wall = WallClock::new();
    let def = || definition("order", 1, 3, &l, quick_retry());
    let a = Runner::builder(open(&kind).await)
        .runner_id("a")
        .lease(lease)
        .wall_clock(wall.clone())
        .register(def())
        .start()
        .await
        .unwrap();
    let b = Runner::builder(open(&kind).await)
        .runner_id("b")
        .lease(lease)
        .wall_clock(wall.clone())
        .register(def())
        .start()
        .await
        .unwrap();
    let ids: Vec<String> = futures_ids(&a, 5).await;
    tokio::time::sleep(Duration::from_secs(5)).await; // a keeps its leases while alive
    assert_eq!(b.running(), 0);
    assert_eq!(a.running(), 5);
    let died = tokio::time::Instant::now();
    a.shutdown();
    for id in &ids {
        let row = b.wait(id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(row.state, SagaState::Completed);
        assert_eq!(row.owner.as_deref(), Some("b"));
    }
    let took = died.elapsed();
    assert!(
        took <= lease + Duration::from_secs(1),
        "took over after {took:?}"
    );
    // Every saga ran step s1 twice (once hung on a, once on b) with the same key.
    let actions = l.lock().unwrap().actions.clone();
    for id in &ids {
        assert_eq!(
            actions.iter().filter(|k| **k == format!("{id}/s1")).count(),
            2
        );
    }
    b.shutdown();
    common::pg::drop_schema(&url);
}

async fn futures_ids(runner: &Runner, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            runner
                .start_saga(
                    "order",
                    json!(i),
                    StartOptions {
                        id: Some(format!("fleet-{i}")),
                        version: None,
                    },
                )
                .await
                .unwrap(),
        );
    }
    ids
}
