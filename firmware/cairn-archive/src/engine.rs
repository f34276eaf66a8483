//! The archive writer's policy: per cold target, take the queued instances, close a bundle by
//! size, by age, or on request (flush, eject), write it, read it back, and only then record
//! the copies as verified and drop their queue rows. Runs in `cairnd`'s archive thread; tests
//! drive it directly with the `cairn-hal` emulators.
//!
//! Failure rules: early warning (tape) or no room (optical): the bundle is `incomplete` on that
//! volume, the volume becomes `full`, and the whole bundle is written again on the next volume;
//! a write or verify error: the bundle is `failed`, the volume goes to `error`; in every case
//! the queue rows stay until a verified copy exists, so nothing queued is lost.

use crate::bundle::{BundleHead, Member, ReadBack, SmallFiles, StoreObjects};
use crate::catalog::{self, LiveStatus, LiveTarget, Location, VolumeState};
use crate::label::Label;
use crate::optical::{self, DiscLabel, OpticalWriteError};
use crate::requests::{self, Answer, Request};
use crate::tape::{self, TapeLabel};
use crate::{ArchiveError, ErrorKind, RECORD_SIZE};
use cairn_hal::optical::OpticalDrive;
use cairn_hal::tape::TapeDrive;
use cairn_store::{DataDir, Store, StoreJob};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An open drive of either kind.
pub enum Drive {
    /// A tape drive.
    Tape(Box<dyn TapeDrive>),
    /// An optical drive.
    Optical(Box<dyn OpticalDrive>),
}

/// Opens a target's drive (again after a failure).
pub type Opener = Box<dyn FnMut() -> Result<Drive, ArchiveError> + Send>;

/// One cold target as the engine needs it.
pub struct TargetSpec {
    /// Its name (unique, as in the config).
    pub name: String,
    /// `tape` or `optical`.
    pub kind: String,
    /// Opens its drive.
    pub open: Opener,
}

/// Bundle policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// This box's id, written into labels.
    pub box_id: String,
    /// A bundle closes when this many bytes are queued.
    pub bundle_max_bytes: u64,
    /// A bundle closes when its oldest instance has waited this long.
    pub bundle_max_age: Duration,
    /// At most this many objects per bundle.
    pub bundle_max_members: usize,
    /// Short names the box gives new volumes whose printed name it cannot read start with
    /// this (`CAIRN` gives `CAIRN01`, `CAIRN02`...).
    pub volume_name_prefix: String,
}

struct Target {
    spec: TargetSpec,
    id: i64,
    drive: Option<Drive>,
    /// The label of the volume in the drive, once read and catalogued.
    volume: Option<Label>,
    /// Whether bundles may be written to it now.
    writable: bool,
    live: LiveTarget,
    /// Instances whose hot copy failed to read or hash: skipped until restart.
    exclude: HashSet<i64>,
    /// The drive was probed since the last request or change.
    probed: bool,
}

/// The archive writer for every target.
pub struct Archiver {
    store: Store,
    data: DataDir,
    policy: Policy,
    targets: Vec<Target>,
    /// Set when the daemon stops: no new bundle is started.
    stop: Arc<AtomicBool>,
    started: Instant,
}

/// What one bundle attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to write (queue empty or not yet due).
    Idle,
    /// No writable medium while instances wait.
    MediumNeeded,
    /// A bundle was written and verified with this many copies.
    Verified(usize),
    /// The bundle could not be completed; its instances stay queued.
    NotVerified(String),
}

fn who_system() -> String {
    "system".into()
}

/// What a probe found, where the caller needs more than the live status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
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

