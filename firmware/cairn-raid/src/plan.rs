//! The disk swap: which md actions are safe now, and which requests must be refused.

use crate::{running, ArrayStatus};
use cairn_hal::disks::Contents;
use cairn_hal::md::ArraySnapshot;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What a bay holds right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BayDisk {
    /// Bay number.
    pub bay: u32,
    /// Kernel name of the disk in it.
    pub device: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// What its first sectors hold.
    pub contents: Contents,
    /// The array one of its partitions or the disk itself is a member of, if any.
    pub member_of: Option<String>,
}

/// An md action the monitor should carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Write `dev-<device>/state` (`faulty`, then `remove`: what `mdadm -If` does).
    SetState {
        /// Array.
        array: String,
        /// Member kernel name.
        device: String,
        /// Value to write.
        value: String,
    },
    /// Zero the start of a disk a person confirmed may be wiped.
    Wipe {
        /// Bay.
        bay: u32,
        /// Disk kernel name.
        device: String,
    },
    /// Add the disk to the array (`md/new_dev`).
    Add {
        /// Array.
        array: String,
        /// Bay.
        bay: u32,
        /// Disk kernel name.
        device: String,
    },
}

/// Why a disk in a failed member's bay is not added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Blocked {
    /// It is smaller than the array's component size.
    TooSmall {
        /// Bay.
        bay: u32,
        /// Its size.
        size_bytes: u64,
        /// What the array needs.
        needed_bytes: u64,
    },
    /// It holds data or another array's superblock: waits for a person to confirm the wipe.
    NeedsConfirmation {
        /// Bay.
        bay: u32,
        /// What it holds.
        contents: Contents,
    },
}

/// A refused manual request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Removing a working member of a degraded array would lose redundancy or data.
    HealthyMemberOfDegradedArray,
    /// The disk is smaller than the array's component size.
    TooSmall,
    /// The disk is a member of a running array.
    MemberOfRunningArray(String),
    /// No such disk or member.
    NotFound,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::HealthyMemberOfDegradedArray => write!(
                f,
                "refused: this disk is a working member of a degraded array; pulling it \
                 would lose redundancy (or data). Replace the failed disk first."
            ),
            Refusal::TooSmall => write!(f, "refused: the disk is smaller than the array needs"),
            Refusal::MemberOfRunningArray(a) => {
                write!(
                    f,
                    "refused: the disk holds a member of the running array {a}"
                )
            }
            Refusal::NotFound => write!(f, "no such disk"),
        }
    }
}

/// Whether a member may be taken out of its array (marked faulty, then removed).
pub fn check_remove(a: &ArraySnapshot, device: &str) -> Result<(), Refusal> {
    let m = a
        .members
        .iter()
        .find(|m| m.kname == device)
        .ok_or(Refusal::NotFound)?;
    if m.has("in_sync") && !m.has("faulty") && m.present && a.degraded > 0 {
        return Err(Refusal::HealthyMemberOfDegradedArray);
    }
    Ok(())
}

/// Whether a disk may be added to array `a`.
pub fn check_add(
    a: &ArraySnapshot,
    disk: &BayDisk,
    arrays: &[ArraySnapshot],
) -> Result<(), Refusal> {
    if let Some(other) = &disk.member_of {
        if arrays.iter().any(|x| &x.name == other && running(x)) {
            return Err(Refusal::MemberOfRunningArray(other.clone()));
        }
    }
    if disk.size_bytes < a.component_size_kib * 1024 {
        return Err(Refusal::TooSmall);
    }
    Ok(())
}

/// The safe actions for now, and the disks waiting for a person.
///
/// - A member whose disk vanished is failed and removed (as `mdadm -If` would).
/// - A disk in the bay of a failed member (`home`: bay -> array it last served) whose array is
///   degraded is added when blank and large enough; a non-blank one waits for a confirmation
///   (`confirmed` bays get wiped then added); a too small one is reported.
pub fn plan(
    arrays: &[ArraySnapshot],
    bays: &[BayDisk],
    home: &BTreeMap<u32, String>,
    confirmed: &BTreeSet<u32>,
) -> (Vec<Action>, Vec<Blocked>) {
    let mut actions = Vec::new();
    let mut blocked = Vec::new();
    for a in arrays.iter().filter(|a| running(a)) {
        for m in a.members.iter().filter(|m| !m.present) {
            if !m.has("faulty") {
                actions.push(Action::SetState {
                    array: a.name.clone(),
                    device: m.kname.clone(),
                    value: "faulty".into(),
                });
            }
            actions.push(Action::SetState {
                array: a.name.clone(),
                device: m.kname.clone(),
                value: "remove".into(),
            });
        }
    }
    for d in bays {
        if d.member_of.is_some() {
            continue;
        }
        let Some(a) = home
            .get(&d.bay)
            .and_then(|name| arrays.iter().find(|a| &a.name == name))
        else {
            continue;
        };
        if !running(a) || a.degraded == 0 || a.degraded > crate::redundancy(&a.level) {
            continue;
        }
        if check_add(a, d, arrays).is_err() {
            blocked.push(Blocked::TooSmall {
                bay: d.bay,
                size_bytes: d.size_bytes,
                needed_bytes: a.component_size_kib * 1024,
            });
            continue;
        }
        if d.contents != Contents::Blank {
            if confirmed.contains(&d.bay) {
                actions.push(Action::Wipe {
                    bay: d.bay,
                    device: d.device.clone(),
                });
            } else {
                blocked.push(Blocked::NeedsConfirmation {
                    bay: d.bay,
                    contents: d.contents,
                });
                continue;
            }
        }
        actions.push(Action::Add {
            array: a.name.clone(),
            bay: d.bay,
            device: d.device.clone(),
        });
    }
    (actions, blocked)
}

