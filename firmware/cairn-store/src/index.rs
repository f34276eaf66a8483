//! The SQLite index: schema, migrations, and the upserts the writer runs.

use crate::merge::{self, Conflict, Field, Kind, Level};
use crate::StoreError;
use rusqlite::{params, Connection, OptionalExtension};

/// Schema migrations, in order. `PRAGMA user_version` holds how many were applied.
const MIGRATIONS: &[&str] = &[
    // 1: patients, studies, series, instances
    "CREATE TABLE patients (
        id INTEGER PRIMARY KEY,
        patient_id TEXT NOT NULL,
        issuer TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL DEFAULT '',
        birth_date TEXT NOT NULL DEFAULT '',
        sex TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL,
        UNIQUE (patient_id, issuer)
    );
    CREATE TABLE studies (
        id INTEGER PRIMARY KEY,
        study_uid TEXT NOT NULL UNIQUE,
        patient_ref INTEGER NOT NULL REFERENCES patients(id),
        study_date TEXT NOT NULL DEFAULT '',
        study_time TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        accession TEXT NOT NULL DEFAULT '',
        referring_physician TEXT NOT NULL DEFAULT '',
        study_id TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    );
    CREATE INDEX studies_patient ON studies(patient_ref);
    CREATE INDEX studies_date ON studies(study_date);
    CREATE INDEX studies_accession ON studies(accession);
    CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        series_uid TEXT NOT NULL UNIQUE,
        study_ref INTEGER NOT NULL REFERENCES studies(id),
        modality TEXT NOT NULL DEFAULT '',
        series_number TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        body_part TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    );
    CREATE INDEX series_study ON series(study_ref);
    CREATE TABLE instances (
        id INTEGER PRIMARY KEY,
        sop_instance_uid TEXT NOT NULL,
        series_ref INTEGER NOT NULL REFERENCES series(id),
        sop_class_uid TEXT NOT NULL,
        instance_number TEXT NOT NULL DEFAULT '',
        transfer_syntax TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        received_at TEXT NOT NULL,
        source_ae TEXT NOT NULL,
        current INTEGER NOT NULL DEFAULT 1,
        UNIQUE (sop_instance_uid, sha256)
    );
    CREATE INDEX instances_series ON instances(series_ref);
    CREATE INDEX instances_sha ON instances(sha256);",
    // 2: the durability watermark: every instance row with id <= synced_instance_id is known to
    // be on disk together with its file. Rows above it are checked after an unclean stop.
    "CREATE TABLE store_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO store_state (key, value) VALUES ('synced_instance_id', 0);",
    // 3: normalised person names for case-insensitive matching, and query indexes
    "ALTER TABLE patients ADD COLUMN name_norm TEXT NOT NULL DEFAULT '';
    ALTER TABLE studies ADD COLUMN referring_norm TEXT NOT NULL DEFAULT '';
    UPDATE patients SET name_norm = upper(rtrim(name, '^ '));
    UPDATE studies SET referring_norm = upper(rtrim(referring_physician, '^ '));
    CREATE INDEX patients_name_norm ON patients(name_norm);
    CREATE INDEX patients_pid ON patients(patient_id);
    CREATE INDEX series_modality ON series(modality);",
    // 4: the archive (issue 4, DESIGN.md section 3): cold targets, the durable archive queue
    // (one row per instance and enabled target, inserted in the transaction that indexes the
    // instance, deleted only when a verified copy exists), volumes with their state and
    // location, bundles on volumes, and the copies each bundle holds.
    "CREATE TABLE cold_targets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('tape', 'optical')),
        enabled INTEGER NOT NULL DEFAULT 1,
        added_at TEXT NOT NULL
    );
    CREATE TABLE archive_queue (
        target_ref INTEGER NOT NULL REFERENCES cold_targets(id),
        instance_ref INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
        queued_at TEXT NOT NULL,
        PRIMARY KEY (target_ref, instance_ref)
    ) WITHOUT ROWID;
    CREATE INDEX archive_queue_instance ON archive_queue(instance_ref);
    CREATE TABLE volumes (
        id INTEGER PRIMARY KEY,
        volume_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('tape', 'optical')),
        box_id TEXT NOT NULL,
        target_ref INTEGER REFERENCES cold_targets(id),
        state TEXT NOT NULL
            CHECK (state IN ('blank', 'labelled', 'append', 'full', 'ejected', 'error')),
        location TEXT NOT NULL
            CHECK (location IN ('in_drive', 'onsite_shelf', 'offsite_vault', 'returned', 'retired')),
        format_version INTEGER NOT NULL,
        block_size INTEGER NOT NULL,
        capacity_bytes INTEGER,
        bytes_written INTEGER NOT NULL DEFAULT 0,
        labelled_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        updated_by TEXT NOT NULL DEFAULT 'system'
    );
    CREATE TABLE bundles (
        id INTEGER PRIMARY KEY,
        bundle_id TEXT NOT NULL,
        volume_ref INTEGER NOT NULL REFERENCES volumes(id),
        file_number INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('writing', 'verified', 'incomplete', 'failed')),
        members INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        manifest_sha256 TEXT NOT NULL DEFAULT '',
        audit_seq INTEGER NOT NULL DEFAULT 0,
        audit_hash TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL,
        closed_at TEXT,
        verified_at TEXT,
        UNIQUE (volume_ref, file_number)
    );
    CREATE INDEX bundles_state ON bundles(state);
    CREATE TABLE copies (
        id INTEGER PRIMARY KEY,
        bundle_ref INTEGER NOT NULL REFERENCES bundles(id),
        sha256 TEXT NOT NULL,
        sop_instance_uid TEXT NOT NULL,
        size INTEGER NOT NULL,
        verified INTEGER NOT NULL DEFAULT 0,
        UNIQUE (bundle_ref, sha256)
    );
    CREATE INDEX copies_sha ON copies(sha256);
    CREATE INDEX copies_uid ON copies(sop_instance_uid);",
    // 5: storage commitment (push model, `commitment.rs`): each request until it is reported,
    // and the instances it references. IF NOT EXISTS: databases of builds that created these
    // tables outside the versioned schema (user_version 4 with the tables) migrate cleanly.
    "CREATE TABLE IF NOT EXISTS commitment_requests (
        id INTEGER PRIMARY KEY,
        transaction_uid TEXT NOT NULL,
        calling_ae TEXT NOT NULL,
        received_at TEXT NOT NULL,
        deadline_unix INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'reported', 'undeliverable')),
        event_type INTEGER,
        reported_at TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_unix INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX IF NOT EXISTS commitment_requests_state ON commitment_requests(state);
    CREATE TABLE IF NOT EXISTS commitment_items (
        request_ref INTEGER NOT NULL REFERENCES commitment_requests(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        sop_class_uid TEXT NOT NULL,
        sop_instance_uid TEXT NOT NULL,
        PRIMARY KEY (request_ref, seq)
    ) WITHOUT ROWID;",
    // 6: patients with an empty Patient ID (legal, type 2) are told apart by name and birth
    // date (issue 20 item 3): the table is rebuilt without UNIQUE (patient_id, issuer), which
    // stays unique for non-empty IDs only. Received values the index did not take (a different
    // value than the one it keeps, or an invalid date or time) are recorded per study in
    // `field_conflicts` (issue 20 item 2, issue 13 item 1; `merge.rs`). Runs with foreign
    // keys off (see `migrate`); running it again on its own result changes nothing.
    "DROP TABLE IF EXISTS patients_new;
    CREATE TABLE patients_new (
        id INTEGER PRIMARY KEY,
        patient_id TEXT NOT NULL,
        issuer TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL DEFAULT '',
        birth_date TEXT NOT NULL DEFAULT '',
        sex TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL,
        name_norm TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO patients_new (id, patient_id, issuer, name, birth_date, sex, updated_at, name_norm)
        SELECT id, patient_id, issuer, name, birth_date, sex, updated_at, name_norm FROM patients;
    DROP TABLE patients;
    ALTER TABLE patients_new RENAME TO patients;
    CREATE UNIQUE INDEX patients_key ON patients(patient_id, issuer) WHERE patient_id != '';
    CREATE INDEX patients_no_id ON patients(name_norm, birth_date) WHERE patient_id = '';
    CREATE INDEX patients_name_norm ON patients(name_norm);
    CREATE INDEX patients_pid ON patients(patient_id);
    CREATE TABLE IF NOT EXISTS field_conflicts (
        id INTEGER PRIMARY KEY,
        study_ref INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
        level TEXT NOT NULL CHECK (level IN ('patient', 'study', 'series')),
        field TEXT NOT NULL,
        kept TEXT NOT NULL,
        received TEXT NOT NULL,
        reason TEXT NOT NULL CHECK (reason IN ('differs', 'invalid')),
        sop_instance_uid TEXT NOT NULL,
        source_ae TEXT NOT NULL,
        received_at TEXT NOT NULL,
        UNIQUE (study_ref, level, field, received)
    );
    CREATE INDEX IF NOT EXISTS field_conflicts_instance ON field_conflicts(sop_instance_uid);",
    // 7: the short name of each archive volume, the one people read on the cartridge and type
    // (issue 20 item 6; `cairn-archive`'s catalog). A volume without a row (labelled before
    // names existed) is called by its volume id. IF NOT EXISTS: idempotent.
    "CREATE TABLE IF NOT EXISTS volume_names (
        volume_ref INTEGER PRIMARY KEY REFERENCES volumes(id) ON DELETE CASCADE,
        name TEXT NOT NULL UNIQUE
    );",
];

