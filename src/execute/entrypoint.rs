//! The entrypoint must exist: the programs the entrypoint runs
//! (`runtime.custom.entrypoint`, Truss `docker_server.start_command`; for
//! `sh -c "…"` the shell and the first word of each simple command) are
//! looked up in what the image will hold — the base's `bin`/`sbin`
//! directories and top-level files, the dependency layers, the app files —
//! along the image's PATH (a program given by path is looked up at that path).
//!
//! `build` knows every layer it wrote, so a missing program is an error
//! there. `validate` knows only what the lock and this machine's cache tell
//! (the base's facts and the wheels are cached once a lock or build has read
//! them); what it cannot read makes a missing program "unknown", never an
//! error, so validate does not cry wolf. `[imgbake] check_entrypoint = false`
//! turns the check off.

use crate::image::entries::{EntryKind, LayerEntry};
use crate::resolve::basefs::BaseFacts;
use crate::spec::{ConfigFormat, Spec};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

/// PATH of an image whose config sets none (what runc and most runtimes use).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
use crate::deps::python::CONSOLE_SCRIPTS_DIR;

/// A program of the entrypoint that the image does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the entrypoint runs `{program}`, which is in no layer of the image")]
pub struct MissingProgram {
    pub program: String,
    hint: String,
}

impl MissingProgram {
    /// What to change in the config.
    pub fn hint(&self) -> &str {
        &self.hint
    }
}

impl crate::plumbing::errors::Hint for MissingProgram {
    fn hint(&self) -> Option<String> {
        Some(self.hint.clone())
    }
}

/// Image paths of the entries a layer holds that could be run: anything but
/// a directory in a `bin` or `sbin` directory, and executable files.
pub fn runnable_paths(entries: &[LayerEntry]) -> Vec<String> {
    entries
        .iter()
        .filter(|entry| match entry.kind {
            EntryKind::Dir => false,
            EntryKind::File { .. } | EntryKind::Stream { .. } | EntryKind::Hardlink { .. } => {
                in_bin_dir(&entry.path) || entry.mode & 0o111 != 0
            }
            EntryKind::Symlink { .. } => in_bin_dir(&entry.path),
        })
        .map(|entry| entry.path.clone())
        .collect()
}

fn in_bin_dir(path: &str) -> bool {
    let parent = path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
    matches!(parent.rsplit('/').next(), Some("bin" | "sbin"))
}

/// What the image holds, as far as it is known.
#[derive(Debug, Clone, Default)]
pub struct ImageContents {
    programs: BTreeSet<String>,
    /// The base's directory links (`bin` → `usr/bin`).
    symlinked_dirs: Vec<(String, String)>,
    /// The image's PATH, in order, as image paths.
    path: Vec<String>,
    /// The base's files are known only in `bin`/`sbin` directories and at the
    /// top level; elsewhere only an empty base is fully known.
    base_is_empty: bool,
    /// Parts whose files could not be read (validate without a cached wheel).
    unknown: Vec<String>,
}

impl ImageContents {
    /// Contents with the image's `KEY=value` environment (its PATH; the
    /// usual one when it sets none).
    pub fn new(env: Option<&[String]>) -> Self {
        let path = env.and_then(|env| env.iter().rev().find_map(|kv| kv.strip_prefix("PATH="))).unwrap_or(DEFAULT_PATH);
        ImageContents {
            path: path.split(':').map(|d| d.trim_matches('/').to_string()).collect(),
            base_is_empty: true,
            ..ImageContents::default()
        }
    }

    pub fn add_base(&mut self, facts: &BaseFacts) {
        self.programs.extend(facts.programs.iter().cloned());
        self.symlinked_dirs.extend(facts.symlinked_dirs.iter().cloned());
        self.base_is_empty &= facts.programs.is_empty() && facts.symlinked_dirs.is_empty();
    }

    /// A base whose files are not known at all.
    pub fn add_unknown_base(&mut self, what: impl Into<String>) {
        self.base_is_empty = false;
        self.unknown.push(what.into());
    }

