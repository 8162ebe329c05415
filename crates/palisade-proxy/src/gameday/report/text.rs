//! Text as the reports write it: the journal's strings made safe inside XML and HTML, and
//! times since the start as people read them.
//!
//! Everything in a journal comes from an experiment file or from what the runner saw, so
//! none of it is trusted markup: a title `<script>…` must show as text. The five markup
//! characters become entities — safe in element content and in quoted attribute values
//! alike — and the characters XML 1.0 forbids even as references (the C0 controls but
//! tab, line feed and carriage return; the noncharacters U+FFFE and U+FFFF) become
//! U+FFFD, so a JUnit file always parses.

/// `text` with `& < > " '` as entities and forbidden characters replaced.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if forbidden(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Not allowed in an XML 1.0 document, not even as a character reference.
fn forbidden(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
}

/// Milliseconds as JUnit's seconds, to the millisecond: `12.345`.
pub fn junit_seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Milliseconds as a reader's time, to a tenth of a second: `12.3 s`, `2 min 5.0 s`.
pub fn duration(ms: u64) -> String {
    let tenths = ms / 100;
    let (minutes, tenths) = (tenths / 600, tenths % 600);
    let seconds = format!("{}.{} s", tenths / 10, tenths % 10);
    if minutes == 0 {
        seconds
    } else {
        format!("{minutes} min {seconds}")
    }
}

#[cfg(test)]
mod tests {
    use super::{duration, escape, junit_seconds};

    #[test]
    fn markup_characters_become_entities() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn entities_are_escaped_again_not_trusted() {
        assert_eq!(escape("&lt;"), "&amp;lt;");
    }

    #[test]
    fn forbidden_controls_are_replaced_and_whitespace_kept() {
        assert_eq!(
            escape("a\u{0}b\u{1B}c\td\ne\r"),
            "a\u{FFFD}b\u{FFFD}c\td\ne\r"
        );
    }

    #[test]
    fn other_text_is_unchanged() {
        assert_eq!(escape("≥ 99% — p99 431 ms"), "≥ 99% — p99 431 ms");
    }

    #[test]
    fn times_read_as_seconds() {
        assert_eq!(junit_seconds(0), "0.000");
        assert_eq!(junit_seconds(12_345), "12.345");
        assert_eq!(duration(0), "0.0 s");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(125_049), "2 min 5.0 s");
    }
}
