//! Each rule fires on the mistake and stays silent on a config without it.

use super::*;
use crate::config::parse;

const GOOD_TIMEOUT: &str = "[upstream.timeout]\ntotal = \"2s\"\nper_try = \"500ms\"\n";
const GOOD_RETRY: &str = "[upstream.retry]\nbudget = { ratio = 0.2 }\n";
const GOOD_LIMIT: &str = "[upstream.bulkhead]\nmax_concurrent = 64\n";

/// A file with one upstream made of these sections (each may be empty).
fn file(timeout: &str, retry: &str, rest: &str) -> String {
    format!(
        "[listener]\naddress = \"127.0.0.1:8080\"\n\n[[upstream]]\nname = \"a\"\n\
         endpoints = [\"127.0.0.1:9001\"]\n{timeout}{retry}{rest}\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"a\"\n"
    )
}

fn advice_on(text: &str) -> Vec<Advice> {
    parse("test.toml", text)
        .unwrap_or_else(|p| panic!("{p}\n{text}"))
        .advice
}

fn rules_of(text: &str) -> Vec<Rule> {
    advice_on(text).iter().map(|a| a.rule).collect()
}

/// 1-based line of the first line of `text` that starts with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}"))
        + 1
}

#[test]
fn a_config_without_the_mistakes_gets_no_advice() {
    assert_eq!(advice_on(&file(GOOD_TIMEOUT, GOOD_RETRY, GOOD_LIMIT)), []);
}

#[test]
fn retries_without_jitter_are_found_on_their_line() {
    let retry = "[upstream.retry]\nbudget = { ratio = 0.2 }\njitter = \"none\"\n";
    let text = file(GOOD_TIMEOUT, retry, GOOD_LIMIT);
    let advice = advice_on(&text);
    assert_eq!(advice.len(), 1, "{advice:?}");
    assert_eq!(advice[0].rule, Rule::RetryWithoutJitter);
    assert_eq!(advice[0].key, "upstream[0].retry.jitter");
    assert_eq!(advice[0].line, line_of(&text, "jitter"));
    for silent in [
        "[upstream.retry]\nmax_attempts = 1\njitter = \"none\"\n",
        "[upstream.retry]\nbudget = { ratio = 0.2 }\njitter = \"none\"\nbackoff = \"decorrelated\"\nmax_delay = \"100ms\"\n",
    ] {
        assert_eq!(
            rules_of(&file(GOOD_TIMEOUT, silent, GOOD_LIMIT)),
            [],
            "{silent}"
        );
    }
}

#[test]
fn retries_of_methods_that_are_not_idempotent_are_found() {
    let retry =
        "[upstream.retry]\nbudget = { ratio = 0.2 }\nmethods = [\"GET\", \"POST\", \"PATCH\"]\n";
    let advice = advice_on(&file(GOOD_TIMEOUT, retry, GOOD_LIMIT));
    assert_eq!(advice.len(), 1, "{advice:?}");
    assert_eq!(advice[0].rule, Rule::RetryNonIdempotent);
    assert!(
        advice[0]
            .message
            .starts_with("POST, PATCH may be sent again"),
        "{advice:?}"
    );
    assert_eq!(advice[0].key, "upstream[0].retry.methods");
    let once = "[upstream.retry]\nmax_attempts = 1\nmethods = [\"POST\"]\n";
    assert_eq!(
        rules_of(&file(GOOD_TIMEOUT, once, GOOD_LIMIT)),
        [],
        "never sent twice"
    );
    let hedged = format!("{GOOD_LIMIT}[upstream.hedge]\ndelay = \"50ms\"\n");
    assert_eq!(
        rules_of(&file(GOOD_TIMEOUT, once, &hedged)),
        [Rule::RetryNonIdempotent],
        "a hedge sends it twice too"
    );
    let idempotent = "[upstream.retry]\nbudget = { ratio = 0.2 }\nmethods = [\"GET\", \"PUT\", \"DELETE\", \"TRACE\"]\n";
    assert_eq!(rules_of(&file(GOOD_TIMEOUT, idempotent, GOOD_LIMIT)), []);
}

