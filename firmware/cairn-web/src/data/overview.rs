//! The overview: the box's health in one verdict, its storage and its counts.

use super::monitor::{alarm, raid, Raid};
use crate::WebError;
use cairn_alarm::AlarmState;
use cairn_raid::{Blocked, MemberState};
use cairn_store::{find, DataDir};
use serde::Serialize;

/// Storage used and left on the data directory's file system.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Storage {
    /// Bytes of images (distinct objects) in the index.
    pub images_bytes: i64,
    /// Bytes used on the file system.
    pub used_bytes: u64,
    /// Bytes still free for images.
    pub free_bytes: u64,
    /// File system size.
    pub total_bytes: u64,
}

/// How the box is, in one word and one sentence, with the one thing to do.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `ok`, `working` (e.g. rebuilding: nothing to do), `attention` or `alarm`.
    pub state: &'static str,
    /// The headline ("All good", "Disk in bay 3 failed: replace it").
    pub headline: String,
    /// The one action, for a person (empty when none).
    pub action: String,
    /// The page that action happens on.
    pub action_page: &'static str,
}

/// Everything the overview shows.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// The verdict.
    pub health: Health,
    /// Storage.
    pub storage: Storage,
    /// Images received since midnight (UTC).
    pub images_today: i64,
    /// Studies held.
    pub studies: i64,
    /// Instances held.
    pub instances: i64,
    /// When the newest verified archive copy was made (none yet: null).
    pub last_verified_copy: Option<String>,
    /// The alarm.
    pub alarm: AlarmState,
    /// Whether the alarm sounds now.
    pub sounding: bool,
    /// RAID status (null when no monitor runs).
    pub raid: Option<Raid>,
}

fn bay_of(raid: &Raid, pred: impl Fn(MemberState) -> bool) -> Option<(u32, String)> {
    raid.arrays.iter().find_map(|a| {
        a.members
            .iter()
            .find(|m| pred(m.state))
            .map(|m| (m.bay.unwrap_or(0), a.name.clone()))
    })
}

/// The one verdict from the alarm and the RAID status; the most urgent thing wins.
pub fn health(raid: Option<&Raid>, alarm: &AlarmState) -> Health {
    use cairn_alarm::AlarmKind;
    let h = |state, headline: String, action: &str, page| Health {
        state,
        headline,
        action: action.to_string(),
        action_page: page,
    };
    let sounding = alarm.sounding();
    let alarm_state = if sounding { "alarm" } else { "attention" };
    if let Some(r) = raid {
        if r.arrays
            .iter()
            .any(|a| a.health == cairn_raid::Health::Failed)
        {
            return h(
                "alarm",
                "The disks failed: images cannot be stored".to_string(),
                "Call service now. Do not pull any disk.",
                "/disks",
            );
        }
        let failed = bay_of(r, |s| {
            matches!(s, MemberState::Faulty | MemberState::Missing)
        });
        if r.arrays
            .iter()
            .any(|a| a.health == cairn_raid::Health::Critical)
        {
            let bay = failed.as_ref().map_or(0, |f| f.0);
            return h(
                alarm_state,
                format!("Disk in bay {bay} failed: replace it now"),
                &format!(
                    "The other disks have no spare left: one more failure loses images. \
                     Replace the disk in bay {bay} today."
                ),
                "/disks",
            );
        }
        if let Some((bay, _)) = &failed {
            let rebuilding = r.arrays.iter().any(|a| a.rebuild_percent.is_some());
            if !rebuilding {
                return h(
                    alarm_state,
                    format!("Disk in bay {bay} failed: replace it"),
                    &format!(
                        "Pull the disk in bay {bay} (its light is on) and slide in a new one."
                    ),
                    "/disks",
                );
            }
        }
        if let Some(b) = r.blocked.first() {
            match b {
                Blocked::NeedsConfirmation { bay, .. } => {
                    return h(
                        "attention",
                        format!("New disk in bay {bay} is not blank: confirm to use it"),
                        "Confirm on the Disks page that it may be wiped.",
                        "/disks",
                    )
                }
                Blocked::TooSmall { bay, .. } => {
                    return h(
                        "attention",
                        format!("New disk in bay {bay} is too small: use a larger one"),
                        "Replace it with a disk at least as large as the others.",
                        "/disks",
                    )
                }
            }
        }
        if let Some(a) = r.arrays.iter().find(|a| a.rebuild_percent.is_some()) {
            // Still sounding (nobody silenced it yet): say so in the colour. People see "the
            // disks", never the array's device name.
            return h(
                if sounding { "alarm" } else { "working" },
                format!(
                    "Rebuilding the disks: {:.0} % done",
                    a.rebuild_percent.unwrap_or(0.0)
                ),
                "Leave every disk in place until it reaches 100 %.",
                "/disks",
            );
        }
    }
    // What the alarm still holds (SMART warnings, media needed).
    if let Some(e) = alarm
        .events
        .iter()
        .filter(|e| !e.silenced)
        .chain(alarm.events.iter())
        .max_by_key(|e| (!e.silenced, e.kind.priority()))
    {
        let (action, page) = match e.kind {
            AlarmKind::MediumNeeded => ("Load a new tape or disc.", "/archive"),
            AlarmKind::DiskFailing => ("Replace that disk soon.", "/disks"),
            AlarmKind::ObjectDamaged => (
                "Restore that study from its tape or disc copy (Archive page).",
                "/archive",
            ),
            _ => ("See the Disks page.", "/disks"),
        };
        return h(alarm_state, e.message.clone(), action, page);
    }
    if raid.is_none() {
        return h(
            "ok",
            "Storing images".into(),
            "No disk monitor runs on this box.",
            "",
        );
    }
    h("ok", "All good".into(), "", "")
}

