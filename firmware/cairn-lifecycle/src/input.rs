//! Checks shared by the changes: a reason and an actor are required, and how an event names
//! its actor and patient.

use crate::LifecycleError;
use cairn_audit::AuditEvent;
use rusqlite::{params, Connection};

/// The reason, trimmed; refused when empty or only white space.
pub(crate) fn reason(text: &str) -> Result<String, LifecycleError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(LifecycleError::EmptyReason);
    }
    Ok(text.to_owned())
}

/// Who asks (`user:alice`), trimmed; refused when empty.
pub(crate) fn actor(by: &str) -> Result<String, LifecycleError> {
    let by = by.trim();
    if by.is_empty() {
        return Err(LifecycleError::BadRequest(
            "the request does not say who asks".into(),
        ));
    }
    Ok(by.to_owned())
}

/// An audit row of a change by `actor`.
pub(crate) fn event(
    actor: &str,
    action: &str,
    object: &str,
    detail: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        actor: actor.to_owned(),
        action: action.to_owned(),
        object: object.to_owned(),
        detail: detail.to_string(),
    }
}

/// Mark patient `id`'s expiry for recomputing (the triggers do it for index changes; holds have
/// none).
pub(crate) fn mark_dirty(conn: &Connection, id: i64) -> Result<(), LifecycleError> {
    conn.execute(
        "INSERT INTO patient_retention (patient_ref) VALUES (?1)
         ON CONFLICT (patient_ref) DO UPDATE SET dirty = 1",
        params![id],
    )?;
    Ok(())
}

/// A stored RFC 3339 time for a person: `2026-12-02 09:42 UTC` (as stored when it is not in
/// that form).
pub(crate) fn when(at: &str) -> String {
    match (at.get(..10), at.get(11..16)) {
        (Some(day), Some(time)) if at.ends_with('Z') => format!("{day} {time} UTC"),
        _ => at.to_owned(),
    }
}
