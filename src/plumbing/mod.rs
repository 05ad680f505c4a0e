//! Plumbing every module needs and none owns, written once: atomic file
//! writes (`fs`), the retry policy for network calls (`retry`), the HTTP
//! client setup (`http`), error chains with hints (`errors`) and sizes
//! for people (`units`).

pub mod errors;
pub mod fs;
pub mod http;
pub mod retry;
pub mod units;
