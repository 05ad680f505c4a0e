//! What the base image already holds, read from its layers (or its root
//! filesystem directory) without running it: the OS release, the dpkg
//! status, the apt sources, the Python interpreter and its site-packages
//! path, the glibc version, whether `/bin` is merged into `/usr`, and the
//! programs it holds (every entry of a `bin` or `sbin` directory, and the
//! top-level files), for the entrypoint check, and how much of the Python
//! standard library has bytecode (the official `python:*` images delete
//! every `.pyc`, so each cold start compiles the modules it imports).
//!
//! Layers are read as tar streams in order, applying OCI whiteouts. Only the
//! few paths that matter are kept, and each layer's findings are cached by
//! its digest (`<cache>/base-facts/<hex>.json`), so a multi-GB CUDA base is
//! scanned once per machine, not once per build.

pub use crate::deps::python::BasePython;
use crate::image::digest::Digest;
use crate::resolve::base::ResolvedBase;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Files whose content is kept (small text files).
const CONTENT_FILES: &[&str] =
    &["etc/os-release", "usr/lib/os-release", "var/lib/dpkg/status", "etc/apt/sources.list", "etc/debian_version"];
/// Directories whose direct children's content is kept.
const CONTENT_DIRS: &[&str] = &["etc/apt/sources.list.d"];
/// apt's trusted keys: files here (binary or armored) are kept as bytes.
const KEYRING_FILES: &[&str] = &["etc/apt/trusted.gpg"];
const KEYRING_DIRS: &[&str] = &["etc/apt/trusted.gpg.d", "etc/apt/keyrings", "usr/share/keyrings"];
/// Kept content is capped; a dpkg status of a large CUDA image is a few MB.
const MAX_CONTENT: u64 = 32 << 20;
/// All content and keyring bytes kept of one layer, together: a layer with
/// thousands of large "keyrings" is refused rather than held in memory.
const MAX_KEPT: u64 = 128 << 20;
/// Version of the per-layer facts cache: records of an older version are
/// read again (version 2 added the entries of `bin`/`sbin` directories).
/// (version 3 added the standard library's modules and bytecode).
const FACTS_VERSION: u32 = 3;

/// The facts a build needs about its base.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BaseFacts {
    pub os_release: Option<String>,
    pub dpkg_status: Option<String>,
    /// `sources.list` and every `sources.list.d/*` file, concatenated.
    pub apt_sources: Option<String>,
    pub python: Option<BasePython>,
    /// glibc `(major, minor)` from the dpkg status (`libc6`), when known.
    pub glibc: Option<(u32, u32)>,
    /// `/bin`, `/lib`, `/sbin` are symlinks into `/usr` (merged /usr).
    pub usrmerge: bool,
    /// apt keyring files of the base (`etc/apt/trusted.gpg.d/*`,
    /// `usr/share/keyrings/*`, …) by image path, as bytes.
    pub keyrings: BTreeMap<String, Vec<u8>>,
    /// Directories that are symlinks, as (image path, image path of the
    /// target): `bin` → `usr/bin`, `var/run` → `run`. Packages installed on
    /// top must put files at the target, never replace the link.
    pub symlinked_dirs: Vec<(String, String)>,
    /// Image paths (no leading `/`) of every non-directory entry of a `bin`
    /// or `sbin` directory, and of the top-level files and links.
    pub programs: std::collections::BTreeSet<String>,
    /// The interpreter's standard library, when the base has one.
    pub stdlib: Option<StdlibFacts>,
}

/// The base interpreter's standard library and how much of it is compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdlibFacts {
    /// Its image path, `/usr/local/lib/python3.11`.
    pub dir: String,
    /// Its `.py` modules (`site-packages` and `dist-packages` left out).
    pub modules: u64,
    /// Those with a `__pycache__/<name>.cpython-3XY.pyc` of the interpreter's version beside them.
    pub compiled: u64,
    /// Bytes of the modules without one.
    pub uncompiled_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BaseFsError {
    #[error("cannot read base layer {digest}")]
    Layer {
        digest: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the base root filesystem `{path}`")]
    Rootfs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One layer's findings, in the order met; applied on top of earlier layers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LayerFacts {
    events: Vec<Event>,
    /// Tar entries (files, directories, links, whiteouts) and tar stream
    /// bytes of the layer, for the plan's unpack term.
    #[serde(default)]
    entries: u64,
    #[serde(default)]
    tar_bytes: u64,
    #[serde(default)]
    version: u32,
}

/// The size of one base layer once unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerShape {
    pub entries: u64,
    pub tar_bytes: u64,
}

