//! TOML text → [`Node`] tree, keeping the position of every key and value.

use super::diagnostics::Diagnostic;
use super::tree::{Key, LineIndex, Node, Span, Value};
use std::path::Path;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Parses TOML; a syntax error becomes a diagnostic with its line and column.
/// For a bracket or quote that is never closed, the position is where it
/// opened (the parser only knows where it gave up, often lines later), and
/// the parser's message is kept as the cause.
pub fn parse(file: &Path, text: &str) -> Result<Node, Diagnostic> {
    let index = LineIndex::new(text);
    let table = DeTable::parse(text).map_err(|err| {
        let stopped_at = err.span().map(|range| range.start);
        // Some errors come without a position (the parser's recursion limit on
        // a key or value nested too deeply): the first line stands in.
        let span = stopped_at.map(|offset| index.span_at(text, offset)).unwrap_or(Span { line: 1, col: 1 });
        let parser_says = err.message().trim().to_string();
        match unclosed(text).filter(|open| stopped_at.is_none_or(|stop| open.offset <= stop)) {
            Some(open) => Diagnostic::error(
                file,
                Some(index.span_at(text, open.offset)),
                format!("invalid TOML: this {} is never closed", open.kind.name()),
            )
            .with_cause(format!("{parser_says} (the parser stopped at {span})"))
            .with_hint(open.kind.hint()),
            None => Diagnostic::error(file, Some(span), format!("invalid TOML: {parser_says}"))
                .with_hint("check the quoting and brackets on this line (TOML strings need double quotes)"),
        }
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

/// What was left open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opener {
    Array,
    InlineTable,
    Basic,
    Literal,
    MultiLineBasic,
    MultiLineLiteral,
}

impl Opener {
    fn name(self) -> &'static str {
        match self {
            Opener::Array => "`[`",
            Opener::InlineTable => "inline table `{`",
            Opener::Basic => "string `\"`",
            Opener::Literal => "string `'`",
            Opener::MultiLineBasic => "multi-line string `\"\"\"`",
            Opener::MultiLineLiteral => "multi-line string `'''`",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Opener::Array => "close it with `]` (a list can span lines; a table header closes on its own line)",
            Opener::InlineTable => "close it with `}` on the same line",
            Opener::Basic => "close the string with `\"` on the same line (use `\"\"\"` for text over several lines)",
            Opener::Literal => "close the string with `'` on the same line (use `'''` for text over several lines)",
            Opener::MultiLineBasic => "close it with `\"\"\"`",
            Opener::MultiLineLiteral => "close it with `'''`",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unclosed {
    kind: Opener,
    offset: usize,
}

/// The first bracket or quote of `text` that is never closed: a one-line
/// string still open at the end of its line, else the outermost `[` or `{`
/// still open at the end of the file. `None` when everything closes or the
/// brackets do not pair up (then the parser's own position is the better one).
///
/// Hand-written because the toml crate reports only where it gave up, and a
/// full TOML grammar is not needed to pair brackets: it is enough to know
/// strings (with their escapes) and comments, inside which brackets do not count.
fn unclosed(text: &str) -> Option<Unclosed> {
    let bytes = text.as_bytes();
    let mut open: Vec<Unclosed> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            quote @ (b'"' | b'\'') => {
                let multi = bytes[i..].starts_with(&[quote; 3]);
                let kind = match (quote, multi) {
                    (b'"', false) => Opener::Basic,
                    (b'"', true) => Opener::MultiLineBasic,
                    (_, false) => Opener::Literal,
                    (_, true) => Opener::MultiLineLiteral,
                };
                let start = i;
                i += if multi { 3 } else { 1 };
                loop {
                    let Some(&c) = bytes.get(i) else {
                        return Some(Unclosed { kind, offset: start });
                    };
                    if c == b'\\' && quote == b'"' {
                        i += 2;
                    } else if c == b'\n' && !multi {
                        return Some(Unclosed { kind, offset: start });
                    } else if c == quote && !multi {
                        i += 1;
                        break;
                    } else if c == quote && bytes[i..].starts_with(&[quote; 3]) {
                        // `""""` and `"""""` end with one or two quotes of content.
                        let run = bytes[i..].iter().take_while(|&&b| b == quote).count().min(5);
                        i += run;
                        break;
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'[' => open.push(Unclosed { kind: Opener::Array, offset: i }),
            b'{' => open.push(Unclosed { kind: Opener::InlineTable, offset: i }),
            closer @ (b']' | b'}') => {
                let expected = if closer == b']' { Opener::Array } else { Opener::InlineTable };
                match open.pop() {
                    Some(top) if top.kind == expected => {}
                    _ => return None,
                }
            }
            _ => {}
        }
        i += 1;
    }
    open.first().copied()
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
        // Found by fuzzing: a header nested past the parser's recursion limit has no position of its own.
        let deep = format!("[{}]\n", vec!["a"; 200].join("."));
        let err = parse(Path::new("cerebrium.toml"), &deep).unwrap_err();
        assert_eq!(err.span, Some(Span { line: 1, col: 1 }), "{}", err.message);
    }

    #[test]
    fn an_unclosed_bracket_or_quote_is_reported_where_it_opened() {
        let cases = [
            ("[a]\nname = \"x\"\ninclude = [\"./*\",\n\n[b]\nport = 1\n", Opener::Array, (3, 11)),
            ("[a]\nname = \"x\nport = 1\n", Opener::Basic, (2, 8)),
            ("[a]\nname = 'x\nport = 1\n", Opener::Literal, (2, 8)),
            ("[a]\ntext = \"\"\"\nmany\nlines\n", Opener::MultiLineBasic, (2, 8)),
            ("[a]\ntext = '''\nmany\n", Opener::MultiLineLiteral, (2, 8)),
            ("[a]\nt = { x = 1, y = [1, 2]\nz = 2\n", Opener::InlineTable, (2, 5)),
            ("[a\nname = \"x\"\n", Opener::Array, (1, 1)),
        ];
        for (text, kind, (line, col)) in cases {
            let err = parse(Path::new("c.toml"), text).unwrap_err();
            assert_eq!(err.span, Some(Span { line, col }), "{text:?}: {err}");
            assert!(err.message.contains(kind.name()), "{text:?}: {err}");
            assert!(err.cause.as_deref().is_some_and(|c| c.contains("the parser stopped at")), "{text:?}: {err}");
        }
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let text = "a = \"[{\" # ] [ {\nb = '[' \nc = \"\"\"\n[\\\"\"\"\"\nd = [1, [2], {e = \"]\"}]\n";
        assert_eq!(unclosed(text), None, "{text}");
        assert!(parse(Path::new("c.toml"), text).is_ok(), "{text}");
        // A stray closer: the parser's own position stands.
        let err = parse(Path::new("c.toml"), "a = 1]\n").unwrap_err();
        assert!(err.cause.is_none(), "{err}");
    }
}
