//! Running a built image on this machine without a daemon (`imgbake run`):
//! its layers unpacked by our own reader into a runc bundle (`unpack`),
//! the bundle's runtime spec written from the image config
//! (`runtime_spec`), the container driven under runc or crun (`runc`), and
//! Python's import profile read from its output (`importtime`).

pub mod importtime;
pub mod phases;
pub mod runc;
pub mod runtime_spec;
pub mod unpack;

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGINT / SIGTERM once [`catch_interrupts`] is called; the long
/// steps (unpacking, waiting for the health endpoint) stop when they see it,
/// so the container is deleted and the bundle removed on Ctrl-C.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into [`INTERRUPTED`] for the rest of the process.
pub fn catch_interrupts() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}
