//! What can go wrong, told apart between bad input (the caller's to fix) and failures.

use cairn_store::StoreError;

/// A lifecycle operation that was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No patient has this ID (under this issuer, when one was given).
    #[error("no patient with ID {patient_id:?}{}", issuer_words(issuer.as_deref()))]
    UnknownPatient {
        /// The Patient ID asked for.
        patient_id: String,
        /// The issuer asked for, if any.
        issuer: Option<String>,
    },
    /// The same Patient ID exists under several issuers and none was given.
    #[error(
        "patient ID {patient_id:?} exists under several issuers ({}): give the issuer",
        issuers.iter().map(|i| issuer_name(i)).collect::<Vec<_>>().join(", ")
    )]
    AmbiguousPatient {
        /// The Patient ID asked for.
        patient_id: String,
        /// The issuers it exists under (`""` for none).
        issuers: Vec<String>,
    },
    /// No study has this Study Instance UID.
    #[error("no study with UID {study_uid:?}")]
    UnknownStudy {
        /// The UID asked for.
        study_uid: String,
    },
    /// A date that cannot be used (the message says why).
    #[error("{0}")]
    BadDate(String),
    /// A change was asked for without a reason (every change is audited with one).
    #[error("a reason is required (it is kept in the audit log)")]
    EmptyReason,
    /// The hold was released before.
    #[error("hold {id} was already released on {at}")]
    AlreadyReleased {
        /// The hold's number.
        id: i64,
        /// When it was released.
        at: String,
    },
    /// No hold has this number.
    #[error("no hold {id}")]
    UnknownHold {
        /// The number asked for.
        id: i64,
    },
    /// A request that does not say what to do (the message says why).
    #[error("{0}")]
    BadRequest(String),
    /// The index has no lifecycle tables (made by an older cairn and not opened by this one).
    #[error("{0} has no lifecycle tables yet (start this version of cairnd on it once)")]
    NotReady(String),
    /// The store failed (or is shutting down).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index could not be read or written.
    #[error("index: {0}")]
    Db(#[from] rusqlite::Error),
}

impl LifecycleError {
    /// Whether the caller asked for something that cannot be done (exit 2, HTTP 4xx), as
    /// opposed to a failure of the box (exit 1, HTTP 5xx).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, LifecycleError::Store(_) | LifecycleError::Db(_))
    }
}

/// An issuer for a person: `(no issuer)` for the empty one.
fn issuer_name(issuer: &str) -> String {
    if issuer.is_empty() {
        "(no issuer)".to_owned()
    } else {
        format!("{issuer:?}")
    }
}

/// " and issuer X" when an issuer was given.
fn issuer_words(issuer: Option<&str>) -> String {
    issuer.map_or(String::new(), |i| format!(" and issuer {}", issuer_name(i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_problem() {
        let e = LifecycleError::UnknownPatient {
            patient_id: "P1".into(),
            issuer: None,
        };
        assert_eq!(e.to_string(), "no patient with ID \"P1\"");
        assert!(e.is_bad_input());
        let e = LifecycleError::AmbiguousPatient {
            patient_id: "P1".into(),
            issuers: vec!["".into(), "HOSP".into()],
        };
        assert_eq!(
            e.to_string(),
            "patient ID \"P1\" exists under several issuers ((no issuer), \"HOSP\"): give the issuer"
        );
        let e = LifecycleError::AlreadyReleased {
            id: 3,
            at: "2026-12-02".into(),
        };
        assert_eq!(e.to_string(), "hold 3 was already released on 2026-12-02");
        assert!(!LifecycleError::Store(StoreError::Closed).is_bad_input());
    }
}
