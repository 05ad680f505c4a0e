//! Which archive to read: the distribution from the base's `/etc/os-release`
//! and the suites/components/mirrors from its apt sources (one-line
//! `sources.list` or deb822 `*.sources`), with `IMGBAKE_APT_MIRROR` replacing
//! the main archive's URI.

use super::control::parse_paragraphs;
use super::AptError;

/// Replaces the URI of the distribution's main archive (not the security
/// archive), e.g. `http://127.0.0.1:8080/debian` or a local mirror.
pub const APT_MIRROR_ENV: &str = "IMGBAKE_APT_MIRROR";

/// The distribution of the base, from `/etc/os-release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    /// `debian` or `ubuntu`.
    pub id: String,
    /// `bookworm`, `noble`, …
    pub codename: String,
}

/// One suite of one archive: `{uri}/dists/{suite}/{component}/binary-{arch}/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
}

/// Reads ID and VERSION_CODENAME (or UBUNTU_CODENAME, or the codename in
/// parentheses of VERSION) from os-release text.
pub fn parse_os_release(text: &str) -> Result<Distribution, AptError> {
    let mut fields = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some((key, value)) = line.trim().split_once('=') {
            let value = value.trim().trim_matches('"').trim_matches('\'');
            fields.insert(key.trim(), value.to_string());
        }
    }
    let id = fields.get("ID").cloned().unwrap_or_default();
    let id_like = fields.get("ID_LIKE").cloned().unwrap_or_default();
    let family = if id == "debian" || id == "ubuntu" {
        id.clone()
    } else if id_like.split_whitespace().any(|like| like == "ubuntu") {
        "ubuntu".to_string()
    } else if id_like.split_whitespace().any(|like| like == "debian") {
        "debian".to_string()
    } else {
        return Err(AptError::UnsupportedBase {
            message: format!("/etc/os-release says ID={id:?}; apt packages need a Debian or Ubuntu base"),
        });
    };
    let codename = ["VERSION_CODENAME", "UBUNTU_CODENAME"]
        .iter()
        .find_map(|key| fields.get(key).filter(|value| !value.is_empty()).cloned())
        .or_else(|| {
            let version = fields.get("VERSION")?;
            let start = version.find('(')?;
            let end = version[start..].find(')')?;
            Some(version[start + 1..start + end].split_whitespace().next()?.to_lowercase())
        })
        .ok_or_else(|| AptError::UnsupportedBase {
            message: "/etc/os-release has no VERSION_CODENAME (a testing/sid base?); cannot pick a suite".into(),
        })?;
    Ok(Distribution { id: family, codename })
}