    pub fn add_programs<I: IntoIterator<Item = String>>(&mut self, paths: I) {
        self.programs.extend(paths);
    }

    /// A part of the image whose files could not be read.
    pub fn add_unknown(&mut self, what: impl Into<String>) {
        self.unknown.push(what.into());
    }

    /// Whether a program (a name looked up on PATH, an absolute path, or a
    /// path relative to `workdir`) is in the image: `Some(true)`/`Some(false)`,
    /// or `None` when the parts that could hold it are not known.
    fn holds(&self, program: &str, workdir: &str) -> Option<bool> {
        let candidates: Vec<String> = if program.starts_with('/') {
            vec![normalize(program)]
        } else if program.contains('/') {
            vec![normalize(&format!("{workdir}/{program}"))]
        } else {
            self.path.iter().map(|dir| normalize(&format!("{dir}/{program}"))).collect()
        };
        let mut knowable = true;
        for candidate in &candidates {
            let resolved = self.resolve_dir_links(candidate);
            if self.programs.contains(candidate) || self.programs.contains(&resolved) {
                return Some(true);
            }
            // The base's facts list bin directories and the top level only.
            if !self.base_is_empty && !in_bin_dir(&resolved) && resolved.contains('/') {
                knowable = false;
            }
        }
        (knowable && self.unknown.is_empty()).then_some(false)
    }

    /// `bin/sh` → `usr/bin/sh` on a merged-/usr base.
    fn resolve_dir_links(&self, path: &str) -> String {
        for (link, target) in &self.symlinked_dirs {
            if let Some(rest) = path.strip_prefix(link.as_str()).and_then(|r| r.strip_prefix('/')) {
                return format!("{target}/{rest}");
            }
        }
        path.to_string()
    }
}

/// `/a/./b/../c/` → `a/c` (image paths have no leading `/`).
fn normalize(path: &str) -> String {
    crate::resolve::basefs::resolve_link("", path)
}

/// The first program of the entrypoint the image does not hold. `None` when
/// all are there, when the check is off, when the entrypoint is the base's
/// own, or when what could hold a program is not known.
pub fn check(spec: &Spec, contents: &ImageContents) -> Option<MissingProgram> {
    check_on(spec, contents, &spec.base.image)
}

/// [`check`], with `base_image` named in the hint (`--base` may replace the config's).
fn check_on(spec: &Spec, contents: &ImageContents, base_image: &str) -> Option<MissingProgram> {
    if !spec.runtime.check_entrypoint || spec.runtime.entrypoint.is_empty() {
        return None;
    }
    let programs = crate::config::command::programs(&spec.runtime.entrypoint)?;
    programs
        .into_iter()
        .find(|program| contents.holds(program, &spec.app.workdir) == Some(false))
        .map(|program| MissingProgram { hint: hint(spec, &program, base_image), program })
}

/// `build`'s check, over the base's facts and every layer it built. With the
/// base replaced by `--base scratch` (layers only, as tests and benchmarks
/// do) a missing program is a warning: that image is not meant to start.
pub fn check_build(
    spec: &Spec,
    facts: &BaseFacts,
    built: &[crate::execute::layers::BuiltLayer],
    image_env: Option<&[String]>,
    base_image: &str,
    scratch_override: bool,
    warnings: &mut Vec<String>,
) -> Result<(), MissingProgram> {
    let mut contents = ImageContents::new(image_env);
    contents.add_base(facts);
    contents.add_programs(built.iter().flat_map(|layer| layer.programs.iter().cloned()));
    match check_on(spec, &contents, base_image) {
        Some(missing) if scratch_override => {
            warnings.push(format!("{missing} (the base is `scratch`, so the image cannot start)"));
            Ok(())
        }
        Some(missing) => Err(missing),
        None => Ok(()),
    }
}

