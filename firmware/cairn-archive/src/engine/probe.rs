//! Probing and loading: read the label of what is in a drive and take it into use (labelling
//! a blank medium, or on request a tape whose beginning cannot be read); load.

use super::archiver::Archiver;
use super::drive::Seen;
use super::status::{unreadable_advice, write_it_on, DriveState};
use super::target::{Ctx, Target};
use crate::catalog::{self, VolumeState};
use crate::label::Label;
use crate::{ArchiveError, MediumKind};
use std::time::Duration;

/// What a probe found, where the caller needs more than the live status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// A tape whose first read at its beginning failed with an I/O error: not written.
    Unreadable,
    /// Such a tape, labelled because a person asked for it.
    UnreadableLabelled,
    /// A blank medium, labelled.
    BlankLabelled,
    /// Anything else (no medium, a label, foreign data, write protected, no drive).
    Other,
}

/// The short name for a volume about to be labelled: the name printed on it when the drive
/// can read one that is valid and free, else the next free `<prefix>NN`. The second value is
/// true when the box chose it (the person must write it on the cartridge).
fn choose_name(
    conn: &rusqlite::Connection,
    printed: Option<String>,
    prefix: &str,
) -> Result<(String, bool), ArchiveError> {
    let taken = catalog::names_in_use(conn)?;
    if let Some(p) = printed {
        if crate::label::valid_name(&p) && !taken.contains(&p) {
            return Ok((p, false));
        }
    }
    let name = crate::label::next_name(prefix, taken.iter().map(String::as_str));
    Ok((name, true))
}