/// Bytes used and free on the data directory's file system.
pub fn storage(data: &DataDir, images_bytes: i64) -> Storage {
    match nix::sys::statvfs::statvfs(data.root()) {
        Ok(s) => {
            let frag = s.fragment_size();
            let total = s.blocks() * frag;
            let free = s.blocks_available() * frag;
            let used = total.saturating_sub(s.blocks_free() * frag);
            Storage {
                images_bytes,
                used_bytes: used,
                free_bytes: free,
                total_bytes: total,
            }
        }
        Err(_) => Storage {
            images_bytes,
            ..Storage::default()
        },
    }
}

fn today_utc() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!(
        "{:04}-{:02}-{:02}T00:00:00",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

/// Images received since midnight UTC.
pub fn images_today(data: &DataDir) -> Result<i64, WebError> {
    let conn = find::query_connection(data)?;
    cairn_store::images_received_since(&conn, &today_utc()).map_err(super::statement_error)
}

/// When the newest verified archive copy was made (from `cairn-archive`'s status).
pub fn last_verified_copy(data: &DataDir) -> Option<String> {
    cairn_archive::archive_status(data)
        .ok()?
        .targets
        .iter()
        .filter_map(|t| t.last_verified.as_ref().and_then(|b| b.verified_at.clone()))
        .max()
}

/// Whether a medium is needed, in the archive's own words, from the status the Archive page
/// shows (`cairn-archive`'s catalog and live status): the one source every screen reads.
pub fn archive_medium_message(data: &DataDir) -> Option<String> {
    cairn_archive::archive_status(data)
        .ok()
        .and_then(|a| cairn_archive::catalog::medium_needed_message(&a))
}

/// The alarm as the overview's verdict weighs it: a `medium-needed` event counts only while
/// the archive still needs a medium (the monitor clears the event a moment after a load; the
/// overview must not ask for a medium the Archive page no longer does).
fn with_archive_medium(alarm: &AlarmState, medium_needed: bool) -> AlarmState {
    let mut a = alarm.clone();
    if !medium_needed {
        a.events
            .retain(|e| e.kind != cairn_alarm::AlarmKind::MediumNeeded);
    }
    a
}

/// The whole overview.
pub fn overview(data: &DataDir) -> Result<Overview, WebError> {
    let stats = cairn_store::stats(data)?;
    let raid = raid(data)?;
    let alarm = alarm(data)?;
    let medium = archive_medium_message(data);
    let mut health = health(
        raid.as_ref(),
        &with_archive_medium(&alarm, medium.is_some()),
    );
    if health.state == "ok" {
        // The archive's own "medium needed" (the alarm may not have caught up yet).
        if let Some(m) = medium {
            health = Health {
                state: "attention",
                headline: m,
                action: "Load a new tape or disc.".into(),
                action_page: "/archive",
            };
        }
    }
    Ok(Overview {
        health,
        storage: storage(data, stats.bytes),
        images_today: images_today(data)?,
        studies: stats.studies,
        instances: stats.instances,
        last_verified_copy: last_verified_copy(data),
        sounding: alarm.sounding(),
        alarm,
        raid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_alarm::AlarmFile;
    use cairn_raid::requests::ALARM_FILE;

    /// One second after a load: the alarm still holds `medium-needed` (the monitor clears it
    /// on its next pass) while the archive's status, which the Archive page shows, needs
    /// nothing any more. The overview follows the archive.
    #[test]
    fn the_overview_follows_the_archive_not_a_medium_alarm_it_has_outgrown() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data = DataDir::new(dir.path());
        let store = cairn_store::Store::open(data.clone()).unwrap_or_else(|e| panic!("{e}"));
        cairn_archive::catalog::sync_targets(&store, &[("tape".into(), "tape".into())])
            .unwrap_or_else(|e| panic!("{e}"));
        store.close().unwrap_or_else(|e| panic!("{e}"));
        let mut a = AlarmState::default();
        a.raise(
            cairn_alarm::AlarmKind::MediumNeeded,
            None,
            None,
            "Tape full or missing: load a new tape in the tape drive",
            1,
        );
        AlarmFile::new(data.root().join(ALARM_FILE))
            .save(&a)
            .unwrap_or_else(|e| panic!("{e}"));
        let o = overview(&data).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(archive_medium_message(&data), None);
        assert_eq!(
            (o.health.state, o.health.headline.as_str()),
            ("ok", "Storing images")
        );
        assert!(!o.health.headline.contains("needed"), "{:?}", o.health);
    }

    #[test]
    fn health_words() {
        let quiet = AlarmState::default();
        assert_eq!(health(Some(&Raid::default()), &quiet).headline, "All good");
        let mut a = AlarmState::default();
        a.raise(
            cairn_alarm::AlarmKind::MediumNeeded,
            None,
            None,
            "Tape full: load a new one",
            1,
        );
        let h = health(Some(&Raid::default()), &a);
        assert_eq!(h.headline, "Tape full: load a new one");
        assert_eq!(h.state, "alarm");
        assert_eq!(h.action_page, "/archive");
    }

    #[test]
    fn damaged_study_is_not_all_good() {
        let mut a = AlarmState::default();
        a.raise_for_study(
            cairn_alarm::AlarmKind::ObjectDamaged,
            "1.2.3",
            "An image file of study 1.2.3 is missing",
            1,
        );
        a.silence(None, "cli");
        let h = health(Some(&Raid::default()), &a);
        assert_eq!(h.headline, "An image file of study 1.2.3 is missing");
        assert_eq!(h.state, "attention");
        assert_eq!(h.action_page, "/archive");
    }
}
