//! A reader placed between a tar stream written by others (base image
//! layers, .deb members) and the `tar` crate, that refuses an extension
//! header (PAX `x`, GNU long name `L` / long link `K`) larger than
//! [`MAX_EXTENSION`]. The `tar` crate reads such a header's whole body into
//! memory before the entry it describes; a layer of a few MB of gzip can
//! declare gigabytes there. Everything else passes through unchanged: the
//! guard follows the archive's block structure (headers, PAX `size`
//! overrides, GNU sparse extension blocks) with the `tar` crate's own header
//! parsing, so both agree on where each header is.

use std::io::{self, Read};

/// Largest extension header body read (real ones are a few hundred bytes;
/// a long path is at most a few KB).
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: usize = 512;

enum State {
    /// Collecting a 512-byte header block (`filled` bytes so far).
    Header { filled: usize },
    /// Collecting a GNU sparse extension block; the entry's data follows the last.
    SparseExtension { filled: usize, data: u64 },
    /// Passing `remaining` bytes of entry data (padded to the block size);
    /// `capture` holds a PAX body (and its size) while it passes.
    Data { remaining: u64, capture: Option<(Vec<u8>, usize)> },
    /// After the end-of-archive block: the rest passes unread.
    End,
}

pub struct TarGuard<R> {
    inner: R,
    state: State,
    block: [u8; BLOCK],
    /// The `size` of the last PAX `x` header, for the entry it describes.
    pax_size: Option<u64>,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard { inner, state: State::Header { filled: 0 }, block: [0; BLOCK], pax_size: None }
    }

    /// The state after a complete header block, as the `tar` crate reads it.
    fn after_header(&mut self) -> io::Result<State> {
        if self.block.iter().all(|b| *b == 0) {
            return Ok(State::End);
        }
        let header = tar::Header::from_byte_slice(&self.block);
        let kind = header.entry_type();
        let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
        let extension = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        let mut size = header.entry_size()?;
        let read_whole = kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions();
        if read_whole && size > MAX_EXTENSION {
            return Err(invalid(format!(
                "tar extension header (type `{}`) of {size} bytes; imgbake reads at most {MAX_EXTENSION}",
                self.block[156].escape_ascii()
            )));
        }
        if !extension {
            if let Some(pax) = self.pax_size.take() {
                size = pax;
            }
        } else if !(recognized && read_whole) {
            // Returned as an entry of its own: the PAX values are used up.
            self.pax_size = None;
        }
        let padded = size.checked_add(BLOCK as u64 - 1).ok_or_else(|| invalid("tar size overflow".into()))?
            & !(BLOCK as u64 - 1);
        if !extension && kind.is_gnu_sparse() && header.as_gnu().is_some_and(|gnu| gnu.is_extended()) {
            return Ok(State::SparseExtension { filled: 0, data: padded });
        }
        let capture = (recognized && kind.is_pax_local_extensions()).then(|| (Vec::new(), size as usize));
        Ok(State::Data { remaining: padded, capture })
    }
}

