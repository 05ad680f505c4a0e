//! .deb → staging tree → layer entries. A .deb is an `ar` archive holding
//! `control.tar.*` (control file, md5sums, conffiles, maintainer scripts)
//! and `data.tar.*` (the files). Files are unpacked with their modes,
//! symlinks and hard links; paths under directories the base has as symlinks
//! (merged /usr) are moved to the symlink's target. The dpkg database is
//! updated the way dpkg would leave it after `--unpack` + `--configure`
//! (status stanza, `info/<pkg>.list`, `.md5sums`, `.conffiles`, scripts),
//! but the maintainer scripts are not run: packages that have any get a
//! warning.

use super::alternatives;
use super::control::parse_paragraphs;
use super::{AptError, BaseSystem, LockedDeb};
use crate::image::entries::{entries_from_dir, LayerEntry};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Directories Debian bases may have as symlinks (merged /usr, then
/// `var/run` → `/run`, `var/lock` → `/run/lock`) and packages ship files under.
pub const LINKABLE_DIRS: [&str; 8] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32", "var/run", "var/lock"];
/// Control members dpkg keeps in `/var/lib/dpkg/info/<pkg>.<member>`.
const INFO_MEMBERS: [&str; 11] = [
    "conffiles",
    "config",
    "md5sums",
    "postinst",
    "postrm",
    "preinst",
    "prerm",
    "shlibs",
    "symbols",
    "templates",
    "triggers",
];

/// The directories of `rootfs` that are symlinks to directories inside it
/// (`bin` → `usr/bin`, `var/run` → `run`), for [`BaseSystem::symlinked_dirs`].
pub fn symlinked_dirs(rootfs: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in LINKABLE_DIRS {
        let Ok(target) = fs::read_link(rootfs.join(dir)) else { continue };
        let Some(resolved) = target.to_str().and_then(|target| dir_link_target(dir, target)) else { continue };
        if rootfs.join(&resolved).is_dir() {
            out.push((dir.to_string(), resolved));
        }
    }
    out
}

/// The image path a directory symlink at `dir` (image path, e.g. `var/run`)
/// with link text `link_target` (`../run`, `/run`, `usr/bin`) points to; for
/// callers that read symlinks from a base's layers instead of a rootfs.
pub fn dir_link_target(dir: &str, link_target: &str) -> Option<String> {
    let parent = Path::new(dir).parent().and_then(Path::to_str).unwrap_or("");
    match link_target.strip_prefix('/') {
        Some(absolute) => normalize(absolute),
        None => normalize(&format!("{parent}/{link_target}")),
    }
}

/// `a/./b/../c` → `a/c`; `None` when it climbs above the root.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// The links in force: the base's, or Debian's merged-/usr set when the base
/// did not say and its dpkg status lists `usr-is-merged`.
fn effective_links(base: &BaseSystem) -> Vec<(String, String)> {
    if !base.symlinked_dirs.is_empty() {
        return base.symlinked_dirs.clone();
    }
    let merged = parse_paragraphs(&base.dpkg_status).ok().is_some_and(|paragraphs| {
        paragraphs.iter().any(|p| {
            p.get("Package") == Some("usr-is-merged") && p.get("Status").is_some_and(|s| s.ends_with(" installed"))
        })
    });
    if merged {
        ["bin", "sbin", "lib", "lib64"].iter().map(|d| (d.to_string(), format!("usr/{d}"))).collect()
    } else {
        Vec::new()
    }
}

/// Where `path` (relative, normalized) lands given the base's symlinked
/// directories; `None` for the symlinked directory itself (the base has it).
pub fn map_path(path: &str, links: &[(String, String)]) -> Option<String> {
    let mut current = path.to_string();
    // A few rounds: a target may itself sit under a linked directory.
    for _ in 0..4 {
        let Some((from, to)) = links.iter().find(|(from, _)| {
            current == *from
                || (current.starts_with(from.as_str()) && current.as_bytes().get(from.len()) == Some(&b'/'))
        }) else {
            return Some(current);
        };
        current = format!("{to}{}", &current[from.len()..]);
    }
    Some(current)
}

/// Largest control.tar member read (scripts, md5sums, conffiles).
const MAX_CONTROL_MEMBER: u64 = 64 << 20;

/// One package's control data, read from its `control.tar.*`.
#[derive(Default)]
pub(crate) struct ControlData {
    control: String,
    /// member name → content, for [`INFO_MEMBERS`].
    members: BTreeMap<String, Vec<u8>>,
}

/// Unpacks every .deb into `staging_dir` and returns the layer's entries
/// (sorted) and warnings. `files[i]` is the fetched file of `debs[i]`.
pub fn install_tree(
    base: &BaseSystem,
    debs: &[LockedDeb],
    files: &[PathBuf],
    staging_dir: &Path,
) -> Result<(Vec<LayerEntry>, Vec<String>), AptError> {
    assert_eq!(debs.len(), files.len(), "one file per locked deb");
    if fs::read_dir(staging_dir).is_ok_and(|mut dir| dir.next().is_some()) {
        return Err(AptError::Io {
            path: staging_dir.to_path_buf(),
            source: io::Error::other("the staging directory must be empty or not exist"),
        });
    }
    let links = effective_links(base);
    let mut warnings = Vec::new();
    let mut stanzas: BTreeMap<String, String> = BTreeMap::new();
    let mut alternative_installs = Vec::new();
    let in_base = super::resolve::installed_packages(&base.dpkg_status)?;
    let info_dir = staging_dir.join("var/lib/dpkg/info");
    create_dir_all(&info_dir)?;
    for (deb, file) in debs.iter().zip(files) {
        let (control, listed) = unpack_deb(file, staging_dir, &links, &mut warnings)?;
        let paragraph = parse_paragraphs(&control.control)
            .map_err(|e| bad(file, format!("control file: {e}")))?
            .into_iter()
            .next()
            .ok_or_else(|| bad(file, "empty control file".into()))?;
        if paragraph.get("Package") != Some(deb.name.as_str()) || paragraph.get("Version") != Some(deb.version.as_str())
        {
            return Err(bad(
                file,
                format!(
                    "is {} {}, but the lock says {} {}",
                    paragraph.get("Package").unwrap_or("?"),
                    paragraph.get("Version").unwrap_or("?"),
                    deb.name,
                    deb.version
                ),
            ));
        }
        // dpkg names info files `pkg:arch.*` for Multi-Arch: same packages.
        let info_name = if paragraph.get("Multi-Arch") == Some("same") {
            format!("{}:{}", deb.name, deb.arch)
        } else {
            deb.name.clone()
        };
        let mut list = String::from("/.\n");
        for path in &listed {
            list.push('/');
            list.push_str(path);
            list.push('\n');
        }
        write_file(&info_dir.join(format!("{info_name}.list")), list.as_bytes(), 0o644)?;
        for (member, content) in &control.members {
            let mode = if matches!(member.as_str(), "config" | "postinst" | "postrm" | "preinst" | "prerm") {
                0o755
            } else {
                0o644
            };
            write_file(&info_dir.join(format!("{info_name}.{member}")), content, mode)?;
        }
        // update-alternatives --install is done natively (below); anything else is not.
        let mut scripts: Vec<&str> = Vec::new();
        for name in ["preinst", "postinst"] {
            let Some(script) = control.members.get(name) else { continue };
            let (installs, mut rest) = alternatives::parse_script(&String::from_utf8_lossy(script));
            if !in_base.contains_key(&deb.name) {
                // Its conffile moves/removals only act on upgrades from older versions.
                rest.retain(|line| !line.starts_with("dpkg-maintscript-helper "));
            }
            if name == "postinst" {
                alternative_installs.extend(installs);
            }
            if !rest.is_empty() {
                scripts.push(name);
            }
        }
        if !scripts.is_empty() {
            warnings.push(format!(
                "{} {}: maintainer script{} {} not run (imgbake installs without running package scripts; see docs/apt.md)",
                deb.name,
                deb.version,
                if scripts.len() > 1 { "s" } else { "" },
                scripts.join(" and ")
            ));
        }
        stanzas.insert(deb.name.clone(), status_stanza(&control, &paragraph.fields)?);
    }
    install_alternatives(staging_dir, &links, alternative_installs, &mut warnings)?;
    write_file(&staging_dir.join("var/lib/dpkg/status"), merged_status(&base.dpkg_status, &stanzas).as_bytes(), 0o644)?;
    let entries = entries_from_dir(staging_dir, "").map_err(AptError::Entries)?;
    Ok((entries, warnings))
}

/// Writes the links and admin files of the chosen alternatives; an
/// alternative whose path no package of the layer ships is skipped.
fn install_alternatives(
    root: &Path,
    links: &[(String, String)],
    installs: Vec<alternatives::Install>,
    warnings: &mut Vec<String>,
) -> Result<(), AptError> {
    for (name, (best, all)) in alternatives::choose(installs) {
        let missing = std::iter::once(&best.master).chain(&best.slaves).map(|l| &l.path).find(|path| {
            map_path(path.trim_start_matches('/'), links).is_none_or(|p| root.join(p).symlink_metadata().is_err())
        });
        if let Some(path) = missing {
            warnings.push(format!("alternative `{name}`: {path} is not in the layer; its links were not made"));
            continue;
        }
        for link in std::iter::once(&best.master).chain(&best.slaves) {
            let in_etc = root.join("etc/alternatives").join(&link.name);
            create_dir_all(in_etc.parent().expect("has a parent"))?;
            remove_existing(&in_etc)?;
            std::os::unix::fs::symlink(&link.path, &in_etc).map_err(io_error(&in_etc))?;
            let Some(mapped) = map_path(link.link.trim_start_matches('/'), links) else { continue };
            ensure_no_symlink_parent(root, &mapped, &in_etc)?;
            let dest = root.join(&mapped);
            if let Some(parent) = dest.parent() {
                create_dir_all(parent)?;
            }
            remove_existing(&dest)?;
            std::os::unix::fs::symlink(format!("/etc/alternatives/{}", link.name), &dest).map_err(io_error(&dest))?;
        }
        let admin = root.join("var/lib/dpkg/alternatives").join(&name);
        write_file(&admin, alternatives::admin_file(&best, &all).as_bytes(), 0o644)?;
    }
    Ok(())
}

/// The status stanza dpkg writes for an installed package: the control
/// fields with `Status` after `Package`, plus `Conffiles` with their md5sums.
fn status_stanza(control: &ControlData, fields: &[(&str, String)]) -> Result<String, AptError> {
    let mut out = String::new();
    for (name, value) in fields {
        out.push_str(&format!("{name}: {value}\n"));
        if name.eq_ignore_ascii_case("Package") {
            out.push_str("Status: install ok installed\n");
        }
    }
    if let Some(conffiles) = control.members.get("conffiles") {
        let sums: BTreeMap<String, String> =
            String::from_utf8_lossy(control.members.get("md5sums").map_or(&[][..], |v| v))
                .lines()
                .filter_map(|line| line.split_once(char::is_whitespace))
                .map(|(sum, path)| (format!("/{}", path.trim().trim_start_matches('/')), sum.to_string()))
                .collect();
        let lines: Vec<String> = String::from_utf8_lossy(conffiles)
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("remove-on-upgrade"))
            .map(|path| format!(" {path} {}", sums.get(path).map(String::as_str).unwrap_or("newconffile")))
            .collect();
        if !lines.is_empty() {
            // Description is conventionally last but any order parses; dpkg itself reorders on its next write.
            out.push_str(&format!("Conffiles:\n{}\n", lines.join("\n")));
        }
    }
    Ok(out)
}

