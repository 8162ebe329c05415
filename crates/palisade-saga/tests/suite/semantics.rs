//! Forward steps, compensation, cancel, deadline, parking and the operator actions.

use std::time::Duration;

use palisade_saga::{Runner, SagaError, SagaState};
use serde_json::json;

use crate::common::{
    Act, Comp, Kind, definition, ledger, open, quick_retry, script_act, script_comp,
};
use crate::{WAIT, opts, rebuild_with_deadline};

pub(crate) async fn completes_every_step(kind: Kind) {
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

pub(crate) async fn definitive_failure_compensates_earlier_steps(kind: Kind) {
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

pub(crate) async fn unknown_outcome_compensates_the_failed_step_too(kind: Kind) {
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

pub(crate) async fn cancel_during_a_step_compensates_it(kind: Kind) {
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

pub(crate) async fn passed_deadline_compensates(kind: Kind) {
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

pub(crate) async fn failing_compensation_parks_then_resumes(kind: Kind) {
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

pub(crate) async fn retry_runs_the_failed_step_again(kind: Kind) {
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

pub(crate) async fn abort_ends_a_parked_saga(kind: Kind) {
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
