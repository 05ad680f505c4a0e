//! The fuzz targets' entry points: one function per parser that reads what
//! others wrote, each calling the function the product calls and checking
//! the invariants beyond "no panic" (a load → write → load round trip is
//! stable where a writer exists; errors of a positioned format carry a
//! position inside the input). `fuzz/` (cargo fuzz, nightly) and
//! `tests/fuzz_corpus.rs` (stable, replaying the saved corpus) both call
//! [`TARGETS`]; a violated invariant panics, which is what a fuzzer reports.

use std::io::Read;
use std::path::Path;

/// A target: its name (of its `fuzz/fuzz_targets/*.rs` and of its corpus
/// directory `fuzz/corpus/<name>/`) and its entry.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("cerebrium_toml", cerebrium_toml),
    ("truss_yaml", truss_yaml),
    ("imgbake_section", imgbake_section),
    ("weights_manifest", weights_manifest),
    ("oci_manifest", oci_manifest),
    ("oci_config", oci_config),
    ("docker_config", docker_config),
    ("registry_auth", registry_auth),
    ("hub_revision", hub_revision),
    ("object_secret", object_secret),
    ("apt_release", apt_release),
    ("apt_packages", apt_packages),
    ("deb_control", deb_control),
    ("deb_archive", deb_archive),
    ("conda_answer", conda_answer),
    ("pylock", pylock),
    ("pip_report", pip_report),
    ("lock_file", lock_file),
    ("profile", profile),
    ("base_layer", base_layer),
];

/// Runs target `name` on `data`; panics on an unknown name.
pub fn run(name: &str, data: &[u8]) {
    let (_, target) = TARGETS.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no fuzz target `{name}`"));
    target(data)
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A diagnostic's position names a line of `text` and a column on it. YAML
/// positions follow YAML's line breaks (a lone CR too), except libyaml's
/// reader errors (control characters), which are placed by `\n` lines from
/// a byte offset: either counting is accepted.
fn check_span(text: &str, diagnostic: &crate::config::diagnostics::Diagnostic) {
    let Some(span) = diagnostic.span else { return };
    let by_newline: Vec<&str> = text.split('\n').collect();
    let mut countings = vec![by_newline];
    if crate::config::detect_format(&diagnostic.file, text) == crate::spec::ConfigFormat::Truss {
        countings.push(crate::config::yaml_tree::yaml_lines(text));
    }
    let inside = |lines: &Vec<&str>| {
        span.line >= 1
            && span.line <= lines.len()
            && span.col >= 1
            && span.col <= lines[span.line - 1].chars().count() + 1
    };
    assert!(countings.iter().any(inside), "{diagnostic}: position outside the input");
}

/// Loads config text the way `imgbake validate` does; checks every diagnostic.
fn load_config(file: &str, text: &str) {
    // The project directory does not exist: a config names files relative to
    // it, and the loader only asks whether they are there.
    let file = Path::new("/nonexistent-imgbake-fuzz").join(file);
    let loaded = crate::config::load_text(&file, text);
    for diagnostic in &loaded.diagnostics {
        check_span(text, diagnostic);
        let _ = diagnostic.to_string();
    }
    assert_eq!(loaded.spec.is_some(), !loaded.diagnostics.iter().any(|d| d.is_error()));
}

/// A parse error of TOML or YAML text has a position.
fn check_parse_error(result: Result<(), crate::config::diagnostics::Diagnostic>, text: &str) {
    if let Err(diagnostic) = result {
        assert!(diagnostic.span.is_some(), "a parse error without a position: {diagnostic}");
        check_span(text, &diagnostic);
    }
}

pub fn cerebrium_toml(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let file = Path::new("cerebrium.toml");
    check_parse_error(crate::config::toml_tree::parse(file, text).map(|_| ()), text);
    load_config("cerebrium.toml", text);
}

pub fn truss_yaml(data: &[u8]) {
    let Some(text) = text(data) else { return };
    // The loader tells the format by content; a Truss file is YAML.
    if crate::config::detect_format(Path::new("config.yaml"), text) != crate::spec::ConfigFormat::Truss {
        return;
    }
    let file = Path::new("config.yaml");
    check_parse_error(crate::config::yaml_tree::parse(file, text).map(|_| ()), text);
    load_config("config.yaml", text);
}

/// The input is the body of an `[imgbake]` table of a minimal cerebrium.toml.
pub fn imgbake_section(data: &[u8]) {
    let Some(body) = text(data) else { return };
    let text = format!("[cerebrium.deployment]\nname = \"fuzz\"\n\n[imgbake]\n{body}");
    load_config("cerebrium.toml", &text);
}

pub fn weights_manifest(data: &[u8]) {
    use crate::weights::manifest::WeightsManifest;
    let Ok(manifest) = WeightsManifest::from_bytes(data) else { return };
    let written = manifest.to_bytes();
    let again = WeightsManifest::from_bytes(&written).expect("a written manifest reads back");
    assert_eq!(again, manifest);
    assert_eq!(again.to_bytes(), written);
}

/// Typed read → canonical bytes → typed read is stable.
fn oci_round_trip<T>(data: &[u8]) -> Option<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    use crate::image::oci::canonical_json;
    let typed = serde_json::from_slice::<T>(data).ok()?;
    if serde_json::from_slice::<serde_json::Value>(data).is_ok_and(|value| has_unstable_float(&value)) {
        // serde_json's default float parsing is not exactly round-trip for
        // numbers past u64 (docs/fuzzing.md): 3.333333333333334e48 reads
        // back as …3334e48.
        return Some(typed);
    }
    let written = canonical_json(&typed);
    let again: T = serde_json::from_slice(&written).expect("canonical bytes read back");
    assert_eq!(again, typed);
    assert_eq!(canonical_json(&again), written);
    Some(typed)
}

