//! TOML text → [`Node`] tree, keeping the position of every key and value.

use super::diagnostics::Diagnostic;
use super::tree::{Key, LineIndex, Node, Span, Value};
use std::path::Path;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Parses TOML; a syntax error becomes a diagnostic with its line and column.
pub fn parse(file: &Path, text: &str) -> Result<Node, Diagnostic> {
    let index = LineIndex::new(text);
    let table = DeTable::parse(text).map_err(|err| {
        let span = err.span().map(|range| index.span_at(text, range.start)).unwrap_or_default();
        Diagnostic::error(file, Some(span), format!("invalid TOML: {}", err.message().trim()))
            .with_hint("check the quoting and brackets on this line (TOML strings need double quotes)")
    })?;
    let span = Span { line: 1, col: 1 };
    Ok(Node::new(convert_table(table.get_ref(), &index, text), span))
}

fn convert_table(table: &DeTable<'_>, index: &LineIndex, text: &str) -> Value {
    Value::Map(
        table
            .iter()
            .map(|(key, value)| {
                let key = Key { name: key.get_ref().to_string(), span: index.span_at(text, key.span().start) };
                (key, convert(value, index, text))
            })
            .collect(),
    )
}

fn convert(value: &Spanned<DeValue<'_>>, index: &LineIndex, text: &str) -> Node {
    let span = index.span_at(text, value.span().start);
    let converted = match value.get_ref() {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let digits = digits.trim_start_matches("0x").trim_start_matches("0o").trim_start_matches("0b");
            match i64::from_str_radix(digits, i.radix()) {
                Ok(n) => Value::Int(n),
                Err(_) => Value::Str(i.as_str().to_string()),
            }
        }
        DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
            Ok(x) => Value::Float(x),
            Err(_) => Value::Str(f.as_str().to_string()),
        },
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Str(d.to_string()),
        DeValue::Array(items) => Value::Seq(items.iter().map(|item| convert(item, index, text)).collect()),
        DeValue::Table(table) => convert_table(table, index, text),
    };
    Node::new(converted, span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_nested_values() {
        let text = "[cerebrium.deployment]\nname = \"app\"\nport = 8_000\n";
        let node = parse(Path::new("c.toml"), text).unwrap();
        let deployment = node.get("cerebrium").unwrap().get("deployment").unwrap();
        let name = deployment.get("name").unwrap();
        assert_eq!(name.value, Value::Str("app".into()));
        assert_eq!(name.span, Span { line: 2, col: 8 });
        assert_eq!(deployment.get("port").unwrap().value, Value::Int(8000));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse(Path::new("c.toml"), "[a]\nname = app\n").unwrap_err();
        assert_eq!(err.span.unwrap().line, 2);
        assert!(err.message.starts_with("invalid TOML"), "{}", err.message);
    }
}
