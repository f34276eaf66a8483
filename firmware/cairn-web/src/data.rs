//! What the pages and the API show, read through the same calls `cairnctl` uses: the store's
//! queries, `raid.json` and `alarm.json` as the monitor publishes them, and requests to the
//! monitor through `requests/`. Blocking: call from [`crate::blocking`].

use crate::WebError;
use cairn_alarm::{AlarmFile, AlarmState};
use cairn_raid::requests::{Answer, Request, ALARM_FILE, STATUS_FILE};
use cairn_raid::{ArrayStatus, Blocked, MemberState};
use cairn_store::find::{self, Level, Matcher, Query};
use cairn_store::DataDir;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

/// One bay as `raid.json` lists it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bay {
    /// Bay number.
    pub bay: u32,
    /// Kernel name of the disk in it, if one is.
    #[serde(default)]
    pub device: Option<String>,
    /// Its size.
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// What its start holds (blank, md-superblock, data).
    #[serde(default)]
    pub contents: Option<serde_json::Value>,
    /// The array it belongs to.
    #[serde(default)]
    pub member_of: Option<String>,
    /// Its fault LED is lit.
    #[serde(default)]
    pub fault: bool,
}

/// `raid.json`, the parts the panel shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Raid {
    /// When the monitor wrote it (ms since the epoch).
    #[serde(default)]
    pub updated_at_ms: u64,
    /// Board name.
    #[serde(default)]
    pub board: String,
    /// Arrays.
    #[serde(default)]
    pub arrays: Vec<ArrayStatus>,
    /// Bays.
    #[serde(default)]
    pub bays: Vec<Bay>,
    /// Disks waiting for a person.
    #[serde(default)]
    pub blocked: Vec<Blocked>,
}

/// Read `raid.json` (none when no monitor has run in this data directory).
pub fn raid(data: &DataDir) -> Result<Option<Raid>, WebError> {
    let path = data.root().join(STATUS_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| WebError::Internal(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WebError::Internal(format!("{}: {e}", path.display()))),
    }
}

/// Read the latched alarm.
pub fn alarm(data: &DataDir) -> Result<AlarmState, WebError> {
    AlarmFile::new(data.root().join(ALARM_FILE))
        .load()
        .map_err(|e| WebError::Internal(e.to_string()))
}

/// Hand a request to the running monitor and wait (at most 5 s) for its answer, through
/// [`cairn_raid::requests::send`] as `cairnctl` does.
pub fn monitor_request(data_root: &Path, req: &Request) -> Result<Answer, WebError> {
    use cairn_raid::requests::{send, SendErrorKind, ANSWER_WAIT};
    send(data_root, req, ANSWER_WAIT).map_err(|e| match e.kind() {
        SendErrorKind::NoMonitor => {
            WebError::Unavailable("the disk monitor is not running on this box".into())
        }
        SendErrorKind::NoAnswer => WebError::Unavailable(format!(
            "the disk monitor did not answer within {} s",
            ANSWER_WAIT.as_secs()
        )),
        SendErrorKind::Io => WebError::Internal(e.to_string()),
    })
}

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
    Ok(conn.query_row(
        "SELECT count(*) FROM instances WHERE received_at >= ?1",
        [today_utc()],
        |r| r.get(0),
    )?)
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

/// A study search, as typed into the Studies page or the API query string.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StudySearch {
    /// Patient name; without `*` or `?` it matches anywhere in the name.
    #[serde(default)]
    pub name: String,
    /// Patient ID (exact, or with wildcards).
    #[serde(default)]
    pub id: String,
    /// Study date `YYYYMMDD`, or a range `YYYYMMDD-YYYYMMDD`.
    #[serde(default)]
    pub date: String,
    /// Modality (CT, MR...).
    #[serde(default)]
    pub modality: String,
    /// Accession number.
    #[serde(default)]
    pub accession: String,
    /// At most this many (default 200).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A study in a result list.
#[derive(Debug, Clone, Serialize)]
pub struct StudyHit {
    /// Study Instance UID.
    pub study_uid: String,
    /// Study date.
    pub date: String,
    /// Patient name (DICOM PN, `^`-separated).
    pub patient_name: String,
    /// Patient ID.
    pub patient_id: String,
    /// Accession number.
    pub accession: String,
    /// Modalities.
    pub modalities: String,
    /// Description.
    pub description: String,
    /// Series.
    pub series: i64,
    /// Instances.
    pub instances: i64,
}