fn has_unstable_float(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(number) => number.as_f64().is_some_and(|f| {
            number.is_f64()
                && serde_json::from_str::<f64>(&serde_json::to_string(&f).unwrap_or_default()).ok() != Some(f)
        }),
        Value::Array(items) => items.iter().any(has_unstable_float),
        Value::Object(map) => map.values().any(has_unstable_float),
        _ => false,
    }
}

/// The typed document keeps every field of the untyped one: for the
/// documents imgbake copies from a base into its own (layer descriptors, the
/// image configuration).
fn keeps_fields<T>(untyped: &serde_json::Value, typed: &T)
where
    T: serde::Serialize,
{
    use crate::image::oci::canonical_json;
    assert_eq!(
        String::from_utf8_lossy(&canonical_json(typed)),
        String::from_utf8_lossy(&canonical_json(untyped)),
        "the typed document dropped or changed a field"
    );
}

/// What a registry answers to a manifest request: an index or a manifest.
/// Both are kept as the bytes fetched; the descriptors in them are copied.
pub fn oci_manifest(data: &[u8]) {
    use crate::image::oci::{declared_media_type, is_index, Descriptor, ImageIndex, ImageManifest};
    if let Some(media_type) = declared_media_type(data) {
        let _ = is_index(&media_type);
    }
    let index = oci_round_trip::<ImageIndex>(data);
    let manifest = oci_round_trip::<ImageManifest>(data);
    let Ok(untyped) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let descriptors = |key: &str, typed: &[Descriptor]| {
        if let Some(list) = untyped.get(key).and_then(|v| v.as_array()) {
            for (value, descriptor) in list.iter().zip(typed) {
                keeps_fields(value, descriptor);
            }
        }
    };
    if let Some(index) = index {
        descriptors("manifests", &index.manifests);
    }
    if let Some(manifest) = manifest {
        descriptors("layers", &manifest.layers);
        keeps_fields(&untyped["config"], &manifest.config);
    }
}

/// A base's configuration, which imgbake extends and writes again. Its
/// required `architecture` and `os` are checked against the build's
/// platform before that; without them the typed document writes `""`.
pub fn oci_config(data: &[u8]) {
    let Some(typed) = oci_round_trip::<crate::image::oci::ImageConfiguration>(data) else { return };
    let Ok(untyped) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if untyped.get("architecture").is_some_and(|v| v.is_string()) && untyped.get("os").is_some_and(|v| v.is_string()) {
        keeps_fields(&untyped, &typed);
    }
}