/// Entries and tar bytes of one layer whose blob is in `blobs`, read once
/// per layer digest and cached with the layer's other facts.
pub fn layer_shape(
    blobs: &crate::image::blobs::BlobStore,
    digest: &Digest,
    media_type: &str,
    cache_dir: &Path,
) -> Result<LayerShape, BaseFsError> {
    let facts = cached_layer_facts(digest, cache_dir, || {
        let file = blobs.open_blob(digest).map_err(io::Error::other)?;
        scan_layer(decompressed(file, media_type)?)
    })
    .map_err(|source| BaseFsError::Layer { digest: digest.to_string(), source })?;
    Ok(LayerShape { entries: facts.entries, tar_bytes: facts.tar_bytes })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Event {
    /// `.wh.NAME`: the path and everything under it are gone.
    Whiteout(String),
    /// `.wh..wh..opq` in a directory: its earlier contents are gone.
    Opaque(String),
    Exists(String),
    /// A file (not a directory or link) in a `bin`/`sbin` directory or at the top level.
    Program(String),
    Symlink(String, String),
    Content(String, String),
    /// A keyring file's bytes, base64.
    Binary(String, String),
    /// A `.py` file of a standard library, with its size.
    Module(String, u64),
}

/// Paths tracked in the merged view.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Exists,
    Program,
    Symlink(String),
    Content(String),
    Binary(Vec<u8>),
    Module(u64),
}

/// Reads the facts of a resolved base (registry or OCI layout), using and
/// filling the per-layer cache under `cache_dir`.
pub fn facts_of_base(base: &ResolvedBase, cache_dir: &Path) -> Result<BaseFacts, BaseFsError> {
    let Some(blobs) = &base.blobs else { return Ok(BaseFacts::default()) };
    let mut merged = BTreeMap::new();
    for layer in &base.layers {
        let layer_facts = cached_layer_facts(&layer.digest, cache_dir, || {
            let file = blobs.open_blob(&layer.digest).map_err(io::Error::other)?;
            scan_layer(decompressed(file, &layer.media_type)?)
        })
        .map_err(|source| BaseFsError::Layer { digest: layer.digest.to_string(), source })?;
        apply(&mut merged, layer_facts.events);
    }
    if let Some(pinned) = &base.pinned {
        let record =
            PinnedRecord { layers: base.layers.iter().map(|l| l.digest.to_string()).collect(), env: base.config_env() };
        // An optimisation for `validate`: a failure to write it is not an error.
        let _ = crate::plumbing::fs::write_atomic(
            &pinned_record_path(pinned, cache_dir),
            &serde_json::to_vec(&record).unwrap_or_default(),
        );
    }
    Ok(facts_from_nodes(&merged))
}

/// What `validate` needs of a registry base without the network: its layers
/// (whose facts are cached by digest) and its `config.Env`.
#[derive(Debug, Serialize, Deserialize)]
struct PinnedRecord {
    layers: Vec<String>,
    env: Option<Vec<String>>,
}

fn pinned_record_path(pinned: &str, cache_dir: &Path) -> PathBuf {
    use sha2::Digest as _;
    let key = hex::encode(&sha2::Sha256::digest(pinned.as_bytes())[..16]);
    cache_dir.join("base-facts").join(format!("image-{key}.json"))
}

/// The facts and `config.Env` of a registry base pinned as `pinned`
/// (`registry/repo@sha256:…`), from the cache only: `None` unless a build or
/// lock on this machine has read that base (no network, no blob reads).
pub fn cached_facts_of_pinned(pinned: &str, cache_dir: &Path) -> Option<(BaseFacts, Option<Vec<String>>)> {
    let record: PinnedRecord = serde_json::from_slice(&fs::read(pinned_record_path(pinned, cache_dir)).ok()?).ok()?;
    let mut merged = BTreeMap::new();
    for layer in &record.layers {
        let digest: Digest = layer.parse().ok()?;
        let path = cache_dir.join("base-facts").join(format!("{}.json", digest.hex()));
        let facts: LayerFacts = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
        if facts.version < FACTS_VERSION {
            return None;
        }
        apply(&mut merged, facts.events);
    }
    Some((facts_from_nodes(&merged), record.env))
}

