//! Writing: per target, take the queued instances, close a bundle by size, by age, or on
//! request (flush), write it, read it back, and only then record the copies as verified.

use super::archiver::Archiver;
use super::status::{Activity, DriveState};
use super::target::{Ctx, Outcome, Target};
use crate::bundle::{BundleHead, Member, ReadBack, SmallFiles};
use crate::catalog::{self, VolumeState};
use crate::{ArchiveError, ErrorKind};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Who the engine's own changes are recorded as.
pub(super) const SYSTEM: &str = "system";

fn age_of(rfc3339: &str) -> Option<Duration> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?;
    let d = time::OffsetDateTime::now_utc() - t;
    Some(Duration::from_secs_f64(d.as_seconds_f64().max(0.0)))
}

impl Target {
    /// Write bundles until nothing is due. Returns the last outcome.
    pub(super) fn step(&mut self, cx: &Ctx<'_>, force: bool) -> Outcome {
        let mut last = Outcome::Idle;
        let mut rounds = 0;
        loop {
            if cx.stopping() {
                break;
            }
            rounds += 1;
            let o = self.step_once(cx, force);
            let again = matches!(o, Outcome::Verified(_)) && rounds < 10_000;
            match (&o, &last) {
                (Outcome::Idle, Outcome::Verified(_)) => {}
                _ => last = o.clone(),
            }
            if !again {
                // an incomplete bundle is retried at once when a new volume is ready
                if let Outcome::NotVerified(_) = o {
                    if self.writable && rounds < 3 {
                        continue;
                    }
                }
                break;
            }
        }
        last
    }

    fn step_once(&mut self, cx: &Ctx<'_>, force: bool) -> Outcome {
        if !self.probed || self.drive.is_none() {
            if let Err(e) = self.probe(cx, SYSTEM, false) {
                self.status.drive = DriveState::Error;
                self.status.last_error = Some(e.to_string());
                self.status.message = format!("reading the medium failed: {e}");
                tracing::warn!(target = %self.name, error = %e, "probing the medium failed");
                self.drive = None;
            }
        }
        let conn = match catalog::open_read(cx.data) {
            Ok(c) => c,
            Err(e) => return Outcome::NotVerified(e.to_string()),
        };
        let q = match catalog::queue_status(&conn, &self.name) {
            Ok(q) => q,
            Err(e) => return Outcome::NotVerified(e.to_string()),
        };
        if q.instances == 0 {
            self.status.medium_needed = false;
            self.status.activity = Activity::Idle;
            return Outcome::Idle;
        }
        if !self.writable {
            self.status.medium_needed = true;
            self.status.activity = Activity::WaitingForMedium(Some(q.instances));
            return Outcome::MediumNeeded;
        }
        self.status.medium_needed = false;
        let policy = cx.policy;
        let due = force
            || q.bytes as u64 >= policy.bundle_max_bytes
            || q.instances as usize >= policy.bundle_max_members
            || q.oldest_queued_at
                .as_deref()
                .and_then(age_of)
                .is_some_and(|a| a >= policy.bundle_max_age);
        if !due {
            self.status.activity = Activity::Collecting(q.instances);
            return Outcome::Idle;
        }
        let batch = match catalog::next_batch(
            &conn,
            self.id,
            policy.bundle_max_bytes,
            policy.bundle_max_members,
            &self.exclude,
        ) {
            Ok(b) => b,
            Err(e) => return Outcome::NotVerified(e.to_string()),
        };
        if batch.is_empty() {
            self.status.activity = Activity::IdleSkipping;
            return Outcome::Idle;
        }
        let head = cairn_audit::head(&conn)
            .map(|h| (h.seq, h.hash))
            .unwrap_or((0, cairn_audit::GENESIS.into()));
        // every legal hold goes into every bundle, read when it is built
        let holds = match cairn_store::all_holds(&conn) {
            Ok(h) => h,
            Err(e) => return Outcome::NotVerified(format!("reading the legal holds: {e}")),
        };
        drop(conn);
        match self.write_bundle(cx, batch, head, &holds) {
            Ok(o) => o,
            Err(e) => {
                self.status.last_error = Some(e.to_string());
                tracing::warn!(target = %self.name, error = %e, "bundle not verified");
                Outcome::NotVerified(e.to_string())
            }
        }
    }

