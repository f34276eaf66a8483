//! Catalog reads: volumes, bundles, copies and the archive status, from a read-only connection.

use super::live::read_live;
use super::queue::queue_status;
use super::types::*;
use crate::ArchiveError;
use cairn_store::DataDir;
use rusqlite::{params, Connection, OptionalExtension};
use std::time::Duration;

/// Open the index read-only.
pub fn open_read(data: &DataDir) -> Result<Connection, ArchiveError> {
    let conn = Connection::open_with_flags(
        data.db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let named: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table'
           AND name = 'volume_names')",
        [],
        |r| r.get(0),
    )?;
    if version < 4 || !named {
        return Err(ArchiveError::Refused(format!(
            "{} has no archive catalog yet (start this version of cairnd on it once)",
            data.root().display()
        )));
    }
    Ok(conn)
}

const VOLUME_SELECT: &str = "SELECT v.volume_id, v.kind, v.box_id, t.name, v.state, v.location,
    v.bytes_written, v.capacity_bytes,
    (SELECT count(*) FROM bundles b WHERE b.volume_ref = v.id AND b.state = 'verified'),
    (SELECT count(*) FROM copies c JOIN bundles b ON b.id = c.bundle_ref
       WHERE b.volume_ref = v.id AND c.verified = 1),
    v.labelled_at, v.updated_at, v.updated_by, coalesce(n.name, v.volume_id),
    EXISTS (SELECT 1 FROM copies c JOIN bundles b ON b.id = c.bundle_ref
       WHERE b.volume_ref = v.id)
      AND NOT EXISTS (SELECT 1 FROM copies c JOIN bundles b ON b.id = c.bundle_ref
       WHERE b.volume_ref = v.id AND c.removed IS NULL)
    FROM volumes v LEFT JOIN cold_targets t ON t.id = v.target_ref
    LEFT JOIN volume_names n ON n.volume_ref = v.id";

/// The names of the volumes that may be recycled: they hold copies and every one was removed
/// (rejected or expired).
pub fn recyclable_volumes(conn: &Connection) -> Result<Vec<String>, ArchiveError> {
    Ok(volumes(conn)?
        .into_iter()
        .filter(|v| v.recyclable)
        .map(|v| v.name)
        .collect())
}

/// A volume's short name in SQL (`v` the volumes row): its name, else its id.
pub(super) const NAME_OF_V: &str =
    "coalesce((SELECT n.name FROM volume_names n WHERE n.volume_ref = v.id), v.volume_id)";

fn volume_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRow> {
    let state: String = r.get(4)?;
    let loc: String = r.get(5)?;
    Ok(VolumeRow {
        name: r.get(13)?,
        volume_id: r.get(0)?,
        kind: r.get(1)?,
        box_id: r.get(2)?,
        target: r.get(3)?,
        state: VolumeState::parse(&state).unwrap_or(VolumeState::Error),
        location: Location::parse(&loc).unwrap_or(Location::OnsiteShelf),
        bytes_written: r.get(6)?,
        capacity_bytes: r.get(7)?,
        verified_bundles: r.get(8)?,
        verified_copies: r.get(9)?,
        labelled_at: r.get(10)?,
        updated_at: r.get(11)?,
        updated_by: r.get(12)?,
        recyclable: r.get(14)?,
    })
}

/// Every volume the catalog knows, by id.
pub fn list_volumes(data: &DataDir) -> Result<Vec<VolumeRow>, ArchiveError> {
    let conn = open_read(data)?;
    volumes(&conn)
}

