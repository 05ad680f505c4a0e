//! Which files of the app directory go into the app layer: Cerebrium's
//! `include` / `exclude` lists, matched with `globset`.
//!
//! Pattern rules (each one has a unit test below):
//!
//! - A leading `./` is stripped, so `./src` and `src` are the same pattern.
//!   A leading `/` anchors the pattern at the root (`/main.py`).
//!   `*`, `./*`, `**` and `./**` select everything, recursively.
//! - A trailing `/` means the directory and everything below it (`dir/` is
//!   `dir/**`). A pattern that matches a directory always selects everything
//!   below that directory too, with or without the slash.
//! - A pattern without a `/` (after the two rules above) is matched against
//!   each path component at any depth, as in `.gitignore`: `*.pyc` matches
//!   `a/b/c.pyc`, and the default exclude `.*` drops dot-files *and*
//!   dot-directories at every level (`.git/`, `.env`, `.venv/`, `pkg/.cache/`).
//!   That is Cerebrium's intent for the default (keep `.git`, `.env` and
//!   `.venv` out of the image) applied consistently to nested projects.
//! - A pattern with a `/` is anchored at the app root and matched against the
//!   whole relative path; `*` does not cross `/`, `**` does, and braces
//!   `{a,b}` are alternatives.
//! - Excludes apply to included files. The paths in `always_include` (the
//!   config file itself) are selected whatever the lists say.
//!
//! Symlinks are selected as symlinks: never followed, so a link that points
//! outside the root carries only its target string into the layer (with a
//! warning). Directories are implied by the files below them; empty
//! directories are not selected. Sockets, FIFOs and device nodes are skipped.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Directory names that are almost never meant to be in an image; selecting
/// anything below one of them gets a warning.
const HEAVY_DIRECTORIES: [&str; 4] = [".git", ".venv", "node_modules", "__pycache__"];

/// The files for the app layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppFileSelection {
    /// Paths relative to the root, files and symlinks only, sorted by
    /// component (`PathBuf`'s order), without duplicates.
    pub files: Vec<PathBuf>,
    pub warnings: Vec<AppFileWarning>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppFileWarning {
    /// Files under `.git`, `.venv`, `node_modules` or `__pycache__` are in the
    /// selection.
    HeavyDirectory {
        /// Relative path of the directory, e.g. `sub/node_modules`.
        directory: PathBuf,
        files: usize,
    },
    /// A selected symlink points outside the root (absolute or `..`); the link
    /// is kept, its target is not copied.
    SymlinkOutsideRoot { path: PathBuf, target: PathBuf },
    /// A socket, FIFO or device node matched and was skipped.
    SpecialFileSkipped { path: PathBuf },
}

