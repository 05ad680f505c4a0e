//! A small Dockerfile lint for the conventions imgbake's generated files
//! keep (hadolint is not packaged for Debian; these few rules are the ones
//! that matter here). Each finding names the line and the rule; the rules
//! are listed in docs/dockerfile.md.
//!
//! - `pinned-base`: `FROM` names a digest (`@sha256:`), or is `scratch` or an
//!   earlier stage. A warning: the digest comes from `imgbake.lock`.
//! - `no-add-url`: no `ADD http(s)://…` (downloads belong in the context).
//! - `no-secret-args`: no `ARG`/`ENV` whose name looks like a credential;
//!   secrets go through `RUN --mount=type=secret`.
//! - `apt-no-recommends`, `apt-lists-cleanup`: `apt-get install` with
//!   `--no-install-recommends`, and `/var/lib/apt/lists` removed in the same `RUN`.
//! - `exec-form`: `ENTRYPOINT` and `CMD` in JSON (exec) form, so signals
//!   reach the app and no shell is needed.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line of the instruction's first line.
    pub line: usize,
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "Dockerfile:{}: {level}[{}]: {}", self.line, self.rule, self.message)
    }
}

/// Credential-like words in ARG/ENV names.
const SECRET_WORDS: [&str; 6] = ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "API_KEY"];

/// Instructions with continuation lines joined: (first line, text).
fn instructions(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if current.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if current.is_some() && trimmed.starts_with('#') {
            continue;
        }
        let (start, mut joined) = current.take().unwrap_or((index + 1, String::new()));
        if let Some(body) = trimmed.strip_suffix('\\') {
            joined.push_str(body);
            joined.push(' ');
            current = Some((start, joined));
        } else {
            joined.push_str(trimmed);
            out.push((start, joined));
        }
    }
    out.extend(current);
    out
}

pub fn lint(text: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    let mut push = |line, rule, severity, message: String| findings.push(Finding { line, rule, severity, message });
    for (line, instruction) in instructions(text) {
        let (keyword, rest) = instruction.split_once(char::is_whitespace).unwrap_or((&instruction, ""));
        let rest = rest.trim();
        match keyword.to_ascii_uppercase().as_str() {
            "FROM" => {
                let words: Vec<&str> = rest.split_whitespace().filter(|w| !w.starts_with("--")).collect();
                let image = words.first().copied().unwrap_or("");
                let known_stage = stages.iter().any(|s| s.eq_ignore_ascii_case(image));
                if image != "scratch" && !known_stage && !image.contains("@sha256:") {
                    push(
                        line,
                        "pinned-base",
                        Severity::Warning,
                        format!("`FROM {image}` is not pinned by digest; the same Dockerfile may build on another base tomorrow"),
                    );
                }
                if let (Some(as_word), Some(name)) = (words.get(1), words.get(2)) {
                    if as_word.eq_ignore_ascii_case("as") {
                        stages.push(name.to_string());
                    }
                }
            }
            "ADD" if rest.split_whitespace().any(|w| w.starts_with("http://") || w.starts_with("https://")) => push(
                line,
                "no-add-url",
                Severity::Error,
                "ADD from a URL downloads at build time, unverified; put the file in the context".to_string(),
            ),
            "ARG" | "ENV" => {
                for word in rest.split_whitespace() {
                    let name = word.split('=').next().unwrap_or("").to_ascii_uppercase();
                    let declares = word.contains('=') || keyword.eq_ignore_ascii_case("ARG");
                    if declares && SECRET_WORDS.iter().any(|s| name.contains(s)) {
                        push(
                            line,
                            "no-secret-args",
                            Severity::Error,
                            format!("{keyword} {name} looks like a credential; ARG and ENV values stay in the image history (use RUN --mount=type=secret)"),
                        );
                    }
                }
            }
            "RUN" if rest.contains("apt-get install") => {
                if !rest.contains("--no-install-recommends") {
                    push(
                        line,
                        "apt-no-recommends",
                        Severity::Error,
                        "apt-get install without --no-install-recommends".to_string(),
                    );
                }
                if !rest.contains("rm -rf /var/lib/apt/lists") {
                    push(
                        line,
                        "apt-lists-cleanup",
                        Severity::Error,
                        "apt-get install without `rm -rf /var/lib/apt/lists/*` in the same RUN".to_string(),
                    );
                }
            }
            "ENTRYPOINT" | "CMD" if !rest.starts_with('[') => push(
                line,
                "exec-form",
                Severity::Error,
                format!("{keyword} in shell form; use the JSON form so the app gets signals"),
            ),
            _ => {}
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<&'static str> {
        lint(text).iter().map(|f| f.rule).collect()
    }

    #[test]
    fn each_rule_fires_on_its_mistake_and_not_on_the_convention() {
        assert_eq!(rules("FROM debian:bookworm\n"), ["pinned-base"]);
        assert!(rules("FROM debian@sha256:abcd AS base\nFROM base\nFROM scratch\n").is_empty());
        assert_eq!(rules("FROM scratch\nADD https://x/y.bin /y\n"), ["no-add-url"]);
        assert_eq!(rules("FROM scratch\nARG HF_TOKEN\nENV A=1 MY_SECRET=x\n"), ["no-secret-args", "no-secret-args"]);
        assert_eq!(
            rules("FROM scratch\nRUN apt-get update && \\\n  apt-get install -y ffmpeg\n"),
            ["apt-no-recommends", "apt-lists-cleanup"]
        );
        assert!(rules(
            "FROM scratch\nRUN apt-get update \\\n # comment\n && apt-get install -y --no-install-recommends x \\\n && rm -rf /var/lib/apt/lists/*\n"
        )
        .is_empty());
        assert_eq!(rules("FROM scratch\nENTRYPOINT python3 app.py\nCMD []\n"), ["exec-form"]);
    }

    #[test]
    fn findings_name_the_instructions_first_line() {
        let found = lint("# c\nFROM scratch\n\nRUN apt-get install \\\n  x\n");
        assert_eq!(found[0].line, 4);
        assert!(found[0].to_string().starts_with("Dockerfile:4: error[apt-no-recommends]"));
    }
}