/// Every volume, on an open connection, by name.
pub fn volumes(conn: &Connection) -> Result<Vec<VolumeRow>, ArchiveError> {
    let mut stmt = conn.prepare(&format!(
        "{VOLUME_SELECT} ORDER BY coalesce(n.name, v.volume_id)"
    ))?;
    let rows = stmt.query_map([], volume_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One volume by id.
pub fn volume(conn: &Connection, volume_id: &str) -> Result<Option<VolumeRow>, ArchiveError> {
    Ok(conn
        .query_row(
            &format!("{VOLUME_SELECT} WHERE v.volume_id = ?1"),
            [volume_id],
            volume_row,
        )
        .optional()?)
}

/// One volume by its short name (or, as typed by someone who has it, its volume id).
pub fn volume_named(conn: &Connection, name: &str) -> Result<Option<VolumeRow>, ArchiveError> {
    Ok(conn
        .query_row(
            &format!(
                "{VOLUME_SELECT} WHERE n.name = ?1 OR v.volume_id = ?1
                 ORDER BY n.name = ?1 DESC LIMIT 1"
            ),
            [name],
            volume_row,
        )
        .optional()?)
}

/// Every short name in use (to choose a new one).
pub fn names_in_use(conn: &Connection) -> Result<Vec<String>, ArchiveError> {
    let mut stmt = conn.prepare(&format!("SELECT {NAME_OF_V} FROM volumes v"))?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The volume in a target's drive, as the catalog says.
pub fn volume_in_drive(conn: &Connection, target: &str) -> Result<Option<VolumeRow>, ArchiveError> {
    Ok(conn
        .query_row(
            &format!(
                "{VOLUME_SELECT} WHERE t.name = ?1 AND v.location = 'in_drive'
                 ORDER BY v.updated_at DESC LIMIT 1"
            ),
            [target],
            volume_row,
        )
        .optional()?)
}

/// Every bundle, in volume and file order.
pub fn bundles(conn: &Connection) -> Result<Vec<BundleRow>, ArchiveError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {BUNDLE_COLUMNS} FROM bundles b JOIN volumes v ON v.id = b.volume_ref
         ORDER BY v.volume_id, b.file_number"
    ))?;
    let rows = stmt.query_map([], bundle_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The columns [`bundle_row`] reads (`b` the bundle, `v` its volume).
const BUNDLE_COLUMNS: &str = "b.bundle_id, v.volume_id, b.file_number, b.state, b.members,
    b.bytes, b.verified_at,
    coalesce((SELECT n.name FROM volume_names n WHERE n.volume_ref = v.id), v.volume_id)";

fn bundle_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BundleRow> {
    let volume_name: String = r.get(7)?;
    let file_number: i64 = r.get(2)?;
    Ok(BundleRow {
        name: format!("{volume_name}.{file_number}"),
        bundle_id: r.get(0)?,
        volume_id: r.get(1)?,
        file_number,
        state: r.get(3)?,
        members: r.get(4)?,
        bytes: r.get(5)?,
        verified_at: r.get(6)?,
    })
}

fn last_verified(conn: &Connection, target: &str) -> Result<Option<BundleRow>, ArchiveError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {BUNDLE_COLUMNS} FROM bundles b JOIN volumes v ON v.id = b.volume_ref
                 JOIN cold_targets t ON t.id = v.target_ref
                 WHERE t.name = ?1 AND b.state = 'verified'
                 ORDER BY b.verified_at DESC, b.id DESC LIMIT 1"
            ),
            [target],
            bundle_row,
        )
        .optional()?)
}

/// The status of every enabled cold target: drive (live), volume, queue, last verified bundle.
pub fn archive_status(data: &DataDir) -> Result<ArchiveStatus, ArchiveError> {
    let conn = open_read(data)?;
    let live = read_live(data);
    let mut stmt =
        conn.prepare("SELECT name, kind FROM cold_targets WHERE enabled = 1 ORDER BY id")?;
    let targets: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for (name, kind) in targets {
        let l = live.targets.iter().find(|t| t.name == name);
        let queue = queue_status(&conn, &name)?;
        // needed only while images wait, whatever a slightly older live status says
        let medium_needed = l.is_some_and(|l| l.medium_needed) && queue.instances > 0;
        out.push(TargetStatus {
            volume: volume_in_drive(&conn, &name)?,
            last_verified: last_verified(&conn, &name)?,
            drive: l
                .map(|l| l.drive.clone())
                .unwrap_or_else(|| "unknown".into()),
            activity: l
                .map(|l| l.activity.clone())
                .unwrap_or_else(|| "cairnd is not running".into()),
            message: l.map(|l| l.message.clone()).unwrap_or_default(),
            last_error: l.and_then(|l| l.last_error.clone()),
            updated_at: l.map(|l| l.updated_at.clone()).unwrap_or_default(),
            medium_needed,
            queue,
            name,
            kind,
        });
    }
    let instances_total: i64 = conn.query_row(
        "SELECT count(*) FROM instances WHERE current = 1",
        [],
        |r| r.get(0),
    )?;
    let instances_verified: i64 = conn.query_row(
        "SELECT count(*) FROM instances i WHERE i.current = 1 AND EXISTS
           (SELECT 1 FROM copies c WHERE c.sha256 = i.sha256 AND c.verified = 1)",
        [],
        |r| r.get(0),
    )?;
    Ok(ArchiveStatus {
        medium_needed: out.iter().any(|t| t.medium_needed),
        targets: out,
        instances_verified,
        instances_total,
    })
}

