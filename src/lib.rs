//! imgbake: deployment config → pinned, layered OCI image, with weights baked
//! or kept on a volume, and the cost of that choice.
//!
//! Data flow (one module each): `config` → `spec::Spec` → lock → plan →
//! `image` (layers, layout) | `registry` (push/pull) | dockerfile | report.

pub mod cli;
pub mod commands;
pub mod config;
pub mod cost;
pub mod deps;
pub mod dockerfile;
pub mod execute;
pub mod image;
pub mod lock;
pub mod plumbing;
pub mod registry;
pub mod resolve;
pub mod runtime;
pub mod spec;
pub mod weights;
