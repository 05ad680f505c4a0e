//! YAML text → [`Node`] tree, keeping the position of every key and value.
//!
//! Built on yaml-rust2's event parser because serde_yaml drops positions once a
//! document has parsed, and we need them for errors about valid YAML with wrong values.
//! Plain scalars are typed with the YAML 1.2 core schema (plus `yes`/`no`
//! left as strings, as 1.2 says).

use super::diagnostics::Diagnostic;
use super::tree::{Key, Node, Span, Value};
use std::path::Path;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

pub fn parse(file: &Path, text: &str) -> Result<Node, Diagnostic> {
    let mut builder = Builder { stack: Vec::new(), root: None, anchors: Vec::new(), error: None };
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|err| {
        let marker = err.marker();
        Diagnostic::error(
            file,
            Some(Span { line: marker.line(), col: marker.col() + 1 }),
            format!("invalid YAML: {}", err.info()),
        )
        .with_hint("check the indentation: nested keys need more spaces than their parent, and tabs are not allowed")
    })?;
    if let Some((span, message)) = builder.error {
        return Err(Diagnostic::error(file, Some(span), message));
    }
    Ok(builder.root.unwrap_or_else(|| Node::new(Value::Map(Vec::new()), Span { line: 1, col: 1 })))
}

enum Frame {
    Seq(Vec<Node>, Span, usize),
    Map(Vec<(Key, Node)>, Span, usize, Option<Key>),
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: Vec<(usize, Node)>,
    error: Option<(Span, String)>,
}

impl Builder {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, _, _, pending)) => match pending.take() {
                None => {
                    let name = match node.value {
                        Value::Str(s) => s,
                        Value::Int(i) => i.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => "null".to_string(),
                        _ => {
                            self.error.get_or_insert((
                                node.span,
                                "invalid YAML: a list or mapping cannot be a key".to_string(),
                            ));
                            String::new()
                        }
                    };
                    if entries.iter().any(|(k, _)| k.name == name) && self.error.is_none() {
                        self.error = Some((node.span, format!("invalid YAML: duplicate key `{name}`")));
                    }
                    *pending = Some(Key { name, span: node.span });
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

fn span_of(mark: Marker) -> Span {
    Span { line: mark.line(), col: mark.col() + 1 }
}

fn scalar(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::Str(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Int(i);
    }
    let looks_numeric = text.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
        && text.chars().any(|c| c.is_ascii_digit());
    if looks_numeric {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text)
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let span = span_of(mark);
        match event {
            Event::Scalar(text, style, anchor, _tag) => self.push_value(Node::new(scalar(text, style), span), anchor),
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(Vec::new(), span, anchor)),
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, start, anchor)) = self.stack.pop() {
                    self.push_value(Node::new(Value::Seq(items), start), anchor);
                }
            }
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map(Vec::new(), span, anchor, None)),
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, start, anchor, _)) = self.stack.pop() {
                    self.push_value(Node::new(Value::Map(entries), start), anchor);
                }
            }
            Event::Alias(id) => {
                let found = self.anchors.iter().rev().find(|(a, _)| *a == id).map(|(_, n)| n.clone());
                match found {
                    Some(mut node) => {
                        node.span = span;
                        self.push_value(node, 0)
                    }
                    None => {
                        self.error.get_or_insert((span, "invalid YAML: unknown alias".to_string()));
                    }
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_plain_scalars_and_keeps_quoted_strings() {
        let text = "a: 1\nb: \"1\"\nc: true\nd: py311\ne:\n  - x\n  - 2.5\nf: ~\n";
        let node = parse(Path::new("config.yaml"), text).unwrap();
        assert_eq!(node.get("a").unwrap().value, Value::Int(1));
        assert_eq!(node.get("b").unwrap().value, Value::Str("1".into()));
        assert_eq!(node.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(node.get("d").unwrap().value, Value::Str("py311".into()));
        assert_eq!(node.get("f").unwrap().value, Value::Null);
        let e = node.get("e").unwrap();
        assert_eq!(e.span, Span { line: 6, col: 3 });
        match &e.value {
            Value::Seq(items) => assert_eq!(items[1].value, Value::Float(2.5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn positions_are_one_based() {
        let node = parse(Path::new("config.yaml"), "model_name: x\nport: 80\n").unwrap();
        assert_eq!(node.get("port").unwrap().span, Span { line: 2, col: 7 });
    }

    #[test]
    fn bad_indentation_is_an_error_with_position() {
        let err = parse(Path::new("config.yaml"), "a:\n  b: 1\n c: 2\n").unwrap_err();
        assert!(err.span.is_some());
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = parse(Path::new("config.yaml"), "a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicate key `a`"), "{}", err.message);
        assert_eq!(err.span.unwrap().line, 2);
    }
}