/// The base's status with the new stanzas added (or replacing the base's
/// stanza of the same package, for upgrades), sorted by package like dpkg.
fn merged_status(base: &str, new: &BTreeMap<String, String>) -> String {
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    let mut block = String::new();
    let flush = |block: &mut String, all: &mut BTreeMap<String, String>| {
        if block.trim().is_empty() {
            block.clear();
            return;
        }
        let name = block
            .lines()
            .find_map(|line| line.strip_prefix("Package:"))
            .map(|name| name.trim().to_string())
            .unwrap_or_default();
        let arch = block.lines().find_map(|line| line.strip_prefix("Architecture:")).unwrap_or("").trim().to_string();
        all.insert(format!("{name}\0{arch}"), std::mem::take(block));
    };
    for line in base.lines() {
        if line.trim().is_empty() {
            flush(&mut block, &mut all);
        } else {
            block.push_str(line);
            block.push('\n');
        }
    }
    flush(&mut block, &mut all);
    all.retain(|key, _| !new.contains_key(key.split('\0').next().unwrap_or("")));
    for (name, stanza) in new {
        let arch = stanza.lines().find_map(|line| line.strip_prefix("Architecture:")).unwrap_or("").trim();
        all.insert(format!("{name}\0{arch}"), stanza.clone());
    }
    all.into_values().map(|stanza| stanza + "\n").collect()
}

