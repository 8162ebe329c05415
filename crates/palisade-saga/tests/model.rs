//! Property test: random failure points and outcomes in random steps; the final state and
//! the effects applied and undone match a small reference model.

mod common;

use std::time::Duration;

use common::{Act, Comp, Kind, definition, ledger, open, script_act, script_comp};
use palisade_saga::{CompensationRetry, Runner, SagaState, StartOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

const MAX_ATTEMPTS: u32 = 4;

#[derive(Debug, PartialEq)]
struct Expected {
    state: SagaState,
    /// Effects left applied at the end.
    outstanding: Vec<usize>,
    /// Compensation keys called, in order.
    compensations: Vec<String>,
}

/// The reference model: forward until the first failure, then undo in reverse (the failed
/// step too if its outcome is unknown); a compensation failing `MAX_ATTEMPTS` times parks.
fn model(id: &str, acts: &[Act], comp_failures: &[u32]) -> Expected {
    let failed = acts.iter().position(|a| *a != Act::Ok);
    let Some(f) = failed else {
        return Expected {
            state: SagaState::Completed,
            outstanding: (0..acts.len()).collect(),
            compensations: vec![],
        };
    };
    let mut applied: Vec<bool> = (0..acts.len()).map(|i| i < f).collect();
    let from = match acts[f] {
        Act::Unknown { applied: a } => {
            applied[f] = a;
            Some(f)
        }
        _ => f.checked_sub(1),
    };
    let mut compensations = vec![];
    let mut state = SagaState::Compensated;
    if let Some(from) = from {
        for j in (0..=from).rev() {
            let calls = (comp_failures[j] + 1).min(MAX_ATTEMPTS);
            for _ in 0..calls {
                compensations.push(format!("{id}/s{j}/compensate"));
            }
            if comp_failures[j] >= MAX_ATTEMPTS {
                state = SagaState::Parked;
                break;
            }
            applied[j] = false;
        }
    }
    Expected {
        state,
        outstanding: (0..acts.len()).filter(|i| applied[*i]).collect(),
        compensations,
    }
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        6 => Just(Act::Ok),
        1 => Just(Act::Definitive),
        1 => any::<bool>().prop_map(|applied| Act::Unknown { applied }),
    ]
}

fn run(kind: &Kind, acts: &[Act], comp_failures: &[u32]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let l = ledger();
        for (i, a) in acts.iter().enumerate() {
            script_act(&l, i, &[*a]);
            script_comp(&l, i, &vec![Comp::Unknown; comp_failures[i] as usize]);
        }
        let retry = CompensationRetry {
            max_attempts: MAX_ATTEMPTS,
            base: Duration::from_millis(10),
            max_delay: Duration::from_secs(1),
            ..CompensationRetry::default()
        };
        let runner = Runner::builder(open(kind).await)
            .seed(3)
            .register(definition("m", 1, acts.len(), &l, retry))
            .start()
            .await
            .unwrap();
        let id = runner
            .start_saga(
                "m",
                serde_json::json!(null),
                StartOptions {
                    id: Some("m-1".into()),
                    version: None,
                },
            )
            .await
            .unwrap();
        let row = runner.wait(&id, Duration::from_secs(3600)).await.unwrap();
        runner.shutdown();
        let g = l.lock().unwrap();
        let got = Expected {
            state: row.state,
            outstanding: g.outstanding(),
            compensations: g.compensations.clone(),
        };
        prop_assert_eq!(got, model(&id, acts, comp_failures));
        Ok(())
    })
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x5a6a),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(256))]
    #[test]
    fn memory_matches_the_model(
        (acts, comp_failures) in (1usize..=5).prop_flat_map(|n| (
            prop::collection::vec(act(), n),
            prop::collection::vec(prop_oneof![4 => Just(0u32), 2 => 1u32..MAX_ATTEMPTS, 1 => Just(MAX_ATTEMPTS)], n),
        ))
    ) {
        run(&Kind::Memory, &acts, &comp_failures)?;
    }
}

proptest! {
    #![proptest_config(config(32))]
    #[test]
    fn sqlite_matches_the_model(
        (acts, comp_failures) in (1usize..=5).prop_flat_map(|n| (
            prop::collection::vec(act(), n),
            prop::collection::vec(prop_oneof![4 => Just(0u32), 2 => 1u32..MAX_ATTEMPTS, 1 => Just(MAX_ATTEMPTS)], n),
        ))
    ) {
        let kind = common::temp_sqlite();
        let result = run(&kind, &acts, &comp_failures);
        common::discard(&kind);
        result?;
    }
}

proptest! {
    #![proptest_config(config(16))]
    #[test]
    fn postgres_matches_the_model(
        (acts, comp_failures) in (1usize..=5).prop_flat_map(|n| (
            prop::collection::vec(act(), n),
            prop::collection::vec(prop_oneof![4 => Just(0u32), 2 => 1u32..MAX_ATTEMPTS, 1 => Just(MAX_ATTEMPTS)], n),
        ))
    ) {
        let Some(url) = common::pg::fresh_url() else { return Ok(()) };
        let kind = Kind::Postgres(url);
        let result = run(&kind, &acts, &comp_failures);
        common::discard(&kind);
        result?;
    }
}
