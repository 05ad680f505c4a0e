//! What runs inside the built image at container start. Shares nothing with
//! the build but the weights manifest types.

pub mod prefetch;
