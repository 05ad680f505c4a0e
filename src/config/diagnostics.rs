//! Errors and warnings about a config file: where (file:line:col), what, and a hint.
//!
//! Printed the way uv prints: `error: file:line:col: message` then `  hint: …`.

use super::tree::Span;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub span: Option<Span>,
    pub message: String,
    /// What a lower layer (the TOML or YAML parser) said, when it is not the
    /// message itself; printed as `caused by:`. Boxed so that a Diagnostic
    /// stays small enough to be an `Err` by value.
    pub cause: Option<Box<str>>,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(file: &Path, span: Option<Span>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_path_buf(),
            span,
            message: message.into(),
            cause: None,
            hint: None,
        }
    }

    pub fn warning(file: &Path, span: Option<Span>, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(file, span, message) }
    }

    pub fn with_cause(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into().into_boxed_str());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col` (or just `file` when the problem has no single position).
    pub fn location(&self) -> String {
        match self.span {
            Some(span) => format!("{}:{}", self.file.display(), span),
            None => self.file.display().to_string(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{word}: {}: {}", self.location(), self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, "\n  caused by: {cause}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Collects the diagnostics of one load; loading goes on after an error so a
/// user sees every problem of a file at once.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub file: PathBuf,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: &Path) -> Self {
        Diagnostics { file: file.to_path_buf(), items: Vec::new() }
    }

    pub fn error(&mut self, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Diagnostic::error(&self.file, Some(span), message))
    }

    pub fn warning(&mut self, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Diagnostic::warning(&self.file, Some(span), message))
    }

    /// An error about the file as a whole (e.g. a required section is missing).
    pub fn file_error(&mut self, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Diagnostic::error(&self.file, None, message))
    }

    pub fn push(&mut self, diagnostic: Diagnostic) -> &mut Diagnostic {
        self.items.push(diagnostic);
        self.items.last_mut().expect("just pushed")
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }
}

/// Lets call sites write `diags.error(span, msg).hint("…")`.
pub trait HintExt {
    fn hint(&mut self, hint: impl Into<String>);
}

impl HintExt for Diagnostic {
    fn hint(&mut self, hint: impl Into<String>) {
        self.hint = Some(hint.into());
    }
}
