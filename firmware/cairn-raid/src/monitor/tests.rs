//! The monitor's main paths against the md emulator (a sysfs-shaped tree in a temporary
//! directory, with SMART files): a disk fails, the alarm is silenced, a swap rebuilds and the
//! healthy array clears it, SMART warnings, requests, the scrub schedule, the signals.

use super::*;
use crate::requests::{Answer, Request};
use cairn_alarm::{AlarmFile, AlarmKind};
use cairn_hal::emulator::{NewDisk, ARRAY, REBUILD_SECS};
use cairn_hal::smart::SmartFiles;
use std::path::Path;
use std::time::Duration;

/// A moment to start from (ms since the Unix epoch).
const T0: u64 = 1_700_000_000_000;
const DAY_MS: u64 = 86_400_000;

struct Rig {
    dir: tempfile::TempDir,
    emu: Arc<Emulator>,
    alarm_file: AlarmFile,
    m: Monitor,
}

fn board() -> Board {
    Board::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board/demo/board.toml")).unwrap()
}

/// A monitor on a fresh emulated RAID 6 of six bays (the demo box).
fn rig(scrub_interval_days: u32) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let emu = Arc::new(Emulator::create(dir.path().join("hw"), 6).unwrap());
    let alarm_file = AlarmFile::new(dir.path().join("alarm.json"));
    let m = monitor_on(dir.path(), &emu, scrub_interval_days, true);
    Rig {
        dir,
        emu,
        alarm_file,
        m,
    }
}

/// A monitor over the tree in `dir` (as after a restart); `demo` gives it the emulator's hands.
fn monitor_on(dir: &Path, emu: &Arc<Emulator>, scrub_interval_days: u32, demo: bool) -> Monitor {
    let root = emu.root();
    let hw = Hardware {
        board: board(),
        md: MdSysfs::new(root),
        disks: Disks::new(root),
        control: emu.clone(),
        smart: Box::new(SmartFiles::new(emu.smart_dir())),
        emulator: demo.then(|| emu.clone()),
    };
    let config = MonitorConfig {
        data_dir: dir.to_path_buf(),
        scrub_interval_days,
        smart_every_ms: DEMO_SMART_EVERY_MS,
    };
    let alarm = SharedAlarm::load(AlarmFile::new(dir.join("alarm.json"))).unwrap();
    Monitor::new(hw, config, alarm)
}

impl Rig {
    fn step(&mut self, now: u64) -> Vec<AuditRecord> {
        self.m.step(now).unwrap();
        self.m.take_audit()
    }

    fn alarm(&self) -> cairn_alarm::AlarmState {
        self.m.alarm.snapshot()
    }

    fn led(&self, name: &str) -> String {
        let p = self
            .emu
            .root()
            .join("sys/class/leds")
            .join(name)
            .join("brightness");
        std::fs::read_to_string(p).unwrap().trim().to_string()
    }

    fn md0(&self) -> ArraySnapshot {
        MdSysfs::new(self.emu.root()).read_array(ARRAY).unwrap()
    }