impl fmt::Display for AppFileWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppFileWarning::HeavyDirectory { directory, files } => write!(
                f,
                "the app files include `{}/` ({files} file{}); add it to `exclude` unless the image needs it",
                directory.display(),
                if *files == 1 { "" } else { "s" }
            ),
            AppFileWarning::SymlinkOutsideRoot { path, target } => write!(
                f,
                "symlink `{}` points outside the app directory (`{}`); it is kept as a link and its target is not copied",
                path.display(),
                target.display()
            ),
            AppFileWarning::SpecialFileSkipped { path } => write!(
                f,
                "`{}` is not a regular file, directory or symlink; skipped",
                path.display()
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppFilesError {
    #[error("invalid glob pattern `{pattern}` in `{list}`")]
    BadPattern {
        pattern: String,
        list: &'static str,
        #[source]
        source: globset::Error,
    },
    #[error("failed to read the app directory at `{}`", path.display())]
    Walk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` must always be included but does not exist in `{}`", path.display(), root.display())]
    AlwaysIncludeMissing { path: PathBuf, root: PathBuf },
    #[error("`{}` must always be included but is outside the app directory `{}`", path.display(), root.display())]
    AlwaysIncludeOutsideRoot { path: PathBuf, root: PathBuf },
}

/// One list of patterns, split into the two ways a pattern matches.
struct PatternSet {
    /// Patterns without `/`: matched against every path component.
    any_component: GlobSet,
    /// Patterns with `/`: matched against every leading part of the path
    /// (`a`, `a/b`, `a/b/c`), so a matched directory selects its contents.
    anchored: GlobSet,
}

impl PatternSet {
    fn new(patterns: &[String], list: &'static str) -> Result<PatternSet, AppFilesError> {
        let mut any_component = GlobSetBuilder::new();
        let mut anchored = GlobSetBuilder::new();
        for pattern in patterns {
            let (normalized, is_anchored) = normalize_pattern(pattern);
            let glob = build_glob(&normalized).map_err(|source| AppFilesError::BadPattern {
                pattern: pattern.clone(),
                list,
                source,
            })?;
            if is_anchored {
                anchored.add(glob);
            } else {
                any_component.add(glob);
            }
        }
        let build = |builder: GlobSetBuilder| {
            builder.build().map_err(|source| AppFilesError::BadPattern { pattern: patterns.join(", "), list, source })
        };
        Ok(PatternSet { any_component: build(any_component)?, anchored: build(anchored)? })
    }

    /// Whether `relative` or one of its parent directories matches.
    fn matches(&self, relative: &Path) -> bool {
        let mut prefix = PathBuf::new();
        for component in relative.components() {
            let Component::Normal(name) = component else {
                continue;
            };
            if self.any_component.is_match(Path::new(name)) {
                return true;
            }
            prefix.push(name);
            if self.anchored.is_match(&prefix) {
                return true;
            }
        }
        false
    }
}

/// `./x` → `x`, `dir/` → `dir/**`, `*` / `./*` / empty → `**`. The flag says
/// whether the pattern is anchored at the root: it contains a `/`, or started
/// with one (`/main.py` is `main.py` at the root only).
fn normalize_pattern(pattern: &str) -> (String, bool) {
    let mut text = pattern.trim();
    let mut anchored = false;
    loop {
        if let Some(rest) = text.strip_prefix("./") {
            text = rest;
        } else if let Some(rest) = text.strip_prefix('/') {
            text = rest;
            anchored = true;
        } else {
            break;
        }
    }
    if text == "." || text == "*" || text.is_empty() {
        return ("**".to_string(), false);
    }
    let text = match text.strip_suffix('/') {
        Some(directory) => format!("{}/**", directory.trim_end_matches('/')),
        None => text.to_string(),
    };
    let anchored = anchored || text.contains('/');
    (text, anchored)
}

fn build_glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).backslash_escape(true).empty_alternates(true).build()
}

/// Files at the top of the app root that belong to the build, not the app,
/// and are never copied in: `imgbake.lock` (a build records weights hashes
/// into it after the app layer is made; in the layer it would change the
/// image on the next build, and the app never reads it).
pub const BUILD_ONLY_FILES: &[&str] = &[crate::spec::LOCK_FILE];

/// Select the app files under `root`: everything matching `include`, minus
/// everything matching `exclude` and [`BUILD_ONLY_FILES`], plus
/// `always_include` (paths relative to `root`, or absolute paths inside it).
pub fn select_app_files(
    root: &Path,
    include: &[String],
    exclude: &[String],
    always_include: &[PathBuf],
) -> Result<AppFileSelection, AppFilesError> {
    let include = PatternSet::new(include, "include")?;
    let exclude = PatternSet::new(exclude, "exclude")?;

    let mut files = Vec::new();
    let mut warnings = Vec::new();
    let mut walker = walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name().into_iter();
    while let Some(entry) = walker.next() {
        let entry = entry.map_err(|error| {
            let path = error.path().unwrap_or(root).to_path_buf();
            AppFilesError::Walk { path, source: error.into() }
        })?;
        let relative = match entry.path().strip_prefix(root) {
            Ok(relative) if !relative.as_os_str().is_empty() => relative.to_path_buf(),
            _ => continue,
        };
        let file_type = entry.file_type();
        if file_type.is_dir() {
            // Nothing below an excluded directory can be selected (except
            // `always_include`, handled below), so don't read it: `.venv` can
            // hold a hundred thousand files.
            if exclude.matches(&relative) {
                walker.skip_current_dir();
            }
            continue;
        }
        if !include.matches(&relative) || exclude.matches(&relative) {
            continue;
        }
        if BUILD_ONLY_FILES.iter().any(|name| relative.as_os_str() == *name) {
            continue;
        }
        if file_type.is_file() || file_type.is_symlink() {
            files.push(relative);
        } else {
            warnings.push(AppFileWarning::SpecialFileSkipped { path: relative });
        }
    }

    for path in always_include {
        let relative = relative_to_root(root, path)?;
        let metadata = std::fs::symlink_metadata(root.join(&relative))
            .map_err(|_| AppFilesError::AlwaysIncludeMissing { path: path.clone(), root: root.to_path_buf() })?;
        if metadata.is_dir() {
            return Err(AppFilesError::AlwaysIncludeMissing { path: path.clone(), root: root.to_path_buf() });
        }
        files.push(relative);
    }

    files.sort();
    files.dedup();

    for path in &files {
        if let Ok(target) = std::fs::read_link(root.join(path)) {
            if link_leaves_root(path, &target) {
                warnings.push(AppFileWarning::SymlinkOutsideRoot { path: path.clone(), target });
            }
        }
    }
    warnings.extend(heavy_directory_warnings(&files));
    Ok(AppFileSelection { files, warnings })
}

/// `path` relative to `root`, normalized (`./` removed), refusing `..`.
fn relative_to_root(root: &Path, path: &Path) -> Result<PathBuf, AppFilesError> {
    let outside = || AppFilesError::AlwaysIncludeOutsideRoot { path: path.to_path_buf(), root: root.to_path_buf() };
    let relative = if path.is_absolute() { path.strip_prefix(root).map_err(|_| outside())? } else { path };
    let mut normalized = PathBuf::new();
    for component in relative.components() {
        match component {
            Component::Normal(name) => normalized.push(name),
            Component::CurDir => {}
            _ => return Err(outside()),
        }
    }
    if normalized.as_os_str().is_empty() {
        return Err(outside());
    }
    Ok(normalized)
}

/// Whether a symlink at `link` (relative to the root) with `target` resolves,
/// lexically, to somewhere outside the root.
fn link_leaves_root(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return true;
    }
    // Depth of the directory holding the link.
    let mut depth = link.components().count().saturating_sub(1) as isize;
    for component in target.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

/// One warning per outermost heavy directory that has selected files in it.
fn heavy_directory_warnings(files: &[PathBuf]) -> Vec<AppFileWarning> {
    let mut counts: BTreeMap<PathBuf, usize> = BTreeMap::new();
    for path in files {
        let mut prefix = PathBuf::new();
        let mut components = path.components().peekable();
        while let Some(component) = components.next() {
            prefix.push(component);
            // The last component is the file itself, not a directory.
            if components.peek().is_none() {
                break;
            }
            let is_heavy = component.as_os_str().to_str().is_some_and(|name| HEAVY_DIRECTORIES.contains(&name));
            if is_heavy {
                *counts.entry(prefix).or_default() += 1;
                break;
            }
        }
    }
    counts.into_iter().map(|(directory, files)| AppFileWarning::HeavyDirectory { directory, files }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A temp tree with files at several depths, dot-files and heavy dirs.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for path in [
            "cerebrium.toml",
            "main.py",
            "README.md",
            ".env",
            ".git/HEAD",
            ".git/objects/ab/cdef",
            ".venv/lib/site.py",
            "src/app.py",
            "src/util.py",
            "src/data.json",
            "src/.cache/x",
            "src/pkg/__pycache__/m.cpython-311.pyc",
            "src/pkg/mod.py",
            "web/node_modules/left-pad/index.js",
            "web/node_modules/left-pad/package.json",
            "web/index.js",
            "example_exclude/big.bin",
            "weights/model.safetensors",
            "weights/config.json",
        ] {
            let full = dir.path().join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, path).unwrap();
        }
        dir
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn select(root: &Path, include: &[&str], exclude: &[&str]) -> Vec<String> {
        select_app_files(root, &strings(include), &strings(exclude), &[])
            .unwrap()
            .files
            .iter()
            .map(|p| p.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn star_and_dot_star_select_everything_recursively() {
        let dir = tree();
        let all = select(dir.path(), &["*"], &[]);
        assert_eq!(all.len(), 19);
        assert!(all.contains(&"src/pkg/mod.py".to_string()));
        assert_eq!(select(dir.path(), &["./*"], &[]), all);
        assert_eq!(select(dir.path(), &["**"], &[]), all);
        assert_eq!(select(dir.path(), &["./"], &[]), all);
    }

    #[test]
    fn result_is_sorted_without_duplicates() {
        let dir = tree();
        let files = select(dir.path(), &["*", "main.py", "src/"], &[]);
        let mut sorted = files.clone();
        sorted.sort_by(|a, b| Path::new(a).cmp(Path::new(b)));
        sorted.dedup();
        assert_eq!(files, sorted);
    }

    #[test]
    fn leading_dot_slash_is_stripped() {
        let dir = tree();
        assert_eq!(select(dir.path(), &["./main.py"], &[]), ["main.py"]);
        assert_eq!(select(dir.path(), &["./src/app.py", "./src/util.py"], &[]), ["src/app.py", "src/util.py"]);
    }

    #[test]
    fn trailing_slash_means_directory_and_everything_below() {
        let dir = tree();
        assert_eq!(select(dir.path(), &["weights/"], &[]), ["weights/config.json", "weights/model.safetensors"]);
        // Without the slash a matched directory selects its contents too.
        assert_eq!(select(dir.path(), &["./weights"], &[]), ["weights/config.json", "weights/model.safetensors"]);
    }

    #[test]
    fn pattern_without_slash_matches_at_any_depth() {
        let dir = tree();
        assert_eq!(
            select(dir.path(), &["*.py"], &[".*", "__pycache__"]),
            ["main.py", "src/app.py", "src/pkg/mod.py", "src/util.py"]
        );
    }

    #[test]
    fn pattern_with_slash_is_anchored_and_star_stays_in_one_directory() {
        let dir = tree();
        assert_eq!(select(dir.path(), &["src/*.py"], &[]), ["src/app.py", "src/util.py"]);
        assert_eq!(select(dir.path(), &["src/**/*.py"], &[]), ["src/app.py", "src/pkg/mod.py", "src/util.py"]);
        // Anchored: `pkg/mod.py` is not at the root.
        assert!(select(dir.path(), &["pkg/mod.py"], &[]).is_empty());
        // A leading `/` anchors a pattern without another slash.
        assert_eq!(select(dir.path(), &["/*.py"], &[]), ["main.py"]);
    }

    #[test]
    fn braces_are_alternatives() {
        let dir = tree();
        assert_eq!(select(dir.path(), &["src/*.{py,json}"], &[]), ["src/app.py", "src/data.json", "src/util.py"]);
        assert_eq!(select(dir.path(), &["{main.py,README.md}"], &[]), ["README.md", "main.py"]);
    }

    #[test]
    fn default_exclude_drops_dot_files_and_dot_directories_at_any_level() {
        let dir = tree();
        let files = select(dir.path(), &["./*"], &[".*"]);
        for dropped in [".env", ".git/HEAD", ".git/objects/ab/cdef", ".venv/lib/site.py", "src/.cache/x"] {
            assert!(!files.contains(&dropped.to_string()), "{dropped} selected");
        }
        assert!(files.contains(&"main.py".to_string()));
        assert_eq!(files.len(), 14);
    }

    #[test]
    fn excludes_apply_to_included_files() {
        let dir = tree();
        let files = select(dir.path(), &["./*"], &[".*", "./example_exclude", "weights/*.safetensors"]);
        assert!(!files.iter().any(|f| f.starts_with("example_exclude")));
        assert!(!files.contains(&"weights/model.safetensors".to_string()));
        assert!(files.contains(&"weights/config.json".to_string()));
    }

    #[test]
    fn always_include_wins_over_exclude_and_missing_include() {
        let dir = tree();
        let selection = select_app_files(
            dir.path(),
            &strings(&["main.py"]),
            &strings(&["*.toml"]),
            &[PathBuf::from("./cerebrium.toml")],
        )
        .unwrap();
        assert_eq!(selection.files, [PathBuf::from("cerebrium.toml"), PathBuf::from("main.py")]);
        // An absolute path inside the root works too.
        let absolute = dir.path().join("cerebrium.toml");
        let selection = select_app_files(dir.path(), &[], &[], &[absolute]).unwrap();
        assert_eq!(selection.files, [PathBuf::from("cerebrium.toml")]);
    }

    #[test]
    fn always_include_must_exist_inside_the_root() {
        let dir = tree();
        let missing = select_app_files(dir.path(), &[], &[], &[PathBuf::from("nope.toml")]);
        assert!(matches!(missing, Err(AppFilesError::AlwaysIncludeMissing { .. })));
        let outside = select_app_files(dir.path(), &[], &[], &[PathBuf::from("../x.toml")]);
        assert!(matches!(outside, Err(AppFilesError::AlwaysIncludeOutsideRoot { .. })));
    }

    #[test]
    fn heavy_directories_are_warned_with_their_file_count() {
        let dir = tree();
        let selection = select_app_files(dir.path(), &strings(&["*"]), &[], &[]).unwrap();
        let messages: Vec<String> = selection.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            selection.warnings,
            [
                AppFileWarning::HeavyDirectory { directory: PathBuf::from(".git"), files: 2 },
                AppFileWarning::HeavyDirectory { directory: PathBuf::from(".venv"), files: 1 },
                AppFileWarning::HeavyDirectory { directory: PathBuf::from("src/pkg/__pycache__"), files: 1 },
                AppFileWarning::HeavyDirectory { directory: PathBuf::from("web/node_modules"), files: 2 },
            ]
        );
        assert!(messages[0].contains("`.git/` (2 files)"), "{}", messages[0]);
        // With the default exclude only node_modules and __pycache__ remain.
        let selection = select_app_files(dir.path(), &strings(&["*"]), &strings(&[".*"]), &[]).unwrap();
        assert_eq!(selection.warnings.len(), 2);
    }

    #[test]
    fn symlinks_are_kept_as_links_and_never_followed() {
        let dir = tree();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "secret").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked_dir")).unwrap();
        std::os::unix::fs::symlink("../../etc/passwd", dir.path().join("src/escape")).unwrap();
        std::os::unix::fs::symlink("app.py", dir.path().join("src/alias.py")).unwrap();

        let selection = select_app_files(dir.path(), &strings(&["linked_dir", "src/"]), &[], &[]).unwrap();
        let files = &selection.files;
        // The directory link is one entry; nothing below it is read.
        assert!(files.contains(&PathBuf::from("linked_dir")));
        assert!(!files.iter().any(|f| f.starts_with("linked_dir/secret")));
        assert!(files.contains(&PathBuf::from("src/alias.py")));
        assert!(files.contains(&PathBuf::from("src/escape")));
        assert!(fs::symlink_metadata(dir.path().join("src/alias.py")).unwrap().file_type().is_symlink());
        let outside_links: Vec<&PathBuf> = selection
            .warnings
            .iter()
            .filter_map(|w| match w {
                AppFileWarning::SymlinkOutsideRoot { path, .. } => Some(path),
                _ => None,
            })
            .collect();
        assert_eq!(outside_links, [&PathBuf::from("linked_dir"), &PathBuf::from("src/escape")]);
    }

    #[test]
    fn bad_glob_is_an_error_naming_the_pattern() {
        let dir = tree();
        let error = select_app_files(dir.path(), &strings(&["src/[a-"]), &[], &[]).unwrap_err();
        assert!(error.to_string().contains("`src/[a-`"), "{error}");
        assert!(error.to_string().contains("include"), "{error}");
        let error = select_app_files(dir.path(), &strings(&["*"]), &strings(&["{a,b"]), &[]).unwrap_err();
        assert!(error.to_string().contains("`{a,b`"), "{error}");
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn link_leaving_root_is_lexical() {
        assert!(link_leaves_root(Path::new("a"), Path::new("/etc")));
        assert!(link_leaves_root(Path::new("a"), Path::new("../x")));
        assert!(!link_leaves_root(Path::new("a/b"), Path::new("../x")));
        assert!(link_leaves_root(Path::new("a/b"), Path::new("../../x")));
        assert!(link_leaves_root(Path::new("a/b"), Path::new("c/../../../x")));
        assert!(!link_leaves_root(Path::new("a/b"), Path::new("./c")));
    }
}