/// What to add to the config so that the image holds `program`.
fn hint(spec: &Spec, program: &str, base_image: &str) -> String {
    if program.contains('/') {
        return format!(
            "check the path: no file of the base image, the packages or the app files is at {program} \
             (a relative path is taken from the working directory {})",
            spec.app.workdir
        );
    }
    let base_key = match spec.source.format {
        ConfigFormat::Cerebrium => "docker_base_image_url",
        ConfigFormat::Truss => "base_image.image",
    };
    if program.starts_with("python") {
        return format!(
            "the base image {base_image} has no `{program}`; use a base with Python, e.g. {base_key} = \"python:{}-slim\"",
            spec.python.version
        );
    }
    let package = match program {
        "fastapi" => "fastapi[standard]",
        "hf" | "huggingface-cli" => "huggingface_hub",
        "vllm" => "vllm",
        other => other,
    };
    let file = spec.dependencies.pip_file.as_ref().and_then(|f| f.file_name()).map(|f| f.to_string_lossy());
    match (spec.source.format, file) {
        (_, Some(file)) => format!("add {package} to {file}"),
        (ConfigFormat::Cerebrium, None) => format!("add {package} to [cerebrium.dependencies.pip]"),
        (ConfigFormat::Truss, None) => format!("add {package} to `requirements:`"),
    }
}

/// For `validate`: what the image will hold, from the lock and this
/// machine's cache (no network): the base's cached facts, the console
/// scripts of cached wheels, the app files. Debian and conda packages'
/// files are not read here; with any of them locked, a program not found
/// elsewhere is unknown.
pub fn contents_from_lock(spec: &Spec, lock: &crate::lock::Lock, cache_dir: &Path) -> ImageContents {
    let base = match &lock.base.pinned {
        Some(pinned) => crate::resolve::basefs::cached_facts_of_pinned(pinned, cache_dir),
        None => None,
    };
    let mut contents = ImageContents::new(base.as_ref().and_then(|(_, env)| env.as_deref()));
    match (&base, spec.base.image.as_str()) {
        (Some((facts, _)), _) => contents.add_base(facts),
        (None, "scratch") => {}
        (None, image) => contents.add_unknown_base(format!("the base image {image} (not in the cache)")),
    }
    if let Some(python) = &lock.python {
        for wheel in &python.packages {
            let path = crate::deps::python::cached_wheel_path(cache_dir, wheel);
            match wheel_scripts(&path) {
                Ok(scripts) => contents.add_programs(scripts.into_iter().map(|s| format!("{CONSOLE_SCRIPTS_DIR}/{s}"))),
                Err(_) => contents.add_unknown(format!("the wheel {} (not in the cache)", wheel.filename())),
            }
        }
    }
    if lock.apt.as_ref().is_some_and(|apt| !apt.packages.is_empty()) {
        contents.add_unknown("the Debian packages");
    }
    if lock.conda.as_ref().is_some_and(|conda| !conda.packages.is_empty()) {
        contents.add_unknown("the conda packages");
    }
    match app_programs(spec) {
        Some(programs) => contents.add_programs(programs),
        None => contents.add_unknown("the app files"),
    }
    contents
}

/// Executable app files, at their image paths.
fn app_programs(spec: &Spec) -> Option<Vec<String>> {
    use std::os::unix::fs::PermissionsExt;
    let config_file: Vec<std::path::PathBuf> =
        spec.source.path.file_name().map(std::path::PathBuf::from).into_iter().collect();
    let selection =
        crate::image::appfiles::select_app_files(&spec.app.root, &spec.app.include, &spec.app.exclude, &config_file)
            .ok()?;
    let prefix = spec.app.workdir.trim_matches('/');
    Some(
        selection
            .files
            .iter()
            .filter(|relative| {
                std::fs::metadata(spec.app.root.join(relative)).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
            })
            .map(|relative| format!("{prefix}/{}", relative.to_string_lossy()))
            .collect(),
    )
}

