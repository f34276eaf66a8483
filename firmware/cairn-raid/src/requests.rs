//! The files `cairnd`'s RAID monitor shares with `cairnctl` and the panel in the data
//! directory: the published status (`raid.json`) and requests (`requests/*.json`, answered by a
//! `*.done` file beside them).

use serde::{Deserialize, Serialize};

/// The status the monitor publishes, relative to the data directory.
pub const STATUS_FILE: &str = "raid.json";
/// The alarm's default state file, relative to the data directory.
pub const ALARM_FILE: &str = "alarm.json";
/// Where requests are dropped, relative to the data directory.
pub const REQUEST_DIR: &str = "requests";

/// A request to the running monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Silence one alarm event, or all sounding ones.
    AlarmSilence {
        /// The event id; all when absent.
        id: Option<u64>,
        /// Who (`user:NAME`, `button`, `panel:NAME`).
        by: String,
    },
    /// Switch a bay's locate LED.
    DiskLocate {
        /// Bay.
        bay: u32,
        /// On or off.
        on: bool,
    },
    /// Take the member in a bay out of its array (faulty, then remove).
    DiskRemove {
        /// Bay.
        bay: u32,
        /// Who asks.
        by: String,
    },
    /// Allow wiping the non-blank disk in a bay and adding it.
    DiskConfirm {
        /// Bay.
        bay: u32,
        /// Who confirms.
        by: String,
    },
    /// Start a scrub now.
    Scrub {
        /// Array.
        array: String,
    },
    /// Demo only: the disk in a bay dies.
    DemoFailDisk {
        /// Bay.
        bay: u32,
    },
    /// Demo only: pull the disk out of a bay.
    DemoPullDisk {
        /// Bay.
        bay: u32,
    },
    /// Demo only: slide a disk into a bay (blank, used or small).
    DemoInsertDisk {
        /// Bay.
        bay: u32,
        /// blank, used, small.
        kind: String,
    },
}

/// The monitor's answer, written as `<request>.done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Whether it was done.
    pub ok: bool,
    /// What happened, for a person.
    pub message: String,
}
