//! The storage tiers. A study is in `storage` until it is old enough (`[lifecycle]
//! archive_after` after its study date, or after the day its first instance was received when
//! it has no usable study date) *and* every current instance of it has a verified cold copy;
//! then it moves to `archive`, where it is fixed: the store refuses different bytes for its
//! instances and new instances into it, and its files get the Linux immutable attribute so
//! that nothing on the box can change or delete them.
//!
//! A verified copy is the one the storage commitment rule trusts: a `copies` row with
//! `verified = 1` for the instance's exact bytes, which the archive sets only once the
//! bundle holding them was read back from its medium and matched.
//!
//! The pass reads the candidates on a read-only connection (the writer is never held for the
//! scan), then moves them in batches through the store's writer, checking each again inside
//! the transaction, with one `tier-archive` audit row per study. The immutable attribute is set
//! after the commit: a file is fixed only once its study is.

use crate::facts::parse_da;
use crate::view::open_read;
use crate::LifecycleError;
use cairn_audit::AuditEvent;
use cairn_files::immutable::{set_immutable, Flag, ImmutableError};
use cairn_retention::Period;
use cairn_store::Store;
use jiff::civil::Date;
use rusqlite::{params, Connection, OptionalExtension};

/// Studies moved per transaction (each transaction holds the store's writer briefly).
const BATCH: usize = 100;

/// What one tier pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierReport {
    /// The studies moved to the archive tier, by Study Instance UID.
    pub archived: Vec<String>,
    /// Studies old enough whose instances do not all have a verified cold copy yet.
    pub waiting_for_copy: usize,
    /// What became of the immutable attribute on the moved studies' files.
    pub files: FileFixes,
}

/// Counts of the files given the immutable attribute, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileFixes {
    /// The attribute is set.
    pub fixed: usize,
    /// The filesystem has no such attribute.
    pub unsupported: usize,
    /// This process may not set it (it lacks `CAP_LINUX_IMMUTABLE`).
    pub not_permitted: usize,
    /// Another failure (the file is missing or unreadable; fsck reports it).
    pub failed: usize,
}

/// Where a study stands on the way to the archive tier.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Standing {
    /// Already archived, gone, or without instances.
    Out,
    /// Not old enough yet.
    Young,
    /// Old enough, but not every current instance has a verified copy.
    WaitingForCopy,
    /// Ready to move: its UID and the date it counts from.
    Ready {
        study_uid: String,
        from: Date,
        instances: i64,
    },
}

/// Move every storage study that is old enough and fully copied to the archive tier, then
/// set the immutable attribute on its files. `archive_after` `None` is the setting `"0"`: a
/// study moves as soon as its copies are verified (and its date is not in the future).
pub fn tier_pass(
    store: &Store,
    archive_after: Option<Period>,
    today: Date,
) -> Result<TierReport, LifecycleError> {
    pass(store, archive_after, today, true)
}

/// The tier pass; `immutable`: whether the moved studies' files get the attribute.
fn pass(
    store: &Store,
    archive_after: Option<Period>,
    today: Date,
    immutable: bool,
) -> Result<TierReport, LifecycleError> {
    let mut report = TierReport::default();
    let ready = {
        let conn = open_read(store.data_dir())?;
        let mut ready = Vec::new();
        for id in storage_studies(&conn)? {
            match standing(&conn, id, archive_after, today)? {
                Standing::Ready { .. } => ready.push(id),
                Standing::WaitingForCopy => report.waiting_for_copy += 1,
                Standing::Out | Standing::Young => {}
            }
        }
        ready
    };
    for batch in ready.chunks(BATCH) {
        let ids = batch.to_vec();
        let moved = crate::run(store, move |c, now| {
            move_batch(c, now, &ids, archive_after, today)
        })?;
        for (study_uid, shas) in moved {
            if immutable {
                fix_files(store, &shas, &mut report.files);
            }
            report.archived.push(study_uid);
        }
    }
    if report.files.not_permitted > 0 {
        tracing::warn!(
            files = report.files.not_permitted,
            "archived files left without the immutable attribute: cairnd lacks CAP_LINUX_IMMUTABLE"
        );
    }
    if !report.archived.is_empty() {
        tracing::info!(
            studies = report.archived.len(),
            files = report.files.fixed,
            "studies moved to the archive tier"
        );
    }
    Ok(report)
}

