//! Truss `config.yaml` text → the shared config [`Node`] tree, with positions.
//!
//! The YAML is loaded by [`yaml_load`](super::yaml_load), which accepts and
//! means exactly what PyYAML's `yaml.safe_load` does (Truss's own reader). Its
//! Python-typed values map onto the tree like this:
//! - null, booleans, ints, floats and strings as they are (`yes`/`on` are
//!   booleans, `0x1F` is 31, `1e3` is the string "1e3", as in YAML 1.1);
//! - a timestamp (`2024-01-01`) and `!!binary` become the string Python's
//!   `str()` gives them, an int beyond 64 bits becomes a number, a `!!set` a list;
//! - a map key that is not a string is named as Python's `str()` names it
//!   (`on:` is the key `True`).
//!
//! A repeated key keeps its last value, as in PyYAML, and gets a warning.
//! An empty file is an empty mapping (Truss reads `safe_load(...) or {}`).

use super::diagnostics::Diagnostic;
use super::tree::{Key, Node, Span, Value};
use super::yaml_load::{self, Stage, Yaml, YamlError, YamlValue};
use super::yaml_resolve::Timestamp;
use std::path::Path;

/// The tree of `text`, with warnings (repeated keys), or the reason it is not valid YAML.
pub fn parse(file: &Path, text: &str) -> Result<(Node, Vec<Diagnostic>), Diagnostic> {
    let document = yaml_load::load(text).map_err(|err| diagnostic(file, text, &err))?;
    let mut warnings: Vec<Diagnostic> = Vec::new();
    for duplicate in &document.duplicate_keys {
        let warning = Diagnostic::warning(
            file,
            Some(duplicate.repeated),
            format!(
                "key `{}` is given again here (first at {}); the last value is used, as PyYAML does",
                python_str(&duplicate.key.value),
                duplicate.first
            ),
        )
        .with_hint("remove one of the two entries");
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    let root = match document.root {
        Some(root) if root.value != YamlValue::Null => to_node(root),
        _ => Node::new(Value::Map(Vec::new()), Span { line: 1, col: 1 }),
    };
    Ok((root, warnings))
}

/// libyaml puts the end of a text that does not end in a newline on the line
/// after it; PyYAML (and an editor) put it at the end of the last line.
fn within(text: &str, span: Span) -> Span {
    let lines = yaml_lines(text);
    if span.line <= lines.len() {
        return span;
    }
    Span { line: lines.len(), col: lines.last().map_or(0, |line| line.chars().count()) + 1 }
}

/// The lines of `text` as YAML counts them: `\r\n`, `\r`, `\n`, NEL, LS and
/// PS each end a line (libyaml's line numbers follow these).
pub fn yaml_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}') {
            lines.push(&text[start..at]);
            start = at + c.len_utf8();
            if c == '\r' && chars.peek().is_some_and(|(_, next)| *next == '\n') {
                chars.next();
                start += 1;
            }
        }
    }
    lines.push(&text[start..]);
    lines
}

fn diagnostic(file: &Path, text: &str, err: &YamlError) -> Diagnostic {
    let mut message = format!("invalid YAML: {}", err.problem);
    if let Some((context, span)) = &err.context {
        let span = within(text, *span);
        let joint = if context.starts_with("while") { " that starts" } else { "" };
        message.push_str(&format!(" ({context}{joint} at {span})"));
    }
    let hint = match err.stage {
        Stage::Syntax if err.problem.contains("tab") || err.problem.contains("cannot start any token") => {
            "indent with spaces: YAML does not allow tabs for indentation"
        }
        Stage::Syntax => "check the indentation (nested keys need more spaces than their parent) and that every bracket and quote is closed",
        Stage::Value if err.problem.contains("tag") => {
            "Truss reads config.yaml with yaml.safe_load, which knows only the standard tags (!!str, !!int, !!float, !!bool, !!null, !!timestamp, !!binary, !!seq, !!map, !!set, !!omap, !!pairs); quote the value to keep it as text"
        }
        Stage::Value if err.problem.contains("alias") || err.problem.contains("anchor") => {
            "an alias `*name` needs one anchor `&name` earlier in the file"
        }
        Stage::Value => "quote the value to keep it as text",
    };
    Diagnostic::error(file, err.span.map(|span| within(text, span)), message).with_hint(hint)
}

fn to_node(yaml: Yaml) -> Node {
    let value = match yaml.value {
        YamlValue::Null => Value::Null,
        YamlValue::Bool(b) => Value::Bool(b),
        YamlValue::Int(i) => Value::Int(i),
        YamlValue::BigInt(digits) => Value::Float(digits.parse().unwrap_or(f64::NAN)),
        YamlValue::Float(f) => Value::Float(f),
        YamlValue::Str(s) => Value::Str(s),
        scalar @ (YamlValue::Bytes(_) | YamlValue::Timestamp(_)) => Value::Str(python_str(&scalar)),
        YamlValue::Seq(items) | YamlValue::Set(items) => Value::Seq(items.into_iter().map(to_node).collect()),
        YamlValue::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(key, value)| (Key { name: python_str(&key.value), span: key.span }, to_node(value)))
                .collect(),
        ),
    };
    Node::new(value, yaml.span)
}

/// Python's `str()` of a scalar (what Truss would see if it turned the value into text).
fn python_str(value: &YamlValue) -> String {
    match value {
        YamlValue::Null => "None".to_string(),
        YamlValue::Bool(true) => "True".to_string(),
        YamlValue::Bool(false) => "False".to_string(),
        YamlValue::Int(i) => i.to_string(),
        YamlValue::BigInt(digits) => digits.clone(),
        YamlValue::Float(f) => python_float_repr(*f),
        YamlValue::Str(s) => s.clone(),
        YamlValue::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        YamlValue::Timestamp(ts) => timestamp_str(ts),
        YamlValue::Seq(_) | YamlValue::Set(_) | YamlValue::Map(_) => String::new(),
    }
}

