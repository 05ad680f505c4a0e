//! Malicious base images and packages, written by the tests themselves:
//! tar entries with `..` and absolute paths, writes through symlinks, hard
//! links to outside, device nodes, setuid files, a 10 GB sparse entry, a
//! million tiny entries, a PAX header declaring gigabytes, duplicate paths;
//! the same inside a .deb's data.tar; .deb downloads that do not match what
//! the signed index says. Nothing may be written outside imgbake's own
//! directories, nothing unverified is kept, and memory stays bounded.

mod support;

use imgbake::deps::apt::{self, BaseSystem, LockedDeb};
use imgbake::image::blobs::BlobStore;
use imgbake::image::digest::Digest;
use imgbake::image::oci::Descriptor;
use imgbake::resolve::base::ResolvedBase;
use imgbake::resolve::basefs::{self, BaseFacts};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Runs `body` in a process of its own (this test binary, filtered to test
/// `name`), so that its peak RSS is not another test's.
fn alone(name: &str, body: impl FnOnce()) {
    if std::env::var_os("IMGBAKE_HOSTILE_ALONE").is_some() {
        return body();
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("IMGBAKE_HOSTILE_ALONE", "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("{text}");
    assert!(output.status.success() && text.contains("1 passed"), "{name} in its own process failed");
}
const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A tar header block written as is: no path checks (`..`, `/abs` pass).
fn header(name: &str, kind: tar::EntryType, link: &str, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    let old = header.as_old_mut();
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_cksum();
    header
}

fn push(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, mode: u32, data: &[u8]) {
    out.extend_from_slice(header(name, kind, link, mode, data.len() as u64).as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn file(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    push(out, name, tar::EntryType::Regular, "", 0o644, data);
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0; 1024]);
    out
}

/// A base whose layers are `blobs` (already in the store), bottom first.
fn base_of(store: &Path, layers: &[(Digest, u64, &str)]) -> ResolvedBase {
    ResolvedBase {
        image: None,
        layers: layers.iter().map(|(digest, size, media)| Descriptor::new(media, digest.clone(), *size)).collect(),
        blobs: Some(BlobStore::open(store).unwrap()),
        pinned: None,
        reference: None,
    }
}

fn put(store: &Path, bytes: &[u8]) -> (Digest, u64) {
    let digest = BlobStore::open(store).unwrap().put_bytes(bytes).unwrap();
    (digest, bytes.len() as u64)
}

/// Every path under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap().path().strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// A temp dir holding imgbake's directories and a file standing for "the
/// rest of the build machine", which must stay untouched.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret"), "host secret\n").unwrap();
        Machine { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn outside(&self) -> PathBuf {
        self.path("outside")
    }
    fn assert_outside_untouched(&self) {
        assert_eq!(tree(&self.outside()), ["secret"], "something was written outside imgbake's directories");
        let secret = self.outside().join("secret");
        let meta = std::fs::symlink_metadata(&secret).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.nlink(), 1, "the host file was hard-linked into a tree");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host secret\n");
    }
}

fn facts(machine: &Machine, layers: &[&[u8]]) -> Result<BaseFacts, basefs::BaseFsError> {
    let store = machine.path("store");
    let blobs: Vec<(Digest, u64, &str)> = layers
        .iter()
        .map(|bytes| {
            let (digest, size) = put(&store, bytes);
            (digest, size, TAR)
        })
        .collect();
    basefs::facts_of_base(&base_of(&store, &blobs), &machine.path("cache"))
}

#[test]
fn base_layer_paths_that_escape_or_repeat_are_facts_about_the_image_not_the_machine() {
    let machine = Machine::new();
    let outside = machine.outside();
    let mut lower = Vec::new();
    file(&mut lower, "etc/os-release", b"ID=debian\nVERSION_CODENAME=bookworm\n");
    file(&mut lower, "../../outside/planted", b"escape");
    file(&mut lower, "/etc/apt/sources.list", b"deb http://deb.debian.org/debian bookworm main\n");
    // A symlink to the machine's directory, then a file written through it.
    push(&mut lower, "etc/apt/sources.list.d", tar::EntryType::Symlink, outside.to_str().unwrap(), 0o777, b"");
    file(&mut lower, "etc/apt/sources.list.d/evil.list", b"deb http://evil.example/ x main\n");
    // Links to the machine's files: facts never follow them on the machine.
    push(&mut lower, "usr/lib/os-release", tar::EntryType::Symlink, "/etc/hostname", 0o777, b"");
    push(&mut lower, "usr/bin/passwd", tar::EntryType::Link, "../../../outside/secret", 0o755, b"");
    push(&mut lower, "dev/sda", tar::EntryType::Block, "", 0o660, b"");
    push(&mut lower, "dev/null", tar::EntryType::Char, "", 0o666, b"");
    push(&mut lower, "usr/bin/su", tar::EntryType::Regular, "", 0o4755, b"\x7fELF");
    let lower = finish(lower);
    let mut upper = Vec::new();
    // Duplicates: the last one of the top layer wins, as when unpacked.
    file(&mut upper, "etc/os-release", b"ID=first\n");
    file(&mut upper, "./etc/os-release", b"ID=ubuntu\nVERSION_CODENAME=noble\n");
    let upper = finish(upper);

    let facts = facts(&machine, &[&lower, &upper]).unwrap();
    assert_eq!(facts.os_release.as_deref(), Some("ID=ubuntu\nVERSION_CODENAME=noble\n"));
    let sources = facts.apt_sources.unwrap();
    assert!(sources.contains("deb.debian.org"), "{sources}");
    assert!(sources.contains("evil.example"), "the layer's own entry is a fact of the image: {sources}");
    assert!(facts.programs.contains("usr/bin/su") && facts.programs.contains("usr/bin/passwd"));
    assert!(!facts.programs.iter().any(|p| p.contains("..")), "{:?}", facts.programs);
    machine.assert_outside_untouched();
    // imgbake wrote only its store and its facts cache.
    let written = tree(machine.dir.path());
    assert!(written.iter().all(|p| p.starts_with("store") || p.starts_with("cache") || p.starts_with("outside")));
}

/// A layer file that is sparse on disk: `header`, then a hole of `hole`
/// bytes, then `tail` (and the end-of-archive blocks).
fn sparse_layer(machine: &Machine, header: &[u8], hole: u64, tail: &[u8]) -> (Digest, u64) {
    let path = machine.path("sparse.tar");
    let mut out = std::fs::File::create(&path).unwrap();
    out.write_all(header).unwrap();
    let at = header.len() as u64 + hole;
    out.set_len(at).unwrap();
    std::io::Seek::seek(&mut out, std::io::SeekFrom::Start(at)).unwrap();
    out.write_all(tail).unwrap();
    out.write_all(&[0; 1024]).unwrap();
    drop(out);
    let store = BlobStore::open(&machine.path("store")).unwrap();
    // Named by a digest of its head, not of its 10 GB: the store opens blobs
    // by name (a pull checks digests on the way in; hashing 10 GB here would
    // only slow the test).
    let digest = Digest::from_sha256_bytes(&<sha2::Sha256 as sha2::Digest>::digest(header));
    let size = std::fs::metadata(&path).unwrap().len();
    // Renamed into the store: still sparse there.
    std::fs::rename(&path, store.path(&digest)).unwrap();
    (digest, size)
}

const TEN_GB: u64 = 10 << 30;

#[test]
fn a_10_gb_entry_is_skipped_without_being_held() {
    alone("a_10_gb_entry_is_skipped_without_being_held", || {
        let machine = Machine::new();
        let mut head = Vec::new();
        file(&mut head, "etc/os-release", b"ID=debian\n");
        // 10 GB at paths whose content imgbake would keep if it were small.
        head.extend_from_slice(header("etc/apt/sources.list", tar::EntryType::Regular, "", 0o644, TEN_GB).as_bytes());
        let mut tail = Vec::new();
        file(&mut tail, "usr/bin/after", b"x");
        let (digest, size) = sparse_layer(&machine, &head, TEN_GB, &tail);
        assert!(size > TEN_GB);
        let store = machine.path("store");
        let before = support::data::peak_rss_kib();
        let facts =
            basefs::facts_of_base(&base_of(&store, &[(digest.clone(), size, TAR)]), &machine.path("cache")).unwrap();
        assert_eq!(facts.apt_sources, None, "a 10 GB sources.list is not kept");
        assert!(facts.programs.contains("usr/bin/after"), "the entry after it is read");
        let shape =
            basefs::layer_shape(&BlobStore::open(&store).unwrap(), &digest, TAR, &machine.path("cache")).unwrap();
        assert_eq!(shape.tar_bytes, size);
        assert_eq!(shape.entries, 3);
        let grown = support::data::peak_rss_kib().saturating_sub(before);
        assert!(grown < 200 << 10, "peak RSS grew by {grown} KiB reading a 10 GB entry");
        machine.assert_outside_untouched();
    });
}

#[test]
fn a_gnu_sparse_entry_of_10_gb_is_not_expanded() {
    alone("a_gnu_sparse_entry_of_10_gb_is_not_expanded", || {
        let machine = Machine::new();
        // GNU sparse (`S`): 512 bytes stored, 10 GB once expanded, at the path of
        // a keyring (kept when small) and of the os-release.
        let mut layer = Vec::new();
        for path in ["usr/share/keyrings/huge.gpg", "etc/os-release"] {
            let mut sparse = header(path, tar::EntryType::GNUSparse, "", 0o644, 512);
            let gnu = sparse.as_gnu_mut().unwrap();
            gnu.sparse[0].offset = *b"117777777000"; // 10 GiB - 512, octal
            gnu.sparse[0].numbytes = *b"00000001000\0";
            gnu.realsize = *b"120000000000";
            sparse.set_cksum();
            layer.extend_from_slice(sparse.as_bytes());
            layer.extend_from_slice(&[b'k'; 512]);
        }
        file(&mut layer, "etc/debian_version", b"12.8\n");
        let layer = finish(layer);
        let before = support::data::peak_rss_kib();
        let facts = facts(&machine, &[&layer]).unwrap();
        assert!(facts.keyrings.is_empty(), "a sparse 10 GB keyring is not read");
        assert_eq!(facts.os_release, None);
        let grown = support::data::peak_rss_kib().saturating_sub(before);
        assert!(grown < 200 << 10, "peak RSS grew by {grown} KiB");
    });
}

#[test]
fn a_pax_header_declaring_10_gb_is_refused_before_it_is_read() {
    alone("a_pax_header_declaring_10_gb_is_refused_before_it_is_read", || {
        let machine = Machine::new();
        let mut head = Vec::new();
        file(&mut head, "etc/os-release", b"ID=debian\n");
        let mut pax = header("PaxHeaders/x", tar::EntryType::XHeader, "", 0o644, TEN_GB);
        pax.set_cksum();
        head.extend_from_slice(pax.as_bytes());
        // The 10 GB are there (a hole on disk, zeros when read).
        let (digest, size) = sparse_layer(&machine, &head, TEN_GB, &[]);
        let before = support::data::peak_rss_kib();
        let started = std::time::Instant::now();
        let error =
            basefs::facts_of_base(&base_of(&machine.path("store"), &[(digest, size, TAR)]), &machine.path("cache"))
                .unwrap_err();
        let chain =
            format!("{error}: {}", std::error::Error::source(&error).map(|s| s.to_string()).unwrap_or_default());
        assert!(chain.contains("extension header") && chain.contains("10737418240"), "{chain}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "read the body: {:?}", started.elapsed());
        let grown = support::data::peak_rss_kib().saturating_sub(before);
        assert!(grown < 100 << 10, "peak RSS grew by {grown} KiB");
    });
}

#[test]
fn many_keyrings_are_refused_past_a_total_not_held() {
    let machine = Machine::new();
    let mut layer = Vec::new();
    let big = vec![0x99u8; 30 << 20];
    for index in 0..6 {
        file(&mut layer, &format!("etc/apt/trusted.gpg.d/k{index}.gpg"), &big);
    }
    let layer = finish(layer);
    let error = facts(&machine, &[&layer]).unwrap_err();
    let source = std::error::Error::source(&error).unwrap().to_string();
    assert!(source.contains("keyrings") && source.contains("k4.gpg"), "{source}");
}

#[test]
fn a_million_tiny_entries_are_counted_in_bounded_memory() {
    alone("a_million_tiny_entries_are_counted_in_bounded_memory", || {
        let machine = Machine::new();
        let store = machine.path("store");
        let mut writer = BlobStore::open(&store).unwrap().writer().unwrap();
        {
            let mut gz = flate2::write::GzEncoder::new(&mut writer, flate2::Compression::fast());
            for index in 0..1_000_000u32 {
                let dir = if index % 2 == 0 { "usr/lib/x" } else { "usr/bin" };
                gz.write_all(header(&format!("{dir}/f{index:07}"), tar::EntryType::Regular, "", 0o755, 0).as_bytes())
                    .unwrap();
            }
            gz.write_all(&[0; 1024]).unwrap();
            gz.finish().unwrap();
        }
        let (digest, size) = writer.commit().unwrap();
        let before = support::data::peak_rss_kib();
        let started = std::time::Instant::now();
        let facts =
            basefs::facts_of_base(&base_of(&store, &[(digest.clone(), size, TAR_GZIP)]), &machine.path("cache"))
                .unwrap();
        assert_eq!(facts.programs.len(), 500_000);
        let shape =
            basefs::layer_shape(&BlobStore::open(&store).unwrap(), &digest, TAR_GZIP, &machine.path("cache")).unwrap();
        assert_eq!(shape.entries, 1_000_000);
        let grown = support::data::peak_rss_kib().saturating_sub(before);
        eprintln!("1M entries: {:?}, peak RSS +{} MiB", started.elapsed(), grown >> 10);
        assert!(grown < 400 << 10, "peak RSS grew by {grown} KiB for 1M entries");
    });
}

// ---------------------------------------------------------------- .deb

fn deb_bytes(data_tar: &[u8]) -> Vec<u8> {
    let mut control = Vec::new();
    file(&mut control, "./control", b"Package: hostile\nVersion: 1.0\nArchitecture: amd64\n");
    let control = finish(control);
    let mut out = Vec::new();
    {
        let mut ar = ar::Builder::new(&mut out);
        for (name, bytes) in [("debian-binary", &b"2.0\n"[..]), ("control.tar", &control[..]), ("data.tar", data_tar)] {
            ar.append(&ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64), bytes).unwrap();
        }
    }
    out
}

/// Installs a .deb whose data.tar is `data` into `<machine>/staging`.
fn install(machine: &Machine, data: Vec<u8>) -> Result<Vec<imgbake::image::entries::LayerEntry>, apt::AptError> {
    let deb = machine.path("hostile.deb");
    std::fs::write(&deb, deb_bytes(&finish(data))).unwrap();
    let locked = LockedDeb {
        name: "hostile".into(),
        version: "1.0".into(),
        arch: "amd64".into(),
        url: "http://127.0.0.1:9/hostile.deb".into(),
        sha256: "0".repeat(64),
        size: 0,
    };
    let _ = std::fs::remove_dir_all(machine.path("staging"));
    apt::install_tree(&BaseSystem::default(), &[locked], &[deb], &machine.path("staging")).map(|(entries, _)| entries)
}

#[test]
fn deb_members_that_escape_are_refused_and_write_nothing_outside() {
    let machine = Machine::new();
    let outside = machine.outside();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dot-dot",
            {
                let mut d = Vec::new();
                file(&mut d, "./usr/../../outside/planted", b"x");
                d
            },
            "escapes the root",
        ),
        (
            "write through a symlink",
            {
                let mut d = Vec::new();
                push(&mut d, "./usr/lib/evil", tar::EntryType::Symlink, outside.to_str().unwrap(), 0o777, b"");
                file(&mut d, "./usr/lib/evil/planted", b"x");
                d
            },
            "symlink",
        ),
        (
            "hard link to outside",
            {
                let mut d = Vec::new();
                push(&mut d, "./usr/bin/h", tar::EntryType::Link, "../../../outside/secret", 0o644, b"");
                d
            },
            "outside the package",
        ),
        (
            "hard link through a symlinked directory",
            {
                let mut d = Vec::new();
                push(&mut d, "./usr/share/d", tar::EntryType::Symlink, outside.to_str().unwrap(), 0o777, b"");
                push(&mut d, "./usr/bin/h", tar::EntryType::Link, "./usr/share/d/secret", 0o644, b"");
                d
            },
            "symlink",
        ),
        (
            "device node",
            {
                let mut d = Vec::new();
                push(&mut d, "./dev/sda", tar::EntryType::Block, "", 0o660, b"");
                d
            },
            "device",
        ),
        (
            "GNU sparse 10 GB",
            {
                let mut d = Vec::new();
                let mut sparse = header("./usr/lib/huge", tar::EntryType::GNUSparse, "", 0o644, 512);
                let gnu = sparse.as_gnu_mut().unwrap();
                gnu.sparse[0].offset = *b"117777777000";
                gnu.sparse[0].numbytes = *b"00000001000\0";
                gnu.realsize = *b"120000000000";
                sparse.set_cksum();
                d.extend_from_slice(sparse.as_bytes());
                d.extend_from_slice(&[1; 512]);
                d
            },
            "special file",
        ),
        (
            "PAX header of 10 GB",
            {
                let mut d = Vec::new();
                d.extend_from_slice(header("./PaxHeaders/x", tar::EntryType::XHeader, "", 0o644, TEN_GB).as_bytes());
                d.extend_from_slice(&[b'1'; 4096]);
                d
            },
            "extension header",
        ),
    ];
    for (what, data, expected) in cases {
        let error = install(&machine, data).err().unwrap_or_else(|| panic!("{what}: installed"));
        let chain = format!("{error} {error:?}");
        assert!(chain.contains(expected), "{what}: {chain}");
        machine.assert_outside_untouched();
        let staged = machine.path("staging");
        if staged.exists() {
            assert!(!tree(&staged).iter().any(|p| p.ends_with("huge") || p.ends_with("planted")), "{what}");
        }
    }
}

