//! YAML text → [`Yaml`] values with positions, exactly as PyYAML's `yaml.safe_load` loads it.
//!
//! Truss reads `config.yaml` with `yaml.safe_load`, so that is the reference.
//! Three stages, as in PyYAML:
//! 1. **parse**: C libyaml's scanner and parser (through [`libyaml`](super::libyaml)).
//!    PyYAML's pure-Python parser and libyaml were written together and accept
//!    the same documents; both ignore indentation inside flow collections
//!    (yaml-rust2, used before, rejected a `}` indented like its key).
//! 2. **compose**: events → a node graph; anchors name nodes, aliases share them,
//!    untagged scalars get their tag from [`yaml_resolve`] (YAML 1.1 rules).
//! 3. **construct**: `SafeConstructor`'s rules, in [`yaml_construct`].
//!
//! A stream must hold at most one document, and an anchor name may be used once.
//!
//! libyaml differs from PyYAML's own scanner about tabs and about `:` before a
//! flow indicator; [`yaml_quirks`] makes those cases go PyYAML's way.
//! One difference is deliberate: a node that contains itself through an alias
//! is an error here, since a tree cannot hold it (PyYAML builds a cyclic object).
//!
//! `tests/yaml_pyyaml.rs` checks all of this against PyYAML itself.

use super::libyaml::{self, Event, Mark};
use super::tree::{LineIndex, Span};
use super::yaml_construct;
use super::yaml_quirks;
use super::yaml_resolve::{self as resolve, Timestamp};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// A loaded value and where it starts (where it is referenced, for an alias).
#[derive(Debug, Clone, PartialEq)]
pub struct Yaml {
    pub value: YamlValue,
    pub span: Span,
}

/// The Python value `safe_load` makes, one variant per Python type.
#[derive(Debug, Clone, PartialEq)]
pub enum YamlValue {
    Null,
    Bool(bool),
    Int(i64),
    /// An int outside i64 (Python ints have no bound): decimal digits with sign.
    BigInt(String),
    Float(f64),
    Str(String),
    /// `!!binary`.
    Bytes(Vec<u8>),
    /// `2024-01-01` (a `datetime.date`) or a date and time (`datetime.datetime`).
    Timestamp(Timestamp),
    /// A list; `!!omap` and `!!pairs` are lists of `[key, value]` pairs, as in PyYAML.
    Seq(Vec<Yaml>),
    /// `!!set`: the keys of a mapping.
    Set(Vec<Yaml>),
    /// Entries in Python dict order.
    Map(Vec<(Yaml, Yaml)>),
}

/// A loaded document, and the keys that were given more than once.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// `None` for an empty stream (PyYAML returns `None`).
    pub root: Option<Yaml>,
    pub duplicate_keys: Vec<DuplicateKey>,
}

/// A key repeated in one mapping: PyYAML keeps the last value.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateKey {
    pub key: Yaml,
    pub first: Span,
    pub repeated: Span,
}

/// Why a document was refused, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub stage: Stage,
    pub problem: String,
    pub span: Option<Span>,
    /// What was being read when it happened (`while parsing a block mapping`), and where that started.
    pub context: Option<(String, Span)>,
    /// The byte offset of `span` in the text, when the parser gives one.
    pub offset: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Not YAML at all (bad indentation, an unclosed bracket, a tab where none may be).
    Syntax,
    /// YAML, but not something `safe_load` constructs (unknown alias or tag, a list as a key, …).
    Value,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem)?;
        if let Some((context, span)) = &self.context {
            write!(f, " ({context} at {span})")?;
        }
        Ok(())
    }
}

impl std::error::Error for YamlError {}

impl YamlError {
    pub(super) fn value(problem: impl Into<String>, span: Span) -> Self {
        YamlError { stage: Stage::Value, problem: problem.into(), span: Some(span), context: None, offset: None }
    }
}

fn span_of(mark: Mark) -> Span {
    Span { line: mark.line + 1, col: mark.column + 1 }
}

