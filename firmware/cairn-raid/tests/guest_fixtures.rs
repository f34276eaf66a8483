//! The monitor's logic on md sysfs trees captured from a real kernel (the qemu rig's guest,
//! `tools/vm capture-md`, tests/fixtures/md-guest): health, bays and events between states.

use cairn_hal::board::Board;
use cairn_hal::disks::Disks;
use cairn_hal::md::{ArraySnapshot, MdSysfs};
use cairn_raid::{diff, health, Health, RaidEvent};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/md-guest")
        .join(name)
}

fn arrays(name: &str) -> Vec<ArraySnapshot> {
    MdSysfs::new(root(name))
        .snapshot()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn md127(name: &str) -> ArraySnapshot {
    let mut all = arrays(name);
    assert_eq!(all.len(), 1, "{name}: one array in the rig");
    all.remove(0)
}

/// kname -> bay through the rig's board file, as the monitor builds it.
fn bays(name: &str) -> BTreeMap<String, u32> {
    let board_file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board/qemu-x86_64-scsi/board.toml");
    let board = Board::load(&board_file).unwrap_or_else(|e| panic!("{e}"));
    let mut out = BTreeMap::new();
    let by_path = Disks::new(root(name))
        .by_path()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    for (path, k) in by_path {
        if let Some(b) = board.bay_of_path(&path) {
            out.insert(k, b.number);
        }
    }
    out
}

#[test]
fn health_of_each_real_kernel_state() {
    for (name, want) in [
        ("clean", Health::Ok),
        ("degraded", Health::Degraded),
        ("recovering", Health::Degraded),
        ("check", Health::Ok),
        ("check-done", Health::Ok),
    ] {
        let a = md127(name);
        assert_eq!(a.level, "raid6", "{name}");
        assert_eq!(a.raid_disks, 5, "{name}");
        assert_eq!(health(&a), want, "{name}");
    }
}

#[test]
fn every_member_has_a_bay() {
    for name in ["clean", "degraded", "recovering", "check-done"] {
        let a = md127(name);
        let b = bays(name);
        for m in &a.members {
            assert!(b.contains_key(&m.kname), "{name}: {} has no bay", m.kname);
        }
    }
    let mut clean: Vec<u32> = bays("clean").values().copied().collect();
    clean.sort_unstable();
    assert_eq!(clean, [1, 2, 3, 4, 5]);
}

#[test]
fn failed_disk_is_named_by_its_bay() {
    let ev = diff(
        Some(&arrays("clean")),
        &arrays("degraded"),
        &bays("degraded"),
    );
    assert!(
        ev.iter()
            .any(|e| matches!(e, RaidEvent::DiskFailed { bay: Some(3), .. })),
        "{ev:?}"
    );
    assert!(
        ev.iter().any(|e| matches!(
            e,
            RaidEvent::HealthChanged {
                to: Health::Degraded,
                ..
            }
        )),
        "{ev:?}"
    );
}

#[test]
fn recovery_reports_progress() {
    let a = md127("recovering");
    assert_eq!(a.sync_action, "recover");
    let Some((done, total)) = a.sync_completed else {
        panic!("no sync_completed while recovering");
    };
    assert!(done > 0 && done < total, "{done} / {total}");
    let ev = diff(
        Some(&arrays("degraded")),
        &arrays("recovering"),
        &bays("recovering"),
    );
    assert!(
        ev.iter()
            .any(|e| matches!(e, RaidEvent::RebuildStarted { .. })),
        "{ev:?}"
    );
}

#[test]
fn scrub_with_mismatches_is_reported() {
    let running = md127("check");
    assert_eq!(running.sync_action, "check");
    let done = md127("check-done");
    assert_eq!(done.sync_action, "idle");
    assert!(done.mismatch_cnt > 0);
    let ev = diff(
        Some(&arrays("check")),
        &arrays("check-done"),
        &bays("check-done"),
    );
    assert!(
        ev.iter().any(|e| matches!(
            e,
            RaidEvent::ScrubFinished { mismatches, .. } if *mismatches == done.mismatch_cnt
        )),
        "{ev:?}"
    );
}
