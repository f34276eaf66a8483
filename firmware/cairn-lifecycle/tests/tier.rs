//! The tier pass on a real store whose cold copies are written and verified by the real
//! archive writer on an emulated tape: a study moves to the archive tier only when it is old
//! enough and every current instance has a verified copy, its files get the immutable
//! attribute, and the store then refuses to change it.
#![allow(clippy::unwrap_used)]

use cairn_archive::engine::{Archiver, Drive, Policy, TargetSpec};
use cairn_files::immutable::{immutable_flag, set_immutable, Flag};
use cairn_hal::tape::emulator::{self, CartridgeSpec};
use cairn_hal::tape::EmulatedTape;
use cairn_lifecycle::tier::{tier_pass, TierSchedule};
use cairn_retention::Period;
use cairn_store::{DataDir, InstanceRecord, Store, StoreError, StoreJob, StoreOutcome};
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

struct Rig {
    _dir: tempfile::TempDir,
    data: DataDir,
    store: Store,
    archiver: Archiver,
}

impl Rig {
    /// A store and an archiver with one tape target holding a blank cartridge.
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let store = Store::open(data.clone()).unwrap();
        let archiver = tape_archiver(&store, &dir.path().join("tape"));
        Rig {
            _dir: dir,
            data,
            store,
            archiver,
        }
    }
}

/// An archiver writing to an emulated tape drive in `drive`, loaded with a blank cartridge.
fn tape_archiver(store: &Store, drive: &Path) -> Archiver {
    let blank = CartridgeSpec {
        id: "TAPE01".into(),
        capacity: 1 << 30,
        early_warning: (1 << 30) - (1 << 20),
    };
    emulator::init_drive(drive).unwrap();
    emulator::insert_blank(drive, &blank).unwrap();
    let policy = Policy {
        box_id: "TESTBOX".into(),
        bundle_max_bytes: 1 << 30,
        bundle_max_age: Duration::from_secs(3600),
        bundle_max_members: 100_000,
        volume_name_prefix: "CAIRN".into(),
    };
    let d = drive.to_path_buf();
    let open = Box::new(move || Ok(Drive::Tape(Box::new(EmulatedTape::open(&d)?))));
    let target = TargetSpec {
        name: "tape0".into(),
        kind: "tape".into(),
        open,
    };
    Archiver::new(store.clone(), policy, vec![target]).unwrap()
}

impl Rig {
    /// Store instance `n` of `study` (dated `date`) with `bytes` as its content.
    fn put(
        &self,
        study: &str,
        date: &str,
        n: u32,
        bytes: &[u8],
    ) -> Result<StoreOutcome, StoreError> {
        let mut w = self.store.spool().unwrap();
        w.write(bytes).unwrap();
        let spool = w.finish().unwrap();
        let mut rec = InstanceRecord {
            sop_instance_uid: format!("{study}.1.{n}"),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.7".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            ..Default::default()
        };
        rec.patient.id = "PID-1".into();
        rec.study.uid = study.into();
        rec.study.date = date.into();
        rec.series.uid = format!("{study}.1");
        self.store.commit(StoreJob {
            spool,
            record: rec,
            source_ae: "TEST".into(),
        })
    }