    fn status(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.path().join("raid.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

/// The rows of one action, in order.
fn rows<'a>(audit: &'a [AuditRecord], action: &str) -> Vec<&'a AuditRecord> {
    audit.iter().filter(|r| r.action == action).collect()
}

fn ok(message: &str) -> Answer {
    Answer {
        ok: true,
        message: message.into(),
    }
}

fn no(message: &str) -> Answer {
    Answer {
        ok: false,
        message: message.into(),
    }
}

#[test]
fn a_failed_disk_is_audited_raises_its_alarm_and_lights_its_bay() {
    let mut r = rig(0);
    let first = r.step(T0);
    assert!(rows(&first, "raid-event").is_empty(), "{first:?}");
    assert!(r.alarm().events.is_empty());
    assert_eq!(r.status()["arrays"][0]["health"], "ok");

    assert_eq!(r.emu.fail_disk(3).unwrap(), "sdc");
    let audit = r.step(T0 + 200);
    let events: Vec<_> = rows(&audit, "raid-event")
        .iter()
        .map(|e| e.detail.clone())
        .collect();
    assert!(
        events.contains(&serde_json::json!({
            "kind": "disk-failed", "array": "md0", "bay": 3, "device": "sdc"
        })),
        "{events:?}"
    );
    let raised = rows(&audit, "alarm-raise");
    assert_eq!(raised.len(), 1, "{audit:?}");
    assert_eq!(
        (raised[0].actor.as_str(), raised[0].object.as_str()),
        ("system", "md0")
    );
    assert_eq!(raised[0].detail["kind"], "disk-failed");
    assert_eq!(raised[0].detail["bay"], 3);

    let alarm = r.alarm();
    assert_eq!(alarm.events.len(), 1);
    let e = &alarm.events[0];
    assert_eq!(
        (e.kind, e.bay, e.array.as_deref(), e.message.as_str()),
        (
            AlarmKind::DiskFailed,
            Some(3),
            Some("md0"),
            "The disk in bay 3 failed (md0)"
        )
    );
    assert_eq!(e.raised_at_ms, T0 + 200);
    assert!(alarm.sounding());
    assert_eq!(r.alarm_file.load().unwrap(), alarm, "the latch is on disk");
    assert_eq!(r.led("bay3-fault"), "1");
    assert_eq!(r.led("bay4-fault"), "0");
    let status = r.status();
    assert_eq!(status["arrays"][0]["health"], "degraded");
    assert_eq!(status["bays"][2]["fault"], true);

    // Latched: the next passes raise nothing new.
    assert!(rows(&r.step(T0 + 400), "alarm-raise").is_empty());

    // Two down in a RAID 6: no redundancy left.
    r.emu.fail_disk(4).unwrap();
    let audit = r.step(T0 + 600);
    let kinds: Vec<_> = rows(&audit, "alarm-raise")
        .iter()
        .map(|e| e.detail["kind"].clone())
        .collect();
    assert_eq!(kinds, ["disk-failed", "array-critical"]);
    assert!(r
        .alarm()
        .events
        .iter()
        .any(|e| e.kind == AlarmKind::ArrayCritical
            && e.message == "md0 has no redundancy left: one more failure loses data"));
    assert_eq!(
        r.alarm().pattern(),
        Some(AlarmKind::ArrayCritical.pattern())
    );
}

#[test]
fn a_silence_quiets_the_latch_until_a_new_event() {
    let mut r = rig(0);
    r.step(T0);
    assert_eq!(
        r.m.handle(
            Request::AlarmSilence {
                id: None,
                by: "user:alice".into()
            },
            T0
        ),
        ok("nothing was sounding")
    );
    r.emu.fail_disk(2).unwrap();
    r.step(T0 + 200);
    assert!(r.alarm().sounding());
    let answer = r.m.handle(
        Request::AlarmSilence {
            id: None,
            by: "user:alice".into(),
        },
        T0 + 300,
    );
    assert_eq!(answer, ok("silenced event(s) [1]"));
    let audit = r.m.take_audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].actor.as_str(),
            audit[0].action.as_str(),
            audit[0].object.as_str()
        ),
        ("user:alice", "alarm-silence", "alarm")
    );
    assert_eq!(audit[0].detail, serde_json::json!({"ids": [1]}));
    assert!(!r.alarm().sounding());
    assert_eq!(r.alarm().pattern(), None);
    let saved = r.alarm_file.load().unwrap();
    assert_eq!(saved.events[0].silenced_by.as_deref(), Some("user:alice"));

    // Still failed: the silenced event stays latched and is not raised again.
    assert!(rows(&r.step(T0 + 400), "alarm-raise").is_empty());
    assert!(!r.alarm().sounding());
    // A second failure sounds again.
    r.emu.fail_disk(5).unwrap();
    r.step(T0 + 600);
    assert!(r.alarm().sounding());
}

