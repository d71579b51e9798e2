//! Reading `volley.toml` so that one pass reports every problem: a value of the wrong type or
//! an unknown field is recorded with its field path and line, taken out, and the rest is read
//! again; then every value of the result is checked ([`SendConfig::problems`]).

use std::path::Path;

use serde_path_to_error::Segment;
use toml_edit::{DocumentMut, ImDocument, Item, Table, Value};

use super::validate::Problem;
use super::{ConfigError, SendConfig};

/// At most this many values are taken out before giving up (each costs one more pass).
const MAX_PASSES: usize = 64;

/// Parses `text` (read from `path`, named in errors) into a config and every problem found.
/// `Err` only when the text is not TOML at all; the config is `None` when a required field
/// is missing or mistyped.
pub(super) fn parse_collecting(text: &str, path: &Path) -> Result<(Option<SendConfig>, Vec<Problem>), ConfigError> {
    let original = ImDocument::parse(text.to_owned()).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string(),
    })?;
    let mut doc = original.clone().into_mut();
    let mut problems = Vec::new();
    let mut removed = false;
    let mut config = None;
    for _ in 0..MAX_PASSES {
        let deserializer = toml_edit::de::Deserializer::from(doc.clone());
        match serde_path_to_error::deserialize::<_, SendConfig>(deserializer) {
            Ok(c) => {
                config = Some(c);
                break;
            }
            Err(e) => {
                let segments: Vec<Segment> = e.path().iter().cloned().collect();
                let message = e.inner().message().trim_end().to_owned();
                // A required field missing because a bad value was taken out says nothing new.
                let consequence = removed && message.starts_with("missing field");
                if !consequence {
                    let node = deepest(&original, &segments);
                    let mut problem =
                        Problem::new(e.path().to_string(), node.map_or(String::new(), Node::text), message);
                    problem.line = node.and_then(|n| n.line(original.raw()));
                    problems.push(problem);
                }
                if consequence || !remove(&mut doc, &segments) {
                    break;
                }
                removed = true;
            }
        }
    }
    if let Some(c) = &config {
        for mut problem in c.problems() {
            problem.line = deepest(&original, &segments_of(&problem.field)).and_then(|n| n.line(original.raw()));
            problems.push(problem);
        }
    }
    Ok((config, problems))
}

/// A place in a parsed document: a table's entry, an array's element, a `[[table]]`.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a Table),
}

impl<'a> Node<'a> {
    fn child(self, segment: &Segment) -> Option<Node<'a>> {
        match (self, segment) {
            (Node::Item(Item::Table(t)) | Node::Table(t), Segment::Map { key }) => t.get(key).map(Node::Item),
            (Node::Item(Item::ArrayOfTables(a)), Segment::Seq { index }) => a.get(*index).map(Node::Table),
            (Node::Item(Item::Value(v)) | Node::Value(v), _) => match (v, segment) {
                (Value::InlineTable(t), Segment::Map { key }) => t.get(key).map(Node::Value),
                (Value::Array(a), Segment::Seq { index }) => a.get(*index).map(Node::Value),
                _ => None,
            },
            _ => None,
        }
    }

    /// The value as written: a string's contents, other values' TOML, nothing for a table.
    fn text(self) -> String {
        let value = match self {
            Node::Item(Item::Value(v)) | Node::Value(v) => v,
            _ => return String::new(),
        };
        match value.as_str() {
            Some(s) => s.to_owned(),
            None => value.to_string().trim().to_owned(),
        }
    }

    /// 1-based line where it starts in `raw`.
    fn line(self, raw: &str) -> Option<usize> {
        let span = match self {
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
            Node::Table(t) => t.span(),
        }?;
        Some(raw.get(..span.start)?.matches('\n').count() + 1)
    }
}

/// The deepest node of `doc` along `segments` (the field itself when it is written; else the
/// table it belongs in); `None` when not even the first segment is there.
fn deepest<'a>(doc: &'a ImDocument<String>, segments: &[Segment]) -> Option<Node<'a>> {
    let mut node = Node::Item(doc.as_item());
    let mut found = None;
    for segment in segments {
        match node.child(segment) {
            Some(child) => {
                node = child;
                found = Some(child);
            }
            None => break,
        }
    }
    found
}

