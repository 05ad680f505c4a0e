//! Reading what an OCI image layout holds, for checks: every regular file
//! in its layer blobs (gzip or plain tar), later layers winning.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The content of every regular file in the layout's layer blobs, by path
/// (no leading `./`). Blobs that are not tars (configs, manifests) are skipped.
pub fn regular_files(layout: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let data = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out).unwrap();
            out
        } else {
            bytes
        };
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