#[test]
fn a_swap_rebuilds_and_the_healthy_array_clears_its_alarm_and_fault_led() {
    let mut r = rig(0);
    r.step(T0);
    r.emu.fail_disk(3).unwrap();
    r.step(T0 + 200);
    assert_eq!(r.led("bay3-fault"), "1");

    let answer = r.m.handle(
        Request::DiskRemove {
            bay: 3,
            by: "user:bob".into(),
        },
        T0 + 300,
    );
    assert_eq!(
        answer,
        ok("the disk in bay 3 is out of md0; its locate LED is on: pull it and slide in the new disk")
    );
    let audit = r.m.take_audit();
    assert_eq!(audit[0].action, "disk-remove");
    assert_eq!(audit[0].actor, "user:bob");
    assert_eq!(
        audit[0].detail,
        serde_json::json!({"bay": 3, "device": "sdc"})
    );
    assert_eq!(r.led("bay3-locate"), "1");
    assert!(r.md0().members.iter().all(|m| m.kname != "sdc"));

    // The removed member's name is free again: the new disk takes it.
    assert_eq!(r.emu.insert_disk(3, NewDisk::Blank).unwrap(), "sdc");
    let audit = r.step(T0 + 400);
    let actions = rows(&audit, "raid-action");
    assert_eq!(actions.len(), 1, "{audit:?}");
    assert_eq!(
        actions[0].detail["action"],
        serde_json::json!({"action": "add", "array": "md0", "bay": 3, "device": "sdc"})
    );
    assert_eq!(actions[0].detail["ok"], true);
    assert_eq!(r.md0().sync_action, "recover");
    assert!(r.alarm().sounding(), "degraded while it rebuilds");

    // Let the emulator's rebuild run its (real) time.
    r.emu.tick().unwrap();
    std::thread::sleep(Duration::from_secs_f64(REBUILD_SECS + 0.3));
    r.emu.tick().unwrap();
    assert_eq!(r.md0().degraded, 0);

    let audit = r.step(T0 + 9_000);
    let cleared = rows(&audit, "alarm-clear");
    assert_eq!(cleared.len(), 1, "{audit:?}");
    assert_eq!(cleared[0].object, "md0");
    assert_eq!(cleared[0].detail, serde_json::json!({"ids": [1]}));
    assert!(r.alarm().events.is_empty());
    assert!(r.alarm_file.load().unwrap().events.is_empty());
    assert_eq!(r.led("bay3-fault"), "0");
    assert_eq!(r.status()["arrays"][0]["health"], "ok");
    // Healthy and quiet: nothing more to clear.
    assert!(rows(&r.step(T0 + 9_200), "alarm-clear").is_empty());
}

#[test]
fn smart_early_warning_failing_disk_and_its_recovery() {
    let mut r = rig(0);
    assert!(rows(&r.step(T0), "smart-event").is_empty());

    r.emu.write_smart("sdb", true, 8).unwrap();
    // Not due yet: read every DEMO_SMART_EVERY_MS.
    assert!(rows(&r.step(T0 + DEMO_SMART_EVERY_MS - 1), "smart-event").is_empty());
    let audit = r.step(T0 + DEMO_SMART_EVERY_MS);
    let smart = rows(&audit, "smart-event");
    assert_eq!(smart.len(), 1, "{audit:?}");
    assert_eq!(smart[0].object, "bay 2");
    assert_eq!(smart[0].detail["kind"], "smart-warning");
    assert_eq!(
        smart[0].detail["message"],
        "SMART: bay 2: reallocated sectors grew from 0 to 8"
    );
    assert!(r.alarm().events.is_empty(), "a warning does not sound");

    r.emu.write_smart("sdb", false, 8).unwrap();
    let audit = r.step(T0 + 2 * DEMO_SMART_EVERY_MS);
    assert_eq!(
        rows(&audit, "smart-event")[0].detail["kind"],
        "smart-failing"
    );
    let raised = rows(&audit, "alarm-raise");
    assert_eq!(raised.len(), 1, "{audit:?}");
    assert_eq!(raised[0].object, "bay 2");
    let alarm = r.alarm();
    assert_eq!(
        (
            alarm.events[0].kind,
            alarm.events[0].bay,
            alarm.events[0].array.as_deref()
        ),
        (AlarmKind::DiskFailing, Some(2), None)
    );
    assert_eq!(
        alarm.events[0].message,
        "SMART: the disk in bay 2 reports itself failing: replace it"
    );
    let member = &r.status()["arrays"][0]["members"][1];
    assert_eq!(member["bay"], 2);
    assert_eq!(member["smart"]["verdict"], "failing");

    // The disk says it passes again: its event clears.
    r.emu.write_smart("sdb", true, 8).unwrap();
    r.step(T0 + 3 * DEMO_SMART_EVERY_MS);
    assert!(r.alarm().events.is_empty());
}