/// The scripts a wheel installs: `[console_scripts]` and `[gui_scripts]` of
/// its `entry_points.txt`, and the files of its `.data/scripts/`.
pub fn wheel_scripts(wheel: &Path) -> Result<Vec<String>, WheelError> {
    let file = std::fs::File::open(wheel)?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))?;
    let mut scripts = Vec::new();
    let names: Vec<String> = archive.file_names().map(|name| name.map(|n| n.into_owned())).collect::<Result<_, _>>()?;
    for name in names {
        let mut parts = name.splitn(3, '/');
        let (top, second, rest) = (parts.next().unwrap_or(""), parts.next(), parts.next());
        if top.ends_with(".data") && second == Some("scripts") {
            if let Some(script) = rest.filter(|r| !r.is_empty() && !r.contains('/')) {
                scripts.push(script.to_string());
            }
        } else if top.ends_with(".dist-info") && second == Some("entry_points.txt") && rest.is_none() {
            let mut text = String::new();
            archive.by_name(&name)?.read_to_string(&mut text)?;
            scripts.extend(entry_point_scripts(&text));
        }
    }
    scripts.sort();
    scripts.dedup();
    Ok(scripts)
}

#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error("cannot read the wheel")]
    Io(#[from] std::io::Error),
    #[error("the wheel is not a valid zip file")]
    Zip(#[from] zip::result::ZipError),
}

/// Script names of an `entry_points.txt` (an INI file: `name = module:func`
/// under `[console_scripts]` / `[gui_scripts]`).
fn entry_point_scripts(text: &str) -> Vec<String> {
    let mut in_scripts = false;
    let mut scripts = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_scripts = matches!(section.trim(), "console_scripts" | "gui_scripts");
        } else if in_scripts {
            if let Some((name, _)) = line.split_once('=') {
                scripts.push(name.trim().to_string());
            }
        }
    }
    scripts
}

