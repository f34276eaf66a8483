//! SMART policy: what a disk's SMART report means for people (a verdict and early warnings),
//! and which changes between two reports are events. A failing verdict from the drive latches
//! the alarm (the monitor's job); growing error counters are warnings only.

use cairn_hal::smart::SmartReport;
use serde::{Deserialize, Serialize};

/// Temperature from which a disk is reported as running hot, °C.
pub const HOT_C: i64 = 60;
/// NVMe endurance used from which the disk is reported as wearing out, percent.
pub const WORN_PERCENT: u64 = 90;

/// One word for a disk's SMART state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmartVerdict {
    /// Passed, no error counters, not hot, not worn.
    Ok,
    /// Passed, but with early warnings (see `warnings`).
    Warning,
    /// The drive itself says it is failing (`smart_status.passed` false).
    Failing,
    /// SMART could not be read (no SMART, a virtual disk, smartctl missing).
    Unavailable,
}

/// A member's SMART state as `raid.json` and `cairnctl raid status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartHealth {
    /// The one word.
    pub verdict: SmartVerdict,
    /// Early warnings, for people ("24 reallocated sectors").
    pub warnings: Vec<String>,
    /// The numbers read.
    #[serde(flatten)]
    pub report: SmartReport,
}

/// A SMART change worth telling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SmartEvent {
    /// An early warning: a counter grew, the disk runs hot or is worn.
    SmartWarning {
        /// Bay.
        bay: u32,
        /// Kernel name of the disk.
        device: String,
        /// For people.
        message: String,
    },
    /// The drive reports itself failing.
    SmartFailing {
        /// Bay.
        bay: u32,
        /// Kernel name of the disk.
        device: String,
        /// For people.
        message: String,
    },
}

type Counter = (&'static str, fn(&SmartReport) -> Option<u64>);

const COUNTERS: [Counter; 4] = [
    ("reallocated sectors", |r| r.reallocated_sectors),
    ("pending sectors", |r| r.pending_sectors),
    ("offline uncorrectable sectors", |r| r.offline_uncorrectable),
    ("media errors", |r| r.media_errors),
];

/// The verdict and standing warnings of one report.
pub fn smart_health(r: &SmartReport) -> SmartHealth {
    let mut warnings = Vec::new();
    for (what, get) in COUNTERS {
        if let Some(n) = get(r).filter(|n| *n > 0) {
            warnings.push(format!("{n} {what}"));
        }
    }
    if let Some(t) = r.temperature_c.filter(|t| *t >= HOT_C) {
        warnings.push(format!("running hot: {t} °C"));
    }
    if let Some(p) = r.percentage_used.filter(|p| *p >= WORN_PERCENT) {
        warnings.push(format!("{p} % of its rated endurance used"));
    }
    let verdict = if !r.available {
        SmartVerdict::Unavailable
    } else if r.passed == Some(false) {
        SmartVerdict::Failing
    } else if warnings.is_empty() {
        SmartVerdict::Ok
    } else {
        SmartVerdict::Warning
    };
    SmartHealth {
        verdict,
        warnings,
        report: r.clone(),
    }
}

/// The events between the last report of the disk in `bay` and this one (`prev` is `None`
/// on the first read of this disk: what is already wrong is reported once).
pub fn smart_events(
    bay: u32,
    device: &str,
    prev: Option<&SmartReport>,
    next: &SmartReport,
) -> Vec<SmartEvent> {
    let mut out = Vec::new();
    if !next.available {
        return out;
    }
    let warn = |message: String| SmartEvent::SmartWarning {
        bay,
        device: device.to_string(),
        message,
    };
    if next.passed == Some(false) && prev.is_none_or(|p| p.passed != Some(false)) {
        out.push(SmartEvent::SmartFailing {
            bay,
            device: device.to_string(),
            message: format!("SMART: the disk in bay {bay} reports itself failing: replace it"),
        });
    }
    for (what, get) in COUNTERS {
        let Some(b) = get(next) else { continue };
        match prev.filter(|p| p.available).and_then(get) {
            Some(a) if b > a => out.push(warn(format!(
                "SMART: bay {bay}: {what} grew from {a} to {b}"
            ))),
            None if b > 0 => out.push(warn(format!("SMART: bay {bay}: {b} {what}"))),
            _ => {}
        }
    }
    let was = |f: fn(&SmartReport) -> bool| prev.is_some_and(|p| p.available && f(p));
    let hot = |r: &SmartReport| r.temperature_c.is_some_and(|t| t >= HOT_C);
    if hot(next) && !was(hot) {
        out.push(warn(format!(
            "SMART: bay {bay}: running hot ({} °C)",
            next.temperature_c.unwrap_or_default()
        )));
    }
    let worn = |r: &SmartReport| r.percentage_used.is_some_and(|p| p >= WORN_PERCENT);
    if worn(next) && !was(worn) {
        out.push(warn(format!(
            "SMART: bay {bay}: {} % of its rated endurance used",
            next.percentage_used.unwrap_or_default()
        )));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(name: &str) -> SmartReport {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/smart")
            .join(name);
        let b = std::fs::read(p).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let code = v["smartctl"]["exit_status"].as_i64().unwrap_or(0) as i32;
        cairn_hal::smart::parse(&b, code).unwrap()
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            smart_health(&fixture("ata-healthy.json")).verdict,
            SmartVerdict::Ok
        );
        assert_eq!(
            smart_health(&fixture("nvme-healthy.json")).verdict,
            SmartVerdict::Ok
        );
        let h = smart_health(&fixture("ata-reallocating.json"));
        assert_eq!(h.verdict, SmartVerdict::Warning);
        assert_eq!(h.warnings, ["24 reallocated sectors", "8 pending sectors"]);
        assert_eq!(
            smart_health(&fixture("ata-failing.json")).verdict,
            SmartVerdict::Failing
        );
        assert_eq!(
            smart_health(&fixture("unsupported.json")).verdict,
            SmartVerdict::Unavailable
        );
        let json = serde_json::to_value(smart_health(&fixture("ata-healthy.json"))).unwrap();
        assert_eq!(json["verdict"], "ok");
        assert_eq!(json["reallocated_sectors"], 0);
    }

    #[test]
    fn growth_is_a_warning_and_failing_once() {
        let a = fixture("ata-healthy.json");
        let b = fixture("ata-reallocating.json");
        let ev = smart_events(3, "sdc", Some(&a), &b);
        assert_eq!(
            ev,
            [
                SmartEvent::SmartWarning {
                    bay: 3,
                    device: "sdc".into(),
                    message: "SMART: bay 3: reallocated sectors grew from 0 to 24".into()
                },
                SmartEvent::SmartWarning {
                    bay: 3,
                    device: "sdc".into(),
                    message: "SMART: bay 3: pending sectors grew from 0 to 8".into()
                },
            ]
        );
        assert!(smart_events(3, "sdc", Some(&b), &b).is_empty());
        let f = fixture("ata-failing.json");
        let ev = smart_events(3, "sdc", Some(&b), &f);
        assert!(matches!(ev[0], SmartEvent::SmartFailing { bay: 3, .. }));
        assert!(smart_events(3, "sdc", Some(&f), &f).is_empty());
        // First look reports what is already wrong; an unavailable report says nothing.
        assert_eq!(smart_events(3, "sdc", None, &b).len(), 2);
        assert!(smart_events(3, "sdc", None, &fixture("unsupported.json")).is_empty());
        assert!(smart_events(3, "sdc", None, &a).is_empty());
    }
}