/// `~/.docker/config.json`, looked up for a few registry spellings.
pub fn docker_config(data: &[u8]) {
    let Some(text) = text(data) else { return };
    for registry in ["docker.io", "registry-1.docker.io", "ghcr.io", "127.0.0.1:5000", "localhost"] {
        if let Some(credentials) = crate::registry::auth::from_docker_config_text(text, registry) {
            let _ = credentials.basic_header();
        }
    }
}

/// The registry's answers around authentication: a `WWW-Authenticate`
/// header, an OCI error body, a credential helper's answer.
pub fn registry_auth(data: &[u8]) {
    use crate::registry::auth::Challenge;
    if let Some(text) = text(data) {
        if let Some(Challenge::Bearer { realm, service, scope }) = Challenge::parse(text) {
            assert!(text.contains(realm.as_str()));
            for value in [service, scope].into_iter().flatten() {
                assert!(text.contains(value.as_str()));
            }
        }
    }
    for message in crate::registry::error::ServerMessage::parse_all(data) {
        let _ = message.to_string();
    }
    let _ = crate::registry::credential_helper::parse_answer(data);
}

/// The hub's `/api/models/{repo}/revision/{rev}` answer.
pub fn hub_revision(data: &[u8]) {
    use crate::weights::filter::PathFilter;
    let filter = PathFilter::new(&["*.json".to_string(), "*.safetensors".to_string()], &[]).expect("valid patterns");
    let all = PathFilter::new(&[], &[]).expect("no patterns");
    for revision in ["main", "0123456789abcdef0123456789abcdef01234567"] {
        for filter in [&filter, &all] {
            let Ok((commit, paths)) = crate::weights::hf::revision_listing(data, revision, filter, "hf://org/repo")
            else {
                continue;
            };
            assert_eq!(commit.len(), 40);
            assert!(paths.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
            for path in &paths {
                assert!(crate::weights::safe_relative_path(path), "unsafe path `{path}` let through");
                assert!(!path.starts_with('/') && !path.split('/').any(|part| part == ".."));
            }
        }
    }
}

/// A named secret holding an object store credential as JSON.
pub fn object_secret(data: &[u8]) {
    use crate::spec::WeightsSource;
    let Some(secret) = text(data) else { return };
    let sources = [
        WeightsSource::S3 { bucket: "bucket".into(), prefix: "models/x".into() },
        WeightsSource::Gcs { bucket: "bucket".into(), prefix: "models/x".into() },
        WeightsSource::Azure { container: "c".into(), prefix: "models/x".into() },
    ];
    let message_for = |source: &WeightsSource, secret: &str| {
        let lookup = |name: &str| (name == "FUZZ_SECRET").then(|| secret.to_string());
        crate::weights::object::ObjectOptions::from_lookup(source, Some("FUZZ_SECRET"), &lookup)
            .err()
            .map(|error| format!("{error} {error:?}"))
    };
    for source in &sources {
        let Some(message) = message_for(source, secret) else { continue };
        // The secret's text never reaches a message (unless it is text the
        // messages hold anyway, such as `cret_access_`).
        let in_any_message = ["?", "{}", "[]", "{\"account_key\": 1}"]
            .iter()
            .filter_map(|other| message_for(source, other))
            .any(|other| other.contains(secret));
        if secret.trim().len() >= 8 && !in_any_message {
            assert!(!message.contains(secret), "the secret's text is in the error: {message}");
        }
    }
}

/// A suite's InRelease: the signed text, the Packages entries it lists.
pub fn apt_release(data: &[u8]) {
    use crate::deps::apt::index::{release_entry, strip_clearsign};
    let text = String::from_utf8_lossy(data);
    let release = strip_clearsign(&text);
    for path in ["main/binary-amd64/Packages.xz", "main/binary-amd64/Packages.gz"] {
        if let Some((sha256, _size)) = release_entry(&release, path) {
            assert_eq!(sha256, sha256.to_ascii_lowercase());
        }
    }
    if let Ok(paragraphs) = crate::deps::apt::control::parse_paragraphs(&release) {
        let _ = paragraphs.first().map(|p| p.get("NotAutomatic"));
    }
    let _ = crate::deps::apt::sources::parse_sources(&text);
    let _ = crate::deps::apt::sources::parse_os_release(&text);
}

/// A Packages index (and a dpkg status file, the same format).
pub fn apt_packages(data: &[u8]) {
    use crate::deps::apt::sources::Source;
    let Some(text) = text(data) else { return };
    let source = Source {
        uri: "http://deb.debian.org/debian".into(),
        suite: "bookworm".into(),
        components: vec!["main".into()],
    };
    if let Ok(packages) = crate::deps::apt::index::parse_packages(text, &source, "fuzz/Packages") {
        for package in &packages {
            assert_eq!(package.sha256.len(), 64);
        }
        let _ = crate::deps::apt::resolve::Universe::new(packages, "amd64", "fuzz".into());
    }
    let _ = crate::deps::apt::resolve::installed_packages(text);
}

/// A .deb's `control` file and the relation fields in it.
pub fn deb_control(data: &[u8]) {
    use crate::deps::apt::control::{parse_paragraphs, parse_relations};
    let Some(text) = text(data) else { return };
    match parse_paragraphs(text) {
        Err(error) => {
            let lines = text.lines().count();
            assert!(error.line >= 1 && error.line <= lines, "line {} of {lines}: {}", error.line, error.message);
        }
        Ok(paragraphs) => {
            for paragraph in &paragraphs {
                for field in ["Depends", "Pre-Depends", "Provides", "Conflicts", "Breaks"] {
                    if let Some(value) = paragraph.get(field) {
                        let _ = parse_relations(value);
                    }
                }
            }
        }
    }
    let _ = parse_relations(text);
    let _ = crate::deps::apt::alternatives::parse_script(text);
}

/// A .deb (ar of control.tar.* and data.tar.*) unpacked into a staging
/// directory; nothing may appear outside it, nothing outside may change.
pub fn deb_archive(data: &[u8]) {
    let outer = tempfile::tempdir().expect("a temp dir");
    let deb = outer.path().join("package.deb");
    std::fs::write(&deb, data).expect("write the input");
    let sentinel = outer.path().join("outside");
    std::fs::write(&sentinel, b"untouched").expect("write the sentinel");
    let root = outer.path().join("root");
    std::fs::create_dir(&root).expect("the staging dir");
    let links = vec![("bin".to_string(), "usr/bin".to_string()), ("lib".to_string(), "usr/lib".to_string())];
    let mut warnings = Vec::new();
    let _ = crate::deps::apt::deb::unpack_deb(&deb, &root, &links, &mut warnings);
    let mut outside: Vec<String> = std::fs::read_dir(outer.path())
        .expect("the temp dir")
        .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    outside.sort();
    assert_eq!(outside, ["outside", "package.deb", "root"], "the package wrote outside its staging dir");
    let meta = std::fs::symlink_metadata(&sentinel).expect("the sentinel");
    assert!(meta.is_file(), "the sentinel was replaced");
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&meta), 1, "the package hard-linked a file from outside");
    assert_eq!(std::fs::read(&sentinel).expect("the sentinel"), b"untouched");
}

