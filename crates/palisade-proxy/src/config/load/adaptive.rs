//! Checks of `[upstream.adaptive_concurrency]`: its scope, and the library's keys read
//! into the limiter config that scope calls for.
//!
//! Per endpoint, requests wait in `[upstream.load_shedding]`'s queue (which admits as
//! many as the endpoints' limits add up to), so that section is required and the
//! limiter's own queue and partitions — one upstream-wide limit's — are refused.

use std::time::Duration;

use palisade::policy::adaptive_concurrency::{AdaptiveConcurrencyConfig, AlgorithmConfig};

use super::{Checker, Step, key};
use crate::config::{AdaptiveSection, LimitScope, Upstream};

/// An upstream's adaptive concurrency limit, validated.
#[derive(Clone, Debug)]
pub struct AdaptivePolicy {
    /// The upstream's, or each endpoint's.
    pub scope: LimitScope,
    /// The limiter's settings (each endpoint's, per endpoint).
    pub config: AdaptiveConcurrencyConfig,
}

/// The keys of one upstream-wide limiter that mean nothing per endpoint.
const UPSTREAM_ONLY: [&str; 3] = ["max_queue", "queue_timeout", "partitions"];

/// An endpoint's first limit when the file gives none (within `min_limit`..`max_limit`):
/// about a small server's capacity. An endpoint's limit stays where it starts until it
/// is half in use, so the library's 20, taken by each endpoint, would let a sudden
/// overload put 20 requests on each before the first round trip brings it down; Vegas
/// grows a limit that is used by `beta` per round trip.
pub const ENDPOINT_INITIAL_LIMIT: u32 = 4;

/// An endpoint's algorithm when the file names none: Vegas keeping 1 to 2 × log10(limit)
/// requests queued at the endpoint (`alpha` 1, `beta` 2). The library's default, 3 to 6,
/// is sized for one limit in front of all the endpoints; per endpoint, every endpoint
/// would keep that much, three times the queue with three endpoints. Smaller still
/// (`alpha` 0.5, `beta` 1) served 85% of the capacity of endpoints serving 40 at once
/// and 51% of those serving 100 in the sidecar's simulation (20 ms ± 20%): what is left
/// of the RTT's jitter after averaging reads as more than the queue allowed.
pub fn endpoint_algorithm() -> AlgorithmConfig {
    AlgorithmConfig::Vegas {
        alpha: 1.0,
        beta: 2.0,
        baseline_window: Duration::from_secs(30),
    }
}