/// `repr(float)`: the shortest round-trip digits, in fixed notation for
/// exponents from -4 to 15 and in scientific notation otherwise.
fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        let text = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{text}")
    } else {
        let rest = if digits.len() > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        format!("{sign}{}{rest}e{}{:02}", &digits[..1], if exponent < 0 { '-' } else { '+' }, exponent.abs())
    }
}

/// `str(datetime.date)` / `str(datetime.datetime)`.
fn timestamp_str(ts: &Timestamp) -> String {
    let date = format!("{:04}-{:02}-{:02}", ts.year, ts.month, ts.day);
    let Some(time) = ts.time else { return date };
    let mut text = format!("{date} {:02}:{:02}:{:02}", time.hour, time.minute, time.second);
    if time.microsecond > 0 {
        text.push_str(&format!(".{:06}", time.microsecond));
    }
    if let Some(offset) = time.offset_minutes {
        let sign = if offset < 0 { '-' } else { '+' };
        text.push_str(&format!("{sign}{:02}:{:02}", offset.abs() / 60, offset.abs() % 60));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        parse(Path::new("config.yaml"), text).unwrap().0
    }

    #[test]
    fn an_error_at_the_end_of_a_file_without_newline_points_at_its_last_line() {
        // Found by fuzzing (truss_yaml): libyaml said 5:1 for a 4-line file;
        // PyYAML says line 4, column 9.
        let text = "model_name: x\nweights:\n  - a: x\nmodece:l";
        let error = parse(Path::new("config.yaml"), text).unwrap_err();
        assert_eq!(error.span, Some(Span { line: 4, col: 9 }), "{error}");
        let error = parse(Path::new("config.yaml"), "[a, b").unwrap_err();
        assert_eq!(error.span, Some(Span { line: 1, col: 6 }), "{error}");
        assert!(error.message.contains("starts at 1:1"), "{error}");
        // A lone CR ends a line for YAML: line 2 is real, and kept.
        let error = parse(Path::new("config.yaml"), "a: 1\rb: [x").unwrap_err();
        assert_eq!(error.span.map(|s| s.line), Some(2), "{error}");
        assert_eq!(yaml_lines("a\r\nb\rc\nd\u{2028}e"), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn types_plain_scalars_as_yaml_1_1_and_keeps_quoted_strings() {
        let text = "a: 1\nb: \"1\"\nc: yes\nd: py311\ne:\n  - x\n  - 2.5\nf: ~\ng: 1e3\nh: 2024-01-01\n";
        let node = tree(text);
        assert_eq!(node.get("a").unwrap().value, Value::Int(1));
        assert_eq!(node.get("b").unwrap().value, Value::Str("1".into()));
        assert_eq!(node.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(node.get("d").unwrap().value, Value::Str("py311".into()));
        assert_eq!(node.get("f").unwrap().value, Value::Null);
        assert_eq!(node.get("g").unwrap().value, Value::Str("1e3".into()));
        assert_eq!(node.get("h").unwrap().value, Value::Str("2024-01-01".into()));
        let e = node.get("e").unwrap();
        assert_eq!(e.span, Span { line: 6, col: 3 });
        match &e.value {
            Value::Seq(items) => assert_eq!(items[1].value, Value::Float(2.5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let node = tree("model_name: é\nport: 80\nnamé: {a: 1}\n");
        assert_eq!(node.get("port").unwrap().span, Span { line: 2, col: 7 });
        assert_eq!(node.get("namé").unwrap().span, Span { line: 3, col: 7 });
    }

    #[test]
    fn bad_indentation_is_an_error_with_position() {
        let err = parse(Path::new("config.yaml"), "a:\n  b: 1\n c: 2\n").unwrap_err();
        assert_eq!(err.span.unwrap().line, 3);
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
        assert!(err.hint.is_some());
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_with_a_warning() {
        let (node, warnings) = parse(Path::new("config.yaml"), "a: 1\na: 2\n").unwrap();
        assert_eq!(node.get("a").unwrap().value, Value::Int(2));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].message.contains("key `a` is given again"), "{}", warnings[0].message);
        assert_eq!(warnings[0].span.unwrap().line, 2);
    }

    #[test]
    fn non_string_keys_are_named_as_python_prints_them() {
        let node = tree("on: 1\n1.5: 2\n~: 3\n1e20: 4\n");
        let names: Vec<&str> = node.as_map().unwrap().iter().map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(names, ["True", "1.5", "None", "1e20"]);
        assert_eq!(python_float_repr(1e22), "1e+22");
        assert_eq!(python_float_repr(0.0001), "0.0001");
        assert_eq!(python_float_repr(1e-5), "1e-05");
        assert_eq!(python_float_repr(-2.0), "-2.0");
        assert_eq!(python_float_repr(123456789.125), "123456789.125");
    }

    /// Issue 16, item 4: yaml-rust2 refused this with "invalid indentation"; PyYAML loads it.
    #[test]
    fn a_flow_mapping_may_span_lines_at_its_keys_indentation() {
        let node =
            tree("model_metadata:\n  example_model_input: {\n  \"prompt\": \"a\",\n  \"n\": 1\n  }\n  tags: [a]\n");
        let input = node.get("model_metadata").unwrap().get("example_model_input").unwrap();
        assert_eq!(input.get("n").unwrap().value, Value::Int(1));
        assert_eq!(input.span, Span { line: 2, col: 24 });
    }

    #[test]
    fn empty_file_is_an_empty_mapping() {
        assert_eq!(tree("# only a comment\n").value, Value::Map(Vec::new()));
    }
}