/// The `size` record of a PAX body, as the `tar` crate reads it.
fn pax_size(body: &[u8]) -> Option<u64> {
    tar::PaxExtensions::new(body)
        .filter_map(Result::ok)
        .find(|extension| extension.key_bytes() == b"size")
        .and_then(|extension| extension.value().ok()?.parse().ok())
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let limit = match &self.state {
                State::End => return self.inner.read(buf),
                State::Header { filled } | State::SparseExtension { filled, .. } => BLOCK - filled,
                State::Data { remaining: 0, capture } => {
                    if let Some((body, size)) = capture {
                        self.pax_size = pax_size(&body[..(*size).min(body.len())]);
                    }
                    self.state = State::Header { filled: 0 };
                    continue;
                }
                State::Data { remaining, .. } => usize::try_from(*remaining).unwrap_or(usize::MAX),
            };
            let len = buf.len().min(limit);
            let n = self.inner.read(&mut buf[..len])?;
            if n == 0 {
                return Ok(0);
            }
            match &mut self.state {
                State::Header { filled } => {
                    self.block[*filled..*filled + n].copy_from_slice(&buf[..n]);
                    *filled += n;
                    if *filled == BLOCK {
                        self.state = self.after_header()?;
                    }
                }
                State::SparseExtension { filled, data } => {
                    self.block[*filled..*filled + n].copy_from_slice(&buf[..n]);
                    *filled += n;
                    if *filled == BLOCK {
                        let data = *data;
                        // `isextended` of a GNU sparse extension block.
                        self.state = if self.block[504] != 0 {
                            State::SparseExtension { filled: 0, data }
                        } else {
                            State::Data { remaining: data, capture: None }
                        };
                    }
                }
                State::Data { remaining, capture } => {
                    if let Some((body, _)) = capture {
                        body.extend_from_slice(&buf[..n]);
                    }
                    *remaining -= n as u64;
                }
                State::End => unreachable!("returned above"),
            }
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, data).unwrap();
    }

    fn paths(bytes: &[u8]) -> io::Result<Vec<String>> {
        let mut archive = tar::Archive::new(TarGuard::new(bytes));
        let mut out = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            out.push(entry.path()?.to_string_lossy().into_owned());
            io::copy(&mut entry, &mut io::sink())?;
        }
        Ok(out)
    }

    #[test]
    fn archives_pass_through_unchanged_long_names_and_pax_included() {
        let mut builder = tar::Builder::new(Vec::new());
        let long = format!("usr/lib/{}/file", "d".repeat(300));
        entry(&mut builder, "etc/os-release", b"ID=debian\n");
        entry(&mut builder, &long, b"x");
        builder.append_pax_extensions([("size", b"3".as_slice()), ("path", b"pax/name".as_slice())]).unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_size(3);
        header.set_path("short").unwrap();
        header.set_cksum();
        builder.append(&header, &b"abc"[..]).unwrap();
        entry(&mut builder, "last", b"");
        let bytes = builder.into_inner().unwrap();
        let mut through = Vec::new();
        TarGuard::new(&bytes[..]).read_to_end(&mut through).unwrap();
        assert_eq!(through, bytes);
        assert_eq!(paths(&bytes).unwrap(), ["etc/os-release", long.as_str(), "pax/name", "last"]);
    }

    #[test]
    fn a_huge_pax_header_is_refused_before_it_is_read() {
        let mut block = tar::Header::new_ustar();
        block.set_entry_type(tar::EntryType::XHeader);
        block.set_path("PaxHeaders/x").unwrap();
        block.set_size(10 << 30);
        block.set_cksum();
        // Only the header is there: the guard refuses on the size alone.
        let error = paths(block.as_bytes()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        assert!(error.to_string().contains("extension header"), "{error}");
    }

    #[test]
    fn a_pax_size_moves_the_next_header_and_the_guard_follows() {
        // A PAX `size` of 1024 on an entry whose own header says 0: the next
        // header is after 1024 bytes of data. A huge long-name header placed
        // in that data is data, not a header.
        let mut builder = tar::Builder::new(Vec::new());
        builder.append_pax_extensions([("size", b"1024".as_slice())]).unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_path("data").unwrap();
        header.set_size(0);
        header.set_cksum();
        let mut fake = tar::Header::new_gnu();
        fake.set_entry_type(tar::EntryType::GNULongName);
        fake.set_size(10 << 30);
        fake.set_cksum();
        let mut data = fake.as_bytes().to_vec();
        data.resize(1024, 0);
        builder.append(&header, &[][..]).unwrap();
        let mut bytes = builder.into_inner().unwrap();
        bytes.truncate(bytes.len() - 1024); // the end-of-archive blocks
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(&[0; 1024]);
        assert_eq!(paths(&bytes).unwrap(), ["data"]);
    }
}