#[test]
fn deb_absolute_duplicate_and_setuid_members_stay_inside_the_staging_tree() {
    let machine = Machine::new();
    let outside = machine.outside();
    let mut data = Vec::new();
    file(&mut data, "/etc/hostile-absolute", b"abs");
    // Duplicates: a link to the machine replaced by a file, a file replaced by a dir.
    push(&mut data, "./usr/lib/dup", tar::EntryType::Symlink, outside.join("secret").to_str().unwrap(), 0o777, b"");
    file(&mut data, "./usr/lib/dup", b"replaced");
    file(&mut data, "./usr/lib/dir", b"a file first");
    push(&mut data, "./usr/lib/dir/", tar::EntryType::Directory, "", 0o755, b"");
    file(&mut data, "./usr/lib/dir/inner", b"inner");
    push(&mut data, "./usr/bin/su", tar::EntryType::Regular, "", 0o4755, b"\x7fELF");
    let entries = install(&machine, data).unwrap();
    machine.assert_outside_untouched();
    assert!(!Path::new("/etc/hostile-absolute").exists());
    let staged = machine.path("staging");
    assert_eq!(std::fs::read(staged.join("etc/hostile-absolute")).unwrap(), b"abs");
    assert_eq!(std::fs::read(staged.join("usr/lib/dup")).unwrap(), b"replaced");
    assert!(std::fs::symlink_metadata(staged.join("usr/lib/dup")).unwrap().is_file());
    assert_eq!(std::fs::read(staged.join("usr/lib/dir/inner")).unwrap(), b"inner");
    // The image holds what the (verified) package says, root-owned.
    let su = entries.iter().find(|e| e.path == "usr/bin/su").expect("su in the layer");
    assert_eq!(su.mode & 0o7777, 0o4755);
    assert!(entries.iter().all(|e| !e.path.starts_with('/') && !e.path.split('/').any(|p| p == "..")));
}

