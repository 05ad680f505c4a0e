//! Registry credentials and the two challenge schemes of the distribution
//! spec: Basic, and Bearer tokens from a token service.
//!
//! Credentials come from, first to last: the client's explicit options, the
//! `IMGBAKE_REGISTRY_USERNAME` / `IMGBAKE_REGISTRY_PASSWORD` environment
//! variables, then `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`
//! read as docker reads it: `credHelpers.<host>`, else `credsStore` (a
//! `docker-credential-<name>` program, see `credential_helper`), else
//! `auths.<host>` (`auth` or `identitytoken`). Each lookup also says where
//! the credentials came from ([`CredentialSource`]) so that a refusal can
//! name it. Credentials are never logged and never put in an error
//! message: `Credentials`' `Debug` prints only the user name.

use super::credential_helper::{self, HelperProblem};
use super::error::RegistryError;
use super::reference::DOCKER_HUB_REGISTRY;
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

/// The user name docker's credential helpers (and `identitytoken` entries)
/// use to say that the secret is an OAuth2 refresh token, not a password.
pub const IDENTITY_TOKEN_USERNAME: &str = "<token>";

/// The key Docker Hub's credentials are stored under in docker's config.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials { username: username.into(), password: password.into() }
    }

    /// An identity (refresh) token, traded for an access token at the
    /// registry's token service.
    pub fn identity_token(token: impl Into<String>) -> Credentials {
        Credentials::new(IDENTITY_TOKEN_USERNAME, token)
    }

    pub fn is_identity_token(&self) -> bool {
        self.username == IDENTITY_TOKEN_USERNAME
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

    /// From the Docker config file, for `registry` (`host[:port]`): its
    /// credential helper when it names one, else its `auths` entry.
    pub fn from_docker_config(registry: &str) -> Result<Option<(Credentials, CredentialSource)>, RegistryError> {
        let Some(path) = docker_config_path() else {
            return Ok(None);
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let Some(config) = DockerConfig::parse(&text) else {
            return Ok(None);
        };
        match config.helper_for(registry) {
            Some(helper) => {
                let program = credential_helper::program_name(helper);
                let server = helper_server_url(registry);
                let fail = |problem: HelperProblem| RegistryError::CredentialHelper {
                    registry: registry.to_string(),
                    program: program.clone(),
                    config: path.clone(),
                    problem,
                };
                let found =
                    credential_helper::get(&program, &server, credential_helper::HELPER_TIMEOUT).map_err(fail)?;
                Ok(found.map(|credentials| (credentials, CredentialSource::Helper { program: program.clone() })))
            }
            None => Ok(config
                .auths_entry(registry)
                .map(|credentials| (credentials, CredentialSource::DockerConfig { path }))),
        }
    }

    /// Environment first, then the Docker config file.
    pub fn ambient(registry: &str) -> Result<Option<(Credentials, CredentialSource)>, RegistryError> {
        if let Some(credentials) = Credentials::from_env() {
            return Ok(Some((credentials, CredentialSource::Env)));
        }
        Credentials::from_docker_config(registry)
    }
}

/// Where the credentials sent to a registry came from; shown when the
/// registry refuses them, so the user knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Nothing was found: the request went anonymously.
    None,
    /// [`super::RegistryClientOptions::credentials`], set by the caller.
    Options,
    /// [`ENV_REGISTRY_USERNAME`] and [`ENV_REGISTRY_PASSWORD`].
    Env,
    /// An `auths` entry of this Docker config file.
    DockerConfig { path: PathBuf },
    /// A `docker-credential-<name>` program named by Docker's config.
    Helper { program: String },
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::None => write!(f, "without credentials"),
            CredentialSource::Options => write!(f, "with the credentials configured for it"),
            CredentialSource::Env => {
                write!(f, "with the credentials of {ENV_REGISTRY_USERNAME} and {ENV_REGISTRY_PASSWORD}")
            }
            CredentialSource::DockerConfig { path } => write!(f, "with the credentials in `{}`", path.display()),
            CredentialSource::Helper { program } => write!(f, "with the credentials of credential helper {program}"),
        }
    }
}