/// Newest schema version this build knows.
pub(crate) fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Open the index for writing: WAL, migrations applied.
///
/// `synchronous=NORMAL` keeps the database consistent on a crash; durability of each commit
/// comes from the writer's `syncfs` of the whole store filesystem after the commit, which
/// flushes the WAL together with the object files and their directories in one go.
pub(crate) fn open_rw(path: &std::path::Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&mut conn)?;
    Ok(conn)
}

/// Open the index read-only (for the CLI and queries).
pub(crate) fn open_ro(path: &std::path::Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > schema_version() {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: schema_version(),
        });
    }
    if current == schema_version() {
        return Ok(());
    }
    // A migration may rebuild a table others refer to (SQLite's way to change a constraint):
    // foreign keys are off while migrations run and checked before they are on again.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let migrated = run_migrations(conn, current);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrated
}

fn run_migrations(conn: &mut Connection, current: i64) -> Result<(), StoreError> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if i == 0 {
            cairn_audit::ensure_schema(&tx)?;
        }
        let broken: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()?;
        if let Some(table) = broken {
            return Err(StoreError::Db(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                Some(format!(
                    "migration {} leaves rows in {table} without their parent",
                    i + 1
                )),
            )));
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "index schema migrated");
    }
    Ok(())
}

/// Patient-level attributes, decoded to UTF-8.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientInfo {
    /// Patient ID (0010,0020).
    pub id: String,
    /// Issuer of Patient ID (0010,0021).
    pub issuer: String,
    /// Patient's Name (0010,0010), DICOM PN form.
    pub name: String,
    /// Patient's Birth Date (0010,0030).
    pub birth_date: String,
    /// Patient's Sex (0010,0040).
    pub sex: String,
}

