//! Wiring of the RAID monitor and the alarm: probe -> events -> alarm -> buzzer, audit rows,
//! the published status file, requests from `cairnctl` and the panel. The logic lives in
//! `cairn-raid` and `cairn-alarm`; the hardware in `cairn-hal`. The archive's "medium needed"
//! reaches the alarm here too, through the in-process [`MediumSignal`] the archive thread sets,
//! and so do the stored objects the DICOM node finds missing or damaged (a channel of
//! [`DamagedObject`]s, one latched `object-damaged` event per study).

use crate::archive::MediumSignal;
use anyhow::{Context, Result};
use cairn_alarm::{AlarmFile, AlarmKind, AlarmState};
use cairn_audit::AuditEvent;
use cairn_dicom::DamagedObject;
use cairn_hal::board::{Board, BuzzerConfig};
use cairn_hal::disks::{Contents, Disks};
use cairn_hal::emulator::{Emulator, NewDisk};
use cairn_hal::md::{ArraySnapshot, MdControl, MdSysfs};
use cairn_hal::smart::{SmartFiles, SmartReport, SmartSource, Smartctl};
use cairn_hal::uevent::UeventWatcher;
use cairn_raid::requests::{Answer, Request, REQUEST_DIR, STATUS_FILE};
use cairn_raid::{Action, BayDisk, Blocked, Health, RaidEvent, SmartEvent};
use cairn_store::Store;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often each disk's SMART is read on the box (10 min): smartctl wakes the disk.
const SMART_EVERY_MS: u64 = 600_000;

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
    let alarm_file = AlarmFile::new(&setup.alarm_file);
    let alarm = Arc::new(Mutex::new(alarm_file.load()?));
    let buzzer = cairn_hal::buzzer::open(&setup.board.buzzer, &setup.root)
        .context("cannot open the buzzer named by the board file")?;
    if let BuzzerConfig::Emulated { file } = &setup.board.buzzer {
        tracing::info!(file = %file.display(), "emulated buzzer");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let control: Arc<dyn MdControl> = match &setup.emulator {
        Some(e) => e.clone(),
        None => Arc::new(cairn_hal::md::SysfsControl::new(&setup.root)),
    };
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
    let setup_emulator_root = setup.emulator.as_ref().map(|e| e.root().to_path_buf());
    let setup_root = setup.root.clone();
    let mut m = Monitor {
        md: MdSysfs::new(&setup.root),
        disks: Disks::new(&setup.root),
        setup,
        control,
        alarm,
        alarm_file,
        store,
        prev: None,
        bay_of: BTreeMap::new(),
        homes: BTreeMap::new(),
        confirmed: BTreeSet::new(),
        blocked: Vec::new(),
        last_scrub_ms: BTreeMap::new(),
        last_written: String::new(),
        uevents: None,
        smart_source: match &setup_emulator_root {
            Some(root) => Box::new(SmartFiles::new(root.join("smart"))),
            None => Box::new(Smartctl::new(&setup_root)),
        },
        smart: BTreeMap::new(),
        medium,
        damaged,
    };
    if m.setup.emulator.is_none() {
        match UeventWatcher::open() {
            Ok(w) => m.uevents = Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "no uevent socket: disks are noticed by the sysfs poll")
            }
        }
    }
    m.load_memory();
    {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || m.run(&stop)));
    }
    Ok(MonitorHandle {
        stop,
        threads,
        emulated,
    })
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
fn play(
    mut buzzer: Box<dyn cairn_hal::buzzer::Buzzer>,
    alarm: &Mutex<AlarmState>,
    stop: &AtomicBool,
) {
    let current = || alarm.lock().map(|a| a.pattern()).unwrap_or(None);
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

#[derive(Serialize, serde::Deserialize, Default)]
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
    arrays: Vec<cairn_raid::ArrayStatus>,
    bays: Vec<BayStatus>,
    blocked: &'a [Blocked],
    #[serde(flatten)]
    memory: Memory,
}

