//! An experiment file's text as one JSON value, with the line of every key and list item,
//! so each problem found later names its line as well as its path.
//!
//! JSON is parsed by `serde_json` (strict, as Chaos Toolkit's `json.loads`); YAML by
//! `yaml-rust2`'s event parser, whose events carry their position. The same event pass
//! run over a JSON file gives its lines too (JSON is YAML's flow style); where it cannot,
//! problems fall back to the nearest line known, then line 1.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::Yaml;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::config::load::{Problem, render};
use crate::config::spans::Step;

/// Which syntax a file is written in, told by its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// `.json`
    Json,
    /// `.yaml`, `.yml`
    Yaml,
}

/// A parsed file: its value and where each path sits.
#[derive(Debug)]
pub(super) struct Document {
    /// The whole file.
    pub(super) value: Value,
    /// 1-based line of each path (`method[2].provider.type`).
    lines: HashMap<String, usize>,
}

// === impl Document ===

impl Document {
    /// Parses `text`; a syntax error is the one problem.
    pub(super) fn parse(text: &str, syntax: Syntax) -> Result<Self, Problem> {
        match syntax {
            Syntax::Json => {
                let value: Value = serde_json::from_str(text).map_err(|e| Problem {
                    line: e.line().max(1),
                    key: "-".into(),
                    message: format!("not valid JSON: {e}"),
                })?;
                let lines = Builder::run(text).map(|b| b.lines).unwrap_or_default();
                Ok(Self { value, lines })
            }
            Syntax::Yaml => {
                let built = Builder::run(text).map_err(|(line, message)| Problem {
                    line,
                    key: "-".into(),
                    message: format!("not valid YAML: {message}"),
                })?;
                let value = built.root.unwrap_or(Value::Null);
                Ok(Self {
                    value,
                    lines: built.lines,
                })
            }
        }
    }

    /// The line of `path`, or of its nearest ancestor known, or 1.
    pub(super) fn line(&self, path: &[Step]) -> usize {
        (0..=path.len())
            .rev()
            .find_map(|n| self.lines.get(&render(&path[..n])).copied())
            .unwrap_or(1)
    }
}

/// A collection being built from the events.
enum Frame {
    Seq {
        path: Vec<Step>,
        anchor: usize,
        items: Vec<Value>,
    },
    Map {
        path: Vec<Step>,
        anchor: usize,
        map: Map<String, Value>,
        key: Option<String>,
    },
}

/// Builds the value and its lines from the parser's events.
#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    lines: HashMap<String, usize>,
    root: Option<Value>,
    documents: usize,
    error: Option<(usize, String)>,
}

// === impl Builder ===

impl Builder {
    fn run(text: &str) -> Result<Self, (usize, String)> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        parser
            .load(&mut builder, true)
            .map_err(|e| (e.marker().line().max(1), e.info().to_owned()))?;
        match builder.error.take() {
            Some(error) => Err(error),
            None => Ok(builder),
        }
    }

    fn fail(&mut self, mark: Marker, message: &str) {
        if self.error.is_none() {
            self.error = Some((mark.line().max(1), message.to_owned()));
        }
    }

    /// The path of the next value, and whether it is a mapping's key.
    fn next_path(&self) -> (Vec<Step>, bool) {
        match self.stack.last() {
            None => (Vec::new(), false),
            Some(Frame::Seq { path, items, .. }) => {
                let mut path = path.clone();
                path.push(Step::Index(items.len()));
                (path, false)
            }
            Some(Frame::Map { path, key, .. }) => match key {
                None => (path.clone(), true),
                Some(k) => {
                    let mut path = path.clone();
                    path.push(Step::Key(k.clone()));
                    (path, false)
                }
            },
        }
    }

    /// Places a finished value in its parent (or as the root).
    fn put(&mut self, value: Value, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        let (path, is_key) = self.next_path();
        match self.stack.last_mut() {
            None => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(mark, "more than one document; allowed: one experiment");
                } else {
                    self.root = Some(value);
                }
            }
            Some(Frame::Seq { items, .. }) => {
                self.lines.entry(render(&path)).or_insert(mark.line());
                items.push(value);
            }
            Some(Frame::Map { map, key, .. }) => {
                if is_key {
                    let Value::String(k) = value else {
                        self.fail(mark, "a key that is not text");
                        return;
                    };
                    let mut at = path;
                    at.push(Step::Key(k.clone()));
                    self.lines.insert(render(&at), mark.line());
                    *key = Some(k);
                } else if let Some(k) = key.take() {
                    map.insert(k, value);
                }
            }
        }
    }

    fn open(&mut self, anchor: usize, mark: Marker, seq: bool) {
        let (path, is_key) = self.next_path();
        if is_key {
            self.fail(mark, "a key that is not text");
        }
        self.lines.entry(render(&path)).or_insert(mark.line());
        self.stack.push(if seq {
            Frame::Seq {
                path,
                anchor,
                items: Vec::new(),
            }
        } else {
            Frame::Map {
                path,
                anchor,
                map: Map::new(),
                key: None,
            }
        });
    }

    fn close(&mut self, mark: Marker) {
        match self.stack.pop() {
            Some(Frame::Seq { anchor, items, .. }) => self.put(Value::Array(items), anchor, mark),
            Some(Frame::Map { anchor, map, .. }) => self.put(Value::Object(map), anchor, mark),
            None => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain
                    && !tag.is_some_and(|t| t.suffix == "str" || t.suffix.ends_with(":str"));
                let value = if plain {
                    scalar(&text)
                } else {
                    Value::String(text)
                };
                self.put(value, anchor, mark);
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor).cloned() {
                Some(value) => self.put(value, 0, mark),
                None => self.fail(mark, "an alias to an unknown anchor"),
            },
            Event::SequenceStart(anchor, _) => self.open(anchor, mark, true),
            Event::MappingStart(anchor, _) => self.open(anchor, mark, false),
            Event::SequenceEnd | Event::MappingEnd => self.close(mark),
            _ => {}
        }
    }
}

