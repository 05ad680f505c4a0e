//! Where libyaml's scanner and PyYAML's pure-Python one disagree, PyYAML's way.
//!
//! Both were written by the same author from the same design, and
//! `tests/yaml_pyyaml.rs` finds only these differences:
//! - **Tabs.** PyYAML skips only spaces between tokens, so a tab is allowed
//!   only inside a quoted scalar, in a block scalar's content, and in a comment
//!   (`a:<TAB>b`, `a: b<TAB># c` and `[a,<TAB>b]` are errors). libyaml also
//!   skips tabs in some places.
//! - **`?` in a flow collection.** PyYAML ends a plain scalar at `?` inside
//!   `[…]`/`{…}` (so `[http://x?y=1]` is an error); libyaml reads on.
//!
//! - **An empty key in a flow sequence.** `[? ]` and `[?, a]` hold the mapping
//!   `{null: null}` for PyYAML; libyaml 0.2.5 skips the token after such a key
//!   and fails. [`empty_flow_sequence_keys`] finds these `?`, and a `~` after
//!   each (an explicit null key) gives libyaml the same document.
//! - **A tag followed by `,`.** `[!!str, a]` is an error in PyYAML (a tag must
//!   be followed by a space or a line break); libyaml reads an empty string.
//!
//! [`refusal`] finds the first such tab, `?` or tag in text libyaml has accepted.
//! - **`:` before a flow indicator.** In a flow collection PyYAML ends a plain
//!   scalar at a `:` followed by `,`, `[`, `]`, `{` or `}` (`{omitted value:,}`),
//!   where libyaml stops with "found unexpected ':'". [`space_after_colon`]
//!   turns such a `:` into `: `, which both read the same way.

use super::libyaml::{self, ScalarStyle, Token};

/// Why PyYAML refuses `text` although libyaml accepted it: the byte offset and the problem.
pub fn refusal(text: &str) -> Option<(usize, &'static str)> {
    if !text.contains(['\t', '?', '!']) {
        return None;
    }
    let tokens = libyaml::tokens(text);
    [
        (misplaced_tab(text, &tokens), TAB),
        (flow_question_mark(text, &tokens), QUESTION),
        (tag_without_space(text, &tokens), TAG),
    ]
    .into_iter()
    .filter_map(|(at, problem)| at.map(|at| (at, problem)))
    .min()
}

const TAB: &str = "found a tab character where PyYAML allows only spaces";
const QUESTION: &str = "found '?' inside a plain scalar in a flow collection, where PyYAML ends the scalar";
const TAG: &str = "expected a space or a line break after a tag";