struct Monitor {
    setup: MonitorSetup,
    md: MdSysfs,
    disks: Disks,
    control: Arc<dyn MdControl>,
    alarm: Arc<Mutex<AlarmState>>,
    alarm_file: AlarmFile,
    store: Store,
    prev: Option<Vec<ArraySnapshot>>,
    bay_of: BTreeMap<String, u32>,
    homes: BTreeMap<u32, String>,
    confirmed: BTreeSet<u32>,
    blocked: Vec<Blocked>,
    last_scrub_ms: BTreeMap<String, u64>,
    last_written: String,
    /// Kernel uevents (real kernel only): a disk pulled or slid in wakes the loop at once.
    uevents: Option<UeventWatcher>,
    /// smartctl (real) or the emulator's SMART files.
    smart_source: Box<dyn SmartSource>,
    /// Per bay: the disk last read, its last report, when it was read (ms).
    smart: BTreeMap<u32, (String, SmartReport, u64)>,
    /// The archive's "medium needed", or none without cold targets.
    medium: Option<MediumSignal>,
    /// Stored objects the DICOM node found missing or damaged.
    damaged: Receiver<DamagedObject>,
}

fn audit(store: &Store, action: &str, object: &str, detail: serde_json::Value) {
    store.audit_later(AuditEvent {
        actor: "system".into(),
        action: action.into(),
        object: object.into(),
        detail: detail.to_string(),
    });
}

fn bay_word(bay: Option<u32>) -> String {
    bay.map_or("an unknown bay".to_string(), |b| format!("bay {b}"))
}

impl Monitor {
    fn status_path(&self) -> PathBuf {
        self.setup.data_dir.join(STATUS_FILE)
    }

    fn load_memory(&mut self) {
        if let Ok(text) = std::fs::read_to_string(self.status_path()) {
            if let Ok(m) = serde_json::from_str::<Memory>(&text) {
                self.homes = m.homes;
                self.bay_of = m.bay_of;
                self.last_scrub_ms = m.last_scrub_ms;
            }
        }
    }

