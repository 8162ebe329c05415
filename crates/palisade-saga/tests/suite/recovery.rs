//! Restarts, take-over of what the log says, versions, bounds and fencing.

use std::time::Duration;

use palisade_saga::store::{ClaimMode, Op};
use palisade_saga::{Runner, SagaError, SagaState, StoreError, WallClock};
use serde_json::json;

use crate::common::{
    Act, Comp, Kind, definition, ledger, open, quick_retry, reopen, script_act, script_comp,
};
use crate::{WAIT, opts, rebuild_with_deadline};

pub(crate) async fn recovery_runs_the_step_in_flight_again(kind: Kind) {
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

pub(crate) async fn recovery_compensates_where_it_stopped(kind: Kind) {
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

pub(crate) async fn unregistered_version_is_parked(kind: Kind) {
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

pub(crate) async fn same_id_starts_once(kind: Kind) {
    let l = ledger();
    let runner = Runner::builder(open(&kind).await)
        .register(definition("order", 1, 2, &l, quick_retry()))
        .register(definition("refund", 1, 1, &l, quick_retry()))
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
        runner.start_saga("refund", json!(1), opts("same")).await,
        Err(SagaError::IdTaken { .. })
    ));
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

pub(crate) async fn bounded_running_and_pruned(kind: Kind) {
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

pub(crate) async fn fenced_writes_are_refused(kind: Kind) {
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
        .rows(Op::Claim {
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

pub(crate) async fn cancel_while_down_compensates_the_step_in_flight(kind: Kind) {
    let l = ledger();
    script_act(&l, 1, &[Act::Hang]);
    let wall = WallClock::new();
    let def = || definition("order", 1, 3, &l, quick_retry());
    let a = Runner::builder(open(&kind).await)
        .runner_id("a")
        .wall_clock(wall.clone())
        .register(def())
        .start()
        .await
        .unwrap();
    let id = a
        .start_saga("order", json!(null), opts("cd-1"))
        .await
        .unwrap();
    let store = a.store().clone();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.shutdown();
    // Asked while no runner drives it: the next one acts on it.
    assert!(a.cancel(&id).await.unwrap());
    let b = Runner::builder(reopen(&kind, &store).await)
        .runner_id("a")
        .wall_clock(wall)
        .register(def())
        .start()
        .await
        .unwrap();
    let row = b.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Compensated);
    assert_eq!(row.failure.as_deref(), Some("cancelled"));
    // s1 may have been sent before the crash: compensated too.
    assert_eq!(
        l.lock().unwrap().compensations,
        ["cd-1/s1/compensate", "cd-1/s0/compensate"]
    );
    assert_eq!(l.lock().unwrap().actions, ["cd-1/s0", "cd-1/s1"]);
    b.shutdown();
}

pub(crate) async fn deadline_passed_while_down_compensates(kind: Kind) {
    let l = ledger();
    script_act(&l, 1, &[Act::Hang]);
    let wall = WallClock::new();
    let def = || {
        rebuild_with_deadline(
            definition("order", 1, 3, &l, quick_retry()),
            Duration::from_secs(30),
        )
    };
    let a = Runner::builder(open(&kind).await)
        .runner_id("a")
        .wall_clock(wall.clone())
        .register(def())
        .start()
        .await
        .unwrap();
    let id = a
        .start_saga("order", json!(null), opts("dd-1"))
        .await
        .unwrap();
    let store = a.store().clone();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.shutdown();
    tokio::time::sleep(Duration::from_secs(60)).await; // down past the deadline
    let b = Runner::builder(reopen(&kind, &store).await)
        .runner_id("a")
        .wall_clock(wall)
        .register(def())
        .start()
        .await
        .unwrap();
    let row = b.wait(&id, WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Compensated);
    assert_eq!(row.failure.as_deref(), Some("deadline exceeded"));
    assert_eq!(
        l.lock().unwrap().compensations,
        ["dd-1/s1/compensate", "dd-1/s0/compensate"]
    );
    b.shutdown();
}

/// A saga this runner owns in the store but does not drive (its start's answer was lost
/// after the commit) is adopted at a lease renewal and finished.
pub(crate) async fn an_orphaned_saga_is_adopted(kind: Kind) {
    let l = ledger();
    let wall = WallClock::new();
    let runner = Runner::builder(open(&kind).await)
        .runner_id("a")
        .lease(Duration::from_secs(3))
        .wall_clock(wall.clone())
        .register(definition("order", 1, 2, &l, quick_retry()))
        .start()
        .await
        .unwrap();
    let now = wall.now_ms();
    let row = palisade_saga::SagaRow {
        id: "orphan-1".into(),
        definition: "order".into(),
        version: 1,
        state: SagaState::Running,
        cursor: 0,
        attempt: 0,
        input: json!(null),
        outputs: vec![json!(null); 2],
        failed_step: None,
        failure: None,
        reason: None,
        parked_from: None,
        deadline_ms: None,
        cancel_requested: false,
        owner: Some("a".into()),
        epoch: 1,
        lease_until_ms: now + 3000,
        created_ms: now,
        updated_ms: now,
        seq: 1,
    };
    let event = palisade_saga::store::EventRow {
        saga_id: "orphan-1".into(),
        seq: 0,
        at_ms: now,
        step: None,
        kind: "started".into(),
        attempt: 0,
        detail: Some("a".into()),
    };
    runner.store().create(row, event).await.unwrap();
    let started = tokio::time::Instant::now();
    let row = runner.wait("orphan-1", WAIT).await.unwrap();
    assert_eq!(row.state, SagaState::Completed);
    // Unchanged for a lease, then noticed at the next renewal (every lease / 3).
    assert!(
        started.elapsed()
            <= Duration::from_secs(3) + Duration::from_secs(1) + Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert!(row.epoch > 1);
    runner.shutdown();
}

/// A saga waiting out a compensation backoff gives its slot back: with `max_running` 1,
/// another saga starts and completes meanwhile.
pub(crate) async fn backoff_gives_its_slot_back(kind: Kind) {
    let l = ledger();
    script_act(&l, 1, &[Act::Definitive]);
    script_comp(&l, 0, &[Comp::Unknown; 3]);
    let retry = palisade_saga::CompensationRetry {
        max_attempts: 10,
        base: Duration::from_secs(60),
        max_delay: Duration::from_secs(600),
        ..quick_retry()
    };
    let runner = Runner::builder(open(&kind).await)
        .register(definition("order", 1, 2, &l, retry))
        .max_running(1)
        .recovery_concurrency(1)
        .start()
        .await
        .unwrap();
    let slow = runner
        .start_saga("order", json!(null), opts("slot-1"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await; // slot-1 now sleeps between attempts
    let quick = runner
        .start_saga("order", json!(null), opts("slot-2"))
        .await
        .unwrap();
    assert_eq!(
        runner.wait(&quick, WAIT).await.unwrap().state,
        SagaState::Completed
    );
    assert_eq!(
        runner.wait(&slow, WAIT).await.unwrap().state,
        SagaState::Compensated
    );
    runner.shutdown();
}
