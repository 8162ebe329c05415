//! The rules about retries: jitter, replayed methods, the time they take, the load they
//! add.

use std::time::Duration;

use palisade::policy::retry::{BackoffKind, Jitter, RetryConfig};

use super::{Advice, At, Rule, human};

/// The methods RFC 9110 (§9.2.2) calls idempotent: sending one twice has the effect of
/// sending it once.
pub const IDEMPOTENT: [&str; 6] = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];

/// The most load retries may add while an upstream fails: 50% of the requests (a budget
/// of `ratio` 0.5; linkerd's and Finagle's default is 0.2).
pub const MAX_RETRY_LOAD: f64 = 0.5;

/// The retry rules' advice on one upstream.
pub(super) fn advise(at: &At<'_>) -> Vec<Advice> {
    [
        without_jitter(at),
        non_idempotent(at),
        over_total(at),
        load(at),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Whether the upstream retries at all.
fn retries(at: &At<'_>) -> bool {
    at.policies.retry.max_attempts > 1
}

fn without_jitter(at: &At<'_>) -> Option<Advice> {
    let retry = &at.policies.retry;
    let random = matches!(
        retry.backoff,
        BackoffKind::Decorrelated | BackoffKind::DecorrelatedJitterV2
    );
    if !retries(at) || retry.jitter != Jitter::None || random {
        return None;
    }
    Some(at.advice(
        Rule::RetryWithoutJitter,
        &["retry", "jitter"],
        "jitter = \"none\": clients that failed together retry together, at the same \
         backoffs, and hit the upstream in waves as it tries to recover",
        "jitter = \"full\" (the default) spreads each retry over its whole backoff",
    ))
}

fn non_idempotent(at: &At<'_>) -> Option<Advice> {
    if !retries(at) && at.upstream.hedge.is_none() {
        return None;
    }
    let unsafe_methods: Vec<&str> = at
        .policies
        .methods
        .iter()
        .map(http::Method::as_str)
        .filter(|m| !IDEMPOTENT.contains(m))
        .collect();
    if unsafe_methods.is_empty() {
        return None;
    }
    let listed = unsafe_methods.join(", ");
    Some(at.advice(
        Rule::RetryNonIdempotent,
        &["retry", "methods"],
        format!(
            "{listed} may be sent again: after a timeout or a reset the upstream may have \
             done it already, and a retry does it twice (two orders, two charges)"
        ),
        format!(
            "remove {listed} from methods; a client that can be retried safely sends an \
             Idempotency-Key, and a request with one is replayed whatever its method"
        ),
    ))
}

/// The keys `over_total` reads; with none of them in the file, the defaults are left to
/// `no-timeout`.
const TIME_KEYS: [&[&str]; 9] = [
    &["timeout", "total"],
    &["timeout", "per_try"],
    &["timeout", "adaptive"],
    &["retry", "max_attempts"],
    &["retry", "backoff"],
    &["retry", "base"],
    &["retry", "multiplier"],
    &["retry", "max_delay"],
    &["retry", "jitter"],
];

fn over_total(at: &At<'_>) -> Option<Advice> {
    if !TIME_KEYS.iter().any(|keys| at.has(keys)) {
        return None;
    }
    let timeout = &at.upstream.timeout;
    let retry = &at.policies.retry;
    let per_try = longest_try(at);
    let attempts = retry.max_attempts;
    let waits = backoffs(retry, attempts);
    let worst = per_try.saturating_mul(attempts).saturating_add(waits);
    if worst <= timeout.total {
        return None;
    }
    let fit = attempts_within(retry, per_try, timeout.total);
    let keys = at.first_set(&[
        &["timeout", "per_try"],
        &["retry", "max_attempts"],
        &["timeout", "total"],
        &["timeout"],
    ]);
    Some(at.advice(
        Rule::RetryOverTotal,
        keys,
        format!(
            "{} × {attempts} attempts + backoffs up to {} = {} > total {}: the last \
             attempts are cut short or never start",
            human(per_try),
            human(waits),
            human(worst),
            human(timeout.total)
        ),
        format!(
            "max_attempts = {fit}, a shorter per_try, or total = \"{}\" if callers wait \
             that long",
            humantime::format_duration(round_up_ms(worst))
        ),
    ))
}

/// The most attempts (at least 1) whose tries and backoffs fit in `total`.
fn attempts_within(retry: &RetryConfig, per_try: Duration, total: Duration) -> u32 {
    (1..retry.max_attempts)
        .rev()
        .find(|&n| per_try.saturating_mul(n).saturating_add(backoffs(retry, n)) <= total)
        .unwrap_or(1)
}

/// The longest one attempt may take: `per_try`, or an adaptive timeout's bound.
fn longest_try(at: &At<'_>) -> Duration {
    let timeout = &at.upstream.timeout;
    match &timeout.adaptive {
        None => timeout.per_try,
        Some(adaptive) => adaptive
            .max
            .max(adaptive.fallback.unwrap_or(timeout.per_try)),
    }
}

/// The longest the backoffs between the first `n` attempts may add up to.
fn backoffs(retry: &RetryConfig, n: u32) -> Duration {
    (1..n).map(|k| longest_delay(retry, k)).sum()
}

/// The longest delay before retry `n` (1-based) the curve and its jitter can give.
fn longest_delay(retry: &RetryConfig, n: u32) -> Duration {
    let base = retry.base.as_secs_f64();
    let cap = retry.max_delay.as_secs_f64();
    let steps = i32::try_from(n).unwrap_or(i32::MAX);
    let curve = match retry.backoff {
        BackoffKind::Constant => base,
        BackoffKind::Linear => base * f64::from(n),
        BackoffKind::Fibonacci => base * fibonacci(n.saturating_add(1)),
        BackoffKind::Exponential => base * retry.multiplier.powi(steps - 1),
        // Each delay is drawn up to 3 × the previous one.
        BackoffKind::Decorrelated => base * 3f64.powi(steps),
        BackoffKind::DecorrelatedJitterV2 => cap,
    };
    let curve = curve.min(cap);
    let longest = match retry.jitter {
        Jitter::Proportional => (curve * (1.0 + retry.jitter_factor)).min(cap),
        Jitter::None | Jitter::Full | Jitter::Equal => curve,
    };
    Duration::try_from_secs_f64(longest).unwrap_or(retry.max_delay)
}

/// F(n): 1, 1, 2, 3, 5 … (as a float: it only scales a delay, which is capped).
fn fibonacci(n: u32) -> f64 {
    let (mut a, mut b) = (0.0, 1.0);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    a
}

/// `d` rounded up to whole milliseconds, for a duration a config can hold.
fn round_up_ms(d: Duration) -> Duration {
    let ms = d.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

fn load(at: &At<'_>) -> Option<Advice> {
    if !retries(at) {
        return None;
    }
    let attempts = at.policies.retry.max_attempts;
    match &at.policies.retry.budget {
        None => Some(at.advice(
            Rule::RetryLoad,
            at.first_set(&[&["retry", "max_attempts"], &["retry"]]),
            format!(
                "retries without a budget: while the upstream fails, every request becomes \
                 {attempts} attempts, {attempts}× the load on an upstream already struggling"
            ),
            "budget = { ratio = 0.2, min_per_second = 10 } lets retries add at most 20% \
             (and 10 a second when traffic is low)",
        )),
        Some(budget) => {
            let extra = budget.ratio.min(f64::from(attempts - 1));
            if extra <= MAX_RETRY_LOAD {
                return None;
            }
            Some(at.advice(
                Rule::RetryLoad,
                at.first_set(&[&["retry", "budget", "ratio"], &["retry", "budget"]]),
                format!(
                    "budget.ratio = {} lets retries add up to {}% load while the upstream \
                     fails (each request up to {attempts} attempts)",
                    budget.ratio,
                    (extra * 100.0).round()
                ),
                format!("ratio at most {MAX_RETRY_LOAD} (0.2 is linkerd's and Finagle's default)"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_delays_follow_each_curve_and_its_cap() {
        let retry = |backoff, jitter| RetryConfig {
            backoff,
            jitter,
            base: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryConfig::default()
        };
        let ms = |r: &RetryConfig, n| longest_delay(r, n).as_millis();
        let exponential = retry(BackoffKind::Exponential, Jitter::Full);
        assert_eq!(
            [1, 2, 3, 4, 5].map(|n| ms(&exponential, n)),
            [100, 200, 400, 800, 1000]
        );
        let fib = retry(BackoffKind::Fibonacci, Jitter::None);
        assert_eq!([1, 2, 3, 4].map(|n| ms(&fib, n)), [100, 200, 300, 500]);
        let linear = retry(BackoffKind::Linear, Jitter::Equal);
        assert_eq!([1, 3].map(|n| ms(&linear, n)), [100, 300]);
        let proportional = retry(BackoffKind::Constant, Jitter::Proportional);
        assert_eq!(
            ms(&proportional, 1),
            120,
            "jitter_factor 0.2 above the curve"
        );
        let decorrelated = retry(BackoffKind::Decorrelated, Jitter::None);
        assert_eq!([1, 2, 3].map(|n| ms(&decorrelated, n)), [300, 900, 1000]);
        let v2 = retry(BackoffKind::DecorrelatedJitterV2, Jitter::None);
        assert_eq!(ms(&v2, 1), 1000, "no closed form: its cap");
        assert_eq!(backoffs(&exponential, 3).as_millis(), 300, "two backoffs");
    }
}