/// A mutable place in a document being trimmed.
enum NodeMut<'a> {
    Item(&'a mut Item),
    Value(&'a mut Value),
    Table(&'a mut Table),
}

impl<'a> NodeMut<'a> {
    fn child(self, segment: &Segment) -> Option<NodeMut<'a>> {
        match (self, segment) {
            (NodeMut::Item(Item::Table(t)) | NodeMut::Table(t), Segment::Map { key }) => {
                t.get_mut(key).map(NodeMut::Item)
            }
            (NodeMut::Item(Item::ArrayOfTables(a)), Segment::Seq { index }) => a.get_mut(*index).map(NodeMut::Table),
            (NodeMut::Item(Item::Value(v)) | NodeMut::Value(v), _) => match (v, segment) {
                (Value::InlineTable(t), Segment::Map { key }) => t.get_mut(key).map(NodeMut::Value),
                (Value::Array(a), Segment::Seq { index }) => a.get_mut(*index).map(NodeMut::Value),
                _ => None,
            },
            _ => None,
        }
    }

    /// Removes the child at `segment`; whether there was one.
    fn remove(self, segment: &Segment) -> bool {
        match (self, segment) {
            (NodeMut::Item(Item::Table(t)) | NodeMut::Table(t), Segment::Map { key }) => t.remove(key).is_some(),
            (NodeMut::Item(Item::ArrayOfTables(a)), Segment::Seq { index }) if *index < a.len() => {
                a.remove(*index);
                true
            }
            (NodeMut::Item(Item::Value(v)) | NodeMut::Value(v), _) => match (v, segment) {
                (Value::InlineTable(t), Segment::Map { key }) => t.remove(key).is_some(),
                (Value::Array(a), Segment::Seq { index }) if *index < a.len() => {
                    a.remove(*index);
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// Takes the value at `segments` out of `doc`; whether it was there.
fn remove(doc: &mut DocumentMut, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = NodeMut::Item(doc.as_item_mut());
    for segment in parents {
        match node.child(segment) {
            Some(child) => node = child,
            None => return false,
        }
    }
    node.remove(last)
}

/// The segments of a field path as [`Problem`]s write it: `source_ips[1].address`,
/// `routes."*"`, `smtp.timeouts.data_end`.
fn segments_of(field: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut chars = field.chars().peekable();
    let mut key = String::new();
    let flush = |key: &mut String, segments: &mut Vec<Segment>| {
        if !key.is_empty() {
            segments.push(Segment::Map {
                key: std::mem::take(key),
            });
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '.' => flush(&mut key, &mut segments),
            '[' => {
                flush(&mut key, &mut segments);
                let digits: String = chars.by_ref().take_while(|&c| c != ']').collect();
                match digits.parse() {
                    Ok(index) => segments.push(Segment::Seq { index }),
                    Err(_) => return segments,
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => key.extend(chars.next()),
                        c => key.push(c),
                    }
                }
            }
            c => key.push(c),
        }
    }
    flush(&mut key, &mut segments);
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str) -> (bool, Vec<String>) {
        let (config, problems) = parse_collecting(text, Path::new("v.toml")).expect("TOML");
        let lines = problems
            .iter()
            .map(|p| format!("{}:{} = {} ({})", p.line.unwrap_or(0), p.field, p.value, p.reason))
            .collect();
        (config.is_some(), lines)
    }

    #[test]
    fn field_paths_parse() {
        let names = |field: &str| -> Vec<String> { segments_of(field).iter().map(|s| s.to_string()).collect() };
        assert_eq!(names("source_ips[1].address"), ["source_ips", "[1]", "address"]);
        assert_eq!(names("routes.\"a.test\""), ["routes", "a.test"]);
        assert_eq!(names("smtp.timeouts.data_end"), ["smtp", "timeouts", "data_end"]);
    }

    #[test]
    fn every_mistyped_value_and_unknown_field_is_reported_with_path_and_line() {
        let (complete, problems) = collect(
            "[[source_ips]]\n\
             address = \"127.0.0.2\"\n\
             ehlo_name = \"a.test\"\n\
             [smtp]\n\
             idle_timeout = \"5x\"\n\
             max_connections = \"many\"\n\
             idle_timout = \"5s\"\n\
             [smtp.timeouts]\n\
             data_end = \"0s\"\n\
             [retry]\n\
             max_age = \"0s\"\n",
        );
        assert!(complete, "{problems:#?}");
        let fields: Vec<&str> = problems
            .iter()
            .map(|p| p.split(" = ").next().unwrap_or_default())
            .collect();
        assert_eq!(
            fields,
            [
                "5:smtp.idle_timeout",
                "6:smtp.max_connections",
                "7:smtp.idle_timout",
                "11:retry.max_age",
                "9:smtp.timeouts.data_end"
            ],
            "{problems:#?}"
        );
        assert!(problems[0].contains("= 5x ("), "{}", problems[0]);
        assert!(problems[2].contains("unknown field"), "{}", problems[2]);
    }

    #[test]
    fn a_missing_required_field_is_reported_once() {
        let (complete, problems) = collect("[[source_ips]]\naddress = 12\nehlo_name = \"a.test\"\n");
        assert!(!complete);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with("2:source_ips[0].address = 12 ("),
            "{problems:#?}"
        );
    }
}
