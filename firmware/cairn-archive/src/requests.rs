//! Requests to the daemon's archive thread, as files: `cairnctl` and the panel drop
//! `<data>/requests/archive/<name>.json`; the archive thread carries it out and writes
//! `<name>.done` (an [`Answer`]) beside it, through `cairn-files`' [`Mailbox`]. The RAID monitor's `requests/*.json` are separate.

use cairn_files::mailbox::Mailbox;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Where archive requests go, relative to the data directory.
pub const REQUEST_DIR: &str = "requests/archive";
/// The archive thread's published live status, relative to the data directory.
pub const STATUS_FILE: &str = "archive.json";

/// A request to the archive thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Close the open bundle(s) now and answer when they are verified.
    Flush {
        /// Only this target (all when absent).
        target: Option<String>,
        /// Who asks.
        by: String,
    },
    /// Flush, verify, unload the volume of a target, and record where it goes.
    Eject {
        /// The target (the only one, or the first tape target, when absent).
        target: Option<String>,
        /// Where the volume goes (`onsite_shelf` when absent).
        location: Option<String>,
        /// Who asks.
        by: String,
    },
    /// Take the medium now in a target's drive into use (read its label; label it if blank).
    Load {
        /// The target (all when absent).
        target: Option<String>,
        /// Who asks.
        by: String,
    },
    /// Label the tape in a target's drive although its beginning cannot be read (a new or
    /// erased cartridge some drives cannot read): only when the first read at the beginning
    /// fails with an I/O or medium error; refused when anything was read. Audited.
    LabelUnreadable {
        /// The target (every tape target when absent).
        target: Option<String>,
        /// Who asks.
        by: String,
    },
    /// Record where a volume (not in a drive) is now.
    SetLocation {
        /// The volume id.
        volume: String,
        /// `onsite_shelf`, `offsite_vault`, `returned`, `retired`.
        location: String,
        /// Who asks.
        by: String,
    },
    /// Rebuild the catalog (volumes, bundles, copies) from the media in the drives.
    Scan {
        /// The target (all when absent).
        target: Option<String>,
        /// Who asks.
        by: String,
    },
    /// Erase a recyclable volume (every copy on it removed) now in a drive, keeping its label,
    /// and record it blank in the catalog (its bundles and copies forgotten). Audited.
    Recycle {
        /// The volume's short name (or its volume id).
        volume: String,
        /// Who asks.
        by: String,
    },
    /// Bring a study back from a volume into the store.
    Restore {
        /// Study Instance UID.
        study: String,
        /// Who asks.
        by: String,
    },
}

/// The archive thread's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Whether it was done.
    pub ok: bool,
    /// What happened, for a person.
    pub message: String,
}

/// Why a request could not be handed over (the mailbox's own error, worded for people).
pub use cairn_files::mailbox::CallError as RequestError;

/// The archive thread's mailbox in the data directory `data`.
fn mailbox(data: &Path) -> Mailbox {
    Mailbox::new(data.join(REQUEST_DIR))
}

/// Drop a request for the daemon and wait (at most `timeout`) for its answer.
pub fn send(data: &Path, req: &Request, timeout: Duration) -> Result<Answer, RequestError> {
    mailbox(data).call(req, timeout)
}

/// Answer every pending request file, oldest first, with what `handle` makes of it (the
/// daemon's archive thread).
pub fn serve(data: &Path, handle: impl FnMut(Request) -> Answer) {
    mailbox(data).serve_or_refuse(handle, |message| Answer { ok: false, message });
}
