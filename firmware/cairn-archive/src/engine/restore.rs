//! Restore: bring a study's missing or damaged instances back from the volumes in the drives.

use super::archiver::Archiver;
use super::status::Activity;
use crate::catalog::{self, Location};
use crate::ArchiveError;
use std::collections::HashSet;

impl Archiver {
    /// Bring a study's current instances back from the volumes in the drives into the store,
    /// through the store's normal durable path (spool, hash, writer). Returns what was done.
    pub fn restore(&mut self, study: &str, by: &str) -> Result<String, ArchiveError> {
        let conn = catalog::open_read(&self.data)?;
        let copies = catalog::study_copies(&conn, study)?;
        if copies.is_empty() {
            // its copies stay on the volumes, marked: a removal is never undone by a restore
            if let Some((kind, at)) = catalog::study_removed(&conn, study)? {
                return Err(ArchiveError::Refused(format!(
                    "study {study} was {kind} on {at}: it is not restored"
                )));
            }
            return Err(ArchiveError::Refused(format!(
                "no verified cold copy of study {study} in the catalog"
            )));
        }
        // only what the store lacks (missing or damaged hot files) is read from a volume
        let mut wanted: HashSet<String> = HashSet::new();
        for c in &copies {
            let sha = &c.sha256;
            let path = self.data.object_path(sha);
            let intact = std::fs::File::open(&path).ok().is_some_and(|mut f| {
                let mut h = <sha2::Sha256 as sha2::Digest>::new();
                std::io::copy(&mut f, &mut h).is_ok()
                    && hex::encode(sha2::Digest::finalize(h)) == *sha
            });
            if !intact {
                wanted.insert(sha.clone());
            }
        }
        let total = wanted.len();
        if total == 0 {
            return Ok(format!(
                "study {study}: every instance is intact in the store; nothing to restore"
            ));
        }
        let mut restored = 0usize;
        // bundles by volume, in file order
        let mut plan: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
        for c in &copies {
            let v = plan.entry(c.volume_id.clone()).or_default();
            if !v.contains(&c.file_number) {
                v.push(c.file_number);
            }
        }
        let mut missing_volumes = Vec::new();
        for (vol, files) in plan {
            if wanted.is_empty() {
                break;
            }
            let Some(t) = self
                .targets
                .iter_mut()
                .find(|t| t.volume.as_ref().is_some_and(|l| l.volume_id == vol))
            else {
                if let Some(c) = copies.iter().find(|c| c.volume_id == vol) {
                    let loc =
                        Location::parse(&c.location).map_or(c.location.as_str(), |l| l.words());
                    missing_volumes.push(format!("{} ({loc})", c.volume_name));
                }
                continue;
            };
            for file in files {
                let shown = t.volume.as_ref().map_or(vol.as_str(), |l| l.short_name());
                t.status.activity = Activity::Restoring(format!("{shown}.{file}"));
                if let Some(d) = t.drive.as_mut() {
                    restored +=
                        d.restore_bundle(&self.store, &self.data, &vol, file, &mut wanted, by)?;
                }
            }
        }
        self.store
            .audit(cairn_audit::AuditEvent {
                actor: by.into(),
                action: "restore".into(),
                object: study.into(),
                detail: serde_json::json!({"restored": restored, "wanted": total,
                    "missing": wanted.len()})
                .to_string(),
            })
            .map_err(ArchiveError::Store)?;
        if wanted.is_empty() {
            Ok(format!(
                "study {study}: {restored} of {total} missing or damaged instance(s) restored \
                 from cold copies (hash-checked)"
            ))
        } else {
            Err(ArchiveError::Refused(format!(
                "study {study}: {restored} restored, {} still missing; load volume(s) {}",
                wanted.len(),
                missing_volumes.join(", ")
            )))
        }
    }
}
