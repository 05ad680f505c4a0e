//! Dependencies resolved and installed on the build machine, without a
//! container: Python wheels (uv or pip) and conda packages (rattler).

pub mod conda;
pub mod python;
