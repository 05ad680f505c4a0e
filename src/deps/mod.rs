//! Dependencies resolved and installed natively into layers, one module per
//! package manager.

pub mod apt;
