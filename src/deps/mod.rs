//! Dependencies resolved and installed on the build machine, without a
//! container, one module per package manager: Debian packages (apt),
//! Python wheels (uv or pip) and conda packages (rattler).

pub mod apt;
pub mod conda;
pub mod python;
