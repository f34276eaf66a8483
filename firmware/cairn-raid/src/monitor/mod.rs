//! The RAID monitor's state machine: what the box does on each md snapshot, SMART reading,
//! request, "medium needed" and damaged-object report. It raises and clears the latched alarm
//! (`cairn-alarm`), carries out the safe md actions of the swap plan, schedules scrubs, answers
//! requests, keeps `raid.json`, and hands the audit rows it owes to the caller
//! ([`Monitor::take_audit`]).
//!
//! Every touch of `/sys` and `/dev` goes through the `cairn-hal` types in [`Hardware`] (the real
//! sysfs or the md emulator); the threads, the buzzer, the button and the request files stay in
//! `cairnd`. Time comes in as an argument, so tests can move it.

mod pass;
mod requests;
mod scrub;
mod signals;
mod smart_poll;
mod status_file;
#[cfg(test)]
mod tests;

use crate::{Blocked, Health};
use cairn_alarm::{AlarmKind, AlarmState, SharedAlarm};
use cairn_hal::board::Board;
use cairn_hal::disks::Disks;
use cairn_hal::emulator::Emulator;
use cairn_hal::md::{ArraySnapshot, MdControl, MdSysfs};
use cairn_hal::smart::{SmartReport, SmartSource};
use cairn_hal::HalError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

/// How often each disk's SMART is read on the box (10 min): smartctl wakes the disk.
pub const SMART_EVERY_MS: u64 = 600_000;
/// How often the demo's emulated disks' SMART files are read (5 s).
pub const DEMO_SMART_EVERY_MS: u64 = 5_000;

/// A pass of the monitor could not finish.
#[derive(Debug, Error)]
pub enum MonitorError {
    /// md or the disks could not be read.
    #[error(transparent)]
    Hal(#[from] HalError),
    /// `raid.json` could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The status could not be put into JSON.
    #[error("raid.json: {0}")]
    Json(#[from] serde_json::Error),
}

/// The hardware the monitor reads and drives, all under one injectable root.
pub struct Hardware {
    /// The board file: bays, their by-path names and LEDs.
    pub board: Board,
    /// md state from sysfs.
    pub md: MdSysfs,
    /// The disks in the bays.
    pub disks: Disks,
    /// md actions and LEDs (the kernel's sysfs or the emulator).
    pub control: Arc<dyn MdControl>,
    /// SMART reports (smartctl, or the emulator's files).
    pub smart: Box<dyn SmartSource>,
    /// The md emulator (demo only): the demo's requests fail, pull and insert disks in it.
    pub emulator: Option<Arc<Emulator>>,
}

/// Where the monitor keeps its files and how often it acts.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The data directory (`raid.json` is kept there).
    pub data_dir: PathBuf,
    /// Days between scheduled scrubs, 0 = never.
    pub scrub_interval_days: u32,
    /// Milliseconds between two SMART reads of the same disk.
    pub smart_every_ms: u64,
}

/// One audit row the monitor owes: the caller writes it into the store's audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Who acted (`system`, or the person or button that asked).
    pub actor: String,
    /// What happened (`raid-event`, `alarm-raise`, `alarm-clear`, `disk-remove`, ...).
    pub action: String,
    /// What it happened to (an array, `bay N`, a study, `archive`, `alarm`).
    pub object: String,
    /// The details, as JSON.
    pub detail: serde_json::Value,
}

/// The monitor's state between passes.
pub struct Monitor {
    hw: Hardware,
    config: MonitorConfig,
    alarm: SharedAlarm,
    /// The last snapshot (events are the difference to the next).
    prev: Option<Vec<ArraySnapshot>>,
    /// Kernel name -> bay, as last seen through `/dev/disk/by-path`.
    bay_of: BTreeMap<String, u32>,
    /// Bay -> the array its member last served (where a new disk there goes).
    homes: BTreeMap<u32, String>,
    /// Bays whose non-blank disk a person allowed to be wiped.
    confirmed: BTreeSet<u32>,
    /// Disks waiting for a person, as last reported.
    blocked: Vec<Blocked>,
    /// Array -> when its last scrub started (ms).
    last_scrub_ms: BTreeMap<String, u64>,
    /// The last `raid.json` body written (without its time), so an unchanged one is not.
    last_written: String,
    /// Per bay: the disk last read, its last report, when it was read (ms).
    smart: BTreeMap<u32, (String, SmartReport, u64)>,
    /// Audit rows not yet handed over.
    audit: Vec<AuditRecord>,
}

