//! Debian control-file syntax: deb822 paragraphs (Packages indexes, dpkg
//! status, .deb `control` files) and relationship fields (`Depends`,
//! `Provides`, …) with dpkg's version comparison (the `debversion` crate).
//!
//! The paragraph parser is hand-written (about 40 lines) instead of using the
//! `debian-control` crate: that crate builds a lossless rowan syntax tree,
//! which is a heavy dependency and slow on a 60,000-paragraph Packages index
//! when all we need is "field name → value" slices borrowed from the text.

use debversion::Version;
use std::cmp::Ordering;

/// One paragraph: fields in file order, values with continuation lines kept
/// (joined by `\n`, leading space of continuation lines preserved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paragraph<'a> {
    pub fields: Vec<(&'a str, String)>,
}

impl<'a> Paragraph<'a> {
    /// The value of `name` (case-insensitive, as in deb822), trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(field, _)| field.eq_ignore_ascii_case(name)).map(|(_, value)| value.trim())
    }
}

/// A syntax error in a control file: 1-based line and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ControlError {
    pub line: usize,
    pub message: String,
}

/// Splits `text` into paragraphs. Blank lines separate paragraphs, lines
/// starting with a space or tab continue the previous field, `#` lines are
/// comments (allowed in deb822 sources files).
pub fn parse_paragraphs(text: &str) -> Result<Vec<Paragraph<'_>>, ControlError> {
    let mut out = Vec::new();
    let mut current: Vec<(&str, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(Paragraph { fields: std::mem::take(&mut current) });
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some((_, value)) = current.last_mut() else {
                return Err(ControlError {
                    line: line_number,
                    message: "continuation line (starts with a space) before any field".into(),
                });
            };
            value.push('\n');
            value.push_str(line);
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ControlError {
                line: line_number,
                message: format!("expected `Field: value`, found `{}`", truncate(line, 60)),
            });
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ControlError { line: line_number, message: format!("bad field name `{name}`") });
        }
        current.push((name, value.trim_start().to_string()));
    }
    if !current.is_empty() {
        out.push(Paragraph { fields: current });
    }
    Ok(out)
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// A version relation operator as written in control files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Earlier,        // <<
    EarlierOrEqual, // <=
    Equal,          // =
    LaterOrEqual,   // >=
    Later,          // >>
}

impl Operator {
    fn parse(text: &str) -> Option<Operator> {
        Some(match text {
            "<<" => Operator::Earlier,
            "<=" | "<" => Operator::EarlierOrEqual, // `<` and `>` are obsolete spellings of <= and >=
            "=" => Operator::Equal,
            ">=" | ">" => Operator::LaterOrEqual,
            ">>" => Operator::Later,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Earlier => "<<",
            Operator::EarlierOrEqual => "<=",
            Operator::Equal => "=",
            Operator::LaterOrEqual => ">=",
            Operator::Later => ">>",
        }
    }

    /// Whether `candidate OP wanted` holds under dpkg's ordering.
    pub fn holds(self, candidate: &Version, wanted: &Version) -> bool {
        let ordering = candidate.cmp(wanted);
        match self {
            Operator::Earlier => ordering == Ordering::Less,
            Operator::EarlierOrEqual => ordering != Ordering::Greater,
            Operator::Equal => ordering == Ordering::Equal,
            Operator::LaterOrEqual => ordering != Ordering::Less,
            Operator::Later => ordering == Ordering::Greater,
        }
    }
}

/// `name[:arch] [(op version)] [[arch list]]`: one alternative of a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    /// `any`, `native` or an architecture name, when qualified.
    pub arch_qualifier: Option<String>,
    pub constraint: Option<(Operator, Version)>,
    /// `[amd64 !i386]` restriction (only in source-package fields normally).
    pub arch_restriction: Vec<String>,
}

impl Relation {
    /// Whether a package of `version` satisfies the version part.
    pub fn version_matches(&self, version: &Version) -> bool {
        self.constraint.as_ref().is_none_or(|(op, wanted)| op.holds(version, wanted))
    }

    /// Whether the relation applies on `arch` (its `[...]` list allows it).
    pub fn applies_on(&self, arch: &str) -> bool {
        if self.arch_restriction.is_empty() {
            return true;
        }
        let negated = self.arch_restriction.iter().all(|a| a.starts_with('!'));
        if negated {
            !self.arch_restriction.iter().any(|a| &a[1..] == arch)
        } else {
            self.arch_restriction.iter().any(|a| a == arch)
        }
    }
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if let Some(arch) = &self.arch_qualifier {
            write!(f, ":{arch}")?;
        }
        if let Some((op, version)) = &self.constraint {
            write!(f, " ({} {version})", op.as_str())?;
        }
        Ok(())
    }
}

/// Parses a relationship field: `a (>= 1) | b, c:any` → `[[a, b], [c]]`.
/// Build profiles (`<!nocheck>`) are dropped: binary indexes do not use them.
pub fn parse_relations(text: &str) -> Result<Vec<Vec<Relation>>, String> {
    let mut groups = Vec::new();
    for group in text.split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let alternatives = group.split('|').map(parse_relation).collect::<Result<Vec<_>, _>>()?;
        groups.push(alternatives);
    }
    Ok(groups)
}

