//! The audit trail: one row per association, store, refusal and admin action.
//!
//! Owns: the `audit` and `audit_head` tables, the chain rule, the verifier and the read-only
//! queries of the audit view ([`query`]).
//! Invariants: rows are only appended, inside the caller's transaction (so the audit row and
//! the change it records commit together); each row's `hash` is SHA-256 over the previous
//! row's hash and this row's fields, length-prefixed; `audit_head` always names the last row.
//! Must never: hold patient names in `actor` or `object` (the caller passes UIDs and AE titles).

pub mod query;

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::path::Path;
use thiserror::Error;

/// The hash that precedes the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Audit failures.
#[derive(Debug, Error)]
pub enum AuditError {
    /// SQLite said no.
    #[error("audit database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The anchor file could not be read or written.
    #[error("audit anchor file: {0}")]
    Anchor(#[from] std::io::Error),
}

/// One event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Who: an AE title (`ae:CT1`), a user (`user:alice`) or `system`.
    pub actor: String,
    /// What: a short verb such as `association`, `store`, `refuse`, `config`.
    pub action: String,
    /// On what: a SOP Instance UID, a study UID, a setting name.
    pub object: String,
    /// Details as compact JSON (outcome, status, peer address...).
    pub detail: String,
}

/// The last row of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Its sequence number (1-based); 0 for an empty chain.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
}

/// Create the audit tables if missing.
pub fn ensure_schema(conn: &Connection) -> Result<(), AuditError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS audit (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            object TEXT NOT NULL,
            detail TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS audit_head (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL
        );",
    )?;
    Ok(())
}

/// The chain rule: hash of the previous hash and this row's fields, each length-prefixed.
pub fn row_hash(prev: &str, seq: i64, at: &str, ev: &AuditEvent) -> String {
    let mut h = Sha256::new();
    for field in [
        prev.as_bytes(),
        &seq.to_le_bytes(),
        at.as_bytes(),
        ev.actor.as_bytes(),
        ev.action.as_bytes(),
        ev.object.as_bytes(),
        ev.detail.as_bytes(),
    ] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field);
    }
    hex::encode(h.finalize())
}

/// The current head as recorded in `audit_head`.
pub fn head(conn: &Connection) -> Result<Head, AuditError> {
    let h = conn
        .prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1")?
        .query_row([], |r| {
            Ok(Head {
                seq: r.get(0)?,
                hash: r.get(1)?,
            })
        })
        .optional()?;
    Ok(h.unwrap_or(Head {
        seq: 0,
        hash: GENESIS.to_string(),
    }))
}

/// Append one event inside the caller's transaction; returns the new head.
pub fn append(conn: &Connection, at: &str, ev: &AuditEvent) -> Result<Head, AuditError> {
    let prev = head(conn)?;
    let seq = prev.seq + 1;
    let hash = row_hash(&prev.hash, seq, at, ev);
    conn.prepare_cached(
        "INSERT INTO audit (seq, at, actor, action, object, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        seq, at, ev.actor, ev.action, ev.object, ev.detail, prev.hash, hash
    ])?;
    conn.prepare_cached(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )?
    .execute(params![seq, hash])?;
    Ok(Head { seq, hash })
}

/// What the verifier found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A row's stored hash is not the hash of its fields (edited row).
    HashMismatch {
        /// The row.
        seq: i64,
    },
    /// A row's `prev_hash` is not the previous row's hash (deleted, inserted or reordered).
    BrokenLink {
        /// The row.
        seq: i64,
    },
    /// Sequence numbers skip (a row was deleted).
    Gap {
        /// The number expected.
        expected: i64,
        /// The number found.
        found: i64,
    },
    /// The last row is not the recorded head (rows removed or added at the end).
    HeadMismatch {
        /// The head recorded in `audit_head`.
        recorded: i64,
        /// The last row present.
        last: i64,
    },
    /// The chain is shorter than, or differs from, an anchor kept outside the database.
    AnchorMismatch {
        /// The anchored sequence number.
        anchored: i64,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::HashMismatch { seq } => write!(f, "row {seq}: contents were changed"),
            Finding::BrokenLink { seq } => {
                write!(f, "row {seq}: does not follow the previous row (deleted or reordered rows)")
            }
            Finding::Gap { expected, found } => {
                write!(f, "row {expected} is missing (next row is {found})")
            }
            Finding::HeadMismatch { recorded, last } => write!(
                f,
                "the log should end at row {recorded} but ends at row {last} (truncated or extended)"
            ),
            Finding::AnchorMismatch { anchored } => write!(
                f,
                "row {anchored}, anchored outside the database, is missing or different (truncated or rewritten)"
            ),
        }
    }
}

/// Result of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Rows checked.
    pub rows: i64,
    /// Problems, in row order; empty when intact.
    pub findings: Vec<Finding>,
}

