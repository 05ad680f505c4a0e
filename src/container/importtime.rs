//! Python's import profile (`PYTHONPROFILEIMPORTTIME=1`, the same as
//! `python -X importtime`), read from the container's output: one line per
//! imported module on stderr,
//!
//! ```text
//! import time: self [us] | cumulative | imported package
//! import time:       312 |        312 |   _io
//! import time:      1021 |       4200 | encodings
//! ```
//!
//! where the package column is indented two spaces per nesting level. A
//! top-level line's cumulative time includes everything it imported, so the
//! time spent importing is the sum of the top-level cumulative times. That
//! is interpreter time spent in imports, not a wall-clock window: an app
//! that imports in several processes sums them all.

/// The prefix of every line Python writes.
pub const LINE_PREFIX: &str = "import time:";

/// The environment variable that turns the profile on.
pub const ENV: &str = "PYTHONPROFILEIMPORTTIME";

/// What the import lines add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Imports {
    /// Modules imported (every line, nested ones too).
    pub modules: u64,
    /// Sum of the top-level cumulative times, in seconds.
    pub seconds: f64,
}

/// Whether `line` is one of Python's import-time lines (header included).
pub fn is_import_line(line: &str) -> bool {
    line.starts_with(LINE_PREFIX)
}

/// Reads every import-time line of `output`; `None` when there is none
/// (the entrypoint is not Python, or it never started importing).
pub fn parse(output: &str) -> Option<Imports> {
    let mut imports = Imports::default();
    let mut micros = 0u64;
    for line in output.lines().filter(|l| is_import_line(l)) {
        let mut columns = line[LINE_PREFIX.len()..].splitn(3, '|');
        let (Some(_own), Some(cumulative), Some(package)) = (columns.next(), columns.next(), columns.next()) else {
            continue;
        };
        // The header's columns are words, not numbers.
        let Ok(cumulative) = cumulative.trim().parse::<u64>() else { continue };
        imports.modules += 1;
        // One space follows the bar; more spaces are nesting.
        let package = package.strip_prefix(' ').unwrap_or(package);
        if !package.starts_with(' ') {
            micros += cumulative;
        }
    }
    (imports.modules > 0).then(|| Imports { seconds: micros as f64 / 1e6, ..imports })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_cumulative_times_add_up_and_nested_ones_are_inside_them() {
        let output = "\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:        50 |         50 |   marshal
import time:       400 |        550 | _frozen_importlib_external
hello from the app
import time:      1000 |       1000 |     json.decoder
import time:       200 |       1200 |   json
import time:        30 |       1230 | server
";
        let imports = parse(output).unwrap();
        assert_eq!(imports.modules, 6);
        assert!((imports.seconds - (550.0 + 1230.0) / 1e6).abs() < 1e-12, "{imports:?}");
    }

    #[test]
    fn no_import_lines_means_not_measured() {
        assert_eq!(parse("listening on :8080\n"), None);
        assert_eq!(parse("import time: self [us] | cumulative | imported package\n"), None);
    }

    #[test]
    fn a_cut_or_garbled_line_is_skipped() {
        let imports = parse("import time:  12 | 34\nimport time:  5 | 7 | os\n").unwrap();
        assert_eq!(imports, Imports { modules: 1, seconds: 7e-6 });
    }
}
