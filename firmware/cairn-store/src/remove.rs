//! Removing stored instances (a rejection or a destruction decided by `cairn-lifecycle`).
//!
//! A removal is two steps so that a crash never leaves a row without its file nor a file
//! without its row:
//! 1. inside one writer transaction ([`crate::Store::transact`]) [`remove_instances`] deletes
//!    the instance rows (their archive queue rows go with them), the series, studies and
//!    patients left empty, and records each object file no row names any more in
//!    `pending_unlinks`;
//! 2. once that transaction is durable, [`crate::Store::finish_unlinks`] deletes those files
//!    (clearing the immutable attribute of an archived one first) and forgets them.
//!
//! `Store::open` finishes what a crash left in `pending_unlinks` before it looks for files
//! without a row, so a removed file never ends in `quarantine/`.

use crate::index::sha_indexed;
use crate::layout::DataDir;
use crate::{Store, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// One removed instance row: what the tombstone and the catalog mark name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedInstance {
    /// Its SOP Instance UID.
    pub sop_instance_uid: String,
    /// The SHA-256 of its bytes (its object file's name).
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What [`remove_instances`] took out of the index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    /// Every instance row removed (every version of an instance is a row).
    pub instances: Vec<RemovedInstance>,
    /// Object files recorded in `pending_unlinks`.
    pub files: usize,
}

impl Removal {
    /// The bytes of the removed rows.
    pub fn bytes(&self) -> u64 {
        self.instances.iter().map(|i| i.size).sum()
    }
}