/// Parses apt sources (one-line and deb822 forms may be concatenated), keeps
/// `deb` (binary) entries only.
pub fn parse_sources(text: &str) -> Result<Vec<Source>, AptError> {
    let mut out = Vec::new();
    let mut deb822 = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("deb ").or_else(|| trimmed.strip_prefix("deb\t")) {
            // deb [option=value ...] uri suite [component ...]
            let rest = match rest.trim_start().strip_prefix('[') {
                Some(options) => options.split_once(']').map(|(_, after)| after).unwrap_or(""),
                None => rest,
            };
            let mut words = rest.split_whitespace();
            if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
                out.push(Source {
                    uri: uri.trim_end_matches('/').to_string(),
                    suite: suite.to_string(),
                    components: words.map(str::to_string).collect(),
                });
            }
        } else if trimmed.starts_with("deb-src") {
            continue;
        } else {
            deb822.push_str(line);
            deb822.push('\n');
        }
    }
    let paragraphs = parse_paragraphs(&deb822)
        .map_err(|error| AptError::UnsupportedBase { message: format!("apt sources of the base: {error}") })?;
    for paragraph in paragraphs {
        let types = paragraph.get("Types").unwrap_or("");
        if !types.split_whitespace().any(|t| t == "deb") || paragraph.get("Enabled") == Some("no") {
            continue;
        }
        let components: Vec<String> =
            paragraph.get("Components").unwrap_or("").split_whitespace().map(str::to_string).collect();
        for uri in paragraph.get("URIs").unwrap_or("").split_whitespace() {
            for suite in paragraph.get("Suites").unwrap_or("").split_whitespace() {
                out.push(Source {
                    uri: uri.trim_end_matches('/').to_string(),
                    suite: suite.to_string(),
                    components: components.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// The sources to read: the base's own when it lists any for its codename,
/// else the distribution's defaults (codename, -updates, security). The
/// mirror override replaces the URI of every non-security source.
pub fn select_sources(
    distribution: &Distribution,
    listed: Option<&str>,
    mirror_override: Option<&str>,
) -> Result<Vec<Source>, AptError> {
    let mut sources: Vec<Source> = match listed {
        Some(text) => parse_sources(text)?
            .into_iter()
            .filter(|source| source.suite.split('/').next().unwrap_or("").starts_with(&distribution.codename))
            .collect(),
        None => Vec::new(),
    };
    if sources.is_empty() {
        sources = default_sources(distribution);
    }
    if let Some(mirror) = mirror_override.map(|m| m.trim().trim_end_matches('/')).filter(|m| !m.is_empty()) {
        for source in &mut sources {
            if !is_security(distribution, source) {
                source.uri = mirror.to_string();
            }
        }
    }
    for source in &mut sources {
        if source.components.is_empty() {
            source.components.push("main".into());
        }
    }
    sources.sort();
    sources.dedup();
    Ok(sources)
}

fn is_security(distribution: &Distribution, source: &Source) -> bool {
    source.suite.ends_with("-security") && (distribution.id == "debian" || source.uri.contains("security"))
}

fn default_sources(distribution: &Distribution) -> Vec<Source> {
    let codename = &distribution.codename;
    let main = vec!["main".to_string()];
    if distribution.id == "ubuntu" {
        let uri = "http://archive.ubuntu.com/ubuntu".to_string();
        let security = "http://security.ubuntu.com/ubuntu".to_string();
        vec![
            Source { uri: uri.clone(), suite: codename.clone(), components: main.clone() },
            Source { uri, suite: format!("{codename}-updates"), components: main.clone() },
            Source { uri: security, suite: format!("{codename}-security"), components: main },
        ]
    } else {
        let uri = "http://deb.debian.org/debian".to_string();
        let security = "http://deb.debian.org/debian-security".to_string();
        vec![
            Source { uri: uri.clone(), suite: codename.clone(), components: main.clone() },
            Source { uri, suite: format!("{codename}-updates"), components: main.clone() },
            Source { uri: security, suite: format!("{codename}-security"), components: main },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
        VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";

    #[test]
    fn os_release_gives_family_and_codename() {
        assert_eq!(
            parse_os_release(BOOKWORM).unwrap(),
            Distribution { id: "debian".into(), codename: "bookworm".into() }
        );
        let mint = "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\nUBUNTU_CODENAME=noble\nVERSION_CODENAME=wilma\n";
        assert_eq!(parse_os_release(mint).unwrap().id, "ubuntu");
        let old = "ID=debian\nVERSION=\"9 (stretch)\"\n";
        assert_eq!(parse_os_release(old).unwrap().codename, "stretch");
        let error = parse_os_release("ID=alpine\nVERSION_ID=3.20\n").unwrap_err().to_string();
        assert!(error.contains("alpine") && error.contains("Debian or Ubuntu"), "{error}");
    }

    #[test]
    fn one_line_and_deb822_sources_both_parse() {
        let text = "# comment\ndeb [signed-by=/k.gpg arch=amd64] http://deb.debian.org/debian/ bookworm main contrib\n\
            deb-src http://deb.debian.org/debian bookworm main\n\n\
            Types: deb deb-src\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\
            Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
        let sources = parse_sources(text).unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].uri, "http://deb.debian.org/debian");
        assert_eq!(sources[0].components, ["main", "contrib"]);
        assert_eq!(sources[1].suite, "bookworm-security");
    }

    #[test]
    fn defaults_when_the_base_lists_nothing_and_the_override_spares_security() {
        let distribution = parse_os_release(BOOKWORM).unwrap();
        let sources = select_sources(&distribution, None, Some("https://mirror.example/debian/")).unwrap();
        let described: Vec<String> = sources.iter().map(|s| format!("{} {}", s.uri, s.suite)).collect();
        assert_eq!(
            described,
            [
                "http://deb.debian.org/debian-security bookworm-security",
                "https://mirror.example/debian bookworm",
                "https://mirror.example/debian bookworm-updates",
            ]
        );
        // Sources of another release are ignored; an only-listed suite is kept as is.
        let listed = "deb http://deb.debian.org/debian bookworm main\ndeb http://x/debian trixie main\n";
        let sources = select_sources(&distribution, Some(listed), None).unwrap();
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].suite, "bookworm");
    }
}
