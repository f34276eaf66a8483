//! Events: what changed between two snapshots, named by bay.

use crate::status::{member_state, MemberState, Progress};
use crate::{health, Health};
use cairn_hal::md::ArraySnapshot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Something that happened to an array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RaidEvent {
    /// md marked a member faulty.
    DiskFailed {
        /// Array.
        array: String,
        /// Bay of the disk, if known.
        bay: Option<u32>,
        /// Kernel name.
        device: String,
    },
    /// A member left the array.
    DiskRemoved {
        /// Array.
        array: String,
        /// Bay of the disk, if known.
        bay: Option<u32>,
        /// Kernel name.
        device: String,
    },
    /// A member joined the array.
    DiskAdded {
        /// Array.
        array: String,
        /// Bay of the disk, if known.
        bay: Option<u32>,
        /// Kernel name.
        device: String,
    },
    /// A spare was given a slot and is being rebuilt.
    SpareActivated {
        /// Array.
        array: String,
        /// Bay of the disk, if known.
        bay: Option<u32>,
        /// Kernel name.
        device: String,
    },
    /// A recovery, resync or reshape started.
    RebuildStarted {
        /// Array.
        array: String,
        /// recover, resync or reshape.
        action: String,
    },
    /// Rebuild progress (one event per whole percent).
    RebuildProgress {
        /// Array.
        array: String,
        /// Percent done.
        percent: f64,
        /// KiB/s.
        speed_kib: Option<u64>,
        /// Seconds left.
        eta_secs: Option<u64>,
    },
    /// A rebuild ended.
    RebuildFinished {
        /// Array.
        array: String,
        /// Slots still without a working member afterwards.
        degraded: u32,
    },
    /// A scrub (check) started.
    ScrubStarted {
        /// Array.
        array: String,
    },
    /// A scrub ended.
    ScrubFinished {
        /// Array.
        array: String,
        /// `mismatch_cnt` at the end.
        mismatches: u64,
    },
    /// The health class changed.
    HealthChanged {
        /// Array.
        array: String,
        /// Before.
        from: Health,
        /// Now.
        to: Health,
    },
    /// An array appeared (assembled) after the first snapshot.
    ArrayAppeared {
        /// Array.
        array: String,
    },
    /// An array disappeared (stopped).
    ArrayGone {
        /// Array.
        array: String,
    },
}

impl RaidEvent {
    /// The array it happened to.
    pub fn array(&self) -> &str {
        match self {
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
            | RaidEvent::ArrayGone { array } => array,
        }
    }
}

fn rebuilding(a: &ArraySnapshot) -> Option<Progress> {
    Progress::of(a).filter(|p| p.is_rebuild())
}

fn scrubbing(a: &ArraySnapshot) -> bool {
    Progress::of(a).is_some_and(|p| !p.is_rebuild())
}