const T_NAME: u32 = 0x0010_0010;
const T_PID: u32 = 0x0010_0020;
const T_STUDY_UID: u32 = 0x0020_000D;
const T_DATE: u32 = 0x0008_0020;
const T_ACCESSION: u32 = 0x0008_0050;
const T_DESCRIPTION: u32 = 0x0008_1030;
const T_MODALITIES: u32 = 0x0008_0061;
const T_N_SERIES: u32 = 0x0020_1206;
const T_N_INST: u32 = 0x0020_1208;
const T_SERIES_UID: u32 = 0x0020_000E;
const T_MODALITY: u32 = 0x0008_0060;
const T_SERIES_NO: u32 = 0x0020_0011;
const T_SERIES_DESC: u32 = 0x0008_103E;
const T_N_SERIES_INST: u32 = 0x0020_1209;

/// A typed search value, matched as `cairnctl studies` matches it (one rule, in cairn-store).
fn text_matcher(v: &str) -> Result<Matcher, WebError> {
    cairn_store::typed_text(v).map_err(|e| WebError::BadRequest(e.to_string()))
}

impl StudySearch {
    fn keys(&self) -> Result<Vec<(u32, Matcher)>, WebError> {
        let mut keys = vec![
            (T_STUDY_UID, Matcher::Universal),
            (T_N_SERIES, Matcher::Universal),
            (T_N_INST, Matcher::Universal),
            (T_DESCRIPTION, Matcher::Universal),
        ];
        keys.push((
            T_NAME,
            cairn_store::typed_person_name(&self.name)
                .map_err(|e| WebError::BadRequest(e.to_string()))?,
        ));
        keys.push((T_PID, text_matcher(&self.id)?));
        keys.push((T_ACCESSION, text_matcher(&self.accession)?));
        keys.push((
            T_MODALITIES,
            match text_matcher(&self.modality)? {
                Matcher::Single(m) => Matcher::Single(m.to_uppercase()),
                m => m,
            },
        ));
        let date = self.date.trim();
        keys.push((
            T_DATE,
            if date.is_empty() {
                Matcher::Universal
            } else {
                let r: cairn_store::DateRange = date.parse().map_err(WebError::BadRequest)?;
                if r.from == r.to {
                    Matcher::Single(r.from.unwrap_or_default())
                } else {
                    Matcher::Range(r.from, r.to)
                }
            },
        ));
        Ok(keys)
    }

    /// True when no field is filled in.
    pub fn is_empty(&self) -> bool {
        [
            &self.name,
            &self.id,
            &self.date,
            &self.modality,
            &self.accession,
        ]
        .iter()
        .all(|s| s.trim().is_empty())
    }
}

fn take(m: &mut BTreeMap<u32, String>, t: u32) -> String {
    m.remove(&t).unwrap_or_default()
}

/// Search studies with the C-FIND matcher (the same SQL a PACS query runs); newest first.
/// Returns the hits and whether more matched than the limit.
pub fn search_studies(data: &DataDir, s: &StudySearch) -> Result<(Vec<StudyHit>, bool), WebError> {
    let limit = s.limit.unwrap_or(200).clamp(1, 1000);
    let conn = find::query_connection(data)?;
    let q = Query {
        level: Level::Study,
        study_root: true,
        keys: s.keys()?,
        limit,
    };
    let mut hits = Vec::new();
    let end = find::find(&conn, &q, |mut row| {
        hits.push(StudyHit {
            study_uid: take(&mut row, T_STUDY_UID),
            date: take(&mut row, T_DATE),
            patient_name: take(&mut row, T_NAME),
            patient_id: take(&mut row, T_PID),
            accession: take(&mut row, T_ACCESSION),
            modalities: take(&mut row, T_MODALITIES),
            description: take(&mut row, T_DESCRIPTION),
            series: take(&mut row, T_N_SERIES).parse().unwrap_or(0),
            instances: take(&mut row, T_N_INST).parse().unwrap_or(0),
        });
        ControlFlow::Continue(())
    })?
    .map_err(|e| WebError::BadRequest(format!("{e:?}")))?;
    hits.sort_by(|a, b| b.date.cmp(&a.date));
    Ok((hits, end.0 == find::FindEnd::LimitReached))
}

/// One series of a study.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesRow {
    /// Series Instance UID.
    pub series_uid: String,
    /// Modality.
    pub modality: String,
    /// Series number.
    pub number: String,
    /// Description.
    pub description: String,
    /// Instances.
    pub instances: i64,
    /// Bytes of its current instances.
    pub bytes: i64,
}

/// Where a study's images are kept.
#[derive(Debug, Clone, Serialize)]
pub struct CopyRow {
    /// `raid` or a volume id.
    pub place: String,
    /// Instances of the study held there.
    pub instances: i64,
    /// Whether those copies were read back and checked.
    pub verified: bool,
}

