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

/// Start writeback of received data in steps of this size, so that little is left to write
/// when the commit's `syncfs` runs (a large object is mostly on disk by its last fragment).
const WRITEBACK_STEP: u64 = 256 * 1024;

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
        if self.len - self.flushed >= 2 * WRITEBACK_STEP {
            // Keep the first step cached (the data set header is read back for validation).
            let start = self.flushed.max(WRITEBACK_STEP);
            let end = self.len - WRITEBACK_STEP;
            if end > start {
                use std::os::fd::AsRawFd;
                // POSIX_FADV_DONTNEED starts asynchronous writeback of dirty pages on Linux.
                let _ = nix::fcntl::posix_fadvise(
                    f.as_raw_fd(),
                    start as i64,
                    (end - start) as i64,
                    nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                );
            }
            self.flushed = end;
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

    /// Close the file and hand it over with its hash and size. A large object's data is
    /// flushed here, on the receiving thread, so that several associations write in parallel;
    /// everything else becomes durable in the writer's commit (one `syncfs` per batch).
    pub fn finish(mut self) -> Result<FinishedSpool, StoreError> {
        let f = self.file.take().ok_or(StoreError::Closed)?;
        if self.len >= WRITEBACK_STEP {
            f.sync_data()
                .map_err(|e| StoreError::io("flush spool file", e))?;
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
