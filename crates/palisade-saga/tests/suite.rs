//! The engine's semantics, written once and run on every store (memory, SQLite,
//! PostgreSQL), on tokio's paused clock.

mod common;

use std::time::Duration;

use common::{
    Act, Comp, Kind, definition, ledger, open, quick_retry, reopen, script_act, script_comp,
};
use palisade_saga::store::{ClaimMode, Op};
use palisade_saga::{Runner, SagaError, SagaState, StartOptions, StoreError, WallClock};
use serde_json::json;

fn opts(id: &str) -> StartOptions {
    StartOptions {
        id: Some(id.to_owned()),
        version: None,
    }
}

const WAIT: Duration = Duration::from_secs(3600 * 3);

async fn completes_every_step(kind: Kind) {
    let l = ledger();
    let store = open(&kind).await;
    let runner = Runner::builder(store)
        .register(definition("order", 1, 3, &l, quick_retry()))
        .seed(1)
        .start()
        .await
        .unwrap();
    let id = runner
        .start_saga("order", json!({"n": 1}), opts("o-1"))
        .await
        .unwrap();
    let row = runner.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Completed);
    assert_eq!(row.outputs[2], json!({"step": 2, "key": "o-1/s2"}));
    {
        let g = l.lock().unwrap();
        assert_eq!(g.actions, ["o-1/s0", "o-1/s1", "o-1/s2"]);
        assert_eq!(g.outstanding(), [0, 1, 2]);
        assert!(g.compensations.is_empty());
    }
    let view = runner.get(&id).await.unwrap().unwrap();
    let kinds: Vec<&str> = view.timeline.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "started",
            "step_done",
            "step_done",
            "step_done",
            "completed"
        ]
    );
    runner.shutdown();
}

async fn definitive_failure_compensates_earlier_steps(kind: Kind) {
    let l = ledger();
    script_act(&l, 2, &[Act::Definitive]);
    let runner = Runner::builder(open(&kind).await)
        .register(definition("order", 1, 4, &l, quick_retry()))
        .start()
        .await
        .unwrap();
    let id = runner
        .start_saga("order", json!(null), opts("d-1"))
        .await
        .unwrap();
    let row = runner.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Compensated);
    assert_eq!(row.failed_step, Some(2));
    let g = l.lock().unwrap();
    assert_eq!(g.compensations, ["d-1/s1/compensate", "d-1/s0/compensate"]);
    assert!(g.outstanding().is_empty());
    runner.shutdown();
}

async fn unknown_outcome_compensates_the_failed_step_too(kind: Kind) {
    let l = ledger();
    script_act(&l, 1, &[Act::Unknown { applied: true }]);
    let runner = Runner::builder(open(&kind).await)
        .register(definition("order", 1, 3, &l, quick_retry()))
        .start()
        .await
        .unwrap();
    let id = runner
        .start_saga("order", json!(null), opts("u-1"))
        .await
        .unwrap();
    let row = runner.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Compensated);
    let g = l.lock().unwrap();
    assert_eq!(g.compensations, ["u-1/s1/compensate", "u-1/s0/compensate"]);
    assert_eq!(g.undone, [1, 0]);
    assert!(g.outstanding().is_empty());
    runner.shutdown();
}

