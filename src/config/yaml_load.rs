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
//! 3. **construct**: `SafeConstructor`'s rules: merge keys `<<` (merged entries
//!    come first, the mapping's own entries override them), duplicate keys keep the
//!    first key's place and the last value, keys compare as Python values do
//!    (`1`, `1.0` and `true` are one key), lists and mappings cannot be keys,
//!    unknown tags are errors, and a stream must hold at most one document.
//!
//! libyaml differs from PyYAML's own scanner about tabs and about `:` before a
//! flow indicator; [`yaml_quirks`] makes those cases go PyYAML's way.
//! One difference is deliberate: a node that contains itself through an alias
//! is an error here, since a tree cannot hold it (PyYAML builds a cyclic object).
//!
//! `tests/yaml_pyyaml.rs` checks all of this against PyYAML itself.

use super::libyaml::{self, Event, Mark};
use super::tree::{LineIndex, Span};
use super::yaml_quirks;
use super::yaml_resolve::{self as resolve, Int, Timestamp};
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
    fn value(problem: impl Into<String>, span: Span) -> Self {
        YamlError { stage: Stage::Value, problem: problem.into(), span: Some(span), context: None, offset: None }
    }
}

fn span_of(mark: Mark) -> Span {
    Span { line: mark.line + 1, col: mark.column + 1 }
}

/// Loads the single document of `text` as `yaml.safe_load(text)` does.
pub fn load(text: &str) -> Result<Document, YamlError> {
    let graph = compose_as_pyyaml(text)?;
    let Some(root) = graph.root else {
        return Ok(Document { root: None, duplicate_keys: Vec::new() });
    };
    let active = vec![false; graph.nodes.len()];
    let mut constructor = Constructor { graph, active, cycles: 0, duplicate_keys: Vec::new(), budget: NODE_BUDGET };
    let root = constructor.construct(root)?;
    if constructor.cycles > 0 {
        if let Some(span) = find_cycle(&root) {
            return Err(YamlError::value(
                "this node contains itself through an alias, which a config cannot hold",
                span,
            ));
        }
    }
    Ok(Document { root: Some(root), duplicate_keys: constructor.duplicate_keys })
}

/// Aliases copy what they name, so a few lines can ask for billions of nodes;
/// no config comes near this.
const NODE_BUDGET: usize = 1_000_000;

/// A reference to a node, with the position of the reference (an alias's own position).
#[derive(Debug, Clone, Copy)]
struct Ref {
    id: usize,
    span: Span,
}

#[derive(Debug)]
enum Content {
    Scalar(String),
    Seq(Vec<Ref>),
    Map(Vec<Entry>),
}

#[derive(Debug)]
struct RawNode {
    tag: String,
    content: Content,
}

impl RawNode {
    fn kind(&self) -> &'static str {
        match self.content {
            Content::Scalar(_) => "a scalar",
            Content::Seq(_) => "a sequence",
            Content::Map(_) => "a mapping",
        }
    }
}

struct Graph {
    nodes: Vec<RawNode>,
    root: Option<Ref>,
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

/// A mapping entry; `merged` when a merge key brought it in.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Ref,
    value: Ref,
    merged: bool,
}

/// Stands for a collection met again while it is being built; PyYAML would
/// build a cyclic object. It is an error only if it survives into the result.
const CYCLE: &str = "\u{0}imgbake: cyclic alias\u{0}";

struct Constructor {
    /// PyYAML's constructor edits the node graph (merge keys are flattened in
    /// place, `=` keys become strings); so does this one, in the same order.
    graph: Graph,
    /// Nodes being constructed: meeting one again means it contains itself.
    active: Vec<bool>,
    cycles: usize,
    duplicate_keys: Vec<DuplicateKey>,
    budget: usize,
}

impl Constructor {
    fn node(&self, r: Ref) -> &RawNode {
        &self.graph.nodes[r.id]
    }