/// Reads the facts of a root filesystem directory (`--base rootfs:DIR`).
pub fn facts_of_rootfs(root: &Path) -> Result<BaseFacts, BaseFsError> {
    let err = |source| BaseFsError::Rootfs { path: root.to_path_buf(), source };
    let mut merged = BTreeMap::new();
    let mut interesting: Vec<String> = CONTENT_FILES.iter().map(|s| s.to_string()).collect();
    for dir in CONTENT_DIRS {
        if let Ok(read) = fs::read_dir(root.join(dir)) {
            for child in read.flatten() {
                interesting.push(format!("{dir}/{}", child.file_name().to_string_lossy()));
            }
        }
    }
    if let Ok(read) = fs::read_dir(root) {
        for child in read.flatten() {
            interesting.push(child.file_name().to_string_lossy().into_owned());
        }
    }
    interesting.extend(["var/run".to_string(), "var/lock".to_string()]);
    for dir in KEYRING_DIRS {
        if let Ok(read) = fs::read_dir(root.join(dir)) {
            for child in read.flatten() {
                interesting.push(format!("{dir}/{}", child.file_name().to_string_lossy()));
            }
        }
    }
    interesting.extend(KEYRING_FILES.iter().map(|s| s.to_string()));
    for dir in ["usr/local/bin", "usr/bin", "usr/local/lib", "usr/local/sbin", "usr/sbin", "bin", "sbin"] {
        if let Ok(read) = fs::read_dir(root.join(dir)) {
            for child in read.flatten() {
                interesting.push(format!("{dir}/{}", child.file_name().to_string_lossy()));
            }
        }
    }
    for lib in ["usr/lib", "usr/local/lib"] {
        let Ok(read) = fs::read_dir(root.join(lib)) else { continue };
        for child in read.flatten() {
            let name = child.file_name().to_string_lossy().into_owned();
            if name.starts_with("python3.") && child.file_type().is_ok_and(|t| t.is_dir()) {
                walk_stdlib(root, &format!("{lib}/{name}"), &mut merged).map_err(err)?;
            }
        }
    }
    for path in interesting {
        let full = root.join(&path);
        let Ok(meta) = fs::symlink_metadata(&full) else { continue };
        let node = if meta.file_type().is_symlink() {
            Node::Symlink(fs::read_link(&full).map_err(err)?.to_string_lossy().into_owned())
        } else if meta.is_file() && is_keyring(&path) && meta.len() <= MAX_CONTENT {
            Node::Binary(fs::read(&full).map_err(err)?)
        } else if meta.is_file() && wants_content(&path) && meta.len() <= MAX_CONTENT {
            Node::Content(String::from_utf8_lossy(&fs::read(&full).map_err(err)?).into_owned())
        } else if meta.is_file() && (in_bin_dir(&path) || !path.contains('/')) {
            Node::Program
        } else {
            Node::Exists
        };
        merged.insert(path, node);
    }
    Ok(facts_from_nodes(&merged))
}

/// The modules and bytecode of the standard library at `dir` (image path,
/// no leading `/`) of a root filesystem directory.
fn walk_stdlib(root: &Path, dir: &str, merged: &mut BTreeMap<String, Node>) -> io::Result<()> {
    let walk = walkdir::WalkDir::new(root.join(dir)).follow_links(false).into_iter().filter_entry(|entry| {
        !(entry.depth() == 1 && matches!(entry.file_name().to_str(), Some("site-packages" | "dist-packages")))
    });
    for entry in walk {
        let entry = entry.map_err(io::Error::other)?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(root).map_err(io::Error::other)?;
        let path = relative.to_string_lossy().into_owned();
        match stdlib_file(&path) {
            Some(StdlibFile::Module) => {
                merged.insert(path, Node::Module(entry.metadata().map_err(io::Error::other)?.len()));
            }
            Some(StdlibFile::Bytecode) => {
                merged.insert(path, Node::Exists);
            }
            None => {}
        }
    }
    Ok(())
}

/// The facts of layers given as uncompressed tar streams, bottom first, with
/// each layer's own findings (what the cache would record).
pub(crate) fn facts_of_layer_streams(streams: Vec<Box<dyn Read + '_>>) -> io::Result<(Vec<LayerFacts>, BaseFacts)> {
    let mut merged = BTreeMap::new();
    let mut layers = Vec::new();
    for stream in streams {
        let facts = scan_layer(stream)?;
        apply(&mut merged, facts.events.clone());
        layers.push(facts);
    }
    Ok((layers, facts_from_nodes(&merged)))
}

