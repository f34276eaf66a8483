//! Scan: rebuild a volume's catalog rows (volume, bundles, copies) from the medium alone.

use super::archiver::Archiver;
use super::drive::Scanned;
use super::status::{Activity, DriveState};
use super::target::{Ctx, Target};
use crate::catalog::{self, VolumeState};
use crate::ArchiveError;

impl Target {
    /// Read the medium in the drive (its label and every bundle, hashed) into the catalog.
    /// Returns what a person reads about it, or `None` when the drive has nothing.
    fn scan(&mut self, cx: &Ctx<'_>, by: &str) -> Result<Option<String>, ArchiveError> {
        if !self.ensure_drive() {
            return Ok(Some(format!("{}: drive unavailable", self.name)));
        }
        self.status.activity = Activity::Scanning;
        let Some(d) = self.drive.as_mut() else {
            return Ok(None);
        };
        let (label, cap, found) = match d.scan(cx.data)? {
            Scanned::Nothing(why) => {
                return Ok(Some(format!("{}: {why}: nothing to scan", self.name)))
            }
            Scanned::Volume {
                label,
                capacity,
                bundles,
            } => (label, capacity, bundles),
        };
        let n = found.len();
        let verified = found.iter().filter(|(_, rb, _)| rb.all_good()).count();
        catalog::record_scan(cx.store, &label, self.id, cap, &found, by)?;
        self.volume = Some(label.clone());
        self.probed = true;
        let conn = catalog::open_read(cx.data)?;
        let st = catalog::volume(&conn, &label.volume_id)?
            .map(|v| v.state)
            .unwrap_or(VolumeState::Error);
        self.writable = st.writable() && label.box_id == cx.policy.box_id;
        self.status.drive = DriveState::Ready;
        self.status.activity = Activity::Idle;
        Ok(Some(format!(
            "{}: volume {}: {} bundle(s), {} verified",
            self.name,
            label.short_name(),
            n,
            verified
        )))
    }
}

impl Archiver {
    /// Rebuild the catalog rows (volume, bundles, copies) of the medium in each chosen drive
    /// from the medium alone: its label and every bundle, read and hashed.
    pub fn scan(&mut self, target: Option<&str>, by: &str) -> Result<String, ArchiveError> {
        let mut msgs = Vec::new();
        for i in self.chosen(target)? {
            let (cx, t) = self.target(i);
            msgs.extend(t.scan(&cx, by)?);
        }
        self.publish();
        Ok(msgs.join("; "))
    }
}
