//! Advice on a valid config: the mistakes every resilience guide lists, caught before a
//! game day finds them. `palisade check` prints each as a warning with its line, key, fix
//! and runbook section, and still exits 0 (1 with `--strict`).
//!
//! | rule | fires when (per upstream) | threshold |
//! |---|---|---|
//! | `retry-without-jitter` | retries (`max_attempts` > 1) with `jitter = "none"` and a backoff that is not already random (`decorrelated`, `decorrelated-jitter-v2`) | — |
//! | `retry-non-idempotent` | retries or a hedge, with a method in `retry.methods` that RFC 9110 does not call idempotent | [`IDEMPOTENT`] |
//! | `retry-over-total` | `max_attempts × per_try + the longest backoffs > total` (per try: `per_try`, or the adaptive timeout's `max` if longer) | — |
//! | `no-timeout` | no `total`, `per_try` or `adaptive` in `[upstream.timeout]`: the 15 s / 5 s defaults apply | — |
//! | `breaker-trips-on-blip` | a breaker (not `disabled`) judging fewer calls than [`MIN_CALLS`], or (`consecutive`) tripping on fewer failures in a row than [`MIN_CONSECUTIVE`] | 10 calls, 5 in a row |
//! | `no-concurrency-limit` | none of `bulkhead`, `adaptive_concurrency`, `load_shedding` | — |
//! | `long-queue` | a queue deeper than [`MAX_QUEUE_ROUNDS`] rounds of its concurrency, or whose wait (`queue_timeout`, shedding's `interval`) is longer than `total` | 10 rounds |
//! | `retry-load` | retries without `retry.budget`, or with one letting retries add more than [`MAX_RETRY_LOAD`] of the load | 50% |
//!
//! `retry-over-total` leaves a file that sets none of the keys it reads to `no-timeout`
//! (the defaults themselves give 5 s × 3 + up to 150 ms of backoff, just over 15 s).
//! A `Retry-After` hint may stretch a backoff up to `max_retry_after`; no rule counts it.
//!
//! - `mod.rs` (here): an advice, its rules, and the run over every upstream;
//! - `retries.rs`: the rules about retries;
//! - `limits.rs`: the rules about timeouts, breakers, concurrency and queues.

mod limits;
mod retries;
#[cfg(test)]
mod tests;

use std::fmt;

use super::load::UpstreamPolicies;
use super::spans::{Locator, Step};
use super::{Config, Upstream};

pub use limits::{MAX_QUEUE_ROUNDS, MIN_CALLS, MIN_CONSECUTIVE};
pub use retries::{IDEMPOTENT, MAX_RETRY_LOAD};

/// A mistake the advice looks for; each has a section in docs/RUNBOOKS.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Retries without jitter.
    RetryWithoutJitter,
    /// Retries (or hedges) of methods that are not idempotent.
    RetryNonIdempotent,
    /// Every attempt and backoff cannot fit in the total timeout.
    RetryOverTotal,
    /// No timeout set.
    NoTimeout,
    /// A breaker that trips on a blip.
    BreakerTripsOnBlip,
    /// No bulkhead or other concurrency limit.
    NoConcurrencyLimit,
    /// A very long queue.
    LongQueue,
    /// More retry load than a budget allows.
    RetryLoad,
}

// === impl Rule ===

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 8] = [
        Rule::RetryWithoutJitter,
        Rule::RetryNonIdempotent,
        Rule::RetryOverTotal,
        Rule::NoTimeout,
        Rule::BreakerTripsOnBlip,
        Rule::NoConcurrencyLimit,
        Rule::LongQueue,
        Rule::RetryLoad,
    ];

    /// The rule's name, as warnings print it.
    pub const fn id(self) -> &'static str {
        match self {
            Rule::RetryWithoutJitter => "retry-without-jitter",
            Rule::RetryNonIdempotent => "retry-non-idempotent",
            Rule::RetryOverTotal => "retry-over-total",
            Rule::NoTimeout => "no-timeout",
            Rule::BreakerTripsOnBlip => "breaker-trips-on-blip",
            Rule::NoConcurrencyLimit => "no-concurrency-limit",
            Rule::LongQueue => "long-queue",
            Rule::RetryLoad => "retry-load",
        }
    }

    /// Its section's anchor in docs/RUNBOOKS.md (of the heading `### advice: {id}`).
    pub fn anchor(self) -> String {
        format!("advice-{}", self.id())
    }
}

