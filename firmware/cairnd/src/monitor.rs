//! Wiring of the RAID monitor and the alarm: the monitor thread that feeds
//! [`cairn_raid::monitor::Monitor`] (md snapshots, requests, the archive's "medium needed", the
//! DICOM node's damaged objects) and writes the audit rows it owes, the buzzer player and the
//! front button. What to do on each input lives in `cairn-raid` and `cairn-alarm`; the hardware
//! in `cairn-hal`. The archive's "medium needed" reaches the monitor through the in-process
//! [`MediumSignal`] the archive thread sets, and the stored objects the DICOM node finds missing
//! or damaged through a channel of [`DamagedObject`]s.

use crate::archive::MediumSignal;
use anyhow::{Context, Result};
use cairn_alarm::{AlarmFile, SharedAlarm};
use cairn_audit::AuditEvent;
use cairn_dicom::{Damage, DamagedObject};
use cairn_hal::board::{Board, BuzzerConfig};
use cairn_hal::disks::Disks;
use cairn_hal::emulator::Emulator;
use cairn_hal::md::{MdControl, MdSysfs};
use cairn_hal::smart::{SmartFiles, SmartSource, Smartctl};
use cairn_hal::uevent::UeventWatcher;
use cairn_raid::monitor::{
    DamageKind, DamageReport, Hardware, Monitor, MonitorConfig, DEMO_SMART_EVERY_MS, SMART_EVERY_MS,
};
use cairn_raid::requests::{Request, REQUEST_DIR};
use cairn_store::Store;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Where the monitor reads and what it drives.
pub struct MonitorSetup {
    /// The data directory (status, requests, alarm state).
    pub data_dir: PathBuf,
    /// Root of `sys/` and `dev/`.
    pub root: PathBuf,
    /// The board file.
    pub board: Board,
    /// The alarm state file.
    pub alarm_file: PathBuf,
    /// The md emulator (demo) or none (real kernel).
    pub emulator: Option<Arc<Emulator>>,
    /// Days between scrubs, 0 = never.
    pub scrub_interval_days: u32,
}

/// The running monitor threads.
pub struct MonitorHandle {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    emulated: bool,
}

impl MonitorHandle {
    /// True when the array is the demo's emulator.
    pub fn is_emulated(&self) -> bool {
        self.emulated
    }

    /// Stop the threads (the buzzer is switched off) and wait for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Prepare the demo's emulated hardware under `dir/hw` (first run) and describe it.
pub fn demo_setup(dir: &Path) -> Result<MonitorSetup> {
    let hw = dir.join("hw");
    std::fs::create_dir_all(&hw).with_context(|| format!("cannot create {}", hw.display()))?;
    let board_path = hw.join("board.toml");
    if !board_path.exists() {
        std::fs::write(&board_path, include_str!("../../../board/demo/board.toml"))?;
    }
    let board = Board::load(&board_path)?;
    let emulator = Emulator::create(&hw, board.bays.len() as u32)?;
    Ok(MonitorSetup {
        data_dir: dir.to_path_buf(),
        root: hw,
        board,
        alarm_file: dir.join(cairn_raid::requests::ALARM_FILE),
        emulator: Some(Arc::new(emulator)),
        scrub_interval_days: 30,
    })
}

/// Start the monitor, the buzzer player and (if the board has one) the button reader.
/// `medium` is the archive thread's "medium needed" state (`None`: no cold target, so a
/// `medium-needed` event left latched from an earlier configuration is cleared); `damaged`
/// brings the DICOM node's reports of missing or damaged stored objects.
pub fn start(
    setup: MonitorSetup,
    store: Store,
    medium: Option<MediumSignal>,
    damaged: Receiver<DamagedObject>,
) -> Result<MonitorHandle> {
    let emulated = setup.emulator.is_some();
    std::fs::create_dir_all(setup.data_dir.join(REQUEST_DIR))?;
    let alarm = SharedAlarm::load(AlarmFile::new(&setup.alarm_file))?;
    let buzzer = cairn_hal::buzzer::open(&setup.board.buzzer, &setup.root)
        .context("cannot open the buzzer named by the board file")?;
    if let BuzzerConfig::Emulated { file } = &setup.board.buzzer {
        tracing::info!(file = %file.display(), "emulated buzzer");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    if let Some(button) = setup.board.button.clone() {
        let data_dir = setup.data_dir.clone();
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            button_loop(&button, &data_dir, &stop);
        }));
    }
    {
        let alarm = alarm.clone();
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || play(buzzer, &alarm, &stop)));
    }
    let uevents = if emulated {
        None
    } else {
        match UeventWatcher::open() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "no uevent socket: disks are noticed by the sysfs poll");
                None
            }
        }
    };
    let mut wiring = Wiring {
        md: MdSysfs::new(&setup.root),
        data_dir: setup.data_dir.clone(),
        monitor: Monitor::new(hardware(&setup), config(&setup), alarm),
        store,
        uevents,
        medium,
        damaged,
    };
    {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || wiring.run(&stop)));
    }
    Ok(MonitorHandle {
        stop,
        threads,
        emulated,
    })
}

