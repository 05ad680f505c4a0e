//! Credentials for private package indexes and git hosts. They come from
//! where uv and pip read them — index URLs in the environment
//! (`UV_INDEX_URL`, `UV_EXTRA_INDEX_URL`, `UV_INDEX`, `PIP_INDEX_URL`,
//! `PIP_EXTRA_INDEX_URL`) and `https://user:token@host/…` URLs in the
//! requirements — and are kept in memory only: every URL recorded in the
//! lock, a layer or a message has them removed ([`super::redact_url`]), and
//! they are put back, by host, only on the request that needs them.

use std::collections::BTreeMap;

/// Environment variables whose values are index URLs (space-separated lists
/// for the `EXTRA` ones; `name=url` entries for `UV_INDEX`).
pub const INDEX_URL_ENVS: [&str; 5] =
    ["UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"];

/// `host[:port]` → `user[:password]`.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_host: BTreeMap<String, String>,
}

impl Credentials {
    /// From the environment and the given requirement texts (lines of
    /// requirements files and inline requirements).
    pub fn gather<'a>(texts: impl IntoIterator<Item = &'a str>) -> Credentials {
        let mut credentials = Credentials::default();
        for name in INDEX_URL_ENVS {
            if let Ok(value) = std::env::var(name) {
                credentials.add_text(&value);
            }
        }
        for text in texts {
            credentials.add_text(text);
        }
        credentials
    }

    /// Every `scheme://userinfo@host` in `text`.
    fn add_text(&mut self, text: &str) {
        for word in text.split(|c: char| c.is_whitespace() || c == '=' || c == '"' || c == '\'') {
            let word = word.strip_prefix("git+").unwrap_or(word);
            let Some((_, rest)) = word.split_once("://") else { continue };
            let authority = rest.split('/').next().unwrap_or_default();
            if let Some((userinfo, host)) = authority.rsplit_once('@') {
                if !userinfo.is_empty() && !host.is_empty() {
                    self.by_host.entry(host.to_string()).or_insert_with(|| userinfo.to_string());
                }
            }
        }
    }

    /// `url` with the credentials known for its host; unchanged when none are.
    pub fn apply(&self, url: &str) -> String {
        let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            return url.to_string();
        }
        match self.by_host.get(authority) {
            Some(userinfo) => format!("{scheme}://{userinfo}@{authority}{path}"),
            None => url.to_string(),
        }
    }

    /// An HTTP request for `url` with the credentials known for its host as
    /// basic auth (never in the URL, so no error message can show them).
    pub fn get(&self, client: &reqwest::blocking::Client, url: &str) -> reqwest::blocking::RequestBuilder {
        self.authorize(client.get(url), url)
    }

    /// A HEAD request for `url`, authorized like [`Credentials::get`].
    pub fn head(&self, client: &reqwest::blocking::Client, url: &str) -> reqwest::blocking::RequestBuilder {
        self.authorize(client.head(url), url)
    }

    fn authorize(&self, request: reqwest::blocking::RequestBuilder, url: &str) -> reqwest::blocking::RequestBuilder {
        let host = url.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or_default());
        match host.and_then(|host| self.by_host.get(host)) {
            Some(userinfo) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo.as_str(), None),
                };
                request.basic_auth(percent_decode(user), password.map(percent_decode))
            }
            None => request,
        }
    }

    /// `text` with every known secret, and any `://user:pass@` userinfo, removed.
    pub fn redact_text(&self, text: impl AsRef<str>) -> String {
        let mut out = text.as_ref().to_string();
        for userinfo in self.by_host.values() {
            out = out.replace(&format!("{userinfo}@"), "");
            let secret = userinfo.split_once(':').map_or(userinfo.as_str(), |(_, password)| password);
            if secret.len() >= 4 {
                out = out.replace(secret, "<redacted>");
            }
        }
        redact_userinfo(&out)
    }
}

/// `%40` → `@` and the like, as URL userinfo is written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex =
            bytes.get(index + 1..index + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes `user:pass@` after every `://` in free text (tool output).
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(index) = rest.find("://") {
        out.push_str(&rest[..index + 3]);
        rest = &rest[index + 3..];
        let end = rest.find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"').unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_put_back_by_host_and_never_printed() {
        let credentials = Credentials::gather([
            "--extra-index-url https://ci:s3cret@pypi.internal.example/simple\nrequests",
            "private-pkg @ git+https://oauth2:glpat-xyz@gitlab.example/org/pkg.git@v1",
        ]);
        assert_eq!(
            credentials.apply("https://pypi.internal.example/packages/x-1-py3-none-any.whl"),
            "https://ci:s3cret@pypi.internal.example/packages/x-1-py3-none-any.whl"
        );
        assert_eq!(
            credentials.apply("https://gitlab.example/org/pkg.git"),
            "https://oauth2:glpat-xyz@gitlab.example/org/pkg.git"
        );
        assert_eq!(credentials.apply("https://files.pythonhosted.org/x.whl"), "https://files.pythonhosted.org/x.whl");
        let shown =
            credentials.redact_text("fatal: could not read from https://oauth2:glpat-xyz@gitlab.example/org/pkg.git");
        assert_eq!(shown, "fatal: could not read from https://gitlab.example/org/pkg.git");
        assert!(!credentials.redact_text("token glpat-xyz@ leaked").contains("glpat-xyz"));
    }

    #[test]
    fn userinfo_is_cut_from_free_text() {
        assert_eq!(redact_userinfo("see https://a:b@h/x and http://h2/y"), "see https://h/x and http://h2/y");
        assert_eq!(redact_userinfo("no url here"), "no url here");
    }
}