/// One warning about a valid config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advice {
    /// The rule that found it.
    pub rule: Rule,
    /// The file, as given.
    pub file: String,
    /// 1-based line of the key (or of its table, when the key is a default).
    pub line: usize,
    /// The key, as a path (`upstream[0].retry.jitter`).
    pub key: String,
    /// What is wrong, and what it costs.
    pub message: String,
    /// What to write instead.
    pub fix: String,
}

impl fmt::Display for Advice {
    /// `FILE:LINE: warning: KEY: MESSAGE; fix: FIX (rule, runbook)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: warning: {}: {}; fix: {} [{}: {}]",
            self.file,
            self.line,
            self.key,
            self.message,
            self.fix,
            self.rule.id(),
            crate::runbooks::url(crate::runbooks::DEFAULT_BASE, &self.rule.anchor())
        )
    }
}

/// Every advice on `config` (valid, with its `policies`), in file order.
pub(crate) fn advise(
    file: &str,
    locator: &Locator<'_>,
    config: &Config,
    policies: &[UpstreamPolicies],
) -> Vec<Advice> {
    let mut advice: Vec<Advice> = config
        .upstream
        .iter()
        .zip(policies)
        .enumerate()
        .flat_map(|(i, (upstream, policies))| {
            let at = At {
                file,
                locator,
                i,
                upstream,
                policies,
            };
            retries::advise(&at).into_iter().chain(limits::advise(&at))
        })
        .collect();
    advice.sort_by_key(|a| a.line);
    advice
}

/// One upstream, where the rules look, and how they say what they found.
pub(super) struct At<'a> {
    file: &'a str,
    locator: &'a Locator<'a>,
    i: usize,
    /// The upstream's section.
    pub(super) upstream: &'a Upstream,
    /// Its policies, as built.
    pub(super) policies: &'a UpstreamPolicies,
}

// === impl At ===

impl At<'_> {
    /// The path of `keys` (`["retry", "jitter"]`) in this upstream.
    fn path(&self, keys: &[&str]) -> Vec<Step> {
        [Step::Key("upstream".to_owned()), Step::Index(self.i)]
            .into_iter()
            .chain(keys.iter().map(|k| Step::Key((*k).to_owned())))
            .collect()
    }

    /// Whether the file sets `keys` in this upstream.
    pub(super) fn has(&self, keys: &[&str]) -> bool {
        self.locator.contains(&self.path(keys))
    }

    /// The first of `candidates` the file sets, else the last one (a default: its table's
    /// line is given).
    pub(super) fn first_set<'k>(&self, candidates: &[&'k [&'k str]]) -> &'k [&'k str] {
        candidates
            .iter()
            .find(|keys| self.has(keys))
            .or(candidates.last())
            .copied()
            .unwrap_or(&[])
    }

    /// The advice `rule` gives on `keys`.
    pub(super) fn advice(
        &self,
        rule: Rule,
        keys: &[&str],
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Advice {
        let path = self.path(keys);
        Advice {
            rule,
            file: self.file.to_owned(),
            line: self.locator.line(&path),
            key: super::load::render(&path),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// `d` as people write it: `310 ms`, `5 s`, `25.31 s`.
pub(super) fn human(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        let ms = d.as_secs_f64() * 1000.0;
        return format!("{} ms", (ms * 1000.0).round() / 1000.0);
    }
    format!("{} s", (d.as_secs_f64() * 1000.0).round() / 1000.0)
}
