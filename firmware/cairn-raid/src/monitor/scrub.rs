//! The scrub schedule: a healthy, idle array is checked every `scrub_interval_days`, counted
//! from the first time the monitor saw it (or its last scrub, scheduled or asked for).

use super::Monitor;
use crate::Health;
use cairn_hal::md::ArraySnapshot;

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

impl Monitor {
    /// Start the scrubs that are due at `now`.
    pub(super) fn scrub_schedule(&mut self, snap: &[ArraySnapshot], now: u64) {
        let days = self.config.scrub_interval_days;
        if days == 0 {
            return;
        }
        for a in snap {
            if crate::health(a) != Health::Ok || a.sync_action != "idle" {
                continue;
            }
            let last = *self.last_scrub_ms.entry(a.name.clone()).or_insert(now);
            if now.saturating_sub(last) >= u64::from(days) * DAY_MS {
                self.last_scrub_ms.insert(a.name.clone(), now);
                match self.hw.control.set_sync_action(&a.name, "check") {
                    Ok(()) => tracing::info!(array = %a.name, "scheduled scrub started"),
                    Err(e) => tracing::warn!(array = %a.name, error = %e, "scrub"),
                }
            }
        }
    }
}