fn cached_layer_facts(
    digest: &Digest,
    cache_dir: &Path,
    scan: impl FnOnce() -> io::Result<LayerFacts>,
) -> io::Result<LayerFacts> {
    let path = cache_dir.join("base-facts").join(format!("{}.json", digest.hex()));
    if let Ok(bytes) = fs::read(&path) {
        // Records from before entry counting (entries = 0) or of an older
        // version are read again.
        if let Ok(facts) = serde_json::from_slice::<LayerFacts>(&bytes) {
            if facts.entries > 0 && facts.version >= FACTS_VERSION {
                return Ok(facts);
            }
        }
    }
    let facts = scan()?;
    // The cache is an optimisation: a failure to write it is not an error.
    let _ = crate::plumbing::fs::write_atomic(&path, &serde_json::to_vec(&facts).unwrap_or_default());
    Ok(facts)
}

/// A layer blob as its tar stream, decoded by its media type (gzip, zstd or none).
pub(crate) fn decompressed(file: fs::File, media_type: &str) -> io::Result<Box<dyn Read>> {
    let reader = io::BufReader::with_capacity(1 << 20, file);
    Ok(if media_type.ends_with("+zstd") {
        Box::new(zstd::Decoder::with_buffer(reader)?)
    } else if media_type.ends_with("+gzip") || media_type.ends_with(".gzip") || media_type.contains("tar.gzip") {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else if media_type.ends_with(".tar") || media_type.is_empty() {
        Box::new(reader)
    } else {
        // Docker's media type `application/vnd.docker.image.rootfs.diff.tar.gzip` ends in `.gzip`
        // and is handled above; anything else is read as gzip when it starts like gzip.
        let mut peek = reader;
        let starts_gzip = io::BufRead::fill_buf(&mut peek)?.starts_with(&[0x1f, 0x8b]);
        if starts_gzip {
            Box::new(flate2::bufread::MultiGzDecoder::new(peek))
        } else {
            Box::new(peek)
        }
    })
}

/// Counts the bytes read through it (the tar stream's size).
struct Counting<R> {
    inner: R,
    bytes: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.set(self.bytes.get() + n as u64);
        Ok(n)
    }
}

fn scan_layer(stream: Box<dyn Read + '_>) -> io::Result<LayerFacts> {
    let bytes = std::rc::Rc::new(std::cell::Cell::new(0));
    let mut archive =
        tar::Archive::new(crate::image::tar_guard::TarGuard::new(Counting { inner: stream, bytes: bytes.clone() }));
    let mut facts = LayerFacts { version: FACTS_VERSION, ..LayerFacts::default() };
    let mut kept = 0u64;
    let mut keep = |path: &str, size: u64| {
        kept += size;
        if kept > MAX_KEPT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the layer's apt keyrings, sources and status files pass {MAX_KEPT} bytes (at `{path}`)"),
            ));
        }
        Ok(())
    };
    for entry in archive.entries()? {
        let mut entry = entry?;
        facts.entries += 1;
        let raw = entry.path()?.to_string_lossy().into_owned();
        let path = normalize(&raw);
        if path.is_empty() {
            continue;
        }
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) => (dir.to_string(), name.to_string()),
            None => (String::new(), path.clone()),
        };
        if name == ".wh..wh..opq" {
            facts.events.push(Event::Opaque(dir));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let hidden = if dir.is_empty() { hidden.to_string() } else { format!("{dir}/{hidden}") };
            facts.events.push(Event::Whiteout(hidden));
            continue;
        }
        let kind = entry.header().entry_type();
        match stdlib_file(&path) {
            Some(StdlibFile::Module) if kind.is_file() => {
                facts.events.push(Event::Module(path, entry.size()));
                continue;
            }
            Some(StdlibFile::Bytecode) if kind.is_file() => {
                facts.events.push(Event::Exists(path));
                continue;
            }
            _ => {}
        }
        if !is_interesting(&path) && (kind.is_dir() || !in_bin_dir(&path)) {
            continue;
        }
        if kind.is_symlink() {
            let target = entry.link_name()?.map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
            facts.events.push(Event::Symlink(path, target));
        } else if kind.is_file() && is_keyring(&path) && entry.size() <= MAX_CONTENT {
            keep(&path, entry.size())?;
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            facts.events.push(Event::Binary(path, base64::engine::general_purpose::STANDARD.encode(bytes)));
        } else if kind.is_file() && wants_content(&path) && entry.size() <= MAX_CONTENT {
            keep(&path, entry.size())?;
            let mut text = Vec::new();
            entry.read_to_end(&mut text)?;
            facts.events.push(Event::Content(path, String::from_utf8_lossy(&text).into_owned()));
        } else if !kind.is_dir() && (in_bin_dir(&path) || !path.contains('/')) {
            facts.events.push(Event::Program(path));
        } else {
            facts.events.push(Event::Exists(path));
        }
    }
    // The rest of the stream (end-of-archive blocks and padding) counts too.
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    facts.tar_bytes = bytes.get();
    Ok(facts)
}

