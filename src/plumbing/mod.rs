//! Plumbing every module needs and none owns, written once: atomic file
//! writes (`fs`), the retry policy for network calls (`retry`), the HTTP
//! client setup (`http`) and error chains with hints (`errors`).

pub mod errors;
pub mod fs;
pub mod http;
pub mod retry;
