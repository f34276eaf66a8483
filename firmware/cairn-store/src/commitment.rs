//! Storage commitment (push model) in the index: the durable record of each request until it
//! is reported, and the rule that decides, per instance, whether the box commits to keeping it.
//!
//! An instance is committed when its current row is in the index with the requested SOP class,
//! its object file exists on the hot store, and at least one verified cold copy of those exact
//! bytes exists (a `copies` row with `verified = 1`, from the archive tables of schema version
//! 4; the archive sets it in the transaction that marks its bundle verified and never clears
//! it, docs/interface.md). A known instance without such a copy is pending; an unknown one has
//! failed.
//!
//! The two tables here (`commitment_requests`, `commitment_items`) are index schema
//! migration 5 (`index.rs`, applied when the store opens, like every other table). Every
//! change goes through [`Store::transact`] with its audit row.

use crate::{index, DataDir, Store, StoreError};
use cairn_audit::AuditEvent;
use rusqlite::{params, Connection, OptionalExtension};

/// Failure Reason (0008,1197): processing failure (PS3.4 C.14.1.1).
pub const PROCESSING_FAILURE: u16 = 0x0110;
/// Failure Reason: no such object instance.
pub const NO_SUCH_OBJECT_INSTANCE: u16 = 0x0112;
/// Failure Reason: class / instance conflict.
pub const CLASS_INSTANCE_CONFLICT: u16 = 0x0119;

/// One referenced instance of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitItem {
    /// Referenced SOP Class UID (0008,1150).
    pub sop_class_uid: String,
    /// Referenced SOP Instance UID (0008,1155).
    pub sop_instance_uid: String,
}

/// What the box can say about one instance now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemState {
    /// On the hot store with a verified cold copy: the box takes responsibility.
    Committed,
    /// Known, but no verified cold copy yet.
    Pending,
    /// Failed, with its Failure Reason.
    Failed(u16),
}

/// A request not yet reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    /// Row id.
    pub id: i64,
    /// Transaction UID (0008,1195) as received (checked).
    pub transaction_uid: String,
    /// The requester's AE title.
    pub calling_ae: String,
    /// When unverified instances are reported as failed (Unix seconds).
    pub deadline_unix: i64,
    /// Delivery attempts on a new association so far.
    pub attempts: i64,
    /// Not before this time (Unix seconds).
    pub next_attempt_unix: i64,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn esc(s: &str) -> String {
    s.chars()
        .take(128)
        .map(|c| match c {
            '"' | '\\' => '?',
            c if c.is_control() || !c.is_ascii() => '?',
            c => c,
        })
        .collect()
}

/// Checks that the commitment tables are there (an index error naming the missing table
/// otherwise). They come with index schema version 5, which [`Store::open`] applies, so this
/// fails only on a database changed behind cairn's back.
pub fn ensure_schema(store: &Store) -> Result<(), StoreError> {
    let conn = index::open_ro(&store.data_dir().db())?;
    conn.prepare("SELECT 1 FROM commitment_requests, commitment_items LIMIT 0")?;
    Ok(())
}

/// Records a request durably with its audit row; returns its id once committed.
///
/// `on_recorded` gets the new id in the writer thread before the commit is visible to any
/// reader, so the caller can claim the request before a background worker can see it.
pub fn record_request(
    store: &Store,
    transaction_uid: &str,
    calling_ae: &str,
    peer: &str,
    items: Vec<CommitItem>,
    timeout_secs: u64,
    on_recorded: impl FnOnce(i64) + Send + 'static,
) -> Result<i64, StoreError> {
    let txn = transaction_uid.to_string();
    let ae = calling_ae.to_string();
    let peer = peer.to_string();
    let deadline = unix_now().saturating_add(i64::try_from(timeout_secs).unwrap_or(i64::MAX / 2));
    store.transact(move |conn, now| {
        conn.execute(
            "INSERT INTO commitment_requests (transaction_uid, calling_ae, received_at,
                 deadline_unix, state) VALUES (?1, ?2, ?3, ?4, 'pending')",
            params![txn, ae, now, deadline],
        )?;
        let id = conn.last_insert_rowid();
        let mut stmt = conn.prepare_cached(
            "INSERT INTO commitment_items (request_ref, seq, sop_class_uid, sop_instance_uid)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (seq, it) in items.iter().enumerate() {
            stmt.execute(params![
                id,
                seq as i64,
                it.sop_class_uid,
                it.sop_instance_uid
            ])?;
        }
        on_recorded(id);
        let event = AuditEvent {
            actor: format!("ae:{}", esc(&ae)),
            action: "commitment-request".into(),
            object: txn.clone(),
            detail: format!(
                "{{\"request\":\"{id}\",\"instances\":\"{}\",\"peer\":\"{}\"}}",
                items.len(),
                esc(&peer)
            ),
        };
        Ok((id, vec![event]))
    })
}

