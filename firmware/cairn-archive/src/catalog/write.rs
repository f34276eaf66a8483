//! Catalog changes, each with its audit row: locations, states, targets, volumes, bundles, scans.

use super::read::NAME_OF_V;
use super::types::*;
use crate::bundle::Member;
use crate::label::Label;
use crate::ArchiveError;
use cairn_audit::AuditEvent;
use cairn_store::Store;
use rusqlite::{params, Connection, OptionalExtension};

fn audit(actor: &str, action: &str, object: &str, detail: serde_json::Value) -> AuditEvent {
    AuditEvent {
        actor: actor.into(),
        action: action.into(),
        object: object.into(),
        detail: detail.to_string(),
    }
}

/// Set one `column` (`state` or `location`) of volume `vid` to `value`, with who and when.
/// Returns its audit row (`volume-state` or `volume-location`, with `detail`).
fn change_volume(
    c: &Connection,
    column: &str,
    vid: &str,
    value: &str,
    now: &str,
    by: &str,
    detail: serde_json::Value,
) -> rusqlite::Result<AuditEvent> {
    c.execute(
        &format!(
            "UPDATE volumes SET {column} = ?2, updated_at = ?3, updated_by = ?4
             WHERE volume_id = ?1"
        ),
        params![vid, value, now, by],
    )?;
    Ok(audit(by, &format!("volume-{column}"), vid, detail))
}

