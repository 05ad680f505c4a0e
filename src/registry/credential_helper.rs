//! Docker credential helpers, run as docker runs them: `docker-credential-<name>
//! get` with the registry's server URL on stdin, answering
//! `{"ServerURL", "Username", "Secret"}` on stdout (a `<token>` user name
//! means the secret is an identity token). A helper that exits non-zero
//! prints its error on stdout; "credentials not found" is not an error but
//! "no credentials", as in docker. The helper is bounded in time (a keyring
//! waiting to be unlocked must not hang a build), and its answer is never
//! put in an error message.

use super::auth::Credentials;
use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a helper may take to answer.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// Helpers' message for "nothing stored for this server" (docker-credential-helpers'
/// `ErrCredentialsNotFound`).
const NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";

/// What went wrong running a helper. Never holds what the helper answered
/// on success, only its error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperProblem {
    NotInstalled,
    Failed {
        status: String,
        message: String,
    },
    TimedOut(Duration),
    /// Its answer is not the JSON docker expects (the text is not kept: it
    /// may hold the secret).
    BadAnswer,
    CannotRun(String),
}

impl fmt::Display for HelperProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelperProblem::NotInstalled => write!(f, "it is not installed (not found on PATH)"),
            HelperProblem::Failed { status, message } if message.is_empty() => write!(f, "it exited with {status}"),
            HelperProblem::Failed { status, message } => write!(f, "it exited with {status}: {message}"),
            HelperProblem::TimedOut(limit) => write!(f, "it did not answer within {} s", limit.as_secs()),
            HelperProblem::BadAnswer => write!(f, "its answer is not the JSON `{{Username, Secret}}` docker expects"),
            HelperProblem::CannotRun(reason) => write!(f, "it cannot be started: {reason}"),
        }
    }
}

impl HelperProblem {
    pub(crate) fn hint(&self, registry: &str, program: &str, config: &Path) -> String {
        let by_hand = format!("`echo {registry} | {program} get`");
        match self {
            HelperProblem::NotInstalled | HelperProblem::CannotRun(_) => format!(
                "install {program} on PATH, or remove it from `credsStore` / `credHelpers` in `{}`",
                config.display()
            ),
            HelperProblem::Failed { .. } | HelperProblem::BadAnswer => {
                format!("run {by_hand} to see what it says; `docker login {registry}` stores new credentials")
            }
            HelperProblem::TimedOut(_) => format!(
                "it may be waiting for a keyring to unlock or a password prompt: unlock it, or run {by_hand} by hand"
            ),
        }
    }
}

/// `desktop` → `docker-credential-desktop`.
pub fn program_name(helper: &str) -> String {
    format!("docker-credential-{helper}")
}

/// Asks `program` for the credentials of `server_url`: `Ok(None)` when it
/// has none.
pub fn get(program: &str, server_url: &str, timeout: Duration) -> Result<Option<Credentials>, HelperProblem> {
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => HelperProblem::NotInstalled,
            _ => HelperProblem::CannotRun(error.to_string()),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading stdin is reported by its status.
        let _ = stdin.write_all(server_url.as_bytes());
    }
    // Read both pipes on threads so that a chatty helper cannot block on a
    // full pipe while we wait for it.
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(1024 * 1024).read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read_all(child.stdout.take().map(|pipe| Box::new(pipe) as Box<dyn Read + Send>));
    let stderr = read_all(child.stderr.take().map(|pipe| Box::new(pipe) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HelperProblem::TimedOut(timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(error) => return Err(HelperProblem::CannotRun(error.to_string())),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        let message = first_line(&stdout).or_else(|| first_line(&stderr)).unwrap_or_default();
        if message.contains(NOT_FOUND_MESSAGE) {
            return Ok(None);
        }
        let status = match status.code() {
            Some(code) => format!("status {code}"),
            None => "a signal".to_string(),
        };
        return Err(HelperProblem::Failed { status, message });
    }
    parse_answer(&stdout).map(Some)
}

/// `{"ServerURL": …, "Username": …, "Secret": …}` → credentials.
pub(crate) fn parse_answer(bytes: &[u8]) -> Result<Credentials, HelperProblem> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(bytes).map_err(|_| HelperProblem::BadAnswer)?;
    Ok(Credentials::new(answer.username, answer.secret))
}

/// The first non-empty line, cut to 200 characters.
fn first_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).find(|line| !line.is_empty())?;
    Some(line.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers_and_identity_tokens() {
        let plain = parse_answer(br#"{"ServerURL":"ghcr.io","Username":"alice","Secret":"pw"}"#).unwrap();
        assert_eq!(plain, Credentials::new("alice", "pw"));
        let token = parse_answer(br#"{"ServerURL":"ghcr.io","Username":"<token>","Secret":"refresh"}"#).unwrap();
        assert!(token.is_identity_token());
        assert_eq!(parse_answer(b"alice:pw"), Err(HelperProblem::BadAnswer));
    }

    /// A helper script in a temp dir, called by its path.
    fn helper(dir: &std::path::Path, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("docker-credential-test");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_str().unwrap().to_string()
    }

    #[test]
    fn runs_the_helper_with_the_server_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let program = helper(
            dir.path(),
            r#"[ "$1" = get ] || exit 3; read server; echo "{\"ServerURL\":\"$server\",\"Username\":\"u-$server\",\"Secret\":\"s\"}""#,
        );
        let found = get(&program, "ghcr.io", HELPER_TIMEOUT).unwrap().unwrap();
        assert_eq!(found, Credentials::new("u-ghcr.io", "s"));
    }

    #[test]
    fn not_found_is_none_and_failures_keep_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let program = helper(dir.path(), "echo 'credentials not found in native keychain'; exit 1");
        assert_eq!(get(&program, "ghcr.io", HELPER_TIMEOUT), Ok(None));
        let program = helper(dir.path(), "echo 'cannot reach the keyring' >&2; exit 2");
        let problem = get(&program, "ghcr.io", HELPER_TIMEOUT).unwrap_err();
        assert_eq!(problem.to_string(), "it exited with status 2: cannot reach the keyring");
    }

    #[test]
    fn a_hanging_helper_is_stopped_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let program = helper(dir.path(), "exec sleep 30");
        let started = Instant::now();
        let problem = get(&program, "ghcr.io", Duration::from_millis(300)).unwrap_err();
        assert_eq!(problem, HelperProblem::TimedOut(Duration::from_millis(300)));
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn missing_program_is_not_installed() {
        let problem = get("docker-credential-imgbake-no-such-helper", "ghcr.io", HELPER_TIMEOUT).unwrap_err();
        assert_eq!(problem, HelperProblem::NotInstalled);
    }
}