fn normalize(raw: &str) -> String {
    raw.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/').to_string()
}

fn wants_content(path: &str) -> bool {
    CONTENT_FILES.contains(&path)
        || CONTENT_DIRS.iter().any(|dir| path.strip_prefix(dir).is_some_and(|rest| rest.matches('/').count() == 1))
}

fn is_keyring(path: &str) -> bool {
    KEYRING_FILES.contains(&path)
        || KEYRING_DIRS.iter().any(|dir| path.strip_prefix(dir).is_some_and(|rest| rest.matches('/').count() == 1))
}

/// `…/bin/NAME` or `…/sbin/NAME`: where programs on a PATH live.
fn in_bin_dir(path: &str) -> bool {
    let parent = path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
    matches!(parent.rsplit('/').next(), Some("bin" | "sbin"))
}

/// Top-level entries (for merged /usr), interpreters, site-packages dirs and content files.
fn is_interesting(path: &str) -> bool {
    if wants_content(path) || is_keyring(path) || !path.contains('/') || matches!(path, "var/run" | "var/lock") {
        return true;
    }
    let python_like = |rest: &str| rest.starts_with("python3") && !rest.contains('/');
    if let Some(rest) = path.strip_prefix("usr/local/bin/").or_else(|| path.strip_prefix("usr/bin/")) {
        return python_like(rest);
    }
    if let Some(rest) = path.strip_prefix("usr/local/lib/") {
        return python_like(rest) || (rest.starts_with("python3") && rest.ends_with("/site-packages"));
    }
    false
}

fn apply(merged: &mut BTreeMap<String, Node>, events: Vec<Event>) {
    let remove_under = |merged: &mut BTreeMap<String, Node>, dir: &str, including_self: bool| {
        let prefix = format!("{dir}/");
        merged.retain(|path, _| !(path.starts_with(&prefix) || (including_self && path == dir) || dir.is_empty()));
    };
    for event in events {
        match event {
            Event::Whiteout(path) => remove_under(merged, &path, true),
            Event::Opaque(dir) => remove_under(merged, &dir, false),
            Event::Exists(path) => {
                merged.insert(path, Node::Exists);
            }
            Event::Program(path) => {
                merged.insert(path, Node::Program);
            }
            Event::Symlink(path, target) => {
                merged.insert(path, Node::Symlink(target));
            }
            Event::Content(path, text) => {
                merged.insert(path, Node::Content(text));
            }
            Event::Binary(path, encoded) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_default();
                merged.insert(path, Node::Binary(bytes));
            }
            Event::Module(path, size) => {
                merged.insert(path, Node::Module(size));
            }
        }
    }
}

fn facts_from_nodes(nodes: &BTreeMap<String, Node>) -> BaseFacts {
    let content = |path: &str| match nodes.get(path) {
        Some(Node::Content(text)) => Some(text.clone()),
        _ => None,
    };
    let os_release = content("etc/os-release").or_else(|| content("usr/lib/os-release"));
    let dpkg_status = content("var/lib/dpkg/status");
    let mut sources: Vec<String> = content("etc/apt/sources.list").into_iter().collect();
    for (path, node) in nodes.range("etc/apt/sources.list.d/".to_string()..) {
        if !path.starts_with("etc/apt/sources.list.d/") {
            break;
        }
        if let Node::Content(text) = node {
            sources.push(format!("# {path}\n{text}"));
        }
    }
    let apt_sources = (!sources.is_empty()).then(|| sources.join("\n"));
    let usrmerge =
        matches!(nodes.get("bin"), Some(Node::Symlink(target)) if target.trim_start_matches('/') == "usr/bin");
    let glibc = dpkg_status.as_deref().and_then(glibc_from_status);
    let symlinked_dirs = nodes
        .iter()
        .filter_map(|(path, node)| match node {
            Node::Symlink(target) if !path.contains('/') || matches!(path.as_str(), "var/run" | "var/lock") => {
                Some((path.clone(), resolve_link(path, target)))
            }
            _ => None,
        })
        .collect();
    let keyrings = nodes
        .iter()
        .filter_map(|(path, node)| match node {
            Node::Binary(bytes) => Some((path.clone(), bytes.clone())),
            _ => None,
        })
        .collect();
    let programs = nodes
        .iter()
        .filter(|(path, node)| match node {
            Node::Program => true,
            Node::Symlink(_) => in_bin_dir(path) || (!path.contains('/') && !is_dir_link(path, nodes)),
            _ => false,
        })
        .map(|(path, _)| path.clone())
        .collect();
    let python = find_python(nodes);
    let stdlib = python.as_ref().and_then(|python| stdlib_of(python, nodes));
    BaseFacts {
        programs,
        os_release,
        dpkg_status,
        apt_sources,
        python,
        glibc,
        usrmerge,
        keyrings,
        symlinked_dirs,
        stdlib,
    }
}