#[test]
fn a_worst_case_over_the_total_is_found_with_its_sum() {
    let timeout = "[upstream.timeout]\ntotal = \"10s\"\nper_try = \"5s\"\n";
    let retry = "[upstream.retry]\nmax_attempts = 5\nbase = \"10ms\"\nmax_delay = \"100ms\"\nbudget = { ratio = 0.2 }\n";
    let text = file(timeout, retry, GOOD_LIMIT);
    let advice = advice_on(&text);
    assert_eq!(advice.len(), 1, "{advice:?}");
    assert_eq!(advice[0].rule, Rule::RetryOverTotal);
    // Backoffs up to 10 + 20 + 40 + 80 ms.
    assert_eq!(
        advice[0].message,
        "5 s × 5 attempts + backoffs up to 150 ms = 25.15 s > total 10 s: the last \
         attempts are cut short or never start"
    );
    assert!(
        advice[0].fix.starts_with("max_attempts = 1, "),
        "{advice:?}"
    );
    assert!(
        advice[0].fix.contains("total = \"25s 150ms\""),
        "{advice:?}"
    );
    assert_eq!(advice[0].line, line_of(&text, "per_try"));
    let three_fit = "[upstream.timeout]\ntotal = \"10s\"\nper_try = \"3s\"\n";
    let advice = advice_on(&file(three_fit, retry, GOOD_LIMIT));
    assert!(
        advice[0].fix.starts_with("max_attempts = 3, "),
        "9.03 s fit: {advice:?}"
    );
    let adaptive =
        "[upstream.timeout]\ntotal = \"2s\"\nper_try = \"500ms\"\nadaptive = { max = \"1s\" }\n";
    let advice = advice_on(&file(adaptive, GOOD_RETRY, GOOD_LIMIT));
    assert_eq!(
        advice.len(),
        1,
        "the adaptive timeout's max bounds an attempt: {advice:?}"
    );
    assert!(
        advice[0].message.starts_with("1 s × 3 attempts"),
        "{advice:?}"
    );
    assert!(
        advice[0].fix.starts_with("max_attempts = 1, "),
        "{advice:?}"
    );
}

#[test]
fn the_defaults_alone_are_left_to_the_no_timeout_advice() {
    let rules = rules_of(&file("", GOOD_RETRY, GOOD_LIMIT));
    assert_eq!(
        rules,
        [Rule::NoTimeout],
        "15 s ≥ 5 s × 3 + 150 ms is not re-reported"
    );
}

#[test]
fn an_upstream_without_a_timeout_is_found_on_its_table() {
    let text = file("", GOOD_RETRY, GOOD_LIMIT);
    let advice = advice_on(&text);
    assert_eq!(advice[0].rule, Rule::NoTimeout);
    assert_eq!(advice[0].key, "upstream[0].timeout");
    assert_eq!(advice[0].line, line_of(&text, "[[upstream]]"));
    assert!(
        advice[0].message.contains("5 s per attempt, 15 s in all"),
        "{advice:?}"
    );
    let per_try_only = "[upstream.timeout]\nper_try = \"200ms\"\n";
    assert_eq!(rules_of(&file(per_try_only, GOOD_RETRY, GOOD_LIMIT)), []);
}

