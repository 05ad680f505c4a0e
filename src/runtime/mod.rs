//! What runs inside the built image at container start. Shares nothing with
//! the build but the weights manifest types.

pub mod download;
pub mod events;
pub mod prefetch;
pub mod remote;
