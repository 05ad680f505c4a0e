//! A safe view of C libyaml's scanner and parser, through `unsafe-libyaml`
//! (libyaml 0.2.5 translated to Rust, the parser serde_yaml used for years).
//!
//! The only unsafe code of the YAML loader is here: each function creates a
//! parser over the text, copies every token or event it produces into owned
//! Rust values, frees it, and deletes the parser. libyaml-safer (a rewrite of
//! the same code) was tried first and dropped: it panics on a block scalar
//! that ends the file without a line break, and on `[!!str, a]`.

use std::ffi::CStr;
use std::mem::MaybeUninit;

/// A position: byte offset, and 0-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub index: usize,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    StreamStart,
    StreamEnd,
    DocumentStart,
    DocumentEnd,
    Alias { anchor: String },
    Scalar { anchor: Option<String>, tag: Option<String>, value: String, plain_implicit: bool, style: ScalarStyle },
    SequenceStart { anchor: Option<String>, tag: Option<String> },
    SequenceEnd,
    MappingStart { anchor: Option<String>, tag: Option<String> },
    MappingEnd,
}

/// What the token pass needs to know about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    FlowSequenceStart,
    FlowMappingStart,
    FlowEnd,
    FlowEntry,
    Key,
    Value,
    Scalar(ScalarStyle),
    Directive,
    Tag,
    Other,
}

/// libyaml's error: the problem, where, and what it was reading (with where that started).
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub problem: String,
    pub mark: Mark,
    /// A reader error (bad UTF-8, a control character) knows only `mark.index`.
    pub offset_only: bool,
    pub context: Option<(String, Mark)>,
}

/// Every event of `text` with its start and end marks, or the first error.
pub fn events(text: &str) -> Result<Vec<(Event, Mark, Mark)>, ParseError> {
    let bom = leading_bom(text);
    with_parser(text, |parser| {
        let mut events = Vec::new();
        loop {
            let mut raw = MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
            // SAFETY: `parser` is initialized and reads `text`, which outlives it;
            // on success the event is initialized, copied, then freed exactly once.
            unsafe {
                if unsafe_libyaml::yaml_parser_parse(parser, raw.as_mut_ptr()).fail {
                    return Err(error_of(parser, bom));
                }
                let event = raw.assume_init_mut();
                let copied = copy_event(event);
                let marks = (mark(event.start_mark, bom), mark(event.end_mark, bom));
                unsafe_libyaml::yaml_event_delete(event);
                let end = copied == Event::StreamEnd;
                events.push((copied, marks.0, marks.1));
                if end {
                    return Ok(events);
                }
            }
        }
    })
}

/// Every token of `text` with its start and end byte offsets, up to the first error.
pub fn tokens(text: &str) -> Vec<(Token, usize, usize)> {
    let bom = leading_bom(text);
    with_parser(text, |parser| {
        let mut tokens = Vec::new();
        loop {
            let mut raw = MaybeUninit::<unsafe_libyaml::yaml_token_t>::uninit();
            // SAFETY: as in `events`.
            unsafe {
                if unsafe_libyaml::yaml_parser_scan(parser, raw.as_mut_ptr()).fail {
                    return tokens;
                }
                let token = raw.assume_init_mut();
                let kind = match token.type_ {
                    unsafe_libyaml::YAML_FLOW_SEQUENCE_START_TOKEN => Token::FlowSequenceStart,
                    unsafe_libyaml::YAML_FLOW_MAPPING_START_TOKEN => Token::FlowMappingStart,
                    unsafe_libyaml::YAML_FLOW_ENTRY_TOKEN => Token::FlowEntry,
                    unsafe_libyaml::YAML_KEY_TOKEN => Token::Key,
                    unsafe_libyaml::YAML_VALUE_TOKEN => Token::Value,
                    unsafe_libyaml::YAML_FLOW_SEQUENCE_END_TOKEN | unsafe_libyaml::YAML_FLOW_MAPPING_END_TOKEN => {
                        Token::FlowEnd
                    }
                    unsafe_libyaml::YAML_SCALAR_TOKEN => Token::Scalar(style(token.data.scalar.style)),
                    unsafe_libyaml::YAML_VERSION_DIRECTIVE_TOKEN | unsafe_libyaml::YAML_TAG_DIRECTIVE_TOKEN => {
                        Token::Directive
                    }
                    unsafe_libyaml::YAML_TAG_TOKEN => Token::Tag,
                    _ => Token::Other,
                };
                let (start, end) = (mark(token.start_mark, bom).index, mark(token.end_mark, bom).index);
                let done = token.type_ == unsafe_libyaml::YAML_STREAM_END_TOKEN;
                unsafe_libyaml::yaml_token_delete(token);
                if done {
                    return tokens;
                }
                tokens.push((kind, start, end));
            }
        }
    })
}

fn with_parser<T>(text: &str, run: impl FnOnce(*mut unsafe_libyaml::yaml_parser_t) -> T) -> T {
    let mut parser = MaybeUninit::<unsafe_libyaml::yaml_parser_t>::uninit();
    // SAFETY: initialize, point at `text` (alive for this whole call), use, delete.
    unsafe {
        if unsafe_libyaml::yaml_parser_initialize(parser.as_mut_ptr()).fail {
            panic!("libyaml could not allocate a parser");
        }
        let parser = parser.as_mut_ptr();
        unsafe_libyaml::yaml_parser_set_input_string(parser, text.as_ptr(), text.len() as u64);
        let result = run(parser);
        unsafe_libyaml::yaml_parser_delete(parser);
        result
    }
}

/// The length of a UTF-8 byte order mark at the start of `text`: libyaml's
/// reader consumes it before the scanner counts, so every mark's index is
/// that much short of the byte offset in `text` (a reader error's
/// `problem_offset` counts it).
fn leading_bom(text: &str) -> usize {
    if text.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    }
}