/// The instances of a request, in the order received.
pub fn request_items(data: &DataDir, id: i64) -> Result<Vec<CommitItem>, StoreError> {
    let conn = index::open_ro(&data.db())?;
    let mut stmt = conn.prepare(
        "SELECT sop_class_uid, sop_instance_uid FROM commitment_items
         WHERE request_ref = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok(CommitItem {
            sop_class_uid: r.get(0)?,
            sop_instance_uid: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A pending request by id (`None` once reported or given up).
pub fn pending_request(data: &DataDir, id: i64) -> Result<Option<PendingRequest>, StoreError> {
    let conn = index::open_ro(&data.db())?;
    Ok(conn
        .query_row(
            "SELECT id, transaction_uid, calling_ae, deadline_unix, attempts, next_attempt_unix
             FROM commitment_requests WHERE id = ?1 AND state = 'pending'",
            [id],
            pending_row,
        )
        .optional()?)
}

fn pending_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PendingRequest> {
    Ok(PendingRequest {
        id: r.get(0)?,
        transaction_uid: r.get(1)?,
        calling_ae: r.get(2)?,
        deadline_unix: r.get(3)?,
        attempts: r.get(4)?,
        next_attempt_unix: r.get(5)?,
    })
}

/// Every pending request whose next delivery attempt is due at `now_unix`.
pub fn due_requests(data: &DataDir, now_unix: i64) -> Result<Vec<PendingRequest>, StoreError> {
    let conn = index::open_ro(&data.db())?;
    let has_table: bool = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'commitment_requests'",
            [],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    if !has_table {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT id, transaction_uid, calling_ae, deadline_unix, attempts, next_attempt_unix
         FROM commitment_requests WHERE state = 'pending' AND next_attempt_unix <= ?1
         ORDER BY id",
    )?;
    let rows = stmt.query_map([now_unix], pending_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Decides each instance (see the module documentation), reading the index read-only.
pub fn evaluate(data: &DataDir, items: &[CommitItem]) -> Result<Vec<ItemState>, StoreError> {
    let conn = index::open_ro(&data.db())?;
    evaluate_with(&conn, data, items)
}

fn evaluate_with(
    conn: &Connection,
    data: &DataDir,
    items: &[CommitItem],
) -> Result<Vec<ItemState>, StoreError> {
    let mut find = conn.prepare_cached(
        "SELECT sop_class_uid, sha256 FROM instances
         WHERE sop_instance_uid = ?1 AND current = 1
         ORDER BY id DESC LIMIT 1",
    )?;
    let mut verified = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM copies WHERE sha256 = ?1 AND verified = 1
           AND removed IS NULL)",
    )?;
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let row: Option<(String, String)> = find
            .query_row([&it.sop_instance_uid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let state = match row {
            None => ItemState::Failed(NO_SUCH_OBJECT_INSTANCE),
            Some((class, _)) if class != it.sop_class_uid => {
                ItemState::Failed(CLASS_INSTANCE_CONFLICT)
            }
            Some((_, sha)) => {
                if !data.object_path(&sha).is_file() {
                    ItemState::Failed(PROCESSING_FAILURE)
                } else if verified.query_row([&sha], |r| r.get::<_, bool>(0))? {
                    ItemState::Committed
                } else {
                    ItemState::Pending
                }
            }
        };
        out.push(state);
    }
    Ok(out)
}

/// Marks a request reported (the requester answered the N-EVENT-REPORT with success), with
/// an audit row naming the outcome.
pub fn mark_reported(
    store: &Store,
    id: i64,
    event_type: u16,
    committed: usize,
    failed: usize,
    via: &str,
) -> Result<(), StoreError> {
    let via = via.to_string();
    store.transact(move |conn, now| {
        let row: Option<(String, String)> = conn
            .query_row(
                "SELECT transaction_uid, calling_ae FROM commitment_requests
                 WHERE id = ?1 AND state = 'pending'",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((txn, ae)) = row else {
            return Ok(((), Vec::new()));
        };
        conn.execute(
            "UPDATE commitment_requests SET state = 'reported', event_type = ?2,
                 reported_at = ?3 WHERE id = ?1",
            params![id, event_type, now],
        )?;
        let event = AuditEvent {
            actor: format!("ae:{}", esc(&ae)),
            action: "commitment-report".into(),
            object: txn,
            detail: format!(
                "{{\"request\":\"{id}\",\"event_type\":\"{event_type}\",\"committed\":\"{committed}\",\"failed\":\"{failed}\",\"via\":\"{}\"}}",
                esc(&via)
            ),
        };
        Ok(((), vec![event]))
    })
}

/// Records a failed delivery on a new association: try again at `next_unix`, or give up
/// (state `undeliverable`, audited) when `give_up`.
pub fn mark_attempt_failed(
    store: &Store,
    id: i64,
    next_unix: i64,
    error: &str,
    give_up: bool,
) -> Result<(), StoreError> {
    let error = esc(error);
    store.transact(move |conn, _now| {
        conn.execute(
            "UPDATE commitment_requests SET attempts = attempts + 1, next_attempt_unix = ?2,
                 last_error = ?3, state = CASE WHEN ?4 THEN 'undeliverable' ELSE state END
             WHERE id = ?1 AND state = 'pending'",
            params![id, next_unix, error, give_up],
        )?;
        let mut events = Vec::new();
        if give_up {
            let row: Option<(String, String)> = conn
                .query_row(
                    "SELECT transaction_uid, calling_ae FROM commitment_requests WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((txn, ae)) = row {
                events.push(AuditEvent {
                    actor: format!("ae:{}", esc(&ae)),
                    action: "commitment-undeliverable".into(),
                    object: txn,
                    detail: format!("{{\"request\":\"{id}\",\"error\":\"{error}\"}}"),
                });
            }
        }
        Ok(((), events))
    })
}
