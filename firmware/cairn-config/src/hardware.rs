//! `[hardware]`: the board file, the RAID monitor's sysfs root and the alarm's state file.

use serde::Deserialize;
use std::path::PathBuf;

/// `[hardware]`: which board this is and where the RAID monitor and alarm look.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareConfig {
    /// The board file (`board/<name>/board.toml`); without it the RAID monitor and the alarm
    /// do not run.
    #[serde(default)]
    pub board: Option<PathBuf>,
    /// Root under which `sys/` and `dev/` are read (default `/`).
    #[serde(default)]
    pub sysfs_root: Option<PathBuf>,
    /// The alarm's latched state file (default `<data_dir>/alarm.json`).
    #[serde(default)]
    pub alarm_state: Option<PathBuf>,
    /// Days between scheduled scrubs (`sync_action=check`); 0 turns them off (default 30).
    #[serde(default)]
    pub scrub_interval_days: Option<u32>,
}
