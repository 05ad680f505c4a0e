//! Node graph → [`Yaml`] values: PyYAML's `SafeConstructor`, ported.
//!
//! Merge keys `<<` (merged entries come first, the mapping's own entries
//! override them, of several merged mappings the first wins), duplicate keys
//! (the first key's place, the last value), keys compared as Python values
//! (`1`, `1.0` and `true` are one key), lists and mappings refused as keys,
//! the standard tags, and unknown tags refused. PyYAML edits the node graph
//! while it constructs (merge keys are flattened in place, `=` keys become
//! strings); this does the same edits in the same order, so that even odd
//! documents (a mapping that merges itself) come out as they do in PyYAML.

use super::tree::Span;
use super::yaml_load::{
    Content, Document, DuplicateKey, Entry, Graph, RawNode, Ref, Stage, Yaml, YamlError, YamlValue,
};
use super::yaml_resolve::{self as resolve, Int};

/// Constructs the document's value (`None` for an empty stream).
pub(super) fn construct(graph: Graph) -> Result<Document, YamlError> {
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