fn bad(path: &Path, message: String) -> AptError {
    AptError::BadDeb { path: path.to_path_buf(), message }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> AptError + '_ {
    move |source| AptError::Io { path: path.to_path_buf(), source }
}

/// `mkdir -p` giving every directory it creates mode 0755 whatever the
/// umask: these become directories of the image (`var/lib/dpkg/info`, …).
fn create_dir_all(path: &Path) -> Result<(), AptError> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dir_all(parent)?;
    }
    match fs::create_dir(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(io_error(path)),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(error) => Err(io_error(path)(error)),
    }
}

fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<(), AptError> {
    if let Some(parent) = path.parent() {
        create_dir_all(parent)?;
    }
    fs::write(path, content).map_err(io_error(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_error(path))
}

/// A decompressing reader for a `*.tar.{xz,zst,gz}` / `*.tar` ar member.
fn tar_reader<'a>(name: &str, member: impl Read + 'a, deb: &Path) -> Result<Box<dyn Read + 'a>, AptError> {
    Ok(match name.rsplit_once(".tar").map(|(_, ext)| ext) {
        Some("") => Box::new(member),
        Some(".xz") => Box::new(liblzma::read::XzDecoder::new(member)),
        Some(".zst") => Box::new(zstd::stream::read::Decoder::new(member).map_err(io_error(deb))?),
        Some(".gz") => Box::new(flate2::read::GzDecoder::new(member)),
        _ => return Err(bad(deb, format!("member `{name}` has a compression imgbake does not read (xz, zst, gz)"))),
    })
}

