//! Every legal hold the index records, active and released, as the archive writes them into
//! each bundle (a box rebuilt from its cold copies learns its holds from them).

use crate::StoreError;
use rusqlite::Connection;

/// One legal hold: on a patient (`patient_id` and `issuer` set) or on one study (`study_uid`
/// set), active while `released_at` is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HoldRecord {
    /// The hold's number.
    pub id: i64,
    /// The patient held (for a hold on a patient).
    pub patient_id: Option<String>,
    /// That patient's issuer (`""` for none; for a hold on a patient).
    pub issuer: Option<String>,
    /// The study held (for a hold on a study).
    pub study_uid: Option<String>,
    /// Why it was placed.
    pub reason: String,
    /// Who placed it.
    pub placed_by: String,
    /// When (RFC 3339, UTC).
    pub placed_at: String,
    /// Who released it.
    pub released_by: Option<String>,
    /// When it was released (RFC 3339, UTC).
    pub released_at: Option<String>,
    /// Why it was released.
    pub release_reason: Option<String>,
}

/// Every hold, active and released, by number. An index without holds yet (before the schema
/// migration that adds them) has none.
pub fn all_holds(conn: &Connection) -> Result<Vec<HoldRecord>, StoreError> {
    let present: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'holds')",
        [],
        |r| r.get(0),
    )?;
    if !present {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT h.id, p.patient_id, p.issuer, s.study_uid, h.reason, h.placed_by, h.placed_at,
                h.released_by, h.released_at, h.release_reason
         FROM holds h LEFT JOIN patients p ON p.id = h.patient_ref
         LEFT JOIN studies s ON s.id = h.study_ref
         ORDER BY h.id",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(HoldRecord {
                id: r.get(0)?,
                patient_id: r.get(1)?,
                issuer: r.get(2)?,
                study_uid: r.get(3)?,
                reason: r.get(4)?,
                placed_by: r.get(5)?,
                placed_at: r.get(6)?,
                released_by: r.get(7)?,
                released_at: r.get(8)?,
                release_reason: r.get(9)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::fixture::two_studies;
    use crate::DataDir;

    #[test]
    fn every_hold_is_listed_active_and_released() {
        let (dir, conn) = two_studies();
        assert_eq!(all_holds(&conn).unwrap_or_else(|e| panic!("{e}")), vec![]);
        let rw = Connection::open(DataDir::new(dir.path()).db()).unwrap_or_else(|e| panic!("{e}"));
        rw.execute_batch(
            "INSERT INTO holds (patient_ref, reason, placed_by, placed_at)
                 SELECT id, 'litigation, \"case 7\"', 'admin', '2025-01-02T03:04:05Z'
                 FROM patients WHERE patient_id = 'P1';
             INSERT INTO holds (study_ref, reason, placed_by, placed_at, released_by,
                                released_at, release_reason)
                 SELECT id, 'audit', 'dpo', '2025-02-01T00:00:00Z', 'admin',
                        '2025-03-01T00:00:00Z', 'closed'
                 FROM studies WHERE study_uid = '1.2';",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let holds = all_holds(&conn).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(holds.len(), 2);
        assert_eq!(holds[0].patient_id.as_deref(), Some("P1"));
        assert_eq!(holds[0].issuer.as_deref(), Some(""));
        assert_eq!(holds[0].study_uid, None);
        assert_eq!(holds[0].reason, "litigation, \"case 7\"");
        assert_eq!(holds[0].released_at, None);
        assert_eq!(holds[1].patient_id, None);
        assert_eq!(holds[1].study_uid.as_deref(), Some("1.2"));
        assert_eq!(holds[1].placed_by, "dpo");
        assert_eq!(holds[1].released_by.as_deref(), Some("admin"));
        assert_eq!(
            holds[1].released_at.as_deref(),
            Some("2025-03-01T00:00:00Z")
        );
        assert_eq!(holds[1].release_reason.as_deref(), Some("closed"));
    }
}