/// The monitor's hardware: the emulator (demo) or the kernel's sysfs and smartctl.
fn hardware(setup: &MonitorSetup) -> Hardware {
    let control: Arc<dyn MdControl> = match &setup.emulator {
        Some(e) => e.clone(),
        None => Arc::new(cairn_hal::md::SysfsControl::new(&setup.root)),
    };
    let smart: Box<dyn SmartSource> = match &setup.emulator {
        Some(e) => Box::new(SmartFiles::new(e.root().join("smart"))),
        None => Box::new(Smartctl::new(&setup.root)),
    };
    Hardware {
        board: setup.board.clone(),
        md: MdSysfs::new(&setup.root),
        disks: Disks::new(&setup.root),
        control,
        smart,
        emulator: setup.emulator.clone(),
    }
}

fn config(setup: &MonitorSetup) -> MonitorConfig {
    MonitorConfig {
        data_dir: setup.data_dir.clone(),
        scrub_interval_days: setup.scrub_interval_days,
        smart_every_ms: if setup.emulator.is_some() {
            DEMO_SMART_EVERY_MS
        } else {
            SMART_EVERY_MS
        },
    }
}

/// A press of the front button silences: the same request `cairnctl alarm silence` sends,
/// dropped atomically into `requests/` (the monitor thread answers it on its next pass).
fn button_loop(config: &cairn_hal::board::ButtonConfig, data_dir: &Path, stop: &AtomicBool) {
    let mut button = match cairn_hal::buzzer::Button::open(config) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "front button unavailable");
            return;
        }
    };
    while !stop.load(Ordering::SeqCst) {
        match button.wait_press() {
            Ok(()) => {
                let req = Request::AlarmSilence {
                    id: None,
                    by: "button".into(),
                };
                if let Err(e) = cairn_raid::requests::submit(data_dir, &req) {
                    tracing::error!(error = %e, "front button: cannot hand over the silence");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "front button read failed");
                return;
            }
        }
    }
}

