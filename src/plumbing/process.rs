//! Facts about this process that more than one module asks for.

/// This process runs as root (effective user id 0): it may chroot and
/// mount; otherwise a user namespace is needed for that.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