/// The rattler bridge's answer to a solve.
pub fn conda_answer(data: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(packages) = crate::deps::conda::solved_packages(&answer) {
        let written = serde_json::to_value(&packages).expect("packages serialise");
        let again = crate::deps::conda::solved_packages(&serde_json::json!({ "packages": written }))
            .expect("written packages read back");
        assert_eq!(again, packages);
    }
}

fn python_target() -> crate::deps::python::PythonTarget {
    crate::deps::python::PythonTarget {
        python_version: "3.11".into(),
        platform: "x86_64-manylinux_2_36".into(),
        interpreter: "/usr/local/bin/python3.11".into(),
        site_packages: "/usr/local/lib/python3.11/site-packages".into(),
    }
}

/// uv's `pylock.toml`.
pub fn pylock(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = crate::deps::python::resolver::parse_pylock(text, &python_target());
}

/// pip's `--report` JSON.
pub fn pip_report(data: &[u8]) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = crate::deps::python::resolver::parse_pip_report(&json, &python_target());
}

/// `imgbake.lock`: read → write → read is stable.
pub fn lock_file(data: &[u8]) {
    use crate::lock::{Lock, LockError};
    let Some(text) = text(data) else { return };
    let path = Path::new("imgbake.lock");
    match Lock::from_toml(text, path) {
        Ok(lock) => {
            let written = lock.to_toml();
            let again = Lock::from_toml(&written, path).expect("a written lock reads back");
            assert_eq!(again.to_toml(), written);
        }
        Err(LockError::Parse { message, .. }) => {
            assert!(message.contains("line "), "a lock parse error without a position: {message}")
        }
        Err(_) => {}
    }
}

