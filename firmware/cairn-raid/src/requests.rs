//! The files `cairnd`'s RAID monitor shares with `cairnctl` and the panel in the data
//! directory: the published status (`raid.json`) and requests (`requests/*.json`, answered by a
//! `*.done` file beside them, through `cairn-files`' [`Mailbox`]). [`send`] is the one client side
//! of that exchange, used by `cairnctl` and the web panel; [`serve`] the daemon's side.

use cairn_files::mailbox::{Mailbox, ReadError, SendError as MailboxError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// The status the monitor publishes, relative to the data directory.
pub const STATUS_FILE: &str = "raid.json";
/// The alarm's default state file, relative to the data directory.
pub const ALARM_FILE: &str = "alarm.json";
/// Where requests are dropped, relative to the data directory.
pub const REQUEST_DIR: &str = "requests";

/// A request to the running monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Silence one alarm event, or all sounding ones.
    AlarmSilence {
        /// The event id; all when absent.
        id: Option<u64>,
        /// Who (`user:NAME`, `button`, `panel:NAME`).
        by: String,
    },
    /// Switch a bay's locate LED.
    DiskLocate {
        /// Bay.
        bay: u32,
        /// On or off.
        on: bool,
    },
    /// Take the member in a bay out of its array (faulty, then remove).
    DiskRemove {
        /// Bay.
        bay: u32,
        /// Who asks.
        by: String,
    },
    /// Allow wiping the non-blank disk in a bay and adding it.
    DiskConfirm {
        /// Bay.
        bay: u32,
        /// Who confirms.
        by: String,
    },
    /// Start a scrub now.
    Scrub {
        /// Array.
        array: String,
    },
    /// Demo only: the disk in a bay dies.
    DemoFailDisk {
        /// Bay.
        bay: u32,
    },
    /// Demo only: pull the disk out of a bay.
    DemoPullDisk {
        /// Bay.
        bay: u32,
    },
    /// Demo only: slide a disk into a bay (blank, used or small).
    DemoInsertDisk {
        /// Bay.
        bay: u32,
        /// blank, used, small.
        kind: String,
    },
}

/// The monitor's answer, written as `<request>.done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Whether it was done.
    pub ok: bool,
    /// What happened, for a person.
    pub message: String,
}

/// How long [`send`] waits for the monitor's answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// A request could not be handed over or was not answered.
#[derive(Debug, Error)]
pub enum SendError {
    /// No `requests/` directory: no RAID monitor has run in this data directory.
    #[error("no RAID monitor has run in {0}")]
    NoMonitor(PathBuf),
    /// Writing the request failed.
    #[error("cannot write the request in {path}: {message}")]
    Io {
        /// The request directory.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// No answer in time (cairnd not running, or busy); the request was withdrawn.
    #[error("cairnd did not answer within {} s", .0.as_secs())]
    NoAnswer(Duration),
}

/// What went wrong, for callers that word it their own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    /// No monitor has run here.
    NoMonitor,
    /// The request could not be written.
    Io,
    /// The monitor did not answer.
    NoAnswer,
}

impl SendError {
    /// The class of the error.
    pub fn kind(&self) -> SendErrorKind {
        match self {
            SendError::NoMonitor(_) => SendErrorKind::NoMonitor,
            SendError::Io { .. } => SendErrorKind::Io,
            SendError::NoAnswer(_) => SendErrorKind::NoAnswer,
        }
    }
}

/// Drop `req` into `<data_dir>/requests/` atomically (temp file, rename) without waiting;
/// returns the path of the `.done` answer the monitor will write.
pub fn submit(data_dir: &Path, req: &Request) -> Result<PathBuf, SendError> {
    let dir = data_dir.join(REQUEST_DIR);
    if !dir.is_dir() {
        return Err(SendError::NoMonitor(data_dir.to_path_buf()));
    }
    Mailbox::new(&dir)
        .submit(req)
        .map_err(|e| io_error(&dir, e))
}

/// Hand `req` to the RAID monitor running on `data_dir` and wait up to `wait` for its answer.
/// Blocking (polls every 50 ms): call it from a blocking task in async code. Without an answer
/// in time the request is withdrawn, so a monitor started later does not act on it.
pub fn send(data_dir: &Path, req: &Request, wait: Duration) -> Result<Answer, SendError> {
    let done = submit(data_dir, req)?;
    Mailbox::wait(&done, wait).map_err(|e| io_error(&data_dir.join(REQUEST_DIR), e))
}

/// Answer every pending request in `<data_dir>/requests/`, oldest first, with what `handle`
/// makes of it (the daemon's monitor thread).
pub fn serve(data_dir: &Path, mut handle: impl FnMut(Request) -> Answer) {
    Mailbox::new(data_dir.join(REQUEST_DIR)).serve(|req: Result<Request, ReadError>| match req {
        Ok(req) => handle(req),
        Err(ReadError::Io(e)) => Answer {
            ok: false,
            message: format!("bad request: {e}"),
        },
        Err(e @ ReadError::Bad(_)) => Answer {
            ok: false,
            message: e.to_string(),
        },
    });
}

fn io_error(dir: &Path, e: MailboxError) -> SendError {
    match e {
        MailboxError::Io(e) => SendError::Io {
            path: dir.to_path_buf(),
            message: e.to_string(),
        },
        MailboxError::NoAnswer(wait) => SendError::NoAnswer(wait),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_without_a_monitor_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = send(
            d.path(),
            &Request::Scrub {
                array: "md0".into(),
            },
            ANSWER_WAIT,
        )
        .unwrap_err();
        assert_eq!(e.kind(), SendErrorKind::NoMonitor);
    }

    #[test]
    fn send_reads_the_answer_and_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join(REQUEST_DIR);
        std::fs::create_dir(&dir).unwrap();
        let answerer = {
            let dir = dir.clone();
            std::thread::spawn(move || loop {
                let req = std::fs::read_dir(&dir)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|x| x == "json"));
                if let Some(p) = req {
                    let r: Request = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                    std::fs::remove_file(&p).unwrap();
                    let a = Answer {
                        ok: true,
                        message: format!("{r:?}"),
                    };
                    std::fs::write(p.with_extension("done"), serde_json::to_vec(&a).unwrap())
                        .unwrap();
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            })
        };
        let a = send(
            d.path(),
            &Request::Scrub {
                array: "md0".into(),
            },
            ANSWER_WAIT,
        )
        .unwrap();
        answerer.join().unwrap();
        assert!(a.ok && a.message.contains("md0"), "{a:?}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "files left behind"
        );
    }

    #[test]
    fn an_unanswered_request_is_withdrawn() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join(REQUEST_DIR);
        std::fs::create_dir(&dir).unwrap();
        let e = send(
            d.path(),
            &Request::Scrub {
                array: "md0".into(),
            },
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert_eq!(e.kind(), SendErrorKind::NoAnswer);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "request left behind"
        );
    }
}