// ------------------------------------------------- downloads that lie

/// Serves `body` (repeated `repeat` times) for any request, on loopback.
fn serve(body: Vec<u8>, repeat: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let length = body.len() * repeat;
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
            for _ in 0..repeat {
                if stream.write_all(&body).is_err() {
                    break;
                }
            }
        }
    });
    format!("http://{address}/pool/main/h/hostile.deb")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

#[test]
fn a_deb_that_does_not_match_its_index_entry_is_refused_and_not_cached() {
    alone("a_deb_that_does_not_match_its_index_entry_is_refused_and_not_cached", || {
        let machine = Machine::new();
        let real = deb_bytes(&finish(Vec::new()));
        let cache = machine.path("cache");
        let locked = |url: String, sha256: String, size: u64| LockedDeb {
            name: "hostile".into(),
            version: "1.0".into(),
            arch: "amd64".into(),
            url,
            sha256,
            size,
        };
        // The index says one hash; the mirror serves other bytes of the same size.
        let mut other = real.clone();
        *other.last_mut().unwrap() ^= 1;
        let url = serve(other, 1);
        let error = apt::fetch(&[locked(url, sha256_hex(&real), real.len() as u64)], &cache).unwrap_err();
        assert!(matches!(error, apt::AptError::Checksum { .. }), "{error:?}");

        // The index says a size; the mirror sends 1 GiB: refused after size + 1 MiB at most.
        let before = support::data::peak_rss_kib();
        let url = serve(vec![7u8; 1 << 20], 1024);
        let started = std::time::Instant::now();
        let error = apt::fetch(&[locked(url, sha256_hex(&real), real.len() as u64)], &cache).unwrap_err();
        assert!(matches!(error, apt::AptError::Checksum { .. }), "{error:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
        let grown = support::data::peak_rss_kib().saturating_sub(before);
        assert!(grown < 100 << 10, "peak RSS grew by {grown} KiB");

        // Nothing unverified stays in the cache.
        let kept: Vec<String> = tree(&cache.join("apt/debs")).into_iter().filter(|p| p.ends_with(".deb")).collect();
        assert!(kept.is_empty(), "{kept:?}");
        machine.assert_outside_untouched();
    });
}

// ------------------------------ a signed archive whose Packages lies

/// Serves the files under `root` on loopback (`GET /path`), 404 otherwise.
/// `Packages.xz` requests get `packages_override` (bytes, times) when set.
fn serve_dir(root: PathBuf, packages_override: Option<(Vec<u8>, usize)>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let n = stream.read(&mut request).unwrap_or(0);
            let line = String::from_utf8_lossy(&request[..n]).lines().next().unwrap_or("").to_string();
            let path = line.split(' ').nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let body = match (&packages_override, path.ends_with("Packages.xz")) {
                (Some((body, times)), true) => Some((body.clone(), *times)),
                _ => std::fs::read(root.join(&path)).ok().map(|body| (body, 1)),
            };
            let _ = match body {
                Some((body, times)) => {
                    let length = body.len() * times;
                    let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
                    (0..times).try_for_each(|_| stream.write_all(&body))
                }
                None => write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            };
        }
    });
    format!("http://{address}/debian")
}