    /// `construct_object` with SafeConstructor's table of tags.
    fn construct(&mut self, r: Ref) -> Result<Yaml, YamlError> {
        if self.active[r.id] {
            self.cycles += 1;
            return Ok(Yaml { value: YamlValue::Str(CYCLE.to_string()), span: r.span });
        }
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| YamlError::value(format!("aliases expand to more than {NODE_BUDGET} values"), r.span))?;
        self.active[r.id] = true;
        let tag = self.node(r).tag.clone();
        let value = self.construct_tagged(r, &tag);
        self.active[r.id] = false;
        Ok(Yaml { value: value?, span: r.span })
    }

    fn construct_tagged(&mut self, r: Ref, tag: &str) -> Result<YamlValue, YamlError> {
        let span = r.span;
        let at = |message: String| YamlError::value(message, span);
        Ok(match tag {
            resolve::NULL => {
                self.scalar(r)?;
                YamlValue::Null
            }
            resolve::BOOL => YamlValue::Bool(resolve::construct_bool(&self.scalar(r)?).map_err(at)?),
            resolve::INT => match resolve::construct_int(&self.scalar(r)?).map_err(at)? {
                Int::Small(i) => YamlValue::Int(i),
                Int::Big(digits) => YamlValue::BigInt(digits),
            },
            resolve::FLOAT => YamlValue::Float(resolve::construct_float(&self.scalar(r)?).map_err(at)?),
            resolve::BINARY => YamlValue::Bytes(resolve::construct_binary(&self.scalar(r)?).map_err(at)?),
            resolve::TIMESTAMP => {
                // PyYAML matches the node's own text, which a mapping does not have.
                self.scalar(r)?;
                let Content::Scalar(text) = &self.node(r).content else {
                    return Err(at("a timestamp must be a scalar".to_string()));
                };
                YamlValue::Timestamp(resolve::construct_timestamp(text).map_err(at)?)
            }
            resolve::STR => YamlValue::Str(self.scalar(r)?),
            resolve::SEQ => match &self.node(r).content {
                Content::Seq(items) => {
                    let items = items.clone();
                    YamlValue::Seq(items.into_iter().map(|item| self.construct(item)).collect::<Result<_, _>>()?)
                }
                _ => return Err(at(format!("expected a sequence node, but found {}", self.node(r).kind()))),
            },
            resolve::MAP => YamlValue::Map(self.mapping(r)?),
            resolve::SET => YamlValue::Set(self.mapping(r)?.into_iter().map(|(key, _)| key).collect()),
            resolve::OMAP | resolve::PAIRS => {
                let Content::Seq(items) = &self.node(r).content else {
                    return Err(at(format!("expected a sequence, but found {}", self.node(r).kind())));
                };
                let mut pairs = Vec::new();
                for item in items.clone() {
                    let entry = match &self.node(item).content {
                        Content::Map(entries) if entries.len() == 1 => entries[0],
                        Content::Map(entries) => {
                            return Err(YamlError::value(
                                format!("expected a single mapping item, but found {} items", entries.len()),
                                item.span,
                            ))
                        }
                        _ => return Err(YamlError::value("expected a mapping of length 1", item.span)),
                    };
                    let key = self.construct(entry.key)?;
                    let value = self.construct(entry.value)?;
                    pairs.push(Yaml { value: YamlValue::Seq(vec![key, value]), span: item.span });
                }
                YamlValue::Seq(pairs)
            }
            other => return Err(at(format!("could not determine a constructor for the tag `{other}`"))),
        })
    }

    /// `SafeConstructor.construct_scalar`: a scalar's text; a mapping stands for
    /// the value of its `=` key.
    fn scalar(&self, r: Ref) -> Result<String, YamlError> {
        let node = self.node(r);
        match &node.content {
            Content::Scalar(text) => return Ok(text.clone()),
            Content::Map(entries) => {
                if let Some(entry) = entries.iter().find(|e| self.node(e.key).tag == resolve::VALUE) {
                    return self.scalar(entry.value);
                }
            }
            Content::Seq(_) => {}
        }
        Err(YamlError::value(format!("expected a scalar node, but found {}", node.kind()), r.span))
    }

    fn entries(&mut self, id: usize) -> &mut Vec<Entry> {
        match &mut self.graph.nodes[id].content {
            Content::Map(entries) => entries,
            _ => unreachable!("only mappings are flattened"),
        }
    }

    /// `flatten_mapping`, edits included: merge keys are replaced by what they
    /// merge (placed first; of several merged mappings the first one wins) and
    /// `=` keys become strings. A mapping that merges itself loses its merge
    /// key before it is read, as in PyYAML.
    fn flatten(&mut self, r: Ref, depth: usize) -> Result<(), YamlError> {
        if depth > 200 {
            return Err(YamlError::value("merge keys nest too deep", r.span));
        }
        let mut merge: Vec<Entry> = Vec::new();
        let mut index = 0;
        while index < self.entries(r.id).len() {
            let Entry { key, value, .. } = self.entries(r.id)[index];
            match self.node(key).tag.as_str() {
                resolve::MERGE => {
                    self.entries(r.id).remove(index);
                    match &self.node(value).content {
                        Content::Map(_) => {
                            self.flatten(value, depth + 1)?;
                            merge.extend(self.entries(value.id).iter().map(|e| Entry { merged: true, ..*e }));
                        }
                        Content::Seq(items) => {
                            let mut submerge = Vec::new();
                            for item in items.clone() {
                                if !matches!(self.node(item).content, Content::Map(_)) {
                                    return Err(YamlError::value(
                                        format!("expected a mapping for merging, but found {}", self.node(item).kind()),
                                        item.span,
                                    ));
                                }
                                self.flatten(item, depth + 1)?;
                                submerge.push(self.entries(item.id).clone());
                            }
                            for entries in submerge.into_iter().rev() {
                                merge.extend(entries.into_iter().map(|e| Entry { merged: true, ..e }));
                            }
                        }
                        Content::Scalar(_) => {
                            return Err(YamlError::value(
                                "expected a mapping or list of mappings for merging, but found a scalar",
                                value.span,
                            ))
                        }
                    }
                }
                resolve::VALUE => {
                    self.graph.nodes[key.id].tag = resolve::STR.to_string();
                    index += 1;
                }
                _ => index += 1,
            }
        }
        if !merge.is_empty() {
            let own = std::mem::take(self.entries(r.id));
            merge.extend(own);
            *self.entries(r.id) = merge;
        }
        Ok(())
    }

    /// `construct_mapping`: later entries replace earlier equal keys in place.
    fn mapping(&mut self, r: Ref) -> Result<Vec<(Yaml, Yaml)>, YamlError> {
        if !matches!(self.node(r).content, Content::Map(_)) {
            return Err(YamlError::value(
                format!("expected a mapping node, but found {}", self.node(r).kind()),
                r.span,
            ));
        }
        self.flatten(r, 0)?;
        let mut entries: Vec<(Yaml, Yaml, bool)> = Vec::new();
        for Entry { key: key_ref, value: value_ref, merged } in self.entries(r.id).clone() {
            let key = self.construct(key_ref)?;
            if !is_hashable(&key.value) || key.value == YamlValue::Str(CYCLE.to_string()) {
                return Err(YamlError {
                    stage: Stage::Value,
                    problem: format!("found unhashable key ({} cannot be a key)", type_word(&key.value)),
                    span: Some(key.span),
                    context: Some(("while constructing a mapping".to_string(), r.span)),
                    offset: None,
                });
            }
            let value = self.construct(value_ref)?;
            match entries.iter_mut().find(|(k, _, _)| python_eq(&k.value, &key.value)) {
                Some(entry) => {
                    // Overriding a merged key is what merging is for; repeating one's own is a slip.
                    if !entry.2 && !merged {
                        self.duplicate_keys.push(DuplicateKey {
                            key: entry.0.clone(),
                            first: entry.0.span,
                            repeated: key.span,
                        });
                    }
                    entry.1 = value;
                }
                None => entries.push((key, value, merged)),
            }
        }
        Ok(entries.into_iter().map(|(k, v, _)| (k, v)).collect())
    }
}

