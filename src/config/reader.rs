//! Typed, position-aware reading of a config tree, with unknown-key warnings.
//!
//! Loaders ask for keys (`reader.string(section, "name")`); every key asked
//! for becomes a known key of that section, so the schema lives in one place:
//! the loader code. When loading ends, [`Reader::finish`] warns about every key
//! in the file that no loader asked for, naming the closest known key, or the
//! section where a known key of that name belongs.

use super::diagnostics::Diagnostics;
use super::suggest;
use super::tree::{Key, Node, Span, Value};

/// How section paths are shown: `[a.b]` for TOML, `a.b` for YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Toml,
    Yaml,
}

impl Syntax {
    fn map_word(self) -> &'static str {
        match self {
            Syntax::Toml => "table",
            Syntax::Yaml => "mapping",
        }
    }
}

/// A handle to a section (a map) of the file; `node` is `None` when the file
/// does not have it.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    id: usize,
    pub node: Option<&'a Node>,
}

struct SectionRecord<'a> {
    path: Vec<String>,
    node: Option<&'a Node>,
    known: Vec<&'static str>,
    /// Free-form sections (dependency tables, env vars) accept any key.
    open: bool,
}

pub struct Reader<'a> {
    pub diags: Diagnostics,
    syntax: Syntax,
    sections: Vec<SectionRecord<'a>>,
}

impl<'a> Reader<'a> {
    pub fn new(diags: Diagnostics, syntax: Syntax) -> Self {
        Reader { diags, syntax, sections: Vec::new() }
    }

    pub fn root(&mut self, node: &'a Node) -> Section<'a> {
        let node = self.expect_map(node, "the file");
        self.register(Vec::new(), node)
    }

    /// The printable path of a key in a section: `[cerebrium.deployment] name`
    /// for TOML, `model_cache[0].revision` for YAML.
    pub fn describe(&self, section: Section<'a>, key: &str) -> String {
        let path = &self.sections[section.id].path;
        match self.syntax {
            Syntax::Toml if path.is_empty() => format!("`{key}`"),
            Syntax::Toml => format!("`{key}` in [{}]", path.join(".")),
            Syntax::Yaml if path.is_empty() => format!("`{key}`"),
            Syntax::Yaml => format!("`{}.{key}`", path.join(".")),
        }
    }

    /// The span to point at for a section (its first key, or the parent's position).
    pub fn span(&self, section: Section<'a>) -> Span {
        section.node.map(|n| n.span).unwrap_or(Span { line: 1, col: 1 })
    }

    pub fn section(&mut self, parent: Section<'a>, key: &'static str) -> Section<'a> {
        let node = self.value(parent, key).and_then(|n| {
            let what = self.describe(parent, key);
            self.expect_map(n, &what)
        });
        let mut path = self.sections[parent.id].path.clone();
        path.push(key.to_string());
        self.register(path, node)
    }

