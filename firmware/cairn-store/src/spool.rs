//! Receiving an object into `spool/` while hashing it.

use crate::StoreError;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written in `spool/`. Dropped without `finish`, it is removed.
///
/// The first `CACHED_HEAD` bytes of an object go through the page cache (the data set's
/// header is read back from there for validation, and a small object never leaves it before
/// the commit). The rest of a large object is written with `O_DIRECT` from an aligned buffer,
/// in chunks of up to `DIRECT_CHUNK`: the disk reads it straight from that buffer, so the data
/// is not copied into new page-cache pages first. Only the last partial block goes through the
/// page cache again.
#[derive(Debug)]
pub struct SpoolWriter {
    file: Option<File>,
    path: PathBuf,
    hasher: Sha256,
    len: u64,
    /// Bytes already handed to the kernel for writeback (the page-cache part).
    flushed: u64,
    /// Received bytes not yet written to the file (at most `DIRECT_CHUNK`).
    chunk: AlignedChunk,
    /// Bytes already written to the file.
    written: u64,
    /// The file is open with `O_DIRECT`.
    direct: bool,
    /// `O_DIRECT` failed here once (a filesystem without it): stay with the page cache.
    no_direct: bool,
}

/// Size of one direct write. A multiple of every block size in use (4 KiB).
const DIRECT_CHUNK: usize = 256 * 1024;

/// The start of every object is written through the page cache: validation reads it back.
const CACHED_HEAD: usize = 64 * 1024;

/// Alignment of the buffer, offsets and lengths of direct writes.
const DIRECT_ALIGN: usize = 4096;

/// A `DIRECT_CHUNK`-sized window, 4 KiB aligned, inside an owned allocation.
struct AlignedChunk {
    storage: Vec<u8>,
    start: usize,
    filled: usize,
}

impl std::fmt::Debug for AlignedChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedChunk")
            .field("filled", &self.filled)
            .finish()
    }
}

impl AlignedChunk {
    fn new() -> Self {
        let storage = vec![0u8; DIRECT_CHUNK + DIRECT_ALIGN];
        let start = storage
            .as_ptr()
            .align_offset(DIRECT_ALIGN)
            .min(DIRECT_ALIGN);
        AlignedChunk {
            storage,
            start,
            filled: 0,
        }
    }

    /// Copy as much of `bytes` as fits below `limit`; returns how much was taken.
    fn fill(&mut self, bytes: &[u8], limit: usize) -> usize {
        let n = bytes.len().min(limit.saturating_sub(self.filled));
        let at = self.start + self.filled;
        self.storage[at..at + n].copy_from_slice(&bytes[..n]);
        self.filled += n;
        n
    }

    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.filled]
    }
}

/// Hand received data to the kernel for writeback in steps of this size, so that a large
/// object is mostly on disk by its last fragment and the commit's `syncfs` has little to write.
const WRITEBACK_STEP: u64 = 128 * 1024;

/// Turn `O_DIRECT` on or off for `file`.
fn set_direct(file: &File, on: bool) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let mut flags = OFlag::from_bits_truncate(flags);
    flags.set(OFlag::O_DIRECT, on);
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

