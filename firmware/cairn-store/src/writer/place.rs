//! Moving a received object from the spool to its place under `objects/`.

use super::Writer;
use crate::spool::FinishedSpool;
use crate::StoreError;
use std::path::{Path, PathBuf};

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
        let was_fixed = replace && unfix_for_restore(&dest);
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
                if was_fixed || (replace && self.fixes_restored() && self.archived(&spool.sha256)) {
                    refix_restored(&dest);
                }
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

impl Writer {
    /// Whether restored files of archived studies get the immutable attribute.
    fn fixes_restored(&self) -> bool {
        self.immutable_files
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the object with this hash belongs to a study in the archive tier (a read
    /// failure counts as no: the tier schedule gives the attribute again at the next start).
    fn archived(&self, sha256: &str) -> bool {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM instances i JOIN series se ON i.series_ref = se.id
                   JOIN studies st ON se.study_ref = st.id
                   WHERE i.sha256 = ?1 AND st.tier = 'archive')",
                [sha256],
                |r| r.get::<_, bool>(0),
            )
            .unwrap_or(false)
    }
}

/// The restored file of an archived study gets the immutable attribute: the one the damaged
/// file it replaced had, or, for a missing file, the one the archive tier gives its files.
fn refix_restored(dest: &Path) {
    if let Err(e) = cairn_files::immutable::set_immutable(dest, true) {
        tracing::warn!(error = %e, "a restored archived object stays without its immutable attribute");
    }
}

/// A restore replaces a damaged file under the object's name: when that file is fixed (the
/// immutable attribute of the archive tier), the attribute is cleared first, or the kernel
/// refuses the rename. Only a restore does this, and only to put back the bytes the name is
/// the hash of. Returns whether the file had the attribute.
fn unfix_for_restore(dest: &Path) -> bool {
    use cairn_files::immutable::{immutable_flag, set_immutable, Flag};
    if let Ok(Flag::Set) = immutable_flag(dest) {
        if let Err(e) = set_immutable(dest, false) {
            tracing::warn!(error = %e, "cannot clear the immutable attribute of a damaged object");
        }
        return true;
    }
    false
}
