//! Cerebrium's dependency version rule, and requirement-file checks.
//!
//! `""`, `"*"`, `"latest"` → the bare name; a value starting with `=`, `>`,
//! `<`, `!` (or `~=`) is appended as is; anything else → `==value`.

use crate::spec::Requirement;

pub fn from_cerebrium(name: &str, version: &str) -> Requirement {
    let version = version.trim();
    let constraint = match version {
        "" | "*" | "latest" => String::new(),
        v if v.starts_with(['=', '>', '<', '!', '~']) => v.to_string(),
        v => format!("=={v}"),
    };
    Requirement { name: name.to_string(), constraint }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_rule_table() {
        let cases = [
            ("", "torch"),
            ("*", "torch"),
            ("latest", "torch"),
            ("  latest ", "torch"),
            ("2.0.0", "torch==2.0.0"),
            ("==2.0.0", "torch==2.0.0"),
            (">=1.5.0", "torch>=1.5.0"),
            ("<3", "torch<3"),
            ("!=2.1", "torch!=2.1"),
            ("~=2.1", "torch~=2.1"),
            ("11.7", "torch==11.7"),
        ];
        for (version, expected) in cases {
            assert_eq!(from_cerebrium("torch", version).to_requirement_string(), expected, "version {version:?}");
        }
    }
}