/// What was wrong with a stored image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// Its file is not there.
    Missing,
    /// Its file could not be read.
    Unreadable,
    /// Its bytes no longer match the SHA-256 that names them.
    HashMismatch,
}

impl DamageKind {
    /// The word in the audit row (`missing`, `unreadable`, `hash-mismatch`).
    pub fn as_str(self) -> &'static str {
        match self {
            DamageKind::Missing => "missing",
            DamageKind::Unreadable => "unreadable",
            DamageKind::HashMismatch => "hash-mismatch",
        }
    }

    /// The word in the sentence for people (`missing`, `unreadable`, `damaged`).
    fn for_people(self) -> &'static str {
        match self {
            DamageKind::Missing => "missing",
            DamageKind::Unreadable => "unreadable",
            DamageKind::HashMismatch => "damaged",
        }
    }
}

/// A stored image file found missing or damaged, named by UIDs only (never patient data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamageReport {
    /// Its study (empty when unknown).
    pub study_uid: String,
    /// Its SOP Instance UID.
    pub sop_instance_uid: String,
    /// What was wrong.
    pub damage: DamageKind,
}

fn bay_word(bay: Option<u32>) -> String {
    bay.map_or("an unknown bay".to_string(), |b| format!("bay {b}"))
}

impl Monitor {
    /// A monitor over `hw`, remembering the homes, bay names and scrub times the last
    /// `raid.json` in the data directory recorded.
    pub fn new(hw: Hardware, config: MonitorConfig, alarm: SharedAlarm) -> Self {
        let mut m = Monitor {
            hw,
            config,
            alarm,
            prev: None,
            bay_of: BTreeMap::new(),
            homes: BTreeMap::new(),
            confirmed: BTreeSet::new(),
            blocked: Vec::new(),
            last_scrub_ms: BTreeMap::new(),
            last_written: String::new(),
            smart: BTreeMap::new(),
            audit: Vec::new(),
        };
        m.load_memory();
        m
    }

    /// The audit rows owed since the last call, oldest first.
    pub fn take_audit(&mut self) -> Vec<AuditRecord> {
        std::mem::take(&mut self.audit)
    }

    /// The md emulator, when the monitor runs on one.
    pub fn emulator(&self) -> Option<&Arc<Emulator>> {
        self.hw.emulator.as_ref()
    }

    fn audit(&mut self, actor: &str, action: &str, object: &str, detail: serde_json::Value) {
        self.audit.push(AuditRecord {
            actor: actor.into(),
            action: action.into(),
            object: object.into(),
            detail,
        });
    }

    fn with_alarm<T>(&self, f: impl FnOnce(&mut AlarmState) -> T) -> T {
        let (out, saved) = self.alarm.change(f);
        if let Err(e) = saved {
            tracing::error!(error = %e, "cannot save the alarm state");
        }
        out
    }

    /// Raise an event about an array (and maybe a bay), audited when it is new.
    fn raise(&mut self, kind: AlarmKind, bay: Option<u32>, array: &str, message: String, now: u64) {
        let id = self.with_alarm(|a| a.raise(kind, bay, Some(array), &message, now));
        if let Some(id) = id {
            tracing::warn!(%message, id, "alarm");
            self.audit(
                "system",
                "alarm-raise",
                array,
                serde_json::json!({"id": id, "kind": kind, "bay": bay, "message": message}),
            );
        }
    }

    /// Switch a bay's fault (`fault`) or locate LED, if the board has one.
    fn led(&self, bay: u32, fault: bool, on: bool) {
        if let Some(b) = self.hw.board.bay(bay) {
            let led = if fault { &b.fault_led } else { &b.locate_led };
            if let Some(led) = led {
                if let Err(e) = self.hw.control.set_led(led, on) {
                    tracing::warn!(error = %e, bay, "LED");
                }
            }
        }
    }

    /// Whether the array is healthy and running (its alarm events may be cleared).
    fn healthy(status: &crate::ArrayStatus) -> bool {
        status.health == Health::Ok && status.running
    }
}