/// What a file of a standard library is to [`StdlibFacts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StdlibFile {
    Module,
    Bytecode,
}

/// `usr/lib/python3.11/json/decoder.py` is a module of a standard library,
/// `usr/local/lib/python3.12/__pycache__/os.cpython-312.pyc` its bytecode;
/// anything under `site-packages` or `dist-packages` is neither.
fn stdlib_file(path: &str) -> Option<StdlibFile> {
    let rest = path.strip_prefix("usr/local/lib/python3.").or_else(|| path.strip_prefix("usr/lib/python3."))?;
    let (minor, inside) = rest.split_once('/')?;
    if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if inside.starts_with("site-packages/") || inside.starts_with("dist-packages/") {
        return None;
    }
    if inside.ends_with(".py") {
        Some(StdlibFile::Module)
    } else if inside.ends_with(".pyc") && (inside.starts_with("__pycache__/") || inside.contains("/__pycache__/")) {
        Some(StdlibFile::Bytecode)
    } else {
        None
    }
}

/// The standard library of `python` (`/usr/local/bin/python3.12` →
/// `usr/local/lib/python3.12`) and how much of it has bytecode of that
/// version (`__pycache__/NAME.cpython-312.pyc`; the optimized `.opt-1`
/// files are not what a plain `python` loads).
fn stdlib_of(python: &BasePython, nodes: &BTreeMap<String, Node>) -> Option<StdlibFacts> {
    let prefix = python.interpreter.trim_start_matches('/').rsplit_once("/bin/")?.0.to_string();
    let dir = format!("{prefix}/lib/python{}", python.version);
    let tag = format!("cpython-{}", python.version.replace('.', ""));
    let mut facts = StdlibFacts { dir: format!("/{dir}"), ..StdlibFacts::default() };
    let start = format!("{dir}/");
    for (path, node) in nodes.range(start.clone()..) {
        if !path.starts_with(&start) {
            break;
        }
        let Node::Module(size) = node else { continue };
        facts.modules += 1;
        let (parent, file) = path.rsplit_once('/').unwrap_or(("", path));
        let stem = file.trim_end_matches(".py");
        if nodes.contains_key(&format!("{parent}/__pycache__/{stem}.{tag}.pyc")) {
            facts.compiled += 1;
        } else {
            facts.uncompiled_bytes += size;
        }
    }
    (facts.modules > 0).then_some(facts)
}

/// Top-level links such as `bin` → `usr/bin` are directories, not programs.
fn is_dir_link(path: &str, nodes: &BTreeMap<String, Node>) -> bool {
    let prefix = format!("{path}/");
    matches!(path, "bin" | "sbin" | "lib" | "lib32" | "lib64" | "libx32")
        || nodes.range(prefix.clone()..).next().is_some_and(|(p, _)| p.starts_with(&prefix))
}