/// A `--profile` override file: read → write → read gives the same numbers.
pub fn profile(data: &[u8]) {
    use crate::pricing::profile::{parse_file, to_toml, ProfileError};
    let Some(text) = text(data) else { return };
    let path = Path::new("fuzz.toml");
    match parse_file(text, path, "generic") {
        Ok(profile) => {
            let written = to_toml(&profile, "generic");
            let again = parse_file(&written, path, "generic").expect("a written profile reads back");
            assert_eq!(to_toml(&again, "generic"), written);
        }
        Err(ProfileError::Invalid { line, column, .. }) => {
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(line >= 1 && line <= lines.len(), "line {line} outside the input");
            assert!(column >= 1 && column <= lines[line - 1].len() + 1, "column {column} outside line {line}");
        }
        Err(_) => {}
    }
}

/// Base image layers (uncompressed tars): the input is one layer, and also
/// split at its first `\0\0LAYER\0\0` into a lower and an upper layer.
/// The per-layer facts (the cache's records) round-trip through JSON.
pub fn base_layer(data: &[u8]) {
    // The guard in front of the tar crate changes nothing of an archive it
    // lets through (a fuzz input is far below its 1 MiB limit).
    let plain = tar_entries(data);
    let guarded = tar_entries(crate::image::tar_guard::TarGuard::new(data));
    if let Ok(plain) = plain {
        assert_eq!(guarded.as_ref().ok(), Some(&plain), "the guard changed the archive: {guarded:?}");
    }
    const SPLIT: &[u8] = b"\0\0LAYER\0\0";
    let mut layers: Vec<&[u8]> = vec![data];
    if let Some(at) = data.windows(SPLIT.len()).position(|w| w == SPLIT) {
        layers = vec![&data[..at], &data[at + SPLIT.len()..]];
    }
    let streams: Vec<Box<dyn Read + '_>> = layers.iter().map(|l| Box::new(*l) as Box<dyn Read>).collect();
    let Ok((facts, _base)) = crate::resolve::basefs::facts_of_layer_streams(streams) else { return };
    for layer in facts {
        let written = serde_json::to_vec(&layer).expect("facts serialise");
        let again: crate::resolve::basefs::LayerFacts = serde_json::from_slice(&written).expect("facts read back");
        assert_eq!(serde_json::to_vec(&again).expect("facts serialise"), written);
    }
}

/// Every entry's path, link, type, size and first bytes, as the `tar` crate reads them.
type TarEntry = (Vec<u8>, Option<Vec<u8>>, u8, u64, Vec<u8>);

fn tar_entries(reader: impl Read) -> std::io::Result<Vec<TarEntry>> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path_bytes().into_owned();
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let kind = entry.header().entry_type().as_byte();
        let size = entry.size();
        // The start of it: a sparse entry may expand to gigabytes.
        let mut content = Vec::new();
        (&mut entry).take(1 << 16).read_to_end(&mut content)?;
        out.push((path, link, kind, size, content));
    }
    Ok(out)
}
