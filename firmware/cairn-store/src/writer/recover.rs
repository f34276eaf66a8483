//! Startup recovery, before the writer thread runs.

use super::flush::sync_all;
use super::CLEAN_MARK;
use crate::index;
use crate::layout::{is_sha256_hex, walk_objects, DataDir};
use crate::{now_rfc3339, StoreError};
use cairn_audit::AuditEvent;
use rusqlite::Connection;

/// Startup recovery. The spool never holds anything acknowledged. After an unclean stop, the
/// last batches may have reached the database without their files (or the reverse): instance
/// rows above the durability watermark are checked against their files and rolled back when the
/// file is missing or damaged (they were never acknowledged), and files with no row are moved
/// to `quarantine/`. Object files of committed removals (`pending_unlinks`) are deleted first.
pub(super) fn recover(
    data: &DataDir,
    conn: &Connection,
    sync_fd: &std::fs::File,
) -> Result<(), StoreError> {
    let mut removed = 0usize;
    if let Ok(rd) = std::fs::read_dir(data.spool()) {
        for e in rd.flatten() {
            if std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::warn!(
            removed,
            "removed unfinished spool files from an earlier run"
        );
    }
    // removals committed before the stop whose files were not deleted yet: deleted now, before
    // the orphan scan below (which would quarantine them)
    let unlinked = crate::remove::unlink_pending(conn, data)?;
    if unlinked > 0 {
        tracing::info!(
            unlinked,
            "deleted the files of removals committed before the stop"
        );
    }
    let mark = data.root().join(CLEAN_MARK);
    if mark.exists() {
        std::fs::remove_file(&mark).map_err(|e| StoreError::io("remove clean mark", e))?;
        return sync_all(sync_fd);
    }

    let at = now_rfc3339();
    let watermark = index::synced_watermark(conn)?;
    let mut suspects = Vec::new();
    {
        let mut stmt =
            conn.prepare("SELECT id, sha256, size FROM instances WHERE id > ?1 ORDER BY id")?;
        let rows = stmt.query_map([watermark], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (id, sha, size) = row?;
            let path = data.object_path(&sha);
            let intact = is_sha256_hex(&sha)
                && crate::fsck::sha256_file(&path)
                    .map(|(h, n)| h == sha && n == size as u64)
                    .unwrap_or(false);
            if !intact {
                suspects.push(id);
            }
        }
    }
    if !suspects.is_empty() {
        let tx = conn.unchecked_transaction()?;
        for id in &suspects {
            if let Some(uid) = index::roll_back_instance(&tx, *id)? {
                cairn_audit::append(
                    &tx,
                    &at,
                    &AuditEvent {
                        actor: "system".into(),
                        action: "recovery-rollback".into(),
                        object: uid,
                        detail: "{\"reason\":\"indexed but its file never reached the disk; it was never acknowledged\"}".into(),
                    },
                )?;
            }
        }
        tx.commit()?;
        tracing::warn!(
            count = suspects.len(),
            "rolled back unacknowledged index rows whose files are missing"
        );
    }

    let mut quarantined = Vec::new();
    for path in walk_objects(&data.objects()) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let sha = name.strip_suffix(".dcm").unwrap_or("");
        let known = is_sha256_hex(sha) && index::sha_indexed(conn, sha)?;
        if !known {
            let dest = data
                .quarantine()
                .join(format!("{}-{}", at.replace(':', ""), name));
            std::fs::rename(&path, &dest)
                .map_err(|e| StoreError::io("quarantine orphan file", e))?;
            quarantined.push(path);
        }
    }
    let tx = conn.unchecked_transaction()?;
    if !quarantined.is_empty() {
        tracing::warn!(
            count = quarantined.len(),
            "moved unindexed object files (never acknowledged) to quarantine/"
        );
        cairn_audit::append(
            &tx,
            &at,
            &AuditEvent {
                actor: "system".into(),
                action: "recovery".into(),
                object: "objects".into(),
                detail: format!("{{\"quarantined\":{}}}", quarantined.len()),
            },
        )?;
    }
    index::set_synced_watermark(&tx, index::max_instance_id(&tx)?)?;
    tx.commit()?;
    sync_all(sync_fd)
}