/// The end of the first tag followed by something other than a space or a line break.
fn tag_without_space(text: &str, tokens: &[(Token, usize, usize)]) -> Option<usize> {
    tokens.iter().filter(|(kind, _, _)| *kind == Token::Tag).map(|(_, _, end)| *end).find(|&end| {
        !matches!(
            text[end..].chars().next(),
            None | Some(' ' | '\t' | '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
        )
    })
}

/// The first `?` after the start of a plain scalar inside a flow collection.
fn flow_question_mark(text: &str, tokens: &[(Token, usize, usize)]) -> Option<usize> {
    let mut depth = 0usize;
    for &(kind, start, end) in tokens {
        match kind {
            Token::FlowSequenceStart | Token::FlowMappingStart => depth += 1,
            Token::FlowEnd => depth = depth.saturating_sub(1),
            Token::Scalar(ScalarStyle::Plain) if depth > 0 => {
                if let Some(i) = text.get(start..end).and_then(|s| s.char_indices().skip(1).find(|(_, c)| *c == '?')) {
                    return Some(start + i.0);
                }
            }
            _ => {}
        }
    }
    None
}

/// The first tab outside a quoted scalar, a block scalar's content and a comment.
fn misplaced_tab(text: &str, tokens: &[(Token, usize, usize)]) -> Option<usize> {
    if !text.contains('\t') {
        return None;
    }
    // Byte ranges where a tab is fine (quoted scalars, block scalar content,
    // and other tokens such as tags) or never fine (plain scalars, directives).
    let mut ranges: Vec<(usize, usize, bool)> = Vec::new();
    for &(kind, start, end) in tokens {
        let tabs_allowed = match kind {
            Token::Scalar(ScalarStyle::Plain) | Token::Directive => false,
            Token::Scalar(ScalarStyle::Literal | ScalarStyle::Folded) => {
                // The header line (`|-  # comment`) follows the rules between tokens.
                let content = text[start..end].find('\n').map_or(end, |i| start + i + 1);
                ranges.push((start, content, false));
                ranges.push((content, end, true));
                continue;
            }
            _ => true,
        };
        ranges.push((start, end, tabs_allowed));
    }
    let mut next_range = 0;
    let mut in_comment = false;
    for (at, c) in text.char_indices() {
        while next_range < ranges.len() && ranges[next_range].1 <= at {
            next_range += 1;
        }
        let range = ranges.get(next_range).filter(|(start, end, _)| *start <= at && at < *end);
        match (c, range) {
            ('\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}', _) => in_comment = false,
            (_, _) if in_comment => {}
            ('\t', Some((_, _, false)) | None) => return Some(at),
            ('#', None) => in_comment = true,
            _ => {}
        }
    }
    None
}

/// The byte offsets just after each `?` that opens an empty key in a flow sequence.
pub fn empty_flow_sequence_keys(text: &str) -> Vec<usize> {
    if !text.contains('?') {
        return Vec::new();
    }
    let tokens = libyaml::tokens(text);
    let mut open: Vec<Token> = Vec::new();
    let mut found = Vec::new();
    for (i, &(kind, start, end)) in tokens.iter().enumerate() {
        match kind {
            Token::FlowSequenceStart | Token::FlowMappingStart => open.push(kind),
            Token::FlowEnd => {
                open.pop();
            }
            Token::Key if open.last() == Some(&Token::FlowSequenceStart) => {
                let next = tokens.get(i + 1).map(|t| t.0);
                if matches!(next, Some(Token::FlowEntry | Token::FlowEnd | Token::Value)) && text[start..end] == *"?" {
                    found.push(end);
                }
            }
            _ => {}
        }
    }
    found
}

/// For libyaml's "found unexpected ':'" at byte `at`: the text with a space
/// after that `:` when PyYAML would read the `:` as ending the scalar.
pub fn space_after_colon(text: &str, at: usize) -> Option<String> {
    let rest = text.get(at..)?;
    let mut chars = rest.chars();
    if chars.next() != Some(':') || !matches!(chars.next(), Some(',' | '[' | ']' | '{' | '}')) {
        return None;
    }
    let mut fixed = String::with_capacity(text.len() + 1);
    fixed.push_str(&text[..at + 1]);
    fixed.push(' ');
    fixed.push_str(&text[at + 1..]);
    Some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_are_allowed_only_where_pyyaml_allows_them() {
        for ok in ["a: \"x\ty\"\n", "a: |\n  x\ty\n", "a: b #\tc\n", "# \t\na: 1\n", "a: 'x\n\ty'\n"] {
            assert_eq!(refusal(ok), None, "{ok:?}");
        }
        for bad in ["a:\tb\n", "a: b\t# c\n", "[a,\tb]\n", "a: b\tc\n", "- a\n\t\n", "a: |\t\n  x\n"] {
            assert_eq!(refusal(bad).map(|(_, problem)| problem), Some(TAB), "{bad:?}");
        }
    }

    #[test]
    fn a_question_mark_ends_a_plain_scalar_in_flow() {
        assert_eq!(refusal("a: [http://x?y=1]\n"), Some((12, QUESTION)));
        assert_eq!(refusal("a: http://x?y=1\n"), None);
        assert_eq!(refusal("a: [?q]\n"), None);
        assert_eq!(refusal("a: [!!str, b]\n"), Some((9, TAG)));
    }

    #[test]
    fn a_colon_before_a_flow_indicator_gets_a_space() {
        assert_eq!(space_after_colon("{a:,}", 2).as_deref(), Some("{a: ,}"));
        assert_eq!(space_after_colon("{a:?}", 2), None);
    }

    #[test]
    fn empty_keys_in_flow_sequences_are_found() {
        assert_eq!(empty_flow_sequence_keys("[? ]"), [2]);
        assert_eq!(empty_flow_sequence_keys("[?, a, ? : b, {?}, ?x]"), [2, 8]);
    }

    /// Found by fuzzing `truss_yaml`: libyaml's offsets did not count a
    /// leading byte order mark, so a tag's end was looked for 3 bytes early
    /// (a valid `a: !!str x` was refused) or inside the BOM (a panic).
    #[test]
    fn a_byte_order_mark_before_a_tag_is_not_a_panic() {
        assert_eq!(refusal("\u{feff}!\n("), None);
        // Before, the tag's end was looked for 3 bytes early: inside `!!str`.
        assert_eq!(refusal("\u{feff}a: !!str x\n"), None);
        // The offsets are bytes of the text given, BOM included.
        assert_eq!(refusal("\u{feff}a: [!!str, b]\n"), Some((3 + 9, TAG)));
        assert_eq!(refusal("\u{feff}a: [http://x?y=1]\n"), Some((3 + 12, QUESTION)));
        assert_eq!(empty_flow_sequence_keys("\u{feff}[? ]"), [3 + 2]);
        assert_eq!(space_after_colon("\u{feff}{a:,}", 3 + 2).as_deref(), Some("\u{feff}{a: ,}"));
    }
}
