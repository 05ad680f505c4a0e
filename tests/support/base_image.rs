//! The test base image: the cached debootstrap rootfs (bookworm + python3)
//! turned into an OCI layout by imgbake's own engine (base `scratch`), cached
//! under `target/imgbake-fixtures/` so only the first run pays for it.

use super::tools;
use imgbake::image::assemble::{self, ImageSettings, NewLayer};
use imgbake::image::entries::{self, LayerEntry};
use imgbake::image::layer::{write_layer, Compression, LayerOptions};
use imgbake::image::layout::OciLayout;
use std::path::{Path, PathBuf};

pub const BASE_TAG: &str = "bookworm-python";

/// `oci:<dir>:bookworm-python`, built once (under a file lock) and reused.
pub fn base_layout() -> PathBuf {
    let dir = tools::repo_root().join("target/imgbake-fixtures/bookworm-python-oci");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    if !dir.join("index.json").is_file() {
        let rootfs = tools::base_rootfs();
        let partial = dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        build_base(&rootfs, &partial);
        std::fs::rename(&partial, &dir).unwrap();
    }
    dir
}

/// Every file of the rootfs in one layer; `/dev`, `/proc`, `/sys` empty
/// (a container runtime mounts its own; device nodes never go in images).
fn build_base(rootfs: &Path, layout_dir: &Path) {
    let mut all = Vec::new();
    let mut children: Vec<_> = std::fs::read_dir(rootfs).unwrap().map(|e| e.unwrap().path()).collect();
    children.sort();
    for child in children {
        let name = child.file_name().unwrap().to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(&child).unwrap();
        if ["dev", "proc", "sys"].contains(&name.as_str()) {
            all.push(LayerEntry::dir(&name, 0o755));
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&child).unwrap();
            all.push(LayerEntry::symlink(&name, &target.to_string_lossy()));
        } else if meta.is_dir() {
            all.extend(entries::entries_from_dir(&child, &name).unwrap());
        } else {
            all.extend(entries::entries_from_files(&[(child.clone(), name)]).unwrap());
        }
    }
    let all = entries::finish_entries(all).unwrap();
    let layout = OciLayout::create(layout_dir).unwrap();
    let options = LayerOptions { compression: Compression::Gzip { level: 1 }, mtime: 0 };
    let layer = write_layer(layout.blobs(), &all, &options).unwrap();
    let settings = ImageSettings {
        env: Some(vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()]),
        cmd: Some(vec!["/bin/sh".to_string()]),
        ..ImageSettings::default()
    };
    let history = "debootstrap --variant=minbase --include=python3 bookworm".to_string();
    let image = assemble::assemble(None, &[NewLayer { layer, history }], &settings, "1970-01-01T00:00:00Z").unwrap();
    layout.write_image(&image, BASE_TAG).unwrap();
}
