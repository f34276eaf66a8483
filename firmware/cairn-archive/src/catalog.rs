//! The catalog: volumes, bundles, copies and the archive queue in the index (schema migration
//! 4, see `docs/interface.md`). Reads open `cairn.db` read-only; every change goes through the
//! store's writer ([`Store::transact`]) together with its audit row.
//!
//! This is the library API the CLI and the web panel call: [`archive_status`],
//! [`list_volumes`], [`set_location`] (in-process, with a [`Store`]), and [`request`] (hand
//! flush, eject, load, scan, restore or a location change to the daemon's archive thread).

use crate::bundle::Member;
use crate::label::Label;
use crate::requests::{self, Answer, Request, STATUS_FILE};
use crate::ArchiveError;
use cairn_audit::AuditEvent;
use cairn_store::{DataDir, Store};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A volume's recording state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeState {
    /// Nothing recorded (never stored in the catalog for long: loading labels it).
    Blank,
    /// Labelled, no bundle yet.
    Labelled,
    /// Holds bundles, takes more.
    Append,
    /// Past its early warning or out of space: takes no more.
    Full,
    /// Taken out of the drive.
    Ejected,
    /// A write or verify failed: takes no more, check it.
    Error,
}

impl VolumeState {
    /// The name stored in the index.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeState::Blank => "blank",
            VolumeState::Labelled => "labelled",
            VolumeState::Append => "append",
            VolumeState::Full => "full",
            VolumeState::Ejected => "ejected",
            VolumeState::Error => "error",
        }
    }
    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "blank" => VolumeState::Blank,
            "labelled" => VolumeState::Labelled,
            "append" => VolumeState::Append,
            "full" => VolumeState::Full,
            "ejected" => VolumeState::Ejected,
            "error" => VolumeState::Error,
            _ => return None,
        })
    }
    /// New bundles may be written.
    pub fn writable(self) -> bool {
        matches!(self, VolumeState::Labelled | VolumeState::Append)
    }
}

/// Where a volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// In its target's drive.
    InDrive,
    /// On the shelf on site.
    OnsiteShelf,
    /// In the offsite vault.
    OffsiteVault,
    /// Back from the vault.
    Returned,
    /// Out of service.
    Retired,
}

impl Location {
    /// The name stored in the index and used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::InDrive => "in_drive",
            Location::OnsiteShelf => "onsite_shelf",
            Location::OffsiteVault => "offsite_vault",
            Location::Returned => "returned",
            Location::Retired => "retired",
        }
    }
    /// Where the volume is, in words for a person ("in the offsite vault").
    pub fn words(self) -> &'static str {
        match self {
            Location::InDrive => "in the drive",
            Location::OnsiteShelf => "on the on-site shelf",
            Location::OffsiteVault => "in the offsite vault",
            Location::Returned => "returned",
            Location::Retired => "retired",
        }
    }
    /// Parse a name (`in_drive`, `onsite_shelf`, `offsite_vault`, `returned`, `retired`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in_drive" => Location::InDrive,
            "onsite_shelf" => Location::OnsiteShelf,
            "offsite_vault" => Location::OffsiteVault,
            "returned" => Location::Returned,
            "retired" => Location::Retired,
            _ => return None,
        })
    }
}

/// One volume as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRow {
    /// Its short name, printed on the cartridge or disc: what people read and type
    /// (the volume id for volumes labelled before names existed).
    pub name: String,
    /// Volume id (from its label): unique, internal.
    pub volume_id: String,
    /// `tape` or `optical`.
    pub kind: String,
    /// The box that labelled it.
    pub box_id: String,
    /// The cold target it belongs to.
    pub target: Option<String>,
    /// Recording state.
    pub state: VolumeState,
    /// Where it is.
    pub location: Location,
    /// Bytes of bundles written on it.
    pub bytes_written: i64,
    /// Capacity when known.
    pub capacity_bytes: Option<i64>,
    /// Bundles verified on it.
    pub verified_bundles: i64,
    /// Verified object copies on it.
    pub verified_copies: i64,
    /// When labelled.
    pub labelled_at: String,
    /// Last state or location change.
    pub updated_at: String,
    /// Who made it.
    pub updated_by: String,
}

/// A bundle as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRow {
    /// What people call it: `<volume name>.<file number>` (`DEMO01.3`).
    pub name: String,
    /// `<volume id>.<file number>`: unique, internal.
    pub bundle_id: String,
    /// Its volume.
    pub volume_id: String,
    /// Tape file number or optical session number.
    pub file_number: i64,
    /// `writing`, `verified`, `incomplete`, `failed`.
    pub state: String,
    /// Objects in it.
    pub members: i64,
    /// Bytes (tar stream, or session files).
    pub bytes: i64,
    /// When verified.
    pub verified_at: Option<String>,
}

/// The archive queue of one target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// Instances waiting for a verified copy.
    pub instances: i64,
    /// Their bytes.
    pub bytes: i64,
    /// When the oldest was queued.
    pub oldest_queued_at: Option<String>,
}

/// What the archive thread publishes about one target (`archive.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveTarget {
    /// Target name.
    pub name: String,
    /// The drive: `ready`, `no medium`, `write protected`, `foreign medium`, `unreadable
    /// medium` (a tape whose beginning cannot be read), `error`.
    pub drive: String,
    /// What the thread does now (`idle`, `writing B..`, `verifying B..`...).
    pub activity: String,
    /// No writable medium while instances wait.
    pub medium_needed: bool,
    /// A sentence for people.
    pub message: String,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// When this was written.
    pub updated_at: String,
    /// Since this thread started: bytes of objects written and verified...
    #[serde(default)]
    pub bytes_verified: u64,
    /// ...milliseconds spent writing and verifying bundles (the rest it waited for input)...
    #[serde(default)]
    pub busy_ms: u64,
    /// ...and milliseconds since it started.
    #[serde(default)]
    pub uptime_ms: u64,
}

