//! One cold target as the engine keeps it (its drive, the volume in it, its live status), the
//! policy and context every job on a target needs, and what a bundle attempt did.

use super::drive::{Drive, Opener};
use super::status::{Activity, DriveState, Status};
use crate::catalog;
use crate::label::Label;
use crate::{ArchiveError, MediumKind};
use cairn_store::{DataDir, Store};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One cold target as the engine needs it.
pub struct TargetSpec {
    /// Its name (unique, as in the config).
    pub name: String,
    /// `tape` or `optical` ([`MediumKind::as_str`]).
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

/// What every job on a target needs from the archiver around it.
pub(super) struct Ctx<'a> {
    /// The store (index changes, restores).
    pub store: &'a Store,
    /// The data directory.
    pub data: &'a DataDir,
    /// The bundle policy.
    pub policy: &'a Policy,
    /// Set when the daemon stops.
    pub stop: &'a AtomicBool,
    /// More than one target is configured (advice then names the target).
    pub several: bool,
}

impl Ctx<'_> {
    /// The daemon is stopping: start no new bundle.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// One cold target: its drive, the volume in it and what the thread publishes about it.
pub(super) struct Target {
    /// Its name.
    pub name: String,
    /// Its kind of medium.
    pub kind: MediumKind,
    /// Opens its drive.
    open: Opener,
    /// Its catalog row id.
    pub id: i64,
    /// The open drive, if any.
    pub drive: Option<Drive>,
    /// The label of the volume in the drive, once read and catalogued.
    pub volume: Option<Label>,
    /// Whether bundles may be written to it now.
    pub writable: bool,
    /// What is published about it.
    pub status: Status,
    /// Instances whose hot copy failed to read or hash: skipped until restart.
    pub exclude: HashSet<i64>,
    /// The drive was probed since the last request or change.
    pub probed: bool,
}

impl Target {
    /// A target of `kind` (parsed from `spec.kind`) with catalog id `id`, whose drive is not
    /// opened yet.
    pub fn new(spec: TargetSpec, kind: MediumKind, id: i64) -> Self {
        Target {
            status: Status::starting(),
            name: spec.name,
            kind,
            open: spec.open,
            id,
            drive: None,
            volume: None,
            writable: false,
            exclude: HashSet::new(),
            probed: false,
        }
    }

    /// Open the drive unless it is open. False (with the status saying why) when it cannot be.
    pub fn ensure_drive(&mut self) -> bool {
        if self.drive.is_some() {
            return true;
        }
        match (self.open)() {
            Ok(d) => {
                self.drive = Some(d);
                self.probed = false;
                true
            }
            Err(e) => {
                self.status.drive = DriveState::Unavailable;
                self.status.last_error = Some(e.to_string());
                self.status.message =
                    format!("the {} drive cannot be opened: {e}", self.kind.as_str());
                false
            }
        }
    }

    /// How many instances wait for this target.
    pub fn queued(&self, data: &DataDir) -> Result<i64, ArchiveError> {
        let conn = catalog::open_read(data)?;
        Ok(catalog::queue_status(&conn, &self.name)?.instances)
    }

    /// Say at once whether this target needs a medium (images wait and it cannot write), as
    /// the next pass would: a load or eject is reflected before its answer, so no screen
    /// still asks for a medium the person has just loaded.
    pub fn settle_need(&mut self, data: &DataDir) {
        let Ok(queued) = self.queued(data) else {
            return;
        };
        self.status.medium_needed = queued > 0 && !self.writable;
        self.status.activity = if self.status.medium_needed {
            Activity::WaitingForMedium(Some(queued))
        } else if queued > 0 {
            Activity::Collecting(queued)
        } else {
            Activity::Idle
        };
    }
}
