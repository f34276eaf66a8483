//! cairn's RAID health monitor logic: md snapshots (from `cairn-hal`) become health classes,
//! events (the difference between two snapshots), a status people and scripts read, and the
//! plan of safe actions for a disk swap.
//!
//! Owns: the health rule per RAID level, event detection, rebuild progress and ETA, and which
//! md actions are safe (the refusals that protect data), and the request/answer file exchange
//! with the running monitor ([`requests::send`], shared by `cairnctl` and the panel), and the
//! monitor's state machine that runs all of it ([`monitor::Monitor`]: events to alarms, SMART
//! polling, scrub schedule, requests, `raid.json`).
//! Must never: touch `/sys` or `/dev` itself (it only reads snapshots and returns plans), or name
//! a disk to a person by its kernel name alone: bays come first.

mod events;
pub mod monitor;
mod plan;
pub mod requests;
mod smart;
mod status;

pub use events::{diff, RaidEvent};
pub use plan::{check_add, check_remove, homes, plan, Action, BayDisk, Blocked, Refusal};
pub use smart::{smart_events, smart_health, SmartEvent, SmartHealth, SmartVerdict};
pub use status::{status, ArrayStatus, MemberState, MemberStatus, Progress};

use cairn_hal::md::ArraySnapshot;
use serde::{Deserialize, Serialize};

/// How much an array can still lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Full redundancy.
    Ok,
    /// Redundancy reduced, some left.
    Degraded,
    /// Running with no redundancy left: one more failure loses data.
    Critical,
    /// More members lost than the level survives, or the array is not running.
    Failed,
}

impl Health {
    /// `ok`, `degraded`, `critical` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Degraded => "degraded",
            Health::Critical => "critical",
            Health::Failed => "failed",
        }
    }
}

/// Members a level can lose without losing data.
pub fn redundancy(level: &str) -> u32 {
    match level {
        "raid6" => 2,
        "raid1" | "raid4" | "raid5" | "raid10" => 1,
        _ => 0,
    }
}

/// Whether md is running the array (not stopped, not still assembling).
pub fn running(a: &ArraySnapshot) -> bool {
    !matches!(a.array_state.as_str(), "" | "clear" | "inactive")
}

/// The health class of one array.
pub fn health(a: &ArraySnapshot) -> Health {
    if !running(a) {
        return Health::Failed;
    }
    let r = redundancy(&a.level);
    match a.degraded {
        0 => Health::Ok,
        d if d > r => Health::Failed,
        d if d == r => Health::Critical,
        _ => Health::Degraded,
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use cairn_hal::board::Board;
    use cairn_hal::disks::Disks;
    use cairn_hal::md::{ArraySnapshot, MdSysfs};
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    pub fn root(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/md")
            .join(name)
    }

    pub fn load(name: &str) -> Vec<ArraySnapshot> {
        MdSysfs::new(root(name)).snapshot().unwrap()
    }

    pub fn md0(name: &str) -> ArraySnapshot {
        load(name).into_iter().find(|a| a.name == "md0").unwrap()
    }

    /// kname -> bay through the qemu board file, as the monitor builds it.
    pub fn bays(name: &str) -> BTreeMap<String, u32> {
        let board = Board::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board/qemu-x86_64/board.toml"),
        )
        .unwrap();
        let disks = Disks::new(root(name));
        let mut out = BTreeMap::new();
        for (path, k) in disks.by_path().unwrap() {
            if let Some(b) = board.bay_of_path(&path) {
                out.insert(k, b.number);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_per_fixture() {
        for (name, want) in [
            ("clean", Health::Ok),
            ("degraded", Health::Degraded),
            ("critical", Health::Critical),
            ("failed", Health::Failed),
            ("recovering", Health::Degraded),
            ("resync", Health::Ok),
            ("check", Health::Ok),
            ("check-done", Health::Ok),
            ("spare", Health::Ok),
            ("spare-active", Health::Degraded),
        ] {
            assert_eq!(health(&fixtures::md0(name)), want, "{name}");
        }
    }

    #[test]
    fn several_arrays_raid5_and_stopped() {
        let arrays = fixtures::load("clean");
        let names: Vec<_> = arrays.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["md0", "md1", "md2"]);
        assert_eq!(arrays[1].level, "raid5");
        assert_eq!(health(&arrays[1]), Health::Ok);
        assert!(!running(&arrays[2]));
        assert_eq!(health(&arrays[2]), Health::Failed);
        let mut one_lost = arrays[1].clone();
        one_lost.degraded = 1;
        assert_eq!(health(&one_lost), Health::Critical);
    }
}