/// Study-level attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyInfo {
    /// Study Instance UID.
    pub uid: String,
    /// Study Date.
    pub date: String,
    /// Study Time.
    pub time: String,
    /// Study Description.
    pub description: String,
    /// Accession Number.
    pub accession: String,
    /// Referring Physician's Name.
    pub referring_physician: String,
    /// Study ID.
    pub study_id: String,
}

/// Series-level attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesInfo {
    /// Series Instance UID.
    pub uid: String,
    /// Modality.
    pub modality: String,
    /// Series Number.
    pub number: String,
    /// Series Description.
    pub description: String,
    /// Body Part Examined.
    pub body_part: String,
}

/// Everything the index keeps about one received instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceRecord {
    /// Patient level.
    pub patient: PatientInfo,
    /// Study level.
    pub study: StudyInfo,
    /// Series level.
    pub series: SeriesInfo,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// Instance Number.
    pub instance_number: String,
    /// Transfer syntax the data set is encoded in.
    pub transfer_syntax: String,
}

/// Outcome of indexing one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Indexed {
    New,
    Duplicate,
    NewVersion,
}

/// Index one instance: its patient, study and series rows by the rules of `merge.rs`, then the
/// instance row. Returns the outcome and the conflicts recorded for the first time (the
/// writer audits them).
pub(crate) fn index_instance(
    conn: &Connection,
    rec: &InstanceRecord,
    sha256: &str,
    size: u64,
    source_ae: &str,
    now: &str,
) -> Result<(Indexed, Vec<Conflict>), StoreError> {
    let same: Option<i64> = conn
        .prepare_cached("SELECT id FROM instances WHERE sop_instance_uid = ?1 AND sha256 = ?2")?
        .query_row(params![rec.sop_instance_uid, sha256], |r| r.get(0))
        .optional()?;
    if same.is_some() {
        return Ok((Indexed::Duplicate, Vec::new()));
    }
    let mut conflicts = Vec::new();
    let s = &rec.study;
    let study: Option<(i64, i64)> = conn
        .prepare_cached("SELECT id, patient_ref FROM studies WHERE study_uid = ?1")?
        .query_row(params![s.uid], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    // A study keeps the patient it was first stored under; a new study finds its patient.
    let patient_ref = match study {
        Some((_, patient_ref)) => patient_ref,
        None => patient_row(conn, &rec.patient, now)?,
    };
    let p = &rec.patient;
    merge::merge(
        conn,
        "patients",
        patient_ref,
        Level::Patient,
        &[
            field("patient_id", "PatientID", &p.id, Kind::Identity),
            field("issuer", "IssuerOfPatientID", &p.issuer, Kind::Identity),
            field(
                "name",
                "PatientName",
                &p.name,
                Kind::PersonName {
                    norm_column: "name_norm",
                },
            ),
            field("birth_date", "PatientBirthDate", &p.birth_date, Kind::Date),
            field("sex", "PatientSex", &p.sex, Kind::Text),
        ],
        now,
        &mut conflicts,
    )?;
    let study_ref = match study {
        Some((id, _)) => id,
        None => {
            conn.prepare_cached(
                "INSERT INTO studies (study_uid, patient_ref, updated_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![s.uid, patient_ref, now])?;
            conn.last_insert_rowid()
        }
    };
    merge::merge(
        conn,
        "studies",
        study_ref,
        Level::Study,
        &[
            field("study_date", "StudyDate", &s.date, Kind::Date),
            field("study_time", "StudyTime", &s.time, Kind::Time),
            field(
                "description",
                "StudyDescription",
                &s.description,
                Kind::Text,
            ),
            field("accession", "AccessionNumber", &s.accession, Kind::Text),
            field(
                "referring_physician",
                "ReferringPhysicianName",
                &s.referring_physician,
                Kind::PersonName {
                    norm_column: "referring_norm",
                },
            ),
            field("study_id", "StudyID", &s.study_id, Kind::Text),
        ],
        now,
        &mut conflicts,
    )?;
    let se = &rec.series;
    conn.prepare_cached(
        "INSERT INTO series (series_uid, study_ref, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(series_uid) DO UPDATE SET study_ref = excluded.study_ref,
           updated_at = excluded.updated_at
         WHERE study_ref IS NOT excluded.study_ref",
    )?
    .execute(params![se.uid, study_ref, now])?;
    let series_ref: i64 = conn
        .prepare_cached("SELECT id FROM series WHERE series_uid = ?1")?
        .query_row(params![se.uid], |r| r.get(0))?;
    merge::merge(
        conn,
        "series",
        series_ref,
        Level::Series,
        &[
            field("modality", "Modality", &se.modality, Kind::Text),
            field("series_number", "SeriesNumber", &se.number, Kind::Text),
            field(
                "description",
                "SeriesDescription",
                &se.description,
                Kind::Text,
            ),
            field("body_part", "BodyPartExamined", &se.body_part, Kind::Text),
        ],
        now,
        &mut conflicts,
    )?;
    let conflicts = merge::record(
        conn,
        &merge::Origin {
            study_ref,
            sop_instance_uid: &rec.sop_instance_uid,
            source_ae,
            now,
        },
        conflicts,
    )?;
    let superseded = conn
        .prepare_cached(
            "UPDATE instances SET current = 0 WHERE sop_instance_uid = ?1 AND current = 1",
        )?
        .execute(params![rec.sop_instance_uid])?;
    conn.prepare_cached(
        "INSERT INTO instances (sop_instance_uid, series_ref, sop_class_uid, instance_number,
           transfer_syntax, size, sha256, received_at, source_ae, current)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1)",
    )?
    .execute(params![
        rec.sop_instance_uid,
        series_ref,
        rec.sop_class_uid,
        rec.instance_number,
        rec.transfer_syntax,
        size as i64,
        sha256,
        now,
        source_ae
    ])?;
    let instance_ref = conn.last_insert_rowid();
    // The archive queue row per enabled cold target commits with the instance row.
    conn.prepare_cached(
        "INSERT INTO archive_queue (target_ref, instance_ref, queued_at)
         SELECT id, ?1, ?2 FROM cold_targets WHERE enabled = 1",
    )?
    .execute(params![instance_ref, now])?;
    let indexed = if superseded > 0 {
        Indexed::NewVersion
    } else {
        Indexed::New
    };
    Ok((indexed, conflicts))
}