    fn run(&mut self, stop: &AtomicBool) {
        let tick = Duration::from_millis(if self.setup.emulator.is_some() {
            200
        } else {
            500
        });
        while !stop.load(Ordering::SeqCst) {
            self.handle_requests();
            if let Some(e) = &self.setup.emulator {
                if let Err(e) = e.tick() {
                    tracing::warn!(error = %e, "md emulator");
                }
            }
            if let Err(e) = self.step() {
                tracing::warn!(error = %e, "RAID monitor");
            }
            self.medium_alarm();
            self.damage_alarm();
            if self.setup.emulator.is_some() {
                std::thread::sleep(tick);
            } else {
                self.wait(tick);
            }
        }
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

    fn save_alarm(&self, state: &AlarmState) {
        if let Err(e) = self.alarm_file.save(state) {
            tracing::error!(error = %e, "cannot save the alarm state");
        }
    }

    fn with_alarm<T>(&self, f: impl FnOnce(&mut AlarmState) -> T) -> T {
        let mut a = self
            .alarm
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = a.clone();
        let out = f(&mut a);
        if *a != before {
            self.save_alarm(&a);
        }
        out
    }

    fn raise(&self, kind: AlarmKind, bay: Option<u32>, array: &str, message: String) {
        let id =
            self.with_alarm(|a| a.raise(kind, bay, Some(array), &message, cairn_hal::now_ms()));
        if let Some(id) = id {
            tracing::warn!(%message, id, "alarm");
            audit(
                &self.store,
                "alarm-raise",
                array,
                serde_json::json!({"id": id, "kind": kind, "bay": bay, "message": message}),
            );
        }
    }

    /// Raise `medium-needed` while the archive waits for a writable medium; clear it once one
    /// is loaded (or nothing waits any more). Latched and silenced like every other event: a
    /// still-needed medium is not raised again, so a silence holds until the event clears.
    fn medium_alarm(&self) {
        let needed = match &self.medium {
            Some(m) => m.needed(),
            None => Some(false),
        };
        match needed {
            Some(true) => {
                let latched = self.with_alarm(|a| {
                    a.events
                        .iter()
                        .any(|e| e.kind == AlarmKind::MediumNeeded && e.array.is_none())
                });
                if latched {
                    return;
                }
                let message = self.medium_message();
                let id = self.with_alarm(|a| {
                    a.raise(
                        AlarmKind::MediumNeeded,
                        None,
                        None,
                        &message,
                        cairn_hal::now_ms(),
                    )
                });
                if let Some(id) = id {
                    tracing::warn!(%message, id, "alarm");
                    audit(
                        &self.store,
                        "alarm-raise",
                        "archive",
                        serde_json::json!({"id": id, "kind": AlarmKind::MediumNeeded,
                            "message": message}),
                    );
                }
            }
            Some(false) => {
                let cleared = self.with_alarm(|a| a.clear_kind(AlarmKind::MediumNeeded));
                if !cleared.is_empty() {
                    tracing::info!("a writable medium is loaded: medium-needed alarm cleared");
                    audit(
                        &self.store,
                        "alarm-clear",
                        "archive",
                        serde_json::json!({"ids": cleared.iter().map(|e| e.id).collect::<Vec<_>>()}),
                    );
                }
            }
            None => {}
        }
    }

    /// Raise `object-damaged` for each study the DICOM node reported (once per study while it
    /// stays latched). It clears when the study is repaired (issue 17's self-healing).
    fn damage_alarm(&self) {
        while let Ok(d) = self.damaged.try_recv() {
            let study = if d.study_uid.is_empty() {
                "(unknown study)".to_string()
            } else {
                d.study_uid.clone()
            };
            let message = format!(
                "An image file of study {study} is {}: restore the study from its tape or disc \
                 copy",
                match d.damage {
                    cairn_dicom::Damage::Missing => "missing",
                    cairn_dicom::Damage::Unreadable => "unreadable",
                    cairn_dicom::Damage::HashMismatch => "damaged",
                }
            );
            let id = self.with_alarm(|a| {
                a.raise_for_study(
                    AlarmKind::ObjectDamaged,
                    &study,
                    &message,
                    cairn_hal::now_ms(),
                )
            });
            if let Some(id) = id {
                tracing::warn!(%message, id, "alarm");
                audit(
                    &self.store,
                    "alarm-raise",
                    &study,
                    serde_json::json!({"id": id, "kind": AlarmKind::ObjectDamaged,
                        "study": study, "sop_instance_uid": d.sop_instance_uid,
                        "problem": d.damage.as_str(), "message": message}),
                );
            }
        }
    }

    /// The sentence for the panel's headline: which medium, in which drive (the archive's
    /// own words, the same the overview shows).
    fn medium_message(&self) -> String {
        let data = cairn_store::DataDir::new(&self.setup.data_dir);
        cairn_archive::archive_status(&data)
            .ok()
            .and_then(|s| cairn_archive::catalog::medium_needed_message(&s))
            .unwrap_or_else(|| {
                "Tape or disc needed: load a new one (images are waiting for their cold copy)"
                    .into()
            })
    }

    fn led(&self, bay: u32, fault: bool, on: bool) {
        if let Some(b) = self.setup.board.bay(bay) {
            let led = if fault { &b.fault_led } else { &b.locate_led };
            if let Some(led) = led {
                if let Err(e) = self.control.set_led(led, on) {
                    tracing::warn!(error = %e, bay, "LED");
                }
            }
        }
    }

    fn bays(&self, arrays: &[ArraySnapshot]) -> Vec<BayDisk> {
        let mut out = Vec::new();
        for b in &self.setup.board.bays {
            let Ok(Some(info)) = self.disks.disk_at(&b.by_path) else {
                continue;
            };
            let member_of = arrays
                .iter()
                .find(|a| {
                    a.members.iter().any(|m| {
                        m.kname == info.kname
                            || (m.kname.starts_with(&info.kname)
                                && m.kname[info.kname.len()..]
                                    .trim_start_matches('p')
                                    .bytes()
                                    .all(|c| c.is_ascii_digit()))
                    })
                })
                .map(|a| a.name.clone());
            out.push(BayDisk {
                bay: b.number,
                contents: self.disks.contents(&info.kname).unwrap_or(Contents::Data),
                device: info.kname,
                size_bytes: info.size_bytes,
                member_of,
            });
        }
        out
    }

    fn refresh_bay_names(&mut self) {
        if let Ok(map) = self.disks.by_path() {
            for (path, k) in map {
                if let Some(b) = self.setup.board.bay_of_path(&path) {
                    self.bay_of.insert(k, b.number);
                }
            }
        }
    }

    fn execute(&mut self, action: &Action) {
        let result = match action {
            Action::SetState {
                array,
                device,
                value,
            } => self.control.set_member_state(array, device, value),
            Action::Wipe { device, .. } => self.disks.wipe_start(device),
            Action::Add { array, device, .. } => self.control.add_disk(array, device),
        };
        let object = match action {
            Action::SetState { array, .. } | Action::Add { array, .. } => array.clone(),
            Action::Wipe { bay, .. } => format!("bay {bay}"),
        };
        let ok = result.is_ok();
        match &result {
            Ok(()) => tracing::info!(?action, "md action"),
            Err(e) => tracing::error!(?action, error = %e, "md action failed"),
        }
        if let Action::Add { bay, .. } = action {
            self.confirmed.remove(bay);
        }
        audit(
            &self.store,
            "raid-action",
            &object,
            serde_json::json!({"action": action, "ok": ok,
                "error": result.err().map(|e| e.to_string())}),
        );
    }

    fn step(&mut self) -> Result<()> {
        self.refresh_bay_names();
        let mut snap = self.md.snapshot()?;
        let bays = self.bays(&snap);
        let (actions, blocked) = cairn_raid::plan(&snap, &bays, &self.homes, &self.confirmed);
        if blocked != self.blocked {
            for b in &blocked {
                tracing::warn!(?b, "disk waits");
            }
            self.blocked = blocked;
        }
        if !actions.is_empty() {
            for a in &actions {
                self.execute(a);
            }
            snap = self.md.snapshot()?;
        }
        self.read_smart(&bays);
        let statuses: Vec<_> = snap
            .iter()
            .map(|a| {
                let mut s = cairn_raid::status(a, &self.bay_of);
                for m in &mut s.members {
                    m.smart = m
                        .bay
                        .and_then(|b| self.smart.get(&b))
                        .filter(|(disk, _, _)| m.device.starts_with(disk.as_str()))
                        .map(|(_, r, _)| cairn_raid::smart_health(r));
                }
                s
            })
            .collect();
        self.homes.extend(cairn_raid::homes(&statuses));
        let events = cairn_raid::diff(self.prev.as_deref(), &snap, &self.bay_of);
        for ev in &events {
            self.on_event(ev);
        }
        for s in &statuses {
            if s.health == Health::Ok && s.running {
                let cleared = self.with_alarm(|a| a.clear_array(&s.name));
                if !cleared.is_empty() {
                    tracing::info!(array = %s.name, "array healthy: alarm cleared");
                    audit(
                        &self.store,
                        "alarm-clear",
                        &s.name,
                        serde_json::json!({"ids": cleared.iter().map(|e| e.id).collect::<Vec<_>>()}),
                    );
                    for (bay, array) in &self.homes {
                        if array == &s.name {
                            self.led(*bay, true, false);
                        }
                    }
                }
            }
        }
        self.scrub_schedule(&snap);
        self.prev = Some(snap);
        self.publish(statuses, &bays)
    }

    /// Read SMART of each bay's disk when it is new there, then every `SMART_EVERY_MS`
    /// (5 s in the demo); report what changed.
    fn read_smart(&mut self, bays: &[BayDisk]) {
        let every = if self.setup.emulator.is_some() {
            5_000
        } else {
            SMART_EVERY_MS
        };
        let now = cairn_hal::now_ms();
        self.smart
            .retain(|bay, (disk, _, _)| bays.iter().any(|d| d.bay == *bay && &d.device == disk));
        for d in bays {
            let prev = self.smart.get(&d.bay).map(|(_, r, at)| (r.clone(), *at));
            if prev
                .as_ref()
                .is_some_and(|(_, at)| now.saturating_sub(*at) < every)
            {
                continue;
            }
            let report = self.smart_source.read(&d.device);
            let prev = prev.map(|(r, _)| r);
            if prev.is_none() {
                // A new disk in the bay: an alarm about the old one no longer holds.
                self.with_alarm(|a| a.clear_bay(AlarmKind::DiskFailing, d.bay));
            }
            if report.passed == Some(true) {
                self.with_alarm(|a| a.clear_bay(AlarmKind::DiskFailing, d.bay));
            }
            for ev in cairn_raid::smart_events(d.bay, &d.device, prev.as_ref(), &report) {
                audit(
                    &self.store,
                    "smart-event",
                    &format!("bay {}", d.bay),
                    serde_json::to_value(&ev).unwrap_or_default(),
                );
                match &ev {
                    SmartEvent::SmartWarning { message, .. } => {
                        tracing::warn!(bay = d.bay, %message, "SMART early warning");
                    }
                    SmartEvent::SmartFailing { message, .. } => {
                        let bay = d.bay;
                        let id = self.with_alarm(|a| {
                            a.raise(
                                AlarmKind::DiskFailing,
                                Some(bay),
                                None,
                                message,
                                cairn_hal::now_ms(),
                            )
                        });
                        tracing::warn!(bay, %message, ?id, "SMART: disk failing");
                        if let Some(id) = id {
                            audit(
                                &self.store,
                                "alarm-raise",
                                &format!("bay {bay}"),
                                serde_json::json!({"id": id, "kind": AlarmKind::DiskFailing,
                                    "bay": bay, "message": message}),
                            );
                        }
                    }
                }
            }
            self.smart.insert(d.bay, (d.device.clone(), report, now));
        }
    }

    fn on_event(&mut self, ev: &RaidEvent) {
        let array = match ev {
            RaidEvent::DiskFailed { array, .. }
            | RaidEvent::DiskRemoved { array, .. }
            | RaidEvent::DiskAdded { array, .. }
            | RaidEvent::SpareActivated { array, .. }
            | RaidEvent::RebuildStarted { array, .. }
            | RaidEvent::RebuildProgress { array, .. }
            | RaidEvent::RebuildFinished { array, .. }
            | RaidEvent::ScrubStarted { array }
            | RaidEvent::ScrubFinished { array, .. }
            | RaidEvent::HealthChanged { array, .. }
            | RaidEvent::ArrayAppeared { array }
            | RaidEvent::ArrayGone { array } => array.clone(),
        };
        if !matches!(ev, RaidEvent::RebuildProgress { .. }) {
            tracing::info!(?ev, "raid");
            audit(
                &self.store,
                "raid-event",
                &array,
                serde_json::to_value(ev).unwrap_or_default(),
            );
        }
        match ev {
            RaidEvent::DiskFailed { bay, .. } => {
                if let Some(b) = bay {
                    self.led(*b, true, true);
                }
                self.raise(
                    AlarmKind::DiskFailed,
                    *bay,
                    &array,
                    format!("The disk in {} failed ({array})", bay_word(*bay)),
                );
            }
            RaidEvent::HealthChanged { to, .. } => match to {
                Health::Critical => self.raise(
                    AlarmKind::ArrayCritical,
                    None,
                    &array,
                    format!("{array} has no redundancy left: one more failure loses data"),
                ),
                Health::Failed => self.raise(
                    AlarmKind::ArrayFailed,
                    None,
                    &array,
                    format!("{array} failed"),
                ),
                _ => {}
            },
            _ => {}
        }
    }

    fn scrub_schedule(&mut self, snap: &[ArraySnapshot]) {
        let days = self.setup.scrub_interval_days;
        if days == 0 {
            return;
        }
        let now = cairn_hal::now_ms();
        for a in snap {
            if cairn_raid::health(a) != Health::Ok || a.sync_action != "idle" {
                continue;
            }
            let last = *self.last_scrub_ms.entry(a.name.clone()).or_insert(now);
            if now.saturating_sub(last) >= u64::from(days) * 86_400_000 {
                self.last_scrub_ms.insert(a.name.clone(), now);
                match self.control.set_sync_action(&a.name, "check") {
                    Ok(()) => tracing::info!(array = %a.name, "scheduled scrub started"),
                    Err(e) => tracing::warn!(array = %a.name, error = %e, "scrub"),
                }
            }
        }
    }

    fn publish(&mut self, arrays: Vec<cairn_raid::ArrayStatus>, bays: &[BayDisk]) -> Result<()> {
        let faulty: BTreeSet<u32> = arrays
            .iter()
            .flat_map(|a| a.members.iter())
            .filter(|m| m.state == cairn_raid::MemberState::Faulty)
            .filter_map(|m| m.bay)
            .collect();
        let bay_list = self
            .setup
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
            board: &self.setup.board.name,
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
        value["updated_at_ms"] = cairn_hal::now_ms().into();
        let path = self.status_path();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&value)?)?;
        std::fs::rename(&tmp, &path)?;
        self.last_written = body;
        Ok(())
    }

    fn handle_requests(&mut self) {
        let dir = self.setup.data_dir.join(REQUEST_DIR);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for path in files {
            let answer = match std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice::<Request>(&b)?))
            {
                Ok(req) => self.handle(req),
                Err(e) => Answer {
                    ok: false,
                    message: format!("bad request: {e}"),
                },
            };
            let _ = std::fs::remove_file(&path);
            if let Ok(text) = serde_json::to_vec(&answer) {
                let _ = std::fs::write(path.with_extension("done"), text);
            }
        }
    }

    fn member_in_bay(&self, bay: u32) -> Option<(ArraySnapshot, String)> {
        let snap = self.md.snapshot().ok()?;
        for a in snap {
            if let Some(m) = a
                .members
                .iter()
                .find(|m| self.bay_of.get(&m.kname) == Some(&bay) && m.present)
            {
                let k = m.kname.clone();
                return Some((a, k));
            }
        }
        None
    }

    fn handle(&mut self, req: Request) -> Answer {
        let ok = |message: String| Answer { ok: true, message };
        let no = |message: String| Answer { ok: false, message };
        let emu = self.setup.emulator.clone();
        match req {
            Request::AlarmSilence { id, by } => {
                let ids = self.with_alarm(|a| a.silence(id, &by));
                if ids.is_empty() {
                    return ok("nothing was sounding".into());
                }
                self.store.audit_later(AuditEvent {
                    actor: by.clone(),
                    action: "alarm-silence".into(),
                    object: "alarm".into(),
                    detail: serde_json::json!({"ids": ids}).to_string(),
                });
                tracing::info!(?ids, %by, "alarm silenced");
                ok(format!("silenced event(s) {ids:?}"))
            }
            Request::DiskLocate { bay, on } => {
                if self.setup.board.bay(bay).is_none() {
                    return no(format!("no bay {bay} on this board"));
                }
                self.led(bay, false, on);
                ok(format!(
                    "locate LED of bay {bay} {}",
                    if on { "on" } else { "off" }
                ))
            }
            Request::DiskRemove { bay, by } => {
                let Some((a, k)) = self.member_in_bay(bay) else {
                    return no(format!("no array member in bay {bay}"));
                };
                if let Err(r) = cairn_raid::check_remove(&a, &k) {
                    return no(r.to_string());
                }
                let mut steps = Vec::new();
                let member = a.members.iter().find(|m| m.kname == k);
                if !member.is_some_and(|m| m.has("faulty")) {
                    steps.push("faulty");
                }
                steps.push("remove");
                for s in steps {
                    if let Err(e) = self.control.set_member_state(&a.name, &k, s) {
                        return no(format!("md refused {s}: {e}"));
                    }
                }
                self.homes.insert(bay, a.name.clone());
                self.store.audit_later(AuditEvent {
                    actor: by,
                    action: "disk-remove".into(),
                    object: a.name.clone(),
                    detail: serde_json::json!({"bay": bay, "device": k}).to_string(),
                });
                self.led(bay, false, true);
                ok(format!(
                    "the disk in bay {bay} is out of {}; its locate LED is on: pull it and slide in the new disk",
                    a.name
                ))
            }
            Request::DiskConfirm { bay, by } => {
                self.confirmed.insert(bay);
                self.store.audit_later(AuditEvent {
                    actor: by,
                    action: "disk-confirm-wipe".into(),
                    object: format!("bay {bay}"),
                    detail: "{}".into(),
                });
                ok(format!(
                    "bay {bay}: the disk will be wiped and added if it is large enough"
                ))
            }
            Request::Scrub { array } => match self.control.set_sync_action(&array, "check") {
                Ok(()) => {
                    self.last_scrub_ms
                        .insert(array.clone(), cairn_hal::now_ms());
                    ok(format!("scrub of {array} started"))
                }
                Err(e) => no(e.to_string()),
            },
            Request::DemoFailDisk { bay } => match emu {
                Some(e) => match e.fail_disk(bay) {
                    Ok(k) => ok(format!("demo: the disk in bay {bay} ({k}) failed")),
                    Err(err) => no(err.to_string()),
                },
                None => no("not a demo box".into()),
            },
            Request::DemoPullDisk { bay } => match emu {
                Some(e) => match e.pull_disk(bay) {
                    Ok(()) => ok(format!("demo: bay {bay} is empty")),
                    Err(err) => no(err.to_string()),
                },
                None => no("not a demo box".into()),
            },
            Request::DemoInsertDisk { bay, kind } => {
                let Some(e) = emu else {
                    return no("not a demo box".into());
                };
                let kind = match kind.as_str() {
                    "blank" => NewDisk::Blank,
                    "used" => NewDisk::Used,
                    "small" => NewDisk::Small,
                    other => return no(format!("unknown disk kind {other}")),
                };
                if self.setup.board.bay(bay).is_none() {
                    return no(format!("no bay {bay} on this board"));
                }
                match e.insert_disk(bay, kind) {
                    Ok(k) => ok(format!("demo: a {kind:?} disk ({k}) is in bay {bay}")),
                    Err(err) => no(err.to_string()),
                }
            }
        }
    }
}