/// The row ids of the studies still in the storage tier.
fn storage_studies(conn: &Connection) -> Result<Vec<i64>, LifecycleError> {
    let mut stmt = conn.prepare("SELECT id FROM studies WHERE tier = 'storage' ORDER BY id")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}

/// Where study `id` stands, read on `conn` (the read-only scan, and again in the transaction
/// that moves it).
fn standing(
    conn: &Connection,
    id: i64,
    archive_after: Option<Period>,
    today: Date,
) -> Result<Standing, LifecycleError> {
    let row: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT study_uid, study_date FROM studies WHERE id = ?1 AND tier = 'storage'",
        )?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((study_uid, study_date)) = row else {
        return Ok(Standing::Out);
    };
    let from = match parse_da(&study_date) {
        Some(d) => Some(d),
        None => first_received(conn, id)?,
    };
    let Some(from) = from else {
        return Ok(Standing::Out);
    };
    let due = match archive_after {
        None => Some(from),
        Some(p) => p.after(from),
    };
    if due.is_none_or(|due| due > today) {
        return Ok(Standing::Young);
    }
    let (instances, uncopied): (i64, i64) = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(NOT EXISTS (SELECT 1 FROM copies c
                 WHERE c.sha256 = i.sha256 AND c.verified = 1)), 0)
             FROM instances i JOIN series se ON se.id = i.series_ref
             WHERE se.study_ref = ?1 AND i.current = 1",
        )?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(match (instances, uncopied) {
        (0, _) => Standing::Out,
        (_, 0) => Standing::Ready {
            study_uid,
            from,
            instances,
        },
        _ => Standing::WaitingForCopy,
    })
}

/// The UTC date the study's first instance was received.
fn first_received(conn: &Connection, id: i64) -> Result<Option<Date>, LifecycleError> {
    let at: Option<String> = conn
        .prepare_cached(
            "SELECT min(i.received_at) FROM instances i JOIN series se ON se.id = i.series_ref
             WHERE se.study_ref = ?1",
        )?
        .query_row(params![id], |r| r.get(0))?;
    Ok(at.and_then(|at| at.get(..10).and_then(|d| d.parse::<Date>().ok())))
}