/// A study with its series and copies.
#[derive(Debug, Clone, Serialize)]
pub struct StudyDetail {
    /// The study.
    pub study: StudyHit,
    /// Its series.
    pub series: Vec<SeriesRow>,
    /// Bytes of its current instances.
    pub bytes: i64,
    /// Its copies: the hot copy on the RAID and any archive volumes.
    pub copies: Vec<CopyRow>,
    /// Retention date, when a retention rule is configured (none today).
    pub retention_until: Option<String>,
    /// Received values the index did not take: a different value than the one kept, or an
    /// invalid date or time.
    pub conflicts: Vec<ConflictRow>,
}

/// A received value the index did not take as received (`cairn_store::FieldConflict`).
#[derive(Debug, Clone, Serialize)]
pub struct ConflictRow {
    /// `patient`, `study` or `series`.
    pub level: String,
    /// DICOM keyword, e.g. `StudyDescription`.
    pub field: String,
    /// The value kept (the first received).
    pub kept: String,
    /// The value an image carried.
    pub received: String,
    /// `differs` or `invalid`.
    pub reason: String,
    /// The field in words, e.g. "Study date".
    pub label: String,
    /// The image that carried it.
    pub sop_instance_uid: String,
    /// When it was received.
    pub received_at: String,
}

/// Check a UID from a URL: digits and dots, at most 64.
pub fn valid_uid(uid: &str) -> Result<(), WebError> {
    if cairn_core::uid::check_uid(uid).is_ok() && uid.len() == uid.trim().len() {
        Ok(())
    } else {
        Err(WebError::BadRequest(
            "not a DICOM UID (digits and dots, at most 64)".into(),
        ))
    }
}

/// One study, or `NotFound`.
pub fn study(data: &DataDir, uid: &str) -> Result<StudyDetail, WebError> {
    valid_uid(uid)?;
    let conn = find::query_connection(data)?;
    let mut keys = StudySearch::default().keys()?;
    keys.retain(|(t, _)| *t != T_STUDY_UID);
    keys.push((T_STUDY_UID, Matcher::Single(uid.to_string())));
    let q = Query {
        level: Level::Study,
        study_root: true,
        keys,
        limit: 1,
    };
    let mut hit = None;
    find::find(&conn, &q, |mut row| {
        hit = Some(StudyHit {
            study_uid: take(&mut row, T_STUDY_UID),
            date: take(&mut row, T_DATE),
            patient_name: take(&mut row, T_NAME),
            patient_id: take(&mut row, T_PID),
            accession: take(&mut row, T_ACCESSION),
            modalities: take(&mut row, T_MODALITIES),
            description: take(&mut row, T_DESCRIPTION),
            series: take(&mut row, T_N_SERIES).parse().unwrap_or(0),
            instances: take(&mut row, T_N_INST).parse().unwrap_or(0),
        });
        ControlFlow::Break(())
    })?
    .map_err(|e| WebError::BadRequest(format!("{e:?}")))?;
    let Some(study) = hit else {
        return Err(WebError::NotFound("no such study".into()));
    };
    let q = Query {
        level: Level::Series,
        study_root: true,
        keys: vec![
            (T_STUDY_UID, Matcher::Single(uid.to_string())),
            (T_SERIES_UID, Matcher::Universal),
            (T_MODALITY, Matcher::Universal),
            (T_SERIES_NO, Matcher::Universal),
            (T_SERIES_DESC, Matcher::Universal),
            (T_N_SERIES_INST, Matcher::Universal),
        ],
        limit: 10_000,
    };
    let mut series = Vec::new();
    find::find(&conn, &q, |mut row| {
        series.push(SeriesRow {
            series_uid: take(&mut row, T_SERIES_UID),
            modality: take(&mut row, T_MODALITY),
            number: take(&mut row, T_SERIES_NO),
            description: take(&mut row, T_SERIES_DESC),
            instances: take(&mut row, T_N_SERIES_INST).parse().unwrap_or(0),
            bytes: 0,
        });
        ControlFlow::Continue(())
    })?
    .map_err(|e| WebError::BadRequest(format!("{e:?}")))?;
    let mut bytes = 0;
    for s in &mut series {
        s.bytes = conn.query_row(
            "SELECT coalesce(sum(i.size), 0) FROM instances i JOIN series se ON i.series_ref = se.id
             WHERE se.series_uid = ?1 AND i.current = 1",
            [&s.series_uid],
            |r| r.get(0),
        )?;
        bytes += s.bytes;
    }
    series.sort_by(|a, b| {
        a.number
            .parse::<i64>()
            .unwrap_or(i64::MAX)
            .cmp(&b.number.parse::<i64>().unwrap_or(i64::MAX))
    });
    let mut copies = vec![CopyRow {
        place: "RAID (hot copy)".into(),
        instances: study.instances,
        verified: true,
    }];
    copies.extend(archive_copies(&conn, uid));
    let conflicts = cairn_store::study_conflicts(&conn, uid)?
        .into_iter()
        .map(|c| ConflictRow {
            label: field_label(&c.field).to_string(),
            level: c.level,
            field: c.field,
            kept: c.kept,
            received: c.received,
            reason: c.reason,
            sop_instance_uid: c.sop_instance_uid,
            received_at: c.received_at,
        })
        .collect();
    Ok(StudyDetail {
        study,
        series,
        bytes,
        copies,
        retention_until: None,
        conflicts,
    })
}

