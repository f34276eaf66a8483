//! What the engine publishes about a target: one [`Status`] per target, with the drive's state
//! and the thread's activity as enums, rendered into the live status file's words in one
//! place ([`Status::render`]); and the sentences shared by several jobs.

use crate::catalog::LiveTarget;
use crate::MediumKind;
use std::fmt;

/// What a target's drive holds, as people read it in the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DriveState {
    /// Not looked at yet (or cairnd stopped).
    Unknown,
    /// The drive cannot be opened.
    Unavailable,
    /// The drive is empty.
    NoMedium,
    /// A catalogued or newly labelled volume.
    Ready,
    /// The medium is write-protected.
    WriteProtected,
    /// The medium holds data not written by cairn.
    Foreign,
    /// A tape whose beginning cannot be read.
    Unreadable,
    /// A cairn volume the catalog does not know.
    Uncatalogued,
    /// Reading or labelling the medium failed.
    Error,
}

impl DriveState {
    /// The words in `archive.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            DriveState::Unknown => "unknown",
            DriveState::Unavailable => "unavailable",
            DriveState::NoMedium => "no medium",
            DriveState::Ready => "ready",
            DriveState::WriteProtected => "write protected",
            DriveState::Foreign => "foreign medium",
            DriveState::Unreadable => "unreadable medium",
            DriveState::Uncatalogued => "uncatalogued volume",
            DriveState::Error => "error",
        }
    }
}

/// What the archive thread does for a target now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Activity {
    /// The thread has just started.
    Starting,
    /// Nothing queued (or nothing due).
    Idle,
    /// Only instances with damaged hot copies are queued.
    IdleSkipping,
    /// Instances wait for a bundle to become due (how many, when known).
    Collecting(i64),
    /// Instances wait and no writable medium is in the drive (how many, when known).
    WaitingForMedium(Option<i64>),
    /// Writing a bundle (its shown name) of this many objects.
    Writing(String, usize),
    /// Reading a bundle back (its shown name).
    Verifying(String),
    /// Reading a volume into the catalog.
    Scanning,
    /// Restoring from a bundle (its shown name).
    Restoring(String),
    /// The daemon stopped.
    Stopped,
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activity::Starting => f.write_str("starting"),
            Activity::Idle => f.write_str("idle"),
            Activity::IdleSkipping => {
                f.write_str("idle (queued instances skipped: damaged hot copies)")
            }
            Activity::Collecting(n) => write!(f, "collecting ({n} queued)"),
            Activity::WaitingForMedium(None) => f.write_str("waiting for a writable medium"),
            Activity::WaitingForMedium(Some(n)) => {
                write!(f, "waiting for a writable medium ({n} queued)")
            }
            Activity::Writing(b, n) => write!(f, "writing bundle {b} ({n} objects)"),
            Activity::Verifying(b) => write!(f, "verifying bundle {b}"),
            Activity::Scanning => f.write_str("scanning"),
            Activity::Restoring(b) => write!(f, "restoring from {b}"),
            Activity::Stopped => f.write_str("cairnd stopped"),
        }
    }
}

/// Everything published about one target.
#[derive(Debug, Clone)]
pub(super) struct Status {
    /// The drive's state.
    pub drive: DriveState,
    /// What the thread does.
    pub activity: Activity,
    /// No writable medium while instances wait.
    pub medium_needed: bool,
    /// A sentence for people.
    pub message: String,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Bytes of objects written and verified since the thread started.
    pub bytes_verified: u64,
    /// Milliseconds spent writing and verifying since the thread started.
    pub busy_ms: u64,
}

impl Status {
    /// The status of a target whose drive was not looked at yet.
    pub fn starting() -> Self {
        Status {
            drive: DriveState::Unknown,
            activity: Activity::Starting,
            medium_needed: false,
            message: String::new(),
            last_error: None,
            bytes_verified: 0,
            busy_ms: 0,
        }
    }

    /// The live status file's entry for target `name`.
    pub fn render(&self, name: &str, updated_at: &str, uptime_ms: u64) -> LiveTarget {
        LiveTarget {
            name: name.to_string(),
            drive: self.drive.as_str().to_string(),
            activity: self.activity.to_string(),
            medium_needed: self.medium_needed,
            message: self.message.clone(),
            last_error: self.last_error.clone(),
            updated_at: updated_at.to_string(),
            bytes_verified: self.bytes_verified,
            busy_ms: self.busy_ms,
            uptime_ms,
        }
    }

    /// The drive's state, with its message in brackets when it has one.
    pub fn drive_says(&self) -> String {
        if self.message.is_empty() {
            self.drive.as_str().to_string()
        } else {
            format!("{} ({})", self.drive.as_str(), self.message)
        }
    }
}

/// When the box chose a volume's name (its drive cannot read a printed one), the words that
/// ask the person to write it on the cartridge or disc; nothing otherwise.
pub(super) fn write_it_on(name: &str, kind: MediumKind, chosen: bool) -> String {
    if !chosen {
        return String::new();
    }
    format!(": write {name} on {}", kind.where_to_write_name())
}

/// What the status and a refused load tell a person about a tape that cannot be read at its
/// beginning.
pub(super) fn unreadable_advice(target: &str, several: bool) -> String {
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
