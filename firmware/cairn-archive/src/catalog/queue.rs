//! The archive queue: its size per target and the next batch to write.

use super::types::*;
use crate::bundle::Member;
use crate::ArchiveError;
use rusqlite::Connection;

/// The queue of one target.
pub fn queue_status(conn: &Connection, target: &str) -> Result<QueueStatus, ArchiveError> {
    Ok(conn.query_row(
        "SELECT count(*), coalesce(sum(i.size), 0), min(q.queued_at)
         FROM archive_queue q JOIN cold_targets t ON t.id = q.target_ref
         JOIN instances i ON i.id = q.instance_ref WHERE t.name = ?1",
        [target],
        |r| {
            Ok(QueueStatus {
                instances: r.get(0)?,
                bytes: r.get(1)?,
                oldest_queued_at: r.get(2)?,
            })
        },
    )?)
}

/// Up to `max_bytes` (at least one) and `max_members` queued instances of a target, oldest
/// first, skipping `exclude`d instance ids. Returns (instance row id, member).
pub fn next_batch(
    conn: &Connection,
    target_id: i64,
    max_bytes: u64,
    max_members: usize,
    exclude: &std::collections::HashSet<i64>,
) -> Result<Vec<(i64, Member)>, ArchiveError> {
    let mut stmt = conn.prepare_cached(
        "SELECT i.id, i.sha256, i.size, i.sop_instance_uid, i.sop_class_uid, i.instance_number,
           i.transfer_syntax, i.received_at, i.source_ae,
           p.patient_id, p.issuer, p.name, p.birth_date, p.sex,
           st.study_uid, st.study_date, st.study_time, st.description, st.accession,
           st.referring_physician, st.study_id,
           se.series_uid, se.modality, se.series_number, se.description, se.body_part
         FROM archive_queue q JOIN instances i ON i.id = q.instance_ref
         JOIN series se ON se.id = i.series_ref JOIN studies st ON st.id = se.study_ref
         JOIN patients p ON p.id = st.patient_ref
         WHERE q.target_ref = ?1 ORDER BY q.instance_ref",
    )?;
    let mut rows = stmt.query([target_id])?;
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut seen = std::collections::HashSet::new();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        if exclude.contains(&id) {
            continue;
        }
        let size: i64 = r.get(2)?;
        if !out.is_empty() && (bytes + size as u64 > max_bytes || out.len() >= max_members) {
            break;
        }
        let sha: String = r.get(1)?;
        if !seen.insert(sha.clone()) {
            // the same bytes queued twice (two versions cannot share bytes, but be safe)
            continue;
        }
        let mut m = Member {
            sha256: sha,
            size: size as u64,
            received_at: r.get(7)?,
            source_ae: r.get(8)?,
            ..Default::default()
        };
        let rec = &mut m.record;
        rec.sop_instance_uid = r.get(3)?;
        rec.sop_class_uid = r.get(4)?;
        rec.instance_number = r.get(5)?;
        rec.transfer_syntax = r.get(6)?;
        rec.patient.id = r.get(9)?;
        rec.patient.issuer = r.get(10)?;
        rec.patient.name = r.get(11)?;
        rec.patient.birth_date = r.get(12)?;
        rec.patient.sex = r.get(13)?;
        rec.study.uid = r.get(14)?;
        rec.study.date = r.get(15)?;
        rec.study.time = r.get(16)?;
        rec.study.description = r.get(17)?;
        rec.study.accession = r.get(18)?;
        rec.study.referring_physician = r.get(19)?;
        rec.study.study_id = r.get(20)?;
        rec.series.uid = r.get(21)?;
        rec.series.modality = r.get(22)?;
        rec.series.number = r.get(23)?;
        rec.series.description = r.get(24)?;
        rec.series.body_part = r.get(25)?;
        bytes += size as u64;
        out.push((id, m));
    }
    Ok(out)
}