/// Unpacks one .deb: data into `root`, control members returned. Returns
/// the paths dpkg would list (as in the package, not remapped).
pub(crate) fn unpack_deb(
    file: &Path,
    root: &Path,
    links: &[(String, String)],
    warnings: &mut Vec<String>,
) -> Result<(ControlData, Vec<String>), AptError> {
    let reader = fs::File::open(file).map_err(io_error(file))?;
    let mut archive = ar::Archive::new(io::BufReader::new(reader));
    let mut control = None;
    let mut listed = None;
    while let Some(member) = archive.next_entry() {
        let member = member.map_err(|e| bad(file, format!("not an ar archive: {e}")))?;
        let name = String::from_utf8_lossy(member.header().identifier()).trim_end_matches('/').to_string();
        if name.starts_with("control.tar") {
            control = Some(read_control(tar_reader(&name, member, file)?, file)?);
        } else if name.starts_with("data.tar") {
            listed = Some(unpack_data(tar_reader(&name, member, file)?, file, root, links, warnings)?);
        }
    }
    match (control, listed) {
        (Some(control), Some(listed)) => Ok((control, listed)),
        _ => Err(bad(file, "has no control.tar.* or no data.tar.* member; not a binary package".into())),
    }
}

fn read_control(reader: Box<dyn Read + '_>, deb: &Path) -> Result<ControlData, AptError> {
    let mut data = ControlData::default();
    let mut archive = tar::Archive::new(crate::image::tar_guard::TarGuard::new(reader));
    for entry in archive.entries().map_err(io_error(deb))? {
        let mut entry = entry.map_err(io_error(deb))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(io_error(deb))?.to_string_lossy().trim_start_matches("./").to_string();
        if path != "control" && !INFO_MEMBERS.contains(&path.as_str()) {
            continue; // not kept, so not read
        }
        if entry.size() > MAX_CONTROL_MEMBER {
            return Err(bad(deb, format!("control member `{path}` is {} bytes; not a control file", entry.size())));
        }
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(io_error(deb))?;
        if path == "control" {
            data.control = String::from_utf8(content).map_err(|_| bad(deb, "control file is not UTF-8".into()))?;
        } else if INFO_MEMBERS.contains(&path.as_str()) {
            data.members.insert(path, content);
        }
    }
    if data.control.is_empty() {
        return Err(bad(deb, "control.tar has no `control` file".into()));
    }
    Ok(data)
}