/// A DICOM keyword the index keeps, in the words the study page uses.
fn field_label(keyword: &str) -> &str {
    match keyword {
        "PatientName" => "Patient name",
        "PatientID" => "Patient ID",
        "IssuerOfPatientID" => "Issuer of patient ID",
        "PatientBirthDate" => "Birth date",
        "PatientSex" => "Sex",
        "StudyDate" => "Study date",
        "StudyTime" => "Study time",
        "StudyDescription" => "Description",
        "AccessionNumber" => "Accession",
        "ReferringPhysicianName" => "Referring physician",
        "StudyID" => "Study ID",
        "Modality" => "Series modality",
        "SeriesNumber" => "Series number",
        "SeriesDescription" => "Series description",
        "BodyPartExamined" => "Body part",
        other => other,
    }
}

/// Verified copies of a study's instances on archive volumes, one row per volume
/// (`cairn-archive`'s catalog query).
fn archive_copies(conn: &rusqlite::Connection, uid: &str) -> Vec<CopyRow> {
    let rows = match cairn_archive::catalog::study_copies(conn, uid) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "archive copies of a study");
            return Vec::new();
        }
    };
    let mut per_volume: BTreeMap<String, (String, String, std::collections::BTreeSet<String>)> =
        BTreeMap::new();
    for c in rows {
        per_volume
            .entry(c.volume_name)
            .or_insert_with(|| (c.kind, c.location, Default::default()))
            .2
            .insert(c.sha256);
    }
    per_volume
        .into_iter()
        .map(|(v, (kind, location, shas))| CopyRow {
            place: format!("{kind} {v} ({})", location.replace('_', " ")),
            instances: shas.len() as i64,
            verified: true,
        })
        .collect()
}

/// Filters of the audit view.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Who: `user:alice`, `ae:CT1`, or part of it.
    #[serde(default)]
    pub actor: String,
    /// What: the action word (`login`, `store`...).
    #[serde(default)]
    pub action: String,
    /// From this day (`YYYY-MM-DD`), inclusive.
    #[serde(default)]
    pub from: String,
    /// To this day (`YYYY-MM-DD`), inclusive.
    #[serde(default)]
    pub to: String,
    /// At most this many rows, newest first (default 200, CSV: all).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Which page of `limit` rows (1: the newest; default 1).
    #[serde(default)]
    pub page: Option<usize>,
    /// `csv` for a download.
    #[serde(default)]
    pub format: String,
    /// The time zone `from` and `to` are days in (the pages': `http.time_zone`); none: UTC.
    #[serde(skip)]
    pub days_in: Option<String>,
}

/// One audit row.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    /// Sequence number.
    pub seq: i64,
    /// When (RFC 3339 UTC).
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub object: String,
    /// Details (JSON).
    pub detail: String,
}

fn day(s: &str) -> Result<Option<String>, WebError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    // On the calendar, too: no month 13, no 30 February.
    let part = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u16>().ok());
    let ok = shaped
        && match (part(0..4), part(5..7), part(8..10)) {
            (Some(y), Some(m), Some(d)) => u8::try_from(m)
                .ok()
                .and_then(|m| time::Month::try_from(m).ok())
                .zip(u8::try_from(d).ok())
                .is_some_and(|(m, d)| time::Date::from_calendar_date(i32::from(y), m, d).is_ok()),
            _ => false,
        };
    if ok {
        Ok(Some(s.to_string()))
    } else {
        Err(WebError::BadRequest(format!(
            "'{s}' is not a day like 2024-01-31"
        )))
    }
}