#[test]
fn requests_are_answered_and_unsafe_ones_refused() {
    let mut r = rig(0);
    r.step(T0);
    let mut ask = |req: Request| r.m.handle(req, T0);
    assert_eq!(
        ask(Request::DiskLocate { bay: 9, on: true }),
        no("no bay 9 on this board")
    );
    assert_eq!(
        ask(Request::DiskLocate { bay: 2, on: true }),
        ok("locate LED of bay 2 on")
    );
    assert_eq!(
        ask(Request::DiskRemove {
            bay: 2,
            by: "cli".into()
        }),
        ok("the disk in bay 2 is out of md0; its locate LED is on: pull it and slide in the new disk")
    );
    // md0 is degraded now: a working member stays.
    assert_eq!(
        ask(Request::DiskRemove {
            bay: 3,
            by: "cli".into()
        }),
        no(&crate::Refusal::HealthyMemberOfDegradedArray.to_string())
    );
    // A disk in use is never confirmed for wiping, and the refusal is not audited.
    assert_eq!(
        ask(Request::DiskConfirm {
            bay: 3,
            by: "cli".into()
        }),
        no("bay 3 holds a disk in use by md0: it is not wiped; confirm only a new disk that waits to be added")
    );
    assert_eq!(
        ask(Request::DiskRemove {
            bay: 2,
            by: "cli".into()
        }),
        no("no array member in bay 2")
    );
    assert_eq!(
        ask(Request::DiskConfirm {
            bay: 2,
            by: "cli".into()
        }),
        ok("bay 2: the disk will be wiped and added if it is large enough")
    );
    assert_eq!(
        ask(Request::DemoInsertDisk {
            bay: 2,
            kind: "huge".into()
        }),
        no("unknown disk kind huge")
    );
    assert_eq!(
        ask(Request::DemoInsertDisk {
            bay: 7,
            kind: "blank".into()
        }),
        no("no bay 7 on this board")
    );
    assert_eq!(
        ask(Request::DemoInsertDisk {
            bay: 2,
            kind: "used".into()
        }),
        ok("demo: a Used disk (sdb) is in bay 2")
    );
    assert_eq!(r.led("bay2-locate"), "1");
    let audit = r.m.take_audit();
    let actions: Vec<_> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["disk-remove", "disk-confirm-wipe"]);
    assert_eq!(audit[1].object, "bay 2");
    assert_eq!(audit[1].detail, serde_json::json!({}));

    // The confirmed used disk is wiped, then added, in one pass.
    let audit = r.step(T0 + 200);
    let kinds: Vec<_> = rows(&audit, "raid-action")
        .iter()
        .map(|a| (a.detail["action"]["action"].clone(), a.detail["ok"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [("wipe".into(), true.into()), ("add".into(), true.into())],
        "{audit:?}"
    );
    assert!(r.m.confirmed.is_empty(), "the confirmation is spent");

    // Without the emulator's hands the demo's requests are refused.
    let mut real = monitor_on(r.dir.path(), &r.emu, 0, false);
    assert_eq!(
        real.handle(Request::DemoFailDisk { bay: 1 }, T0),
        no("not a demo box")
    );
    assert!(r.emu.root().join("dev/sda").exists());
}

#[test]
fn scrubs_start_on_schedule_and_on_request() {
    let mut r = rig(1);
    r.step(T0);
    r.step(T0 + DAY_MS - 1);
    assert_eq!(r.md0().sync_action, "idle");
    r.step(T0 + DAY_MS);
    assert_eq!(r.md0().sync_action, "check");
    r.step(T0 + DAY_MS + 200);
    assert_eq!(r.status()["last_scrub_ms"]["md0"], T0 + DAY_MS);
    // Busy: a scrub asked for now is refused by md; an unknown array too.
    assert!(
        !r.m.handle(
            Request::Scrub {
                array: "md0".into()
            },
            T0
        )
        .ok
    );
    assert!(
        !r.m.handle(
            Request::Scrub {
                array: "md7".into()
            },
            T0
        )
        .ok
    );

    let mut never = rig(0);
    never.step(T0);
    never.step(T0 + 400 * DAY_MS);
    assert_eq!(never.md0().sync_action, "idle");
    let answer = never.m.handle(
        Request::Scrub {
            array: "md0".into(),
        },
        T0 + 5,
    );
    assert_eq!(answer, ok("scrub of md0 started"));
    assert_eq!(never.md0().sync_action, "check");
    never.step(T0 + 10);
    assert_eq!(never.status()["last_scrub_ms"]["md0"], T0 + 5);
}

#[test]
fn medium_needed_is_latched_once_and_cleared_when_loaded() {
    let mut r = rig(0);
    r.m.medium(None, || unreachable!("not known: nothing to say"), T0);
    r.m.medium(Some(true), || "Load tape CAIRN02 in drive lto".into(), T0);
    let alarm = r.alarm();
    assert_eq!(alarm.events.len(), 1);
    assert_eq!(
        (alarm.events[0].kind, alarm.events[0].message.as_str()),
        (AlarmKind::MediumNeeded, "Load tape CAIRN02 in drive lto")
    );
    let audit = r.m.take_audit();
    assert_eq!(
        (audit[0].action.as_str(), audit[0].object.as_str()),
        ("alarm-raise", "archive")
    );
    assert_eq!(audit[0].detail["kind"], "medium-needed");

    r.m.handle(
        Request::AlarmSilence {
            id: None,
            by: "button".into(),
        },
        T0,
    );
    r.m.medium(
        Some(true),
        || unreachable!("latched: not asked again"),
        T0 + 1,
    );
    assert!(!r.alarm().sounding(), "the silence holds");
    r.m.medium(None, || unreachable!(), T0 + 2);
    assert_eq!(r.alarm().events.len(), 1, "unknown clears nothing");
    r.m.take_audit();

    r.m.medium(Some(false), || unreachable!(), T0 + 3);
    assert!(r.alarm().events.is_empty());
    let audit = r.m.take_audit();
    assert_eq!(
        (audit[0].action.as_str(), audit[0].object.as_str()),
        ("alarm-clear", "archive")
    );
    assert_eq!(audit[0].detail, serde_json::json!({"ids": [1]}));
    r.m.medium(Some(false), || unreachable!(), T0 + 4);
    assert!(r.m.take_audit().is_empty());
}

#[test]
fn a_damaged_study_is_raised_once_per_study() {
    let mut r = rig(0);
    let report = |study: &str, damage| DamageReport {
        study_uid: study.into(),
        sop_instance_uid: "1.2.3.4.5".into(),
        damage,
    };
    r.m.object_damaged(&report("1.2.3", DamageKind::HashMismatch), T0);
    r.m.object_damaged(&report("1.2.3", DamageKind::Missing), T0 + 1);
    r.m.object_damaged(&report("", DamageKind::Missing), T0 + 2);
    let alarm = r.alarm();
    let messages: Vec<_> = alarm.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "An image file of study 1.2.3 is damaged: restore the study from its tape or disc copy",
            "An image file of study (unknown study) is missing: restore the study from its tape \
             or disc copy",
        ]
    );
    assert_eq!(alarm.events[0].study.as_deref(), Some("1.2.3"));
    let audit = r.m.take_audit();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].object, "1.2.3");
    assert_eq!(audit[0].detail["problem"], "hash-mismatch");
    assert_eq!(audit[0].detail["sop_instance_uid"], "1.2.3.4.5");
    assert_eq!(audit[1].object, "(unknown study)");
}

#[test]
fn a_restart_remembers_where_a_removed_disk_belongs() {
    let mut r = rig(0);
    r.step(T0);
    let answer = r.m.handle(
        Request::DiskRemove {
            bay: 4,
            by: "cli".into(),
        },
        T0,
    );
    assert!(answer.ok, "{answer:?}");
    r.step(T0 + 200);
    assert_eq!(r.status()["homes"]["4"], "md0");

    // A new monitor over the same data directory adds the new disk in bay 4 to md0.
    r.m = monitor_on(r.dir.path(), &r.emu, 0, true);
    r.emu.insert_disk(4, NewDisk::Blank).unwrap();
    let audit = r.step(T0 + 400);
    let added: Vec<_> = rows(&audit, "raid-action")
        .iter()
        .map(|a| a.detail["action"].clone())
        .collect();
    assert_eq!(
        added,
        [serde_json::json!({"action": "add", "array": "md0", "bay": 4, "device": "sdd"})]
    );
}
