//! Command lines written as one string (`entrypoint = "uvicorn main:app …"`,
//! Truss `start_command`): split into an argument list as a POSIX shell
//! would (the `shlex` crate), or, when the string needs a shell (pipes,
//! `&&`, `;`, redirections, `$VAR`, globs, backticks, `VAR=x cmd`, shell
//! builtins), run through `/bin/sh -c`. The entrypoint check reads the
//! programs of either form back with [`programs`].
//!
//! `/bin/sh` by absolute path: the image need not have a PATH for it, and it
//! is what Truss's `start_command` has always been run with here.

/// The shell that runs command lines that need one.
pub const SHELL: &str = "/bin/sh";

/// How a command string will be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// Split into words; run directly.
    Argv(Vec<String>),
    /// Needs a shell; `reason` names the construct (e.g. "`&&`").
    Shell { script: String, reason: String },
}

impl CommandLine {
    /// The argument list the image runs.
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandLine::Argv(words) => words.clone(),
            CommandLine::Shell { script, .. } => shell(script),
        }
    }
}

/// Why a command string cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the command is empty")]
    Empty,
    #[error("the command has an unclosed {0} quote")]
    UnclosedQuote(&'static str),
}

/// `["/bin/sh", "-c", script]`: the one place a script becomes an argument list.
pub fn shell(script: &str) -> Vec<String> {
    vec![SHELL.to_string(), "-c".to_string(), script.to_string()]
}

/// Shell builtins and keywords: a command starting with one has no program
/// to exec, so it needs the shell.
const BUILTINS: &[&str] = &[
    "exec", "cd", "source", ".", "export", "set", "unset", "eval", "if", "then", "else", "elif", "fi", "for", "while",
    "until", "do", "done", "case", "esac", "{", "}", "!", "function", "trap", "ulimit", "umask", "wait", "read",
    "shift", "alias", "test", "[", "true", "false", ":",
];

/// Splits a command string, or says why it needs a shell.
pub fn parse(text: &str) -> Result<CommandLine, CommandError> {
    if let Some(quote) = unclosed_quote(text) {
        return Err(CommandError::UnclosedQuote(quote));
    }
    if let Some(reason) = needs_shell(text) {
        return Ok(CommandLine::Shell { script: text.to_string(), reason });
    }
    // Balanced quotes and no shell syntax: shlex cannot fail here, but a
    // failure would still be reported rather than guessed around.
    let words = shlex::split(text).ok_or(CommandError::UnclosedQuote("double"))?;
    let Some(first) = words.first() else { return Err(CommandError::Empty) };
    if is_assignment(first) {
        return Ok(CommandLine::Shell {
            script: text.to_string(),
            reason: format!("it starts with the variable assignment `{first}`"),
        });
    }
    if BUILTINS.contains(&first.as_str()) {
        return Ok(CommandLine::Shell { script: text.to_string(), reason: format!("`{first}` is a shell builtin") });
    }
    Ok(CommandLine::Argv(words))
}

/// The programs an argument list runs, for checking that they exist: the
/// first word, or for `sh -c SCRIPT` the first word of each simple command
/// of the script (after `exec` and `VAR=value` words). `None` when the
/// script is too dynamic to tell (a `$` or glob in a command word, `if`/
/// `for` blocks, subshells).
pub fn programs(argv: &[String]) -> Option<Vec<String>> {
    let first = argv.first()?;
    let is_shell = matches!(first.rsplit('/').next(), Some("sh" | "bash" | "dash"));
    // `-c`, or combined flags ending in it (`-ec`, `-lc`).
    let dash_c =
        argv.get(1).is_some_and(|flag| flag.starts_with('-') && !flag.starts_with("--") && flag.ends_with('c'));
    match argv.get(2) {
        Some(script) if is_shell && dash_c => {
            let mut found = vec![first.clone()];
            found.extend(script_programs(script)?);
            Some(found)
        }
        _ => Some(vec![first.clone()]),
    }
}

fn script_programs(script: &str) -> Option<Vec<String>> {
    let mut programs = Vec::new();
    for command in simple_commands(script)? {
        let words = shlex::split(&command)?;
        let mut words = words.iter().skip_while(|w| is_assignment(w) || *w == "exec");
        let Some(word) = words.next() else { continue };
        if word.contains(['$', '`', '*', '?', '[', '(', ')']) {
            return None;
        }
        if matches!(word.as_str(), "if" | "for" | "while" | "until" | "case" | "{" | "function" | "!") {
            return None;
        }
        if BUILTINS.contains(&word.as_str()) {
            continue;
        }
        programs.push(word.clone());
    }
    Some(programs)
}

/// The script cut at `&&`, `||`, `;`, `|`, `&` and newlines outside quotes.
/// `None` for subshells and command substitution, whose insides are not read.
fn simple_commands(script: &str) -> Option<Vec<String>> {
    let mut commands = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('"'), '\\') => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                continue;
            }
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '\\') => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                continue;
            }
            (None, '(' | ')' | '`') => return None,
            (None, '#') if current.is_empty() || current.ends_with(char::is_whitespace) => {
                // A comment runs to the end of the line.
                for next in chars.by_ref() {
                    if next == '\n' {
                        break;
                    }
                }
                commands.push(std::mem::take(&mut current));
                continue;
            }
            (None, ';' | '|' | '&' | '\n') => {
                commands.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    commands.push(current);
    Some(commands.into_iter().filter(|c| !c.trim().is_empty()).collect())
}

