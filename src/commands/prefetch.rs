//! `imgbake prefetch`: fill the volume from the manifest, then exec the app.
//! Exit status: 0 all files verified (and no command given); 1 a file could
//! not be fetched or verified — the app is not started; 2 usage; otherwise
//! the app's own status (the hook is replaced by the app). With
//! `--background` the app starts at once and a child process fetches; the
//! app learns the outcome from the ready file (docs/prefetch.md).

use super::{print_error, EXIT_INVALID_INPUT, EXIT_OK, EXIT_USAGE};
use crate::runtime::prefetch::{self, PrefetchOptions};

pub fn run(options: &PrefetchOptions) -> u8 {
    if options.background {
        if options.command.is_empty() {
            eprintln!("error: --background needs the app to start (`-- CMD ARGS...`)");
            return EXIT_USAGE;
        }
        if let Err(err) = prefetch::spawn_background(options) {
            print_error(&err);
            return EXIT_INVALID_INPUT;
        }
    } else {
        if let Err(err) = prefetch::run(options) {
            print_error(&err);
            return EXIT_INVALID_INPUT;
        }
        if options.command.is_empty() {
            return EXIT_OK;
        }
    }
    let err = prefetch::exec(&options.command);
    print_error(&err);
    EXIT_INVALID_INPUT
}
