//! The OCI engine end to end: layers (gzip, zstd, none, one through the
//! cache) on scratch, written to a layout dir, then checked by real tools:
//! `skopeo inspect` reads the image, `umoci unpack` extracts it (as root),
//! and the rootfs holds the files with their content, modes and links.
//! Debian's umoci 0.4.7 cannot unpack zstd layers, so the zstd image is
//! checked with skopeo plus the `zstd` and GNU `tar` command-line tools.
//! A missing tool fails the test naming it; `IMGBAKE_SKIP_TOOL_TESTS=1` skips.

use imgbake::image::assemble::{assemble, created_timestamp, ImageSettings, NewLayer};
use imgbake::image::cache::LayerCache;
use imgbake::image::entries::{entries_from_dir, entries_from_files};
use imgbake::image::layer::{write_layer, Compression, LayerOptions};
use imgbake::image::layout::{read_image, OciLayout};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

const SKIP_ENV: &str = "IMGBAKE_SKIP_TOOL_TESTS";

/// Runs a tool; a missing tool is a failure that names it.
fn run(tool: &str, args: &[&str]) -> String {
    let output = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("`{tool}` is needed by this test and could not be run ({e}); install it (apt) or set {SKIP_ENV}=1")
    });
    assert!(
        output.status.success(),
        "`{tool} {}` failed: {}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn make_app(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::write(root.join("main.py"), b"print('hello from imgbake')\n").unwrap();
    fs::write(root.join("bin/start"), b"#!/bin/sh\nexec python3 /app/main.py\n").unwrap();
    fs::set_permissions(root.join("bin/start"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::hard_link(root.join("main.py"), root.join("main-copy.py")).unwrap();
    std::os::unix::fs::symlink("bin/start", root.join("start")).unwrap();
    let long_dir = root.join("l".repeat(110));
    fs::create_dir(&long_dir).unwrap();
    fs::write(long_dir.join("deep.txt"), b"deep").unwrap();
}

#[test]
fn layout_is_read_by_skopeo_and_unpacked_by_umoci() {
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app-src");
    make_app(&app);
    let weights = work.path().join("w.safetensors");
    let weight_bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(&weights, &weight_bytes).unwrap();
    let notes = work.path().join("NOTES");
    fs::write(&notes, b"plain tar layer\n").unwrap();

    let layout_dir = work.path().join("layout");
    let layout = OciLayout::create(&layout_dir).unwrap();
    let cache = LayerCache::open(&work.path().join("cache")).unwrap();
    let options = |compression| LayerOptions { compression, mtime: 1_700_000_000 };

    let app_entries = entries_from_dir(&app, "app").unwrap();
    let app_layer = write_layer(layout.blobs(), &app_entries, &options(Compression::Gzip { level: 6 })).unwrap();
    let weight_entries = entries_from_files(&[(weights, "app/model_cache/m/w.safetensors".into())]).unwrap();
    let weights_layer =
        cache.get_or_build(&weight_entries, &options(Compression::Gzip { level: 1 }), write_layer).unwrap().layer;
    cache.export(&weights_layer, layout.blobs()).unwrap();
    let notes_entries = entries_from_files(&[(notes, "NOTES".into())]).unwrap();
    let notes_layer = write_layer(layout.blobs(), &notes_entries, &options(Compression::None)).unwrap();

    let layers = vec![
        NewLayer {
            layer: app_layer,
            history: format!("imgbake: app files ({} files)", app_entries.iter().filter(|e| e.is_file()).count()),
        },
        NewLayer { layer: weights_layer, history: "imgbake: weights m (1 file)".into() },
        NewLayer { layer: notes_layer, history: "imgbake: notes".into() },
    ];
    let settings = ImageSettings {
        entrypoint: Some(vec!["/app/start".into()]),
        env: Some(vec!["PATH=/usr/bin:/bin".into()]),
        working_dir: Some("/app".into()),
        exposed_ports: Some(vec!["8000".into()]),
        ..Default::default()
    };
    let image = assemble(None, &layers, &settings, &created_timestamp()).unwrap();
    layout.write_image(&image, "v1").unwrap();
    assert_eq!(read_image(&layout_dir, "v1").unwrap().manifest, image.manifest);

    // skopeo reads the layout and agrees on the digests.
    let reference = format!("oci:{}:v1", layout_dir.display());
    let inspect: serde_json::Value = serde_json::from_str(&run("skopeo", &["inspect", &reference])).unwrap();
    assert_eq!(inspect["Digest"], image.manifest_digest.to_string());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    let skopeo_layers: Vec<String> =
        inspect["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
    let ours: Vec<String> = layers.iter().map(|l| l.layer.digest.to_string()).collect();
    assert_eq!(skopeo_layers, ours);
    let raw: serde_json::Value =
        serde_json::from_str(&run("skopeo", &["inspect", "--config", "--raw", &reference])).unwrap();
    assert_eq!(raw["config"]["Entrypoint"][0], "/app/start");

    // umoci unpacks it (it verifies every blob's digest and each diff_id).
    let bundle = work.path().join("bundle");
    let image_arg = format!("{}:v1", layout_dir.display());
    run("umoci", &["unpack", "--image", &image_arg, bundle.to_str().unwrap()]);
    let rootfs = bundle.join("rootfs");
    assert_eq!(fs::read(rootfs.join("app/main.py")).unwrap(), b"print('hello from imgbake')\n");
    let start = fs::metadata(rootfs.join("app/bin/start")).unwrap();
    assert_eq!(start.permissions().mode() & 0o7777, 0o755);
    assert_eq!(fs::read_link(rootfs.join("app/start")).unwrap(), Path::new("bin/start"));
    assert_eq!(
        fs::metadata(rootfs.join("app/main-copy.py")).unwrap().ino(),
        fs::metadata(rootfs.join("app/main.py")).unwrap().ino(),
        "hard link preserved"
    );
    assert_eq!(fs::read(rootfs.join("app").join("l".repeat(110)).join("deep.txt")).unwrap(), b"deep");
    assert_eq!(fs::read(rootfs.join("app/model_cache/m/w.safetensors")).unwrap(), weight_bytes);
    assert_eq!(fs::read(rootfs.join("NOTES")).unwrap(), b"plain tar layer\n");
    assert_eq!(fs::metadata(rootfs.join("app/main.py")).unwrap().mtime(), 1_700_000_000);
}

#[test]
fn zstd_layer_is_read_by_skopeo_zstd_and_tar() {
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app-src");
    make_app(&app);
    let layout_dir = work.path().join("layout");
    let layout = OciLayout::create(&layout_dir).unwrap();
    let entries = entries_from_dir(&app, "app").unwrap();
    let options = LayerOptions { compression: Compression::Zstd { level: 3 }, mtime: 0 };
    let layer = write_layer(layout.blobs(), &entries, &options).unwrap();
    let new = NewLayer { layer: layer.clone(), history: "imgbake: app files".into() };
    let image = assemble(None, &[new], &ImageSettings::default(), &created_timestamp()).unwrap();
    layout.write_image(&image, "zstd").unwrap();

    let reference = format!("oci:{}:zstd", layout_dir.display());
    let inspect: serde_json::Value = serde_json::from_str(&run("skopeo", &["inspect", &reference])).unwrap();
    assert_eq!(inspect["Layers"][0], layer.digest.to_string());

    let blob = layout.blobs().path(&layer.digest);
    let tar_path = work.path().join("layer.tar");
    run("zstd", &["-d", "-q", "-o", tar_path.to_str().unwrap(), blob.to_str().unwrap()]);
    let sum = run("sha256sum", &[tar_path.to_str().unwrap()]);
    assert_eq!(format!("sha256:{}", &sum[..64]), layer.diff_id.to_string());
    let out = work.path().join("x");
    fs::create_dir(&out).unwrap();
    run("tar", &["-xf", tar_path.to_str().unwrap(), "-C", out.to_str().unwrap()]);
    assert_eq!(fs::read(out.join("app/main.py")).unwrap(), b"print('hello from imgbake')\n");
    assert_eq!(fs::read_link(out.join("app/start")).unwrap(), Path::new("bin/start"));
    assert_eq!(fs::read(out.join("app").join("l".repeat(110)).join("deep.txt")).unwrap(), b"deep");
}

/// Unmounts the small tmpfs when the test ends, pass or fail.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_naming_the_blob_dir_and_leaves_nothing() {
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let small = work.path().join("small");
    fs::create_dir(&small).unwrap();
    // Needs root (as umoci unpack does): a 1 MiB tmpfs to fill.
    run("mount", &["-t", "tmpfs", "-o", "size=1m", "tmpfs", small.to_str().unwrap()]);
    let _mount = Mount(small.clone());
    let input = work.path().join("big.bin");
    // Incompressible, so the compressed blob does not fit either.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..4 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    fs::write(&input, noise).unwrap();
    let entries = entries_from_files(&[(input, "big.bin".into())]).unwrap();
    let store = imgbake::image::blobs::BlobStore::open(&small).unwrap();
    for compression in [Compression::None, Compression::Gzip { level: 1 }, Compression::Zstd { level: 1 }] {
        let options = LayerOptions { compression, mtime: 0 };
        let error = write_layer(&store, &entries, &options).unwrap_err();
        let message = error.to_string();
        let blob_dir = store.blob_dir().display().to_string();
        assert!(
            matches!(error, imgbake::image::layer::LayerError::Blob(imgbake::image::blobs::BlobError::DiskFull { .. })),
            "{compression:?}: {error:?}"
        );
        assert!(message.contains("no space left") && message.contains(&blob_dir), "{message}");
        assert_eq!(fs::read_dir(store.blob_dir()).unwrap().count(), 0, "temp file removed");
    }
}

#[test]
fn import_across_file_systems_copies_and_checks() {
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    // /dev/shm (tmpfs) and the temp dir are different file systems, so the
    // hard link fails with EXDEV and the blob is copied.
    let shm = tempfile::tempdir_in("/dev/shm").expect("this test needs /dev/shm (tmpfs)");
    let disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    assert_ne!(
        fs::metadata(shm.path()).unwrap().dev(),
        fs::metadata(disk.path()).unwrap().dev(),
        "/dev/shm and the target dir are on one file system; this test needs two"
    );
    let cache = imgbake::image::blobs::BlobStore::open(shm.path()).unwrap();
    let layout = imgbake::image::blobs::BlobStore::open(disk.path()).unwrap();
    let digest = cache.put_bytes(b"cached layer").unwrap();
    layout.import_file(&digest, &cache.path(&digest)).unwrap();
    assert_eq!(fs::read(layout.path(&digest)).unwrap(), b"cached layer");
    assert_ne!(fs::metadata(layout.path(&digest)).unwrap().ino(), fs::metadata(cache.path(&digest)).unwrap().ino());
    // A cached file that no longer matches its digest is refused, not copied.
    let other = cache.put_bytes(b"other layer").unwrap();
    fs::write(cache.path(&other), b"tampered").unwrap();
    assert!(layout.import_file(&other, &cache.path(&other)).is_err());
    assert!(!layout.has(&other));
    assert_eq!(fs::read_dir(layout.blob_dir()).unwrap().count(), 1, "no temp file left");
}
