//! YAML for the hand-off files, read by PyYAML (Truss) and by Kubernetes
//! tools: block style, sequences at their key's indent (kubectl's style),
//! and a string written plain only when every YAML 1.1 reader takes it for a
//! string. serde_yaml-style emitters quote by the YAML 1.2 core schema, so
//! an env value `on`, `no` or `1_000` came back from PyYAML as a bool or an
//! int; here anything not plainly a word or a path is double-quoted (JSON
//! string syntax, which YAML's double-quoted style accepts).
//!
//! The documents are typed structs serialized through `serde_json::Value`
//! (maps keep field order).

use serde::Serialize;
use serde_json::Value;

/// `document` as YAML (one document, no `---`).
pub fn to_yaml(document: &impl Serialize) -> String {
    let value = serde_json::to_value(document).expect("the document serializes");
    let mut out = String::new();
    match &value {
        Value::Object(map) if !map.is_empty() => mapping(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => sequence(items, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn mapping(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string(key));
        out.push(':');
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(inner, indent + 2, out);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                sequence(items, indent, out);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn sequence(items: &[Value], indent: usize, out: &mut String) {
    let dash = format!("{}- ", " ".repeat(indent));
    for item in items {
        match item {
            Value::Object(inner) if !inner.is_empty() => {
                // The first key goes on the dash's line.
                let mut nested = String::new();
                mapping(inner, indent + 2, &mut nested);
                out.push_str(&dash);
                out.push_str(&nested[indent + 2..]);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push_str(dash.trim_end());
                out.push('\n');
                sequence(inner, indent + 2, out);
            }
            other => {
                out.push_str(&dash);
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Object(_) => "{}".to_string(),
        Value::Array(_) => "[]".to_string(),
    }
}

/// YAML 1.1 words that resolve to a bool or null (any case PyYAML accepts).
const RESERVED: [&str; 12] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "=", "<<"];

/// Plain when it starts with a letter, `_` or `/`, holds only
/// `[A-Za-z0-9_./@:+=-]`, does not end with `:` and is no reserved word;
/// else double-quoted.
fn string(text: &str) -> String {
    let first_ok = text.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/');
    let body_ok = text.chars().all(|c| c.is_ascii_alphanumeric() || "_./@:+=-".contains(c));
    let reserved = RESERVED.iter().any(|word| word.eq_ignore_ascii_case(text));
    if first_ok && body_ok && !text.ends_with(':') && !reserved {
        text.to_string()
    } else {
        serde_json::to_string(text).expect("a string serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// PyYAML reads these as bools, ints, floats or null when plain.
    #[test]
    fn yaml_1_1_lookalike_strings_are_quoted() {
        for value in [
            "on", "Off", "YES", "no", "y", "N", "true", "null", "~", "1", "0x1f", "0o17", "1_000", "1e3", ".inf",
            "1:20", "",
        ] {
            assert_eq!(string(value), format!("\"{value}\""), "{value}");
        }
        for value in ["uvicorn", "/health", "nvidia.com/gpu", "a@sha256:5e", "IfNotPresent", "HF_TOKEN"] {
            assert_eq!(string(value), value);
        }
        assert_eq!(string("python3 -m 'app'"), r#""python3 -m 'app'""#);
        assert_eq!(string("key: value"), r#""key: value""#);
    }

    #[test]
    fn blocks_nest_with_sequences_at_their_key_indent() {
        #[derive(Serialize)]
        struct Port {
            name: &'static str,
            port: u16,
        }
        #[derive(Serialize)]
        struct Document {
            name: &'static str,
            labels: BTreeMap<&'static str, &'static str>,
            ports: Vec<Port>,
            args: Vec<&'static str>,
            empty: BTreeMap<&'static str, &'static str>,
            none: Option<u8>,
        }
        let document = Document {
            name: "app",
            labels: BTreeMap::from([("app.kubernetes.io/name", "app")]),
            ports: vec![Port { name: "http", port: 8000 }, Port { name: "metrics", port: 9000 }],
            args: vec!["--port", "8000"],
            empty: BTreeMap::new(),
            none: None,
        };
        assert_eq!(
            to_yaml(&document),
            "name: app\nlabels:\n  app.kubernetes.io/name: app\nports:\n- name: http\n  port: 8000\n- name: metrics\n  port: 9000\nargs:\n- \"--port\"\n- \"8000\"\nempty: {}\nnone: null\n"
        );
    }
}
