//! The status of an array as people and scripts see it: bays, member states, progress.

use crate::{health, running, Health};
use cairn_hal::md::{ArraySnapshot, MemberSnapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a member is doing, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Working and up to date.
    InSync,
    /// Given a slot, being rebuilt.
    Rebuilding,
    /// A hot spare waiting.
    Spare,
    /// Failed (md marked it faulty).
    Faulty,
    /// Its disk is gone from the system.
    Missing,
    /// Something else (e.g. journal).
    Other,
}

/// Classify a member.
pub fn member_state(m: &MemberSnapshot) -> MemberState {
    if m.has("faulty") {
        MemberState::Faulty
    } else if !m.present {
        MemberState::Missing
    } else if m.has("in_sync") {
        MemberState::InSync
    } else if m.has("spare") && m.slot.is_some() {
        MemberState::Rebuilding
    } else if m.has("spare") {
        MemberState::Spare
    } else {
        MemberState::Other
    }
}

/// One member in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The bay its disk sits in (null when the board file does not know the disk).
    pub bay: Option<u32>,
    /// One word: in_sync, rebuilding, spare, faulty, missing, other.
    pub state: MemberState,
    /// Kernel name (for logs and experts).
    pub device: String,
    /// Its slot in the array.
    pub slot: Option<u32>,
    /// The raw md flags (in_sync, write_mostly, blocked...).
    pub flags: Vec<String>,
    /// Read errors md corrected on it.
    pub errors: u64,
    /// Its disk's SMART state (filled in by the monitor; null until read).
    #[serde(default)]
    pub smart: Option<crate::SmartHealth>,
}

/// A resync, recovery, reshape or check under way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// md's word: recover, resync, reshape, check, repair.
    pub action: String,
    /// Percent done (0 to 100).
    pub percent: f64,
    /// KiB/s, when md reports it.
    pub speed_kib: Option<u64>,
    /// Seconds left at the current speed.
    pub eta_secs: Option<u64>,
}

impl Progress {
    /// Progress of a snapshot's sync action, if one runs.
    pub fn of(a: &ArraySnapshot) -> Option<Progress> {
        if matches!(a.sync_action.as_str(), "" | "idle" | "frozen") {
            return None;
        }
        let (done, total) = a.sync_completed.unwrap_or((0, 0));
        let percent = if total == 0 {
            0.0
        } else {
            (done as f64 * 100.0 / total as f64).min(100.0)
        };
        let eta_secs = a
            .sync_speed_kib
            .filter(|s| *s > 0)
            .map(|s| total.saturating_sub(done) / 2 / s);
        Some(Progress {
            action: a.sync_action.clone(),
            percent: (percent * 10.0).round() / 10.0,
            speed_kib: a.sync_speed_kib,
            eta_secs,
        })
    }

    /// Whether this restores redundancy (as opposed to a scrub).
    pub fn is_rebuild(&self) -> bool {
        matches!(self.action.as_str(), "recover" | "resync" | "reshape")
    }
}

/// One array's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArrayStatus {
    /// `md0`.
    pub name: String,
    /// `raid6`.
    pub level: String,
    /// ok, degraded, critical, failed.
    pub health: Health,
    /// False while stopped or assembling.
    pub running: bool,
    /// Slots.
    pub raid_disks: u32,
    /// Slots without a working member.
    pub degraded: u32,
    /// md's sync_action.
    pub sync_action: String,
    /// Rebuild (recover/resync/reshape) percent; null when none runs.
    pub rebuild_percent: Option<f64>,
    /// The running sync action with speed and ETA (rebuild or scrub).
    pub progress: Option<Progress>,
    /// Mismatches counted by the last or current check.
    pub mismatch_cnt: u64,
    /// KiB each member must provide.
    pub component_size_kib: u64,
    /// The members, by bay.
    pub members: Vec<MemberStatus>,
}

/// Build the status of an array; `bay_of` maps kernel names (disks and partitions) to bays.
pub fn status(a: &ArraySnapshot, bay_of: &BTreeMap<String, u32>) -> ArrayStatus {
    let progress = Progress::of(a);
    let mut members: Vec<MemberStatus> = a
        .members
        .iter()
        .map(|m| MemberStatus {
            bay: bay_of.get(&m.kname).copied(),
            state: member_state(m),
            device: m.kname.clone(),
            slot: m.slot,
            flags: m.flags.clone(),
            errors: m.errors,
            smart: None,
        })
        .collect();
    members.sort_by_key(|m| (m.bay.unwrap_or(u32::MAX), m.device.clone()));
    ArrayStatus {
        name: a.name.clone(),
        level: a.level.clone(),
        health: health(a),
        running: running(a),
        raid_disks: a.raid_disks,
        degraded: a.degraded,
        sync_action: a.sync_action.clone(),
        rebuild_percent: progress
            .as_ref()
            .filter(|p| p.is_rebuild())
            .map(|p| p.percent),
        progress,
        mismatch_cnt: a.mismatch_cnt,
        component_size_kib: a.component_size_kib,
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn recovering_has_progress_eta_and_bays() {
        let s = status(&fixtures::md0("recovering"), &fixtures::bays("recovering"));
        assert_eq!(s.health, Health::Degraded);
        assert_eq!(s.rebuild_percent, Some(25.0));
        let p = s.progress.unwrap();
        assert_eq!(p.speed_kib, Some(102_400));
        // 3145728 sectors left = 1572864 KiB at 102400 KiB/s
        assert_eq!(p.eta_secs, Some(15));
        let bay3 = s.members.iter().find(|m| m.bay == Some(3)).unwrap();
        assert_eq!(bay3.state, MemberState::Rebuilding);
        assert_eq!(bay3.device, "sdg2");
        assert!(s.members.iter().all(|m| m.bay.is_some()));
    }

    #[test]
    fn states_per_fixture() {
        let s = status(&fixtures::md0("degraded"), &fixtures::bays("degraded"));
        let bay3 = s.members.iter().find(|m| m.bay == Some(3)).unwrap();
        assert_eq!(bay3.state, MemberState::Faulty);
        assert_eq!(s.rebuild_percent, None);

        let s = status(&fixtures::md0("clean"), &fixtures::bays("clean"));
        assert!(s.members.iter().all(|m| m.state == MemberState::InSync));
        assert!(s.members[5].flags.contains(&"write_mostly".to_string()));

        let s = status(&fixtures::md0("critical"), &fixtures::bays("critical"));
        assert!(s.members[3].flags.contains(&"blocked".to_string()));

        let s = status(&fixtures::md0("spare"), &fixtures::bays("spare"));
        let spare = s.members.iter().find(|m| m.device == "sdg2").unwrap();
        assert_eq!((spare.state, spare.bay), (MemberState::Spare, None));

        let s = status(&fixtures::md0("resync"), &fixtures::bays("resync"));
        assert_eq!(s.rebuild_percent, Some(12.5));

        let s = status(&fixtures::md0("check"), &fixtures::bays("check"));
        assert_eq!(s.rebuild_percent, None);
        assert_eq!(s.progress.unwrap().percent, 50.0);
        assert_eq!(s.mismatch_cnt, 128);
    }
}
