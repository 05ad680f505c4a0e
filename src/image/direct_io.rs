//! Direct I/O for the body of large blobs: `O_DIRECT` writes of whole,
//! aligned 1 MiB pieces from an aligned staging buffer, so multi-GB layers
//! go to the disk without passing through (and filling) the page cache.
//!
//! Why: on thin-provisioned virtual disks — cloud VMs, CI runners, this
//! project's own machines (ext4 mounted with `discard`) — buffered writeback
//! into freshly allocated blocks measured at 3.9–4.9 s per GiB, while
//! `O_DIRECT` writes of the same GiB took 0.9–1.3 s, fresh blocks or not
//! (docs/benchmarks.md, "Direct I/O"). The caller still fsyncs at the end
//! for the file's metadata and the device cache.
//!
//! `O_DIRECT` needs the buffer address, the length and the file offset to be
//! multiples of the device's logical block size; [`ALIGN`] (4096) covers
//! every common device. The tail that is not a multiple is written buffered
//! after clearing the flag. A file system that refuses the flag, or a first
//! direct write that fails with `EINVAL`, turns direct I/O off for that file
//! and the same bytes are written buffered: direct I/O is a speed-up, never
//! a requirement.

use std::alloc::{self, Layout};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;

/// Set to `1` to keep every blob write buffered (a file system where direct
/// I/O is slow, or an A/B measurement: `scripts/bench-disk.sh`).
pub const NO_DIRECT_IO_ENV: &str = "IMGBAKE_NO_DIRECT_IO";

/// Whether direct I/O may be used at all (read once per process).
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var(NO_DIRECT_IO_ENV).map_or(true, |value| value != "1"))
}

/// Alignment of buffer addresses, lengths and offsets for `O_DIRECT`.
pub const ALIGN: usize = 4096;
/// Bytes written per direct write (one staging buffer).
pub const STAGING: usize = 1 << 20;

/// A zeroed heap buffer of [`STAGING`] bytes aligned to [`ALIGN`].
pub struct AlignedBuffer {
    pointer: std::ptr::NonNull<u8>,
    filled: usize,
}

// SAFETY: the buffer is uniquely owned heap memory, like a Vec<u8>.
unsafe impl Send for AlignedBuffer {}

impl AlignedBuffer {
    fn layout() -> Layout {
        Layout::from_size_align(STAGING, ALIGN).expect("constant layout")
    }

    pub fn new() -> AlignedBuffer {
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(Self::layout()) };
        let pointer = std::ptr::NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(Self::layout()));
        AlignedBuffer { pointer, filled: 0 }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `pointer` holds STAGING initialised (zeroed) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.pointer.as_ptr(), STAGING) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.as_ptr(), STAGING) }
    }

    /// Copies as much of `bytes` as fits; returns how many.
    pub fn fill_from(&mut self, bytes: &[u8]) -> usize {
        let n = (STAGING - self.filled).min(bytes.len());
        let start = self.filled;
        self.as_mut_slice()[start..start + n].copy_from_slice(&bytes[..n]);
        self.filled += n;
        n
    }

    pub fn is_full(&self) -> bool {
        self.filled == STAGING
    }

    pub fn filled(&self) -> &[u8] {
        &self.as_slice()[..self.filled]
    }

    pub fn clear(&mut self) {
        self.filled = 0;
    }
}

impl std::fmt::Debug for AlignedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuffer({} of {STAGING} bytes)", self.filled)
    }
}

impl Default for AlignedBuffer {
    fn default() -> Self {
        AlignedBuffer::new()
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with the same layout, freed once.
        unsafe { alloc::dealloc(self.pointer.as_ptr(), Self::layout()) }
    }
}

/// Turns `O_DIRECT` on (`true`) or off for `file`; `Err` when the file
/// system refuses it.
pub fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: plain fcntl calls on a valid, open descriptor.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let wanted = if on { flags | libc::O_DIRECT } else { flags & !libc::O_DIRECT };
        if libc::fcntl(fd, libc::F_SETFL, wanted) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Writes all of `bytes` at the file's current offset, which the caller
/// keeps a multiple of [`ALIGN`] while `direct`; `bytes` starts at an
/// aligned address (an [`AlignedBuffer`]). With `direct`, whole blocks go
/// with `O_DIRECT` and a last partial block buffered (the flag cleared
/// first). A direct write refused with `EINVAL` is redone buffered. Returns
/// whether direct I/O is still on for the file.
pub fn write_aligned(file: &mut File, bytes: &[u8], direct: bool) -> io::Result<bool> {
    let mut direct = direct;
    let mut written = 0;
    while written < bytes.len() {
        let remaining = &bytes[written..];
        let whole_blocks = remaining.len() / ALIGN * ALIGN;
        if direct && whole_blocks == 0 {
            set_direct(file, false)?;
            direct = false;
        }
        let piece = if direct { &remaining[..whole_blocks] } else { remaining };
        match file.write(piece) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written += n;
                // A short direct write that ends off a block boundary leaves
                // an unaligned offset: go on buffered.
                if direct && n % ALIGN != 0 {
                    set_direct(file, false)?;
                    direct = false;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if direct && error.raw_os_error() == Some(libc::EINVAL) => {
                set_direct(file, false)?;
                direct = false;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(direct)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn aligned_buffers_are_aligned_and_fill_up_to_their_size() {
        let mut buffer = AlignedBuffer::new();
        assert_eq!(buffer.filled().as_ptr() as usize % ALIGN, 0);
        let big = vec![7u8; STAGING + 10];
        assert_eq!(buffer.fill_from(&big[..100]), 100);
        assert_eq!(buffer.fill_from(&big), STAGING - 100);
        assert!(buffer.is_full());
        buffer.clear();
        assert!(buffer.filled().is_empty());
    }

    #[test]
    fn whole_blocks_go_direct_and_a_partial_tail_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let mut file = File::create(&path).unwrap();
        let mut buffer = AlignedBuffer::new();
        let data: Vec<u8> = (0..STAGING).map(|i| (i % 251) as u8).collect();
        buffer.fill_from(&data);
        // Direct I/O may be refused by the test's file system (tmpfs on old
        // kernels); either way every byte must land, in order.
        let direct = set_direct(&file, true).is_ok();
        let still = write_aligned(&mut file, buffer.filled(), direct).unwrap();
        assert_eq!(still, direct);
        buffer.clear();
        buffer.fill_from(&data[..ALIGN * 3 + 17]);
        assert!(!write_aligned(&mut file, buffer.filled(), still).unwrap(), "the tail turns direct I/O off");
        file.sync_all().unwrap();
        let mut written = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut written).unwrap();
        assert_eq!(written.len(), STAGING + ALIGN * 3 + 17);
        assert!(written[..STAGING] == data[..] && written[STAGING..] == data[..ALIGN * 3 + 17]);
    }
}
