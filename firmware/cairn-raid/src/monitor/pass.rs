//! One pass over md: learn the bays' disk names, carry out the safe actions of the swap plan,
//! read SMART when due, turn the difference to the last snapshot into events and alarms, clear
//! the alarm of an array healthy again, start a scheduled scrub, publish `raid.json`.

use super::{bay_word, Monitor, MonitorError};
use crate::{Action, BayDisk, Health, RaidEvent};
use cairn_alarm::AlarmKind;
use cairn_hal::disks::Contents;
use cairn_hal::md::ArraySnapshot;

impl Monitor {
    /// One pass at time `now` (ms since the Unix epoch).
    pub fn step(&mut self, now: u64) -> Result<(), MonitorError> {
        self.refresh_bay_names();
        let mut snap = self.hw.md.snapshot()?;
        let bays = self.bays(&snap);
        let (actions, blocked) = crate::plan(&snap, &bays, &self.homes, &self.confirmed);
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
            snap = self.hw.md.snapshot()?;
        }
        self.read_smart(&bays, now);
        let statuses: Vec<_> = snap
            .iter()
            .map(|a| {
                let mut s = crate::status(a, &self.bay_of);
                for m in &mut s.members {
                    m.smart = m
                        .bay
                        .and_then(|b| self.smart.get(&b))
                        .filter(|(disk, _, _)| m.device.starts_with(disk.as_str()))
                        .map(|(_, r, _)| crate::smart_health(r));
                }
                s
            })
            .collect();
        self.homes.extend(crate::homes(&statuses));
        let events = crate::diff(self.prev.as_deref(), &snap, &self.bay_of);
        for ev in &events {
            self.on_event(ev, now);
        }
        for s in &statuses {
            if Self::healthy(s) {
                self.clear_array(&s.name);
            }
        }
        self.scrub_schedule(&snap, now);
        self.prev = Some(snap);
        self.publish(statuses, &bays, now)
    }

    /// The array is healthy and running again: its alarm events go, and so do the fault LEDs
    /// of the bays whose members served it.
    fn clear_array(&mut self, array: &str) {
        let cleared = self.with_alarm(|a| a.clear_array(array));
        if cleared.is_empty() {
            return;
        }
        tracing::info!(array = %array, "array healthy: alarm cleared");
        self.audit(
            "system",
            "alarm-clear",
            array,
            serde_json::json!({"ids": cleared.iter().map(|e| e.id).collect::<Vec<_>>()}),
        );
        for (bay, home) in &self.homes {
            if home == array {
                self.led(*bay, true, false);
            }
        }
    }

    /// Audit an event (rebuild progress aside) and raise what it calls for.
    fn on_event(&mut self, ev: &RaidEvent, now: u64) {
        let array = ev.array().to_string();
        if !matches!(ev, RaidEvent::RebuildProgress { .. }) {
            tracing::info!(?ev, "raid");
            self.audit(
                "system",
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
                    now,
                );
            }
            RaidEvent::HealthChanged { to, .. } => match to {
                Health::Critical => self.raise(
                    AlarmKind::ArrayCritical,
                    None,
                    &array,
                    format!("{array} has no redundancy left: one more failure loses data"),
                    now,
                ),
                Health::Failed => self.raise(
                    AlarmKind::ArrayFailed,
                    None,
                    &array,
                    format!("{array} failed"),
                    now,
                ),
                _ => {}
            },
            _ => {}
        }
    }

    /// What each bay of the board holds now.
    fn bays(&self, arrays: &[ArraySnapshot]) -> Vec<BayDisk> {
        let mut out = Vec::new();
        for b in &self.hw.board.bays {
            let Ok(Some(info)) = self.hw.disks.disk_at(&b.by_path) else {
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
                contents: self
                    .hw
                    .disks
                    .contents(&info.kname)
                    .unwrap_or(Contents::Data),
                device: info.kname,
                size_bytes: info.size_bytes,
                member_of,
            });
        }
        out
    }

    fn refresh_bay_names(&mut self) {
        if let Ok(map) = self.hw.disks.by_path() {
            for (path, k) in map {
                if let Some(b) = self.hw.board.bay_of_path(&path) {
                    self.bay_of.insert(k, b.number);
                }
            }
        }
    }

    /// Carry out one md action of the plan, audited with its outcome.
    fn execute(&mut self, action: &Action) {
        let result = match action {
            Action::SetState {
                array,
                device,
                value,
            } => self.hw.control.set_member_state(array, device, value),
            Action::Wipe { device, .. } => self.hw.disks.wipe_start(device),
            Action::Add { array, device, .. } => self.hw.control.add_disk(array, device),
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
        self.audit(
            "system",
            "raid-action",
            &object,
            serde_json::json!({"action": action, "ok": ok,
                "error": result.err().map(|e| e.to_string())}),
        );
    }
}
