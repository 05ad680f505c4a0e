//! The test base image: the cached debootstrap rootfs (bookworm + python3)
//! turned into an OCI layout by imgbake's own engine (base `scratch`), cached
//! under `target/imgbake-fixtures/` so only the first run pays for it.

use super::tools;
use imgbake::image::assemble::{self, ImageSettings, NewLayer};
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

/// The rootfs as one layer (imgbake's own `rootfs:` base logic) in a layout.
fn build_base(rootfs: &Path, layout_dir: &Path) {
    let all = imgbake::execute::layers::rootfs_entries(rootfs).unwrap();
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
