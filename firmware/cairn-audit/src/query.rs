//! Read-only questions about the trail, for the panel's audit view: rows under a filter,
//! newest first, their count and the actions that occur.

use crate::{AuditError, AuditEvent};
use rusqlite::Connection;

/// Which rows to read; every field set narrows the selection, none set selects every row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Rows whose actor contains this, ignoring case (`alice` finds `user:alice`).
    pub actor_contains: Option<String>,
    /// Rows of exactly this action (`login`, `store`...).
    pub action: Option<String>,
    /// Rows recorded at or after this time (compared as text with the RFC 3339 `at`).
    pub at_or_after: Option<String>,
    /// Rows recorded before this time (compared as text with the RFC 3339 `at`).
    pub before: Option<String>,
}

/// One row of the trail, without its chain hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Sequence number.
    pub seq: i64,
    /// When (RFC 3339 UTC).
    pub at: String,
    /// Who did what on what.
    pub event: AuditEvent,
}

/// The WHERE clause of a selection and its arguments.
fn where_clause(s: &Selection) -> (String, Vec<String>) {
    let mut sql = String::from(" WHERE 1 = 1");
    let mut args = Vec::new();
    let conditions = [
        (&s.actor_contains, " AND instr(lower(actor), lower(?)) > 0"),
        (&s.action, " AND action = ?"),
        (&s.at_or_after, " AND at >= ?"),
        (&s.before, " AND at < ?"),
    ];
    for (value, condition) in conditions {
        if let Some(v) = value {
            sql.push_str(condition);
            args.push(v.clone());
        }
    }
    (sql, args)
}

/// How many rows the selection holds.
pub fn count(conn: &Connection, s: &Selection) -> Result<i64, AuditError> {
    let (w, args) = where_clause(s);
    let sql = format!("SELECT count(*) FROM audit{w}");
    Ok(conn.query_row(&sql, rusqlite::params_from_iter(args), |r| r.get(0))?)
}

/// The selected rows, newest first: at most `limit` of them, after skipping `offset`.
pub fn rows(
    conn: &Connection,
    s: &Selection,
    limit: usize,
    offset: usize,
) -> Result<Vec<Row>, AuditError> {
    let (w, args) = where_clause(s);
    let sql = format!(
        "SELECT seq, at, actor, action, object, detail FROM audit{w} ORDER BY seq DESC \
         LIMIT {limit} OFFSET {offset}"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(Row {
            seq: r.get(0)?,
            at: r.get(1)?,
            event: AuditEvent {
                actor: r.get(2)?,
                action: r.get(3)?,
                object: r.get(4)?,
                detail: r.get(5)?,
            },
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The distinct actions recorded, in alphabetical order.
pub fn actions(conn: &Connection) -> Result<Vec<String>, AuditError> {
    let mut st = conn.prepare("SELECT DISTINCT action FROM audit ORDER BY action")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{append, ensure_schema};

    fn trail() -> Connection {
        let conn = Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
        ensure_schema(&conn).unwrap_or_else(|e| panic!("{e}"));
        for (at, actor, action) in [
            ("2024-01-01T08:00:00Z", "user:Alice", "login"),
            ("2024-01-01T09:00:00Z", "ae:CT1", "store"),
            ("2024-01-02T10:00:00Z", "user:bob", "login"),
            ("2024-01-03T11:00:00Z", "ae:CT1", "store"),
        ] {
            let ev = AuditEvent {
                actor: actor.into(),
                action: action.into(),
                object: "1.2.3".into(),
                detail: "{}".into(),
            };
            append(&conn, at, &ev).unwrap_or_else(|e| panic!("{e}"));
        }
        conn
    }

    fn seqs(conn: &Connection, s: &Selection, limit: usize, offset: usize) -> Vec<i64> {
        rows(conn, s, limit, offset)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|r| r.seq)
            .collect()
    }

    #[test]
    fn everything_newest_first_in_pages() {
        let conn = trail();
        let all = Selection::default();
        assert_eq!(count(&conn, &all).unwrap_or_else(|e| panic!("{e}")), 4);
        assert_eq!(seqs(&conn, &all, 10, 0), [4, 3, 2, 1]);
        assert_eq!(seqs(&conn, &all, 2, 2), [2, 1]);
        let first = &rows(&conn, &all, 1, 3).unwrap_or_else(|e| panic!("{e}"))[0];
        assert_eq!(first.at, "2024-01-01T08:00:00Z");
        assert_eq!(
            first.event,
            AuditEvent {
                actor: "user:Alice".into(),
                action: "login".into(),
                object: "1.2.3".into(),
                detail: "{}".into(),
            }
        );
    }

    #[test]
    fn filters_narrow() {
        let conn = trail();
        let actor = Selection {
            actor_contains: Some("ALICE".into()),
            ..Selection::default()
        };
        assert_eq!(seqs(&conn, &actor, 10, 0), [1]);
        let action = Selection {
            action: Some("store".into()),
            ..Selection::default()
        };
        assert_eq!(count(&conn, &action).unwrap_or_else(|e| panic!("{e}")), 2);
        let days = Selection {
            at_or_after: Some("2024-01-01T09:00:00Z".into()),
            before: Some("2024-01-03".into()),
            ..Selection::default()
        };
        assert_eq!(seqs(&conn, &days, 10, 0), [3, 2]);
        let none = Selection {
            action: Some("log".into()),
            ..Selection::default()
        };
        assert_eq!(count(&conn, &none).unwrap_or_else(|e| panic!("{e}")), 0);
    }

    #[test]
    fn actions_are_distinct_and_sorted() {
        let conn = trail();
        assert_eq!(
            actions(&conn).unwrap_or_else(|e| panic!("{e}")),
            ["login", "store"]
        );
    }
}