/// Loads the single document of `text` as `yaml.safe_load(text)` does.
pub fn load(text: &str) -> Result<Document, YamlError> {
    yaml_construct::construct(compose_as_pyyaml(text)?)
}

/// A reference to a node, with the position of the reference (an alias's own position).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ref {
    pub(super) id: usize,
    pub(super) span: Span,
}

#[derive(Debug)]
pub(super) enum Content {
    Scalar(String),
    Seq(Vec<Ref>),
    Map(Vec<Entry>),
}

#[derive(Debug)]
pub(super) struct RawNode {
    pub(super) tag: String,
    pub(super) content: Content,
}

impl RawNode {
    pub(super) fn kind(&self) -> &'static str {
        match self.content {
            Content::Scalar(_) => "a scalar",
            Content::Seq(_) => "a sequence",
            Content::Map(_) => "a mapping",
        }
    }
}

pub(super) struct Graph {
    pub(super) nodes: Vec<RawNode>,
    pub(super) root: Option<Ref>,
}

/// A mapping entry; `merged` when a merge key brought it in.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) key: Ref,
    pub(super) value: Ref,
    pub(super) merged: bool,
}

fn syntax_error(err: libyaml::ParseError, text: &str) -> YamlError {
    let span = if err.offset_only { LineIndex::new(text).span_at(text, err.mark.index) } else { span_of(err.mark) };
    let context = err.context.map(|(context, mark)| (context, span_of(mark)));
    YamlError { stage: Stage::Syntax, problem: err.problem, span: Some(span), context, offset: Some(err.mark.index) }
}

/// [`compose`], with libyaml's differences from PyYAML's scanner undone
/// (see [`yaml_quirks`]); positions are those of the original text.
fn compose_as_pyyaml(original: &str) -> Result<Graph, YamlError> {
    let mut text = Cow::Borrowed(original);
    // Characters put after a `:` or `?`, as positions in the text they were put into.
    let mut inserted: Vec<Span> = Vec::new();
    for at in yaml_quirks::empty_flow_sequence_keys(original).into_iter().rev() {
        let question = LineIndex::new(original).span_at(original, at - 1);
        text.to_mut().insert(at, '~');
        inserted.push(question);
    }
    let unshift = |span: Span, inserted: &[Span]| {
        inserted.iter().rev().fold(span, |span, colon| {
            if span.line == colon.line && span.col > colon.col + 1 {
                Span { col: span.col - 1, ..span }
            } else {
                span
            }
        })
    };
    loop {
        match compose(&text) {
            Err(err) if err.problem == "found unexpected ':'" && inserted.len() < 10_000 => {
                match err.offset.and_then(|at| yaml_quirks::space_after_colon(&text, at)) {
                    Some(fixed) => {
                        inserted.push(err.span.expect("a scanner error has a position"));
                        text = Cow::Owned(fixed);
                    }
                    None => return Err(YamlError { span: err.span.map(|s| unshift(s, &inserted)), ..err }),
                }
            }
            Err(mut err) => {
                err.span = err.span.map(|s| unshift(s, &inserted));
                if let Some((_, span)) = &mut err.context {
                    *span = unshift(*span, &inserted);
                }
                return Err(err);
            }
            Ok(mut graph) => {
                if let Some((at, problem)) = yaml_quirks::refusal(&text) {
                    let span = unshift(LineIndex::new(&text).span_at(&text, at), &inserted);
                    return Err(YamlError {
                        stage: Stage::Syntax,
                        problem: problem.to_string(),
                        span: Some(span),
                        context: None,
                        offset: None,
                    });
                }
                if !inserted.is_empty() {
                    let fix = |r: &mut Ref| r.span = unshift(r.span, &inserted);
                    graph.root.iter_mut().for_each(fix);
                    for node in &mut graph.nodes {
                        match &mut node.content {
                            Content::Scalar(_) => {}
                            Content::Seq(items) => items.iter_mut().for_each(fix),
                            Content::Map(entries) => entries.iter_mut().for_each(|e| {
                                fix(&mut e.key);
                                fix(&mut e.value)
                            }),
                        }
                    }
                }
                return Ok(graph);
            }
        }
    }
}

