//! Recycling a volume in the catalog: once every copy it holds was removed (its images were
//! rejected or expired and destroyed), and after its medium was erased, the catalog forgets its
//! bundles and copies and keeps the volume, blank, with one `volume-recycle` audit row.

use super::types::VolumeRow;
use crate::ArchiveError;
use cairn_audit::AuditEvent;
use cairn_store::Store;
use rusqlite::{params, OptionalExtension};

/// Why `v` cannot be recycled, in words; `None` when it can.
pub fn not_recyclable_why(v: &VolumeRow) -> Option<String> {
    if v.recyclable {
        return None;
    }
    Some(if v.verified_copies == 0 && v.verified_bundles == 0 {
        format!(
            "volume {} holds no image copies ({}): there is nothing to recycle",
            v.name,
            v.state.as_str()
        )
    } else {
        format!(
            "volume {} still holds copies of images that were neither rejected nor expired: \
             it cannot be recycled until every image on it is removed",
            v.name
        )
    })
}

/// What a recycle forgot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recycled {
    /// Bundles forgotten.
    pub bundles: i64,
    /// Copies forgotten.
    pub copies: i64,
}

/// In one writer transaction: check again that volume `volume_id` holds copies and that every
/// one was removed, forget its bundles and copies, and record it `blank` (nothing written),
/// audited `volume-recycle` by `by`. Call it only after the medium was erased.
pub fn recycle_volume(store: &Store, volume_id: &str, by: &str) -> Result<Recycled, ArchiveError> {
    let (vid, by) = (volume_id.to_owned(), by.to_owned());
    let done = store.transact(move |c, now| {
        let row: Option<(i64, String, String)> = c
            .query_row(
                &format!(
                    "SELECT v.id, {}, v.state FROM volumes v WHERE v.volume_id = ?1",
                    super::read::NAME_OF_V
                ),
                [&vid],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((id, name, state)) = row else {
            return Ok((Err(format!("no volume {vid} in the catalog")), vec![]));
        };
        let (copies, kept, bundles): (i64, i64, i64) = c.query_row(
            "SELECT count(c.id), count(c.id) - count(c.removed),
                    (SELECT count(*) FROM bundles WHERE volume_ref = ?1)
             FROM copies c JOIN bundles b ON b.id = c.bundle_ref WHERE b.volume_ref = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        if copies == 0 || kept > 0 {
            return Ok((
                Err(format!(
                    "volume {name} is not recyclable: {kept} of its {copies} copies were not removed"
                )),
                vec![],
            ));
        }
        c.execute(
            "DELETE FROM copies WHERE bundle_ref IN (SELECT id FROM bundles WHERE volume_ref = ?1)",
            [id],
        )?;
        c.execute("DELETE FROM bundles WHERE volume_ref = ?1", [id])?;
        c.execute(
            "UPDATE volumes SET state = 'blank', bytes_written = 0, updated_at = ?2,
               updated_by = ?3 WHERE id = ?1",
            params![id, now, by],
        )?;
        let event = AuditEvent {
            actor: by.clone(),
            action: "volume-recycle".into(),
            object: vid.clone(),
            detail: serde_json::json!({
                "name": name,
                "from": state,
                "to": "blank",
                "bundles_forgotten": bundles,
                "copies_forgotten": copies,
            })
            .to_string(),
        };
        Ok((Ok(Recycled { bundles, copies }), vec![event]))
    })?;
    done.map_err(ArchiveError::Refused)
}