/// In the writer's transaction: move the studies of `ids` that are still ready, with one audit
/// row each. Returns each moved study's UID and the SHA-256 of every object it holds (every
/// version: none of them may change now).
#[allow(clippy::type_complexity)]
fn move_batch(
    c: &Connection,
    now: &str,
    ids: &[i64],
    archive_after: Option<Period>,
    today: Date,
) -> Result<(Vec<(String, Vec<String>)>, Vec<AuditEvent>), LifecycleError> {
    let mut moved = Vec::new();
    let mut events = Vec::new();
    for &id in ids {
        let Standing::Ready {
            study_uid,
            from,
            instances,
        } = standing(c, id, archive_after, today)?
        else {
            continue;
        };
        c.prepare_cached("UPDATE studies SET tier = 'archive', archived_at = ?2 WHERE id = ?1")?
            .execute(params![id, now])?;
        let shas = c
            .prepare_cached(
                "SELECT DISTINCT i.sha256 FROM instances i JOIN series se ON se.id = i.series_ref
                 WHERE se.study_ref = ?1 ORDER BY i.sha256",
            )?
            .query_map(params![id], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        events.push(AuditEvent {
            actor: "system".into(),
            action: "tier-archive".into(),
            object: study_uid.clone(),
            detail: serde_json::json!({
                "from": from.to_string(),
                "archive_after": archive_after.map_or("0".to_owned(), |p| p.words()),
                "instances": instances,
                "files": shas.len(),
            })
            .to_string(),
        });
        moved.push((study_uid, shas));
    }
    Ok((moved, events))
}

/// Set the immutable attribute on the objects `shas` and count the outcomes.
fn fix_files(store: &Store, shas: &[String], counts: &mut FileFixes) {
    for sha in shas {
        let path = store.data_dir().object_path(sha);
        match set_immutable(&path, true) {
            Ok(Flag::Set) => counts.fixed += 1,
            Ok(Flag::Unsupported) => counts.unsupported += 1,
            Ok(Flag::Clear) => counts.failed += 1,
            Err(ImmutableError::NotPermitted { .. }) => counts.not_permitted += 1,
            Err(e) => {
                tracing::warn!(error = %e, "an archived file could not be made immutable");
                counts.failed += 1;
            }
        }
    }
}

/// Gives the immutable attribute to every file of a study already in the archive tier that
/// lacks it: those moved while cairnd could not set it (it lacked `CAP_LINUX_IMMUTABLE`) and
/// files put back by hand. Nothing is done by a process that may not set it. The daemon runs
/// this once, at its first tier tick; a file that has the attribute costs one open and one
/// ioctl.
pub fn refix_archived(store: &Store) -> Result<FileFixes, LifecycleError> {
    let mut counts = FileFixes::default();
    if !cairn_files::immutable::may_set() {
        return Ok(counts);
    }
    let shas = {
        let conn = open_read(store.data_dir())?;
        let mut stmt = conn.prepare(
            "SELECT DISTINCT i.sha256 FROM instances i JOIN series se ON se.id = i.series_ref
               JOIN studies st ON st.id = se.study_ref WHERE st.tier = 'archive'",
        )?;
        let shas = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        shas
    };
    fix_files(store, &shas, &mut counts);
    Ok(counts)
}

/// When the daemon runs the tier pass: at its first tick (after [`refix_archived`]), whenever a bundle was verified since
/// the last pass (new verified copies), when the date changes, and at least hourly (a study
/// date first received late can make a study old enough). A new instance never makes a study
/// ready, so nothing else needs a pass.
#[derive(Debug)]
pub struct TierSchedule {
    archive_after: Option<Period>,
    immutable: bool,
    last: Option<(Date, (i64, String), std::time::Instant)>,
}

/// The longest time between two passes.
const AT_LEAST_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

impl TierSchedule {
    /// A schedule for the tier pass with this `archive_after` (`None`: the setting `"0"`).
    pub fn new(archive_after: Option<Period>) -> TierSchedule {
        TierSchedule {
            archive_after,
            immutable: true,
            last: None,
        }
    }

    /// Use this `archive_after` from now on.
    pub fn set_archive_after(&mut self, archive_after: Option<Period>) {
        self.archive_after = archive_after;
    }

    /// Whether the files of archived studies get the immutable attribute (the default; the
    /// appliance's daemon does). Off, studies still move and are fixed in the index, and
    /// their files can be deleted by hand (a demo's data directory in `/tmp`, for example).
    pub fn set_immutable_files(&mut self, on: bool) {
        self.immutable = on;
    }

    /// Run the tier pass if something may have changed since the last one; `None` when it did
    /// not run. A failed pass is tried again at the next call.
    pub fn tick(
        &mut self,
        store: &Store,
        today: Date,
    ) -> Result<Option<TierReport>, LifecycleError> {
        let verified = verified_bundles(store)?;
        match &self.last {
            Some((day, seen, at))
                if *day == today && *seen == verified && at.elapsed() < AT_LEAST_EVERY =>
            {
                return Ok(None)
            }
            Some(_) => {}
            None if !self.immutable => {}
            None => {
                let files = refix_archived(store)?;
                tracing::info!(
                    fixed = files.fixed,
                    unsupported = files.unsupported,
                    failed = files.failed,
                    "the immutable attribute of the archived files checked"
                );
            }
        }
        let report = pass(store, self.archive_after, today, self.immutable)?;
        self.last = Some((today, verified, std::time::Instant::now()));
        Ok(Some(report))
    }
}

/// How many bundles are verified and the latest read-back time (a bundle that failed its
/// read-back may still have verified some copies): it changes whenever copies become verified.
/// Cheap: the bundles table is small.
fn verified_bundles(store: &Store) -> Result<(i64, String), LifecycleError> {
    let conn = open_read(store.data_dir())?;
    Ok(conn.query_row(
        "SELECT (SELECT count(*) FROM bundles WHERE state = 'verified'),
                coalesce((SELECT max(verified_at) FROM bundles), '')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}
