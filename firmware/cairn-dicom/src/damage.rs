//! Stored objects found missing or damaged while the node reads them (C-GET, C-MOVE), and the
//! channel that reports them to whoever owns the alarm (`cairnd` wires it to the monitor).
//!
//! The node never waits on the report: a closed channel (no alarm on this box) only loses the
//! alarm, not the audit row or the log line the node writes itself.

use std::sync::mpsc::Sender;

/// What was wrong with a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Its file is not in `objects/`.
    Missing,
    /// Its file could not be read (I/O error, not a Part-10 file).
    Unreadable,
    /// Its bytes no longer hash to the SHA-256 that names it in the index.
    HashMismatch,
}

impl Damage {
    /// The word used in the audit row and the log (`missing`, `unreadable`, `hash-mismatch`).
    pub fn as_str(self) -> &'static str {
        match self {
            Damage::Missing => "missing",
            Damage::Unreadable => "unreadable",
            Damage::HashMismatch => "hash-mismatch",
        }
    }
}

/// One damaged object, named by UIDs and hash only (never patient data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedObject {
    /// Its study (the alarm names it).
    pub study_uid: String,
    /// Its SOP Instance UID.
    pub sop_instance_uid: String,
    /// The SHA-256 the index holds for it (its file name).
    pub sha256: String,
    /// What was wrong.
    pub damage: Damage,
}

/// Where the node sends [`DamagedObject`]s.
pub type DamageSink = Sender<DamagedObject>;