/// The image path a symlink at `path` points to (`var/run` + `../run` → `run`);
/// with an empty `path`, `target` normalized (`/a/./b/../c` → `a/c`).
pub fn resolve_link(path: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        path.split('/').collect::<Vec<_>>()[..path.matches('/').count()].to_vec()
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// The newest `python3.X` interpreter, preferring `/usr/local` (python:* images)
/// over the distribution's.
fn find_python(nodes: &BTreeMap<String, Node>) -> Option<BasePython> {
    let versions_in = |dir: &str| -> Vec<(u32, u32)> {
        nodes
            .keys()
            .filter_map(|path| path.strip_prefix(dir)?.strip_prefix("python3.").map(str::to_string))
            .filter_map(|minor| minor.parse::<u32>().ok().map(|m| (3, m)))
            .collect()
    };
    if let Some((major, minor)) = versions_in("usr/local/bin/").into_iter().max() {
        return Some(BasePython {
            version: format!("{major}.{minor}"),
            interpreter: format!("/usr/local/bin/python{major}.{minor}"),
            site_packages: format!("/usr/local/lib/python{major}.{minor}/site-packages"),
        });
    }
    let (major, minor) = versions_in("usr/bin/").into_iter().max()?;
    // Debian's interpreter looks in /usr/local/lib/pythonX.Y/dist-packages for
    // locally installed packages (and /usr/lib/python3/dist-packages for its own).
    Some(BasePython {
        version: format!("{major}.{minor}"),
        interpreter: format!("/usr/bin/python{major}.{minor}"),
        site_packages: format!("/usr/local/lib/python{major}.{minor}/dist-packages"),
    })
}

/// `libc6`'s version in a dpkg status file: `2.36-9+deb12u4` → (2, 36).
fn glibc_from_status(status: &str) -> Option<(u32, u32)> {
    let mut in_libc = false;
    for line in status.lines() {
        if let Some(name) = line.strip_prefix("Package: ") {
            in_libc = name.trim() == "libc6";
        } else if in_libc {
            if let Some(version) = line.strip_prefix("Version: ") {
                let upstream = version.trim().split(':').next_back()?.split('-').next()?;
                let mut parts = upstream.split('.');
                return Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, Option<&str>, Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content, link) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            if let Some(target) = link {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            } else if let Some(text) = content {
                header.set_size(text.len() as u64);
                builder.append_data(&mut header, path, text.as_bytes()).unwrap();
            } else {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    fn facts_of_tars(layers: &[Vec<u8>]) -> BaseFacts {
        let mut merged = BTreeMap::new();
        for layer in layers {
            apply(&mut merged, scan_layer(Box::new(io::Cursor::new(layer.clone()))).unwrap().events);
        }
        facts_from_nodes(&merged)
    }

    #[test]
    fn python_image_layout_is_found_with_site_packages() {
        let layer = tar_of(&[
            ("bin", None, Some("usr/bin")),
            ("usr/local/bin/python3.12", Some("elf"), None),
            ("usr/bin/python3.11", Some("elf"), None),
            ("etc/os-release", Some("ID=debian\nVERSION_CODENAME=bookworm\n"), None),
            (
                "var/lib/dpkg/status",
                Some("Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\n"),
                None,
            ),
        ]);
        let facts = facts_of_tars(&[layer]);
        let python = facts.python.unwrap();
        assert_eq!(python.version, "3.12");
        assert_eq!(python.interpreter, "/usr/local/bin/python3.12");
        assert_eq!(python.site_packages, "/usr/local/lib/python3.12/site-packages");
        assert_eq!(facts.glibc, Some((2, 36)));
        assert!(facts.usrmerge);
        assert_eq!(facts.symlinked_dirs, vec![("bin".to_string(), "usr/bin".to_string())]);
        assert!(facts.os_release.unwrap().contains("bookworm"));
    }

    #[test]
    fn debian_python_installs_into_local_dist_packages() {
        let facts = facts_of_tars(&[tar_of(&[("usr/bin/python3.11", Some("elf"), None)])]);
        assert_eq!(facts.python.unwrap().site_packages, "/usr/local/lib/python3.11/dist-packages");
        assert!(!facts.usrmerge);
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_earlier_layers() {
        let lower = tar_of(&[
            ("usr/local/bin/python3.10", Some("elf"), None),
            ("etc/apt/sources.list.d/a.list", Some("deb http://a bookworm main\n"), None),
        ]);
        let upper = tar_of(&[
            ("usr/local/bin/.wh.python3.10", Some(""), None),
            ("etc/apt/sources.list.d/.wh..wh..opq", Some(""), None),
            ("etc/apt/sources.list.d/b.list", Some("deb http://b bookworm main\n"), None),
        ]);
        let facts = facts_of_tars(&[lower, upper]);
        assert_eq!(facts.python, None);
        let sources = facts.apt_sources.unwrap();
        assert!(sources.contains("http://b") && !sources.contains("http://a"), "{sources}");
    }

    #[test]
    fn programs_are_the_bin_entries_and_top_level_files_left_visible() {
        let lower = tar_of(&[
            ("bin", None, Some("usr/bin")),
            ("lib", None, Some("usr/lib")),
            ("usr/bin/sh", None, Some("dash")),
            ("usr/bin/dash", Some("elf"), None),
            ("usr/local/bin/old-tool", Some("elf"), None),
            ("opt/conda/bin/python", Some("elf"), None),
            ("opt/conda/lib/libpython.so", Some("elf"), None),
            ("docker-entrypoint.sh", Some("#!/bin/sh\n"), None),
            ("usr/local/bin/sub", None, None),
        ]);
        let upper = tar_of(&[("usr/local/bin/.wh.old-tool", Some(""), None)]);
        let facts = facts_of_tars(&[lower, upper]);
        let programs: Vec<&str> = facts.programs.iter().map(String::as_str).collect();
        assert_eq!(programs, ["docker-entrypoint.sh", "opt/conda/bin/python", "usr/bin/dash", "usr/bin/sh"]);
    }

    #[test]
    fn the_standard_library_counts_modules_without_bytecode_of_the_interpreters_version() {
        // A python:* image deletes every .pyc; a later layer compiles two
        // modules, one of them for another version, and removes a third.
        let lower = tar_of(&[
            ("usr/local/bin/python3.12", Some("elf"), None),
            ("usr/local/lib/python3.12/os.py", Some("import abc\n"), None),
            ("usr/local/lib/python3.12/json/__init__.py", Some("x = 1\n"), None),
            ("usr/local/lib/python3.12/json/decoder.py", Some("y = 22\n"), None),
            ("usr/local/lib/python3.12/gone.py", Some("z\n"), None),
            ("usr/local/lib/python3.12/site-packages/pip/__init__.py", Some("p\n"), None),
            ("usr/lib/python3.11/os.py", Some("debian's\n"), None),
        ]);
        let upper = tar_of(&[
            ("usr/local/lib/python3.12/__pycache__/os.cpython-312.pyc", Some("pyc"), None),
            ("usr/local/lib/python3.12/json/__pycache__/decoder.cpython-311.pyc", Some("pyc"), None),
            ("usr/local/lib/python3.12/json/__pycache__/__init__.cpython-312.opt-1.pyc", Some("pyc"), None),
            ("usr/local/lib/python3.12/.wh.gone.py", Some(""), None),
        ]);
        let stdlib = facts_of_tars(&[lower, upper]).stdlib.unwrap();
        assert_eq!(
            stdlib,
            StdlibFacts { dir: "/usr/local/lib/python3.12".into(), modules: 3, compiled: 1, uncompiled_bytes: 6 + 7 }
        );
    }

    #[test]
    fn a_root_filesystem_reports_its_standard_library() {
        let root = tempfile::tempdir().unwrap();
        let lib = root.path().join("usr/lib/python3.11");
        fs::create_dir_all(lib.join("__pycache__")).unwrap();
        fs::create_dir_all(lib.join("dist-packages")).unwrap();
        fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        fs::write(root.path().join("usr/bin/python3.11"), "elf").unwrap();
        fs::write(lib.join("os.py"), "import abc\n").unwrap();
        fs::write(lib.join("abc.py"), "x\n").unwrap();
        fs::write(lib.join("__pycache__/abc.cpython-311.pyc"), "pyc").unwrap();
        fs::write(lib.join("dist-packages/six.py"), "six\n").unwrap();
        let stdlib = facts_of_rootfs(root.path()).unwrap().stdlib.unwrap();
        assert_eq!(
            stdlib,
            StdlibFacts { dir: "/usr/lib/python3.11".into(), modules: 2, compiled: 1, uncompiled_bytes: 11 }
        );
    }

    #[test]
    fn link_targets_resolve_to_image_paths() {
        assert_eq!(resolve_link("var/run", "../run"), "run");
        assert_eq!(resolve_link("var/run", "/run"), "run");
        assert_eq!(resolve_link("lib64", "usr/lib64"), "usr/lib64");
    }

    #[test]
    fn glibc_version_parses_epochs_and_revisions() {
        assert_eq!(glibc_from_status("Package: libc6\nVersion: 2.35-0ubuntu3.8\n"), Some((2, 35)));
        assert_eq!(glibc_from_status("Package: libc-bin\nVersion: 2.36-9\n"), None);
    }
}