/// libyaml's mark as a byte offset in the text it read (see [`leading_bom`]).
fn mark(mark: unsafe_libyaml::yaml_mark_t, bom: usize) -> Mark {
    Mark { index: mark.index as usize + bom, line: mark.line as usize, column: mark.column as usize }
}

fn style(style: unsafe_libyaml::yaml_scalar_style_t) -> ScalarStyle {
    match style {
        unsafe_libyaml::YAML_SINGLE_QUOTED_SCALAR_STYLE => ScalarStyle::SingleQuoted,
        unsafe_libyaml::YAML_DOUBLE_QUOTED_SCALAR_STYLE => ScalarStyle::DoubleQuoted,
        unsafe_libyaml::YAML_LITERAL_SCALAR_STYLE => ScalarStyle::Literal,
        unsafe_libyaml::YAML_FOLDED_SCALAR_STYLE => ScalarStyle::Folded,
        _ => ScalarStyle::Plain,
    }
}

/// # Safety
/// `ptr` is null or a NUL-terminated string libyaml made.
unsafe fn c_string(ptr: *const u8) -> Option<String> {
    (!ptr.is_null()).then(|| CStr::from_ptr(ptr.cast()).to_string_lossy().into_owned())
}

/// # Safety
/// `event` was filled by a successful `yaml_parser_parse`.
unsafe fn copy_event(event: &unsafe_libyaml::yaml_event_t) -> Event {
    match event.type_ {
        unsafe_libyaml::YAML_STREAM_START_EVENT => Event::StreamStart,
        unsafe_libyaml::YAML_STREAM_END_EVENT => Event::StreamEnd,
        unsafe_libyaml::YAML_DOCUMENT_START_EVENT => Event::DocumentStart,
        unsafe_libyaml::YAML_DOCUMENT_END_EVENT => Event::DocumentEnd,
        unsafe_libyaml::YAML_ALIAS_EVENT => {
            Event::Alias { anchor: c_string(event.data.alias.anchor).unwrap_or_default() }
        }
        unsafe_libyaml::YAML_SCALAR_EVENT => {
            let scalar = event.data.scalar;
            let bytes = std::slice::from_raw_parts(scalar.value, scalar.length as usize);
            Event::Scalar {
                anchor: c_string(scalar.anchor),
                tag: c_string(scalar.tag),
                value: String::from_utf8_lossy(bytes).into_owned(),
                plain_implicit: scalar.plain_implicit,
                style: style(scalar.style),
            }
        }
        unsafe_libyaml::YAML_SEQUENCE_START_EVENT => Event::SequenceStart {
            anchor: c_string(event.data.sequence_start.anchor),
            tag: c_string(event.data.sequence_start.tag),
        },
        unsafe_libyaml::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
        unsafe_libyaml::YAML_MAPPING_START_EVENT => Event::MappingStart {
            anchor: c_string(event.data.mapping_start.anchor),
            tag: c_string(event.data.mapping_start.tag),
        },
        _ => Event::MappingEnd,
    }
}

/// # Safety
/// `parser` is initialized and its last call failed.
unsafe fn error_of(parser: *mut unsafe_libyaml::yaml_parser_t, bom: usize) -> ParseError {
    let parser = &*parser;
    let problem = c_string(parser.problem.cast()).unwrap_or_else(|| "invalid YAML".to_string());
    let context = c_string(parser.context.cast()).map(|context| (context, mark(parser.context_mark, bom)));
    if parser.error == unsafe_libyaml::YAML_READER_ERROR {
        let at = Mark { index: parser.problem_offset as usize, ..Mark::default() };
        return ParseError { problem, mark: at, offset_only: true, context };
    }
    ParseError { problem, mark: mark(parser.problem_mark, bom), offset_only: false, context }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_values_and_marks() {
        let events = events("a: [b, 'c']\n").unwrap();
        let scalars: Vec<(&str, usize)> = events
            .iter()
            .filter_map(|(e, start, _)| match e {
                Event::Scalar { value, .. } => Some((value.as_str(), start.column)),
                _ => None,
            })
            .collect();
        assert_eq!(scalars, [("a", 0), ("b", 4), ("c", 7)]);
    }

    #[test]
    fn offsets_count_a_leading_byte_order_mark() {
        let text = "\u{feff}a: [!!str b, c]\n";
        let tags: Vec<&str> =
            tokens(text).iter().filter(|(kind, _, _)| *kind == Token::Tag).map(|&(_, s, e)| &text[s..e]).collect();
        assert_eq!(tags, ["!!str"]);
        let events = events(text).unwrap();
        let c = events.iter().find(|(e, _, _)| matches!(e, Event::Scalar { value, .. } if value == "c")).unwrap();
        assert_eq!(&text[c.1.index..c.2.index], "c");
        // A scanner error's mark too; a reader error's offset already counted it.
        assert_eq!(super::events("\u{feff}a: [b\n").unwrap_err().mark.index, "\u{feff}a: [b\n".len());
        let reader = super::events("\u{feff}a: \u{1}").unwrap_err();
        assert!(reader.offset_only);
        assert_eq!(reader.mark.index, "\u{feff}a: ".len());
    }

    #[test]
    fn errors_say_where() {
        let err = events("a:\n  b: 1\n c: 2\n").unwrap_err();
        assert_eq!(err.mark.line, 2);
        assert!(err.context.is_some());
        assert_eq!(events("k: |\n  x").unwrap().len(), 8);
    }

    #[test]
    fn tokens_have_byte_ranges() {
        let tokens = tokens("é: [x]\n");
        assert!(tokens.contains(&(Token::Scalar(ScalarStyle::Plain), 5, 6)));
    }
}
