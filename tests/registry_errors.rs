//! Registry errors that say what happened and what to do, against a real
//! Debian `docker-registry` on loopback (plain HTTP, TLS with a test CA,
//! htpasswd) and tiny loopback servers for what it cannot answer (429).
//! Each test checks the one-line message and the hint; the CLI tests check
//! that `imgbake` prints them, and that credentials never show.

mod support;

use imgbake::registry::{
    CertificateProblem, CredentialSource, Credentials, ProgressMode, Reference, RegistryClient, RegistryClientOptions,
    RegistryError,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::registry::{fake_server, request_header, small_image, TestCertificate, TestRegistry};
use support::tools::run_with_timeout;

/// No insecure hosts listed: what a user gets by default.
fn options() -> RegistryClientOptions {
    RegistryClientOptions {
        ambient_credentials: false,
        ca_certificates: Vec::new(),
        progress: ProgressMode::Quiet,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        max_retries: 2,
        ..Default::default()
    }
}

fn client_with(options: RegistryClientOptions) -> RegistryClient {
    RegistryClient::new(options).unwrap()
}

fn reference(text: &str) -> Reference {
    text.parse().unwrap()
}

/// Pushes a small image to `target` over whatever scheme the client picks.
fn push_small_image(client: &RegistryClient, target: &Reference) {
    let work = tempfile::tempdir().unwrap();
    let image = small_image(&work.path().join("blobs"), &format!("{target}\n"));
    client.push_image(&image, target).unwrap();
}

/// A plain-HTTP registry on 127.0.0.1 or `localhost` needs no
/// `--insecure-registry`: HTTPS gets an HTTP answer, the client switches to
/// plain HTTP for that registry and keeps it for later requests.
#[test]
fn loopback_plain_http_registry_falls_back_to_http() {
    let registry = TestRegistry::start();
    for host in [registry.host(), registry.localhost()] {
        let client = client_with(options());
        assert_eq!(client.scheme(&host), "https");
        let target = reference(&format!("{host}/fallback/app:v1"));
        push_small_image(&client, &target);
        assert_eq!(client.scheme(&host), "http", "{host}: the fallback is remembered");
        let fetched = client.fetch_manifest(&target).unwrap();
        assert_eq!(fetched.media_type, imgbake::registry::manifest::OCI_MANIFEST);
        assert_eq!(client.stats().retries, 0, "{host}: a fallback is not a retry");
    }
}

/// Certificates from a CA nobody trusts are refused at once (not retried,
/// no fallback to HTTP on loopback), with a hint naming SSL_CERT_FILE; with
/// the CA trusted the same registry works over HTTPS.
#[test]
fn tls_registry_with_unknown_ca_is_refused_with_a_hint() {
    let certificate = TestCertificate::issue(&["IP:127.0.0.1", "DNS:localhost"]);
    let registry = TestRegistry::start_tls(&certificate);
    let host = registry.host();
    let client = client_with(options());
    let error = client.fetch_manifest(&reference(&format!("{host}/tls/app:v1"))).unwrap_err();
    assert!(
        matches!(&error, RegistryError::Certificate { problem: CertificateProblem::UnknownIssuer, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "the TLS certificate of registry {host} is not accepted: it is self-signed or signed by an unknown authority"
        )
    );
    assert_eq!(
        error.hint().unwrap(),
        format!("if {host} uses a private CA, point SSL_CERT_FILE at a PEM file holding that CA's certificate")
    );
    assert!(!error.is_retryable());
    assert_eq!(client.stats().retries, 0);
    assert_eq!(client.scheme(&host), "https");

    let trusted = client_with(RegistryClientOptions { ca_certificates: vec![certificate.ca.clone()], ..options() });
    push_small_image(&trusted, &reference(&format!("{host}/tls/app:v1")));
    assert_eq!(trusted.scheme(&host), "https");
}

#[test]
fn tls_certificate_for_another_name_is_wrong_host() {
    let certificate = TestCertificate::issue(&["DNS:registry.imgbake.test"]);
    let registry = TestRegistry::start_tls(&certificate);
    let host = registry.host();
    let client = client_with(RegistryClientOptions { ca_certificates: vec![certificate.ca.clone()], ..options() });
    let error = client.fetch_manifest(&reference(&format!("{host}/tls/app:v1"))).unwrap_err();
    assert!(matches!(&error, RegistryError::Certificate { problem: CertificateProblem::WrongHost, .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("the TLS certificate of registry {host} is not accepted: it is issued for another host name")
    );
    assert_eq!(
        error.hint().unwrap(),
        "reach the registry by a name its certificate lists, or reissue the certificate with `127.0.0.1` as a subjectAltName"
    );
    assert_eq!(client.stats().retries, 0);
}

/// An expired certificate from a trusted CA is named as expired, not as an
/// unknown authority, and is not retried.
#[test]
fn tls_certificate_that_expired_says_so() {
    let certificate = TestCertificate::issue_valid_for(&["IP:127.0.0.1", "DNS:localhost"], -1);
    let registry = TestRegistry::start_tls(&certificate);
    let host = registry.host();
    let client = client_with(RegistryClientOptions { ca_certificates: vec![certificate.ca.clone()], ..options() });
    let error = client.fetch_manifest(&reference(&format!("{host}/tls/app:v1"))).unwrap_err();
    assert!(matches!(&error, RegistryError::Certificate { problem: CertificateProblem::Expired, .. }), "{error:?}");
    assert_eq!(error.to_string(), format!("the TLS certificate of registry {host} is not accepted: it has expired"));
    assert_eq!(error.hint().unwrap(), format!("renew the certificate of {host}, and check this machine's clock"));
    assert_eq!(client.stats().retries, 0);
}

/// `.invalid` never resolves (RFC 2606): the DNS failure is named, with a
/// hint, whether the resolver says "no such name" or does not answer.
#[test]
fn unknown_host_is_a_dns_failure() {
    let client = client_with(RegistryClientOptions { max_retries: 0, ..options() });
    let error = client.fetch_manifest(&reference("registry.imgbake.invalid/team/app:v1")).unwrap_err();
    assert!(matches!(&error, RegistryError::HostNotFound { .. }), "{error:?}");
    assert_eq!(error.to_string(), "cannot resolve the host name of registry registry.imgbake.invalid");
    assert_eq!(
        error.hint().unwrap(),
        "check the spelling of `registry.imgbake.invalid` in the image reference, and this machine's DNS"
    );
}

/// NAME_UNKNOWN (no such repository) and MANIFEST_UNKNOWN (no such tag)
/// are told apart, each with its own hint.
#[test]
fn missing_repository_and_missing_tag_are_told_apart() {
    let registry = TestRegistry::start();
    let host = registry.host();
    let client = client_with(options());
    let error = client.fetch_manifest(&reference(&format!("{host}/no/such-repo:v1"))).unwrap_err();
    assert!(matches!(&error, RegistryError::RepositoryUnknown { .. }), "{error:?}");
    assert_eq!(error.to_string(), format!("repository {host}/no/such-repo not found"));
    assert_eq!(
        error.hint().unwrap(),
        format!(
            "check the repository path `no/such-repo`: {host} has nothing under that name (a private repository may also need a login)"
        )
    );

    push_small_image(&client, &reference(&format!("{host}/team/app:v1")));
    let missing_tag = reference(&format!("{host}/team/app:v2"));
    let error = client.fetch_manifest(&missing_tag).unwrap_err();
    assert!(matches!(&error, RegistryError::ManifestUnknown { .. }), "{error:?}");
    assert_eq!(error.to_string(), format!("manifest {host}/team/app:v2 not found"));
    assert_eq!(
        error.hint().unwrap(),
        format!("check the tag or digest; `skopeo list-tags docker://{host}/team/app` lists the tags")
    );
    assert!(!error.is_retryable());
}

/// A 401 names where the refused credentials came from; the password
/// never shows.
#[test]
fn refused_credentials_name_their_source() {
    let registry = TestRegistry::start_with_htpasswd("builder", "correct horse");
    let host = registry.host();
    let target = reference(&format!("{host}/private/app:v1"));

    let error = client_with(options()).fetch_manifest(&target).unwrap_err();
    assert!(
        matches!(&error, RegistryError::Unauthorized { status: 401, credential: CredentialSource::None, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("registry {host} denied access to private/app (HTTP 401) without credentials")
    );
    assert_eq!(
        error.hint().unwrap(),
        format!("log in with `docker login {host}`, or set IMGBAKE_REGISTRY_USERNAME and IMGBAKE_REGISTRY_PASSWORD")
    );

    let mut wrong = options();
    wrong.credentials.insert(host.clone(), Credentials::new("builder", "wrong password"));
    let error = client_with(wrong).fetch_manifest(&target).unwrap_err();
    assert!(matches!(&error, RegistryError::Unauthorized { credential: CredentialSource::Options, .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("registry {host} denied access to private/app (HTTP 401) with the credentials configured for it")
    );
    assert!(!format!("{error} {error:?} {}", error.hint().unwrap()).contains("wrong password"));
}

/// A 403 with credentials that the registry recognised (GHCR and ECR answer
/// so for a repository the account cannot read) names the credentials'
/// source and says the permission is missing, not the login.
#[test]
fn forbidden_names_the_missing_permission() {
    let body = br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
    let (host, _server) = fake_server(move |request| {
        if request.to_ascii_lowercase().contains("\r\nauthorization: basic") {
            ("403 Forbidden", String::new(), body.to_vec())
        } else {
            ("401 Unauthorized", "WWW-Authenticate: Basic realm=\"registry\"\r\n".into(), Vec::new())
        }
    });
    let mut with_credentials = options();
    with_credentials.credentials.insert(host.clone(), Credentials::new("builder", "secret-pw"));
    let error = client_with(with_credentials).fetch_manifest(&reference(&format!("{host}/team/app:v1"))).unwrap_err();
    assert!(
        matches!(&error, RegistryError::Unauthorized { status: 403, credential: CredentialSource::Options, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("registry {host} denied access to team/app (HTTP 403) with the credentials configured for it")
    );
    assert_eq!(
        error.hint().unwrap(),
        "the credentials were recognised but give no access to this repository: check their permissions on it"
    );
    assert!(!format!("{error} {error:?}").contains("secret-pw"));
}

/// 429 with Docker Hub's error body and a long Retry-After: not retried
/// (waiting an hour is not a retry), reported with the wait and the code.
/// A short Retry-After is honoured within the retry budget.
#[test]
fn rate_limit_names_the_wait_and_the_code() {
    let body = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#;
    let (host, _server) =
        fake_server(move |_request| ("429 Too Many Requests", "Retry-After: 3600\r\n".into(), body.to_vec()));
    let client = client_with(options());
    let error = client.fetch_manifest(&reference(&format!("{host}/limited/app:v1"))).unwrap_err();
    match &error {
        RegistryError::RateLimited { status: 429, retry_after, detail: Some(detail), .. } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(3600)));
            assert_eq!(detail.code, "TOOMANYREQUESTS");
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(client.stats().retries, 0);
    assert_eq!(error.to_string(), format!("registry {host} is rate-limiting requests (HTTP 429)"));
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert_eq!(cause, "TOOMANYREQUESTS: You have reached your pull rate limit.");
    assert_eq!(error.hint().unwrap(), "wait 60 min (the registry's Retry-After) and try again");
    assert!(error.is_retryable());

    let (host, _server) = fake_server(|_request| ("429 Too Many Requests", "Retry-After: 0\r\n".into(), Vec::new()));
    let client = client_with(options());
    let error = client.fetch_manifest(&reference(&format!("{host}/limited/app:v1"))).unwrap_err();
    assert!(matches!(&error, RegistryError::RateLimited { detail: None, .. }), "{error:?}");
    assert_eq!(client.stats().retries, 2);
    assert_eq!(error.hint().unwrap(), "wait 0 s (the registry's Retry-After) and try again");
}

/// An identity token (`<token>` user name) is traded at the token service
/// with the OAuth2 refresh-token grant, as docker does.
#[test]
fn identity_token_uses_the_refresh_token_grant() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let realm_host = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let realm_for_server = realm_host.clone();
    let (host, _server) = fake_server(move |request| {
        let mut parts = request.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if path.starts_with("/token") {
            // The form body arrives after the head; the grant is a POST.
            if method == "POST" && request_header(request, "content-type").is_some_and(|t| t.contains("form")) {
                ("200 OK", String::new(), br#"{"access_token":"from-refresh"}"#.to_vec())
            } else {
                ("401 Unauthorized", String::new(), Vec::new())
            }
        } else if request_header(request, "authorization").as_deref() == Some("Bearer from-refresh") {
            ("200 OK", format!("Content-Type: {}\r\n", imgbake::registry::manifest::OCI_MANIFEST), manifest.to_vec())
        } else {
            let realm = format!("http://{}/token", realm_for_server.get().unwrap());
            ("401 Unauthorized", format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"test\"\r\n"), Vec::new())
        }
    });
    realm_host.set(host.clone()).unwrap();
    let mut with_token = options();
    with_token.credentials.insert(host.clone(), Credentials::identity_token("refresh-123"));
    let fetched = client_with(with_token).fetch_manifest(&reference(&format!("{host}/ml/model:v1"))).unwrap();
    assert_eq!(fetched.bytes, manifest.to_vec());
}

// ----- through the CLI: DOCKER_CONFIG, credential helpers on PATH, hints printed -----

/// A project `imgbake lock` can read; the base comes from `--base`.
fn project(dir: &Path) -> PathBuf {
    let project = dir.join("app");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("cerebrium.toml"),
        "[cerebrium.deployment]\nname = \"registry-errors\"\n\n[cerebrium.runtime.custom]\nport = 8080\n\
         entrypoint = [\"python3\", \"server.py\"]\n",
    )
    .unwrap();
    std::fs::write(project.join("server.py"), "print('hi')\n").unwrap();
    project
}

/// `imgbake lock --base <base>` with `DOCKER_CONFIG=<docker_config>` and
/// `<bin>` first on PATH; returns stderr (the command must fail).
fn lock_fails(base: &str, dir: &Path, docker_config: &Path, bin: Option<&Path>, env: &[(&str, &str)]) -> String {
    let path = match bin {
        Some(bin) => format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()),
        None => std::env::var("PATH").unwrap_or_default(),
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgbake"));
    command
        .args(["lock", project(dir).to_str().unwrap(), "--base", base, "--cache-dir"])
        .arg(dir.join("cache"))
        .env("DOCKER_CONFIG", docker_config)
        .env("PATH", path)
        .env_remove("IMGBAKE_REGISTRY_USERNAME")
        .env_remove("IMGBAKE_REGISTRY_PASSWORD")
        .env_remove("SSL_CERT_FILE");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = run_with_timeout(&mut command, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}

fn write_docker_config(dir: &Path, json: &str) -> PathBuf {
    let config_dir = dir.join("docker");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(config_dir.join("config.json"), json).unwrap();
    config_dir
}

/// A `docker-credential-<name>` script in `<dir>/bin` running `body` (sh).
fn write_helper(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[test]
fn cli_names_the_docker_config_or_env_credentials_that_were_refused() {
    let registry = TestRegistry::start_with_htpasswd("builder", "correct horse");
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{host}/private/base:v1");
    let config = write_docker_config(
        dir.path(),
        &format!(r#"{{"auths": {{"{host}": {{"auth": "{}"}}}}}}"#, basic_auth("builder", "stale-password")),
    );
    let stderr = lock_fails(&base, dir.path(), &config, None, &[]);
    let config_file = config.join("config.json");
    assert!(stderr.contains(&format!("error: cannot pull the base image {base}")), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Caused by: registry {host} denied access to private/base (HTTP 401) with the credentials in `{}`",
            config_file.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "hint: the entry for {host} in `{}` was rejected: run `docker login {host}` again",
            config_file.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("stale-password"), "{stderr}");

    let stderr = lock_fails(
        &base,
        dir.path(),
        &config,
        None,
        &[("IMGBAKE_REGISTRY_USERNAME", "builder"), ("IMGBAKE_REGISTRY_PASSWORD", "env-secret")],
    );
    assert!(
        stderr.contains("(HTTP 401) with the credentials of IMGBAKE_REGISTRY_USERNAME and IMGBAKE_REGISTRY_PASSWORD"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: check IMGBAKE_REGISTRY_USERNAME and IMGBAKE_REGISTRY_PASSWORD"), "{stderr}");
    assert!(!stderr.contains("env-secret"), "{stderr}");
}

/// `credsStore` runs `docker-credential-<name> get` with the server on
/// stdin; its credentials get through (the base's tag is missing, so the
/// error is the 404, not a 401); a helper that fails, is missing or holds
/// rejected credentials is named with a hint.
#[test]
fn cli_runs_credential_helpers_as_docker_does() {
    let registry = TestRegistry::start_with_htpasswd("builder", "correct horse");
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let mut pusher = options();
    pusher.credentials.insert(host.clone(), Credentials::new("builder", "correct horse"));
    push_small_image(&client_with(pusher), &reference(&format!("{host}/private/base:v1")));
    let missing_tag = format!("{host}/private/base:v2");

    let asked = dir.path().join("asked");
    let bin = write_helper(
        dir.path(),
        "imgbaketest",
        &format!(
            "[ \"$1\" = get ] || exit 3\nread server\necho \"$server\" > {}\n\
             echo '{{\"ServerURL\":\"'$server'\",\"Username\":\"builder\",\"Secret\":\"correct horse\"}}'",
            asked.display()
        ),
    );
    let config = write_docker_config(dir.path(), r#"{"credsStore": "imgbaketest"}"#);
    let stderr = lock_fails(&missing_tag, dir.path(), &config, Some(&bin), &[]);
    assert!(stderr.contains(&format!("Caused by: manifest {missing_tag} not found")), "{stderr}");
    assert_eq!(std::fs::read_to_string(&asked).unwrap().trim(), host);
    assert!(!stderr.contains("correct horse"), "{stderr}");

    // credHelpers wins over credsStore for its host; this one holds a stale password.
    let bin = write_helper(
        dir.path(),
        "stale",
        "read server\necho '{\"ServerURL\":\"'$server'\",\"Username\":\"builder\",\"Secret\":\"old horse\"}'",
    );
    let config = write_docker_config(
        dir.path(),
        &format!(r#"{{"credsStore": "imgbaketest", "credHelpers": {{"{host}": "stale"}}}}"#),
    );
    let stderr = lock_fails(&missing_tag, dir.path(), &config, Some(&bin), &[]);
    assert!(
        stderr.contains("(HTTP 401) with the credentials of credential helper docker-credential-stale"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "hint: docker-credential-stale holds credentials that {host} rejected: run `docker login {host}` to store new ones"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("old horse"), "{stderr}");

    let bin = write_helper(dir.path(), "broken", "echo 'keyring is locked'\nexit 1");
    let config = write_docker_config(dir.path(), r#"{"credsStore": "broken"}"#);
    let stderr = lock_fails(&missing_tag, dir.path(), &config, Some(&bin), &[]);
    assert!(
        stderr.contains(&format!(
            "credential helper docker-credential-broken failed for registry {host}: it exited with status 1: keyring is locked"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "hint: run `echo {host} | docker-credential-broken get` to see what it says; `docker login {host}` stores new credentials"
        )),
        "{stderr}"
    );

    let config = write_docker_config(dir.path(), r#"{"credsStore": "imgbake-missing"}"#);
    let stderr = lock_fails(&missing_tag, dir.path(), &config, None, &[]);
    assert!(
        stderr.contains(&format!(
            "credential helper docker-credential-imgbake-missing failed for registry {host}: it is not installed (not found on PATH)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "hint: install docker-credential-imgbake-missing on PATH, or remove it from `credsStore` / `credHelpers` in `{}`",
            config.join("config.json").display()
        )),
        "{stderr}"
    );

    // "credentials not found" is no credentials, as in docker: an anonymous 401.
    let bin = write_helper(dir.path(), "empty", "echo 'credentials not found in native keychain'\nexit 1");
    let config = write_docker_config(dir.path(), r#"{"credsStore": "empty"}"#);
    let stderr = lock_fails(&missing_tag, dir.path(), &config, Some(&bin), &[]);
    assert!(stderr.contains("(HTTP 401) without credentials"), "{stderr}");
    assert!(stderr.contains(&format!("hint: log in with `docker login {host}`")), "{stderr}");
}