/// Unpacks `data.tar` into `root`; returns the package's paths in archive order.
fn unpack_data(
    reader: Box<dyn Read + '_>,
    deb: &Path,
    root: &Path,
    links: &[(String, String)],
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, AptError> {
    let mut listed = Vec::new();
    let mut archive = tar::Archive::new(crate::image::tar_guard::TarGuard::new(reader));
    for entry in archive.entries().map_err(io_error(deb))? {
        let mut entry = entry.map_err(io_error(deb))?;
        let raw = entry.path().map_err(io_error(deb))?.to_string_lossy().to_string();
        let Some(path) = clean_member_path(&raw) else {
            return Err(bad(deb, format!("data.tar member `{raw}` escapes the root")));
        };
        if path.is_empty() {
            continue; // `./`
        }
        listed.push(path.clone());
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(io_error(deb))? & 0o7777;
        if header.uid().unwrap_or(0) != 0 || header.gid().unwrap_or(0) != 0 {
            warnings.push(format!(
                "{}: /{path} is owned by uid {} gid {} in the package; layers store root:root",
                deb.file_name().unwrap_or_default().to_string_lossy(),
                header.uid().unwrap_or(0),
                header.gid().unwrap_or(0)
            ));
        }
        let Some(mapped) = map_path(&path, links) else { continue };
        if mapped != path && kind.is_symlink() && links.iter().any(|(from, _)| *from == path) {
            continue; // the package ships the merged-/usr link itself; the base has it
        }
        let dest = root.join(&mapped);
        ensure_no_symlink_parent(root, &mapped, deb)?;
        if kind.is_dir() {
            if dest.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                fs::remove_file(&dest).map_err(io_error(&dest))?;
            }
            create_dir_all(&dest)?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).map_err(io_error(&dest))?;
            continue;
        }
        if let Some(parent) = dest.parent() {
            create_dir_all(parent)?;
        }
        remove_existing(&dest)?;
        if kind.is_file() {
            let mut out = fs::File::create(&dest).map_err(io_error(&dest))?;
            io::copy(&mut entry, &mut out).map_err(io_error(&dest))?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).map_err(io_error(&dest))?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(io_error(deb))?
                .ok_or_else(|| bad(deb, format!("symlink `{raw}` has no target")))?;
            std::os::unix::fs::symlink(&target, &dest).map_err(io_error(&dest))?;
        } else if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(io_error(deb))?
                .ok_or_else(|| bad(deb, format!("hard link `{raw}` has no target")))?;
            let target = clean_member_path(&target.to_string_lossy())
                .and_then(|t| map_path(&t, links))
                .ok_or_else(|| bad(deb, format!("hard link `{raw}` points outside the package")))?;
            // The target's directories may be links the package made: through
            // them a hard link would take in a file of the build machine.
            ensure_no_symlink_parent(root, &target, deb)?;
            fs::hard_link(root.join(&target), &dest).map_err(io_error(&dest))?;
        } else {
            return Err(bad(deb, format!("`{raw}` is a device, FIFO or other special file; layers cannot hold it")));
        }
    }
    Ok(listed)
}

