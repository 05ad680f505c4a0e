//! Reading what an OCI image layout holds, for checks: every regular file
//! in its layer blobs (gzip, zstd or plain tar), later layers winning.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A blob's bytes, decoded when they are gzip or zstd (told by their magic).
pub fn decompressed(bytes: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    if bytes.starts_with(&GZIP_MAGIC) {
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out).unwrap();
    } else if bytes.starts_with(&ZSTD_MAGIC) {
        zstd::stream::read::Decoder::new(&bytes[..]).unwrap().read_to_end(&mut out).unwrap();
    } else {
        return bytes;
    }
    out
}

/// The tar stream of the layer blob `digest` in `layout` (gzip, zstd or plain).
pub fn layer_tar(layout: &Path, digest: &str) -> Vec<u8> {
    let blob = layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    decompressed(std::fs::read(blob).unwrap())
}

/// The content of every regular file in the layout's layer blobs, by path
/// (no leading `./`). Blobs that are not tars (configs, manifests) are skipped.
pub fn regular_files(layout: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let data = decompressed(std::fs::read(entry.unwrap().path()).unwrap());
        let mut archive = tar::Archive::new(&data[..]);
        let Ok(entries) = archive.entries() else { continue };
        for item in entries {
            let Ok(mut item) = item else { break };
            if item.header().entry_type() == tar::EntryType::Regular {
                let path = item.path().unwrap().to_string_lossy().trim_start_matches("./").to_string();
                let mut content = Vec::new();
                item.read_to_end(&mut content).unwrap();
                files.insert(path, content);
            }
        }
    }
    files
}