    fn write_bundle(
        &mut self,
        cx: &Ctx<'_>,
        batch: Vec<(i64, Member)>,
        head: (i64, String),
        holds: &[cairn_store::HoldRecord],
    ) -> Result<Outcome, ArchiveError> {
        let store = cx.store;
        let data = cx.data;
        let Some(label) = self.volume.clone() else {
            return Ok(Outcome::MediumNeeded);
        };
        // a hot file that is missing or has the wrong size is left out before anything is
        // written (it stays queued; fsck and the status say why)
        let (batch, bad): (Vec<_>, Vec<_>) = batch.into_iter().partition(|(_, m)| {
            std::fs::metadata(data.object_path(&m.sha256)).is_ok_and(|md| md.len() == m.size)
        });
        for (id, m) in &bad {
            tracing::error!(sha256 = %m.sha256, "hot copy missing or truncated: not archived");
            self.exclude.insert(*id);
            self.status.last_error = Some(format!(
                "the hot copy of {} is missing or truncated: run cairnctl fsck",
                m.sha256
            ));
        }
        if batch.is_empty() {
            return Ok(Outcome::NotVerified("hot copies missing".into()));
        }
        let members: Vec<Member> = batch.iter().map(|(_, m)| m.clone()).collect();
        let mtime = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let Some(d) = self.drive.as_mut() else {
            return Ok(Outcome::MediumNeeded);
        };
        let file_number = d.append_position()?;
        let bundle_id = format!("{}.{}", label.volume_id, file_number);
        // what people read: the volume's short name and the file (`DEMO01.3`)
        let shown = format!("{}.{}", label.short_name(), file_number);
        let bhead = BundleHead {
            format: "cairn-bundle".into(),
            format_version: crate::bundle::FORMAT_VERSION,
            bundle_id: bundle_id.clone(),
            volume_id: label.volume_id.clone(),
            box_id: cx.policy.box_id.clone(),
            closed_at: cairn_store::now_rfc3339(),
            members: members.len() as u64,
            audit_seq: head.0,
            audit_hash: head.1.clone(),
        };
        let small = SmallFiles::new(&bhead, &members, holds)?;
        let manifest_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&small.manifest));
        let row =
            catalog::begin_bundle(store, &label.volume_id, file_number, &bundle_id, &members)?;
        self.status.activity = Activity::Writing(shown.clone(), members.len());
        tracing::info!(bundle = %bundle_id, members = members.len(), "writing a bundle");
        let started = Instant::now();
        // write
        let written = d.write_bundle(data, &bundle_id, file_number, &small, &members, mtime);
        let bytes = match written {
            Ok(b) => b,
            Err((kind, e)) => {
                let vid = label.volume_id.clone();
                let vname = label.short_name().to_string();
                match kind {
                    ErrorKind::EarlyWarning => {
                        catalog::end_bundle_unverified(
                            store,
                            row,
                            "incomplete",
                            0,
                            "end of medium (early warning): written again on the next volume",
                        )?;
                        catalog::set_state(
                            store,
                            &vid,
                            VolumeState::Full,
                            None,
                            SYSTEM,
                            "end of medium",
                        )?;
                        self.writable = false;
                        self.status.message = format!(
                            "volume {vname} is full: bundle {shown} will be written whole on \
                             the next volume; eject it and load another"
                        );
                    }
                    ErrorKind::HotCopy => {
                        catalog::end_bundle_unverified(store, row, "failed", 0, &e.to_string())?;
                        if let ArchiveError::HotCopyDamaged { sha256 } = &e {
                            for (id, m) in &batch {
                                if &m.sha256 == sha256 {
                                    self.exclude.insert(*id);
                                }
                            }
                        }
                        tracing::error!(error = %e, "a hot copy could not be archived");
                    }
                    ErrorKind::MediumNeeded => {
                        catalog::end_bundle_unverified(store, row, "failed", 0, &e.to_string())?;
                        self.writable = false;
                        self.probed = false;
                    }
                    _ => {
                        catalog::end_bundle_unverified(store, row, "failed", 0, &e.to_string())?;
                        catalog::set_state(
                            store,
                            &vid,
                            VolumeState::Error,
                            None,
                            SYSTEM,
                            &format!("write failed: {e}"),
                        )?;
                        self.writable = false;
                        self.status.message = format!(
                            "writing to volume {vname} failed ({e}); its instances stay queued. \
                             Eject it and load another"
                        );
                    }
                }
                self.status.last_error = Some(e.to_string());
                self.status.medium_needed = !self.writable;
                self.status.activity = if self.writable {
                    Activity::Idle
                } else {
                    Activity::WaitingForMedium(None)
                };
                return Ok(Outcome::NotVerified(e.to_string()));
            }
        };
        // read back
        self.status.activity = Activity::Verifying(shown.clone());
        let rb: Result<ReadBack, ArchiveError> = match self.drive.as_mut() {
            Some(d) => d.verify(data, &bundle_id),
            None => Err(ArchiveError::Refused("drive gone".into())),
        };
        let (good, all_good, why) = match &rb {
            Ok(rb) => {
                let want: HashSet<&str> = members.iter().map(|m| m.sha256.as_str()).collect();
                let good: Vec<String> = rb
                    .good
                    .iter()
                    .filter(|s| want.contains(s.as_str()))
                    .cloned()
                    .collect();
                let all = rb.all_good() && good.len() == want.len();
                let why = format!(
                    "{} of {} objects matched, {} mismatched{}",
                    good.len(),
                    want.len(),
                    rb.bad.len(),
                    if rb.complete {
                        ""
                    } else {
                        ", bundle cut short"
                    }
                );
                (good, all, why)
            }
            Err(e) => (Vec::new(), false, format!("read-back failed: {e}")),
        };
        if !all_good {
            catalog::end_bundle_unverified(store, row, "failed", bytes, &why)?;
            catalog::set_state(
                store,
                &label.volume_id,
                VolumeState::Error,
                None,
                SYSTEM,
                &format!("verify failed: {why}"),
            )?;
            self.writable = false;
            self.status.last_error = Some(format!("bundle {shown}: {why}"));
            self.status.message = format!(
                "bundle {shown} did not verify ({why}); volume {} is set aside, its \
                 instances stay queued",
                label.short_name()
            );
            self.status.medium_needed = true;
            self.status.activity = Activity::WaitingForMedium(None);
            tracing::error!(bundle = %bundle_id, %why, "verify failed");
            return Ok(Outcome::NotVerified(why));
        }
        let n = catalog::bundle_verified(
            store,
            row,
            self.id,
            &label.volume_id,
            &good,
            true,
            bytes,
            head,
            manifest_sha,
        )?;
        let secs = started.elapsed().as_secs_f64();
        self.status.busy_ms += started.elapsed().as_millis() as u64;
        self.status.bytes_verified += members.iter().map(|m| m.size).sum::<u64>();
        tracing::info!(
            bundle = %bundle_id,
            copies = n,
            bytes,
            mb_per_s = (bytes as f64 / 1e6 / secs.max(1e-9)) as u64,
            "bundle written and verified"
        );
        self.status.activity = Activity::Idle;
        self.status.last_error = (!self.exclude.is_empty()).then(|| {
            format!(
                "{} queued image(s) skipped: their hot copy is missing or damaged (run \
                 cairnctl fsck)",
                self.exclude.len()
            )
        });
        self.status.message = format!("bundle {shown} verified ({n} objects)");
        Ok(Outcome::Verified(n))
    }
}

