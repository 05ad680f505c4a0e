//! Atomic file writes: a temp file in the target's directory, fsync, rename
//! over the target, fsync of the directory. A reader sees the old file or the
//! new one, never a torn one; after a crash the temp file is all that is left.
//!
//! [`free_bytes`] tells how much a write may still use.
//!
//! Files get the mode a plain `File::create` gives (0666 less the umask),
//! not tempfile's private 0600; callers that need another mode set it on
//! [`AtomicFile::file`] before [`AtomicFile::persist`].

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Prefix of temp files, so that a sweep can recognise leftovers.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Writes `bytes` to `path` atomically, creating the parent directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir)?;
    let mut file = AtomicFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.persist(path)
}

/// A file being written beside its final place; dropped without
/// [`AtomicFile::persist`], it is deleted. For streamed content, and for
/// content whose final name is known only at the end (a digest).
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
}

impl AtomicFile {
    /// A temp file in `dir` (which must exist; the final path must be in it).
    pub fn new_in(dir: &Path) -> io::Result<AtomicFile> {
        let temp =
            tempfile::Builder::new().prefix(TEMP_PREFIX).permissions(Permissions::from_mode(0o666)).tempfile_in(dir)?;
        Ok(AtomicFile { temp })
    }

    pub fn file(&self) -> &File {
        self.temp.as_file()
    }

    pub fn file_mut(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// fsync, rename to `path`, fsync of the directory.
    pub fn persist(self, path: &Path) -> io::Result<()> {
        self.temp.as_file().sync_all()?;
        self.temp.persist(path).map_err(|error| error.error)?;
        sync_dir(parent(path));
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// fsync of a directory, so that a rename in it survives a crash. Best
/// effort: some file systems refuse to fsync a directory, and the data
/// itself is already safe.
pub fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// [`sync_dir`] of the directory holding `path`, after a rename to `path`.
pub fn sync_parent(path: &Path) {
    sync_dir(parent(path));
}

/// The directory of `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Bytes an unprivileged writer may still use on the filesystem of `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["file"]);
        // Not tempfile's private 0600: readable as a plain `File::create` makes it.
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_ne!(mode & 0o044, 0, "{mode:o}");
    }

    #[test]
    fn an_unpersisted_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = AtomicFile::new_in(dir.path()).unwrap();
        file.write_all(b"partial").unwrap();
        drop(file);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn free_space_is_read_from_the_filesystem() {
        assert!(free_bytes(Path::new("/")).unwrap() > 0);
        assert!(free_bytes(Path::new("/no/such/dir")).is_err());
    }
}
