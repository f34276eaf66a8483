//! SMART polling: each bay's disk is read when it is new there, then every
//! `smart_every_ms`; what changed becomes audit rows, a log line for an early warning and the
//! `disk-failing` alarm for a disk that reports itself failing.

use super::Monitor;
use crate::{BayDisk, SmartEvent};
use cairn_alarm::AlarmKind;

impl Monitor {
    /// Read the SMART reports that are due at `now` and act on what changed.
    pub(super) fn read_smart(&mut self, bays: &[BayDisk], now: u64) {
        let every = self.config.smart_every_ms;
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
            let report = self.hw.smart.read(&d.device);
            let prev = prev.map(|(r, _)| r);
            if prev.is_none() {
                // A new disk in the bay: an alarm about the old one no longer holds.
                self.with_alarm(|a| a.clear_bay(AlarmKind::DiskFailing, d.bay));
            }
            if report.passed == Some(true) {
                self.with_alarm(|a| a.clear_bay(AlarmKind::DiskFailing, d.bay));
            }
            for ev in crate::smart_events(d.bay, &d.device, prev.as_ref(), &report) {
                self.on_smart_event(d.bay, &ev, now);
            }
            self.smart.insert(d.bay, (d.device.clone(), report, now));
        }
    }

    fn on_smart_event(&mut self, bay: u32, ev: &SmartEvent, now: u64) {
        self.audit(
            "system",
            "smart-event",
            &format!("bay {bay}"),
            serde_json::to_value(ev).unwrap_or_default(),
        );
        match ev {
            SmartEvent::SmartWarning { message, .. } => {
                tracing::warn!(bay, %message, "SMART early warning");
            }
            SmartEvent::SmartFailing { message, .. } => {
                let id = self
                    .with_alarm(|a| a.raise(AlarmKind::DiskFailing, Some(bay), None, message, now));
                tracing::warn!(bay, %message, ?id, "SMART: disk failing");
                if let Some(id) = id {
                    self.audit(
                        "system",
                        "alarm-raise",
                        &format!("bay {bay}"),
                        serde_json::json!({"id": id, "kind": AlarmKind::DiskFailing,
                            "bay": bay, "message": message}),
                    );
                }
            }
        }
    }
}