/// A new label of `kind`, called `name`, whose volume id the catalog does not know yet.
fn fresh_label(
    conn: &rusqlite::Connection,
    box_id: &str,
    kind: MediumKind,
    name: &str,
) -> Result<Label, ArchiveError> {
    loop {
        let l = Label::new(box_id, kind.as_str(), kind.block_size(), name);
        if catalog::volume(conn, &l.volume_id)?.is_none() {
            return Ok(l);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Target {
    /// Read the label of what is in the drive and take it into use (labelling a blank one).
    /// Never writes to a labelled or foreign medium; a tape that cannot be read at its
    /// beginning is labelled only when `label_unreadable` (a person asked for it).
    pub(super) fn probe(
        &mut self,
        cx: &Ctx<'_>,
        by: &str,
        label_unreadable: bool,
    ) -> Result<Found, ArchiveError> {
        if !self.ensure_drive() {
            return Ok(Found::Other);
        }
        let box_id = cx.policy.box_id.as_str();
        let prefix = cx.policy.volume_name_prefix.as_str();
        self.probed = true;
        self.volume = None;
        self.writable = false;
        let Some(d) = self.drive.as_mut() else {
            return Ok(Found::Other);
        };
        let seen = d.look(cx.data)?;
        let printed = d.printed_name();
        let mut found = Found::Other;
        match seen {
            Seen::None => {
                self.status.drive = DriveState::NoMedium;
            }
            Seen::Unreadable(err) if !label_unreadable => {
                tracing::warn!(target = %self.name, error = %err,
                    "the tape cannot be read at its beginning: not written");
                self.status.drive = DriveState::Unreadable;
                self.status.last_error = Some(err);
                self.status.message = unreadable_advice(&self.name, cx.several);
                found = Found::Unreadable;
            }
            Seen::Unreadable(err) => {
                if d.write_protected()? {
                    self.status.drive = DriveState::WriteProtected;
                    self.status.last_error = Some(err);
                    self.status.message = "the tape in the drive cannot be read at its beginning \
                                      and is write-protected: it cannot be labelled"
                        .into();
                    return Ok(Found::Unreadable);
                }
                let conn = catalog::open_read(cx.data)?;
                let (name, chosen) = choose_name(&conn, printed, prefix)?;
                let label = fresh_label(&conn, box_id, MediumKind::Tape, &name)?;
                drop(conn);
                // the decision is on record before the tape is touched
                cx.store
                    .audit(cairn_audit::AuditEvent {
                        actor: by.into(),
                        action: "volume-label-unreadable".into(),
                        object: label.volume_id.clone(),
                        detail: serde_json::json!({
                            "name": label.name,
                            "target": self.name,
                            "read_error": err,
                            "why": "the tape could not be read at its beginning; labelled on \
                                    request, overwriting whatever it held",
                        })
                        .to_string(),
                    })
                    .map_err(ArchiveError::Store)?;
                // the label must read back before the volume is used
                if let Some(other) = d.write_label_checked(cx.data, &label)? {
                    self.status.drive = DriveState::Error;
                    self.status.message = format!(
                        "the label written on the tape did not read back ({other}): the \
                         tape is not used; eject it"
                    );
                    return Err(ArchiveError::Refused(self.status.message.clone()));
                }
                catalog::register_volume(
                    cx.store,
                    &label,
                    self.id,
                    VolumeState::Labelled,
                    None,
                    by,
                )?;
                tracing::info!(volume = %label.volume_id, name = %label.name,
                    target = %self.name, %by,
                    "labelled a tape that could not be read at its beginning");
                self.status.drive = DriveState::Ready;
                self.status.last_error = None;
                self.status.message = format!(
                    "volume {} labelled (the tape could not be read at its beginning; labelled \
                     on request by {by}) and in use{}",
                    label.name,
                    write_it_on(&label.name, MediumKind::Tape, chosen)
                );
                self.volume = Some(label);
                self.writable = true;
                found = Found::UnreadableLabelled;
            }
            Seen::Foreign => {
                self.status.drive = DriveState::Foreign;
                self.status.message = "the medium in the drive holds data not written by cairn: \
                                     it is never overwritten; eject it"
                    .into();
            }
            Seen::Blank { protected: true } => {
                self.status.drive = DriveState::WriteProtected;
                self.status.message = "the blank medium in the drive is write-protected".into();
            }
            Seen::Blank { protected: false } => {
                let conn = catalog::open_read(cx.data)?;
                let (name, chosen) = choose_name(&conn, printed, prefix)?;
                let kind = d.kind();
                let label = fresh_label(&conn, box_id, kind, &name)?;
                let cap = d.write_label(cx.data, &label)?;
                catalog::register_volume(
                    cx.store,
                    &label,
                    self.id,
                    VolumeState::Labelled,
                    cap,
                    by,
                )?;
                tracing::info!(volume = %label.volume_id, name = %label.name,
                    target = %self.name, "labelled a blank volume");
                self.status.drive = DriveState::Ready;
                self.status.message = format!(
                    "volume {} labelled and in use{}",
                    label.name,
                    write_it_on(&label.name, kind, chosen)
                );
                self.volume = Some(label);
                self.writable = true;
                found = Found::BlankLabelled;
            }
            Seen::Cairn(label, cap, protected) => {
                let conn = catalog::open_read(cx.data)?;
                let row = catalog::volume(&conn, &label.volume_id)?;
                match row {
                    None => {
                        self.status.drive = DriveState::Uncatalogued;
                        self.status.message = format!(
                            "volume {} is not in the catalog: run `cairnctl archive scan` to \
                             read it in; nothing is written to it until then",
                            label.short_name()
                        );
                    }
                    Some(v) => {
                        let state = match v.state {
                            VolumeState::Ejected | VolumeState::Blank => {
                                if v.verified_bundles > 0 {
                                    VolumeState::Append
                                } else {
                                    VolumeState::Labelled
                                }
                            }
                            s => s,
                        };
                        catalog::register_volume(cx.store, &label, self.id, state, cap, by)?;
                        self.writable = state.writable() && !protected && label.box_id == box_id;
                        self.status.drive = if protected {
                            DriveState::WriteProtected
                        } else {
                            DriveState::Ready
                        };
                        self.status.message = format!(
                            "volume {} ({}){}",
                            v.name,
                            state.as_str(),
                            if self.writable {
                                ""
                            } else {
                                ": not written to"
                            }
                        );
                        self.volume = Some(label);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Probe, and when that fails say so in the status and drop the drive (it is opened
    /// again next time).
    pub(super) fn probe_or_note(
        &mut self,
        cx: &Ctx<'_>,
        by: &str,
        label_unreadable: bool,
    ) -> Result<Found, ArchiveError> {
        self.probe(cx, by, label_unreadable).inspect_err(|e| {
            self.status.last_error = Some(e.to_string());
            if self.status.drive != DriveState::Error {
                self.status.drive = DriveState::Error;
                self.status.message = format!("reading the medium failed: {e}");
            }
            self.drive = None;
        })
    }
}

impl Archiver {
    /// Take the medium now in the drive(s) into use. Refused (with what to do) when a tape
    /// cannot be read at its beginning.
    pub fn load(&mut self, target: Option<&str>, by: &str) -> Result<String, ArchiveError> {
        let mut msgs = Vec::new();
        let mut unreadable = false;
        for i in self.chosen(target)? {
            let (cx, t) = self.target(i);
            t.drive = None;
            unreadable |= t.probe(&cx, by, false)? == Found::Unreadable;
            t.settle_need(cx.data);
            msgs.push(format!("{}: {}", t.name, t.status.drive_says()));
        }
        self.publish();
        if unreadable {
            return Err(ArchiveError::Refused(msgs.join("; ")));
        }
        Ok(msgs.join("; "))
    }

    /// Label the tape in a drive although its beginning cannot be read (a factory-new
    /// cartridge on some drives, a degaussed one): the operator's explicit decision, audited
    /// with who and when before the tape is written. Only when the first read at the
    /// beginning fails with an I/O or medium error; a tape from which a label, foreign data or
    /// anything at all was read is never written this way (refused), and a blank one is
    /// labelled as [`Archiver::load`] does. The written label must read back.
    pub fn label_unreadable(
        &mut self,
        target: Option<&str>,
        by: &str,
    ) -> Result<String, ArchiveError> {
        let idx: Vec<usize> = self
            .chosen(target)?
            .into_iter()
            .filter(|&i| self.targets[i].kind == MediumKind::Tape)
            .collect();
        if idx.is_empty() {
            return Err(ArchiveError::Refused(match target {
                Some(n) => format!("{n} is not a tape target: only a tape is labelled this way"),
                None => "no tape target is configured".into(),
            }));
        }
        tracing::info!(%by, "labelling a tape that cannot be read at its beginning requested");
        let mut msgs = Vec::new();
        let mut ok = true;
        for i in idx {
            let (cx, t) = self.target(i);
            t.drive = None;
            let found = match t.probe_or_note(&cx, by, true) {
                Ok(f) => f,
                Err(e) => {
                    self.publish();
                    return Err(e);
                }
            };
            t.settle_need(cx.data);
            match found {
                Found::UnreadableLabelled | Found::BlankLabelled => {
                    msgs.push(format!("{}: {}", t.name, t.status.message))
                }
                _ => {
                    ok = false;
                    msgs.push(format!(
                        "{}: not labelled: only a tape whose beginning cannot be read is \
                         labelled this way, and this drive says: {}",
                        t.name,
                        t.status.drive_says()
                    ));
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
