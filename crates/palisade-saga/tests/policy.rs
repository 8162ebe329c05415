//! Steps run through Palisade's policies: a timeout is an unknown outcome (the step is
//! compensated), an open breaker a definitive one (it is not), and a retry repeats the
//! action with the same idempotency key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::policy::circuit_breaker::CircuitBreaker;
use palisade::policy::retry::Retry;
use palisade::policy::timeout::Timeout;
use palisade_saga::{Runner, SagaDefinition, SagaState, StartOptions, Step, StepError};
use serde_json::{Value, json};

type Log = Arc<Mutex<Vec<String>>>;

fn logged(log: &Log, name: &str) -> Step {
    let (a, c) = (Arc::clone(log), Arc::clone(log));
    Step::new(name, move |cx| {
        let log = Arc::clone(&a);
        async move {
            log.lock().unwrap().push(cx.idempotency_key);
            Ok(Value::Null)
        }
    })
    .compensate(move |cx| {
        let log = Arc::clone(&c);
        async move {
            log.lock().unwrap().push(cx.idempotency_key);
            Ok(Value::Null)
        }
    })
}

async fn run(def: SagaDefinition) -> SagaState {
    let runner = Runner::builder(palisade_saga::store::memory::open())
        .register(def)
        .start()
        .await
        .unwrap();
    let id = runner
        .start_saga(
            "p",
            json!(null),
            StartOptions {
                id: Some("p-1".into()),
                version: None,
            },
        )
        .await
        .unwrap();
    let state = runner
        .wait(&id, Duration::from_secs(3600))
        .await
        .unwrap()
        .state;
    runner.shutdown();
    state
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_step_is_compensated() {
    let log = Log::default();
    let c = Arc::clone(&log);
    let slow = Step::new("charge", |_cx| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok(Value::Null)
    })
    .compensate(move |cx| {
        let log = Arc::clone(&c);
        async move {
            assert_eq!(cx.output, None, "its outcome is unknown");
            log.lock().unwrap().push(cx.idempotency_key);
            Ok(Value::Null)
        }
    })
    .policy(Timeout::new(Duration::from_secs(1)));
    let def = SagaDefinition::builder("p", 1)
        .step(logged(&log, "reserve"))
        .step(slow)
        .build()
        .unwrap();
    assert_eq!(run(def).await, SagaState::Compensated);
    assert_eq!(
        *log.lock().unwrap(),
        [
            "p-1/reserve",
            "p-1/charge/compensate",
            "p-1/reserve/compensate"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_definitive() {
    let log = Log::default();
    let breaker = CircuitBreaker::builder().name("payments").build().unwrap();
    breaker.force_open();
    let refused = Step::new("charge", |_cx| async { Ok(Value::Null) })
        .compensate(|_cx| async { panic!("nothing was sent, nothing to undo") })
        .policy(breaker);
    let def = SagaDefinition::builder("p", 1)
        .step(logged(&log, "reserve"))
        .step(refused)
        .build()
        .unwrap();
    assert_eq!(run(def).await, SagaState::Compensated);
    assert_eq!(
        *log.lock().unwrap(),
        ["p-1/reserve", "p-1/reserve/compensate"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_repeats_an_unknown_outcome_with_the_same_key() {
    let keys = Log::default();
    let k = Arc::clone(&keys);
    let flaky = Step::new("charge", move |cx| {
        let keys = Arc::clone(&k);
        async move {
            let mut keys = keys.lock().unwrap();
            keys.push(cx.idempotency_key);
            if keys.len() < 3 {
                Err(StepError::unknown("503"))
            } else {
                Ok(json!("charged"))
            }
        }
    })
    .policy(Retry::builder().max_attempts(3).build().unwrap());
    let def = SagaDefinition::builder("p", 1).step(flaky).build().unwrap();
    assert_eq!(run(def).await, SagaState::Completed);
    assert_eq!(*keys.lock().unwrap(), ["p-1/charge"; 3]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_does_not_repeat_a_definitive_failure() {
    let keys = Log::default();
    let k = Arc::clone(&keys);
    let rejected = Step::new("charge", move |cx| {
        let keys = Arc::clone(&k);
        async move {
            keys.lock().unwrap().push(cx.idempotency_key);
            Err::<Value, _>(StepError::definitive("402"))
        }
    })
    .policy(Retry::builder().max_attempts(3).build().unwrap());
    let def = SagaDefinition::builder("p", 1)
        .step(rejected)
        .build()
        .unwrap();
    assert_eq!(run(def).await, SagaState::Compensated);
    assert_eq!(keys.lock().unwrap().len(), 1);
}

#[test]
fn definitions_are_validated() {
    let step = || Step::new("a", |_cx| async { Ok(Value::Null) });
    assert!(SagaDefinition::builder("p", 1).build().is_err(), "no steps");
    assert!(
        SagaDefinition::builder("p", 1)
            .step(step())
            .step(step())
            .build()
            .is_err(),
        "duplicate"
    );
    assert!(
        SagaDefinition::builder("p", 1)
            .step(Step::new("a/b", |_cx| async { Ok(Value::Null) }))
            .build()
            .is_err()
    );
    let bad = palisade_saga::CompensationRetry {
        max_attempts: 0,
        ..Default::default()
    };
    assert!(
        SagaDefinition::builder("p", 1)
            .step(step())
            .compensation_retry(bad)
            .build()
            .is_err()
    );
}
