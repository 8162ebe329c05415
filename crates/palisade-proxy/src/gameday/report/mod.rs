//! The reports made from a game day's journal: the journal itself as JSON, JUnit XML for
//! CI, and one self-contained HTML page for people.
//!
//! All three are pure functions of the [`Journal`]: a report can be written again from a
//! saved `journal.json`, and what CI shows (JUnit) agrees with what the page shows and
//! with the run's exit code, because all three read the same `passed`, verdicts and
//! abort. Nothing here trusts the journal's text — every string is escaped where it is
//! written (text.rs) — or its numbers: a missing or non-finite sample is a gap in a plot.

pub mod html;
pub mod junit;
#[cfg(test)]
mod sample;
mod svg;
pub(crate) mod text;
mod timeline;

use std::path::{Path, PathBuf};

pub use html::html;
pub use junit::junit;

use super::journal::Journal;

/// Where [`write_all`] put each report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// `journal.json`: the journal, pretty-printed.
    pub journal: PathBuf,
    /// `junit.xml`.
    pub junit: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
}

/// Writes `journal.json`, `junit.xml` and `report.html` into `dir` (created if missing),
/// replacing any there.
pub fn write_all(journal: &Journal, dir: &Path) -> std::io::Result<Paths> {
    std::fs::create_dir_all(dir)?;
    let paths = Paths {
        journal: dir.join("journal.json"),
        junit: dir.join("junit.xml"),
        html: dir.join("report.html"),
    };
    let mut json = serde_json::to_string_pretty(journal).map_err(std::io::Error::other)?;
    json.push('\n');
    std::fs::write(&paths.journal, json)?;
    std::fs::write(&paths.junit, junit(journal))?;
    std::fs::write(&paths.html, html(journal))?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::{sample, write_all};
    use crate::gameday::journal::Journal;

    #[test]
    fn writes_the_three_reports_and_the_journal_reads_back() {
        let dir = std::env::temp_dir().join(format!("palisade-report-{}", std::process::id()));
        let journal = Journal {
            // JSON has no NaN: a journal to read back holds finite samples only.
            series: vec![],
            ..sample::journal()
        };
        let paths = write_all(&journal, &dir.join("nested")).unwrap();
        let read: Journal =
            serde_json::from_str(&std::fs::read_to_string(&paths.journal).unwrap()).unwrap();
        assert_eq!(read, journal);
        let xml = std::fs::read_to_string(&paths.junit).unwrap();
        assert!(xml.contains("<testsuite name=\"orders survive a slow payment service\""));
        let page = std::fs::read_to_string(&paths.html).unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(paths.html.file_name().unwrap(), "report.html");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
