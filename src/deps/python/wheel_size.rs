//! Installed sizes of locked wheels, read by `imgbake lock` from each
//! wheel's zip directory without downloading the wheel, so the layout splits
//! torch-sized distributions and the plan sizes their layers from the real
//! bytes rather than an archive-size factor. The same directory gives the
//! bytes of `.py` source and the number of compiled libraries, which the
//! plan's import term reads.
//!
//! The zip crate's `ZipArchive::new` reads the end-of-central-directory
//! record and the central directory only (it ignores the local headers);
//! [`RangeReader`] gives it those bytes with HTTP range requests of
//! [`BLOCK`] bytes (torch's 13,000-file directory is ~1.5 MB: a handful of
//! requests; pip's "lazy wheel" reads metadata the same way). A server that
//! ignores `Range`, or any failure, leaves the size unknown and the factor
//! stands in: a lock never fails for want of a size.

use super::{credentials::Credentials, LockedWheel, BUILT_URL_PREFIX};
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes per range request.
const BLOCK: u64 = 256 << 10;
/// Most bytes read of one wheel: a directory larger than this is not a wheel
/// we size (a hostile index cannot make `lock` download a whole file).
const MAX_READ: u64 = 16 << 20;
/// Wheels sized at once.
const CONCURRENT: usize = 8;

/// Fills `installed`, `python_source` and `native_libraries` for every wheel whose zip
/// directory can be read: local files (and wheels imgbake built, from
/// `cache_dir`) directly, remote ones with range requests.
pub fn fill_installed_sizes(wheels: &mut [LockedWheel], credentials: &Credentials, cache_dir: &Path) {
    let Ok(client) = super::http_client() else { return };
    let needs_sizes =
        |w: &LockedWheel| w.installed.is_none() || w.python_source.is_none() || w.native_libraries.is_none();
    for chunk in wheels.chunks_mut(CONCURRENT) {
        std::thread::scope(|scope| {
            for wheel in chunk.iter_mut().filter(|w| needs_sizes(w)) {
                let client = &client;
                scope.spawn(move || {
                    if let Some(sizes) = wheel_sizes(wheel, client, credentials, cache_dir) {
                        wheel.installed = Some(sizes.installed);
                        wheel.python_source = Some(sizes.python_source);
                        wheel.native_libraries = Some(sizes.native_libraries);
                    }
                });
            }
        });
    }
}

/// Bytes of a wheel's files, of its `.py` files, and its library count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct WheelSizes {
    installed: u64,
    python_source: u64,
    native_libraries: u64,
}

fn wheel_sizes(
    wheel: &LockedWheel,
    client: &reqwest::blocking::Client,
    credentials: &Credentials,
    cache_dir: &Path,
) -> Option<WheelSizes> {
    if wheel.url.starts_with(BUILT_URL_PREFIX) {
        return zip_size(std::fs::File::open(super::cached_wheel_path(cache_dir, wheel)).ok()?);
    }
    if let Some(local) = wheel.url.strip_prefix("file://") {
        return zip_size(std::fs::File::open(local).ok()?);
    }
    if wheel.size == 0 {
        return None;
    }
    let reader = RangeReader { client, credentials, url: &wheel.url, len: wheel.size, pos: 0, blocks: BTreeMap::new() };
    zip_size(reader)
}

/// Bytes of the files of a zip archive, from its central directory only
/// (`by_index_data` reads no local header: no range request per file).
fn zip_size(reader: impl Read + Seek) -> Option<WheelSizes> {
    let archive = zip::ZipArchive::new(reader).ok()?;
    let mut sizes = WheelSizes {
        installed: archive.decompressed_size().and_then(|size| u64::try_from(size).ok())?,
        ..WheelSizes::default()
    };
    for index in 0..archive.len() {
        let entry = archive.by_index_data(index).ok()?;
        let name = entry.name_raw();
        if name.ends_with(b".py") {
            sizes.python_source += entry.size();
        } else if is_native_library(name) {
            sizes.native_libraries += 1;
        }
    }
    Some(sizes)
}

/// `x.so`, `libcudnn.so.9`, `x.cpython-311-x86_64-linux-gnu.so`.
fn is_native_library(name: &[u8]) -> bool {
    let file = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    file.ends_with(b".so") || file.windows(4).any(|w| w == b".so.")
}

/// A remote file read through range requests of [`BLOCK`] bytes, each kept.
struct RangeReader<'a> {
    client: &'a reqwest::blocking::Client,
    credentials: &'a Credentials,
    url: &'a str,
    len: u64,
    pos: u64,
    blocks: BTreeMap<u64, Vec<u8>>,
}

