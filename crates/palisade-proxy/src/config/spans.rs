//! Where a key sits in the file, for error messages with line numbers.

use toml_edit::{ImDocument, InlineTable, Item, Table, Value};

/// One step of a key path: a table key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// The parsed document, kept to look up lines.
pub(crate) struct Locator<'a> {
    text: &'a str,
    document: Option<ImDocument<&'a str>>,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            document: ImDocument::parse(text).ok(),
        }
    }

    /// The 1-based line of a byte offset.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The line of the deepest part of `path` found in the file: the key itself when it
    /// is there, else the table it belongs in. Line 1 when nothing is found.
    pub(crate) fn line(&self, path: &[Step]) -> usize {
        let Some(document) = &self.document else {
            return 1;
        };
        let mut best = None;
        walk_table(document.as_table(), path, &mut best);
        best.map_or(1, |offset| self.line_of(offset))
    }
}

// === impl Locator ===

impl Locator<'_> {
    /// Whether the file itself sets `path` (a default is not in the file).
    pub(crate) fn contains(&self, path: &[Step]) -> bool {
        let Some(document) = &self.document else {
            return false;
        };
        let mut item = document.as_item();
        for step in path {
            let next = match step {
                Step::Key(key) => item.get(key.as_str()),
                Step::Index(i) => item.get(*i),
            };
            match next {
                Some(next) => item = next,
                None => return false,
            }
        }
        true
    }
}

fn walk_table(table: &Table, path: &[Step], best: &mut Option<usize>) {
    if let Some(span) = table.span() {
        *best = Some(span.start);
    }
    let Some((Step::Key(key), rest)) = path.split_first() else {
        return;
    };
    if let Some(span) = table.key(key).and_then(|k| k.span()) {
        *best = Some(span.start);
    }
    match table.get(key) {
        Some(Item::Table(child)) => walk_table(child, rest, best),
        Some(Item::ArrayOfTables(array)) => {
            if let Some((Step::Index(i), rest)) = rest.split_first() {
                if let Some(child) = array.get(*i) {
                    walk_table(child, rest, best);
                }
            }
        }
        Some(Item::Value(Value::InlineTable(inline))) => walk_inline(inline, rest, best),
        _ => {}
    }
}

fn walk_inline(table: &InlineTable, path: &[Step], best: &mut Option<usize>) {
    let Some((Step::Key(key), rest)) = path.split_first() else {
        return;
    };
    if let Some(span) = table.key(key).and_then(|k| k.span()) {
        *best = Some(span.start);
    }
    if let Some(Value::InlineTable(inner)) = table.get(key) {
        walk_inline(inner, rest, best);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Step {
        Step::Key(k.to_owned())
    }

    #[test]
    fn finds_keys_in_tables_arrays_and_inline_tables() {
        let text = "[listener]\naddress = \"x\"\n\n[[upstream]]\nname = \"a\"\n\n[[upstream]]\nname = \"b\"\n[upstream.retry]\nmax_attempts = 0\nbudget = { ratio = 9 }\n";
        let l = Locator::new(text);
        assert_eq!(l.line(&[key("listener"), key("address")]), 2);
        assert_eq!(l.line(&[key("upstream"), Step::Index(1), key("name")]), 8);
        assert_eq!(
            l.line(&[
                key("upstream"),
                Step::Index(1),
                key("retry"),
                key("max_attempts")
            ]),
            10
        );
        assert_eq!(
            l.line(&[
                key("upstream"),
                Step::Index(1),
                key("retry"),
                key("budget"),
                key("ratio")
            ]),
            11
        );
        assert!(l.contains(&[
            key("upstream"),
            Step::Index(1),
            key("retry"),
            key("budget"),
            key("ratio")
        ]));
        assert!(l.contains(&[key("upstream"), Step::Index(0), key("name")]));
        assert!(!l.contains(&[key("upstream"), Step::Index(0), key("retry")]));
        assert!(!l.contains(&[key("upstream"), Step::Index(2)]));
        assert!(!l.contains(&[key("listener"), key("port")]));
        // A missing key points at its table.
        assert_eq!(
            l.line(&[key("upstream"), Step::Index(1), key("retry"), key("base")]),
            9
        );
    }
}