/// The one sentence every screen uses while a medium is needed (the alarm, the overview's
/// headline): which medium, in which drive, and the short name of a full one still in it.
/// `None` when no target needs one.
pub fn medium_needed_message(status: &ArchiveStatus) -> Option<String> {
    let waiting: Vec<&TargetStatus> = status.targets.iter().filter(|t| t.medium_needed).collect();
    let word = |kind: &str| if kind == "optical" { "disc" } else { "tape" };
    let why = "(images are waiting for their cold copy)";
    Some(match waiting.as_slice() {
        [] => return None,
        [t] => {
            let w = word(&t.kind);
            let mut cap = w.to_string();
            cap[..1].make_ascii_uppercase();
            let what = match &t.volume {
                Some(v) if v.state == VolumeState::Full => format!("{cap} {} is full", v.name),
                Some(v) => format!("{cap} {} cannot be written", v.name),
                None => format!("{cap} full or missing"),
            };
            format!("{what}: load a new {w} in the {} drive {why}", t.name)
        }
        many => format!(
            "Media needed: load a new one in the {} drives {why}",
            many.iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    })
}

/// Is this instance on the store with at least one verified cold copy? (Storage commitment.)
pub fn has_verified_copy(
    conn: &Connection,
    sop_instance_uid: &str,
    sop_class_uid: &str,
) -> Result<bool, ArchiveError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM instances i JOIN copies c ON c.sha256 = i.sha256
           AND c.verified = 1 WHERE i.sop_instance_uid = ?1 AND i.sop_class_uid = ?2)",
        params![sop_instance_uid, sop_class_uid],
        |r| r.get(0),
    )?)
}

/// How a study left the box, if it was rejected or destroyed: (`rejected` or `destroyed`,
/// when). A study rejected series by series names its last rejection.
pub fn study_removed(
    conn: &Connection,
    study_uid: &str,
) -> Result<Option<(String, String)>, ArchiveError> {
    Ok(conn
        .query_row(
            "SELECT kind, removed_at FROM removed_studies WHERE study_uid = ?1
             ORDER BY id DESC LIMIT 1",
            [study_uid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Where the verified copies of a study's current instances are, one row per copy (never a
/// copy marked removed: rejected or expired).
pub fn study_copies(conn: &Connection, study_uid: &str) -> Result<Vec<CopyRow>, ArchiveError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT i.sha256, v.volume_id, {NAME_OF_V}, v.kind, b.file_number, v.location
         FROM studies st JOIN series se ON se.study_ref = st.id
         JOIN instances i ON i.series_ref = se.id AND i.current = 1
         JOIN copies c ON c.sha256 = i.sha256 AND c.verified = 1 AND c.removed IS NULL
         JOIN bundles b ON b.id = c.bundle_ref JOIN volumes v ON v.id = b.volume_ref
         WHERE st.study_uid = ?1 ORDER BY v.volume_id, b.file_number"
    ))?;
    let rows = stmt.query_map([study_uid], |r| {
        Ok(CopyRow {
            sha256: r.get(0)?,
            volume_id: r.get(1)?,
            volume_name: r.get(2)?,
            kind: r.get(3)?,
            file_number: r.get(4)?,
            location: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