/// Parses and composes: PyYAML's `Composer.get_single_node`.
fn compose(text: &str) -> Result<Graph, YamlError> {
    let mut nodes: Vec<RawNode> = Vec::new();
    let mut anchors: HashMap<String, (usize, Span)> = HashMap::new();
    // Open collections: node id, where it starts, and a pending key for mappings.
    let mut stack: Vec<(usize, Span, Option<Ref>)> = Vec::new();
    let mut root: Option<Ref> = None;
    let mut documents = 0;
    for (event, start, _) in libyaml::events(text).map_err(|err| syntax_error(err, text))? {
        let span = span_of(start);
        let is_map = matches!(event, Event::MappingStart { .. });
        let (new, anchor) = match event {
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError {
                        stage: Stage::Syntax,
                        problem: "expected a single document in the stream, but found another document".to_string(),
                        span: Some(span),
                        context: None,
                        offset: None,
                    });
                }
                anchors.clear();
                continue;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::Alias { anchor } => match anchors.get(&anchor) {
                Some(&(id, _)) => (Ref { id, span }, None),
                None => return Err(YamlError::value(format!("found undefined alias `{anchor}`"), span)),
            },
            Event::Scalar { anchor, tag, value, plain_implicit, .. } => {
                // PyYAML resolves a plain untagged scalar, and any scalar tagged `!`.
                let tag = match tag {
                    Some(tag) if tag != "!" => tag,
                    Some(_) => resolve::resolve_plain(&value).to_string(),
                    None if plain_implicit => resolve::resolve_plain(&value).to_string(),
                    None => resolve::STR.to_string(),
                };
                nodes.push(RawNode { tag, content: Content::Scalar(value) });
                (Ref { id: nodes.len() - 1, span }, anchor)
            }
            Event::SequenceStart { anchor, tag } | Event::MappingStart { anchor, tag } => {
                let (default, content) = if is_map {
                    (resolve::MAP, Content::Map(Vec::new()))
                } else {
                    (resolve::SEQ, Content::Seq(Vec::new()))
                };
                let tag = tag.filter(|t| t != "!").unwrap_or_else(|| default.to_string());
                nodes.push(RawNode { tag, content });
                let id = nodes.len() - 1;
                if let Some(anchor) = anchor {
                    register_anchor(&mut anchors, anchor, id, span)?;
                }
                stack.push((id, span, None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (id, start, _) = stack.pop().expect("the parser balances collections");
                (Ref { id, span: start }, None)
            }
        };
        if let Some(anchor) = anchor {
            register_anchor(&mut anchors, anchor, new.id, new.span)?;
        }
        attach(&mut nodes, &mut stack, &mut root, new);
    }
    Ok(Graph { nodes, root })
}

/// PyYAML refuses an anchor name used twice in one document.
fn register_anchor(
    anchors: &mut HashMap<String, (usize, Span)>,
    anchor: String,
    id: usize,
    span: Span,
) -> Result<(), YamlError> {
    if let Some((_, first)) = anchors.get(&anchor) {
        return Err(YamlError {
            stage: Stage::Value,
            problem: format!("found duplicate anchor `{anchor}`"),
            span: Some(span),
            context: Some(("first occurrence".to_string(), *first)),
            offset: None,
        });
    }
    anchors.insert(anchor, (id, span));
    Ok(())
}

