//! Shared helpers for integration tests: real tools on loopback, started and
//! stopped by the tests themselves.
#![allow(dead_code)]

pub mod azurite;
pub mod base_image;
pub mod data;
pub mod hub;
pub mod layout;
pub mod private_index;
pub mod registry;
pub mod s3;
pub mod tools;