impl Checker<'_> {
    /// `[upstream.adaptive_concurrency]`, if present.
    pub(super) fn check_adaptive(
        &mut self,
        i: usize,
        upstream: &Upstream,
    ) -> Option<AdaptivePolicy> {
        let section: &AdaptiveSection = upstream.adaptive_concurrency.as_ref()?;
        let at = vec![key("upstream"), Step::Index(i), key("adaptive_concurrency")];
        let path = |k: &str| -> Vec<Step> { at.iter().cloned().chain([key(k)]).collect() };
        let table = &section.policy;
        let per_endpoint = section.scope == LimitScope::Endpoint;
        if per_endpoint {
            for k in UPSTREAM_ONLY.iter().filter(|k| table.contains_key(**k)) {
                self.problem(
                    &path(k),
                    "belongs to one upstream-wide limit; per endpoint, requests wait in \
                     [upstream.load_shedding]'s queue, whose criticality classes do what \
                     partitions do; allowed: remove it, or scope = \"upstream\"",
                );
            }
            if upstream.load_shedding.is_none() {
                self.problem(
                    &path("scope"),
                    "\"endpoint\" needs [upstream.load_shedding]: the queue at the proxy that \
                     admits as many requests as the endpoints' limits add up to; allowed: add \
                     [upstream.load_shedding], or scope = \"upstream\"",
                );
            }
        }
        let mut config: AdaptiveConcurrencyConfig = self.library_config(&at, table);
        // Per endpoint, the sidecar's own defaults for what the file leaves out.
        if per_endpoint && !table.contains_key("algorithm") {
            config.algorithm = endpoint_algorithm();
        }
        if per_endpoint && !table.contains_key("initial_limit") {
            config.initial_limit = ENDPOINT_INITIAL_LIMIT.clamp(config.min_limit, config.max_limit);
        }
        Some(AdaptivePolicy {
            scope: section.scope,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use palisade::policy::adaptive_concurrency::{AdaptiveConcurrencyConfig, AlgorithmConfig};

    use super::{ENDPOINT_INITIAL_LIMIT, endpoint_algorithm};
    use crate::config::LimitScope;
    use crate::config::load::parse;
    use crate::config::load::tests::MINIMAL;

    fn with(extra: &str) -> String {
        MINIMAL.replace("[[route]]", &format!("{extra}\n[[route]]"))
    }

    fn adaptive(text: &str) -> (LimitScope, AdaptiveConcurrencyConfig) {
        let checked = parse("c.toml", text).expect("a valid file");
        let policy = checked.upstreams[0].adaptive.clone().expect("a limit");
        (policy.scope, policy.config)
    }

    fn problems(text: &str) -> String {
        parse("c.toml", text).expect_err("refused").to_string()
    }

    #[test]
    fn the_upstream_scope_takes_the_library_s_defaults() {
        let (scope, config) = adaptive(&with("[upstream.adaptive_concurrency]\nmax_queue = 8"));
        assert_eq!(scope, LimitScope::Upstream);
        assert_eq!(config.algorithm, AlgorithmConfig::default());
        assert_eq!(config.initial_limit, 20);
        assert_eq!(config.max_queue, 8);
    }

    #[test]
    fn per_endpoint_the_sidecar_s_defaults_apply_unless_the_file_sets_them() {
        let shedding = "[upstream.load_shedding]\nmax_queue = 64";
        let (scope, config) = adaptive(&with(&format!(
            "[upstream.adaptive_concurrency]\nscope = \"endpoint\"\n{shedding}"
        )));
        assert_eq!(scope, LimitScope::Endpoint);
        assert_eq!(config.algorithm, endpoint_algorithm());
        assert!(
            matches!(config.algorithm, AlgorithmConfig::Vegas { alpha, beta, .. } if alpha == 1.0 && beta == 2.0)
        );
        assert_eq!(config.initial_limit, ENDPOINT_INITIAL_LIMIT);

        let (_, config) = adaptive(&with(&format!(
            "[upstream.adaptive_concurrency]\nscope = \"endpoint\"\ninitial_limit = 9\n\
             algorithm = {{ kind = \"gradient2\" }}\n{shedding}"
        )));
        assert_eq!(config.initial_limit, 9);
        assert!(matches!(
            config.algorithm,
            AlgorithmConfig::Gradient2 { .. }
        ));

        // A floor above the sidecar's first limit raises it.
        let (_, config) = adaptive(&with(&format!(
            "[upstream.adaptive_concurrency]\nscope = \"endpoint\"\nmin_limit = 6\n{shedding}"
        )));
        assert_eq!(config.initial_limit, 6);
    }

    #[test]
    fn per_endpoint_the_shedder_is_required_and_the_upstream_queue_refused() {
        let text = with("[upstream.adaptive_concurrency]\nscope = \"endpoint\"");
        let refused = problems(&text);
        assert!(
            refused.contains("upstream[0].adaptive_concurrency.scope: \"endpoint\" needs [upstream.load_shedding]"),
            "{refused}"
        );
        let text = with(
            "[upstream.adaptive_concurrency]\nscope = \"endpoint\"\nmax_queue = 5\n\
             partitions = [{ criticality = \"critical\", share = 0.5 }]\n[upstream.load_shedding]",
        );
        let refused = problems(&text);
        for key in ["max_queue", "partitions"] {
            assert!(
                refused.contains(&format!(
                    "upstream[0].adaptive_concurrency.{key}: belongs to one upstream-wide limit"
                )),
                "{key}: {refused}"
            );
        }
        assert!(refused.contains("c.toml:"), "the line is named: {refused}");
        let text = with("[upstream.adaptive_concurrency]\nscope = \"server\"");
        assert!(
            problems(&text).contains("scope"),
            "an unknown scope is refused"
        );
    }
}
