//! The SQLite index: schema, migrations, and the upserts the writer runs.

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
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if i == 0 {
            cairn_audit::ensure_schema(&tx)?;
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

pub(crate) fn index_instance(
    conn: &Connection,
    rec: &InstanceRecord,
    sha256: &str,
    size: u64,
    source_ae: &str,
    now: &str,
) -> Result<Indexed, StoreError> {
    let same: Option<i64> = conn
        .prepare_cached("SELECT id FROM instances WHERE sop_instance_uid = ?1 AND sha256 = ?2")?
        .query_row(params![rec.sop_instance_uid, sha256], |r| r.get(0))
        .optional()?;
    if same.is_some() {
        return Ok(Indexed::Duplicate);
    }
    let p = &rec.patient;
    conn.prepare_cached(
        "INSERT INTO patients (patient_id, issuer, name, birth_date, sex, updated_at, name_norm)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(patient_id, issuer) DO UPDATE SET name = excluded.name,
           birth_date = excluded.birth_date, sex = excluded.sex, updated_at = excluded.updated_at,
           name_norm = excluded.name_norm
         WHERE (name, birth_date, sex) IS NOT (excluded.name, excluded.birth_date, excluded.sex)",
    )?
    .execute(params![
        p.id,
        p.issuer,
        p.name,
        p.birth_date,
        p.sex,
        now,
        crate::find::normalize_name(&p.name)
    ])?;
    let patient_ref: i64 = conn
        .prepare_cached("SELECT id FROM patients WHERE patient_id = ?1 AND issuer = ?2")?
        .query_row(params![p.id, p.issuer], |r| r.get(0))?;
    let s = &rec.study;
    conn.prepare_cached(
        "INSERT INTO studies (study_uid, patient_ref, study_date, study_time, description,
           accession, referring_physician, study_id, updated_at, referring_norm)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT(study_uid) DO UPDATE SET patient_ref = excluded.patient_ref,
           study_date = excluded.study_date, study_time = excluded.study_time,
           description = excluded.description, accession = excluded.accession,
           referring_physician = excluded.referring_physician, study_id = excluded.study_id,
           updated_at = excluded.updated_at, referring_norm = excluded.referring_norm
         WHERE (patient_ref, study_date, study_time, description, accession, referring_physician,
                study_id)
           IS NOT (excluded.patient_ref, excluded.study_date, excluded.study_time,
                excluded.description, excluded.accession, excluded.referring_physician,
                excluded.study_id)",
    )?
    .execute(params![
        s.uid,
        patient_ref,
        s.date,
        s.time,
        s.description,
        s.accession,
        s.referring_physician,
        s.study_id,
        now,
        crate::find::normalize_name(&s.referring_physician)
    ])?;
    let study_ref: i64 = conn
        .prepare_cached("SELECT id FROM studies WHERE study_uid = ?1")?
        .query_row(params![s.uid], |r| r.get(0))?;
    let se = &rec.series;
    conn.prepare_cached(
        "INSERT INTO series (series_uid, study_ref, modality, series_number, description,
           body_part, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(series_uid) DO UPDATE SET study_ref = excluded.study_ref,
           modality = excluded.modality, series_number = excluded.series_number,
           description = excluded.description, body_part = excluded.body_part,
           updated_at = excluded.updated_at
         WHERE (study_ref, modality, series_number, description, body_part)
           IS NOT (excluded.study_ref, excluded.modality, excluded.series_number,
                excluded.description, excluded.body_part)",
    )?
    .execute(params![
        se.uid,
        study_ref,
        se.modality,
        se.number,
        se.description,
        se.body_part,
        now
    ])?;
    let series_ref: i64 = conn
        .prepare_cached("SELECT id FROM series WHERE series_uid = ?1")?
        .query_row(params![se.uid], |r| r.get(0))?;
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
    Ok(if superseded > 0 {
        Indexed::NewVersion
    } else {
        Indexed::New
    })
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