/// A plain scalar as YAML 1.2's core schema reads it: null, a boolean, a number or text.
fn scalar(text: &str) -> Value {
    match Yaml::from_str(text) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or(Value::String(text.to_owned()), Value::Number),
        _ => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Step {
        Step::Key(k.into())
    }

    #[test]
    fn yaml_values_take_their_types_and_keys_their_lines() {
        let text = "title: t\nmethod:\n  - type: action\n    pauses:\n      after: 1.5\n    n: 3\n    s: '3'\n    b: true\n    z: ~\n";
        let doc = Document::parse(text, Syntax::Yaml).unwrap();
        assert_eq!(
            doc.value["method"][0]["pauses"]["after"],
            serde_json::json!(1.5)
        );
        assert_eq!(doc.value["method"][0]["n"], serde_json::json!(3));
        assert_eq!(doc.value["method"][0]["s"], serde_json::json!("3"));
        assert_eq!(doc.value["method"][0]["b"], serde_json::json!(true));
        assert_eq!(doc.value["method"][0]["z"], Value::Null);
        let path = [key("method"), Step::Index(0), key("pauses"), key("after")];
        assert_eq!(doc.line(&path), 5);
        assert_eq!(doc.line(&[key("method"), Step::Index(0)]), 3);
        // An unknown deeper path falls back to its nearest known ancestor.
        assert_eq!(doc.line(&[key("method"), Step::Index(0), key("nope")]), 3);
    }

    #[test]
    fn json_lines_come_from_the_same_pass() {
        let text = "{\n  \"title\": \"t\",\n  \"method\": [\n    {\"type\": \"action\",\n     \"provider\": {\"type\": \"python\"}}\n  ]\n}\n";
        let doc = Document::parse(text, Syntax::Json).unwrap();
        let path = [key("method"), Step::Index(0), key("provider"), key("type")];
        assert_eq!(doc.line(&path), 5);
    }

    #[test]
    fn anchors_are_copied_where_aliased() {
        let text = "a: &x {k: 1}\nb: *x\n";
        let doc = Document::parse(text, Syntax::Yaml).unwrap();
        assert_eq!(doc.value["b"]["k"], serde_json::json!(1));
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let bad = Document::parse("{\n\"a\": 1,\n}", Syntax::Json).unwrap_err();
        assert_eq!(bad.line, 3);
        let bad = Document::parse("a: [1, 2\nb: 3\n", Syntax::Yaml).unwrap_err();
        assert!(bad.message.starts_with("not valid YAML"), "{}", bad.message);
        let two = Document::parse("a: 1\n---\nb: 2\n", Syntax::Yaml).unwrap_err();
        assert!(
            two.message.contains("more than one document"),
            "{}",
            two.message
        );
    }
}
