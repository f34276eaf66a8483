//! `raid.json`: the status the monitor publishes for `cairnctl` and the panel, which also
//! carries what the monitor must remember across a restart (homes, bay names, scrub times).
//! Written (temp file, rename) only when something other than its time changed.

use super::{Monitor, MonitorError};
use crate::requests::STATUS_FILE;
use crate::{ArrayStatus, BayDisk, Blocked, MemberState};
use cairn_files::{atomic_write, Durability};
use cairn_hal::disks::Contents;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What the monitor remembers across a restart.
#[derive(Serialize, Deserialize, Default)]
struct Memory {
    #[serde(default)]
    homes: BTreeMap<u32, String>,
    #[serde(default)]
    bay_of: BTreeMap<String, u32>,
    #[serde(default)]
    last_scrub_ms: BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct BayStatus {
    bay: u32,
    device: Option<String>,
    size_bytes: Option<u64>,
    contents: Option<Contents>,
    member_of: Option<String>,
    fault: bool,
}

#[derive(Serialize)]
struct StatusFile<'a> {
    updated_at_ms: u64,
    board: &'a str,
    arrays: Vec<ArrayStatus>,
    bays: Vec<BayStatus>,
    blocked: &'a [Blocked],
    #[serde(flatten)]
    memory: Memory,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MonitorError + '_ {
    move |source| MonitorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Monitor {
    fn status_path(&self) -> PathBuf {
        self.config.data_dir.join(STATUS_FILE)
    }

    /// Take over what the last `raid.json` remembered (nothing when there is none).
    pub(super) fn load_memory(&mut self) {
        if let Ok(text) = std::fs::read_to_string(self.status_path()) {
            if let Ok(m) = serde_json::from_str::<Memory>(&text) {
                self.homes = m.homes;
                self.bay_of = m.bay_of;
                self.last_scrub_ms = m.last_scrub_ms;
            }
        }
    }

    /// Write `raid.json` if anything but its time changed since the last write.
    pub(super) fn publish(
        &mut self,
        arrays: Vec<ArrayStatus>,
        bays: &[BayDisk],
        now: u64,
    ) -> Result<(), MonitorError> {
        let faulty: BTreeSet<u32> = arrays
            .iter()
            .flat_map(|a| a.members.iter())
            .filter(|m| m.state == MemberState::Faulty)
            .filter_map(|m| m.bay)
            .collect();
        let bay_list = self
            .hw
            .board
            .bays
            .iter()
            .map(|b| {
                let d = bays.iter().find(|d| d.bay == b.number);
                BayStatus {
                    bay: b.number,
                    device: d.map(|d| d.device.clone()),
                    size_bytes: d.map(|d| d.size_bytes),
                    contents: d.map(|d| d.contents),
                    member_of: d.and_then(|d| d.member_of.clone()),
                    fault: faulty.contains(&b.number),
                }
            })
            .collect();
        let file = StatusFile {
            updated_at_ms: 0,
            board: &self.hw.board.name,
            arrays,
            bays: bay_list,
            blocked: &self.blocked,
            memory: Memory {
                homes: self.homes.clone(),
                bay_of: self.bay_of.clone(),
                last_scrub_ms: self.last_scrub_ms.clone(),
            },
        };
        let body = serde_json::to_string(&file)?;
        if body == self.last_written {
            return Ok(());
        }
        let mut value = serde_json::to_value(&file)?;
        value["updated_at_ms"] = now.into();
        let path = self.status_path();
        // NotSynced: published status, written again on the next pass.
        atomic_write(
            &path,
            &serde_json::to_vec_pretty(&value)?,
            Durability::NotSynced,
        )
        .map_err(io(&path))?;
        self.last_written = body;
        Ok(())
    }
}
