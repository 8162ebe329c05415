//! Links into docs/RUNBOOKS.md, where every `x-palisade-reason` value, every alert of
//! `palisade alerts` and every advice of `palisade check` has a section: what it means, how
//! to confirm it, what to do.
//!
//! A section's anchor is GitHub's for its `###` heading: a reason's heading is its header
//! value (`### circuit-open` → `#circuit-open`), an alert's its name
//! (`### PalisadeCircuitOpen` → `#palisadecircuitopen`), an advice's `advice: ` and its
//! rule (`### advice: retry-without-jitter` → `#advice-retry-without-jitter`). The tests
//! here read the file: a reason, alert or advice without its section, or a section of
//! none of them, fails them, so the file cannot drift from the code.

/// Where the runbooks are read by default: the file on the project's main branch.
pub const DEFAULT_BASE: &str = "https://github.com/palisade-rs/palisade/blob/main/docs/RUNBOOKS.md";

/// The link to section `anchor` of the runbooks at `base`.
pub fn url(base: &str, anchor: &str) -> String {
    format!("{}#{anchor}", base.trim_end_matches('#'))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::alerts::Alert;
    use crate::config::advice::Rule;
    use crate::respond::Reason;
    use crate::saga::SAGA_REASONS;

    const RUNBOOKS: &str = include_str!("../../../docs/RUNBOOKS.md");

    /// GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped,
    /// spaces as `-`.
    fn slug(heading: &str) -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect()
    }

    /// The anchors of the file's sections (its `###` headings), each once.
    fn sections() -> Vec<String> {
        RUNBOOKS
            .lines()
            .filter_map(|l| l.strip_prefix("### "))
            .map(slug)
            .collect()
    }

    /// Every anchor the code links to.
    fn linked() -> BTreeSet<String> {
        let reasons = Reason::ALL.iter().map(|r| r.as_str().to_owned());
        let saga = SAGA_REASONS.iter().map(|r| (*r).to_owned());
        let alerts = Alert::ALL.iter().map(|a| a.anchor());
        let advice = Rule::ALL.iter().map(|r| r.anchor());
        reasons.chain(saga).chain(alerts).chain(advice).collect()
    }

    #[test]
    fn anchors_are_githubs() {
        assert_eq!(
            slug("advice: retry-without-jitter"),
            "advice-retry-without-jitter"
        );
        assert_eq!(slug("PalisadeCircuitOpen"), "palisadecircuitopen");
        assert_eq!(slug("circuit-open"), "circuit-open");
        assert_eq!(super::url("https://x/R.md", "a"), "https://x/R.md#a");
    }

    #[test]
    fn every_reason_alert_and_advice_has_its_section() {
        let sections: BTreeSet<String> = sections().into_iter().collect();
        let linked = linked();
        let missing: Vec<&String> = linked.iter().filter(|a| !sections.contains(*a)).collect();
        assert!(
            missing.is_empty(),
            "docs/RUNBOOKS.md lacks sections for {missing:?}"
        );
    }

    #[test]
    fn every_section_is_one_reasons_alerts_or_advices_and_comes_once() {
        let linked = linked();
        let sections = sections();
        let stale: Vec<&String> = sections.iter().filter(|s| !linked.contains(*s)).collect();
        assert!(stale.is_empty(), "sections nothing links to: {stale:?}");
        let unique: BTreeSet<&String> = sections.iter().collect();
        assert_eq!(unique.len(), sections.len(), "a section twice");
    }

    #[test]
    fn the_links_inside_the_file_lead_to_its_sections() {
        let sections: BTreeSet<String> = sections().into_iter().collect();
        let links: Vec<&str> = RUNBOOKS
            .split("](#")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
            .collect();
        assert!(!links.is_empty());
        for link in links {
            assert!(sections.contains(link), "#{link} leads nowhere");
        }
    }
}
