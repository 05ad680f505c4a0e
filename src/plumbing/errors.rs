//! Errors as the user reads them. An error's message is short and its
//! causes are `#[source]`s, not pasted into the text; a next step for the
//! user comes from [`Hint::hint`], not from a "hint:" inside the message.
//! [`report`] prints the whole chain as uv does:
//!
//! ```text
//! error: <the error>
//!   Caused by: <each source>
//!   hint: <the first hint found along the chain>
//! ```
//!
//! [`one_line`] is the same chain on one line, for logs and for errors that
//! carry another error's text.

use std::error::Error;

/// An error that may know what the user can do about it.
pub trait Hint {
    fn hint(&self) -> Option<String>;
}

/// `error` and its causes. An `io::Error`'s `source()` skips the error it
/// wraps (it returns that error's source), so this steps into it instead:
/// rustls errors sit inside two nested `io::Error`s.
pub fn causes<'a>(error: &'a (dyn Error + 'static)) -> Vec<&'a (dyn Error + 'static)> {
    let mut found = Vec::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        found.push(cause);
        next = match cause.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(as_error(inner)),
            None => cause.source(),
        };
    }
    found
}

fn as_error<'a>(error: &'a (dyn Error + Send + Sync + 'static)) -> &'a (dyn Error + 'static) {
    error
}

/// The error and its causes joined by `: `; a cause whose text the line
/// already holds (many errors repeat their source's text) is left out.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut text = String::new();
    for cause in causes(error) {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// `error: …`, one `  Caused by: …` line per cause (a cause that only
/// repeats the line before it is left out), then `  hint: …` with the first
/// hint that `hint_of` finds along the chain. Ends with a newline.
pub fn report(error: &(dyn Error + 'static), hint_of: &dyn Fn(&(dyn Error + 'static)) -> Option<String>) -> String {
    let chain = causes(error);
    let mut text = format!("error: {error}\n");
    let mut previous = error.to_string();
    for cause in &chain[1..] {
        let line = cause.to_string();
        if line != previous {
            text.push_str(&format!("  Caused by: {line}\n"));
        }
        previous = line;
    }
    if let Some(hint) = chain.iter().find_map(|cause| hint_of(*cause)) {
        text.push_str(&format!("  hint: {hint}\n"));
    }
    text
}

/// For a `hint_of`: the hint of `error` when it is a `T` (held directly or boxed).
pub fn hint_of_type<T: Hint + Error + 'static>(error: &(dyn Error + 'static)) -> Option<String> {
    error.downcast_ref::<T>().or_else(|| error.downcast_ref::<Box<T>>().map(|boxed| &**boxed)).and_then(Hint::hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read the lock")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the disk is full")]
    struct Full;

    impl Hint for Full {
        fn hint(&self) -> Option<String> {
            Some("free some space".to_string())
        }
    }

    fn outer() -> Outer {
        Outer { source: std::io::Error::other(Full) }
    }

    #[test]
    fn reports_causes_and_the_hint_found_inside_an_io_error() {
        let report = report(&outer(), &hint_of_type::<Full>);
        assert_eq!(report, "error: cannot read the lock\n  Caused by: the disk is full\n  hint: free some space\n");
    }

    #[test]
    fn one_line_leaves_out_repeated_text() {
        assert_eq!(one_line(&outer()), "cannot read the lock: the disk is full");
        let plain = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert_eq!(one_line(&plain), "gone");
    }
}
