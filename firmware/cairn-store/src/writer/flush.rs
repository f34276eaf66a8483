//! Durability: one `syncfs` of the store's filesystem makes a batch's files, directories and
//! WAL durable together, and the audit anchor file is refreshed behind it.

use super::Writer;
use crate::layout::DataDir;
use crate::StoreError;
use std::path::Path;

/// The audit anchor file is refreshed at most this often (and always at close).
pub(super) const ANCHOR_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Flush every dirty page and inode of the store's filesystem (data, directories, the WAL).
pub(super) fn sync_all(fd: &std::fs::File) -> Result<(), StoreError> {
    use std::os::fd::AsRawFd;
    nix::unistd::syncfs(fd.as_raw_fd())
        .map_err(|e| StoreError::io("syncfs", std::io::Error::from_raw_os_error(e as i32)))
}

/// The store must sit on one filesystem for `syncfs` to cover everything.
pub(super) fn check_one_filesystem(data: &DataDir) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.dev())
            .map_err(|e| StoreError::io(format!("stat {}", p.display()), e))
    };
    let root = dev(data.root())?;
    for p in [data.objects(), data.spool(), data.quarantine()] {
        if dev(&p)? != root {
            return Err(StoreError::io(
                format!(
                    "{} is on another filesystem than {}",
                    p.display(),
                    data.root().display()
                ),
                std::io::Error::other("the data directory must be a single filesystem"),
            ));
        }
    }
    Ok(())
}

impl Writer {
    pub(super) fn flush_anchor(&mut self) {
        if let Some(head) = self.anchor_pending.take() {
            if let Err(e) = cairn_audit::write_anchor(&self.data.audit_anchor(), &head) {
                tracing::warn!(error = %e, "could not update the audit anchor file");
            }
            self.anchor_written = std::time::Instant::now();
        }
    }
}