impl CredentialSource {
    /// What to do when `registry` refused these credentials (`forbidden`:
    /// HTTP 403, they were recognised but do not grant access).
    pub(crate) fn hint(&self, registry: &str, forbidden: bool) -> String {
        let login = format!("`docker login {registry}`");
        match self {
            CredentialSource::None => format!(
                "log in with {login}, or set {ENV_REGISTRY_USERNAME} and {ENV_REGISTRY_PASSWORD}"
            ),
            _ if forbidden => {
                "the credentials were recognised but give no access to this repository: check their permissions on it".to_string()
            }
            CredentialSource::Options => format!("check the credentials configured for {registry}"),
            CredentialSource::Env => format!(
                "check {ENV_REGISTRY_USERNAME} and {ENV_REGISTRY_PASSWORD} (they apply to every registry); unset them to use docker's config"
            ),
            CredentialSource::DockerConfig { path } => {
                format!("the entry for {registry} in `{}` was rejected: run {login} again", path.display())
            }
            CredentialSource::Helper { program } => {
                format!("{program} holds credentials that {registry} rejected: run {login} to store new ones")
            }
        }
    }
}

/// What a credential helper is asked for: docker's key for the registry.
fn helper_server_url(registry: &str) -> String {
    if normalize_host(registry) == "docker.io" {
        DOCKER_HUB_CONFIG_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// The parts of docker's `config.json` that hold or point at credentials.
#[derive(serde::Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    identitytoken: Option<String>,
}

impl DockerConfig {
    fn parse(text: &str) -> Option<DockerConfig> {
        serde_json::from_str(text).ok()
    }

    /// The helper docker would ask for `registry`: its `credHelpers` entry,
    /// else `credsStore`.
    fn helper_for(&self, registry: &str) -> Option<&str> {
        let wanted = normalize_host(registry);
        self.cred_helpers
            .iter()
            .find(|(key, _)| normalize_host(key) == wanted)
            .map(|(_, helper)| helper.as_str())
            .or(self.creds_store.as_deref())
            .filter(|helper| !helper.is_empty())
    }

    fn auths_entry(&self, registry: &str) -> Option<Credentials> {
        let wanted = normalize_host(registry);
        let entry = self.auths.iter().find(|(key, _)| normalize_host(key) == wanted)?.1;
        if let Some(token) = entry.identitytoken.as_deref().filter(|token| !token.is_empty()) {
            return Some(Credentials::identity_token(token));
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(entry.auth.as_deref()?.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (username, password) = decoded.split_once(':')?;
        Some(Credentials::new(username, password))
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV_DOCKER_CONFIG) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

/// Looks `registry` up in a Docker `config.json` text. Docker Hub's entry is
/// keyed `https://index.docker.io/v1/`; other keys may carry a scheme.
/// Only the `auths` entries: helpers are not run.
pub fn from_docker_config_text(text: &str, registry: &str) -> Option<Credentials> {
    DockerConfig::parse(text)?.auths_entry(registry)
}

fn normalize_host(key: &str) -> String {
    let host = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "docker.io" | "index.docker.io" | DOCKER_HUB_REGISTRY => "docker.io".to_string(),
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
    fn helper_choice_follows_docker() {
        let text = r#"{"credsStore": "desktop", "credHelpers": {"ghcr.io": "gh", "https://index.docker.io/v1/": "hub"},
                       "auths": {"127.0.0.1:5000": {"identitytoken": "refresh-me"}}}"#;
        let config = DockerConfig::parse(text).unwrap();
        assert_eq!(config.helper_for("ghcr.io"), Some("gh"));
        assert_eq!(config.helper_for("registry-1.docker.io"), Some("hub"));
        assert_eq!(config.helper_for("quay.io"), Some("desktop"));
        assert_eq!(helper_server_url("registry-1.docker.io"), DOCKER_HUB_CONFIG_KEY);
        assert_eq!(helper_server_url("127.0.0.1:5000"), "127.0.0.1:5000");
        let token = config.auths_entry("127.0.0.1:5000").unwrap();
        assert!(token.is_identity_token());
        assert_eq!(token.password, "refresh-me");
        assert!(DockerConfig::parse(r#"{"auths": {}}"#).unwrap().helper_for("quay.io").is_none());
    }

    #[test]
    fn refusals_name_the_source_and_what_to_fix() {
        let config = CredentialSource::DockerConfig { path: PathBuf::from("/home/u/.docker/config.json") };
        assert_eq!(config.to_string(), "with the credentials in `/home/u/.docker/config.json`");
        assert_eq!(
            config.hint("ghcr.io", false),
            "the entry for ghcr.io in `/home/u/.docker/config.json` was rejected: run `docker login ghcr.io` again"
        );
        // 403: the credentials work, the permission is missing.
        assert!(config.hint("ghcr.io", true).contains("give no access to this repository"));
        assert!(CredentialSource::None.hint("ghcr.io", true).starts_with("log in with `docker login ghcr.io`"));
        let helper = CredentialSource::Helper { program: "docker-credential-pass".into() };
        assert_eq!(helper.to_string(), "with the credentials of credential helper docker-credential-pass");
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", Credentials::new("alice", "hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