fn field<'a>(column: &'static str, keyword: &'static str, value: &'a str, kind: Kind) -> Field<'a> {
    Field {
        column,
        keyword,
        value,
        kind,
    }
}

/// The patient row a new study belongs to, made when there is none. A non-empty Patient ID
/// (with its issuer) names the patient; an empty one (legal: type 2) joins only a patient with
/// an empty ID, the same issuer, the same name (compared normalised) and birth date.
fn patient_row(conn: &Connection, p: &PatientInfo, now: &str) -> Result<i64, StoreError> {
    let found: Option<i64> = if p.id.is_empty() {
        let birth_date = p.birth_date.trim_matches(' ');
        let birth_date = if merge::is_valid_date(birth_date) {
            birth_date
        } else {
            ""
        };
        conn.prepare_cached(
            "SELECT id FROM patients WHERE patient_id = '' AND issuer = ?1 AND name_norm = ?2
               AND birth_date = ?3 ORDER BY id LIMIT 1",
        )?
        .query_row(
            params![p.issuer, merge::normalize_name(&p.name), birth_date],
            |r| r.get(0),
        )
        .optional()?
    } else {
        conn.prepare_cached("SELECT id FROM patients WHERE patient_id = ?1 AND issuer = ?2")?
            .query_row(params![p.id, p.issuer], |r| r.get(0))
            .optional()?
    };
    if let Some(id) = found {
        return Ok(id);
    }
    conn.prepare_cached(
        "INSERT INTO patients (patient_id, issuer, updated_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![p.id, p.issuer, now])?;
    Ok(conn.last_insert_rowid())
}

/// Is any row pointing at this file?
pub(crate) fn sha_indexed(conn: &Connection, sha256: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM instances WHERE sha256 = ?1 LIMIT 1")?
        .query_row(params![sha256], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The durability watermark (see migration 2).
pub(crate) fn synced_watermark(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT value FROM store_state WHERE key = 'synced_instance_id'",
        [],
        |r| r.get(0),
    )?)
}

/// Record the durability watermark (inside the caller's transaction).
pub(crate) fn set_synced_watermark(conn: &Connection, id: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE store_state SET value = ?1 WHERE key = 'synced_instance_id'")?
        .execute(params![id])?;
    Ok(())
}

/// Highest instance row id.
pub(crate) fn max_instance_id(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT coalesce(max(id), 0) FROM instances")?
        .query_row([], |r| r.get(0))?)
}

