//! One module per subcommand; each returns its exit status.

pub mod build;
pub mod dockerfile;
pub mod image_plan;
pub mod lock;
pub mod plan;
pub mod prefetch;
pub mod validate;

/// Exit statuses: 0 success, 1 the user's input is wrong or an operation
/// failed, 2 usage or internal errors, or a feature that is not built yet.
pub const EXIT_OK: u8 = 0;
pub const EXIT_INVALID_INPUT: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// Prints `error: …` then one `Caused by: …` line per source, as uv does,
/// then the `hint: …` of a registry error in the chain.
/// URLs' query strings are cut out (a redirect's signed URL can be in a cause).
pub fn print_error(error: &(dyn std::error::Error + 'static)) {
    let redact = crate::weights::signed_url::redact_queries;
    eprintln!("error: {}", redact(&error.to_string()));
    let mut hint = registry_hint(error);
    let mut source = error.source();
    while let Some(cause) = source {
        eprintln!("  Caused by: {}", redact(&cause.to_string()));
        hint = hint.or_else(|| registry_hint(cause));
        source = cause.source();
    }
    if let Some(hint) = hint {
        eprintln!("  hint: {}", redact(&hint));
    }
}

/// The hint of a [`crate::registry::RegistryError`] (held directly or boxed).
fn registry_hint(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    use crate::registry::RegistryError;
    error
        .downcast_ref::<RegistryError>()
        .or_else(|| error.downcast_ref::<Box<RegistryError>>().map(|boxed| &**boxed))
        .and_then(RegistryError::hint)
}