/// Inside the caller's writer transaction: delete the instance rows `ids` (unknown ids are
/// skipped), the series, studies and patients they leave empty, and record their object
/// files in `pending_unlinks`. A patient with hold rows (history) is kept, its name, birth date
/// and sex blanked (only the ID and issuer the holds name stay), and C-FIND does not answer a
/// patient without studies; released holds on a removed study are deleted with it (their
/// placing and release stay in the audit trail).
pub fn remove_instances(conn: &Connection, ids: &[i64]) -> Result<Removal, StoreError> {
    let mut removal = Removal::default();
    let mut series = Vec::new();
    for id in ids {
        let row: Option<(String, String, i64, i64)> = conn
            .prepare_cached(
                "SELECT sop_instance_uid, sha256, size, series_ref FROM instances WHERE id = ?1",
            )?
            .query_row(params![id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((uid, sha, size, series_ref)) = row else {
            continue;
        };
        conn.prepare_cached("DELETE FROM instances WHERE id = ?1")?
            .execute(params![id])?;
        conn.prepare_cached("DELETE FROM field_conflicts WHERE sop_instance_uid = ?1")?
            .execute(params![uid])?;
        if !series.contains(&series_ref) {
            series.push(series_ref);
        }
        removal.instances.push(RemovedInstance {
            sop_instance_uid: uid,
            sha256: sha,
            size: size.max(0) as u64,
        });
    }
    for inst in &removal.instances {
        if !sha_indexed(conn, &inst.sha256)? {
            removal.files += conn
                .prepare_cached("INSERT OR IGNORE INTO pending_unlinks (path) VALUES (?1)")?
                .execute(params![object_rel_path(&inst.sha256)])?;
        }
    }
    for s in series {
        remove_empty_series(conn, s)?;
    }
    Ok(removal)
}

/// Delete series `id` when no instance is left in it, then its study and patient likewise.
fn remove_empty_series(conn: &Connection, id: i64) -> Result<(), StoreError> {
    let study: Option<i64> = conn
        .query_row(
            "SELECT study_ref FROM series WHERE id = ?1
               AND NOT EXISTS (SELECT 1 FROM instances WHERE series_ref = ?1)",
            params![id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(study) = study else { return Ok(()) };
    conn.execute("DELETE FROM series WHERE id = ?1", params![id])?;
    let patient: Option<i64> = conn
        .query_row(
            "SELECT patient_ref FROM studies WHERE id = ?1
               AND NOT EXISTS (SELECT 1 FROM series WHERE study_ref = ?1)",
            params![study],
            |r| r.get(0),
        )
        .optional()?;
    let Some(patient) = patient else {
        return Ok(());
    };
    conn.execute(
        "DELETE FROM holds WHERE study_ref = ?1 AND released_at IS NOT NULL",
        params![study],
    )?;
    conn.execute("DELETE FROM studies WHERE id = ?1", params![study])?;
    conn.execute(
        "DELETE FROM patients WHERE id = ?1
           AND NOT EXISTS (SELECT 1 FROM studies WHERE patient_ref = ?1)
           AND NOT EXISTS (SELECT 1 FROM holds WHERE patient_ref = ?1)",
        params![patient],
    )?;
    // kept for its hold history: only the ID and issuer the holds name stay, and no expiry (it
    // holds nothing to keep; a new study gives it one again)
    let kept = conn.execute(
        "UPDATE patients SET name = '', name_norm = '', birth_date = '', sex = ''
         WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM studies WHERE patient_ref = ?1)",
        params![patient],
    )?;
    if kept > 0 {
        conn.execute(
            "DELETE FROM patient_retention WHERE patient_ref = ?1",
            params![patient],
        )?;
    }
    Ok(())
}

/// `objects/<aa>/<bb>/<sha256>.dcm`, relative to the data directory (as `pending_unlinks`
/// holds it).
fn object_rel_path(sha256: &str) -> String {
    format!(
        "objects/{}/{}/{sha256}.dcm",
        sha256.get(0..2).unwrap_or("not-a-sha256"),
        sha256.get(2..4).unwrap_or("not-a-sha256")
    )
}

/// Delete the files `pending_unlinks` names (none that an instance row names again: the same
/// bytes received since) and forget them. A file that cannot be deleted stays pending and is
/// tried again next time. Returns how many files were deleted. Runs in the writer (or before
/// it starts), so no store can place the same file between the check and the unlink.
pub(crate) fn unlink_pending(conn: &Connection, data: &DataDir) -> Result<usize, StoreError> {
    let paths: Vec<String> = conn
        .prepare("SELECT path FROM pending_unlinks ORDER BY path")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut deleted = 0usize;
    for rel in paths {
        let done = match sha_of(&rel) {
            Some(sha) if sha_indexed(conn, sha)? => true,
            Some(_) => match unlink(&data.root().join(&rel)) {
                Ok(gone) => {
                    deleted += usize::from(gone);
                    true
                }
                Err(e) => {
                    tracing::error!(error = %e, "a removed object file cannot be deleted yet");
                    false
                }
            },
            // not an object path: nothing of ours to delete
            None => true,
        };
        if done {
            conn.prepare_cached("DELETE FROM pending_unlinks WHERE path = ?1")?
                .execute(params![rel])?;
        }
    }
    Ok(deleted)
}

/// The SHA-256 an object path (`objects/aa/bb/<sha>.dcm`) is named by, if it is one.
fn sha_of(rel: &str) -> Option<&str> {
    let sha = rel
        .strip_prefix("objects/")?
        .get(6..)?
        .strip_suffix(".dcm")?;
    (crate::layout::is_sha256_hex(sha) && object_rel_path(sha) == rel).then_some(sha)
}

/// Delete one object file, clearing its immutable attribute first. `Ok(false)`: already gone.
fn unlink(path: &Path) -> Result<bool, StoreError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(false);
    }
    if let Err(e) = cairn_files::immutable::set_immutable(path, false) {
        return Err(StoreError::io(
            "clear the immutable attribute of a removed object",
            std::io::Error::other(e.to_string()),
        ));
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("delete a removed object", e)),
    }
}

impl Store {
    /// Delete the object files of removals already committed (`pending_unlinks`), in the
    /// writer's next group commit; returns how many files were deleted. Call it after the
    /// transaction that ran [`remove_instances`] returned (it is durable then).
    pub fn finish_unlinks(&self) -> Result<usize, StoreError> {
        let data = self.data_dir().clone();
        self.transact(move |conn, _now| Ok((unlink_pending(conn, &data)?, Vec::new())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_round_trip() {
        let sha = "ab".repeat(32);
        let rel = object_rel_path(&sha);
        assert_eq!(rel, format!("objects/ab/ab/{sha}.dcm"));
        assert_eq!(sha_of(&rel), Some(sha.as_str()));
        assert_eq!(sha_of("objects/ab/ab/../../x.dcm"), None);
        assert_eq!(sha_of("cairn.db"), None);
    }
}