/// `NAME=value`: a shell variable assignment word.
fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            let mut chars = name.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// `"single"` or `"double"` when a quote is left open.
fn unclosed_quote(text: &str) -> Option<&'static str> {
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\\') | (Some('"'), '\\') => {
                chars.next();
            }
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if q == c => quote = None,
            _ => {}
        }
    }
    match quote {
        Some('\'') => Some("single"),
        Some(_) => Some("double"),
        None => None,
    }
}

/// The first construct outside single quotes that only a shell understands.
fn needs_shell(text: &str) -> Option<String> {
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    let mut word_start = true;
    while let Some(c) = chars.next() {
        let at_word_start = word_start;
        word_start = c.is_whitespace();
        match (quote, c) {
            (None, '\\') | (Some('"'), '\\') => {
                chars.next();
            }
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if q == c => quote = None,
            (Some('\''), _) => {}
            (_, '$') => return Some("`$` (a variable or substitution)".to_string()),
            (_, '`') => return Some("backticks (command substitution)".to_string()),
            (Some(_), _) => {}
            (None, '|') if chars.peek() == Some(&'|') => return Some("`||`".to_string()),
            (None, '&') if chars.peek() == Some(&'&') => return Some("`&&`".to_string()),
            (None, '|') => return Some("a pipe `|`".to_string()),
            (None, '&') => return Some("`&`".to_string()),
            (None, ';') => return Some("`;`".to_string()),
            (None, '<' | '>') => return Some(format!("a redirection `{c}`")),
            (None, '(' | ')') => return Some(format!("`{c}`")),
            (None, '*' | '?' | '[') => return Some(format!("the glob `{c}`")),
            (None, '~') if at_word_start => return Some("`~`".to_string()),
            (None, '#') if at_word_start => return Some("a comment `#`".to_string()),
            (None, '\n') => return Some("a newline".to_string()),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(text: &str) -> Vec<String> {
        match parse(text).unwrap() {
            CommandLine::Argv(words) => words,
            other => panic!("{text:?} became {other:?}"),
        }
    }

    fn reason(text: &str) -> String {
        match parse(text).unwrap() {
            CommandLine::Shell { reason, .. } => reason,
            other => panic!("{text:?} became {other:?}"),
        }
    }

    #[test]
    fn a_plain_command_splits_like_a_shell() {
        assert_eq!(
            argv("uvicorn main:app --host 0.0.0.0 --port 5000"),
            ["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "5000"]
        );
        assert_eq!(argv("python -c 'print(1)'  \"a b\" c\\ d"), ["python", "-c", "print(1)", "a b", "c d"]);
        // Quoted shell characters are plain characters.
        assert_eq!(argv("echo 'a && b' \"x|y\" '$HOME'"), ["echo", "a && b", "x|y", "$HOME"]);
    }

    #[test]
    fn shell_syntax_goes_through_the_shell() {
        assert_eq!(reason("cd /app && uvicorn main:app"), "`&&`");
        assert_eq!(reason("a || b"), "`||`");
        assert_eq!(reason("python serve.py | tee log"), "a pipe `|`");
        assert_eq!(reason("python a.py; python b.py"), "`;`");
        assert_eq!(reason("python serve.py > log"), "a redirection `>`");
        assert_eq!(reason("uvicorn main:app --port $PORT"), "`$` (a variable or substitution)");
        assert_eq!(reason("uvicorn main:app --port \"${PORT}\""), "`$` (a variable or substitution)");
        assert_eq!(reason("echo `date`"), "backticks (command substitution)");
        assert_eq!(reason("python *.py"), "the glob `*`");
        assert_eq!(reason("PORT=5000 python serve.py"), "it starts with the variable assignment `PORT=5000`");
        assert_eq!(reason("exec uvicorn main:app"), "`exec` is a shell builtin");
        let shell = parse("cd /app && uvicorn main:app").unwrap();
        assert_eq!(shell.argv(), ["/bin/sh", "-c", "cd /app && uvicorn main:app"]);
    }

    #[test]
    fn an_unclosed_quote_or_nothing_is_an_error() {
        assert_eq!(parse("python -c 'print(1)"), Err(CommandError::UnclosedQuote("single")));
        assert_eq!(parse("echo \"a"), Err(CommandError::UnclosedQuote("double")));
        assert_eq!(parse("   "), Err(CommandError::Empty));
    }

    #[test]
    fn programs_of_argv_and_shell_scripts() {
        let of = |words: &[&str]| programs(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>());
        assert_eq!(of(&["uvicorn", "main:app"]), Some(vec!["uvicorn".to_string()]));
        assert_eq!(of(&["/opt/venv/bin/python", "-m", "x"]), Some(vec!["/opt/venv/bin/python".to_string()]));
        assert_eq!(
            of(&["/bin/sh", "-c", "cd /app && PORT=1 exec uvicorn main:app | tee 'a;b'"]),
            Some(vec!["/bin/sh".to_string(), "uvicorn".to_string(), "tee".to_string()])
        );
        assert_eq!(of(&["sh", "-c", "$CMD --port 1"]), None);
        assert_eq!(of(&["sh", "-c", "if true; then a; fi"]), None);
        assert_eq!(
            of(&["sh", "-c", "python app.py # starts the server"]),
            Some(vec!["sh".to_string(), "python".to_string()])
        );
    }
}
