//! The rule of each saga: `PalisadeSagaParked` fires at once (no `for`) while a saga of
//! it is parked, and ends when an operator has resumed, retried or aborted every one. It
//! reads `palisade_sagas_parked{saga}`, the count the sidecar takes from the store at each
//! scrape (`crate::saga::gauge`); `max` over instances, since every proxy sharing a store
//! reports the same sagas.

use super::promql::{Scope, eq};
use super::rule::{Alert, Rule, Severity};
use crate::saga::gauge::PARKED;

/// The rule of saga `name`.
pub(super) fn rule(name: &str, scope: &Scope) -> Rule {
    let parked = scope.select(PARKED, &[eq("saga", name)]);
    Rule {
        alert: Alert::SagaParked,
        expr: format!("max by (saga) ({parked}) > 0"),
        hold: None,
        severity: Severity::Warning,
        labels: vec![("saga", name.to_owned())],
        summary: format!("{{{{ $value }}}} {name} saga(s) parked, waiting for an operator"),
        description: format!(
            "{{{{ $value }}}} saga(s) of {name} stopped where automation cannot decide (a \
             compensation kept failing, or the saga's version is no longer configured) and \
             wait for an operator: `palisade saga list --state parked`."
        ),
    }
}