impl Archiver {
    /// One round over every target: probe drives that need it, write every bundle that is due
    /// (all queued instances when `force`). Returns the outcomes.
    pub fn tick(&mut self, force: bool) -> Vec<(String, Outcome)> {
        let mut out = Vec::new();
        for i in 0..self.targets.len() {
            let (cx, t) = self.target(i);
            let o = t.step(&cx, force);
            out.push((t.name.clone(), o));
        }
        self.publish();
        out
    }

    /// Write every queued instance of the chosen targets now. Ok when the queues are empty.
    pub fn flush(&mut self, target: Option<&str>) -> Result<String, ArchiveError> {
        let idx = self.chosen(target)?;
        let mut msgs = Vec::new();
        let mut ok = true;
        for i in idx {
            let (cx, t) = self.target(i);
            let mut guard = 0;
            loop {
                guard += 1;
                let o = t.step(&cx, true);
                let queued = t.queued(cx.data)?;
                if queued == 0 {
                    msgs.push(format!("{}: everything verified", t.name));
                    break;
                }
                let stuck = !matches!(o, Outcome::Verified(_)) || guard > 100_000 || cx.stopping();
                if stuck {
                    ok = false;
                    msgs.push(format!(
                        "{}: {} instance(s) still queued: {}",
                        t.name,
                        queued,
                        match o {
                            Outcome::MediumNeeded => "no writable medium".to_string(),
                            Outcome::NotVerified(w) => w,
                            _ => t.status.message.clone(),
                        }
                    ));
                    break;
                }
            }
        }
        self.publish();
        if ok {
            Ok(msgs.join("; "))
        } else {
            Err(ArchiveError::Refused(msgs.join("; ")))
        }
    }
}
