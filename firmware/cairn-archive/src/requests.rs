//! Requests to the daemon's archive thread, as files: `cairnctl` and the panel drop
//! `<data>/requests/archive/<name>.json`; the archive thread carries it out and writes
//! `<name>.done` (an [`Answer`]) beside it. The RAID monitor's `requests/*.json` are separate.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// Why a request could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Writing the request file failed.
    #[error("cannot write the request: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("cairnd did not answer within {0:?} (is it running on this data directory?)")]
    Timeout(Duration),
}

/// Drop a request for the daemon and wait (at most `timeout`) for its answer.
pub fn send(data: &Path, req: &Request, timeout: Duration) -> Result<Answer, RequestError> {
    let dir = data.join(REQUEST_DIR);
    std::fs::create_dir_all(&dir)?;
    let name = format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
        std::process::id()
    );
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(format!("{name}.json"));
    let body = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, &path)?;
    let done = dir.join(format!("{name}.done"));
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(bytes) = std::fs::read(&done) {
            if let Ok(a) = serde_json::from_slice::<Answer>(&bytes) {
                let _ = std::fs::remove_file(&done);
                return Ok(a);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // withdraw it if the daemon has not taken it yet
    let _ = std::fs::remove_file(&path);
    Err(RequestError::Timeout(timeout))
}

/// The pending request files, oldest first (for the daemon).
pub fn pending(data: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(data.join(REQUEST_DIR)) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

/// Read and parse one request file.
pub fn read(path: &Path) -> Result<Request, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("bad request: {e}"))
}

/// Answer a request file (the daemon): writes `<name>.done` and removes the request.
pub fn answer(path: &Path, a: &Answer) {
    let _ = std::fs::remove_file(path);
    if let Ok(text) = serde_json::to_vec(a) {
        let done = path.with_extension("done");
        let tmp = path.with_extension("done.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &done);
        }
    }
}