async fn cancel_during_a_step_compensates_it(kind: Kind) {
    let l = ledger();
    script_act(&l, 1, &[Act::Hang]);
    let runner = Runner::builder(open(&kind).await)
        .register(definition("order", 1, 3, &l, quick_retry()))
        .start()
        .await
        .unwrap();
    let id = runner
        .start_saga("order", json!(null), opts("c-1"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(runner.cancel(&id).await.unwrap());
    let row = runner.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Compensated);
    assert_eq!(row.failure.as_deref(), Some("cancelled"));
    assert_eq!(
        l.lock().unwrap().compensations,
        ["c-1/s1/compensate", "c-1/s0/compensate"]
    );
    runner.shutdown();
}

async fn passed_deadline_compensates(kind: Kind) {
    let l = ledger();
    script_act(&l, 2, &[Act::Hang]);
    let mut def = definition("order", 1, 3, &l, quick_retry());
    def = rebuild_with_deadline(def, Duration::from_secs(30));
    let runner = Runner::builder(open(&kind).await)
        .register(def)
        .start()
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let id = runner
        .start_saga("order", json!(null), opts("t-1"))
        .await
        .unwrap();
    let row = runner.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Compensated);
    assert_eq!(row.failure.as_deref(), Some("deadline exceeded"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(30) && took < Duration::from_secs(32),
        "{took:?}"
    );
    assert_eq!(
        l.lock().unwrap().compensations,
        [
            "t-1/s2/compensate",
            "t-1/s1/compensate",
            "t-1/s0/compensate"
        ]
    );
    runner.shutdown();
}

fn rebuild_with_deadline(
    def: palisade_saga::SagaDefinition,
    deadline: Duration,
) -> palisade_saga::SagaDefinition {
    let mut b = palisade_saga::SagaDefinition::builder(def.name(), def.version())
        .compensation_retry(def.compensation_retry().clone())
        .deadline(deadline);
    for s in def.steps() {
        b = b.step(s.clone());
    }
    b.build().unwrap()
}

async fn failing_compensation_parks_then_resumes(kind: Kind) {
    let l = ledger();
    script_act(&l, 2, &[Act::Definitive]);
    script_comp(&l, 1, &[Comp::Unknown; 5]);
    let runner = Runner::builder(open(&kind).await)
        .register(definition("order", 1, 3, &l, quick_retry()))
        .seed(7)
        .start()
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let id = runner
        .start_saga("order", json!(null), opts("p-1"))
        .await
        .unwrap();
    let row = runner.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Parked);
    assert!(
        row.reason
            .as_deref()
            .unwrap()
            .starts_with("compensation_failed: step s1 after 5 attempts"),
        "{:?}",
        row.reason
    );
    // Four waits of equal jitter over 100, 200, 400, 800 ms: between half and all of 1.5 s.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(750) && took <= Duration::from_millis(1600),
        "{took:?}"
    );
    assert_eq!(l.lock().unwrap().outstanding(), [0, 1]);
    // A parked saga blocks nobody.
    let other = runner
        .start_saga("order", json!(null), opts("p-2"))
        .await
        .unwrap();
    assert_eq!(
        runner.wait(&other, WAIT).await.unwrap().state,
        SagaState::Completed
    );
    // The operator fixes the dependency and resumes.
    assert_eq!(runner.resume(&id).await.unwrap(), SagaState::Compensating);
    let row = runner.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Compensated);
    assert_eq!(l.lock().unwrap().undone, [1, 0]);
    runner.shutdown();
}

async fn retry_runs_the_failed_step_again(kind: Kind) {
    let l = ledger();
    script_act(&l, 1, &[Act::Unknown { applied: false }]);
    script_comp(&l, 1, &[Comp::Definitive]);
    let runner = Runner::builder(open(&kind).await)
        .register(definition("order", 1, 3, &l, quick_retry()))
        .start()
        .await
        .unwrap();
    let id = runner
        .start_saga("order", json!(null), opts("r-1"))
        .await
        .unwrap();
    let row = runner.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Parked);
    assert_eq!(runner.retry(&id).await.unwrap(), SagaState::Running);
    let row = runner.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Completed);
    assert_eq!(
        l.lock().unwrap().actions,
        ["r-1/s0", "r-1/s1", "r-1/s1", "r-1/s2"]
    );
    // Nothing to retry or resume any more.
    assert!(matches!(
        runner.retry(&id).await,
        Err(SagaError::InvalidState { .. })
    ));
    runner.shutdown();
}

