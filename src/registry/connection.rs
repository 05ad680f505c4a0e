//! What a failed connection to a registry means, and which registries may
//! be spoken to over plain HTTP without being listed.
//!
//! A `reqwest` error is classified by walking its cause chain down to the
//! typed error underneath (a rustls alert, a DNS resolver error, an I/O
//! error kind), never by matching message text.
//!
//! Loopback registries (`localhost`, `*.localhost`, 127.0.0.0/8, `::1`) are
//! tried over HTTPS first and fall back to plain HTTP when the TLS handshake
//! gets an HTTP answer, as docker and go-containerregistry do (ggcr's
//! `name.Registry.Scheme()` marks them `http`, and its transport pings
//! `https` before `http`). Any other host must be listed with
//! `--insecure-registry`: an HTTP answer there is an error, never a silent
//! downgrade.

use super::error::{CertificateProblem, RegistryError};
use crate::plumbing::errors::causes;
use std::net::IpAddr;

/// Whether `registry` (`host[:port]`) names this machine.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        // `[::1]:5000`
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => match registry.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => registry,
        },
    };
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|address| address.is_loopback())
}

/// The kinds of connection failure that get their own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The TLS handshake was answered with something that is not TLS
    /// (a plain-HTTP server's `HTTP/1.1 400`).
    PlainHttp,
    Certificate(CertificateProblem),
    /// The name does not resolve (`permanent`: the DNS said it does not
    /// exist, rather than timing out).
    HostNotFound {
        permanent: bool,
    },
    Refused,
    Other,
}

pub(crate) fn failure_of(error: &reqwest::Error) -> Failure {
    for cause in causes(error) {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidMessage(_) => Failure::PlainHttp,
                rustls::Error::InvalidCertificate(problem) => Failure::Certificate(certificate_problem(problem)),
                _ => Failure::Other,
            };
        }
        if let Some(dns) = cause.downcast_ref::<hickory_resolver::ResolveError>() {
            return Failure::HostNotFound { permanent: dns.is_nx_domain() || dns.is_no_records_found() };
        }
        if cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return Failure::Refused;
        }
    }
    Failure::Other
}

fn certificate_problem(error: &rustls::CertificateError) -> CertificateProblem {
    use rustls::CertificateError::*;
    match error {
        UnknownIssuer => CertificateProblem::UnknownIssuer,
        NotValidForName | NotValidForNameContext { .. } => CertificateProblem::WrongHost,
        Expired | ExpiredContext { .. } => CertificateProblem::Expired,
        NotValidYet | NotValidYetContext { .. } => CertificateProblem::NotYetValid,
        _ => CertificateProblem::Other,
    }
}

/// Worth sending again: connection refused/reset, timeouts, requests cut
/// off mid-way, DNS that did not answer. Not: TLS refusals and names the
/// DNS says do not exist, which fail the same way every time.
pub(crate) fn is_transient(error: &reqwest::Error) -> bool {
    match failure_of(error) {
        Failure::PlainHttp | Failure::Certificate(_) | Failure::HostNotFound { permanent: true } => return false,
        Failure::HostNotFound { permanent: false } | Failure::Refused | Failure::Other => {}
    }
    if crate::plumbing::retry::transient(error) {
        return true;
    }
    causes(error).into_iter().any(|cause| {
        use std::io::ErrorKind::*;
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | TimedOut)
        })
    })
}

/// The typed error for a request to `registry` that got no HTTP answer.
pub(crate) fn transport_error(registry: &str, error: reqwest::Error) -> RegistryError {
    let registry = registry.to_string();
    match failure_of(&error) {
        Failure::PlainHttp => RegistryError::PlainHttp { registry, source: error },
        Failure::Certificate(problem) => RegistryError::Certificate { registry, problem, source: error },
        Failure::HostNotFound { .. } => RegistryError::HostNotFound { registry, source: error },
        Failure::Refused => RegistryError::ConnectionRefused { registry, source: error },
        Failure::Other if error.is_connect() => RegistryError::Unreachable { registry, source: error },
        Failure::Other => RegistryError::Transfer { registry, source: Box::new(error) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real rustls failure against a server that answers HTTP: classified
    /// as PlainHttp, and for a host that is not loopback the hint names
    /// `--insecure-registry`.
    #[test]
    fn http_answer_to_a_tls_handshake_is_plain_http() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        });
        let client = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(10)).build().unwrap();
        let error = client.get(format!("https://{address}/v2/")).send().unwrap_err();
        server.join().unwrap();
        assert_eq!(failure_of(&error), Failure::PlainHttp, "{error:?}");
        assert!(!is_transient(&error));
        let error = transport_error("registry.example.com:5000", error);
        assert_eq!(
            error.to_string(),
            "registry registry.example.com:5000 answered the HTTPS handshake with plain HTTP"
        );
        assert_eq!(
            error.hint().unwrap(),
            "if registry.example.com:5000 is meant to be used over plain HTTP, pass `--insecure-registry registry.example.com:5000`"
        );
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:1",
            "reg.localhost:80",
            "127.0.0.1:5000",
            "127.3.2.1",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in
            ["registry.local:5000", "10.0.0.1:5000", "ghcr.io", "localhost.example.com", "128.0.0.1:5000", "[::2]:5000"]
        {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
