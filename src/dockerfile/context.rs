//! Writes a generated build context to a directory, atomically: everything
//! goes into a sibling temp directory that is renamed into place at the end,
//! so a killed run never leaves a half-written context behind.

use super::{Context, ContextSource, DockerfileError};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Marks a directory as written by `imgbake dockerfile`; only such a
/// directory (or an empty one) is replaced by a new context.
pub const MARKER: &str = ".imgbake-context";

/// What was written, for the command to print.
#[derive(Debug, Clone)]
pub struct Written {
    pub dir: PathBuf,
    pub files: usize,
    pub bytes: u64,
}

/// Writes `context` to `dir`, replacing an earlier context there.
pub fn write(context: &Context, dir: &Path) -> Result<Written, DockerfileError> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DockerfileError::Write { path, source }
    };
    let existing = fs::read_dir(dir).ok().map(|entries| entries.count());
    if existing.is_some_and(|count| count > 0) && !dir.join(MARKER).exists() {
        return Err(DockerfileError::Write {
            path: dir.to_path_buf(),
            source: std::io::Error::other(
                "the directory is not empty and was not written by `imgbake dockerfile`; choose another -o DIR",
            ),
        });
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(fail(&parent))?;
    let temp = tempfile::Builder::new().prefix(".imgbake-context-").tempdir_in(&parent).map_err(fail(&parent))?;
    let root = temp.path();
    let mut bytes = 0u64;
    write_file(&root.join("Dockerfile"), context.dockerfile.as_bytes())?;
    write_file(&root.join(".dockerignore"), context.dockerignore.as_bytes())?;
    write_file(&root.join(MARKER), b"written by imgbake dockerfile\n")?;
    for file in &context.files {
        let target = root.join(&file.path);
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir).map_err(fail(dir))?;
        }
        match &file.source {
            ContextSource::Bytes(content) => {
                write_file(&target, content)?;
                bytes += content.len() as u64;
            }
            ContextSource::Copy(source) => {
                bytes += fs::copy(source, &target).map_err(fail(source))?;
                File::open(&target).and_then(|f| f.sync_all()).map_err(fail(&target))?;
            }
            ContextSource::Link(source) => {
                // Store blobs and the hook never change in place: a hard link
                // costs no space; another filesystem gets a copy.
                if fs::hard_link(source, &target).is_err() {
                    fs::copy(source, &target).map_err(fail(source))?;
                    File::open(&target).and_then(|f| f.sync_all()).map_err(fail(&target))?;
                }
                bytes += fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
            }
            ContextSource::Symlink(link_target) => {
                std::os::unix::fs::symlink(link_target, &target).map_err(fail(&target))?;
            }
        }
    }
    // Swap the new context in; the old one (if any) goes away afterwards.
    let old = dir.exists().then(|| parent.join(format!(".imgbake-context-old-{}", std::process::id())));
    if let Some(old) = &old {
        fs::rename(dir, old).map_err(fail(dir))?;
    }
    let kept = temp.keep();
    fs::rename(&kept, dir).map_err(fail(dir))?;
    File::open(&parent).and_then(|d| d.sync_all()).map_err(fail(&parent))?;
    if let Some(old) = old {
        let _ = fs::remove_dir_all(old);
    }
    Ok(Written { dir: dir.to_path_buf(), files: context.files.len() + 2, bytes })
}

fn write_file(path: &Path, content: &[u8]) -> Result<(), DockerfileError> {
    let fail = |source| DockerfileError::Write { path: path.to_path_buf(), source };
    let mut file = File::create(path).map_err(fail)?;
    file.write_all(content).map_err(fail)?;
    file.sync_all().map_err(fail)
}
