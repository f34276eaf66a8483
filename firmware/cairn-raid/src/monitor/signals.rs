//! The alarm events other parts of the box raise through the monitor, which owns the alarm:
//! `medium-needed` while the archive waits for a writable tape or disc, and `object-damaged`
//! per study whose stored image file the DICOM node found missing or damaged.

use super::{DamageReport, Monitor};
use cairn_alarm::AlarmKind;

impl Monitor {
    /// Raise `medium-needed` while the archive waits for a writable medium (`Some(true)`);
    /// clear it once one is loaded or nothing waits any more (`Some(false)`); `None` (not known
    /// yet) changes nothing. Latched and silenced like every other event: a still-needed medium
    /// is not raised again, so a silence holds until the event clears. `message` is asked only
    /// when a new event is raised.
    pub fn medium(&mut self, needed: Option<bool>, message: impl FnOnce() -> String, now: u64) {
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
                let message = message();
                let id = self
                    .with_alarm(|a| a.raise(AlarmKind::MediumNeeded, None, None, &message, now));
                if let Some(id) = id {
                    tracing::warn!(%message, id, "alarm");
                    self.audit(
                        "system",
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
                    self.audit(
                        "system",
                        "alarm-clear",
                        "archive",
                        serde_json::json!({"ids": cleared.iter().map(|e| e.id).collect::<Vec<_>>()}),
                    );
                }
            }
            None => {}
        }
    }

    /// Raise `object-damaged` for the report's study (once per study while it stays latched;
    /// it clears when the study is repaired).
    pub fn object_damaged(&mut self, d: &DamageReport, now: u64) {
        let study = if d.study_uid.is_empty() {
            "(unknown study)".to_string()
        } else {
            d.study_uid.clone()
        };
        let message = format!(
            "An image file of study {study} is {}: restore the study from its tape or disc \
             copy",
            d.damage.for_people()
        );
        let id =
            self.with_alarm(|a| a.raise_for_study(AlarmKind::ObjectDamaged, &study, &message, now));
        if let Some(id) = id {
            tracing::warn!(%message, id, "alarm");
            self.audit(
                "system",
                "alarm-raise",
                &study,
                serde_json::json!({"id": id, "kind": AlarmKind::ObjectDamaged,
                    "study": study, "sop_instance_uid": d.sop_instance_uid,
                    "problem": d.damage.as_str(), "message": message}),
            );
        }
    }
}
