//! Receiving an object into `spool/` while hashing it.

use crate::StoreError;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written in `spool/`. Dropped without `finish`, it is removed.
#[derive(Debug)]
pub struct SpoolWriter {
    file: Option<File>,
    path: PathBuf,
    hasher: Sha256,
    len: u64,
    /// Bytes already handed to the kernel for writeback.
    flushed: u64,
}

/// Hand received data to the kernel for writeback in steps of this size, so that a large
/// object is mostly on disk by its last fragment and the commit's `syncfs` has little to write.
const WRITEBACK_STEP: u64 = 128 * 1024;

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
        })
    }

    /// Append bytes, hashing them.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let f = self.file.as_mut().ok_or(StoreError::Closed)?;
        f.write_all(bytes)
            .map_err(|e| StoreError::io("write spool file", e))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        if self.len - self.flushed >= WRITEBACK_STEP {
            // Best effort: a failure here shows up again in the commit's syncfs.
            let _ = write_back(f, self.flushed, self.len - self.flushed, false);
            self.flushed = self.len;
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

    /// The temporary file, for reading back what was received (parsing, not hashing).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Close the file and hand it over with its hash and size. The data's writeback completes
    /// here, on the receiving thread, so that several associations write in parallel; it
    /// becomes durable, with its metadata, in the writer's commit (one `syncfs` per batch,
    /// which also flushes the disk's cache).
    pub fn finish(mut self) -> Result<FinishedSpool, StoreError> {
        let f = self.file.take().ok_or(StoreError::Closed)?;
        // A small object's write is left to the commit, which writes a whole batch at once.
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
}