async fn abort_ends_a_parked_saga(kind: Kind) {
    let l = ledger();
    script_act(&l, 1, &[Act::Definitive]);
    script_comp(&l, 0, &[Comp::Definitive]);
    let runner = Runner::builder(open(&kind).await)
        .register(definition("order", 1, 2, &l, quick_retry()))
        .start()
        .await
        .unwrap();
    let id = runner
        .start_saga("order", json!(null), opts("a-1"))
        .await
        .unwrap();
    assert_eq!(
        runner.wait(&id, WAIT).await.unwrap().state,
        SagaState::Parked
    );
    assert_eq!(
        runner
            .list(Some(SagaState::Parked), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(runner.abort(&id).await.unwrap(), SagaState::Aborted);
    let row = runner.get(&id).await.unwrap().unwrap().saga;
    assert_eq!(row.state, SagaState::Aborted);
    assert!(row.reason.unwrap().starts_with("compensation_failed"));
    assert!(
        runner
            .list(Some(SagaState::Parked), 10)
            .await
            .unwrap()
            .is_empty()
    );
    runner.shutdown();
}

async fn recovery_runs_the_step_in_flight_again(kind: Kind) {
    let l = ledger();
    script_act(&l, 1, &[Act::Hang]);
    let wall = WallClock::new();
    let a = Runner::builder(open(&kind).await)
        .runner_id("a")
        .wall_clock(wall.clone())
        .register(definition("order", 1, 3, &l, quick_retry()))
        .start()
        .await
        .unwrap();
    let id = a
        .start_saga("order", json!({"x": 1}), opts("k-1"))
        .await
        .unwrap();
    let store = a.store().clone();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.shutdown(); // the process dies mid-step
    let b = Runner::builder(reopen(&kind, &store).await)
        .runner_id("a")
        .wall_clock(wall)
        .register(definition("order", 1, 3, &l, quick_retry()))
        .start()
        .await
        .unwrap();
    let row = b.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Completed);
    assert_eq!(
        l.lock().unwrap().actions,
        ["k-1/s0", "k-1/s1", "k-1/s1", "k-1/s2"]
    );
    assert_eq!(row.input, json!({"x": 1}));
    b.shutdown();
}

async fn recovery_compensates_where_it_stopped(kind: Kind) {
    let l = ledger();
    script_act(&l, 2, &[Act::Unknown { applied: true }]);
    script_comp(&l, 1, &[Comp::Unknown; 100]);
    let retry = palisade_saga::CompensationRetry {
        max_attempts: 1000,
        ..quick_retry()
    };
    let wall = WallClock::new();
    let a = Runner::builder(open(&kind).await)
        .runner_id("a")
        .wall_clock(wall.clone())
        .register(definition("order", 1, 3, &l, retry.clone()))
        .start()
        .await
        .unwrap();
    let id = a
        .start_saga("order", json!(null), opts("rc-1"))
        .await
        .unwrap();
    let store = a.store().clone();
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.shutdown();
    assert_eq!(l.lock().unwrap().undone, [2]);
    script_comp(&l, 1, &[]);
    let b = Runner::builder(reopen(&kind, &store).await)
        .runner_id("a")
        .wall_clock(wall)
        .register(definition("order", 1, 3, &l, retry))
        .start()
        .await
        .unwrap();
    let row = b.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Compensated);
    {
        let g = l.lock().unwrap();
        assert_eq!(g.undone, [2, 1, 0]);
        assert_eq!(
            g.compensations
                .iter()
                .filter(|c| *c == "rc-1/s2/compensate")
                .count(),
            1
        );
    }
    b.shutdown();
}

async fn unregistered_version_is_parked(kind: Kind) {
    let l = ledger();
    script_act(&l, 0, &[Act::Hang]);
    let a = Runner::builder(open(&kind).await)
        .runner_id("a")
        .register(definition("order", 1, 2, &l, quick_retry()))
        .start()
        .await
        .unwrap();
    let id = a
        .start_saga("order", json!(null), opts("v-1"))
        .await
        .unwrap();
    let store = a.store().clone();
    tokio::time::sleep(Duration::from_millis(10)).await;
    a.shutdown();
    let b = Runner::builder(reopen(&kind, &store).await)
        .runner_id("a")
        .register(definition("order", 2, 2, &l, quick_retry()))
        .start()
        .await
        .unwrap();
    let row = b.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Parked);
    assert!(row.reason.unwrap().starts_with("unknown_version"));
    assert_eq!(row.version, 1);
    b.shutdown();
}

async fn same_id_starts_once(kind: Kind) {
    let l = ledger();
    let runner = Runner::builder(open(&kind).await)
        .register(definition("order", 1, 2, &l, quick_retry()))
        .start()
        .await
        .unwrap();
    let a = runner
        .start_saga("order", json!(1), opts("same"))
        .await
        .unwrap();
    runner.wait(&a, WAIT).await.unwrap();
    let b = runner
        .start_saga("order", json!(2), opts("same"))
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(l.lock().unwrap().actions.len(), 2);
    assert!(matches!(
        runner.start_saga("order", json!(1), opts("a/b")).await,
        Err(SagaError::InvalidId(_))
    ));
    assert!(matches!(
        runner.start_saga("nope", json!(1), opts("x")).await,
        Err(SagaError::UnknownDefinition(_))
    ));
    runner.shutdown();
}

