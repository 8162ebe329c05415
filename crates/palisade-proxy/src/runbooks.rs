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
