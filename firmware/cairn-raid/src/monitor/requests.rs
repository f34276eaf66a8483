//! The answers to requests from `cairnctl`, the panel and the front button: silence, locate,
//! take a disk out, allow a wipe, scrub now, and the demo's hands on the md emulator.

use super::Monitor;
use crate::requests::{Answer, Request};
use cairn_hal::emulator::NewDisk;
use cairn_hal::md::ArraySnapshot;

fn ok(message: String) -> Answer {
    Answer { ok: true, message }
}

fn no(message: String) -> Answer {
    Answer { ok: false, message }
}

impl Monitor {
    /// Carry out one request at time `now` and say what happened.
    pub fn handle(&mut self, req: Request, now: u64) -> Answer {
        match req {
            Request::AlarmSilence { id, by } => self.silence(id, by),
            Request::DiskLocate { bay, on } => {
                if self.hw.board.bay(bay).is_none() {
                    return no(format!("no bay {bay} on this board"));
                }
                self.led(bay, false, on);
                ok(format!(
                    "locate LED of bay {bay} {}",
                    if on { "on" } else { "off" }
                ))
            }
            Request::DiskRemove { bay, by } => self.remove(bay, by),
            Request::DiskConfirm { bay, by } => {
                if self.hw.board.bay(bay).is_none() {
                    return no(format!("no bay {bay} on this board"));
                }
                if let Some((a, _)) = self.member_in_bay(bay) {
                    return no(format!(
                        "bay {bay} holds a disk in use by {}: it is not wiped; confirm only a new disk that waits to be added",
                        a.name
                    ));
                }
                self.confirmed.insert(bay);
                self.audit(
                    &by,
                    "disk-confirm-wipe",
                    &format!("bay {bay}"),
                    serde_json::json!({}),
                );
                ok(format!(
                    "bay {bay}: the disk will be wiped and added if it is large enough"
                ))
            }
            Request::Scrub { array } => match self.hw.control.set_sync_action(&array, "check") {
                Ok(()) => {
                    self.last_scrub_ms.insert(array.clone(), now);
                    ok(format!("scrub of {array} started"))
                }
                Err(e) => no(e.to_string()),
            },
            Request::DemoFailDisk { .. }
            | Request::DemoPullDisk { .. }
            | Request::DemoInsertDisk { .. } => self.demo(req),
        }
    }

    fn silence(&mut self, id: Option<u64>, by: String) -> Answer {
        let ids = self.with_alarm(|a| a.silence(id, &by));
        if ids.is_empty() {
            return ok("nothing was sounding".into());
        }
        self.audit(
            &by,
            "alarm-silence",
            "alarm",
            serde_json::json!({"ids": ids}),
        );
        tracing::info!(?ids, %by, "alarm silenced");
        ok(format!("silenced event(s) {ids:?}"))
    }

    /// The array member in `bay` (present), with a fresh snapshot of its array.
    fn member_in_bay(&self, bay: u32) -> Option<(ArraySnapshot, String)> {
        let snap = self.hw.md.snapshot().ok()?;
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

    /// Take the member in `bay` out of its array (faulty, then remove) when that is safe.
    fn remove(&mut self, bay: u32, by: String) -> Answer {
        let Some((a, k)) = self.member_in_bay(bay) else {
            return no(format!("no array member in bay {bay}"));
        };
        if let Err(r) = crate::check_remove(&a, &k) {
            return no(r.to_string());
        }
        let mut steps = Vec::new();
        let member = a.members.iter().find(|m| m.kname == k);
        if !member.is_some_and(|m| m.has("faulty")) {
            steps.push("faulty");
        }
        steps.push("remove");
        for s in steps {
            if let Err(e) = self.hw.control.set_member_state(&a.name, &k, s) {
                return no(format!("md refused {s}: {e}"));
            }
        }
        self.homes.insert(bay, a.name.clone());
        self.audit(
            &by,
            "disk-remove",
            &a.name,
            serde_json::json!({"bay": bay, "device": k}),
        );
        self.led(bay, false, true);
        ok(format!(
            "the disk in bay {bay} is out of {}; its locate LED is on: pull it and slide in the new disk",
            a.name
        ))
    }

    /// The demo's hands: a disk fails, is pulled, or a disk is slid in (emulator only).
    fn demo(&mut self, req: Request) -> Answer {
        let Some(e) = self.hw.emulator.clone() else {
            return no("not a demo box".into());
        };
        match req {
            Request::DemoFailDisk { bay } => match e.fail_disk(bay) {
                Ok(k) => ok(format!("demo: the disk in bay {bay} ({k}) failed")),
                Err(err) => no(err.to_string()),
            },
            Request::DemoPullDisk { bay } => match e.pull_disk(bay) {
                Ok(()) => ok(format!("demo: bay {bay} is empty")),
                Err(err) => no(err.to_string()),
            },
            Request::DemoInsertDisk { bay, kind } => {
                let kind = match kind.as_str() {
                    "blank" => NewDisk::Blank,
                    "used" => NewDisk::Used,
                    "small" => NewDisk::Small,
                    other => return no(format!("unknown disk kind {other}")),
                };
                if self.hw.board.bay(bay).is_none() {
                    return no(format!("no bay {bay} on this board"));
                }
                match e.insert_disk(bay, kind) {
                    Ok(k) => ok(format!("demo: a {kind:?} disk ({k}) is in bay {bay}")),
                    Err(err) => no(err.to_string()),
                }
            }
            other => no(format!("not a demo request: {other:?}")),
        }
    }
}
