//! What the writer's durability watermark and the recovery after an unclean stop read and
//! undo in the index.

use crate::StoreError;
use rusqlite::{params, Connection, OptionalExtension};

/// Is any row pointing at this file?
pub(crate) fn sha_indexed(conn: &Connection, sha256: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM instances WHERE sha256 = ?1 LIMIT 1")?
        .query_row(params![sha256], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The durability watermark (see migration 2).
pub(crate) fn synced_watermark(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT value FROM store_state WHERE key = 'synced_instance_id'",
        [],
        |r| r.get(0),
    )?)
}

/// Record the durability watermark (inside the caller's transaction).
pub(crate) fn set_synced_watermark(conn: &Connection, id: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE store_state SET value = ?1 WHERE key = 'synced_instance_id'")?
        .execute(params![id])?;
    Ok(())
}

/// Highest instance row id.
pub(crate) fn max_instance_id(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT coalesce(max(id), 0) FROM instances")?
        .query_row([], |r| r.get(0))?)
}

/// Remove an instance row that never became durable with its file (recovery only): the
/// previous version becomes current again and emptied series, studies and patients go.
pub(crate) fn roll_back_instance(conn: &Connection, id: i64) -> Result<Option<String>, StoreError> {
    let row: Option<(String, i64, i64)> = conn
        .query_row(
            "SELECT sop_instance_uid, series_ref, current FROM instances WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((uid, series_ref, current)) = row else {
        return Ok(None);
    };
    conn.execute("DELETE FROM instances WHERE id = ?1", params![id])?;
    conn.execute(
        "DELETE FROM field_conflicts WHERE sop_instance_uid = ?1",
        params![uid],
    )?;
    if current == 1 {
        conn.execute(
            "UPDATE instances SET current = 1 WHERE id =
               (SELECT max(id) FROM instances WHERE sop_instance_uid = ?1)",
            params![uid],
        )?;
    }
    let study_ref = remove_if_empty(
        conn,
        series_ref,
        "SELECT study_ref FROM series WHERE id = ?1",
        "DELETE FROM series WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM instances WHERE series_ref = ?1)",
    )?;
    if let Some(study) = study_ref {
        let patient = remove_if_empty(
            conn,
            study,
            "SELECT patient_ref FROM studies WHERE id = ?1",
            "DELETE FROM studies WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM series WHERE study_ref = ?1)",
        )?;
        if let Some(p) = patient {
            conn.execute(
                "DELETE FROM patients WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM studies WHERE patient_ref = ?1)",
                params![p],
            )?;
        }
    }
    Ok(Some(uid))
}

/// Read the parent reference of row `id` (`parent`, a query of one value), then delete the row
/// when nothing refers to it any more (`delete`). Returns the parent reference read.
fn remove_if_empty(
    conn: &Connection,
    id: i64,
    parent: &str,
    delete: &str,
) -> Result<Option<i64>, StoreError> {
    let parent_ref: Option<i64> = conn
        .query_row(parent, params![id], |r| r.get(0))
        .optional()?;
    conn.execute(delete, params![id])?;
    Ok(parent_ref)
}