/// Bays each array's members sit in (to remember where a failed member was).
pub fn homes(statuses: &[ArrayStatus]) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    for s in statuses {
        for m in &s.members {
            if let Some(b) = m.bay {
                out.insert(b, s.name.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::md0;

    fn disk(bay: u32, contents: Contents, size: u64) -> BayDisk {
        BayDisk {
            bay,
            device: "sdg".into(),
            size_bytes: size,
            contents,
            member_of: None,
        }
    }

    fn home3() -> BTreeMap<u32, String> {
        [(3, "md0".to_string())].into()
    }

    #[test]
    fn pulled_member_is_failed_then_removed() {
        let mut a = md0("clean");
        a.members[2].present = false;
        let (act, _) = plan(&[a], &[], &home3(), &BTreeSet::new());
        let values: Vec<_> = act
            .iter()
            .map(|x| match x {
                Action::SetState { device, value, .. } => format!("{device}:{value}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(values, ["sdc2:faulty", "sdc2:remove"]);
    }

    #[test]
    fn blank_disk_in_failed_bay_is_added() {
        let a = md0("degraded");
        let big = 4 << 30;
        let (act, blocked) = plan(
            std::slice::from_ref(&a),
            &[disk(3, Contents::Blank, big)],
            &home3(),
            &BTreeSet::new(),
        );
        assert!(blocked.is_empty());
        assert_eq!(
            act,
            [Action::Add {
                array: "md0".into(),
                bay: 3,
                device: "sdg".into()
            }]
        );
        // A disk in a bay that served no array is left alone.
        let (act, _) = plan(
            &[a],
            &[disk(5, Contents::Blank, big)],
            &home3(),
            &BTreeSet::new(),
        );
        assert!(act.is_empty());
    }

    #[test]
    fn used_disk_waits_for_confirmation_and_small_is_refused() {
        let a = md0("degraded");
        let (act, blocked) = plan(
            std::slice::from_ref(&a),
            &[disk(3, Contents::MdSuperblock, 4 << 30)],
            &home3(),
            &BTreeSet::new(),
        );
        assert!(act.is_empty());
        assert!(matches!(
            blocked[0],
            Blocked::NeedsConfirmation { bay: 3, .. }
        ));
        let (act, _) = plan(
            std::slice::from_ref(&a),
            &[disk(3, Contents::MdSuperblock, 4 << 30)],
            &home3(),
            &[3].into(),
        );
        assert!(matches!(act[0], Action::Wipe { bay: 3, .. }));
        assert!(matches!(act[1], Action::Add { bay: 3, .. }));
        let (act, blocked) = plan(
            &[a],
            &[disk(3, Contents::Blank, 1 << 30)],
            &home3(),
            &BTreeSet::new(),
        );
        assert!(act.is_empty());
        assert!(matches!(blocked[0], Blocked::TooSmall { bay: 3, .. }));
    }

    #[test]
    fn refusals() {
        let a = md0("degraded");
        assert_eq!(
            check_remove(&a, "sdd2"),
            Err(Refusal::HealthyMemberOfDegradedArray)
        );
        assert_eq!(check_remove(&a, "sdc2"), Ok(()));
        assert_eq!(check_remove(&md0("clean"), "sdd2"), Ok(()));
        let mut d = disk(3, Contents::MdSuperblock, 4 << 30);
        d.member_of = Some("md0".into());
        assert_eq!(
            check_add(&a, &d, std::slice::from_ref(&a)),
            Err(Refusal::MemberOfRunningArray("md0".into()))
        );
        assert_eq!(
            check_add(&a, &disk(3, Contents::Blank, 1024), &[]),
            Err(Refusal::TooSmall)
        );
    }
}