#[test]
fn a_breaker_that_trips_on_a_blip_is_found() {
    for (breaker, trips) in [
        ("minimum_calls = 5", true),
        ("window = \"time\"\nsize = 10\nminimum_calls = 4", true),
        ("window = \"consecutive\"\nsize = 3", true),
        ("minimum_calls = 10", false),
        ("window = \"consecutive\"\nsize = 5", false),
        ("mode = \"disabled\"\nminimum_calls = 2", false),
    ] {
        let rest = format!("{GOOD_LIMIT}[upstream.circuit_breaker]\n{breaker}\n");
        let text = file(GOOD_TIMEOUT, GOOD_RETRY, &rest);
        let rules = rules_of(&text);
        let expected: &[Rule] = if trips {
            &[Rule::BreakerTripsOnBlip]
        } else {
            &[]
        };
        assert_eq!(rules, expected, "{breaker}");
    }
    let text = file(
        GOOD_TIMEOUT,
        GOOD_RETRY,
        &format!("{GOOD_LIMIT}[upstream.circuit_breaker]\nminimum_calls = 4\n"),
    );
    let advice = advice_on(&text);
    assert_eq!(advice[0].line, line_of(&text, "minimum_calls"));
    assert!(
        advice[0]
            .message
            .contains("so 2 failures of a blip open it"),
        "{advice:?}"
    );
}

#[test]
fn an_upstream_without_a_concurrency_limit_is_found() {
    let text = file(GOOD_TIMEOUT, GOOD_RETRY, "");
    let advice = advice_on(&text);
    assert_eq!(advice.len(), 1, "{advice:?}");
    assert_eq!(advice[0].rule, Rule::NoConcurrencyLimit);
    assert_eq!(advice[0].line, line_of(&text, "[[upstream]]"));
    for limit in [
        "[upstream.adaptive_concurrency]\ninitial_limit = 20\n",
        "[upstream.load_shedding]\nmax_concurrent = 64\n",
    ] {
        assert_eq!(
            rules_of(&file(GOOD_TIMEOUT, GOOD_RETRY, limit)),
            [],
            "{limit}"
        );
    }
}

#[test]
fn a_queue_too_deep_or_too_slow_is_found() {
    for (limit, key) in [
        (
            "[upstream.bulkhead]\nmax_concurrent = 10\nmax_queue = 101\n",
            "upstream[0].bulkhead.max_queue",
        ),
        (
            "[upstream.bulkhead]\nqueue_timeout = \"3s\"\n",
            "upstream[0].bulkhead.queue_timeout",
        ),
        (
            "[upstream.load_shedding]\nmax_concurrent = 8\nmax_queue = 81\n",
            "upstream[0].load_shedding.max_queue",
        ),
        (
            "[upstream.adaptive_concurrency]\nmax_queue = 10\nqueue_timeout = \"5s\"\n",
            "upstream[0].adaptive_concurrency.queue_timeout",
        ),
    ] {
        let advice = advice_on(&file(GOOD_TIMEOUT, GOOD_RETRY, limit));
        assert_eq!(advice.len(), 1, "{limit}: {advice:?}");
        assert_eq!(
            (advice[0].rule, advice[0].key.as_str()),
            (Rule::LongQueue, key)
        );
    }
    for limit in [
        "[upstream.bulkhead]\nmax_concurrent = 10\nmax_queue = 100\nqueue_timeout = \"2s\"\n",
        "[upstream.bulkhead]\nmax_queue = 0\nqueue_timeout = \"1m\"\n",
        "[upstream.load_shedding]\nmax_concurrent = 8\nmax_queue = 80\n",
    ] {
        assert_eq!(
            rules_of(&file(GOOD_TIMEOUT, GOOD_RETRY, limit)),
            [],
            "{limit}"
        );
    }
}