/// `./usr/bin/x` → `usr/bin/x`; `None` for `..` or absolute escapes.
fn clean_member_path(raw: &str) -> Option<String> {
    let mut parts = Vec::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?.to_string()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Refuses to write through a symlink a package created in the staging
/// tree: it could point anywhere on the build machine.
fn ensure_no_symlink_parent(root: &Path, path: &str, deb: &Path) -> Result<(), AptError> {
    let mut current = root.to_path_buf();
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        current.push(part);
        if current.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(bad(
                deb,
                format!(
                    "`/{path}` goes through `{}`, which another package made a symlink; not supported",
                    current.strip_prefix(root).unwrap_or(&current).display()
                ),
            ));
        }
    }
    Ok(())
}

fn remove_existing(dest: &Path) -> Result<(), AptError> {
    match dest.symlink_metadata() {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(dest).map_err(io_error(dest)),
        Ok(_) => fs::remove_file(dest).map_err(io_error(dest)),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Vec<(String, String)> {
        vec![("bin".into(), "usr/bin".into()), ("lib".into(), "usr/lib".into()), ("var/run".into(), "run".into())]
    }

    #[test]
    fn usrmerge_paths_move_under_usr_and_the_link_itself_is_left_alone() {
        let links = links();
        assert_eq!(map_path("bin/ls", &links).unwrap(), "usr/bin/ls");
        assert_eq!(map_path("bin", &links).unwrap(), "usr/bin");
        assert_eq!(map_path("lib/x86_64-linux-gnu/libc.so.6", &links).unwrap(), "usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(map_path("libexec/x", &links).unwrap(), "libexec/x", "prefix must end at a `/`");
        assert_eq!(map_path("binary", &links).unwrap(), "binary");
        assert_eq!(map_path("var/run/x.pid", &links).unwrap(), "run/x.pid");
        assert_eq!(map_path("usr/bin/ffmpeg", &links).unwrap(), "usr/bin/ffmpeg");
        assert_eq!(clean_member_path("./usr/bin/").unwrap(), "usr/bin");
        assert_eq!(clean_member_path("../etc/passwd"), None);
    }

    #[test]
    fn symlinked_dirs_are_read_from_a_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::create_dir_all(root.join("run")).unwrap();
        fs::create_dir_all(root.join("var")).unwrap();
        fs::create_dir_all(root.join("sbin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("../run", root.join("var/run")).unwrap();
        std::os::unix::fs::symlink("usr/nowhere", root.join("lib64")).unwrap();
        assert_eq!(symlinked_dirs(root), links(), "sbin is a real dir, lib64 dangles");
        let status = "Package: usr-is-merged\nStatus: install ok installed\nVersion: 37\n";
        let base = BaseSystem { dpkg_status: status.into(), ..BaseSystem::default() };
        assert!(effective_links(&base).contains(&("sbin".into(), "usr/sbin".into())));
        assert!(effective_links(&BaseSystem::default()).is_empty());
    }

    /// A real .deb built with dpkg-deb would need the tool; this one is made
    /// by hand in the same format (ar of debian-binary, control.tar.gz, data.tar.xz).
    fn make_deb(dir: &Path) -> PathBuf {
        fn tar_of(files: &[(&str, &[u8], u32, Option<&str>)]) -> Vec<u8> {
            let mut builder = tar::Builder::new(Vec::new());
            for (path, content, mode, link) in files {
                let mut header = tar::Header::new_gnu();
                header.set_mode(*mode);
                match link {
                    Some(target) if path.ends_with("HARD") => {
                        header.set_entry_type(tar::EntryType::Link);
                        header.set_size(0);
                        builder.append_link(&mut header, path.trim_end_matches("HARD"), target).unwrap();
                    }
                    Some(target) => {
                        header.set_entry_type(tar::EntryType::Symlink);
                        header.set_size(0);
                        builder.append_link(&mut header, path, target).unwrap();
                    }
                    None if path.ends_with('/') => {
                        header.set_entry_type(tar::EntryType::Directory);
                        header.set_size(0);
                        builder.append_data(&mut header, path, &[][..]).unwrap();
                    }
                    None => {
                        header.set_size(content.len() as u64);
                        builder.append_data(&mut header, path, *content).unwrap();
                    }
                }
            }
            builder.into_inner().unwrap()
        }
        let control = tar_of(&[
            (
                "./control",
                b"Package: hello\nVersion: 1.0-1\nArchitecture: amd64\nMulti-Arch: foreign\nDescription: hi\n there\n",
                0o644,
                None,
            ),
            ("./conffiles", b"/etc/hello.conf\n", 0o644, None),
            ("./md5sums", b"0123456789abcdef0123456789abcdef  etc/hello.conf\n", 0o644, None),
            (
                "./postinst",
                b"#!/bin/sh\nset -e\nupdate-alternatives --install /usr/bin/hey hey /bin/hello 5\n\
                update-alternatives --install /usr/bin/gone gone /usr/lib/nothere 5\nfc-cache\n",
                0o755,
                None,
            ),
            ("./postrm", b"#!/bin/sh\nset -e\n# nothing\nexit 0\n", 0o755, None),
        ]);
        let data = tar_of(&[
            ("./", b"", 0o755, None),
            ("./bin/", b"", 0o755, None),
            ("./bin/hello", b"#!/bin/sh\necho hi\n", 0o4755, None),
            ("./bin/hi", b"", 0o777, Some("hello")),
            ("./bin/hello2HARD", b"", 0o4755, Some("./bin/hello")),
            ("./etc/", b"", 0o755, None),
            ("./etc/hello.conf", b"x=1\n", 0o640, None),
        ]);
        let mut data_xz = Vec::new();
        liblzma::read::XzEncoder::new(&data[..], 6).read_to_end(&mut data_xz).unwrap();
        let mut control_gz = Vec::new();
        flate2::read::GzEncoder::new(&control[..], flate2::Compression::default())
            .read_to_end(&mut control_gz)
            .unwrap();
        let path = dir.join("hello.deb");
        let mut builder = ar::Builder::new(fs::File::create(&path).unwrap());
        for (name, content) in
            [("debian-binary", &b"2.0\n"[..]), ("control.tar.gz", &control_gz[..]), ("data.tar.xz", &data_xz[..])]
        {
            builder.append(&ar::Header::new(name.as_bytes().to_vec(), content.len() as u64), content).unwrap();
        }
        path
    }

    #[test]
    fn a_deb_unpacks_with_modes_links_usrmerge_and_dpkg_records() {
        let dir = tempfile::tempdir().unwrap();
        let deb_path = make_deb(dir.path());
        let base = BaseSystem {
            dpkg_status: "Package: zlib1g\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n\
                Package: hello\nStatus: install ok installed\nVersion: 0.1\nArchitecture: amd64\n"
                .into(),
            symlinked_dirs: links(),
            arch: "amd64".into(),
            ..BaseSystem::default()
        };
        let locked = LockedDeb {
            name: "hello".into(),
            version: "1.0-1".into(),
            arch: "amd64".into(),
            url: "http://x/hello.deb".into(),
            sha256: String::new(),
            size: 0,
        };
        let staging = dir.path().join("staging");
        let (entries, warnings) =
            install_tree(&base, std::slice::from_ref(&locked), std::slice::from_ref(&deb_path), &staging).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert!(!paths.contains(&"bin"), "the merged-/usr link must not become a directory: {paths:?}");
        let find = |p: &str| entries.iter().find(|e| e.path == p).unwrap_or_else(|| panic!("{p} missing: {paths:?}"));
        assert_eq!(find("usr/bin/hello").mode, 0o4755);
        assert!(
            matches!(&find("usr/bin/hi").kind, crate::image::entries::EntryKind::Symlink { target } if target == "hello")
        );
        assert!(
            matches!(&find("usr/bin/hello2").kind, crate::image::entries::EntryKind::Hardlink { target } if target == "usr/bin/hello")
        );
        assert_eq!(find("etc/hello.conf").mode, 0o640);
        let status = fs::read_to_string(staging.join("var/lib/dpkg/status")).unwrap();
        assert_eq!(status.matches("Package: hello\n").count(), 1, "the upgrade replaces the base stanza: {status}");
        assert!(status.contains("Package: hello\nStatus: install ok installed\nVersion: 1.0-1\n"), "{status}");
        assert!(status.contains("Conffiles:\n /etc/hello.conf 0123456789abcdef0123456789abcdef\n"), "{status}");
        assert!(status.find("Package: hello").unwrap() < status.find("Package: zlib1g").unwrap(), "sorted");
        let list = fs::read_to_string(staging.join("var/lib/dpkg/info/hello.list")).unwrap();
        assert!(list.starts_with("/.\n/bin\n/bin/hello\n"), "dpkg lists the package's own paths: {list}");
        assert!(staging.join("var/lib/dpkg/info/hello.md5sums").is_file());
        assert!(staging.join("var/lib/dpkg/info/hello.conffiles").is_file());
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("hello 1.0-1") && warnings[0].contains("postinst"), "{warnings:?}");
        assert!(warnings[1].contains("`gone`") && warnings[1].contains("/usr/lib/nothere"), "{warnings:?}");
        // The alternative made natively, as update-alternatives would.
        assert!(
            matches!(&find("usr/bin/hey").kind, crate::image::entries::EntryKind::Symlink { target } if target == "/etc/alternatives/hey")
        );
        assert!(
            matches!(&find("etc/alternatives/hey").kind, crate::image::entries::EntryKind::Symlink { target } if target == "/bin/hello")
        );
        assert!(fs::read_to_string(staging.join("var/lib/dpkg/alternatives/hey"))
            .unwrap()
            .starts_with("auto\n/usr/bin/hey\n\n/bin/hello\n5\n"));
        assert!(!paths.contains(&"usr/bin/gone"));

        let wrong = LockedDeb { version: "2".into(), ..locked };
        let error = install_tree(&base, &[wrong], &[deb_path], &dir.path().join("s2")).unwrap_err().to_string();
        assert!(error.contains("the lock says hello 2"), "{error}");
    }
}

#[cfg(test)]
mod hostile_tests {
    use super::*;

    fn link(archive: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, target: &str) {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(0);
        header.set_mode(0o777);
        archive.append_link(&mut header, path, target).unwrap();
    }

    #[test]
    fn a_hard_link_through_a_directory_symlink_of_the_package_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "host").unwrap();
        let mut archive = tar::Builder::new(Vec::new());
        link(&mut archive, "./usr/share/d", tar::EntryType::Symlink, outside.to_str().unwrap());
        link(&mut archive, "./usr/bin/h", tar::EntryType::Link, "./usr/share/d/secret");
        let data = archive.into_inner().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let error = unpack_data(Box::new(&data[..]), Path::new("x.deb"), &root, &[], &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("symlink") || format!("{error:?}").contains("symlink"), "{error:?}");
        assert!(!root.join("usr/bin/h").exists());
        assert_eq!(std::os::unix::fs::MetadataExt::nlink(&fs::metadata(outside.join("secret")).unwrap()), 1);
    }
}
