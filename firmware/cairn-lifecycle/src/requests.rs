//! Requests to the daemon's lifecycle thread, as files: `cairnctl` and the panel drop
//! `<data>/requests/lifecycle/<name>.json`; the lifecycle thread carries it out and writes
//! `<name>.done` (an [`Answer`]) beside it, through `cairn-files`' [`Mailbox`].

use cairn_files::mailbox::Mailbox;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Where lifecycle requests go, relative to the data directory.
pub const REQUEST_DIR: &str = "requests/lifecycle";

/// A change asked of the lifecycle thread. Every one is audited with who asks and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Record a patient's date of death, or clear it.
    SetDeath {
        /// Patient ID.
        patient_id: String,
        /// Issuer of the Patient ID, when the ID alone is ambiguous.
        issuer: Option<String>,
        /// The date (`YYYYMMDD`); `None` clears the recorded one.
        date: Option<String>,
        /// Why.
        reason: String,
        /// Who asks (`user:alice`).
        by: String,
    },
    /// Place a legal hold on a patient (`patient_id`, with `issuer` when needed) or on a study
    /// (`study_uid`): exactly one of the two.
    AddHold {
        /// Patient ID.
        patient_id: Option<String>,
        /// Issuer of the Patient ID.
        issuer: Option<String>,
        /// Study Instance UID.
        study_uid: Option<String>,
        /// Why (the legal case).
        reason: String,
        /// Who asks.
        by: String,
    },
    /// Release a legal hold by its number.
    ReleaseHold {
        /// The hold's number.
        id: i64,
        /// Why.
        reason: String,
        /// Who asks.
        by: String,
    },
    /// Reject a study (`study_uid`) or one series (`series_uid`) in storage: exactly one.
    Reject {
        /// Study Instance UID.
        study_uid: Option<String>,
        /// Series Instance UID.
        series_uid: Option<String>,
        /// Why (kept on the tombstone).
        reason: String,
        /// Who asks.
        by: String,
    },
    /// Approve the destruction of one patient due (`patient_id`, with `issuer` when needed) or
    /// of every patient due (`all`): exactly one.
    ApproveDestruction {
        /// Patient ID.
        patient_id: Option<String>,
        /// Issuer of the Patient ID.
        issuer: Option<String>,
        /// Every patient due now.
        all: bool,
        /// Why (kept on the destruction record).
        reason: String,
        /// Who approves.
        by: String,
    },
}

/// The lifecycle thread's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Whether it was done.
    pub ok: bool,
    /// What happened, or why it was refused, for a person.
    pub message: String,
    /// The number of the hold placed, for [`Request::AddHold`]; of the destruction record, for
    /// [`Request::ApproveDestruction`] of one patient.
    pub id: Option<i64>,
    /// Not done because the box failed (its index or disk), not because the request was
    /// refused: `cairnctl` exits 1 instead of 2.
    #[serde(default)]
    pub failed: bool,
}

impl Answer {
    /// A refusal (bad input or a rule that forbids it): nothing was changed.
    pub fn refused(message: impl Into<String>) -> Answer {
        Answer {
            ok: false,
            message: message.into(),
            id: None,
            failed: false,
        }
    }

    /// A failure of the box: nothing was changed.
    pub fn failed(message: impl Into<String>) -> Answer {
        Answer {
            failed: true,
            ..Answer::refused(message)
        }
    }
}

/// Why a request could not be handed over (the mailbox's own error, worded for people).
pub use cairn_files::mailbox::CallError as RequestError;

/// The lifecycle thread's mailbox in the data directory `data_root`.
fn mailbox(data_root: &Path) -> Mailbox {
    Mailbox::new(data_root.join(REQUEST_DIR))
}

/// Drop a request for the daemon and wait (at most `timeout`) for its answer.
pub fn send(data_root: &Path, req: &Request, timeout: Duration) -> Result<Answer, RequestError> {
    mailbox(data_root).call(req, timeout)
}

/// Answer every pending request file, oldest first, with what `handle` makes of it (the
/// daemon's lifecycle thread). A file that is not a request is answered with why.
pub fn serve(data_root: &Path, handle: impl FnMut(Request) -> Answer) {
    mailbox(data_root).serve_or_refuse(handle, Answer::refused);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_kind() {
        let r = Request::ReleaseHold {
            id: 3,
            reason: "case closed".into(),
            by: "user:alice".into(),
        };
        let text = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"kind":"release-hold","id":3,"reason":"case closed","by":"user:alice"}"#
        );
        let back: Result<Request, _> = serde_json::from_str(&text);
        assert_eq!(back.ok(), Some(r));
        let unknown: Result<Request, _> =
            serde_json::from_str(r#"{"kind":"release-hold","id":3,"reason":"x","by":"y","z":1}"#);
        assert!(unknown.is_err(), "unknown fields are refused");
    }
}