fn run_gpg(home: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = std::process::Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.unwrap_or_default()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// A one-suite archive (`bookworm main amd64`) signed with a fresh key: its
/// InRelease lists the real Packages.xz, which lists `deb` (name, size,
/// sha256 as the index says) under `pool/`. Returns (dir, keyring).
fn signed_archive(machine: &Machine, listed: &LockedDeb) -> (PathBuf, Vec<u8>) {
    let home = machine.path("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    run_gpg(
        &home,
        &["--quick-gen-key", "imgbake hostile test <hostile@example.org>", "ed25519", "sign", "never"],
        None,
    );
    let keyring = run_gpg(&home, &["--export"], None);
    let archive = machine.path("archive/debian");
    let packages = format!(
        "Package: {}\nVersion: {}\nArchitecture: amd64\nPriority: optional\nFilename: pool/main/h/hostile.deb\nSize: {}\nSHA256: {}\n",
        listed.name, listed.version, listed.size, listed.sha256
    );
    let xz = {
        let mut out = Vec::new();
        liblzma::read::XzEncoder::new(packages.as_bytes(), 6).read_to_end(&mut out).unwrap();
        out
    };
    let dists = archive.join("dists/bookworm");
    std::fs::create_dir_all(dists.join("main/binary-amd64")).unwrap();
    std::fs::write(dists.join("main/binary-amd64/Packages.xz"), &xz).unwrap();
    let release = format!(
        "Origin: Test\nSuite: stable\nCodename: bookworm\nArchitectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages.xz\n",
        sha256_hex(&xz),
        xz.len()
    );
    let signed = run_gpg(&home, &["--clearsign", "--digest-algo", "SHA512"], Some(release.as_bytes()));
    std::fs::write(dists.join("InRelease"), signed).unwrap();
    (archive, keyring)
}

fn base_for(uri: &str, keyring: Vec<u8>) -> BaseSystem {
    BaseSystem {
        os_release: "ID=debian\nVERSION_CODENAME=bookworm\n".into(),
        apt_sources: Some(format!("deb {uri} bookworm main\n")),
        arch: "amd64".into(),
        keyrings: vec![keyring],
        ..BaseSystem::default()
    }
}

#[test]
fn a_signed_archive_whose_packages_lie_is_refused() {
    if !support::tools::require_tool("gpgv") || !support::tools::require_tool("gpg") {
        return;
    }
    alone("a_signed_archive_whose_packages_lie_is_refused", || {
        let machine = Machine::new();
        let real = deb_bytes(&finish(Vec::new()));
        // The index says 4 bytes more than the real file, with the real hash.
        let lie = LockedDeb {
            name: "hostile".into(),
            version: "1.0".into(),
            arch: "amd64".into(),
            url: String::new(),
            sha256: sha256_hex(&real),
            size: real.len() as u64 + 4,
        };
        let (archive, keyring) = signed_archive(&machine, &lie);
        std::fs::create_dir_all(archive.join("pool/main/h")).unwrap();
        std::fs::write(archive.join("pool/main/h/hostile.deb"), &real).unwrap();
        let options =
            |cache: &str| apt::AptOptions { cache_dir: machine.path(cache), mirror: None, allow_unsigned: false };
        let wanted = [imgbake::spec::Requirement { name: "hostile".into(), constraint: String::new() }];

        // The signature is good: the index is read, and the lie is locked...
        let uri = serve_dir(machine.path("archive"), None);
        let locked = apt::resolve(&base_for(&uri, keyring.clone()), &wanted, &options("cache")).unwrap();
        assert_eq!(locked.len(), 1);
        assert_eq!(locked[0].size, lie.size);
        // ...but the .deb is checked against it, refused and not kept.
        let error = apt::fetch(&locked, &machine.path("cache")).unwrap_err();
        assert!(matches!(error, apt::AptError::Checksum { .. }), "{error:?}");
        assert!(tree(&machine.path("cache/apt/debs")).iter().all(|p| !p.ends_with(".deb")));

        // A Packages.xz that is not the one the signed Release lists: refused;
        // one far longer than the Release says is not read to its end.
        let cases = [("tampered", b"\xfd7zXZ\0not the signed one".to_vec(), 1), ("huge", vec![0u8; 1 << 20], 256)];
        for (what, body, times) in cases {
            let before = support::data::peak_rss_kib();
            let uri = serve_dir(machine.path("archive"), Some((body, times)));
            let error = apt::resolve(&base_for(&uri, keyring.clone()), &wanted, &options(&format!("cache-{what}")))
                .unwrap_err();
            assert!(matches!(error, apt::AptError::Checksum { .. }), "{what}: {error:?}");
            let grown = support::data::peak_rss_kib().saturating_sub(before);
            assert!(grown < 64 << 10, "{what}: peak RSS grew by {grown} KiB");
            assert!(
                !machine.path(&format!("cache-{what}/apt/indexes")).exists()
                    || tree(&machine.path(&format!("cache-{what}/apt/indexes"))).is_empty()
            );
        }
        machine.assert_outside_untouched();
    });
}