    /// A map that is an item of a list (`model_cache[1]`).
    pub fn item(
        &mut self,
        parent: Section<'a>,
        key: &'static str,
        index: usize,
        node: &'a Node,
    ) -> Option<Section<'a>> {
        let what = format!("{} item {}", self.describe(parent, key), index + 1);
        let node = self.expect_map(node, &what)?;
        let mut path = self.sections[parent.id].path.clone();
        path.push(format!("{key}[{index}]"));
        Some(self.register(path, Some(node)))
    }

    /// Accept any key in this section (dependency tables, environment variables).
    pub fn open(&mut self, section: Section<'a>) {
        self.sections[section.id].open = true;
    }

    pub fn entries(&self, section: Section<'a>) -> &'a [(Key, Node)] {
        section.node.and_then(Node::as_map).unwrap_or(&[])
    }

    pub fn value(&mut self, section: Section<'a>, key: &'static str) -> Option<&'a Node> {
        let record = &mut self.sections[section.id];
        if !record.known.contains(&key) {
            record.known.push(key);
        }
        section.node?.get(key)
    }

    /// Like [`Reader::value`], but a `null` (YAML `key:` with nothing after it) counts as absent.
    fn present(&mut self, section: Section<'a>, key: &'static str) -> Option<&'a Node> {
        self.value(section, key).filter(|n| n.value != Value::Null)
    }

    pub fn string(&mut self, section: Section<'a>, key: &'static str) -> Option<(String, Span)> {
        let node = self.present(section, key)?;
        match &node.value {
            Value::Str(s) => Some((s.clone(), node.span)),
            _ => {
                self.type_error(section, key, node, "a string");
                None
            }
        }
    }

    pub fn bool(&mut self, section: Section<'a>, key: &'static str) -> Option<(bool, Span)> {
        let node = self.present(section, key)?;
        match &node.value {
            Value::Bool(b) => Some((*b, node.span)),
            _ => {
                self.type_error(section, key, node, "true or false");
                None
            }
        }
    }

    pub fn int(&mut self, section: Section<'a>, key: &'static str) -> Option<(i64, Span)> {
        let node = self.present(section, key)?;
        match &node.value {
            Value::Int(i) => Some((*i, node.span)),
            _ => {
                self.type_error(section, key, node, "a whole number");
                None
            }
        }
    }

    /// A number; integers are accepted too (`cpu = 4`).
    pub fn float(&mut self, section: Section<'a>, key: &'static str) -> Option<(f64, Span)> {
        let node = self.present(section, key)?;
        match &node.value {
            Value::Float(f) => Some((*f, node.span)),
            Value::Int(i) => Some((*i as f64, node.span)),
            _ => {
                self.type_error(section, key, node, "a number");
                None
            }
        }
    }

    /// A list of strings.
    pub fn strings(&mut self, section: Section<'a>, key: &'static str) -> Option<Vec<(String, Span)>> {
        let node = self.present(section, key)?;
        self.string_items(section, key, node)
    }

    /// A single string or a list of strings (Truss writes `ignore_patterns: "*.pt"`).
    pub fn string_or_strings(&mut self, section: Section<'a>, key: &'static str) -> Option<Vec<(String, Span)>> {
        let node = self.present(section, key)?;
        match &node.value {
            Value::Str(s) => Some(vec![(s.clone(), node.span)]),
            _ => self.string_items(section, key, node),
        }
    }

    fn string_items(&mut self, section: Section<'a>, key: &'static str, node: &'a Node) -> Option<Vec<(String, Span)>> {
        let Value::Seq(items) = &node.value else {
            self.type_error(section, key, node, "a list of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match &item.value {
                Value::Str(s) => out.push((s.clone(), item.span)),
                _ => {
                    let what = self.describe(section, key);
                    let found = item.type_name(self.syntax.map_word());
                    self.diags
                        .error(item.span, format!("{what} must be a list of strings, but an item is {found}"))
                        .hint = Some("quote each item: [\"a\", \"b\"]".to_string());
                    return None;
                }
            }
        }
        Some(out)
    }

    pub fn type_error(&mut self, section: Section<'a>, key: &str, node: &Node, expected: &str) {
        let what = self.describe(section, key);
        let found = node.type_name(self.syntax.map_word());
        self.diags.error(node.span, format!("{what} must be {expected}, found {found}"));
    }

    fn expect_map(&mut self, node: &'a Node, what: &str) -> Option<&'a Node> {
        if node.as_map().is_some() {
            return Some(node);
        }
        if node.value == Value::Null {
            return None;
        }
        let found = node.type_name(self.syntax.map_word());
        let expected = self.syntax.map_word();
        self.diags.error(node.span, format!("{what} must be a {expected}, found {found}"));
        None
    }

    fn register(&mut self, path: Vec<String>, node: Option<&'a Node>) -> Section<'a> {
        self.sections.push(SectionRecord { path, node, known: Vec::new(), open: false });
        Section { id: self.sections.len() - 1, node }
    }

    /// Warns about every key no loader asked for, and returns the diagnostics.
    pub fn finish(mut self) -> Diagnostics {
        let mut warnings = Vec::new();
        for record in &self.sections {
            if record.open {
                continue;
            }
            let Some(entries) = record.node.and_then(Node::as_map) else {
                continue;
            };
            for (key, value) in entries {
                if record.known.contains(&key.name.as_str()) {
                    continue;
                }
                warnings.push((key.span, self.unknown_key_message(record, key, value)));
            }
        }
        for (span, (message, hint)) in warnings {
            let warning = self.diags.warning(span, message);
            warning.hint = hint;
        }
        self.diags
    }

    fn unknown_key_message(&self, record: &SectionRecord<'a>, key: &Key, value: &Node) -> (String, Option<String>) {
        let is_section = value.as_map().is_some();
        let mut relative = vec![key.name.clone()];
        // Follow `[a.b.c]` chains so the whole misspelt header is compared.
        let mut cursor = value;
        while let Some([(k, v)]) = cursor.as_map() {
            if v.as_map().is_none() {
                break;
            }
            relative.push(k.name.clone());
            cursor = v;
        }
        let full = |parts: &[String]| {
            let mut all = record.path.clone();
            all.extend(parts.iter().cloned());
            all.join(".")
        };
        let shown = match (self.syntax, is_section) {
            (Syntax::Toml, true) => format!("unknown section [{}]", full(&relative)),
            (Syntax::Toml, false) if record.path.is_empty() => {
                format!("unknown key `{}`", key.name)
            }
            (Syntax::Toml, false) => {
                format!("unknown key `{}` in [{}]", key.name, record.path.join("."))
            }
            (Syntax::Yaml, _) => format!("unknown key `{}`", full(std::slice::from_ref(&key.name))),
        };
        let ignored = format!("{shown}; it is ignored");

        // 1. A typo of a key of this section.
        if let Some(close) = suggest::closest(&key.name, record.known.iter().copied()) {
            return (format!("{ignored} (did you mean `{close}`?)"), None);
        }
        // 2. A misspelt or reordered section header below this section.
        if is_section {
            let prefix_len = record.path.len();
            let candidates: Vec<String> = self
                .sections
                .iter()
                .filter(|s| s.path.len() > prefix_len && s.path[..prefix_len] == record.path[..])
                .filter(|s| !s.path.iter().any(|p| p.contains('[')))
                .map(|s| s.path[prefix_len..].join("."))
                .collect();
            let wanted = relative.join(".");
            if let Some(close) = suggest::closest(&wanted, candidates.iter().map(String::as_str)) {
                let target = full(&close.split('.').map(str::to_string).collect::<Vec<_>>());
                let name = match self.syntax {
                    Syntax::Toml => format!("[{target}]"),
                    Syntax::Yaml => format!("`{target}`"),
                };
                return (format!("{ignored} (did you mean {name}?)"), None);
            }
            // 3. A section whose keys belong elsewhere (`[cerebrium.build] use_uv`).
            if let Some(entries) = value.as_map() {
                for (inner, _) in entries {
                    if let Some(home) = self.home_of(&inner.name) {
                        return (
                            format!("{ignored} (`{}` belongs in {home})", inner.name),
                            Some(format!("move `{}` to {home}", inner.name)),
                        );
                    }
                }
            }
            return (ignored, None);
        }
        // 4. A known key of another section.
        if let Some(home) = self.home_of(&key.name) {
            return (format!("{ignored} (`{}` belongs in {home})", key.name), None);
        }
        (ignored, None)
    }

    fn home_of(&self, key: &str) -> Option<String> {
        self.sections.iter().find(|s| s.known.contains(&key) && !s.path.iter().any(|p| p.contains('['))).map(|s| {
            match self.syntax {
                Syntax::Toml => format!("[{}]", s.path.join(".")),
                Syntax::Yaml => format!("`{}`", s.path.join(".")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::toml_tree;
    use std::path::Path;

    fn read(text: &str) -> Diagnostics {
        let file = Path::new("cerebrium.toml");
        let tree = toml_tree::parse(file, text).unwrap();
        let mut reader = Reader::new(Diagnostics::new(file), Syntax::Toml);
        let root = reader.root(&tree);
        let cerebrium = reader.section(root, "cerebrium");
        let deployment = reader.section(cerebrium, "deployment");
        reader.string(deployment, "name");
        reader.bool(deployment, "use_uv");
        let dependencies = reader.section(cerebrium, "dependencies");
        let pip = reader.section(dependencies, "pip");
        reader.open(pip);
        reader.finish()
    }

    fn warnings(diags: &Diagnostics) -> Vec<String> {
        diags.items.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn misspelt_and_reordered_section_is_pointed_at_the_right_one() {
        let diags = read("[cerebrium.deployment]\nname = \"x\"\n\n[cerebrium.pip.dependancies]\ntorch = \"2\"\n");
        assert_eq!(
            warnings(&diags),
            ["warning: cerebrium.toml:4:12: unknown section [cerebrium.pip.dependancies]; it is ignored (did you mean [cerebrium.dependencies.pip]?)"]
        );
    }

    #[test]
    fn key_in_wrong_section_names_its_home() {
        let diags = read("[cerebrium.deployment]\nname = \"x\"\n[cerebrium.build]\nuse_uv = true\n");
        let all = warnings(&diags);
        assert_eq!(all.len(), 1);
        assert!(all[0].contains("unknown section [cerebrium.build]"), "{all:?}");
        assert!(all[0].contains("`use_uv` belongs in [cerebrium.deployment]"), "{all:?}");
    }

    #[test]
    fn typo_of_a_key_is_suggested() {
        let diags = read("[cerebrium.deployment]\nnmae = \"x\"\n");
        assert_eq!(
            warnings(&diags),
            ["warning: cerebrium.toml:2:1: unknown key `nmae` in [cerebrium.deployment]; it is ignored (did you mean `name`?)"]
        );
    }

    #[test]
    fn wrong_type_is_an_error_with_position() {
        let diags = read("[cerebrium.deployment]\nname = 5\n");
        assert_eq!(
            warnings(&diags),
            ["error: cerebrium.toml:2:8: `name` in [cerebrium.deployment] must be a string, found an integer"]
        );
    }
}
