//! Shared setup for the lifecycle tests: a real store in a temporary directory, instances stored
//! through it the way the DICOM receiver does (a spooled file and its index record), and direct
//! reads of the index.
// Each test file uses its own part of this module.
#![allow(dead_code)]

use cairn_lifecycle::LifecycleError;
use cairn_store::{DataDir, InstanceRecord, Store, StoreJob};
use rusqlite::Connection;

/// A store on a fresh data directory.
pub struct Box_ {
    pub dir: tempfile::TempDir,
    pub data: DataDir,
    pub store: Store,
}

/// Open a store on a fresh data directory.
pub fn open() -> Box_ {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let store = Store::open(data.clone()).unwrap();
    Box_ { dir, data, store }
}

/// A patient as the modality sends it.
#[derive(Clone, Copy)]
pub struct Pat<'a> {
    pub id: &'a str,
    pub issuer: &'a str,
    pub birth: &'a str,
}

/// Patient `id`, no issuer, born on `birth` (DICOM DA).
pub fn pat<'a>(id: &'a str, birth: &'a str) -> Pat<'a> {
    Pat {
        id,
        issuer: "",
        birth,
    }
}

impl Box_ {
    /// Store one CT instance of study `study` dated `date` for patient `p` (its file holds
    /// distinct bytes; its series is `{study}.1`, its SOP instance `{study}.1.{n}`).
    pub fn store(&self, p: Pat<'_>, study: &str, date: &str, n: u32) {
        let mut rec = InstanceRecord {
            sop_instance_uid: format!("{study}.1.{n}"),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            ..Default::default()
        };
        rec.patient.id = p.id.into();
        rec.patient.issuer = p.issuer.into();
        rec.patient.name = "Doe^Jane".into();
        rec.patient.birth_date = p.birth.into();
        rec.study.uid = study.into();
        rec.study.date = date.into();
        rec.series.uid = format!("{study}.1");
        rec.series.modality = "CT".into();
        let mut w = self.store.spool().unwrap();
        w.write(format!("DICM {study} {n} {}", p.id).as_bytes())
            .unwrap();
        let spool = w.finish().unwrap();
        self.store
            .commit(StoreJob {
                spool,
                record: rec,
                source_ae: "CT1".into(),
            })
            .unwrap();
    }

    /// A plain connection on the index (for reading in tests).
    pub fn conn(&self) -> Connection {
        Connection::open(self.data.db()).unwrap()
    }

    /// Run `f` (a change of this crate) through the store's writer.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &str) -> Result<(T, Vec<cairn_audit::AuditEvent>), LifecycleError>
            + Send
            + 'static,
    ) -> Result<T, LifecycleError> {
        cairn_lifecycle::run(&self.store, f)
    }

    /// The patient's stored retention row: (dirty, expires_on, reason, review, last_visit,
    /// rule_set).
    pub fn row(&self, pid: &str) -> (bool, Option<String>, String, bool, String, String) {
        self.conn()
            .query_row(
                "SELECT r.dirty, r.expires_on, r.reason, r.review, r.last_visit, r.rule_set
                 FROM patient_retention r JOIN patients p ON p.id = r.patient_ref
                 WHERE p.patient_id = ?1",
                [pid],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .unwrap()
    }

    /// The audit rows with this action: (actor, object, detail).
    pub fn audit(&self, action: &str) -> Vec<(String, String, serde_json::Value)> {
        let c = self.conn();
        let mut s = c
            .prepare("SELECT actor, object, detail FROM audit WHERE action = ?1 ORDER BY seq")
            .unwrap();
        s.query_map([action], |r| {
            let detail: String = r.get(2)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// Every audit row as text, to check that a refusal left none.
    pub fn audit_len(&self) -> i64 {
        self.conn()
            .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
            .unwrap()
    }

    /// A snapshot of the lifecycle tables and the patients' dates, to check that a refusal
    /// changed nothing.
    pub fn snapshot(&self) -> String {
        let c = self.conn();
        let mut out = String::new();
        for sql in [
            "SELECT id || '|' || birth_date || '|' || death_date FROM patients ORDER BY id",
            "SELECT patient_ref || '|' || dirty || '|' || coalesce(expires_on, '-') || '|' ||
             reason || '|' || review FROM patient_retention ORDER BY patient_ref",
            "SELECT id || '|' || coalesce(patient_ref, '-') || '|' || coalesce(study_ref, '-') ||
             '|' || reason || '|' || coalesce(released_at, '-') || '|' ||
             coalesce(release_reason, '-') FROM holds ORDER BY id",
            "SELECT CAST(count(*) AS TEXT) FROM audit",
        ] {
            let mut s = c.prepare(sql).unwrap();
            let rows: Vec<String> = s
                .query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            out.push_str(&rows.join("\n"));
            out.push_str("\n--\n");
        }
        out
    }
}