/// The WHERE clause of a filter and its arguments.
fn audit_where(f: &AuditFilter) -> Result<(String, Vec<String>), WebError> {
    let mut sql = String::from(" WHERE 1 = 1");
    let mut args: Vec<String> = Vec::new();
    if !f.actor.trim().is_empty() {
        sql.push_str(" AND instr(lower(actor), lower(?)) > 0");
        args.push(f.actor.trim().to_string());
    }
    if !f.action.trim().is_empty() {
        sql.push_str(" AND action = ?");
        args.push(f.action.trim().to_string());
    }
    let tz = f.days_in.as_deref().map(crate::words::time_zone);
    let not_a_day = |d: &str| WebError::BadRequest(format!("'{d}' is not a day like 2024-01-31"));
    if let Some(d) = day(&f.from)? {
        sql.push_str(" AND at >= ?");
        args.push(match &tz {
            Some(tz) => crate::words::utc_start_of_day(&d, tz, 0).ok_or_else(|| not_a_day(&d))?,
            None => d,
        });
    }
    if let Some(d) = day(&f.to)? {
        sql.push_str(" AND at < ?");
        args.push(match &tz {
            Some(tz) => crate::words::utc_start_of_day(&d, tz, 1).ok_or_else(|| not_a_day(&d))?,
            None => format!("{d}T99"),
        });
    }
    Ok((sql, args))
}

/// How many audit rows match the filter (paging ignored).
pub fn audit_count(data: &DataDir, f: &AuditFilter) -> Result<i64, WebError> {
    let conn = find::query_connection(data)?;
    let (w, args) = audit_where(f)?;
    let sql = format!("SELECT count(*) FROM audit{w}");
    Ok(conn.query_row(&sql, rusqlite::params_from_iter(args), |r| r.get(0))?)
}

/// The rows a page holds under a filter (`limit`, default 200; CSV: all).
pub fn audit_page_size(f: &AuditFilter) -> usize {
    match (f.format.as_str(), f.limit) {
        (_, Some(l)) => l.clamp(1, 1_000_000),
        ("csv", None) => 1_000_000,
        _ => 200,
    }
}

/// Audit rows matching the filter, newest first, the filter's page of them.
pub fn audit_rows(data: &DataDir, f: &AuditFilter) -> Result<Vec<AuditRow>, WebError> {
    let conn = find::query_connection(data)?;
    let (w, args) = audit_where(f)?;
    let mut sql = format!("SELECT seq, at, actor, action, object, detail FROM audit{w}");
    sql.push_str(" ORDER BY seq DESC");
    let limit = audit_page_size(f);
    let page = f.page.unwrap_or(1);
    if page == 0 || page > 1_000_000 {
        return Err(WebError::BadRequest("page: 1 or more".into()));
    }
    let offset = (page - 1).saturating_mul(limit);
    sql.push_str(&format!(" LIMIT {limit} OFFSET {offset}"));
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(AuditRow {
            seq: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            object: r.get(4)?,
            detail: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The distinct audit actions, for the filter's choices.
pub fn audit_actions(data: &DataDir) -> Result<Vec<String>, WebError> {
    let conn = find::query_connection(data)?;
    let mut st = conn.prepare("SELECT DISTINCT action FROM audit ORDER BY action")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn csv_field(s: &str) -> String {
    // Cells starting with = + - @ are neutralised so a spreadsheet never runs them.
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Audit rows as CSV (RFC 4180), with a header line.
pub fn audit_csv(rows: &[AuditRow]) -> String {
    let mut out = String::from("seq,at,actor,action,object,detail\r\n");
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{}\r\n",
            r.seq,
            csv_field(&r.at),
            csv_field(&r.actor),
            csv_field(&r.action),
            csv_field(&r.object),
            csv_field(&r.detail)
        ));
    }
    out
}

/// A size for people: `1.5 GB` (the wording `cairnctl` shares).
pub use cairn_core::human_bytes;

/// A duration for people: `12 min`.
pub fn human_secs(s: u64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn csv_quotes_and_neutralises() {
        let rows = vec![AuditRow {
            seq: 1,
            at: "2026-01-01T00:00:00Z".into(),
            actor: "user:a".into(),
            action: "=cmd".into(),
            object: "x,y".into(),
            detail: "{\"a\":\"b\"}".into(),
        }];
        let csv = audit_csv(&rows);
        assert!(csv.contains(",'=cmd,"), "{csv}");
        assert!(csv.contains(",\"x,y\","), "{csv}");
        assert!(csv.contains("\"{\"\"a\"\":\"\"b\"\"}\""), "{csv}");
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

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
    }
}
