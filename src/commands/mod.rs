//! One module per subcommand; each returns its exit status.

pub mod build;
pub mod dockerfile;
pub mod image_plan;
pub mod lock;
pub mod plan;
pub mod prefetch;
pub mod run;
pub mod validate;

/// Exit statuses: 0 success, 1 the user's input is wrong or an operation
/// failed, 2 usage or internal errors, or a feature that is not built yet.
pub const EXIT_OK: u8 = 0;
pub const EXIT_INVALID_INPUT: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

use crate::plumbing::errors;

/// Prints the error as [`errors::report`] does: `error: …`, one
/// `Caused by: …` line per source, then the `hint: …` of an error in the
/// chain. URLs' query strings are cut out (a redirect's signed URL can be in
/// a cause).
pub fn print_error(error: &(dyn std::error::Error + 'static)) {
    eprint!("{}", crate::weights::signed_url::redact_queries(&errors::report(error, &hint_of)));
}

/// The hint of an error that has one. An error type with a hint is listed
/// here; a wrapper that is `#[error(transparent)]` hides the error it holds
/// from the chain, so it implements [`errors::Hint`] by asking that error.
pub fn hint_of(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    use errors::hint_of_type;
    hint_of_type::<crate::registry::RegistryError>(error)
        .or_else(|| hint_of_type::<crate::execute::entrypoint::MissingProgram>(error))
        .or_else(|| hint_of_type::<crate::runtime::prefetch::PrefetchError>(error))
        .or_else(|| hint_of_type::<crate::dockerfile::builder::BuilderError>(error))
        .or_else(|| hint_of_type::<crate::execute::BuildError>(error))
        .or_else(|| hint_of_type::<crate::resolve::ResolveError>(error))
        .or_else(|| hint_of_type::<crate::lock::LockError>(error))
        .or_else(|| hint_of_type::<crate::dockerfile::DockerfileError>(error))
        .or_else(|| hint_of_type::<dockerfile::ContextError>(error))
        .or_else(|| hint_of_type::<plan::PlanError>(error))
        .or_else(|| hint_of_type::<crate::deploy::DeployError>(error))
        .or_else(|| hint_of_type::<run::RunError>(error))
}
