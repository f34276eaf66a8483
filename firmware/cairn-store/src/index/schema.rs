//! The index schema: its migrations, in order, and how a database is brought up to date.

use crate::StoreError;
use rusqlite::{Connection, OptionalExtension};

/// Schema migrations, in order. `PRAGMA user_version` holds how many were applied.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 4: the archive, so that every stored instance reaches its cold copies even across
    // restarts: cold targets, the durable archive queue (one row per instance and enabled
    // target, inserted in the transaction that indexes the instance, deleted only when a
    // verified copy exists), volumes with their state and location, bundles on volumes, and the
    // copies each bundle holds.
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
    // 5: storage commitment (push model, `crate::commitment`): each request until it is reported,
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
    // date, so that unrelated anonymous patients are not merged into one: the table is rebuilt
    // without UNIQUE (patient_id, issuer), which stays unique for non-empty IDs only. Received
    // values the index did not take (a different value than the one it keeps, or an invalid
    // date or time) are recorded per study in `field_conflicts`, so that nothing received is
    // dropped unseen (`crate::merge`). Runs with foreign keys off (see `migrate`); running it
    // again on its own result changes nothing.
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
    // (kept by `cairn-archive`'s catalog), since a volume id is too long to read out. A volume
    // without a row (labelled before names existed) is called by its volume id. IF NOT EXISTS:
    // idempotent.
    "CREATE TABLE IF NOT EXISTS volume_names (
        volume_ref INTEGER PRIMARY KEY REFERENCES volumes(id) ON DELETE CASCADE,
        name TEXT NOT NULL UNIQUE
    );",
    // 8: the patient lifecycle (kept by `cairn-lifecycle`): a recorded date of death; each
    // patient's computed expiry with the facts it came from, marked dirty by triggers in the
    // same transaction as any change of those facts (a new study, a study date, a birth or death
    // date), so an expiry is never silently stale; every existing patient starts dirty. Legal
    // holds on a patient or a study (active while not released). And the storage tier of each
    // study, for moving old studies to the archive tier. Its new columns are in `ADDED_COLUMNS`;
    // running it again changes nothing.
    "CREATE TABLE IF NOT EXISTS patient_retention (
        patient_ref INTEGER PRIMARY KEY REFERENCES patients(id) ON DELETE CASCADE,
        dirty INTEGER NOT NULL DEFAULT 1,
        last_visit TEXT NOT NULL DEFAULT '',
        expires_on TEXT,
        reason TEXT NOT NULL DEFAULT '',
        review INTEGER NOT NULL DEFAULT 0,
        rule_set TEXT NOT NULL DEFAULT '',
        computed_at TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX IF NOT EXISTS patient_retention_dirty ON patient_retention(dirty) WHERE dirty = 1;
    CREATE INDEX IF NOT EXISTS patient_retention_expires ON patient_retention(expires_on);
    CREATE TRIGGER IF NOT EXISTS studies_mark_retention AFTER INSERT ON studies BEGIN
        INSERT INTO patient_retention (patient_ref) VALUES (NEW.patient_ref)
        ON CONFLICT (patient_ref) DO UPDATE SET dirty = 1;
    END;
    CREATE TRIGGER IF NOT EXISTS studies_date_mark_retention AFTER UPDATE OF study_date, patient_ref ON studies
    WHEN OLD.study_date IS NOT NEW.study_date OR OLD.patient_ref IS NOT NEW.patient_ref BEGIN
        INSERT INTO patient_retention (patient_ref) VALUES (NEW.patient_ref)
        ON CONFLICT (patient_ref) DO UPDATE SET dirty = 1;
        INSERT INTO patient_retention (patient_ref) VALUES (OLD.patient_ref)
        ON CONFLICT (patient_ref) DO UPDATE SET dirty = 1;
    END;
    CREATE TRIGGER IF NOT EXISTS patients_mark_retention AFTER UPDATE OF birth_date, death_date ON patients
    WHEN OLD.birth_date IS NOT NEW.birth_date OR OLD.death_date IS NOT NEW.death_date BEGIN
        INSERT INTO patient_retention (patient_ref) VALUES (NEW.id)
        ON CONFLICT (patient_ref) DO UPDATE SET dirty = 1;
    END;
    INSERT INTO patient_retention (patient_ref) SELECT id FROM patients WHERE true
        ON CONFLICT (patient_ref) DO UPDATE SET dirty = 1;
    CREATE TABLE IF NOT EXISTS holds (
        id INTEGER PRIMARY KEY,
        patient_ref INTEGER REFERENCES patients(id),
        study_ref INTEGER REFERENCES studies(id),
        reason TEXT NOT NULL CHECK (reason <> ''),
        placed_by TEXT NOT NULL,
        placed_at TEXT NOT NULL,
        released_by TEXT,
        released_at TEXT,
        release_reason TEXT,
        CHECK ((patient_ref IS NULL) <> (study_ref IS NULL))
    );
    CREATE INDEX IF NOT EXISTS holds_patient ON holds(patient_ref);
    CREATE INDEX IF NOT EXISTS holds_study ON holds(study_ref);
    CREATE INDEX IF NOT EXISTS studies_tier ON studies(tier);",
    // 9: removal (kept by `cairn-lifecycle`): one record per approved destruction of a patient;
    // a tombstone per removed study or series (what, when, who, why) and its instances by UID
    // and bytes, so restore, scan and storage commitment know them; the object files a removal
    // still has to unlink once it is durable (`Store::open` finishes them); and the catalog's
    // mark on the cold copies of removed instances (`copies.removed`, in `ADDED_COLUMNS`), so
    // neither restore nor scan brings them back. IF NOT EXISTS: running it again changes nothing.
    "CREATE TABLE IF NOT EXISTS destruction_records (
        id INTEGER PRIMARY KEY,
        patient_id TEXT NOT NULL,
        issuer TEXT NOT NULL,
        expires_on TEXT NOT NULL,
        expiry_reason TEXT NOT NULL,
        approved_by TEXT NOT NULL,
        approval_reason TEXT NOT NULL,
        approved_at TEXT NOT NULL,
        studies INTEGER NOT NULL,
        instances INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS removed_studies (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('rejected', 'destroyed')),
        study_uid TEXT NOT NULL,
        series_uid TEXT,
        patient_id TEXT NOT NULL,
        issuer TEXT NOT NULL,
        study_date TEXT NOT NULL,
        instances INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        reason TEXT NOT NULL,
        removed_by TEXT NOT NULL,
        removed_at TEXT NOT NULL,
        destruction_ref INTEGER REFERENCES destruction_records(id)
    );
    CREATE INDEX IF NOT EXISTS removed_studies_uid ON removed_studies(study_uid);
    CREATE TABLE IF NOT EXISTS removed_instances (
        sop_instance_uid TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        removed_ref INTEGER NOT NULL REFERENCES removed_studies(id),
        PRIMARY KEY (sop_instance_uid, sha256)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS pending_unlinks (path TEXT PRIMARY KEY) WITHOUT ROWID;",
];