/// The published live status file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStatus {
    /// One per target.
    pub targets: Vec<LiveTarget>,
}

/// Status of one cold target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// Its name.
    pub name: String,
    /// `tape` or `optical`.
    pub kind: String,
    /// Live drive state (`unknown` when the daemon has not published one).
    pub drive: String,
    /// What the archive thread is doing.
    pub activity: String,
    /// The volume in the drive, if the catalog knows one.
    pub volume: Option<VolumeRow>,
    /// The queue.
    pub queue: QueueStatus,
    /// The last verified bundle.
    pub last_verified: Option<BundleRow>,
    /// No writable medium while instances wait.
    pub medium_needed: bool,
    /// A sentence for people.
    pub message: String,
    /// The last error.
    pub last_error: Option<String>,
    /// When the archive thread last published this (empty: never).
    pub updated_at: String,
}

/// Status of the whole archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveStatus {
    /// One per enabled cold target.
    pub targets: Vec<TargetStatus>,
    /// Any target needs a medium.
    pub medium_needed: bool,
    /// Instances with at least one verified cold copy.
    pub instances_verified: i64,
    /// Current instances in the store.
    pub instances_total: i64,
}

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

/// Read the published live status (empty when there is none).
pub fn read_live(data: &DataDir) -> LiveStatus {
    std::fs::read(data.root().join(STATUS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

const VOLUME_SELECT: &str = "SELECT v.volume_id, v.kind, v.box_id, t.name, v.state, v.location,
    v.bytes_written, v.capacity_bytes,
    (SELECT count(*) FROM bundles b WHERE b.volume_ref = v.id AND b.state = 'verified'),
    (SELECT count(*) FROM copies c JOIN bundles b ON b.id = c.bundle_ref
       WHERE b.volume_ref = v.id AND c.verified = 1),
    v.labelled_at, v.updated_at, v.updated_by, coalesce(n.name, v.volume_id)
    FROM volumes v LEFT JOIN cold_targets t ON t.id = v.target_ref
    LEFT JOIN volume_names n ON n.volume_ref = v.id";

/// A volume's short name in SQL (`v` the volumes row): its name, else its id.
const NAME_OF_V: &str =
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

/// Hand a request to the daemon's archive thread and wait for its answer. Flush and eject
/// answer only after verification, so give them minutes.
pub fn request(data: &DataDir, req: &Request, timeout: Duration) -> Result<Answer, ArchiveError> {
    requests::send(data.root(), req, timeout).map_err(|e| ArchiveError::Refused(e.to_string()))
}

fn audit(actor: &str, action: &str, object: &str, detail: serde_json::Value) -> AuditEvent {
    AuditEvent {
        actor: actor.into(),
        action: action.into(),
        object: object.into(),
        detail: detail.to_string(),
    }
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
        c.execute(
            "UPDATE volumes SET location = ?2, updated_at = ?3, updated_by = ?4
             WHERE volume_id = ?1",
            params![vid, location.as_str(), now, by],
        )?;
        Ok((
            Ok(()),
            vec![audit(
                &by,
                "volume-location",
                &vid,
                serde_json::json!({"from": cur, "to": location.as_str(), "name": name}),
            )],
        ))
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
            c.execute(
                "UPDATE volumes SET state = ?2, updated_at = ?3, updated_by = ?4
                 WHERE volume_id = ?1",
                params![vid, state.as_str(), now, by],
            )?;
            events.push(audit(
                &by,
                "volume-state",
                &vid,
                serde_json::json!({"from": cs, "to": state.as_str(), "why": why}),
            ));
        }
        if let Some(l) = location {
            if cl != l.as_str() {
                c.execute(
                    "UPDATE volumes SET location = ?2, updated_at = ?3, updated_by = ?4
                     WHERE volume_id = ?1",
                    params![vid, l.as_str(), now, by],
                )?;
                events.push(audit(
                    &by,
                    "volume-location",
                    &vid,
                    serde_json::json!({"from": cl, "to": l.as_str()}),
                ));
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

/// One verified copy of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRow {
    /// The object.
    pub sha256: String,
    /// Its volume's id (internal).
    pub volume_id: String,
    /// Its volume's short name (what people read and type).
    pub volume_name: String,
    /// `tape` or `optical`.
    pub kind: String,
    /// The bundle's tape file or disc session number.
    pub file_number: i64,
    /// Where the volume is (`in_drive`, `onsite_shelf`...).
    pub location: String,
}

/// Where the verified copies of a study's current instances are, one row per copy.
pub fn study_copies(conn: &Connection, study_uid: &str) -> Result<Vec<CopyRow>, ArchiveError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT i.sha256, v.volume_id, {NAME_OF_V}, v.kind, b.file_number, v.location
         FROM studies st JOIN series se ON se.study_ref = st.id
         JOIN instances i ON i.series_ref = se.id AND i.current = 1
         JOIN copies c ON c.sha256 = i.sha256 AND c.verified = 1
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
                c.execute(
                    "INSERT OR IGNORE INTO copies (bundle_ref, sha256, sop_instance_uid, size,
                       verified) VALUES (?1, ?2, ?3, ?4, ?5)",
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