impl RangeReader<'_> {
    fn block(&mut self, index: u64) -> io::Result<&[u8]> {
        if !self.blocks.contains_key(&index) {
            if (self.blocks.len() as u64 + 1) * BLOCK > MAX_READ {
                return Err(io::Error::other("the zip directory is larger than imgbake reads to size a wheel"));
            }
            let start = index * BLOCK;
            let end = (start + BLOCK).min(self.len) - 1;
            let response = self
                .credentials
                .get(self.client, self.url)
                .header(reqwest::header::RANGE, format!("bytes={start}-{end}"))
                .send()
                .map_err(io::Error::other)?;
            if response.status() != reqwest::StatusCode::PARTIAL_CONTENT {
                return Err(io::Error::other(format!("no range support ({})", response.status())));
            }
            let mut bytes = Vec::with_capacity((end - start + 1) as usize);
            response.take(end - start + 1).read_to_end(&mut bytes)?;
            if bytes.len() as u64 != end - start + 1 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short range response"));
            }
            self.blocks.insert(index, bytes);
        }
        Ok(&self.blocks[&index])
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let (index, offset) = (self.pos / BLOCK, (self.pos % BLOCK) as usize);
        let block = self.block(index)?;
        let n = buf.len().min(block.len() - offset);
        buf[..n].copy_from_slice(&block[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RangeReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn wheel_with(files: &[(&str, usize)]) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (name, size) in files {
            out.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            out.write_all(&vec![b'x'; *size]).unwrap();
        }
        out.finish().unwrap().into_inner()
    }

    /// Serves `body` on loopback for 10 s, honouring `Range: bytes=a-b` when
    /// `ranges` (one request per connection).
    fn serve(body: Vec<u8>, ranges: bool) -> String {
        use std::io::BufRead;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let mut reader = io::BufReader::new(stream.try_clone().unwrap());
                let mut range = None;
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        let (a, b) = value.trim().split_once('-').unwrap();
                        range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
                    }
                    line.clear();
                }
                let (status, bytes) = match range.filter(|_| ranges) {
                    Some((a, b)) => ("206 Partial Content", &body[a..=b]),
                    None => ("200 OK", &body[..]),
                };
                let mut stream = stream;
                let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", bytes.len());
                let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(bytes));
            }
        });
        url
    }

    #[test]
    fn a_local_wheel_is_sized_from_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo-1.0-py3-none-any.whl");
        let files =
            [("demo/__init__.py", 1000), ("demo/lib.so", 300_000), ("demo.libs/libx.so.9", 20), ("demo/a.txt", 5)];
        std::fs::write(&path, wheel_with(&files)).unwrap();
        let mut wheels = vec![LockedWheel {
            name: "demo".into(),
            version: "1.0".into(),
            url: format!("file://{}", path.display()),
            sha256: String::new(),
            size: std::fs::metadata(&path).unwrap().len(),
            installed: None,
            python_source: None,
            native_libraries: None,
            built_from: None,
        }];
        fill_installed_sizes(&mut wheels, &Credentials::default(), dir.path());
        assert_eq!(wheels[0].installed, Some(301_025));
        assert_eq!(wheels[0].python_source, Some(1000));
        assert_eq!(wheels[0].native_libraries, Some(2));
    }

    #[test]
    fn a_remote_wheel_is_sized_with_range_requests_and_a_server_without_ranges_leaves_it_unknown() {
        // 4000 files of 1 KiB of 'x' each: a directory over one block (the reads cross blocks).
        let names: Vec<String> = (0..4000).map(|i| format!("pkg/module_{i:04}_with_a_long_name.py")).collect();
        let files: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 1024)).collect();
        let body = wheel_with(&files);
        for ranges in [true, false] {
            let url = serve(body.clone(), ranges);
            let mut wheels = vec![LockedWheel {
                name: "pkg".into(),
                version: "1".into(),
                url: format!("{url}/pkg-1-py3-none-any.whl"),
                sha256: String::new(),
                size: body.len() as u64,
                installed: None,
                python_source: None,
                native_libraries: None,
                built_from: None,
            }];
            fill_installed_sizes(&mut wheels, &Credentials::default(), Path::new("/nonexistent"));
            assert_eq!(wheels[0].installed, ranges.then_some(4000 * 1024), "ranges: {ranges}");
            assert_eq!(wheels[0].python_source, wheels[0].installed);
        }
    }
}
