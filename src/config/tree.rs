//! A format-neutral configuration tree that remembers where every value came from.
//!
//! TOML and YAML are both parsed into this one tree, so the loaders for
//! `cerebrium.toml` and Truss `config.yaml` share one set of typed accessors
//! and every error can name the file, line and column of the value at fault.

use std::fmt;

/// A 1-based line and column in the source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A map key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

/// A value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in file order; duplicates are rejected by the parsers.
    Map(Vec<(Key, Node)>),
}

impl Node {
    pub fn new(value: Value, span: Span) -> Self {
        Node { value, span }
    }

    /// The word used for this value's type in error messages ("a string", "a table", ...).
    pub fn type_name(&self, map_word: &str) -> String {
        match &self.value {
            Value::Null => "null".to_string(),
            Value::Bool(_) => "a boolean".to_string(),
            Value::Int(_) => "an integer".to_string(),
            Value::Float(_) => "a number".to_string(),
            Value::Str(_) => "a string".to_string(),
            Value::Seq(_) => "a list".to_string(),
            Value::Map(_) => format!("a {map_word}"),
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }
}

/// Converts byte offsets into line/column positions.
pub struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { line_starts }
    }

    /// Column counts characters, not bytes, so it matches what an editor shows.
    pub fn span_at(&self, text: &str, offset: usize) -> Span {
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let end = offset.min(text.len());
        let col = text.get(start..end).map(|s| s.chars().count()).unwrap_or(0) + 1;
        Span { line: line + 1, col }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_maps_offsets_to_one_based_positions() {
        let text = "a = 1\nbé = 2\n";
        let index = LineIndex::new(text);
        assert_eq!(index.span_at(text, 0), Span { line: 1, col: 1 });
        assert_eq!(index.span_at(text, 6), Span { line: 2, col: 1 });
        // "bé =": the "=" is at byte 10 but column 4, since é is two bytes.
        assert_eq!(index.span_at(text, 10), Span { line: 2, col: 4 });
    }
}
