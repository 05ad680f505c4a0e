//! Registry credentials and the two challenge schemes of the distribution
//! spec: Basic, and Bearer tokens from a token service.
//!
//! Credentials come from, first to last: the client's explicit options, the
//! `IMGBAKE_REGISTRY_USERNAME` / `IMGBAKE_REGISTRY_PASSWORD` environment
//! variables, then `auths.<host>.auth` of `$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`. They are never logged and never put in an error
//! message: `Credentials`' `Debug` prints only the user name.

use base64::Engine;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// User name for every registry, overriding the Docker config file.
pub const ENV_REGISTRY_USERNAME: &str = "IMGBAKE_REGISTRY_USERNAME";
/// Password or token that goes with [`ENV_REGISTRY_USERNAME`].
pub const ENV_REGISTRY_PASSWORD: &str = "IMGBAKE_REGISTRY_PASSWORD";
/// Docker's own variable: the directory holding `config.json`.
pub const ENV_DOCKER_CONFIG: &str = "DOCKER_CONFIG";

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials { username: username.into(), password: password.into() }
    }

    /// The value of an `Authorization: Basic …` header.
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }

    /// From the environment, when both variables are set and non-empty.
    pub fn from_env() -> Option<Credentials> {
        let username = std::env::var(ENV_REGISTRY_USERNAME).ok()?;
        let password = std::env::var(ENV_REGISTRY_PASSWORD).ok()?;
        (!username.is_empty()).then(|| Credentials::new(username, password))
    }

    /// From the Docker config file, for `registry` (`host[:port]`).
    pub fn from_docker_config(registry: &str) -> Option<Credentials> {
        let path = docker_config_path()?;
        let text = std::fs::read_to_string(path).ok()?;
        from_docker_config_text(&text, registry)
    }

    /// Environment first, then the Docker config file.
    pub fn ambient(registry: &str) -> Option<Credentials> {
        Credentials::from_env().or_else(|| Credentials::from_docker_config(registry))
    }
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV_DOCKER_CONFIG) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

/// Looks `registry` up in a Docker `config.json` text. Docker Hub's entry is
/// keyed `https://index.docker.io/v1/`; other keys may carry a scheme.
pub fn from_docker_config_text(text: &str, registry: &str) -> Option<Credentials> {
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
    }
    let config: Config = serde_json::from_str(text).ok()?;
    let wanted = normalize_host(registry);
    let entry = config.auths.iter().find(|(key, _)| normalize_host(key) == wanted)?.1;
    let decoded = base64::engine::general_purpose::STANDARD.decode(entry.auth.as_deref()?.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some(Credentials::new(username, password))
}

fn normalize_host(key: &str) -> String {
    let host = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// One `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

impl Challenge {
    /// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    }
}

/// `key="value", key=value` pairs; quoted values may contain commas (scopes do).
fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    params
}

/// The token service's answer; Docker Hub sends `token`, others `access_token`.
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    pub token: Option<String>,
    pub access_token: Option<String>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<String> {
        self.token.or(self.access_token).filter(|token| !token.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge_with_commas_in_scope() {
        let challenge = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            challenge,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/debian:pull,push".into()),
            }
        );
        assert_eq!(Challenge::parse(r#"Basic realm="imgbake""#), Some(Challenge::Basic));
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn reads_docker_config_auths() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:with:colons");
        let text = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}}, "127.0.0.1:5000": {{"auth": "{auth}"}}}}}}"#
        );
        let hub = from_docker_config_text(&text, "registry-1.docker.io").unwrap();
        assert_eq!(hub, Credentials::new("alice", "s3cret:with:colons"));
        assert!(from_docker_config_text(&text, "127.0.0.1:5000").is_some());
        assert!(from_docker_config_text(&text, "ghcr.io").is_none());
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", Credentials::new("alice", "hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