/// The position of a [`CYCLE`] left in the result, if any.
fn find_cycle(yaml: &Yaml) -> Option<Span> {
    match &yaml.value {
        YamlValue::Str(s) if s == CYCLE => Some(yaml.span),
        YamlValue::Seq(items) | YamlValue::Set(items) => items.iter().find_map(find_cycle),
        YamlValue::Map(entries) => entries.iter().find_map(|(k, v)| find_cycle(k).or_else(|| find_cycle(v))),
        _ => None,
    }
}

fn is_hashable(value: &YamlValue) -> bool {
    !matches!(value, YamlValue::Seq(_) | YamlValue::Set(_) | YamlValue::Map(_))
}

fn type_word(value: &YamlValue) -> &'static str {
    match value {
        YamlValue::Seq(_) => "a list",
        YamlValue::Set(_) => "a set",
        YamlValue::Map(_) => "a mapping",
        _ => "a scalar",
    }
}

/// Python's `==` between two hashable values: `True == 1 == 1.0`, `.nan` is one
/// object in PyYAML so it equals itself as a key, a date is never a datetime.
fn python_eq(a: &YamlValue, b: &YamlValue) -> bool {
    use YamlValue::*;
    let integer = |v: &YamlValue| match v {
        Bool(b) => Some(*b as i64),
        Int(i) => Some(*i),
        _ => None,
    };
    match (a, b) {
        (Null, Null) => true,
        (Str(x), Str(y)) => x == y,
        (Bytes(x), Bytes(y)) => x == y,
        (Timestamp(x), Timestamp(y)) => x.python_eq(y),
        (BigInt(x), BigInt(y)) => x == y,
        (Float(x), Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Float(f), other) | (other, Float(f)) => {
            // Exact, as Python compares an int with a float.
            integer(other).is_some_and(|i| f.fract() == 0.0 && f.abs() < 9.2e18 && *f as i64 == i)
        }
        _ => matches!((integer(a), integer(b)), (Some(x), Some(y)) if x == y),
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