/// Play the alarm's pattern until stopped; a silenced or cleared alarm stops within 50 ms.
fn play(mut buzzer: Box<dyn cairn_hal::buzzer::Buzzer>, alarm: &SharedAlarm, stop: &AtomicBool) {
    let current = || alarm.pattern();
    let mut last_hz = u32::MAX;
    let mut set = |hz: u32, last: &mut u32| {
        if *last != hz {
            if let Err(e) = buzzer.tone(hz) {
                tracing::warn!(error = %e, "buzzer");
            }
            *last = hz;
        }
    };
    set(0, &mut last_hz);
    let mut idx = 0;
    let mut playing = None;
    while !stop.load(Ordering::SeqCst) {
        let Some(p) = current() else {
            set(0, &mut last_hz);
            playing = None;
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if playing != Some(p) {
            playing = Some(p);
            idx = 0;
        }
        let (hz, ms) = p.0[idx % p.0.len()];
        set(hz, &mut last_hz);
        let mut left = ms;
        while left > 0 && !stop.load(Ordering::SeqCst) && current() == Some(p) {
            let step = left.min(50);
            std::thread::sleep(Duration::from_millis(step.into()));
            left -= step;
        }
        idx = (idx + 1) % p.0.len();
    }
    set(0, &mut last_hz);
}

/// The monitor thread's inputs and outputs around the state machine.
struct Wiring {
    monitor: Monitor,
    /// md, for waiting on its change notifications.
    md: MdSysfs,
    data_dir: PathBuf,
    store: Store,
    /// Kernel uevents (real kernel only): a disk pulled or slid in wakes the loop at once.
    uevents: Option<UeventWatcher>,
    /// The archive's "medium needed", or none without cold targets.
    medium: Option<MediumSignal>,
    /// Stored objects the DICOM node found missing or damaged.
    damaged: Receiver<DamagedObject>,
}

impl Wiring {
    fn run(&mut self, stop: &AtomicBool) {
        let emulated = self.monitor.emulator().is_some();
        let tick = Duration::from_millis(if emulated { 200 } else { 500 });
        while !stop.load(Ordering::SeqCst) {
            self.handle_requests();
            if let Some(e) = self.monitor.emulator() {
                if let Err(e) = e.tick() {
                    tracing::warn!(error = %e, "md emulator");
                }
            }
            if let Err(e) = self.monitor.step(cairn_hal::now_ms()) {
                tracing::warn!(error = %e, "RAID monitor");
            }
            self.flush_audit();
            let needed = match &self.medium {
                Some(m) => m.needed(),
                None => Some(false),
            };
            let data_dir = &self.data_dir;
            self.monitor
                .medium(needed, || medium_message(data_dir), cairn_hal::now_ms());
            while let Ok(d) = self.damaged.try_recv() {
                self.monitor
                    .object_damaged(&damage_report(&d), cairn_hal::now_ms());
            }
            self.flush_audit();
            if emulated {
                std::thread::sleep(tick);
            } else {
                self.wait(tick);
            }
        }
    }

    /// Hand the audit rows the monitor owes to the store's writer.
    fn flush_audit(&mut self) {
        for r in self.monitor.take_audit() {
            self.store.audit_later(AuditEvent {
                actor: r.actor,
                action: r.action,
                object: r.object,
                detail: r.detail.to_string(),
            });
        }
    }

    /// Answer each `requests/*.json` in name order with a `*.done` beside it.
    fn handle_requests(&mut self) {
        let data_dir = self.data_dir.clone();
        cairn_raid::requests::serve(&data_dir, |req| {
            let answer = self.monitor.handle(req, cairn_hal::now_ms());
            self.flush_audit();
            answer
        });
    }

    /// Real kernel: sleep until md notifies a change, the kernel announces a block device
    /// coming or going (uevent), or `tick` passes (the sysfs poll kept as the fallback).
    fn wait(&mut self, tick: Duration) {
        let woke = match &self.uevents {
            Some(w) => self.md.wait_for_change_or(tick, &[w.as_fd()]),
            None => self.md.wait_for_change(tick),
        };
        if let Err(e) = woke {
            tracing::warn!(error = %e, "md poll");
            std::thread::sleep(tick);
        }
        let drained = match &self.uevents {
            Some(w) => w.drain(),
            None => return,
        };
        match drained {
            Ok(events) => {
                for ev in events.iter().filter(|e| e.is_block()) {
                    if matches!(ev.action.as_str(), "add" | "remove") {
                        tracing::info!(action = %ev.action, device = ?ev.devname, "block device");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "uevent socket failed; falling back to the sysfs poll");
                self.uevents = None;
            }
        }
    }
}

/// The DICOM node's report in the monitor's terms (UIDs and what was wrong, nothing else).
fn damage_report(d: &DamagedObject) -> DamageReport {
    DamageReport {
        study_uid: d.study_uid.clone(),
        sop_instance_uid: d.sop_instance_uid.clone(),
        damage: match d.damage {
            Damage::Missing => DamageKind::Missing,
            Damage::Unreadable => DamageKind::Unreadable,
            Damage::HashMismatch => DamageKind::HashMismatch,
        },
    }
}

/// The sentence for the panel's headline: which medium, in which drive (the archive's own
/// words, the same the overview shows).
fn medium_message(data_dir: &Path) -> String {
    let data = cairn_store::DataDir::new(data_dir);
    cairn_archive::archive_status(&data)
        .ok()
        .and_then(|s| cairn_archive::catalog::medium_needed_message(&s))
        .unwrap_or_else(|| {
            "Tape or disc needed: load a new one (images are waiting for their cold copy)".into()
        })
}