#[test]
fn retries_that_may_add_too_much_load_are_found() {
    for (retry, key) in [
        (
            "[upstream.retry]\nmax_attempts = 3\n",
            "upstream[0].retry.max_attempts",
        ),
        ("", "upstream[0].retry"),
        (
            "[upstream.retry]\nbudget = { ratio = 0.8 }\n",
            "upstream[0].retry.budget.ratio",
        ),
        (
            "[upstream.retry]\nmax_attempts = 2\nbudget = { ratio = 5 }\n",
            "upstream[0].retry.budget.ratio",
        ),
    ] {
        let advice = advice_on(&file(GOOD_TIMEOUT, retry, GOOD_LIMIT));
        assert_eq!(advice.len(), 1, "{retry}: {advice:?}");
        assert_eq!(
            (advice[0].rule, advice[0].key.as_str()),
            (Rule::RetryLoad, key)
        );
    }
    let advice = advice_on(&file(
        GOOD_TIMEOUT,
        "[upstream.retry]\nmax_attempts = 2\nbudget = { ratio = 5 }\n",
        GOOD_LIMIT,
    ));
    assert!(advice[0].message.contains("up to 100% load"), "{advice:?}");
    for retry in [
        "[upstream.retry]\nbudget = { ratio = 0.5 }\n",
        "[upstream.retry]\nmax_attempts = 1\n",
    ] {
        assert_eq!(
            rules_of(&file(GOOD_TIMEOUT, retry, GOOD_LIMIT)),
            [],
            "{retry}"
        );
    }
}

#[test]
fn a_warning_names_file_line_key_fix_and_runbook() {
    let retry = "[upstream.retry]\nbudget = { ratio = 0.2 }\njitter = \"none\"\n";
    let text = file(GOOD_TIMEOUT, retry, GOOD_LIMIT);
    let shown = advice_on(&text)[0].to_string();
    let line = line_of(&text, "jitter");
    assert!(
        shown.starts_with(&format!(
            "test.toml:{line}: warning: upstream[0].retry.jitter: jitter = \"none\": "
        )),
        "{shown}"
    );
    assert!(shown.contains("; fix: jitter = \"full\""), "{shown}");
    assert!(
        shown.ends_with(
            "[retry-without-jitter: https://github.com/palisade-rs/palisade/blob/main/docs/RUNBOOKS.md#advice-retry-without-jitter]"
        ),
        "{shown}"
    );
}

#[test]
fn advice_on_several_upstreams_comes_in_file_order() {
    let text = format!(
        "{}\n[[upstream]]\nname = \"b\"\nendpoints = [\"127.0.0.1:9002\"]\n{GOOD_TIMEOUT}{GOOD_RETRY}\n",
        file(GOOD_TIMEOUT, GOOD_RETRY, "")
    );
    let advice = advice_on(&text);
    let keys: Vec<&str> = advice.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["upstream[0].bulkhead", "upstream[1].bulkhead"]);
    assert!(advice[0].line < advice[1].line);
}

#[test]
fn the_readmes_sidecar_example_gets_no_advice() {
    let readme = include_str!("../../../../../README.md");
    let section = &readme[readme
        .find("## The sidecar")
        .expect("the sidecar's section")..];
    let start = section.find("```toml\n").expect("its example") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").expect("its end")];
    assert!(example.contains("[listener]"), "{example}");
    assert_eq!(advice_on(example), []);
}

/// The load benchmark's config (bench/proxy/configs.sh) turns every policy on. Its one
/// advice is true and kept: 1 s × 3 attempts + backoffs > total 2 s. Nothing times out
/// at the rates measured, and changing the file would break the comparison with
/// earlier runs.
#[test]
fn the_benchmarks_config_gets_only_its_known_advice() {
    let script = include_str!("../../../../../bench/proxy/configs.sh");
    let start = script.find("<<EOF\n").expect("the heredoc") + "<<EOF\n".len();
    let text = script[start..start + script[start..].find("\nEOF").expect("its end")]
        .replace("$1", "8080")
        .replace("$2", "9901")
        .replace("$3", "9001");
    let advice = advice_on(&text);
    let found: Vec<(Rule, &str)> = advice
        .iter()
        .map(|a| (a.rule, a.message.as_str()))
        .collect();
    assert_eq!(found.len(), 1, "{advice:#?}");
    assert_eq!(found[0].0, Rule::RetryOverTotal);
    assert!(
        found[0]
            .1
            .starts_with("1 s × 3 attempts + backoffs up to 150 ms = 3.15 s > total 2 s"),
        "{advice:#?}"
    );
}
