//! Plumbing every module needs and none owns, written once: atomic file
//! writes (`fs`), the retry policy for network calls (`retry`), the HTTP
//! client setup (`http`), error chains with hints (`errors`), sizes for
//! people (`units`), whether this process is root (`process`) and where a
//! command's time went (`timeline`).

pub mod errors;
pub mod fs;
pub mod http;
pub mod process;
pub mod retry;
pub mod timeline;
pub mod units;
