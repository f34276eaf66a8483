//! Recycling: a volume whose every copy was removed (its images rejected, or expired and
//! destroyed) is erased in its drive, keeping its label and name, so it takes new bundles; the
//! catalog forgets what it held.
//!
//! Only a tape can be erased: writing its label again at the beginning makes everything after
//! it unreadable (the drive's end of data moves to just after the label). A written disc cannot
//! be erased, so a disc is refused. The medium is erased before the catalog changes: a failure
//! in between leaves the volume recyclable, and recycling it again finishes the work.

use super::archiver::Archiver;
use crate::catalog::{self, not_recyclable_why, recycle_volume};
use crate::{ArchiveError, MediumKind};

impl Archiver {
    /// Recycle the volume called `volume` (short name or volume id), which must be recyclable
    /// and loaded in a drive, for `by`.
    pub fn recycle(&mut self, volume: &str, by: &str) -> Result<String, ArchiveError> {
        let v = {
            let conn = catalog::open_read(&self.data)?;
            catalog::volume_named(&conn, volume)?
        }
        .ok_or_else(|| ArchiveError::Refused(format!("no volume {volume} in the catalog")))?;
        if let Some(why) = not_recyclable_why(&v) {
            return Err(ArchiveError::Refused(why));
        }
        if v.kind == MediumKind::Optical.as_str() {
            return Err(ArchiveError::Refused(format!(
                "volume {} is a disc: a written disc cannot be erased; destroy it and record it \
                 retired (cairnctl archive set-location {} retired)",
                v.name, v.name
            )));
        }
        let i = self
            .targets
            .iter()
            .position(|t| {
                t.volume
                    .as_ref()
                    .is_some_and(|l| l.volume_id == v.volume_id)
            })
            .ok_or_else(|| {
                ArchiveError::Refused(format!(
                    "load volume {} first (it is {}): it is erased in its drive",
                    v.name,
                    v.location.words()
                ))
            })?;
        tracing::info!(volume = %v.volume_id, name = %v.name, %by, "recycling a volume");
        let (cx, t) = self.target(i);
        let label = t
            .volume
            .clone()
            .ok_or_else(|| ArchiveError::Refused(format!("load volume {} first", v.name)))?;
        let Some(d) = t.drive.as_mut() else {
            return Err(ArchiveError::Refused(format!(
                "load volume {} first (its drive is not open)",
                v.name
            )));
        };
        if d.write_protected()? {
            return Err(ArchiveError::Refused(format!(
                "volume {} is write-protected: slide its tab back and load it again",
                v.name
            )));
        }
        t.writable = false;
        if let Some(other) = d.write_label_checked(cx.data, &label)? {
            t.probed = false;
            return Err(ArchiveError::Io(format!(
                "the label written again on {} did not read back ({other}): the catalog is \
                 unchanged",
                v.name
            )));
        }
        let done = recycle_volume(cx.store, &v.volume_id, by)?;
        // take it into use again at once: blank in the catalog, labelled on the tape
        t.probe_or_note(&cx, by, false)?;
        t.settle_need(cx.data);
        self.publish();
        Ok(format!(
            "volume {} recycled: {} bundle(s) with {} removed image copies erased; it is blank \
             and takes new bundles",
            v.name, done.bundles, done.copies
        ))
    }
}
