//! imgbake: deployment config → pinned, layered OCI image, with weights baked
//! or kept on a volume, and the cost of that choice.
//!
//! Data flow (one module each): `config` → `spec::Spec` → `resolve` (the
//! only network step) → `lock::Lock` → `layout` (the ImagePlan) →
//! `execute` (the native build, on `image` and `registry`) | `dockerfile`
//! | `cost` (the plan report); `commands` sequences them.

pub mod cli;
pub mod commands;
pub mod config;
pub mod container;
pub mod cost;
pub mod deploy;
pub mod deps;
pub mod dockerfile;
pub mod execute;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod layout;
pub mod lock;
pub mod plumbing;
pub mod pricing;
pub mod registry;
pub mod resolve;
pub mod runtime;
pub mod spec;
pub mod weights;
