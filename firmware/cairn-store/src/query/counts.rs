//! Single numbers the panel shows from the index: images received since a time, bytes of a
//! series.

use crate::StoreError;
use rusqlite::Connection;

/// Instances (every version) received at or after `since` (RFC 3339 UTC, compared as text,
/// e.g. `2024-01-31T00:00:00` for a day's midnight).
pub fn images_received_since(conn: &Connection, since: &str) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM instances WHERE received_at >= ?1",
        [since],
        |r| r.get(0),
    )?)
}

/// Bytes of the current instances of a series (0 for an unknown series).
pub fn series_bytes(conn: &Connection, series_uid: &str) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(i.size), 0) FROM instances i JOIN series se ON i.series_ref = se.id
             WHERE se.series_uid = ?1 AND i.current = 1",
        [series_uid],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::fixture::two_studies;

    #[test]
    fn series_bytes_count_current_versions_only() {
        let (_dir, conn) = two_studies();
        let bytes = |uid| series_bytes(&conn, uid).unwrap_or_else(|e| panic!("{e}"));
        // "one" and "two, again" (the older "two!" is superseded).
        assert_eq!(bytes("1.1.1"), 3 + 10);
        assert_eq!(bytes("1.1.2"), 5);
        assert_eq!(bytes("9.9"), 0);
    }

    #[test]
    fn images_received_since_counts_every_version() {
        let (_dir, conn) = two_studies();
        let since = |at| images_received_since(&conn, at).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(since("2000-01-01T00:00:00"), 5);
        assert_eq!(since("9999-01-01T00:00:00"), 0);
    }
}
