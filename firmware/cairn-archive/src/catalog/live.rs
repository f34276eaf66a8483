//! The live status file the archive thread publishes (`archive.json`), and requests handed to the daemon's archive thread.

use crate::requests::{self, Answer, Request, STATUS_FILE};
use crate::ArchiveError;
use cairn_store::DataDir;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What the archive thread publishes about one target (`archive.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveTarget {
    /// Target name.
    pub name: String,
    /// The drive: `ready`, `no medium`, `write protected`, `foreign medium`, `unreadable
    /// medium` (a tape whose beginning cannot be read), `error`.
    pub drive: String,
    /// What the thread does now (`idle`, `writing B..`, `verifying B..`...).
    pub activity: String,
    /// No writable medium while instances wait.
    pub medium_needed: bool,
    /// A sentence for people.
    pub message: String,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// When this was written.
    pub updated_at: String,
    /// Since this thread started: bytes of objects written and verified...
    #[serde(default)]
    pub bytes_verified: u64,
    /// ...milliseconds spent writing and verifying bundles (the rest it waited for input)...
    #[serde(default)]
    pub busy_ms: u64,
    /// ...and milliseconds since it started.
    #[serde(default)]
    pub uptime_ms: u64,
}

/// The published live status file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStatus {
    /// One per target.
    pub targets: Vec<LiveTarget>,
}

/// Read the published live status (empty when there is none).
pub fn read_live(data: &DataDir) -> LiveStatus {
    std::fs::read(data.root().join(STATUS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Hand a request to the daemon's archive thread and wait for its answer. Flush and eject
/// answer only after verification, so give them minutes.
pub fn request(data: &DataDir, req: &Request, timeout: Duration) -> Result<Answer, ArchiveError> {
    requests::send(data.root(), req, timeout).map_err(|e| ArchiveError::Refused(e.to_string()))
}
