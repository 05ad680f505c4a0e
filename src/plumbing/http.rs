//! The one HTTP client setup: user agent `imgbake/<version>`, a connect
//! timeout and a request timeout, rustls, and what reqwest does by default
//! (proxies from `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`, hickory DNS,
//! up to 10 redirects). Callers add what is theirs (extra root
//! certificates, no redirects, another resolver) and build.

use std::time::Duration;

pub const USER_AGENT: &str = concat!("imgbake/", env!("CARGO_PKG_VERSION"));

/// A blocking client. In the blocking client `timeout` bounds each
/// request, body reads included.
pub fn blocking(connect_timeout: Duration, timeout: Duration) -> reqwest::blocking::ClientBuilder {
    reqwest::blocking::Client::builder().user_agent(USER_AGENT).connect_timeout(connect_timeout).timeout(timeout)
}

/// An async client (streamed uploads), with no overall timeout: the caller
/// bounds each request.
pub fn asynchronous(connect_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder().user_agent(USER_AGENT).connect_timeout(connect_timeout)
}
