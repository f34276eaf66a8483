//! Eject: write what is queued for the target, unload its volume and record where it goes.

use super::archiver::Archiver;
use super::status::DriveState;
use crate::catalog::{self, Location, VolumeState};
use crate::ArchiveError;

impl Archiver {
    /// Flush, then unload the target's volume and record where it goes (audited).
    pub fn eject(
        &mut self,
        target: Option<&str>,
        location: Location,
        by: &str,
    ) -> Result<String, ArchiveError> {
        let i = match target {
            Some(_) => self.chosen(target)?[0],
            None => self
                .targets
                .iter()
                .position(|t| t.volume.is_some())
                .or_else(|| (!self.targets.is_empty()).then_some(0))
                .ok_or_else(|| ArchiveError::Refused("no cold target configured".into()))?,
        };
        if location == Location::InDrive {
            return Err(ArchiveError::Refused(
                "an ejected volume cannot stay in the drive".into(),
            ));
        }
        let (_, t) = self.target(i);
        let name = t.name.clone();
        let flushed = if t.writable {
            match self.flush(Some(&name)) {
                Ok(m) => m,
                Err(e) => format!("not everything could be written before the eject: {e}"),
            }
        } else {
            String::new()
        };
        let (cx, t) = self.target(i);
        if !t.probed {
            let _ = t.probe(&cx, by, false);
        }
        let vol = t.volume.take();
        match t.drive.as_mut() {
            Some(d) => d.eject()?,
            None => return Err(ArchiveError::Refused(format!("{name}: no drive"))),
        }
        t.writable = false;
        t.probed = false;
        t.status.drive = DriveState::NoMedium;
        t.settle_need(cx.data);
        let Some(label) = vol else {
            t.status.message = "the medium was ejected".into();
            self.publish();
            return Ok("ejected (the medium was not a catalogued cairn volume)".into());
        };
        let conn = catalog::open_read(cx.data)?;
        let cur = catalog::volume(&conn, &label.volume_id)?;
        let new_state = match cur.map(|v| v.state) {
            Some(VolumeState::Full) => VolumeState::Full,
            Some(VolumeState::Error) => VolumeState::Error,
            _ => VolumeState::Ejected,
        };
        catalog::set_state(
            cx.store,
            &label.volume_id,
            new_state,
            Some(location),
            by,
            "ejected",
        )?;
        t.status.message = format!(
            "volume {} ejected; recorded as {}",
            label.short_name(),
            location.words()
        );
        self.publish();
        Ok(format!(
            "{}{}volume {} ejected and recorded at {}",
            flushed,
            if flushed.is_empty() { "" } else { "; " },
            label.short_name(),
            location.as_str()
        ))
    }
}