async fn bounded_running_and_pruned(kind: Kind) {
    let l = ledger();
    script_act(&l, 0, &[Act::Hang, Act::Hang]);
    let runner = Runner::builder(open(&kind).await)
        .register(definition("order", 1, 1, &l, quick_retry()))
        .max_running(2)
        .recovery_concurrency(1)
        .retention(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    runner
        .start_saga("order", json!(null), opts("b-1"))
        .await
        .unwrap();
    runner
        .start_saga("order", json!(null), opts("b-2"))
        .await
        .unwrap();
    assert!(matches!(
        runner.start_saga("order", json!(null), opts("b-3")).await,
        Err(SagaError::Full(2))
    ));
    runner.cancel("b-1").await.unwrap();
    runner.wait("b-1", WAIT).await.unwrap();
    runner
        .start_saga("order", json!(null), opts("b-3"))
        .await
        .unwrap();
    runner.wait("b-3", WAIT).await.unwrap();
    assert_eq!(runner.list(None, 10).await.unwrap().len(), 3);
    tokio::time::sleep(Duration::from_secs(3600 + 120)).await;
    let left: Vec<String> = runner
        .list(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, ["b-2"]); // still running; the finished ones were pruned
    runner.shutdown();
}

async fn fenced_writes_are_refused(kind: Kind) {
    let l = ledger();
    script_act(&l, 0, &[Act::Hang]);
    let runner = Runner::builder(open(&kind).await)
        .runner_id("a")
        .register(definition("order", 1, 2, &l, quick_retry()))
        .start()
        .await
        .unwrap();
    let id = runner
        .start_saga("order", json!(null), opts("f-1"))
        .await
        .unwrap();
    let store = runner.store().clone();
    let old = store.load(&id).await.unwrap().unwrap();
    // Another runner claims it (as after a lease expiry): epoch moves on.
    let claimed = store
        .rows_public(Op::Claim {
            owner: "b".into(),
            now_ms: i64::MAX,
            lease_until_ms: i64::MAX,
            limit: 10,
            mode: ClaimMode::Expired,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].epoch, old.epoch + 1);
    let mut late = old.clone();
    late.state = SagaState::Completed;
    let event = palisade_saga::store::EventRow {
        saga_id: id.clone(),
        seq: old.seq,
        at_ms: 0,
        step: None,
        kind: "completed".into(),
        attempt: 0,
        detail: None,
    };
    assert!(matches!(
        store.commit(late, event).await,
        Err(StoreError::Fenced(_))
    ));
    assert_eq!(
        store.load(&id).await.unwrap().unwrap().state,
        SagaState::Running
    );
    runner.shutdown();
}

macro_rules! suite {
    ($store:ident, $kind:expr) => {
        mod $store {
            use super::*;
            suite!(@tests $kind; completes_every_step, definitive_failure_compensates_earlier_steps,
                unknown_outcome_compensates_the_failed_step_too, cancel_during_a_step_compensates_it,
                passed_deadline_compensates, failing_compensation_parks_then_resumes,
                retry_runs_the_failed_step_again, abort_ends_a_parked_saga,
                recovery_runs_the_step_in_flight_again, recovery_compensates_where_it_stopped,
                unregistered_version_is_parked, same_id_starts_once, bounded_running_and_pruned,
                fenced_writes_are_refused);
        }
    };
    (@tests $kind:expr; $($name:ident),*) => {
        $(
            #[tokio::test(start_paused = true)]
            async fn $name() {
                let kind: Option<Kind> = $kind;
                if let Some(kind) = kind {
                    super::$name(kind.clone()).await;
                    common::discard(&kind);
                }
            }
        )*
    };
}

suite!(memory, Some(Kind::Memory));
suite!(sqlite, Some(common::temp_sqlite()));
suite!(postgres, common::pg::fresh_url().map(Kind::Postgres));