/// Ask the kernel to write `[offset, offset + len)` of `file` back to the disk.
///
/// `wait` also waits for that writeback (and any already in flight) to complete. Neither
/// flushes the disk's cache nor writes metadata: that is the commit's `syncfs`. The pages
/// stay in the page cache, so reading the object back for validation costs no disk read.
#[allow(unsafe_code)]
fn write_back(file: &File, offset: u64, len: u64, wait: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    // SAFETY: sync_file_range takes a file descriptor and plain integers; the descriptor is
    // owned by `file`, which outlives the call. No memory is shared with the kernel.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl SpoolWriter {
    /// Create a new, uniquely named temporary file in `spool_dir`. The name is internal.
    pub fn create(spool_dir: &Path) -> Result<Self, StoreError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = spool_dir.join(format!("{}-{}.part", std::process::id(), n));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io("create spool file", e))?;
        Ok(Self {
            file: Some(file),
            path,
            hasher: Sha256::new(),
            len: 0,
            flushed: 0,
            chunk: AlignedChunk::new(),
            written: 0,
            direct: false,
            no_direct: false,
        })
    }

    /// Append bytes, hashing them.
    pub fn write(&mut self, mut bytes: &[u8]) -> Result<(), StoreError> {
        if self.file.is_none() {
            return Err(StoreError::Closed);
        }
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        while !bytes.is_empty() {
            let limit = if self.written == 0 {
                CACHED_HEAD
            } else {
                DIRECT_CHUNK
            };
            let taken = self.chunk.fill(bytes, limit);
            bytes = &bytes[taken..];
            if self.chunk.filled == limit {
                self.write_chunk(limit)?;
            }
        }
        Ok(())
    }

    /// Write the first `n` buffered bytes (a multiple of `DIRECT_ALIGN`) to the file: the
    /// object's head through the page cache, the rest directly from the aligned buffer.
    fn write_chunk(&mut self, n: usize) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        let f = self.file.as_ref().ok_or(StoreError::Closed)?;
        let data = &self.chunk.data()[..n];
        if self.written > 0 && !self.direct && !self.no_direct {
            match set_direct(f, true) {
                Ok(()) => self.direct = true,
                Err(e) => {
                    tracing::debug!(error = %e, "O_DIRECT not available for the spool");
                    self.no_direct = true;
                }
            }
        }
        let at = self.written;
        let mut done = f.write_all_at(data, at);
        if self.direct {
            if let Err(e) = &done {
                if e.raw_os_error() == Some(libc::EINVAL) {
                    // The filesystem refused this direct write: write it through the cache.
                    tracing::debug!(error = %e, "direct write refused; using the page cache");
                    self.direct = false;
                    self.no_direct = true;
                    done = set_direct(f, false).and_then(|_| f.write_all_at(data, at));
                }
            }
        }
        done.map_err(|e| StoreError::io("write spool file", e))?;
        self.written += n as u64;
        let rest = self.chunk.filled - n;
        let start = self.chunk.start;
        self.chunk
            .storage
            .copy_within(start + n..start + n + rest, start);
        self.chunk.filled = rest;
        if !self.direct && self.written - self.flushed >= WRITEBACK_STEP {
            // Best effort: a failure here shows up again in the commit's syncfs.
            let _ = write_back(f, self.flushed, self.written - self.flushed, false);
            self.flushed = self.written;
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The temporary file. It holds every byte received only after [`SpoolWriter::finish`]:
    /// read the object back through [`FinishedSpool::path`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Close the file and hand it over with its hash and size. The data's writeback completes
    /// here, on the receiving thread, so that several associations write in parallel; it
    /// becomes durable, with its metadata, in the writer's commit (one `syncfs` per batch,
    /// which also flushes the disk's cache).
    pub fn finish(mut self) -> Result<FinishedSpool, StoreError> {
        use std::os::unix::fs::FileExt;
        // Past the head, the whole blocks left go directly; the last partial block through the
        // page cache (a direct write needs whole blocks).
        let whole = self.chunk.filled / DIRECT_ALIGN * DIRECT_ALIGN;
        if self.written > 0 && whole > 0 {
            self.write_chunk(whole)?;
        }
        let f = self.file.take().ok_or(StoreError::Closed)?;
        if self.direct {
            set_direct(&f, false).map_err(|e| StoreError::io("write spool file", e))?;
        }
        f.write_all_at(self.chunk.data(), self.written)
            .map_err(|e| StoreError::io("write spool file", e))?;
        self.written += self.chunk.filled as u64;
        self.chunk.filled = 0;
        // A small object's write is left to the commit, which writes a whole batch at once.
        // Direct chunks are already on the disk; the cached parts are written back here.
        if self.len >= WRITEBACK_STEP {
            write_back(&f, 0, self.len, true)
                .map_err(|e| StoreError::io("write spool file to disk", e))?;
        }
        drop(f);
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let path = std::mem::take(&mut self.path);
        Ok(FinishedSpool {
            path,
            sha256,
            size: self.len,
        })
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A complete spool file with its SHA-256. Dropped without being committed, it is removed.
#[derive(Debug)]
pub struct FinishedSpool {
    pub(crate) path: PathBuf,
    /// Lowercase hex SHA-256 of the whole file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl FinishedSpool {
    /// The temporary file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Mark as moved away: the drop will not remove anything.
    pub(crate) fn disarm(&mut self) {
        self.path = PathBuf::new();
    }
}

impl Drop for FinishedSpool {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::create(d.path()).unwrap();
        w.write(b"hello ").unwrap();
        w.write(b"world").unwrap();
        let p = w.path().to_path_buf();
        let f = w.finish().unwrap();
        assert_eq!(
            f.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(f.size, 11);
        assert!(p.exists());
        drop(f);
        assert!(!p.exists());
        let w = SpoolWriter::create(d.path()).unwrap();
        let p = w.path().to_path_buf();
        drop(w);
        assert!(!p.exists());
    }

    /// Objects of every size around the cached head, the direct chunks and the block size,
    /// received in fragments of awkward sizes, come out byte for byte with the right hash,
    /// with direct writes and without them.
    #[test]
    fn every_size_is_written_exactly() {
        let d = tempfile::tempdir().unwrap();
        let sizes = [
            0,
            1,
            4095,
            CACHED_HEAD - 1,
            CACHED_HEAD,
            CACHED_HEAD + 1,
            CACHED_HEAD + DIRECT_ALIGN,
            CACHED_HEAD + DIRECT_CHUNK,
            CACHED_HEAD + DIRECT_CHUNK + 4097,
            3 * DIRECT_CHUNK + 12345,
        ];
        for no_direct in [false, true] {
            for (k, &size) in sizes.iter().enumerate() {
                let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
                let mut w = SpoolWriter::create(d.path()).unwrap();
                w.no_direct = no_direct;
                let mut rest = &data[..];
                let mut step = 1 + k * 997;
                while !rest.is_empty() {
                    let n = step.min(rest.len());
                    w.write(&rest[..n]).unwrap();
                    rest = &rest[n..];
                    step = step * 3 % 70_001 + 1;
                }
                let went_direct = w.direct;
                let f = w.finish().unwrap();
                assert_eq!(f.size, size as u64);
                assert_eq!(std::fs::read(f.path()).unwrap(), data, "size {size}");
                assert_eq!(f.sha256, hex::encode(Sha256::digest(&data)), "size {size}");
                if no_direct {
                    assert!(!went_direct);
                }
            }
        }
    }
}