/// `file:line:col` of the entrypoint's key in the config text
/// (`entrypoint =` in cerebrium.toml, `start_command:` in config.yaml), for
/// validate's diagnostic; `None` when it cannot be found by a plain look.
pub fn key_span(format: ConfigFormat, text: &str) -> Option<crate::config::tree::Span> {
    let (key, separator) = match format {
        ConfigFormat::Cerebrium => ("entrypoint", '='),
        ConfigFormat::Truss => ("start_command", ':'),
    };
    text.lines().enumerate().find_map(|(index, line)| {
        let trimmed = line.trim_start();
        let rest = trimmed.strip_prefix(key)?.trim_start();
        rest.starts_with(separator).then(|| {
            let value = rest[1..].trim_start();
            let col = line.chars().count() - value.chars().count() + 1;
            crate::config::tree::Span { line: index + 1, col }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(entrypoint: &[&str]) -> Spec {
        let mut spec = crate::config::spec_of("cerebrium.toml", "[cerebrium.deployment]\nname = \"a\"\n");
        spec.runtime.entrypoint = entrypoint.iter().map(|s| s.to_string()).collect();
        spec
    }

    fn contents(programs: &[&str]) -> ImageContents {
        let mut contents = ImageContents::new(Some(&["PATH=/usr/local/bin:/usr/bin:/bin".to_string()]));
        let facts = BaseFacts {
            programs: ["usr/bin/python3.11", "usr/bin/sh"].iter().map(|s| s.to_string()).collect(),
            symlinked_dirs: vec![("bin".to_string(), "usr/bin".to_string())],
            ..BaseFacts::default()
        };
        contents.add_base(&facts);
        contents.add_programs(programs.iter().map(|s| s.to_string()));
        contents
    }

    #[test]
    fn a_program_on_path_in_any_layer_is_found() {
        let image = contents(&["usr/local/bin/uvicorn"]);
        assert_eq!(check(&spec(&["uvicorn", "main:app"]), &image), None);
        assert_eq!(check(&spec(&["python3.11", "-m", "x"]), &image), None);
        // `/bin/sh` through the merged-/usr link.
        assert_eq!(check(&spec(&["/bin/sh", "-c", "cd /app && exec uvicorn main:app"]), &image), None);
    }

    #[test]
    fn a_missing_program_names_the_fix() {
        let image = contents(&[]);
        let missing = check(&spec(&["uvicorn", "main:app"]), &image).unwrap();
        assert_eq!(missing.to_string(), "the entrypoint runs `uvicorn`, which is in no layer of the image");
        assert_eq!(missing.hint(), "add uvicorn to [cerebrium.dependencies.pip]");
        let in_script = check(&spec(&["/bin/sh", "-c", "gunicorn app:app --bind 0.0.0.0:80"]), &image).unwrap();
        assert_eq!(in_script.program, "gunicorn");
        let python = check(&spec(&["python3", "main.py"]), &image).unwrap();
        assert!(python.hint().contains("docker_base_image_url = \"python:3.12-slim\""), "{}", python.hint());
    }

    #[test]
    fn paths_are_checked_where_they_point() {
        let image = contents(&["app/start.sh"]);
        assert_eq!(check(&spec(&["/app/start.sh"]), &image), None);
        assert_eq!(check(&spec(&["./start.sh"]), &image), None);
        assert_eq!(check(&spec(&["/usr/bin/python3.11"]), &image), None);
        assert_eq!(check(&spec(&["/usr/local/bin/missing"]), &image).unwrap().program, "/usr/local/bin/missing");
        // Outside bin directories the base's files are not listed: unknown, not an error.
        assert_eq!(check(&spec(&["/opt/tool/run"]), &image), None);
        let mut empty = ImageContents::new(None);
        empty.add_programs(["app/start.sh".to_string()]);
        assert_eq!(check(&spec(&["/opt/tool/run"]), &empty).unwrap().program, "/opt/tool/run");
    }

    #[test]
    fn unknown_parts_or_a_disabled_check_report_nothing() {
        let mut image = contents(&[]);
        image.add_unknown("the wheel x.whl");
        assert_eq!(check(&spec(&["uvicorn"]), &image), None);
        let mut off = spec(&["uvicorn"]);
        off.runtime.check_entrypoint = false;
        assert_eq!(check(&off, &contents(&[])), None);
        // A script too dynamic to read is not checked.
        assert_eq!(check(&spec(&["sh", "-c", "$SERVER --port 1"]), &contents(&[])), None);
    }

    #[test]
    fn entry_points_list_console_and_gui_scripts() {
        let text = "[console_scripts]\nuvicorn = uvicorn.main:main\n\n[gui_scripts]\nviewer=pkg:gui\n[other]\nx = y\n";
        assert_eq!(entry_point_scripts(text), ["uvicorn", "viewer"]);
    }

    #[test]
    fn layer_entries_that_can_run() {
        let file = |path: &str, mode| LayerEntry {
            path: path.to_string(),
            mode,
            kind: EntryKind::File { source: "/dev/null".into(), size: 0 },
        };
        let entries = vec![
            file("usr/local/bin/uvicorn", 0o644),
            file("app/start.sh", 0o755),
            file("app/main.py", 0o644),
            LayerEntry { path: "usr/local/bin".into(), mode: 0o755, kind: EntryKind::Dir },
        ];
        assert_eq!(runnable_paths(&entries), ["usr/local/bin/uvicorn", "app/start.sh"]);
    }

    #[test]
    fn the_key_is_found_in_the_config_text() {
        let toml = "[cerebrium.runtime.custom]\nport = 8000\nentrypoint = [\"uvicorn\"]\n";
        assert_eq!(key_span(ConfigFormat::Cerebrium, toml), Some(crate::config::tree::Span { line: 3, col: 14 }));
        let yaml = "docker_server:\n  start_command: vllm serve\n";
        assert_eq!(key_span(ConfigFormat::Truss, yaml), Some(crate::config::tree::Span { line: 2, col: 18 }));
    }
}
