//! The engine's semantics, written once and run on every store (memory, SQLite,
//! PostgreSQL), on tokio's paused clock: `semantics.rs` (forward, compensation, cancel,
//! deadline, parking, operator actions), `recovery.rs` (restarts, versions, bounds,
//! fencing).

#[path = "../common/mod.rs"]
mod common;
mod recovery;
mod semantics;

use std::time::Duration;

use common::Kind;
use palisade_saga::{SagaDefinition, StartOptions};

pub(crate) fn opts(id: &str) -> StartOptions {
    StartOptions {
        id: Some(id.to_owned()),
        version: None,
    }
}

pub(crate) const WAIT: Duration = Duration::from_secs(3600 * 3);

pub(crate) fn rebuild_with_deadline(def: SagaDefinition, deadline: Duration) -> SagaDefinition {
    let mut b = SagaDefinition::builder(def.name(), def.version())
        .compensation_retry(def.compensation_retry().clone())
        .deadline(deadline);
    for s in def.steps() {
        b = b.step(s.clone());
    }
    b.build().unwrap()
}

macro_rules! suite {
    ($store:ident, $kind:expr) => {
        mod $store {
            use super::*;
            suite!(@tests $kind; semantics::completes_every_step, semantics::definitive_failure_compensates_earlier_steps, semantics::unknown_outcome_compensates_the_failed_step_too, semantics::cancel_during_a_step_compensates_it, semantics::passed_deadline_compensates, semantics::failing_compensation_parks_then_resumes, semantics::retry_runs_the_failed_step_again, semantics::abort_ends_a_parked_saga, recovery::recovery_runs_the_step_in_flight_again, recovery::recovery_compensates_where_it_stopped, recovery::unregistered_version_is_parked, recovery::same_id_starts_once, recovery::bounded_running_and_pruned, recovery::fenced_writes_are_refused, recovery::cancel_while_down_compensates_the_step_in_flight, recovery::deadline_passed_while_down_compensates,
                recovery::an_orphaned_saga_is_adopted,
                recovery::backoff_gives_its_slot_back);
        }
    };
    (@tests $kind:expr; $($module:ident::$name:ident),*) => {
        $(
            #[tokio::test(start_paused = true)]
            async fn $name() {
                let kind: Option<Kind> = $kind;
                if let Some(kind) = kind {
                    super::$module::$name(kind.clone()).await;
                    common::discard(&kind);
                }
            }
        )*
    };
}

suite!(memory, Some(Kind::Memory));
suite!(sqlite, Some(common::temp_sqlite()));
suite!(postgres, common::pg::fresh_url().map(Kind::Postgres));