fn attach(nodes: &mut [RawNode], stack: &mut [(usize, Span, Option<Ref>)], root: &mut Option<Ref>, new: Ref) {
    let Some((parent, _, pending_key)) = stack.last_mut() else {
        *root = Some(new);
        return;
    };
    match &mut nodes[*parent].content {
        Content::Seq(items) => items.push(new),
        Content::Map(entries) => match pending_key.take() {
            None => *pending_key = Some(new),
            Some(key) => entries.push(Entry { key, value: new, merged: false }),
        },
        Content::Scalar(_) => unreachable!("a scalar is never open"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> YamlValue {
        load(text).unwrap().root.unwrap().value
    }

    fn map(entries: &[(&str, YamlValue)]) -> Vec<(String, YamlValue)> {
        entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn entries(value: YamlValue) -> Vec<(String, YamlValue)> {
        let YamlValue::Map(entries) = value else { panic!("{value:?}") };
        entries
            .into_iter()
            .map(|(k, v)| match k.value {
                YamlValue::Str(s) => (s, v.value),
                other => (format!("{other:?}"), v.value),
            })
            .collect()
    }

    #[test]
    fn a_flow_mapping_may_close_at_its_keys_indent() {
        let text = "example_model_input: {\n  \"prompt\": \"a cat\",\n  \"steps\": 30\n}\nport: 8080\n";
        let root = entries(value(text));
        assert_eq!(root[1], ("port".to_string(), YamlValue::Int(8080)));
        let YamlValue::Map(input) = &root[0].1 else { panic!() };
        assert_eq!(input[1].1.value, YamlValue::Int(30));
    }

    #[test]
    fn merge_keys_come_first_and_own_keys_win() {
        let text = "base: &b {a: 1, b: 2}\nother: &o {b: 3, c: 4}\nx:\n  c: 5\n  <<: [*b, *o]\n";
        let root = entries(value(text));
        let x = entries(root[2].1.clone());
        // PyYAML: the merged maps go in last-first (b, c from *o, then a, b from *b),
        // so *b wins over *o, and the own `c` wins over both.
        assert_eq!(x, map(&[("b", YamlValue::Int(2)), ("c", YamlValue::Int(5)), ("a", YamlValue::Int(1))]));
    }

    #[test]
    fn duplicate_keys_keep_the_first_place_and_the_last_value() {
        let document = load("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(entries(document.root.unwrap().value), map(&[("a", YamlValue::Int(3)), ("b", YamlValue::Int(2))]));
        assert_eq!(document.duplicate_keys[0].first, Span { line: 1, col: 1 });
        assert_eq!(document.duplicate_keys[0].repeated, Span { line: 3, col: 1 });
        let YamlValue::Map(numbers) = value("1: a\ntrue: b\n1.0: c\n") else { panic!() };
        assert_eq!(numbers.len(), 1);
        assert_eq!(
            (numbers[0].0.value.clone(), numbers[0].1.value.clone()),
            (YamlValue::Int(1), YamlValue::Str("c".into()))
        );
    }

    #[test]
    fn errors_are_refused_with_positions() {
        let err = load("a: *nope\n").unwrap_err();
        assert_eq!((err.stage, err.span), (Stage::Value, Some(Span { line: 1, col: 4 })));
        let err = load("a:\n  b: 1\n c: 2\n").unwrap_err();
        assert_eq!(err.stage, Stage::Syntax);
        assert_eq!(err.span.unwrap().line, 3);
        assert!(load("[a]: 1\n").is_err());
        assert!(load("a: !!python/name:os.system x\n").is_err());
        assert!(load("a: 1\n---\nb: 2\n").is_err());
        assert!(load("a: &x [*x]\n").is_err());
        assert!(load("a: =\n").is_err());
        assert!(load("a: [!!str, b]\n").is_err());
    }

    #[test]
    fn a_block_scalar_may_end_the_file_without_a_line_break() {
        assert_eq!(value("k: |\n  x"), value("k: |-\n  x\n"));
        assert_eq!(value("k: >+\n  x\n  y"), value("k: \"x y\"\n"));
        let YamlValue::Map(root) = value("a: [? ]\nb: 1\n") else { panic!() };
        let YamlValue::Seq(items) = &root[0].1.value else { panic!() };
        let YamlValue::Map(pair) = &items[0].value else { panic!() };
        assert_eq!((&pair[0].0.value, &pair[0].1.value), (&YamlValue::Null, &YamlValue::Null));
        assert_eq!(pair[0].0.span, Span { line: 1, col: 6 });
    }

    #[test]
    fn empty_stream_is_none() {
        assert_eq!(load("# nothing\n").unwrap().root, None);
        assert_eq!(value("---\n"), YamlValue::Null);
    }
}