/// The events between `prev` and `next`. With no `prev` (the monitor's first look) the events
/// describe what is already wrong: failed members, reduced health, a rebuild under way.
pub fn diff(
    prev: Option<&[ArraySnapshot]>,
    next: &[ArraySnapshot],
    bay_of: &BTreeMap<String, u32>,
) -> Vec<RaidEvent> {
    let bay = |k: &str| bay_of.get(k).copied();
    let mut out = Vec::new();
    for a in next {
        let array = a.name.clone();
        let before = prev.and_then(|p| p.iter().find(|b| b.name == a.name));
        let Some(b) = before else {
            if prev.is_some() {
                out.push(RaidEvent::ArrayAppeared {
                    array: array.clone(),
                });
            }
            for m in &a.members {
                if member_state(m) == MemberState::Faulty {
                    out.push(RaidEvent::DiskFailed {
                        array: array.clone(),
                        bay: bay(&m.kname),
                        device: m.kname.clone(),
                    });
                }
            }
            let h = health(a);
            if h != Health::Ok && crate::running(a) {
                out.push(RaidEvent::HealthChanged {
                    array: array.clone(),
                    from: Health::Ok,
                    to: h,
                });
            }
            if let Some(p) = rebuilding(a) {
                out.push(RaidEvent::RebuildStarted {
                    array: array.clone(),
                    action: p.action,
                });
            }
            continue;
        };
        for m in &a.members {
            let ev = |f: fn(String, Option<u32>, String) -> RaidEvent| {
                f(array.clone(), bay(&m.kname), m.kname.clone())
            };
            match b.members.iter().find(|o| o.kname == m.kname) {
                None => {
                    out.push(ev(|array, bay, device| RaidEvent::DiskAdded {
                        array,
                        bay,
                        device,
                    }));
                    if member_state(m) == MemberState::Faulty {
                        out.push(ev(|array, bay, device| RaidEvent::DiskFailed {
                            array,
                            bay,
                            device,
                        }));
                    }
                }
                Some(o) => {
                    if m.has("faulty") && !o.has("faulty") {
                        out.push(ev(|array, bay, device| RaidEvent::DiskFailed {
                            array,
                            bay,
                            device,
                        }));
                    } else if member_state(m) == MemberState::Rebuilding
                        && member_state(o) == MemberState::Spare
                    {
                        out.push(ev(|array, bay, device| RaidEvent::SpareActivated {
                            array,
                            bay,
                            device,
                        }));
                    }
                }
            }
        }
        for o in &b.members {
            if !a.members.iter().any(|m| m.kname == o.kname) {
                // A working member gone without ever being seen faulty: its disk was pulled
                // or died at once (md fails it and the monitor removes it between two looks).
                if !o.has("faulty") && member_state(o) != MemberState::Spare {
                    out.push(RaidEvent::DiskFailed {
                        array: array.clone(),
                        bay: bay(&o.kname),
                        device: o.kname.clone(),
                    });
                }
                out.push(RaidEvent::DiskRemoved {
                    array: array.clone(),
                    bay: bay(&o.kname),
                    device: o.kname.clone(),
                });
            }
        }
        match (rebuilding(b), rebuilding(a)) {
            (None, Some(p)) => out.push(RaidEvent::RebuildStarted {
                array: array.clone(),
                action: p.action,
            }),
            (Some(_), None) => out.push(RaidEvent::RebuildFinished {
                array: array.clone(),
                degraded: a.degraded,
            }),
            (Some(p0), Some(p1)) if p0.percent.floor() != p1.percent.floor() => {
                out.push(RaidEvent::RebuildProgress {
                    array: array.clone(),
                    percent: p1.percent,
                    speed_kib: p1.speed_kib,
                    eta_secs: p1.eta_secs,
                })
            }
            _ => {}
        }
        match (scrubbing(b), scrubbing(a)) {
            (false, true) => out.push(RaidEvent::ScrubStarted {
                array: array.clone(),
            }),
            (true, false) => out.push(RaidEvent::ScrubFinished {
                array: array.clone(),
                mismatches: a.mismatch_cnt,
            }),
            _ => {}
        }
        let (h0, h1) = (health(b), health(a));
        if h0 != h1 {
            out.push(RaidEvent::HealthChanged {
                array: array.clone(),
                from: h0,
                to: h1,
            });
        }
    }
    if let Some(prev) = prev {
        for b in prev {
            if !next.iter().any(|a| a.name == b.name) {
                out.push(RaidEvent::ArrayGone {
                    array: b.name.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{bays, load};

    fn kinds(ev: &[RaidEvent]) -> Vec<String> {
        ev.iter()
            .map(|e| {
                serde_json::to_value(e).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn md0_only(name: &str) -> Vec<ArraySnapshot> {
        load(name).into_iter().filter(|a| a.name == "md0").collect()
    }

    #[test]
    fn clean_to_degraded_names_the_bay() {
        let ev = diff(
            Some(&md0_only("clean")),
            &md0_only("degraded"),
            &bays("degraded"),
        );
        assert_eq!(
            ev[0],
            RaidEvent::DiskFailed {
                array: "md0".into(),
                bay: Some(3),
                device: "sdc2".into()
            }
        );
        assert_eq!(
            ev[1],
            RaidEvent::HealthChanged {
                array: "md0".into(),
                from: Health::Ok,
                to: Health::Degraded
            }
        );
    }

    #[test]
    fn degraded_to_critical_to_failed() {
        let b = bays("failed");
        let ev = diff(Some(&md0_only("degraded")), &md0_only("critical"), &b);
        assert_eq!(kinds(&ev), ["disk-failed", "health-changed"]);
        assert!(matches!(ev[0], RaidEvent::DiskFailed { bay: Some(4), .. }));
        let ev = diff(Some(&md0_only("critical")), &md0_only("failed"), &b);
        assert!(matches!(ev[0], RaidEvent::DiskFailed { bay: Some(5), .. }));
        assert!(matches!(
            ev[1],
            RaidEvent::HealthChanged {
                to: Health::Failed,
                ..
            }
        ));
    }

    #[test]
    fn a_working_member_gone_at_once_is_a_failure() {
        // A pulled disk on a real kernel: md fails it and the monitor removes it between two
        // looks, so the member goes from in_sync to absent without being seen faulty.
        let clean = md0_only("clean");
        let mut pulled = clean.clone();
        pulled[0].members.retain(|m| m.kname != "sdc2");
        pulled[0].degraded = 1;
        let ev = diff(Some(&clean), &pulled, &bays("clean"));
        assert!(
            matches!(ev[0], RaidEvent::DiskFailed { bay: Some(3), .. }),
            "{ev:?}"
        );
        assert!(matches!(ev[1], RaidEvent::DiskRemoved { bay: Some(3), .. }));
    }

    #[test]
    fn swap_removes_adds_and_rebuilds() {
        let mut b = bays("degraded");
        b.extend(bays("recovering"));
        let ev = diff(Some(&md0_only("degraded")), &md0_only("recovering"), &b);
        assert_eq!(
            kinds(&ev),
            ["disk-added", "disk-removed", "rebuild-started"]
        );
        assert!(matches!(ev[0], RaidEvent::DiskAdded { bay: Some(3), .. }));
        assert!(matches!(ev[1], RaidEvent::DiskRemoved { bay: Some(3), .. }));
        let ev = diff(Some(&md0_only("recovering")), &md0_only("clean"), &b);
        assert!(kinds(&ev).contains(&"rebuild-finished".to_string()));
        assert!(kinds(&ev).contains(&"health-changed".to_string()));
    }

    #[test]
    fn spare_activation_and_scrub() {
        let b = bays("spare");
        let ev = diff(Some(&md0_only("spare")), &md0_only("spare-active"), &b);
        assert_eq!(
            kinds(&ev),
            [
                "disk-failed",
                "spare-activated",
                "rebuild-started",
                "health-changed"
            ]
        );
        let ev = diff(Some(&md0_only("clean")), &md0_only("check"), &b);
        assert_eq!(kinds(&ev), ["scrub-started"]);
        let ev = diff(Some(&md0_only("check")), &md0_only("check-done"), &b);
        assert_eq!(
            ev,
            [RaidEvent::ScrubFinished {
                array: "md0".into(),
                mismatches: 128
            }]
        );
    }

    #[test]
    fn progress_and_first_look() {
        let b = bays("recovering");
        let r = md0_only("recovering");
        let mut later = r.clone();
        later[0].sync_completed = Some((2_097_152, 4_194_304));
        let ev = diff(Some(&r), &later, &b);
        assert!(matches!(ev[0], RaidEvent::RebuildProgress { percent, .. } if percent == 50.0));
        let ev = diff(None, &md0_only("critical"), &bays("critical"));
        assert_eq!(kinds(&ev), ["disk-failed", "disk-failed", "health-changed"]);
        assert!(diff(None, &load("clean"), &bays("clean")).is_empty());
        let ev = diff(Some(&load("clean")), &md0_only("clean"), &b);
        assert_eq!(kinds(&ev), ["array-gone", "array-gone"]);
    }
}
