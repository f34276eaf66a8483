//! Moving a received object from the spool to its place under `objects/`.

use super::Writer;
use crate::spool::FinishedSpool;
use crate::StoreError;
use std::path::PathBuf;

impl Writer {
    /// Move a spool file to its object path. Returns the path when this call created it, and
    /// `None` when a file with the same bytes (the same name) is already there. With
    /// `replace` (a restore), a file already under the name is replaced.
    pub(super) fn place(
        &self,
        spool: &mut FinishedSpool,
        replace: bool,
    ) -> Result<Option<PathBuf>, StoreError> {
        use nix::fcntl::{renameat2, RenameFlags};
        let dest = self.data.object_path(&spool.sha256);
        let rename = |spool: &FinishedSpool| {
            if replace {
                // a restore: whatever holds the name (a damaged file) gives way to the bytes
                // that hash to it
                return std::fs::rename(spool.path(), &dest)
                    .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)));
            }
            match renameat2(
                None,
                spool.path(),
                None,
                &dest,
                RenameFlags::RENAME_NOREPLACE,
            ) {
                // A filesystem without RENAME_NOREPLACE: look, then rename (one writer).
                Err(nix::errno::Errno::EINVAL) if dest.exists() => Err(nix::errno::Errno::EEXIST),
                Err(nix::errno::Errno::EINVAL) => std::fs::rename(spool.path(), &dest)
                    .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))),
                other => other,
            }
        };
        let mut done = rename(spool);
        if done == Err(nix::errno::Errno::ENOENT) && spool.path().exists() {
            // The directory was removed since the receiving thread made it.
            if let Some(leaf) = dest.parent() {
                std::fs::create_dir_all(leaf)
                    .map_err(|e| StoreError::io("create object directory", e))?;
            }
            done = rename(spool);
        }
        match done {
            Ok(()) => {
                spool.disarm();
                Ok(Some(dest))
            }
            // Same bytes already on disk: the spool copy is dropped (and removed) by the caller.
            Err(nix::errno::Errno::EEXIST) => Ok(None),
            Err(e) => Err(StoreError::io(
                "move object into place",
                std::io::Error::from_raw_os_error(e as i32),
            )),
        }
    }
}
