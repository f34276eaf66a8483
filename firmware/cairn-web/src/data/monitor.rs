//! What the disk monitor publishes (`raid.json`, `alarm.json`) and requests to it through
//! `requests/`, as `cairnctl` reads and sends them.

use crate::WebError;
use cairn_alarm::{AlarmFile, AlarmState};
use cairn_raid::requests::{Answer, Request, ALARM_FILE, STATUS_FILE};
use cairn_raid::{ArrayStatus, Blocked};
use cairn_store::DataDir;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One bay as `raid.json` lists it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bay {
    /// Bay number.
    pub bay: u32,
    /// Kernel name of the disk in it, if one is.
    #[serde(default)]
    pub device: Option<String>,
    /// Its size.
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// What its start holds (blank, md-superblock, data).
    #[serde(default)]
    pub contents: Option<serde_json::Value>,
    /// The array it belongs to.
    #[serde(default)]
    pub member_of: Option<String>,
    /// Its fault LED is lit.
    #[serde(default)]
    pub fault: bool,
}

/// `raid.json`, the parts the panel shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Raid {
    /// When the monitor wrote it (ms since the epoch).
    #[serde(default)]
    pub updated_at_ms: u64,
    /// Board name.
    #[serde(default)]
    pub board: String,
    /// Arrays.
    #[serde(default)]
    pub arrays: Vec<ArrayStatus>,
    /// Bays.
    #[serde(default)]
    pub bays: Vec<Bay>,
    /// Disks waiting for a person.
    #[serde(default)]
    pub blocked: Vec<Blocked>,
}

/// Read `raid.json` (none when no monitor has run in this data directory).
pub fn raid(data: &DataDir) -> Result<Option<Raid>, WebError> {
    let path = data.root().join(STATUS_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| WebError::Internal(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WebError::Internal(format!("{}: {e}", path.display()))),
    }
}

/// Read the latched alarm.
pub fn alarm(data: &DataDir) -> Result<AlarmState, WebError> {
    AlarmFile::new(data.root().join(ALARM_FILE))
        .load()
        .map_err(|e| WebError::Internal(e.to_string()))
}

/// Hand a request to the running monitor and wait (at most 5 s) for its answer, through
/// [`cairn_raid::requests::send`] as `cairnctl` does.
pub fn monitor_request(data_root: &Path, req: &Request) -> Result<Answer, WebError> {
    use cairn_raid::requests::{send, SendErrorKind, ANSWER_WAIT};
    send(data_root, req, ANSWER_WAIT).map_err(|e| match e.kind() {
        SendErrorKind::NoMonitor => {
            WebError::Unavailable("the disk monitor is not running on this box".into())
        }
        SendErrorKind::NoAnswer => WebError::Unavailable(format!(
            "the disk monitor did not answer within {} s",
            ANSWER_WAIT.as_secs()
        )),
        SendErrorKind::Io => WebError::Internal(e.to_string()),
    })
}
