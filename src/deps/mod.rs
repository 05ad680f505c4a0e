//! Dependencies resolved and installed on the build machine, without a
//! container: Python wheels (uv or pip).

pub mod python;