    fn tier(&self, study: &str) -> (String, Option<String>) {
        let c = Connection::open(self.data.db()).unwrap();
        c.query_row(
            "SELECT tier, archived_at FROM studies WHERE study_uid = ?1",
            [study],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    fn files_of(&self, study: &str) -> Vec<std::path::PathBuf> {
        let c = Connection::open(self.data.db()).unwrap();
        let mut stmt = c
            .prepare(
                "SELECT i.sha256 FROM instances i JOIN series se ON se.id = i.series_ref
                   JOIN studies st ON st.id = se.study_ref WHERE st.study_uid = ?1",
            )
            .unwrap();
        let shas: Vec<String> = stmt
            .query_map([study], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        shas.iter().map(|s| self.data.object_path(s)).collect()
    }

    fn audit(&self, action: &str) -> Vec<(String, String, String)> {
        let c = Connection::open(self.data.db()).unwrap();
        let mut stmt = c
            .prepare("SELECT actor, object, detail FROM audit WHERE action = ?1 ORDER BY seq")
            .unwrap();
        let rows = stmt
            .query_map([action], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows
    }
}

impl Drop for Rig {
    /// Archived files keep their immutable attribute: clear it so the directory can go.
    fn drop(&mut self) {
        for f in cairn_store_objects(&self.data) {
            let _ = set_immutable(&f, false);
        }
    }
}

fn cairn_store_objects(data: &DataDir) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![data.objects()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn date(s: &str) -> jiff::civil::Date {
    s.parse().unwrap()
}

#[test]
fn a_study_moves_only_when_old_enough_and_fully_copied_then_is_fixed() {
    let mut r = Rig::new();
    let today = cairn_lifecycle::today();
    let today_da = today.strftime("%Y%m%d").to_string();
    let three_years = Period::years(3);
    // old: 2020; young: dated today; undated: counts from its first receipt (today)
    for n in 1..=2 {
        r.put("1.2.3.1", "20200101", n, format!("old {n}").as_bytes())
            .unwrap();
    }
    r.put("1.2.3.2", &today_da, 1, b"young").unwrap();
    r.put("1.2.3.3", "", 1, b"undated").unwrap();

    // no verified copy yet: nothing moves, the old study waits for its copy
    let rep = tier_pass(&r.store, three_years, today).unwrap();
    assert!(rep.archived.is_empty(), "{rep:?}");
    assert_eq!(rep.waiting_for_copy, 1);
    assert_eq!(r.tier("1.2.3.1"), ("storage".into(), None));

    // the copies are written and verified: the old study moves, the young ones stay
    r.archiver.flush(None).unwrap();
    let rep = tier_pass(&r.store, three_years, today).unwrap();
    assert_eq!(rep.archived, vec!["1.2.3.1".to_string()]);
    assert_eq!(rep.waiting_for_copy, 0);
    let (tier, at) = r.tier("1.2.3.1");
    assert_eq!(tier, "archive");
    assert!(at.is_some());
    assert_eq!(r.tier("1.2.3.2").0, "storage");
    assert_eq!(r.tier("1.2.3.3").0, "storage");
    let rows = r.audit("tier-archive");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("system", "1.2.3.1")
    );
    let detail: serde_json::Value = serde_json::from_str(&rows[0].2).unwrap();
    assert_eq!(detail["from"], "2020-01-01");
    assert_eq!(detail["archive_after"], "3 years");
    assert_eq!(detail["instances"], 2);

    // its files got the immutable attribute, where this process may set it
    let files = r.files_of("1.2.3.1");
    assert_eq!(files.len(), 2);
    let f = rep.files;
    assert_eq!(f.fixed + f.unsupported + f.not_permitted, 2, "{f:?}");
    if f.fixed == 2 {
        for p in &files {
            assert_eq!(immutable_flag(p).unwrap(), Flag::Set);
            assert!(
                std::fs::remove_file(p).is_err(),
                "an archived file was deleted"
            );
        }
    }

    // a second pass changes nothing
    let rep = tier_pass(&r.store, three_years, today).unwrap();
    assert!(rep.archived.is_empty());

    // the store now refuses to change the archived study; an identical resend is fine
    assert_eq!(
        r.put("1.2.3.1", "20200101", 1, b"old 1").unwrap(),
        StoreOutcome::Duplicate
    );
    let e = r
        .put("1.2.3.1", "20200101", 1, b"old 1, edited")
        .unwrap_err();
    assert!(matches!(e, StoreError::Archived(_)), "{e}");
    let e = r.put("1.2.3.1", "20200101", 3, b"old 3").unwrap_err();
    assert!(e.to_string().contains("a new instance is refused"), "{e}");
    let fsck = cairn_store::fsck(&r.data, Default::default()).unwrap();
    assert!(fsck.problems.is_empty(), "{:?}", fsck.problems);
    assert!(cairn_store::verify_audit(&r.data)
        .unwrap()
        .findings
        .is_empty());

    // "0": every study with a verified copy moves, whatever its age
    let rep = tier_pass(&r.store, None, today).unwrap();
    assert_eq!(
        rep.archived,
        vec!["1.2.3.2".to_string(), "1.2.3.3".to_string()]
    );
    let detail: serde_json::Value = serde_json::from_str(&r.audit("tier-archive")[1].2).unwrap();
    assert_eq!(detail["archive_after"], "0");
}

#[test]
fn a_new_version_waits_for_its_own_copy_and_a_future_date_is_not_due() {
    let mut r = Rig::new();
    let today = date("2030-06-01");
    r.put("1.2.4.1", "20200101", 1, b"first").unwrap();
    r.put("1.2.4.2", "20990101", 1, b"future").unwrap();
    r.archiver.flush(None).unwrap();
    // a new version of the instance arrives after the copy: the current bytes are uncopied
    assert_eq!(
        r.put("1.2.4.1", "20200101", 1, b"second").unwrap(),
        StoreOutcome::NewVersion
    );
    let rep = tier_pass(&r.store, None, today).unwrap();
    assert!(rep.archived.is_empty(), "{rep:?}");
    assert_eq!(rep.waiting_for_copy, 1);
    r.archiver.flush(None).unwrap();
    let rep = tier_pass(&r.store, None, today).unwrap();
    assert_eq!(rep.archived, vec!["1.2.4.1".to_string()]);
    // both versions are the study's files
    assert_eq!(
        rep.files.fixed + rep.files.unsupported + rep.files.not_permitted,
        2
    );
    assert_eq!(r.tier("1.2.4.2").0, "storage");
}

#[test]
fn the_schedule_runs_when_copies_are_verified_or_the_day_changes() {
    let mut r = Rig::new();
    let today = date("2030-06-01");
    let mut s = TierSchedule::new(Period::years(3));
    assert!(
        s.tick(&r.store, today).unwrap().is_some(),
        "the first tick runs"
    );
    assert!(
        s.tick(&r.store, today).unwrap().is_none(),
        "nothing changed"
    );
    r.put("1.2.5.1", "20200101", 1, b"one").unwrap();
    assert!(
        s.tick(&r.store, today).unwrap().is_none(),
        "a new instance is never ready"
    );
    r.archiver.flush(None).unwrap();
    let rep = s.tick(&r.store, today).unwrap().unwrap();
    assert_eq!(rep.archived, vec!["1.2.5.1".to_string()]);
    assert!(s.tick(&r.store, today).unwrap().is_none());
    let tomorrow = date("2030-06-02");
    assert!(s.tick(&r.store, tomorrow).unwrap().is_some());

    // a restarted daemon gives an archived file that lost its attribute the attribute again
    let file = r.files_of("1.2.5.1").remove(0);
    if immutable_flag(&file).unwrap() == Flag::Set {
        set_immutable(&file, false).unwrap();
        assert!(TierSchedule::new(Period::years(3))
            .tick(&r.store, tomorrow)
            .unwrap()
            .is_some());
        assert_eq!(immutable_flag(&file).unwrap(), Flag::Set);
    }
}

#[test]
fn without_immutable_files_studies_still_move_and_their_files_stay_deletable() {
    let mut r = Rig::new();
    let today = date("2030-06-01");
    r.put("1.2.6.1", "20200101", 1, b"demo").unwrap();
    r.archiver.flush(None).unwrap();
    let mut s = TierSchedule::new(None);
    s.set_immutable_files(false);
    let rep = s.tick(&r.store, today).unwrap().unwrap();
    assert_eq!(rep.archived, vec!["1.2.6.1".to_string()]);
    assert_eq!(rep.files, Default::default());
    let file = r.files_of("1.2.6.1").remove(0);
    assert_ne!(immutable_flag(&file).unwrap(), Flag::Set);
    assert_eq!(r.tier("1.2.6.1").0, "archive");
}