/// Columns a migration adds: (its number, table, column, definition). `ALTER TABLE ... ADD
/// COLUMN` has no IF NOT EXISTS, so each is added before the migration's SQL runs and only when
/// the table lacks it, and running a migration again changes nothing.
const ADDED_COLUMNS: &[(usize, &str, &str, &str)] = &[
    (8, "patients", "death_date", "TEXT NOT NULL DEFAULT ''"),
    (
        8,
        "studies",
        "tier",
        "TEXT NOT NULL DEFAULT 'storage' CHECK (tier IN ('storage', 'archive'))",
    ),
    (8, "studies", "archived_at", "TEXT"),
    (
        9,
        "copies",
        "removed",
        "TEXT CHECK (removed IN ('rejected', 'expired'))",
    ),
];

/// Add the columns of migration `number` its tables do not have yet.
fn add_columns(conn: &Connection, number: usize) -> Result<(), StoreError> {
    for (_, table, column, definition) in ADDED_COLUMNS.iter().filter(|c| c.0 == number) {
        let present: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
            [table, column],
            |r| r.get(0),
        )?;
        if !present {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition};"
            ))?;
        }
    }
    Ok(())
}

/// Newest schema version this build knows.
pub(crate) fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Apply the migrations `conn` has not had yet (none when it is up to date); refuse a
/// database made by a newer cairn.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
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
        add_columns(&tx, i + 1)?;
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