fn parse_relation(text: &str) -> Result<Relation, String> {
    let mut rest = text.trim();
    // Drop build profiles `<...>`: the first `<` outside the parentheses.
    let mut depth = 0;
    for (index, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '<' if depth == 0 => {
                rest = rest[..index].trim_end();
                break;
            }
            _ => {}
        }
    }
    let mut arch_restriction = Vec::new();
    if let Some(start) = rest.find('[') {
        let end = rest[start..].find(']').map(|end| start + end).ok_or_else(|| format!("unclosed `[` in `{text}`"))?;
        arch_restriction = rest[start + 1..end].split_whitespace().map(str::to_string).collect();
        rest = rest[..start].trim_end();
    }
    let mut constraint = None;
    if let Some(start) = rest.find('(') {
        let end = rest[start..].find(')').map(|end| start + end).ok_or_else(|| format!("unclosed `(` in `{text}`"))?;
        let inner = rest[start + 1..end].trim();
        let split = inner.find(|c: char| !matches!(c, '<' | '>' | '=')).unwrap_or(inner.len());
        let op = Operator::parse(&inner[..split]).ok_or_else(|| format!("bad version operator in `{text}`"))?;
        let version: Version = inner[split..]
            .trim()
            .parse()
            .map_err(|error| format!("bad version `{}` in `{text}`: {error}", inner[split..].trim()))?;
        constraint = Some((op, version));
        rest = rest[..start].trim_end();
    }
    let (name, arch_qualifier) = match rest.split_once(':') {
        Some((name, arch)) => (name, Some(arch.to_string())),
        None => (rest, None),
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("bad package name in `{text}`"));
    }
    Ok(Relation { name: name.to_string(), arch_qualifier, constraint, arch_restriction })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closing_bracket_before_the_opening_one_is_an_error_not_a_panic() {
        // Found by fuzzing (deb_control, apt_packages): `rfind` gave an end
        // before the start and the slice panicked.
        for text in ["a ] [amd64", "e\0\0\0P?:a rZvi\0(>= 2d64].0-1~bpo1) [a\0\0=mdd", "b ) (>= 1", "c ] ["] {
            assert!(parse_relations(text).is_err(), "{text}");
        }
        let ok = parse_relations("x (>= 1) [amd64] ]").unwrap();
        assert_eq!(ok[0][0].arch_restriction, ["amd64"]);
    }

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    #[test]
    fn paragraphs_with_continuations_comments_and_errors() {
        let text = "Package: a\nDescription: short\n long line\n .\n# comment\nVersion: 1\n\n\nPackage: b\n";
        let paragraphs = parse_paragraphs(text).unwrap();
        assert_eq!(paragraphs.len(), 2);
        assert_eq!(paragraphs[0].get("package"), Some("a"));
        assert_eq!(paragraphs[0].get("Description"), Some("short\n long line\n ."));
        assert_eq!(paragraphs[0].get("VERSION"), Some("1"));
        assert_eq!(paragraphs[1].get("Package"), Some("b"));
        let error = parse_paragraphs("Package: a\nno colon here\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("Field: value"), "{error}");
        assert_eq!(parse_paragraphs(" leading\n").unwrap_err().line, 1);
    }

    #[test]
    fn relations_parse_alternatives_versions_and_qualifiers() {
        let groups =
            parse_relations("libc6 (>= 2.34), python3:any (<< 3.12~) | python3-minimal, foo [!i386], bar <!nocheck>")
                .unwrap();
        assert_eq!(groups.len(), 4);
        assert_eq!(groups[0][0].name, "libc6");
        assert_eq!(groups[0][0].constraint, Some((Operator::LaterOrEqual, v("2.34"))));
        assert_eq!(groups[1].len(), 2);
        assert_eq!(groups[1][0].arch_qualifier.as_deref(), Some("any"));
        assert_eq!(groups[1][0].constraint, Some((Operator::Earlier, v("3.12~"))));
        assert_eq!(groups[1][1].name, "python3-minimal");
        assert!(groups[2][0].applies_on("amd64") && !groups[2][0].applies_on("i386"));
        assert_eq!(groups[3][0].name, "bar");
        assert_eq!(groups[0][0].to_string(), "libc6 (>= 2.34)");
        assert!(parse_relations("a (~ 1)").is_err());
        assert!(parse_relations("a (>= 1").is_err());
    }

    #[test]
    fn version_constraints_use_dpkg_ordering() {
        let rel = |s: &str| parse_relations(s).unwrap().remove(0).remove(0);
        // ~ sorts before everything, even the end of the string.
        assert!(rel("a (<< 1.0)").version_matches(&v("1.0~rc1")));
        assert!(!rel("a (>= 1.0)").version_matches(&v("1.0~rc1")));
        assert!(rel("a (<= 1.0-1)").version_matches(&v("1.0-1")));
        assert!(!rel("a (>> 1.0-1)").version_matches(&v("1.0-1")));
        assert!(rel("a (>> 1.0-1)").version_matches(&v("1.0-1+deb12u1")));
        assert!(rel("a (= 1:2.0)").version_matches(&v("1:2.0")));
        assert!(!rel("a (= 1:2.0)").version_matches(&v("2.0")));
        // The epoch wins over everything else.
        assert!(rel("a (>> 9.9)").version_matches(&v("1:0.1")));
        assert!(rel("a (>= 2.10)").version_matches(&v("2.10")) && !rel("a (>= 2.10)").version_matches(&v("2.9")));
        assert!(rel("a").version_matches(&v("0")));
    }
}