/// Record where a volume is now (audited with who). `volume` is its short name (or its volume
/// id). Refuses `in_drive` (only loading puts a volume there) and a volume that is in a drive
/// (eject it first).
pub fn set_location(
    store: &Store,
    volume: &str,
    location: Location,
    by: &str,
) -> Result<(), ArchiveError> {
    if location == Location::InDrive {
        return Err(ArchiveError::Refused(
            "a volume goes into a drive by loading it, not by a location change".into(),
        ));
    }
    let (typed, by) = (volume.to_string(), by.to_string());
    let r = store.transact(move |c, now| {
        let cur: Option<(String, String, String)> = c
            .query_row(
                &format!(
                    "SELECT v.volume_id, {NAME_OF_V}, v.location FROM volumes v
                     WHERE v.volume_id = ?1 OR v.id IN
                       (SELECT volume_ref FROM volume_names WHERE name = ?1)
                     ORDER BY v.volume_id = ?1 LIMIT 1"
                ),
                [&typed],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((vid, name, cur)) = cur else {
            return Ok((Err(format!("no volume {typed} in the catalog")), vec![]));
        };
        if cur == "in_drive" {
            return Ok((Err(format!("{name} is in a drive: eject it first")), vec![]));
        }
        if cur == location.as_str() {
            return Ok((Ok(()), vec![]));
        }
        let ev = change_volume(
            c,
            "location",
            &vid,
            location.as_str(),
            now,
            &by,
            serde_json::json!({"from": cur, "to": location.as_str(), "name": name}),
        )?;
        Ok((Ok(()), vec![ev]))
    })?;
    r.map_err(ArchiveError::Refused)
}

/// Set a volume's state (and optionally location), audited. No-op when unchanged.
pub fn set_state(
    store: &Store,
    volume_id: &str,
    state: VolumeState,
    location: Option<Location>,
    by: &str,
    why: &str,
) -> Result<(), ArchiveError> {
    let (vid, by, why) = (volume_id.to_string(), by.to_string(), why.to_string());
    store.transact(move |c, now| {
        let cur: Option<(String, String)> = c
            .query_row(
                "SELECT state, location FROM volumes WHERE volume_id = ?1",
                [&vid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((cs, cl)) = cur else {
            return Ok(((), vec![]));
        };
        let mut events = Vec::new();
        if cs != state.as_str() {
            let detail = serde_json::json!({"from": cs, "to": state.as_str(), "why": why});
            events.push(change_volume(
                c,
                "state",
                &vid,
                state.as_str(),
                now,
                &by,
                detail,
            )?);
        }
        if let Some(l) = location {
            if cl != l.as_str() {
                let detail = serde_json::json!({"from": cl, "to": l.as_str()});
                events.push(change_volume(
                    c,
                    "location",
                    &vid,
                    l.as_str(),
                    now,
                    &by,
                    detail,
                )?);
            }
        }
        Ok(((), events))
    })?;
    Ok(())
}

/// Make the catalog's cold targets match the configuration: add new ones, enable listed ones,
/// disable the rest (never delete: their history stays). Returns the targets' row ids by name.
pub fn sync_targets(
    store: &Store,
    targets: &[(String, String)],
) -> Result<Vec<(String, i64)>, ArchiveError> {
    let targets = targets.to_vec();
    Ok(store.transact(move |c, now| {
        let mut events = Vec::new();
        c.execute("UPDATE cold_targets SET enabled = 0", [])?;
        let mut ids = Vec::new();
        for (name, kind) in &targets {
            let n = c.execute(
                "INSERT INTO cold_targets (name, kind, enabled, added_at) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT(name) DO NOTHING",
                params![name, kind, now],
            )?;
            if n > 0 {
                // a new target gets every instance already stored
                let id = c.last_insert_rowid();
                let queued = c.execute(
                    "INSERT OR IGNORE INTO archive_queue (target_ref, instance_ref, queued_at)
                     SELECT ?1, id, ?2 FROM instances",
                    params![id, now],
                )?;
                events.push(audit(
                    "system",
                    "archive-target",
                    name,
                    serde_json::json!({"kind": kind, "change": "added", "queued": queued}),
                ));
            }
            c.execute(
                "UPDATE cold_targets SET enabled = 1, kind = ?2 WHERE name = ?1",
                params![name, kind],
            )?;
            let id: i64 =
                c.query_row("SELECT id FROM cold_targets WHERE name = ?1", [name], |r| {
                    r.get(0)
                })?;
            ids.push((name.clone(), id));
        }
        Ok((ids, events))
    })?)
}

/// Record a newly labelled (or newly seen) volume in a target's drive. An existing row is
/// moved into the drive instead.
pub fn register_volume(
    store: &Store,
    label: &Label,
    target_id: i64,
    state: VolumeState,
    capacity: Option<u64>,
    by: &str,
) -> Result<(), ArchiveError> {
    let (l, by) = (label.clone(), by.to_string());
    store.transact(move |c, now| {
        let existing: Option<(String, String)> = c
            .query_row(
                "SELECT state, location FROM volumes WHERE volume_id = ?1",
                [&l.volume_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let mut events = Vec::new();
        // a drive holds one volume: any other the catalog still places in this drive was taken
        // out without an eject
        let stale: Vec<(String, String)> = {
            let mut st = c.prepare(
                "SELECT volume_id, state FROM volumes WHERE target_ref = ?1
                   AND location = 'in_drive' AND volume_id != ?2",
            )?;
            let rows = st.query_map(params![target_id, l.volume_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        for (vid, vstate) in stale {
            let to = if matches!(vstate.as_str(), "labelled" | "append") {
                "ejected"
            } else {
                vstate.as_str()
            };
            c.execute(
                "UPDATE volumes SET location = 'onsite_shelf', state = ?2, updated_at = ?3,
                   updated_by = ?4 WHERE volume_id = ?1",
                params![vid, to, now, by],
            )?;
            if to != vstate {
                events.push(audit(
                    &by,
                    "volume-state",
                    &vid,
                    serde_json::json!({"from": vstate, "to": to,
                        "why": "another volume was found in its drive"}),
                ));
            }
            events.push(audit(
                &by,
                "volume-location",
                &vid,
                serde_json::json!({"from": "in_drive", "to": "onsite_shelf",
                    "why": "another volume was found in its drive"}),
            ));
        }
        match existing {
            None => {
                c.execute(
                    "INSERT INTO volumes (volume_id, kind, box_id, target_ref, state, location,
                       format_version, block_size, capacity_bytes, labelled_at, updated_at,
                       updated_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'in_drive', ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        l.volume_id,
                        l.kind,
                        l.box_id,
                        target_id,
                        state.as_str(),
                        l.format_version,
                        l.block_size,
                        capacity.map(|v| v as i64),
                        l.labelled_at,
                        now,
                        by
                    ],
                )?;
                if !l.name.is_empty() {
                    // a name another volume of the catalog already has stays with that one:
                    // this volume is then called by its id
                    c.execute(
                        "INSERT OR IGNORE INTO volume_names (volume_ref, name) VALUES (?1, ?2)",
                        params![c.last_insert_rowid(), l.name],
                    )?;
                }
                events.push(audit(
                    &by,
                    "volume-state",
                    &l.volume_id,
                    serde_json::json!({"from": "blank", "to": state.as_str(), "kind": l.kind,
                        "name": l.short_name()}),
                ));
                events.push(audit(
                    &by,
                    "volume-location",
                    &l.volume_id,
                    serde_json::json!({"from": null, "to": "in_drive"}),
                ));
            }
            Some((cs, cl)) => {
                c.execute(
                    "UPDATE volumes SET state = ?2, location = 'in_drive', target_ref = ?3,
                       updated_at = ?4, updated_by = ?5 WHERE volume_id = ?1",
                    params![l.volume_id, state.as_str(), target_id, now, by],
                )?;
                if !l.name.is_empty() {
                    c.execute(
                        "INSERT OR IGNORE INTO volume_names (volume_ref, name)
                         SELECT id, ?2 FROM volumes WHERE volume_id = ?1",
                        params![l.volume_id, l.name],
                    )?;
                }
                if cs != state.as_str() {
                    events.push(audit(
                        &by,
                        "volume-state",
                        &l.volume_id,
                        serde_json::json!({"from": cs, "to": state.as_str()}),
                    ));
                }
                if cl != "in_drive" {
                    events.push(audit(
                        &by,
                        "volume-location",
                        &l.volume_id,
                        serde_json::json!({"from": cl, "to": "in_drive"}),
                    ));
                }
            }
        }
        Ok(((), events))
    })?;
    Ok(())
}

/// Start a bundle: catalog rows for it and its copies (unverified). Rows of unverified bundles
/// at this position or after it on the volume are dropped first (the medium no longer holds
/// them: writing discards everything after the write position). Returns the bundle row id.
pub fn begin_bundle(
    store: &Store,
    volume_id: &str,
    file_number: i64,
    bundle_id: &str,
    members: &[Member],
) -> Result<i64, ArchiveError> {
    let (vid, bid) = (volume_id.to_string(), bundle_id.to_string());
    let ms: Vec<(String, String, i64)> = members
        .iter()
        .map(|m| {
            (
                m.sha256.clone(),
                m.record.sop_instance_uid.clone(),
                m.size as i64,
            )
        })
        .collect();
    Ok(store.transact(move |c, now| {
        let vref: i64 =
            c.query_row("SELECT id FROM volumes WHERE volume_id = ?1", [&vid], |r| {
                r.get(0)
            })?;
        c.execute(
            "DELETE FROM copies WHERE bundle_ref IN (SELECT id FROM bundles
               WHERE volume_ref = ?1 AND file_number >= ?2 AND state != 'verified')",
            params![vref, file_number],
        )?;
        c.execute(
            "DELETE FROM bundles WHERE volume_ref = ?1 AND file_number >= ?2
               AND state != 'verified'",
            params![vref, file_number],
        )?;
        c.execute(
            "INSERT INTO bundles (bundle_id, volume_ref, file_number, state, members, started_at)
             VALUES (?1, ?2, ?3, 'writing', ?4, ?5)",
            params![bid, vref, file_number, ms.len() as i64, now],
        )?;
        let id = c.last_insert_rowid();
        let mut ins = c.prepare_cached(
            "INSERT OR IGNORE INTO copies (bundle_ref, sha256, sop_instance_uid, size, verified)
             VALUES (?1, ?2, ?3, ?4, 0)",
        )?;
        for (sha, uid, size) in &ms {
            ins.execute(params![id, sha, uid, size])?;
        }
        Ok((id, vec![]))
    })?)
}

/// End a bundle that is not verified: `incomplete` (early warning) or `failed`.
pub fn end_bundle_unverified(
    store: &Store,
    bundle_row: i64,
    state: &'static str,
    bytes: u64,
    why: &str,
) -> Result<(), ArchiveError> {
    let why = why.to_string();
    store.transact(move |c, now| {
        c.execute(
            "UPDATE bundles SET state = ?2, bytes = ?3, closed_at = ?4 WHERE id = ?1",
            params![bundle_row, state, bytes as i64, now],
        )?;
        let bid = bundle_id_of(c, bundle_row)?;
        Ok((
            (),
            vec![audit(
                "system",
                "bundle",
                &bid,
                serde_json::json!({"state": state, "why": why}),
            )],
        ))
    })?;
    Ok(())
}

/// The bundle was read back: mark the copies whose SHA-256 matched verified, the bundle
/// verified (when all did), and delete the target's queue rows of the verified instances,
/// all in one durable commit. Returns how many copies were verified.
#[allow(clippy::too_many_arguments)]
pub fn bundle_verified(
    store: &Store,
    bundle_row: i64,
    target_id: i64,
    volume_id: &str,
    good: &[String],
    all_good: bool,
    bytes: u64,
    head: (i64, String),
    manifest_sha256: String,
) -> Result<usize, ArchiveError> {
    let good = good.to_vec();
    let vid = volume_id.to_string();
    Ok(store.transact(move |c, now| {
        let mut n = 0usize;
        {
            let mut mark = c.prepare_cached(
                "UPDATE copies SET verified = 1 WHERE bundle_ref = ?1 AND sha256 = ?2",
            )?;
            let mut dequeue = c.prepare_cached(
                "DELETE FROM archive_queue WHERE target_ref = ?1 AND instance_ref IN
                   (SELECT id FROM instances WHERE sha256 = ?2)",
            )?;
            for sha in &good {
                n += mark.execute(params![bundle_row, sha])?;
                dequeue.execute(params![target_id, sha])?;
            }
        }
        let state = if all_good { "verified" } else { "failed" };
        c.execute(
            "UPDATE bundles SET state = ?2, bytes = ?3, closed_at = coalesce(closed_at, ?4),
               verified_at = ?4, audit_seq = ?5, audit_hash = ?6, manifest_sha256 = ?7
             WHERE id = ?1",
            params![
                bundle_row,
                state,
                bytes as i64,
                now,
                head.0,
                head.1,
                manifest_sha256
            ],
        )?;
        c.execute(
            "UPDATE volumes SET bytes_written = bytes_written + ?2,
               state = CASE WHEN state = 'labelled' THEN 'append' ELSE state END,
               updated_at = ?3 WHERE volume_id = ?1",
            params![vid, bytes as i64, now],
        )?;
        let bid = bundle_id_of(c, bundle_row)?;
        Ok((
            n,
            vec![audit(
                "system",
                "bundle",
                &bid,
                serde_json::json!({"state": state, "verified_copies": n, "volume": vid}),
            )],
        ))
    })?)
}

/// Record what a scan read from a volume: the volume row (in the drive), and for each bundle
/// found its row and its copies (verified only when the bytes matched the manifest); queue rows
/// of instances now verified on this target are dropped. Rows of the volume's bundles are
/// replaced.
pub fn record_scan(
    store: &Store,
    label: &Label,
    target_id: i64,
    capacity: Option<u64>,
    found: &[(i64, crate::bundle::ReadBack, u64)],
    by: &str,
) -> Result<(), ArchiveError> {
    // the volume row first (state from what was found)
    let any_incomplete = found.iter().any(|(_, rb, _)| !rb.complete);
    let state = if any_incomplete {
        VolumeState::Full
    } else if found.iter().any(|(_, rb, _)| rb.all_good()) {
        VolumeState::Append
    } else {
        VolumeState::Labelled
    };
    register_volume(store, label, target_id, state, capacity, by)?;
    type Scanned = (
        i64,
        String,
        String,
        u64,
        Vec<(String, String, i64, bool)>,
        (i64, String),
        String,
    );
    let rows: Vec<Scanned> = found
        .iter()
        .map(|(file, rb, bytes)| {
            let good: std::collections::HashSet<&String> = rb.good.iter().collect();
            let copies = rb
                .members
                .iter()
                .map(|m| {
                    (
                        m.sha256.clone(),
                        m.record.sop_instance_uid.clone(),
                        m.size as i64,
                        good.contains(&m.sha256),
                    )
                })
                .collect();
            let state = if rb.all_good() {
                "verified"
            } else if rb.complete {
                "failed"
            } else {
                "incomplete"
            };
            let bid = rb
                .head
                .as_ref()
                .map(|h| h.bundle_id.clone())
                .unwrap_or_else(|| format!("{}.{}", label.volume_id, file));
            let head = rb
                .head
                .as_ref()
                .map(|h| (h.audit_seq, h.audit_hash.clone()))
                .unwrap_or((0, String::new()));
            let bytes = if state == "verified" { *bytes } else { 0 };
            (
                *file,
                bid,
                state.to_string(),
                bytes,
                copies,
                head,
                rb.manifest_sha256.clone(),
            )
        })
        .collect();
    let vid = label.volume_id.clone();
    let by = by.to_string();
    store.transact(move |c, now| {
        let vref: i64 =
            c.query_row("SELECT id FROM volumes WHERE volume_id = ?1", [&vid], |r| {
                r.get(0)
            })?;
        c.execute(
            "DELETE FROM copies WHERE bundle_ref IN (SELECT id FROM bundles WHERE volume_ref = ?1)",
            [vref],
        )?;
        c.execute("DELETE FROM bundles WHERE volume_ref = ?1", [vref])?;
        let mut total = 0i64;
        for (file, bid, state, bytes, copies, head, manifest_sha) in &rows {
            c.execute(
                "INSERT INTO bundles (bundle_id, volume_ref, file_number, state, members, bytes,
                   audit_seq, audit_hash, manifest_sha256, started_at, closed_at, verified_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?10, ?9, ?9, CASE WHEN ?4 = 'verified'
                   THEN ?9 END)",
                params![
                    bid,
                    vref,
                    file,
                    state,
                    copies.len() as i64,
                    *bytes as i64,
                    head.0,
                    head.1,
                    now,
                    manifest_sha
                ],
            )?;
            let bref = c.last_insert_rowid();
            if state == "verified" {
                total += *bytes as i64;
            }
            for (sha, uid, size, ok) in copies {
                let verified = *ok && state == "verified";
                // a copy of a rejected or destroyed instance keeps its mark (it stays removed)
                c.execute(
                    "INSERT OR IGNORE INTO copies (bundle_ref, sha256, sop_instance_uid, size,
                       verified, removed) VALUES (?1, ?2, ?3, ?4, ?5,
                       (SELECT CASE rs.kind WHEN 'rejected' THEN 'rejected' ELSE 'expired' END
                        FROM removed_instances ri JOIN removed_studies rs ON rs.id = ri.removed_ref
                        WHERE ri.sop_instance_uid = ?3 AND ri.sha256 = ?2))",
                    params![bref, sha, uid, size, verified as i64],
                )?;
                if verified {
                    c.execute(
                        "DELETE FROM archive_queue WHERE target_ref = ?1 AND instance_ref IN
                           (SELECT id FROM instances WHERE sha256 = ?2)",
                        params![target_id, sha],
                    )?;
                }
            }
        }
        c.execute(
            "UPDATE volumes SET bytes_written = ?2 WHERE id = ?1",
            params![vref, total],
        )?;
        Ok((
            (),
            vec![audit(
                &by,
                "archive-scan",
                &vid,
                serde_json::json!({"bundles": rows.len()}),
            )],
        ))
    })?;
    Ok(())
}

/// The bundle id (`<volume id>.<file number>`) of a `bundles` row.
fn bundle_id_of(c: &rusqlite::Connection, bundle_row: i64) -> rusqlite::Result<String> {
    c.query_row(
        "SELECT bundle_id FROM bundles WHERE id = ?1",
        [bundle_row],
        |r| r.get(0),
    )
}