/// A new label, called `name`, whose volume id the catalog does not know yet.
fn fresh_label(
    conn: &rusqlite::Connection,
    box_id: &str,
    kind: &str,
    block: u32,
    name: &str,
) -> Result<Label, ArchiveError> {
    loop {
        let l = Label::new(box_id, kind, block, name);
        if catalog::volume(conn, &l.volume_id)?.is_none() {
            return Ok(l);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Archiver {
    /// Catalog the targets, mark bundles left `writing` by a crash as `failed` (their instances
    /// are still queued), and get ready. Drives are opened on first use.
    pub fn new(store: Store, policy: Policy, specs: Vec<TargetSpec>) -> Result<Self, ArchiveError> {
        let data = store.data_dir().clone();
        let pairs: Vec<(String, String)> = specs
            .iter()
            .map(|s| (s.name.clone(), s.kind.clone()))
            .collect();
        let ids = catalog::sync_targets(&store, &pairs)?;
        store.transact(|c, now| {
            let n = c.execute(
                "UPDATE bundles SET state = 'failed', closed_at = ?1 WHERE state = 'writing'",
                [now],
            )?;
            let ev = (n > 0).then(|| cairn_audit::AuditEvent {
                actor: "system".into(),
                action: "bundle".into(),
                object: "archive".into(),
                detail: serde_json::json!({"failed_after_restart": n}).to_string(),
            });
            Ok(((), ev.into_iter().collect()))
        })?;
        let targets = specs
            .into_iter()
            .map(|spec| {
                let id = ids
                    .iter()
                    .find(|(n, _)| *n == spec.name)
                    .map(|(_, id)| *id)
                    .unwrap_or(0);
                Target {
                    live: LiveTarget {
                        name: spec.name.clone(),
                        drive: "unknown".into(),
                        activity: "starting".into(),
                        ..Default::default()
                    },
                    spec,
                    id,
                    drive: None,
                    volume: None,
                    writable: false,
                    exclude: HashSet::new(),
                    probed: false,
                }
            })
            .collect();
        Ok(Self {
            store,
            data,
            policy,
            targets,
            stop: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
        })
    }

    /// The store this archiver writes through.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A flag that, once set, stops the archiver between bundles (and ends [`Archiver::run`]).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Publish the live status (`archive.json`: temp file, rename).
    pub fn publish(&self) {
        let now = cairn_store::now_rfc3339();
        let s = LiveStatus {
            targets: self
                .targets
                .iter()
                .map(|t| {
                    let mut l = t.live.clone();
                    l.updated_at = now.clone();
                    l.uptime_ms = self.started.elapsed().as_millis() as u64;
                    l
                })
                .collect(),
        };
        let path = self.data.root().join(requests::STATUS_FILE);
        let tmp = path.with_extension("json.tmp");
        if let Ok(b) = serde_json::to_vec_pretty(&s) {
            if std::fs::write(&tmp, b).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
    }

    /// Whether any target needs a medium now.
    pub fn medium_needed(&self) -> bool {
        self.targets.iter().any(|t| t.live.medium_needed)
    }

    fn index(&self, name: Option<&str>) -> Result<Vec<usize>, ArchiveError> {
        match name {
            None => Ok((0..self.targets.len()).collect()),
            Some(n) => self
                .targets
                .iter()
                .position(|t| t.spec.name == n)
                .map(|i| vec![i])
                .ok_or_else(|| ArchiveError::Refused(format!("no cold target named {n}"))),
        }
    }

    /// One round over every target: probe drives that need it, write every bundle that is due
    /// (all queued instances when `force`). Returns the outcomes.
    pub fn tick(&mut self, force: bool) -> Vec<(String, Outcome)> {
        let mut out = Vec::new();
        for i in 0..self.targets.len() {
            let o = self.step(i, force);
            out.push((self.targets[i].spec.name.clone(), o));
        }
        self.publish();
        out
    }

    /// Write bundles for target `i` until nothing is due. Returns the last outcome.
    fn step(&mut self, i: usize, force: bool) -> Outcome {
        let mut last = Outcome::Idle;
        let mut rounds = 0;
        loop {
            if self.stopping() {
                break;
            }
            rounds += 1;
            let o = self.step_once(i, force);
            let again = matches!(o, Outcome::Verified(_)) && rounds < 10_000;
            match (&o, &last) {
                (Outcome::Idle, Outcome::Verified(_)) => {}
                _ => last = o.clone(),
            }
            if !again {
                // an incomplete bundle is retried at once when a new volume is ready
                if let Outcome::NotVerified(_) = o {
                    if self.targets[i].writable && rounds < 3 {
                        continue;
                    }
                }
                break;
            }
        }
        last
    }

    fn ensure_drive(&mut self, i: usize) -> bool {
        let t = &mut self.targets[i];
        if t.drive.is_some() {
            return true;
        }
        match (t.spec.open)() {
            Ok(d) => {
                t.drive = Some(d);
                t.probed = false;
                true
            }
            Err(e) => {
                t.live.drive = "unavailable".into();
                t.live.last_error = Some(e.to_string());
                t.live.message = format!("the {} drive cannot be opened: {e}", t.spec.kind);
                false
            }
        }
    }

    /// Read the label of what is in the drive and take it into use (labelling a blank one).
    /// Never writes to a labelled or foreign medium; a tape that cannot be read at its
    /// beginning is labelled only when `label_unreadable` (a person asked for it).
    fn probe(&mut self, i: usize, by: &str, label_unreadable: bool) -> Result<Found, ArchiveError> {
        if !self.ensure_drive(i) {
            return Ok(Found::Other);
        }
        let data = self.data.clone();
        let box_id = self.policy.box_id.clone();
        let prefix = self.policy.volume_name_prefix.clone();
        let several = self.targets.len() > 1;
        let t = &mut self.targets[i];
        t.probed = true;
        t.volume = None;
        t.writable = false;
        enum Seen {
            None,
            Blank { protected: bool },
            Cairn(Label, Option<u64>, bool),
            Foreign,
            Unreadable(String),
        }
        let seen = match t.drive.as_mut() {
            Some(Drive::Tape(d)) => match tape::read_label(d.as_mut())? {
                TapeLabel::NoMedium => Seen::None,
                TapeLabel::Blank => Seen::Blank {
                    protected: d.status()?.write_protected,
                },
                TapeLabel::Cairn(l) => {
                    let wp = d.status()?.write_protected;
                    Seen::Cairn(l, None, wp)
                }
                TapeLabel::Foreign => Seen::Foreign,
                TapeLabel::Unreadable(e) => Seen::Unreadable(e),
            },
            Some(Drive::Optical(d)) => {
                let cap = d.status().ok().map(|s| s.capacity);
                match optical::read_label(d.as_mut(), &data)? {
                    DiscLabel::NoMedium => Seen::None,
                    DiscLabel::Blank => Seen::Blank { protected: false },
                    DiscLabel::Cairn(l) => Seen::Cairn(l, cap, false),
                    DiscLabel::Foreign => Seen::Foreign,
                }
            }
            None => Seen::None,
        };
        // the name printed on the medium, when the drive can read it (a changer, the emulator)
        let printed = match t.drive.as_mut() {
            Some(Drive::Tape(d)) => d.cartridge_name(),
            Some(Drive::Optical(d)) => d.disc_name(),
            None => None,
        };
        let mut found = Found::Other;
        match seen {
            Seen::None => {
                t.live.drive = "no medium".into();
            }
            Seen::Unreadable(err) if !label_unreadable => {
                tracing::warn!(target = %t.spec.name, error = %err,
                    "the tape cannot be read at its beginning: not written");
                t.live.drive = "unreadable medium".into();
                t.live.last_error = Some(err);
                t.live.message = unreadable_advice(&t.spec.name, several);
                found = Found::Unreadable;
            }
            Seen::Unreadable(err) => {
                let protected = match t.drive.as_mut() {
                    Some(Drive::Tape(d)) => d.status()?.write_protected,
                    _ => false,
                };
                if protected {
                    t.live.drive = "write protected".into();
                    t.live.last_error = Some(err);
                    t.live.message = "the tape in the drive cannot be read at its beginning \
                                      and is write-protected: it cannot be labelled"
                        .into();
                    return Ok(Found::Unreadable);
                }
                let conn = catalog::open_read(&self.data)?;
                let (name, chosen) = choose_name(&conn, printed, &prefix)?;
                let label = fresh_label(&conn, &box_id, "tape", RECORD_SIZE as u32, &name)?;
                drop(conn);
                // the decision is on record before the tape is touched
                self.store
                    .audit(cairn_audit::AuditEvent {
                        actor: by.into(),
                        action: "volume-label-unreadable".into(),
                        object: label.volume_id.clone(),
                        detail: serde_json::json!({
                            "name": label.name,
                            "target": t.spec.name,
                            "read_error": err,
                            "why": "the tape could not be read at its beginning; labelled on \
                                    request, overwriting whatever it held",
                        })
                        .to_string(),
                    })
                    .map_err(ArchiveError::Store)?;
                let Some(Drive::Tape(d)) = t.drive.as_mut() else {
                    return Ok(Found::Other);
                };
                tape::write_label(d.as_mut(), &label)?;
                // the label must read back before the volume is used
                match tape::read_label(d.as_mut())? {
                    TapeLabel::Cairn(l) if l == label => {}
                    other => {
                        t.live.drive = "error".into();
                        t.live.message = format!(
                            "the label written on the tape did not read back ({other:?}): the \
                             tape is not used; eject it"
                        );
                        return Err(ArchiveError::Refused(t.live.message.clone()));
                    }
                }
                catalog::register_volume(
                    &self.store,
                    &label,
                    t.id,
                    VolumeState::Labelled,
                    None,
                    by,
                )?;
                tracing::info!(volume = %label.volume_id, name = %label.name,
                    target = %t.spec.name, %by,
                    "labelled a tape that could not be read at its beginning");
                t.live.drive = "ready".into();
                t.live.last_error = None;
                t.live.message = format!(
                    "volume {} labelled (the tape could not be read at its beginning; labelled \
                     on request by {by}) and in use{}",
                    label.name,
                    write_it_on(&label.name, "tape", chosen)
                );
                t.volume = Some(label);
                t.writable = true;
                found = Found::UnreadableLabelled;
            }
            Seen::Foreign => {
                t.live.drive = "foreign medium".into();
                t.live.message = "the medium in the drive holds data not written by cairn: it \
                                  is never overwritten; eject it"
                    .into();
            }
            Seen::Blank { protected: true } => {
                t.live.drive = "write protected".into();
                t.live.message = "the blank medium in the drive is write-protected".into();
            }
            Seen::Blank { protected: false } => {
                let conn = catalog::open_read(&self.data)?;
                let (name, chosen) = choose_name(&conn, printed, &prefix)?;
                let fresh =
                    |kind: &str, block: u32| fresh_label(&conn, &box_id, kind, block, &name);
                let (label, cap) = match t.drive.as_mut() {
                    Some(Drive::Tape(d)) => {
                        let l = fresh("tape", RECORD_SIZE as u32)?;
                        tape::write_label(d.as_mut(), &l)?;
                        (l, None)
                    }
                    Some(Drive::Optical(d)) => {
                        let l = fresh("optical", optical::OPTICAL_BLOCK)?;
                        optical::write_label(d.as_mut(), &data, &l)?;
                        (l, d.status().ok().map(|s| s.capacity))
                    }
                    None => return Ok(Found::Other),
                };
                catalog::register_volume(
                    &self.store,
                    &label,
                    t.id,
                    VolumeState::Labelled,
                    cap,
                    by,
                )?;
                tracing::info!(volume = %label.volume_id, name = %label.name,
                    target = %t.spec.name, "labelled a blank volume");
                t.live.drive = "ready".into();
                t.live.message = format!(
                    "volume {} labelled and in use{}",
                    label.name,
                    write_it_on(&label.name, &label.kind, chosen)
                );
                t.volume = Some(label);
                t.writable = true;
                found = Found::BlankLabelled;
            }
            Seen::Cairn(label, cap, protected) => {
                let conn = catalog::open_read(&self.data)?;
                let row = catalog::volume(&conn, &label.volume_id)?;
                match row {
                    None => {
                        t.live.drive = "uncatalogued volume".into();
                        t.live.message = format!(
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
                        catalog::register_volume(&self.store, &label, t.id, state, cap, by)?;
                        t.writable = state.writable() && !protected && label.box_id == box_id;
                        t.live.drive = if protected {
                            "write protected".into()
                        } else {
                            "ready".into()
                        };
                        t.live.message = format!(
                            "volume {} ({}){}",
                            v.name,
                            state.as_str(),
                            if t.writable { "" } else { ": not written to" }
                        );
                        t.volume = Some(label);
                    }
                }
            }
        }
        Ok(found)
    }

    fn step_once(&mut self, i: usize, force: bool) -> Outcome {
        if !self.targets[i].probed || self.targets[i].drive.is_none() {
            if let Err(e) = self.probe(i, &who_system(), false) {
                let t = &mut self.targets[i];
                t.live.drive = "error".into();
                t.live.last_error = Some(e.to_string());
                t.live.message = format!("reading the medium failed: {e}");
                tracing::warn!(target = %t.spec.name, error = %e, "probing the medium failed");
                t.drive = None;
            }
        }
        let conn = match catalog::open_read(&self.data) {
            Ok(c) => c,
            Err(e) => return Outcome::NotVerified(e.to_string()),
        };
        let q = match catalog::queue_status(&conn, &self.targets[i].spec.name) {
            Ok(q) => q,
            Err(e) => return Outcome::NotVerified(e.to_string()),
        };
        let t = &mut self.targets[i];
        if q.instances == 0 {
            t.live.medium_needed = false;
            t.live.activity = "idle".into();
            return Outcome::Idle;
        }
        if !t.writable {
            t.live.medium_needed = true;
            t.live.activity = format!("waiting for a writable medium ({} queued)", q.instances);
            return Outcome::MediumNeeded;
        }
        t.live.medium_needed = false;
        let due = force
            || q.bytes as u64 >= self.policy.bundle_max_bytes
            || q.instances as usize >= self.policy.bundle_max_members
            || q.oldest_queued_at
                .as_deref()
                .and_then(age_of)
                .is_some_and(|a| a >= self.policy.bundle_max_age);
        if !due {
            t.live.activity = format!("collecting ({} queued)", q.instances);
            return Outcome::Idle;
        }
        let batch = match catalog::next_batch(
            &conn,
            t.id,
            self.policy.bundle_max_bytes,
            self.policy.bundle_max_members,
            &t.exclude,
        ) {
            Ok(b) => b,
            Err(e) => return Outcome::NotVerified(e.to_string()),
        };
        if batch.is_empty() {
            t.live.activity = "idle (queued instances skipped: damaged hot copies)".into();
            return Outcome::Idle;
        }
        let head = cairn_audit::head(&conn)
            .map(|h| (h.seq, h.hash))
            .unwrap_or((0, cairn_audit::GENESIS.into()));
        drop(conn);
        match self.write_bundle(i, batch, head) {
            Ok(o) => o,
            Err(e) => {
                let t = &mut self.targets[i];
                t.live.last_error = Some(e.to_string());
                tracing::warn!(target = %t.spec.name, error = %e, "bundle not verified");
                Outcome::NotVerified(e.to_string())
            }
        }
    }

    fn write_bundle(
        &mut self,
        i: usize,
        batch: Vec<(i64, Member)>,
        head: (i64, String),
    ) -> Result<Outcome, ArchiveError> {
        let store = self.store.clone();
        let data = self.data.clone();
        let box_id = self.policy.box_id.clone();
        let t = &mut self.targets[i];
        let Some(label) = t.volume.clone() else {
            return Ok(Outcome::MediumNeeded);
        };
        // a hot file that is missing or has the wrong size is left out before anything is
        // written (it stays queued; fsck and the status say why)
        let (batch, bad): (Vec<_>, Vec<_>) = batch.into_iter().partition(|(_, m)| {
            std::fs::metadata(data.object_path(&m.sha256)).is_ok_and(|md| md.len() == m.size)
        });
        for (id, m) in &bad {
            tracing::error!(sha256 = %m.sha256, "hot copy missing or truncated: not archived");
            t.exclude.insert(*id);
            t.live.last_error = Some(format!(
                "the hot copy of {} is missing or truncated: run cairnctl fsck",
                m.sha256
            ));
        }
        if batch.is_empty() {
            return Ok(Outcome::NotVerified("hot copies missing".into()));
        }
        let members: Vec<Member> = batch.iter().map(|(_, m)| m.clone()).collect();
        let mtime = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let file_number: i64 = match t.drive.as_mut() {
            Some(Drive::Tape(d)) => tape::append_position(d.as_mut())? as i64,
            Some(Drive::Optical(d)) => d.status()?.sessions as i64 + 1,
            None => return Ok(Outcome::MediumNeeded),
        };
        let bundle_id = format!("{}.{}", label.volume_id, file_number);
        // what people read: the volume's short name and the file (`DEMO01.3`)
        let shown = format!("{}.{}", label.short_name(), file_number);
        let bhead = BundleHead {
            format: "cairn-bundle".into(),
            format_version: crate::bundle::FORMAT_VERSION,
            bundle_id: bundle_id.clone(),
            volume_id: label.volume_id.clone(),
            box_id,
            closed_at: cairn_store::now_rfc3339(),
            members: members.len() as u64,
            audit_seq: head.0,
            audit_hash: head.1.clone(),
        };
        let small = SmallFiles::new(&bhead, &members)?;
        let manifest_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&small.manifest));
        let row =
            catalog::begin_bundle(&store, &label.volume_id, file_number, &bundle_id, &members)?;
        t.live.activity = format!("writing bundle {shown} ({} objects)", members.len());
        tracing::info!(bundle = %bundle_id, members = members.len(), "writing a bundle");
        let started = Instant::now();
        let src = StoreObjects { data: data.clone() };
        // write
        let written: Result<u64, (ErrorKind, ArchiveError)> = match t.drive.as_mut() {
            Some(Drive::Tape(d)) => tape::write_bundle(d.as_mut(), &small, &members, &src, mtime)
                .map(|w| w.tar_bytes)
                .map_err(|e| (e.kind(), e)),
            Some(Drive::Optical(d)) => {
                let session_label = format!("CAIRN_{file_number}");
                match optical::write_bundle(
                    d.as_mut(),
                    &data,
                    &bundle_id,
                    &session_label,
                    &small,
                    &members,
                ) {
                    Ok((_, bytes)) => Ok(bytes),
                    Err(OpticalWriteError::Full(m)) => {
                        Err((ErrorKind::EarlyWarning, ArchiveError::Optical(m)))
                    }
                    Err(OpticalWriteError::Other(e)) => Err((e.kind(), e)),
                }
            }
            None => return Ok(Outcome::MediumNeeded),
        };
        let bytes = match written {
            Ok(b) => b,
            Err((kind, e)) => {
                let vid = label.volume_id.clone();
                let vname = label.short_name().to_string();
                match kind {
                    ErrorKind::EarlyWarning => {
                        catalog::end_bundle_unverified(
                            &store,
                            row,
                            "incomplete",
                            0,
                            "end of medium (early warning): written again on the next volume",
                        )?;
                        catalog::set_state(
                            &store,
                            &vid,
                            VolumeState::Full,
                            None,
                            "system",
                            "end of medium",
                        )?;
                        t.writable = false;
                        t.live.message = format!(
                            "volume {vname} is full: bundle {shown} will be written whole on \
                             the next volume; eject it and load another"
                        );
                    }
                    ErrorKind::HotCopy => {
                        catalog::end_bundle_unverified(&store, row, "failed", 0, &e.to_string())?;
                        if let ArchiveError::HotCopyDamaged { sha256 } = &e {
                            for (id, m) in &batch {
                                if &m.sha256 == sha256 {
                                    t.exclude.insert(*id);
                                }
                            }
                        }
                        tracing::error!(error = %e, "a hot copy could not be archived");
                    }
                    ErrorKind::MediumNeeded => {
                        catalog::end_bundle_unverified(&store, row, "failed", 0, &e.to_string())?;
                        t.writable = false;
                        t.probed = false;
                    }
                    _ => {
                        catalog::end_bundle_unverified(&store, row, "failed", 0, &e.to_string())?;
                        catalog::set_state(
                            &store,
                            &vid,
                            VolumeState::Error,
                            None,
                            "system",
                            &format!("write failed: {e}"),
                        )?;
                        t.writable = false;
                        t.live.message = format!(
                            "writing to volume {vname} failed ({e}); its instances stay queued. \
                             Eject it and load another"
                        );
                    }
                }
                t.live.last_error = Some(e.to_string());
                t.live.medium_needed = !t.writable;
                t.live.activity = if t.writable {
                    "idle".into()
                } else {
                    "waiting for a writable medium".into()
                };
                return Ok(Outcome::NotVerified(e.to_string()));
            }
        };
        // read back
        t.live.activity = format!("verifying bundle {shown}");
        let rb: Result<ReadBack, ArchiveError> = match t.drive.as_mut() {
            Some(Drive::Tape(d)) => tape::verify_last(d.as_mut()),
            Some(Drive::Optical(d)) => optical::verify_bundle(d.as_mut(), &data, &bundle_id),
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
            catalog::end_bundle_unverified(&store, row, "failed", bytes, &why)?;
            catalog::set_state(
                &store,
                &label.volume_id,
                VolumeState::Error,
                None,
                "system",
                &format!("verify failed: {why}"),
            )?;
            t.writable = false;
            t.live.last_error = Some(format!("bundle {shown}: {why}"));
            t.live.message = format!(
                "bundle {shown} did not verify ({why}); volume {} is set aside, its \
                 instances stay queued",
                label.short_name()
            );
            t.live.medium_needed = true;
            t.live.activity = "waiting for a writable medium".into();
            tracing::error!(bundle = %bundle_id, %why, "verify failed");
            return Ok(Outcome::NotVerified(why));
        }
        let n = catalog::bundle_verified(
            &store,
            row,
            t.id,
            &label.volume_id,
            &good,
            true,
            bytes,
            head,
            manifest_sha,
        )?;
        let secs = started.elapsed().as_secs_f64();
        t.live.busy_ms += started.elapsed().as_millis() as u64;
        t.live.bytes_verified += members.iter().map(|m| m.size).sum::<u64>();
        tracing::info!(
            bundle = %bundle_id,
            copies = n,
            bytes,
            mb_per_s = (bytes as f64 / 1e6 / secs.max(1e-9)) as u64,
            "bundle written and verified"
        );
        t.live.activity = "idle".into();
        t.live.last_error = (!t.exclude.is_empty()).then(|| {
            format!(
                "{} queued image(s) skipped: their hot copy is missing or damaged (run \
                 cairnctl fsck)",
                t.exclude.len()
            )
        });
        t.live.message = format!("bundle {shown} verified ({n} objects)");
        Ok(Outcome::Verified(n))
    }

    /// Write every queued instance of the chosen targets now. Ok when the queues are empty.
    pub fn flush(&mut self, target: Option<&str>) -> Result<String, ArchiveError> {
        let idx = self.index(target)?;
        let mut msgs = Vec::new();
        let mut ok = true;
        for i in idx {
            let mut guard = 0;
            loop {
                guard += 1;
                let o = self.step(i, true);
                let conn = catalog::open_read(&self.data)?;
                let q = catalog::queue_status(&conn, &self.targets[i].spec.name)?;
                if q.instances == 0 {
                    msgs.push(format!(
                        "{}: everything verified",
                        self.targets[i].spec.name
                    ));
                    break;
                }
                let stuck =
                    !matches!(o, Outcome::Verified(_)) || guard > 100_000 || self.stopping();
                if stuck {
                    ok = false;
                    msgs.push(format!(
                        "{}: {} instance(s) still queued: {}",
                        self.targets[i].spec.name,
                        q.instances,
                        match o {
                            Outcome::MediumNeeded => "no writable medium".to_string(),
                            Outcome::NotVerified(w) => w,
                            _ => self.targets[i].live.message.clone(),
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

    /// Flush, then unload the target's volume and record where it goes (audited).
    pub fn eject(
        &mut self,
        target: Option<&str>,
        location: Location,
        by: &str,
    ) -> Result<String, ArchiveError> {
        let i = match target {
            Some(_) => self.index(target)?[0],
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
        let name = self.targets[i].spec.name.clone();
        let flushed = if self.targets[i].writable {
            match self.flush(Some(&name)) {
                Ok(m) => m,
                Err(e) => format!("not everything could be written before the eject: {e}"),
            }
        } else {
            String::new()
        };
        if !self.targets[i].probed {
            let _ = self.probe(i, by, false);
        }
        let t = &mut self.targets[i];
        let vol = t.volume.take();
        match t.drive.as_mut() {
            Some(Drive::Tape(d)) => d.unload()?,
            Some(Drive::Optical(d)) => d.eject()?,
            None => return Err(ArchiveError::Refused(format!("{name}: no drive"))),
        }
        t.writable = false;
        t.probed = false;
        t.live.drive = "no medium".into();
        self.settle_need(i);
        let t = &mut self.targets[i];
        let Some(label) = vol else {
            t.live.message = "the medium was ejected".into();
            self.publish();
            return Ok("ejected (the medium was not a catalogued cairn volume)".into());
        };
        let conn = catalog::open_read(&self.data)?;
        let cur = catalog::volume(&conn, &label.volume_id)?;
        let new_state = match cur.map(|v| v.state) {
            Some(VolumeState::Full) => VolumeState::Full,
            Some(VolumeState::Error) => VolumeState::Error,
            _ => VolumeState::Ejected,
        };
        catalog::set_state(
            &self.store,
            &label.volume_id,
            new_state,
            Some(location),
            by,
            "ejected",
        )?;
        t.live.message = format!(
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

    /// Say at once whether target `i` needs a medium (images wait and it cannot write), as
    /// the next pass would: a load or eject is reflected before its answer, so no screen
    /// still asks for a medium the person has just loaded.
    fn settle_need(&mut self, i: usize) {
        let queued = catalog::open_read(&self.data)
            .and_then(|c| catalog::queue_status(&c, &self.targets[i].spec.name))
            .map(|q| q.instances);
        let Ok(queued) = queued else { return };
        let t = &mut self.targets[i];
        t.live.medium_needed = queued > 0 && !t.writable;
        t.live.activity = if t.live.medium_needed {
            format!("waiting for a writable medium ({queued} queued)")
        } else if queued > 0 {
            format!("collecting ({queued} queued)")
        } else {
            "idle".into()
        };
    }

    /// Take the medium now in the drive(s) into use. Refused (with what to do) when a tape
    /// cannot be read at its beginning.
    pub fn load(&mut self, target: Option<&str>, by: &str) -> Result<String, ArchiveError> {
        let mut msgs = Vec::new();
        let mut unreadable = false;
        for i in self.index(target)? {
            self.targets[i].drive = None;
            unreadable |= self.probe(i, by, false)? == Found::Unreadable;
            self.settle_need(i);
            let t = &self.targets[i];
            msgs.push(format!("{}: {}", t.spec.name, drive_says(&t.live)));
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
            .index(target)?
            .into_iter()
            .filter(|&i| self.targets[i].spec.kind == "tape")
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
            self.targets[i].drive = None;
            let found = match self.probe(i, by, true) {
                Ok(f) => f,
                Err(e) => {
                    let t = &mut self.targets[i];
                    t.live.last_error = Some(e.to_string());
                    if t.live.drive != "error" {
                        t.live.drive = "error".into();
                        t.live.message = format!("reading the medium failed: {e}");
                    }
                    t.drive = None;
                    self.publish();
                    return Err(e);
                }
            };
            self.settle_need(i);
            let t = &self.targets[i];
            match found {
                Found::UnreadableLabelled | Found::BlankLabelled => {
                    msgs.push(format!("{}: {}", t.spec.name, t.live.message))
                }
                _ => {
                    ok = false;
                    msgs.push(format!(
                        "{}: not labelled: only a tape whose beginning cannot be read is \
                         labelled this way, and this drive says: {}",
                        t.spec.name,
                        drive_says(&t.live)
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

    /// Carry out one request.
    pub fn handle(&mut self, req: Request) -> Answer {
        let r = match req {
            Request::Flush { target, by } => {
                tracing::info!(%by, "archive flush requested");
                self.flush(target.as_deref())
            }
            Request::Eject {
                target,
                location,
                by,
            } => {
                let loc = location.as_deref().unwrap_or("onsite_shelf");
                match Location::parse(loc) {
                    Some(l) => self.eject(target.as_deref(), l, &by),
                    None => Err(ArchiveError::Refused(format!(
                        "unknown location {loc:?}: use onsite_shelf, offsite_vault, returned or retired"
                    ))),
                }
            }
            Request::Load { target, by } => self.load(target.as_deref(), &by),
            Request::LabelUnreadable { target, by } => {
                self.label_unreadable(target.as_deref(), &by)
            }
            Request::SetLocation {
                volume,
                location,
                by,
            } => match Location::parse(&location) {
                Some(l) => catalog::set_location(&self.store, &volume, l, &by)
                    .map(|_| format!("volume {volume} recorded at {location}")),
                None => Err(ArchiveError::Refused(format!(
                    "unknown location {location:?}: use onsite_shelf, offsite_vault, returned or retired"
                ))),
            },
            Request::Scan { target, by } => self.scan(target.as_deref(), &by),
            Request::Restore { study, by } => self.restore(&study, &by),
        };
        self.publish();
        match r {
            Ok(message) => Answer { ok: true, message },
            Err(e) => Answer {
                ok: false,
                message: e.to_string(),
            },
        }
    }

    /// Answer every pending request file.
    pub fn handle_requests(&mut self) {
        for path in requests::pending(self.data.root()) {
            let a = match requests::read(&path) {
                Ok(req) => self.handle(req),
                Err(message) => Answer { ok: false, message },
            };
            requests::answer(&path, &a);
        }
    }

    /// Rebuild the catalog rows (volume, bundles, copies) of the medium in each chosen drive
    /// from the medium alone: its label and every bundle, read and hashed.
    pub fn scan(&mut self, target: Option<&str>, by: &str) -> Result<String, ArchiveError> {
        let mut msgs = Vec::new();
        let box_id = self.policy.box_id.clone();
        for i in self.index(target)? {
            if !self.ensure_drive(i) {
                msgs.push(format!("{}: drive unavailable", self.targets[i].spec.name));
                continue;
            }
            let data = self.data.clone();
            let t = &mut self.targets[i];
            t.live.activity = "scanning".into();
            let mut found: Vec<(i64, ReadBack, u64)> = Vec::new();
            let (label, cap) = match t.drive.as_mut() {
                Some(Drive::Tape(d)) => {
                    // the last tape file (the end of data is in it), when the drive knows
                    d.set_block_size(RECORD_SIZE as u32)?;
                    d.seek_end_of_data()?;
                    let last = d.status()?.file_number.map(i64::from);
                    let label = match tape::read_label(d.as_mut())? {
                        TapeLabel::Cairn(l) => l,
                        other => {
                            msgs.push(format!(
                                "{}: {}: nothing to scan",
                                t.spec.name,
                                match other {
                                    TapeLabel::NoMedium => "no medium in the drive",
                                    TapeLabel::Blank => "the medium is blank",
                                    TapeLabel::Unreadable(_) => {
                                        "the medium cannot be read at its beginning"
                                    }
                                    _ => "the medium is not a cairn volume",
                                }
                            ));
                            continue;
                        }
                    };
                    // read_label left the tape at file 1
                    let mut file = 1i64;
                    loop {
                        let rb = match tape::read_file(d.as_mut()) {
                            Ok(rb) => rb,
                            Err(e) => {
                                tracing::warn!(file, error = %e, "unreadable tape file");
                                break;
                            }
                        };
                        let empty = rb.manifest.is_empty() && rb.head.is_none();
                        if !empty {
                            let bytes = rb.tar_bytes;
                            found.push((file, rb, bytes));
                        }
                        // an empty file is the end of data, unless the drive said it is later
                        if last.map_or(empty, |l| file >= l) {
                            break;
                        }
                        file += 1;
                    }
                    (label, None)
                }
                Some(Drive::Optical(d)) => {
                    let label = match optical::read_label(d.as_mut(), &data)? {
                        DiscLabel::Cairn(l) => l,
                        other => {
                            msgs.push(format!(
                                "{}: {}: nothing to scan",
                                t.spec.name,
                                match other {
                                    DiscLabel::NoMedium => "no disc in the drive",
                                    DiscLabel::Blank => "the disc is blank",
                                    _ => "the disc is not a cairn volume",
                                }
                            ));
                            continue;
                        }
                    };
                    let cap = d.status().ok().map(|s| s.capacity);
                    for dir in optical::bundle_dirs(d.as_mut())? {
                        let file: i64 = dir
                            .rsplit_once('.')
                            .and_then(|(_, n)| n.parse().ok())
                            .unwrap_or(0);
                        let rb = optical::verify_bundle(d.as_mut(), &data, &dir)?;
                        let bytes = rb.tar_bytes;
                        found.push((file, rb, bytes));
                    }
                    (label, cap)
                }
                None => continue,
            };
            let n = found.len();
            let verified = found.iter().filter(|(_, rb, _)| rb.all_good()).count();
            catalog::record_scan(&self.store, &label, t.id, cap, &found, by)?;
            t.volume = Some(label.clone());
            t.probed = true;
            let conn = catalog::open_read(&self.data)?;
            let st = catalog::volume(&conn, &label.volume_id)?
                .map(|v| v.state)
                .unwrap_or(VolumeState::Error);
            t.writable = st.writable() && label.box_id == box_id;
            t.live.drive = "ready".into();
            t.live.activity = "idle".into();
            msgs.push(format!(
                "{}: volume {}: {} bundle(s), {} verified",
                t.spec.name,
                label.short_name(),
                n,
                verified
            ));
        }
        self.publish();
        Ok(msgs.join("; "))
    }

    /// Bring a study's current instances back from the volumes in the drives into the store,
    /// through the store's normal durable path (spool, hash, writer). Returns what was done.
    pub fn restore(&mut self, study: &str, by: &str) -> Result<String, ArchiveError> {
        let conn = catalog::open_read(&self.data)?;
        let copies = catalog::study_copies(&conn, study)?;
        if copies.is_empty() {
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
            let Some(i) = self
                .targets
                .iter()
                .position(|t| t.volume.as_ref().is_some_and(|l| l.volume_id == vol))
            else {
                if let Some(c) = copies.iter().find(|c| c.volume_id == vol) {
                    let loc =
                        Location::parse(&c.location).map_or(c.location.as_str(), |l| l.words());
                    missing_volumes.push(format!("{} ({loc})", c.volume_name));
                }
                continue;
            };
            for file in files {
                restored += self.restore_bundle(i, &vol, file, &mut wanted, by)?;
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

    fn restore_bundle(
        &mut self,
        i: usize,
        volume: &str,
        file: i64,
        wanted: &mut HashSet<String>,
        by: &str,
    ) -> Result<usize, ArchiveError> {
        let store = self.store.clone();
        let data = self.data.clone();
        let t = &mut self.targets[i];
        let shown = t.volume.as_ref().map_or(volume, |l| l.short_name());
        t.live.activity = format!("restoring from {shown}.{file}");
        let mut n = 0usize;
        match t.drive.as_mut() {
            Some(Drive::Tape(d)) => {
                d.set_block_size(RECORD_SIZE as u32)?;
                d.rewind()?;
                d.space_filemarks(file as i32)?;
                let mut r = tape::FileReader::new(d.as_mut());
                n += restore_from_tar(&store, &data, &mut r, wanted, by)?;
                let _ = r.drain();
                // the next append seeks the end of data again
            }
            Some(Drive::Optical(d)) => {
                let bundle_id = format!("{volume}.{file}");
                let dir = optical::scratch(&data).join(format!("restore-{bundle_id}"));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(optical::scratch(&data))
                    .map_err(|e| ArchiveError::Io(e.to_string()))?;
                d.extract(&format!("/{bundle_id}"), &dir)?;
                let r = restore_from_dir(&store, &dir, wanted, by);
                let _ = std::fs::remove_dir_all(&dir);
                n += r?;
            }
            None => {}
        }
        Ok(n)
    }

    /// The archive thread's loop: requests, bundles, status, until `stop` is set.
    /// Stop it with the flag from [`Archiver::stop_flag`]: the bundle in progress is finished
    /// and verified first. `on_medium_needed` hears whether a medium is needed after the first
    /// pass, then on every change.
    pub fn run(mut self, on_medium_needed: &dyn Fn(bool)) {
        let mut last_tick = Instant::now() - Duration::from_secs(10);
        let mut was_needed: Option<bool> = None;
        let mut passed = false;
        while !self.stopping() {
            self.handle_requests();
            if last_tick.elapsed() >= Duration::from_secs(1) {
                self.tick(false);
                last_tick = Instant::now();
                passed = true;
            }
            // after the first pass, every change is told at once (a load or eject too)
            let needed = self.medium_needed();
            if passed && was_needed != Some(needed) {
                on_medium_needed(needed);
                was_needed = Some(needed);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for t in &mut self.targets {
            t.live.activity = "cairnd stopped".into();
            t.live.drive = "unknown".into();
        }
        self.publish();
    }
}

/// When the box chose a volume's name (its drive cannot read a printed one), the words that
/// ask the person to write it on the cartridge or disc; nothing otherwise.
fn write_it_on(name: &str, kind: &str, chosen: bool) -> String {
    if !chosen {
        return String::new();
    }
    let what = if kind == "optical" {
        "the disc"
    } else {
        "the cartridge's label"
    };
    format!(": write {name} on {what}")
}

/// What the status and a refused load tell a person about a tape that cannot be read at its
/// beginning.
fn unreadable_advice(target: &str, several: bool) -> String {
    format!(
        "This tape cannot be read at its start. If it is new or erased, label it with \
         `cairnctl archive load --label-unreadable{}` (anything on it is overwritten); \
         otherwise eject it and load another. Nothing is written to it until then.",
        if several {
            format!(" --target {target}")
        } else {
            String::new()
        }
    )
}

fn age_of(rfc3339: &str) -> Option<Duration> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?;
    let d = time::OffsetDateTime::now_utc() - t;
    Some(Duration::from_secs_f64(d.as_seconds_f64().max(0.0)))
}

/// The instance records of a bundle, by SHA-256 (from its `index.csv`).
fn records_by_sha(members: &[Member]) -> std::collections::HashMap<String, Member> {
    members
        .iter()
        .map(|m| (m.sha256.clone(), m.clone()))
        .collect()
}

/// Hand one restored object to the store's writer, audited as a restore `by` the requester.
fn commit_restored(
    store: &Store,
    spool: cairn_store::SpoolWriter,
    m: &Member,
    by: &str,
) -> Result<bool, ArchiveError> {
    let finished = spool.finish()?;
    if finished.sha256 != m.sha256 {
        tracing::error!(sha256 = %m.sha256, "restored bytes do not match their SHA-256; not stored");
        return Ok(false);
    }
    store.commit_restored(
        StoreJob {
            spool: finished,
            record: m.record.clone(),
            source_ae: if m.source_ae.is_empty() {
                "RESTORE".into()
            } else {
                m.source_ae.clone()
            },
        },
        by,
    )?;
    Ok(true)
}

/// Restore the wanted objects from a bundle's tar stream (audited as a restore `by` the
/// requester).
pub fn restore_from_tar(
    store: &Store,
    data: &DataDir,
    r: &mut dyn std::io::Read,
    wanted: &mut HashSet<String>,
    by: &str,
) -> Result<usize, ArchiveError> {
    let _ = data;
    let mut tar = crate::pax::Reader::new(r);
    let mut members = std::collections::HashMap::new();
    let mut n = 0;
    let mut buf = vec![0u8; RECORD_SIZE];
    while let Some(e) = tar
        .next_entry()
        .map_err(|e| ArchiveError::Format(e.to_string()))?
    {
        if e.path == crate::bundle::INDEX_CSV {
            let mut text = Vec::new();
            loop {
                let k = tar
                    .read_data(&mut buf)
                    .map_err(|e| ArchiveError::Format(e.to_string()))?;
                if k == 0 {
                    break;
                }
                text.extend_from_slice(&buf[..k]);
            }
            members = records_by_sha(&crate::bundle::parse_index_csv(&String::from_utf8_lossy(
                &text,
            ))?);
            continue;
        }
        let Some(sha) = e
            .path
            .strip_prefix("objects/")
            .and_then(|s| s.strip_suffix(".dcm"))
        else {
            continue;
        };
        if !wanted.contains(sha) {
            continue;
        }
        let Some(m) = members.get(sha) else { continue };
        let mut spool = store.spool()?;
        loop {
            let k = tar
                .read_data(&mut buf)
                .map_err(|e| ArchiveError::Format(e.to_string()))?;
            if k == 0 {
                break;
            }
            spool.write(&buf[..k])?;
        }
        if commit_restored(store, spool, m, by)? {
            wanted.remove(sha);
            n += 1;
        }
    }
    Ok(n)
}

/// Restore the wanted objects from an extracted bundle directory (optical), audited as a
/// restore `by` the requester.
pub fn restore_from_dir(
    store: &Store,
    dir: &std::path::Path,
    wanted: &mut HashSet<String>,
    by: &str,
) -> Result<usize, ArchiveError> {
    let text = std::fs::read_to_string(dir.join(crate::bundle::INDEX_CSV))
        .map_err(|e| ArchiveError::Format(format!("index.csv: {e}")))?;
    let members = crate::bundle::parse_index_csv(&text)?;
    let mut n = 0;
    let mut buf = vec![0u8; RECORD_SIZE];
    for m in members {
        if !wanted.contains(&m.sha256) {
            continue;
        }
        let mut f = match std::fs::File::open(dir.join(m.path())) {
            Ok(f) => f,
            Err(_) => continue,
        };
        let mut spool = store.spool()?;
        loop {
            let k = std::io::Read::read(&mut f, &mut buf)
                .map_err(|e| ArchiveError::Io(e.to_string()))?;
            if k == 0 {
                break;
            }
            spool.write(&buf[..k])?;
        }
        if commit_restored(store, spool, &m, by)? {
            wanted.remove(&m.sha256);
            n += 1;
        }
    }
    Ok(n)
}

/// The drive's state, with its message in brackets when it has one.
fn drive_says(live: &LiveTarget) -> String {
    if live.message.is_empty() {
        live.drive.clone()
    } else {
        format!("{} ({})", live.drive, live.message)
    }
}