/// Remove an instance row that never became durable with its file (recovery only): the
/// previous version becomes current again and emptied series, studies and patients go.
pub(crate) fn roll_back_instance(conn: &Connection, id: i64) -> Result<Option<String>, StoreError> {
    let row: Option<(String, i64, i64)> = conn
        .query_row(
            "SELECT sop_instance_uid, series_ref, current FROM instances WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((uid, series_ref, current)) = row else {
        return Ok(None);
    };
    conn.execute("DELETE FROM instances WHERE id = ?1", params![id])?;
    conn.execute(
        "DELETE FROM field_conflicts WHERE sop_instance_uid = ?1",
        params![uid],
    )?;
    if current == 1 {
        conn.execute(
            "UPDATE instances SET current = 1 WHERE id =
               (SELECT max(id) FROM instances WHERE sop_instance_uid = ?1)",
            params![uid],
        )?;
    }
    let study_ref: Option<i64> = conn
        .query_row(
            "SELECT study_ref FROM series WHERE id = ?1",
            params![series_ref],
            |r| r.get(0),
        )
        .optional()?;
    conn.execute(
        "DELETE FROM series WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM instances WHERE series_ref = ?1)",
        params![series_ref],
    )?;
    if let Some(study) = study_ref {
        let patient: Option<i64> = conn
            .query_row(
                "SELECT patient_ref FROM studies WHERE id = ?1",
                params![study],
                |r| r.get(0),
            )
            .optional()?;
        conn.execute(
            "DELETE FROM studies WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM series WHERE study_ref = ?1)",
            params![study],
        )?;
        if let Some(p) = patient {
            conn.execute(
                "DELETE FROM patients WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM studies WHERE patient_ref = ?1)",
                params![p],
            )?;
        }
    }
    Ok(Some(uid))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_rw(&dir.path().join("cairn.db")).unwrap();
        (dir, conn)
    }

    fn rec(sop: &str, study: &str, pid: &str, name: &str) -> InstanceRecord {
        let mut r = InstanceRecord {
            sop_instance_uid: sop.into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            ..Default::default()
        };
        r.patient.id = pid.into();
        r.patient.name = name.into();
        r.study.uid = study.into();
        r.series.uid = format!("{study}.1");
        r
    }

    fn put(conn: &Connection, r: &InstanceRecord) -> Vec<Conflict> {
        let tx = conn.unchecked_transaction().unwrap();
        let sha = format!("{:0>64}", r.sop_instance_uid.replace('.', ""));
        let (_, c) = index_instance(&tx, r, &sha, 1, "TEST", "2026-01-01T00:00:00Z").unwrap();
        tx.commit().unwrap();
        c
    }

    fn study(conn: &Connection, uid: &str) -> (String, String, String, String, i64) {
        conn.query_row(
            "SELECT study_date, study_time, description, accession, patient_ref FROM studies
             WHERE study_uid = ?1",
            [uid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
    }

    fn conflicts(conn: &Connection) -> Vec<(String, String, String, String, String)> {
        let mut st = conn
            .prepare("SELECT level, field, kept, received, reason FROM field_conflicts ORDER BY id")
            .unwrap();
        st.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    #[test]
    fn a_later_instance_never_blanks_and_never_overwrites() {
        let (_d, conn) = db();
        let mut first = rec("1.1", "9.1", "P1", "DOE^JOHN");
        first.study.date = "20240131".into();
        first.study.time = "101500".into();
        first.study.description = "CHEST".into();
        first.patient.birth_date = "19600101".into();
        assert!(put(&conn, &first).is_empty());

        // a PDF made with --study-from: the same study, the fields empty
        let mut pdf = rec("1.2", "9.1", "P1", "DOE^JOHN");
        pdf.series.uid = "9.1.2".into();
        pdf.study.accession = "ACC1".into(); // an empty field is filled in
        assert!(put(&conn, &pdf).is_empty());
        assert_eq!(
            study(&conn, "9.1"),
            (
                "20240131".into(),
                "101500".into(),
                "CHEST".into(),
                "ACC1".into(),
                1
            )
        );

        // a different value keeps the first and is recorded once
        let mut other = rec("1.3", "9.1", "P1", "doe^john^^");
        other.study.description = "ABDOMEN".into();
        let new = put(&conn, &other);
        assert_eq!(new.len(), 1, "{new:?}");
        let mut again = other.clone();
        again.sop_instance_uid = "1.4".into();
        assert!(
            put(&conn, &again).is_empty(),
            "the same conflict is recorded once"
        );
        assert_eq!(study(&conn, "9.1").2, "CHEST");
        assert_eq!(
            conflicts(&conn),
            vec![(
                "study".into(),
                "StudyDescription".into(),
                "CHEST".into(),
                "ABDOMEN".into(),
                "differs".into()
            )]
        );

        // a study keeps its patient: another Patient ID is a conflict, not a move
        let mut moved = rec("1.5", "9.1", "P2", "ROE^RICHARD");
        moved.study.description = "CHEST".into();
        put(&conn, &moved);
        assert_eq!(study(&conn, "9.1").4, 1);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM patients", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let fields: Vec<String> = conflicts(&conn).into_iter().map(|c| c.1).collect();
        assert_eq!(fields, ["StudyDescription", "PatientID", "PatientName"]);
    }

    #[test]
    fn invalid_dates_and_times_are_indexed_empty_and_recorded() {
        let (_d, conn) = db();
        let mut r = rec("2.1", "9.2", "P1", "X");
        r.study.date = "123é567".into();
        r.study.time = "12é3000".into();
        r.patient.birth_date = "19éé0101".into();
        let new = put(&conn, &r);
        assert_eq!(new.len(), 3);
        let s = study(&conn, "9.2");
        assert_eq!((s.0.as_str(), s.1.as_str()), ("", ""));
        let c = conflicts(&conn);
        assert!(
            c.iter().all(|c| c.4 == "invalid" && c.2.is_empty()),
            "{c:?}"
        );
        let received: Vec<(&str, &str)> = c.iter().map(|c| (c.1.as_str(), c.3.as_str())).collect();
        assert_eq!(
            received,
            [
                ("PatientBirthDate", "19éé0101"),
                ("StudyDate", "123é567"),
                ("StudyTime", "12é3000")
            ]
        );
        // a valid date later fills it in
        let mut ok = rec("2.2", "9.2", "P1", "X");
        ok.study.date = "20240229".into();
        assert!(put(&conn, &ok).is_empty());
        assert_eq!(study(&conn, "9.2").0, "20240229");
    }

    #[test]
    fn empty_patient_ids_join_only_the_same_name_and_birth_date() {
        let (_d, conn) = db();
        put(&conn, &rec("3.1", "9.31", "", "Anonymized"));
        put(&conn, &rec("3.6", "9.36", "", "^^^^"));
        let mut us = rec("3.2", "9.32", "", "^^^^");
        us.patient.birth_date = "19970512".into();
        put(&conn, &us);
        put(&conn, &rec("3.3", "9.33", "", "ANONYMIZED"));
        let mut born = rec("3.4", "9.34", "", "Anonymized");
        born.patient.birth_date = "20010101".into();
        put(&conn, &born);
        put(&conn, &rec("3.5", "9.35", "P9", "Anonymized"));
        let refs: Vec<i64> = ["9.31", "9.32", "9.33", "9.34", "9.35"]
            .iter()
            .map(|u| study(&conn, u).4)
            .collect();
        assert_eq!(refs[0], refs[2]);
        let distinct: std::collections::BTreeSet<i64> = refs.iter().copied().collect();
        assert_eq!(distinct.len(), 4, "{refs:?}");
        let name: String = conn
            .query_row(
                "SELECT p.name FROM patients p JOIN studies st ON st.patient_ref = p.id
                 WHERE st.study_uid = '9.36'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(name, "^^^^", "a name is kept as received");
        assert!(conflicts(&conn).is_empty());
    }

    #[test]
    fn migration_6_keeps_rows_and_their_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            for (i, sql) in MIGRATIONS[..5].iter().enumerate() {
                tx.execute_batch(sql).unwrap();
                if i == 0 {
                    cairn_audit::ensure_schema(&tx).unwrap();
                }
            }
            tx.execute_batch(
                "INSERT INTO patients (id, patient_id, name, updated_at, name_norm)
                   VALUES (7, '', 'Anonymized', 'x', 'ANONYMIZED');
                 INSERT INTO studies (id, study_uid, patient_ref, updated_at)
                   VALUES (3, '1.2.3', 7, 'x');
                 PRAGMA user_version = 5;",
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let conn = open_rw(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema_version());
        let fk: bool = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert!(fk, "foreign keys are on again after migrating");
        assert_eq!(study(&conn, "1.2.3").4, 7);
        // the patients table no longer forbids two patients with an empty ID
        put(&conn, &rec("4.1", "9.4", "", "Someone^Else"));
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM patients WHERE patient_id = ''",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 2);
        // and a non-empty ID stays unique
        assert!(conn
            .execute(
                "INSERT INTO patients (patient_id, updated_at) VALUES ('A', 'x'), ('A', 'x')",
                []
            )
            .is_err());
    }
}