/// Walk the whole chain; `anchor` is a head recorded outside the database (file, tape).
pub fn verify(conn: &Connection, anchor: Option<&Head>) -> Result<Report, AuditError> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, object, detail, prev_hash, hash FROM audit ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut findings = Vec::new();
    let mut prev_hash = GENESIS.to_string();
    let mut expected = 1i64;
    let mut count = 0i64;
    let mut last = 0i64;
    let mut anchor_ok = anchor.is_none_or(|a| a.seq == 0);
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let at: String = r.get(1)?;
        let ev = AuditEvent {
            actor: r.get(2)?,
            action: r.get(3)?,
            object: r.get(4)?,
            detail: r.get(5)?,
        };
        let stored_prev: String = r.get(6)?;
        let stored_hash: String = r.get(7)?;
        if seq != expected {
            findings.push(Finding::Gap {
                expected,
                found: seq,
            });
        }
        if stored_prev != prev_hash {
            findings.push(Finding::BrokenLink { seq });
        }
        if row_hash(&stored_prev, seq, &at, &ev) != stored_hash {
            findings.push(Finding::HashMismatch { seq });
        }
        if let Some(a) = anchor {
            if a.seq == seq && a.hash == stored_hash {
                anchor_ok = true;
            }
        }
        prev_hash = stored_hash;
        expected = seq + 1;
        last = seq;
        count += 1;
    }
    let recorded = head(conn)?;
    if recorded.seq != last || (last > 0 && recorded.hash != prev_hash) {
        findings.push(Finding::HeadMismatch {
            recorded: recorded.seq,
            last,
        });
    }
    if !anchor_ok {
        if let Some(a) = anchor {
            findings.push(Finding::AnchorMismatch { anchored: a.seq });
        }
    }
    Ok(Report {
        rows: count,
        findings,
    })
}

/// Write the head to an anchor file beside the database (atomically: temp file and rename).
/// It is a tripwire against tail truncation by someone editing only the database.
pub fn write_anchor(path: &Path, head: &Head) -> Result<(), AuditError> {
    // NotSynced: the anchor is rewritten after group commits and may lag the database anyway.
    cairn_files::atomic_write(
        path,
        format!("{} {}\n", head.seq, head.hash).as_bytes(),
        cairn_files::Durability::NotSynced,
    )?;
    Ok(())
}

/// Read an anchor file; `None` when it does not exist.
pub fn read_anchor(path: &Path) -> Result<Option<Head>, AuditError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut parts = text.split_whitespace();
    let seq = parts.next().and_then(|s| s.parse().ok());
    let hash = parts.next().map(str::to_string);
    match (seq, hash) {
        (Some(seq), Some(hash)) => Ok(Some(Head { seq, hash })),
        _ => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed anchor").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: i64) -> AuditEvent {
        AuditEvent {
            actor: format!("ae:CT{i}"),
            action: "store".into(),
            object: format!("1.2.3.{i}"),
            detail: "{}".into(),
        }
    }

    fn chain(n: i64) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        ensure_schema(&c).unwrap();
        for i in 1..=n {
            append(&c, "2026-01-01T00:00:00Z", &ev(i)).unwrap();
        }
        c
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let r = verify(&c, None).unwrap();
        assert_eq!(r.rows, 5);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        let h = head(&c).unwrap();
        assert!(verify(&c, Some(&h)).unwrap().findings.is_empty());
    }

    #[test]
    fn detects_edit() {
        let c = chain(5);
        c.execute("UPDATE audit SET object = '1.2.3.99' WHERE seq = 3", [])
            .unwrap();
        let r = verify(&c, None).unwrap();
        assert_eq!(r.findings, vec![Finding::HashMismatch { seq: 3 }]);
    }

    #[test]
    fn detects_deletion() {
        let c = chain(5);
        c.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
        let r = verify(&c, None).unwrap();
        assert!(r.findings.contains(&Finding::Gap {
            expected: 2,
            found: 3
        }));
        assert!(r.findings.contains(&Finding::BrokenLink { seq: 3 }));
    }

    #[test]
    fn detects_reordering() {
        let c = chain(5);
        // swap the contents of rows 2 and 4, keeping their seq numbers
        c.execute_batch(
            "UPDATE audit SET seq = -2 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 4;
             UPDATE audit SET seq = 4 WHERE seq = -2;",
        )
        .unwrap();
        assert!(!verify(&c, None).unwrap().findings.is_empty());
    }

    #[test]
    fn detects_truncation() {
        let c = chain(5);
        let anchor = head(&c).unwrap();
        c.execute("DELETE FROM audit WHERE seq > 3", []).unwrap();
        let r = verify(&c, None).unwrap();
        assert!(r.findings.contains(&Finding::HeadMismatch {
            recorded: 5,
            last: 3
        }));
        // even if the attacker also fixes audit_head, the outside anchor catches it
        c.execute(
            "UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit WHERE seq = 3)",
            [],
        )
        .unwrap();
        assert!(verify(&c, None).unwrap().findings.is_empty());
        let r = verify(&c, Some(&anchor)).unwrap();
        assert_eq!(r.findings, vec![Finding::AnchorMismatch { anchored: 5 }]);
    }

    #[test]
    fn anchor_file_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.head");
        assert_eq!(read_anchor(&p).unwrap(), None);
        let h = Head {
            seq: 7,
            hash: "ab".repeat(32),
        };
        write_anchor(&p, &h).unwrap();
        assert_eq!(read_anchor(&p).unwrap(), Some(h));
    }
}
