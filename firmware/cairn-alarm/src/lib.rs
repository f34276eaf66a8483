//! cairn's latched alarm: a failure sounds until a person silences it.
//!
//! Owns: the alarm events and their per-event silence, the rule that decides whether the box
//! sounds and with which pattern, and the state file that keeps the latch across restarts
//! (written atomically: temp file, fsync, rename).
//! Must never: talk to hardware (the caller plays [`Pattern`]s on a buzzer) or forget an
//! unsilenced event: only a healthy array clears its events (a replaced or recovered disk its
//! SMART event, a loaded medium its medium-needed event, a repaired study its damage event).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// The state file could not be read or written.
#[derive(Debug, Error)]
pub enum AlarmError {
    /// I/O on the state file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The state file is not valid JSON of the expected shape.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// What an alarm event is about; each has its own pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlarmKind {
    /// A disk failed (redundancy reduced).
    DiskFailed,
    /// A disk's SMART says it is failing (it still works: replace it soon).
    DiskFailing,
    /// An array runs with no redundancy left.
    ArrayCritical,
    /// An array failed: data unavailable.
    ArrayFailed,
    /// An archive medium (tape, disc) is needed.
    MediumNeeded,
    /// A stored image file of a study is missing or damaged (found when it was read): the
    /// study needs restoring from a cold copy.
    ObjectDamaged,
}

impl AlarmKind {
    /// Urgency: the most urgent unsilenced event picks the pattern.
    pub fn priority(self) -> u8 {
        match self {
            AlarmKind::ArrayFailed => 4,
            AlarmKind::ArrayCritical => 3,
            AlarmKind::DiskFailed => 2,
            AlarmKind::DiskFailing => 2,
            AlarmKind::MediumNeeded => 1,
            AlarmKind::ObjectDamaged => 2,
        }
    }

    /// The pattern sounded for this kind.
    pub fn pattern(self) -> Pattern {
        match self {
            // Two short beeps, a pause.
            AlarmKind::DiskFailed => Pattern(&[(2000, 200), (0, 150), (2000, 200), (0, 1200)]),
            // Three fast beeps, short pause.
            AlarmKind::ArrayCritical => Pattern(&[
                (2500, 150),
                (0, 100),
                (2500, 150),
                (0, 100),
                (2500, 150),
                (0, 500),
            ]),
            // A continuous two-tone siren.
            AlarmKind::ArrayFailed => Pattern(&[(2800, 300), (1800, 300)]),
            // One long low tone, a long pause.
            AlarmKind::MediumNeeded => Pattern(&[(1000, 600), (0, 4000)]),
            // One short beep, a long pause.
            AlarmKind::DiskFailing => Pattern(&[(2000, 200), (0, 3000)]),
            // A falling pair of tones, a long pause.
            AlarmKind::ObjectDamaged => Pattern(&[(1600, 300), (1200, 300), (0, 3000)]),
        }
    }
}

/// A tone sequence played in a loop: (Hz, or 0 for a pause; milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern(pub &'static [(u32, u32)]);

/// One latched event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmEvent {
    /// Unique, increasing.
    pub id: u64,
    /// What it is about.
    pub kind: AlarmKind,
    /// The bay concerned, if one is.
    pub bay: Option<u32>,
    /// The array concerned, if one is.
    pub array: Option<String>,
    /// The study concerned (its Study Instance UID), if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study: Option<String>,
    /// A sentence for people ("Disk in bay 3 failed").
    pub message: String,
    /// When it was raised (ms since the Unix epoch).
    pub raised_at_ms: u64,
    /// Whether a person silenced it.
    pub silenced: bool,
    /// Who silenced it (`user:alice`, `button`, `cli`).
    pub silenced_by: Option<String>,
}

/// The latched alarm: the events not yet cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmState {
    /// The id the next event gets.
    pub next_id: u64,
    /// Events raised and not cleared, oldest first.
    pub events: Vec<AlarmEvent>,
}

impl AlarmState {
    /// Raise an event. An identical event still latched (same kind, bay and array) is not
    /// raised again (so a restart re-reporting a known failure keeps its silence); returns the
    /// new event's id otherwise.
    pub fn raise(
        &mut self,
        kind: AlarmKind,
        bay: Option<u32>,
        array: Option<&str>,
        message: impl Into<String>,
        now_ms: u64,
    ) -> Option<u64> {
        if self.events.iter().any(|e| {
            e.kind == kind && e.bay == bay && e.array.as_deref() == array && e.study.is_none()
        }) {
            return None;
        }
        Some(self.push(kind, bay, array, None, message.into(), now_ms))
    }

    /// Raise an event about one study (e.g. [`AlarmKind::ObjectDamaged`]). One event per kind
    /// and study stays latched: the study reported again is not raised again.
    pub fn raise_for_study(
        &mut self,
        kind: AlarmKind,
        study: &str,
        message: impl Into<String>,
        now_ms: u64,
    ) -> Option<u64> {
        if self
            .events
            .iter()
            .any(|e| e.kind == kind && e.study.as_deref() == Some(study))
        {
            return None;
        }
        Some(self.push(kind, None, None, Some(study), message.into(), now_ms))
    }

    fn push(
        &mut self,
        kind: AlarmKind,
        bay: Option<u32>,
        array: Option<&str>,
        study: Option<&str>,
        message: String,
        now_ms: u64,
    ) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.events.push(AlarmEvent {
            id,
            kind,
            bay,
            array: array.map(String::from),
            study: study.map(String::from),
            message,
            raised_at_ms: now_ms,
            silenced: false,
            silenced_by: None,
        });
        id
    }

    /// The study was repaired (its files restored and verified): its events are cleared.
    pub fn clear_study(&mut self, study: &str) -> Vec<AlarmEvent> {
        let (gone, keep) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|e| e.study.as_deref() == Some(study));
        self.events = keep;
        gone
    }

    /// Silence one event (`Some(id)`) or every sounding one (`None`); returns the ids silenced.
    pub fn silence(&mut self, id: Option<u64>, by: &str) -> Vec<u64> {
        let mut done = Vec::new();
        for e in &mut self.events {
            if !e.silenced && id.is_none_or(|id| id == e.id) {
                e.silenced = true;
                e.silenced_by = Some(by.to_string());
                done.push(e.id);
            }
        }
        done
    }

    /// The array is healthy again: its events are cleared. Returns them.
    pub fn clear_array(&mut self, array: &str) -> Vec<AlarmEvent> {
        let (gone, keep) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|e| e.array.as_deref() == Some(array));
        self.events = keep;
        gone
    }

    /// Clear every event of one kind with no array and no study (e.g. a medium was inserted).
    pub fn clear_kind(&mut self, kind: AlarmKind) -> Vec<AlarmEvent> {
        let (gone, keep) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|e| e.kind == kind && e.array.is_none() && e.study.is_none());
        self.events = keep;
        gone
    }

    /// Clear the events of one kind about one bay (a failing disk was replaced or recovered).
    pub fn clear_bay(&mut self, kind: AlarmKind, bay: u32) -> Vec<AlarmEvent> {
        let (gone, keep) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|e| e.kind == kind && e.bay == Some(bay));
        self.events = keep;
        gone
    }

    /// Whether the box must sound: some latched event is not silenced.
    pub fn sounding(&self) -> bool {
        self.events.iter().any(|e| !e.silenced)
    }

    /// The pattern to play: that of the most urgent unsilenced event; `None` means quiet.
    pub fn pattern(&self) -> Option<Pattern> {
        self.events
            .iter()
            .filter(|e| !e.silenced)
            .max_by_key(|e| e.kind.priority())
            .map(|e| e.kind.pattern())
    }
}

/// The state file (JSON).
#[derive(Debug, Clone)]
pub struct AlarmFile {
    path: PathBuf,
}

impl AlarmFile {
    /// The state kept at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the state; a missing file is an empty (quiet) state.
    pub fn load(&self) -> Result<AlarmState, AlarmError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AlarmState::default()),
            Err(source) => {
                return Err(AlarmError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|e| AlarmError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// Write the state: temp file, fsync, rename, fsync the folder.
    pub fn save(&self, state: &AlarmState) -> Result<(), AlarmError> {
        let io = |source| AlarmError::Io {
            path: self.path.clone(),
            source,
        };
        let text = serde_json::to_vec_pretty(state).map_err(|e| AlarmError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        // Synced: a silenced or cleared alarm must not sound again after a crash.
        cairn_files::atomic_write(&self.path, &text, cairn_files::Durability::Synced)
            .map_err(io)?;
        Ok(())
    }
}

/// The alarm state one process shares between the thread that raises and clears events and
/// the one that plays the pattern, written to its [`AlarmFile`] whenever a change leaves it
/// different.
#[derive(Debug, Clone)]
pub struct SharedAlarm {
    state: Arc<Mutex<AlarmState>>,
    file: AlarmFile,
}

impl SharedAlarm {
    /// The state kept in `file`, loaded from it (a missing file is a quiet state).
    pub fn load(file: AlarmFile) -> Result<Self, AlarmError> {
        let state = file.load()?;
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
            file,
        })
    }

    /// Run `f` on the state and, if it changed the state, write the state to the file. Returns
    /// what `f` returned and how the write went (the change stays in memory either way).
    pub fn change<T>(&self, f: impl FnOnce(&mut AlarmState) -> T) -> (T, Result<(), AlarmError>) {
        let mut a = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = a.clone();
        let out = f(&mut a);
        let saved = if *a != before {
            self.file.save(&a)
        } else {
            Ok(())
        };
        (out, saved)
    }

    /// A copy of the state now.
    pub fn snapshot(&self) -> AlarmState {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The pattern to play now (see [`AlarmState::pattern`]).
    pub fn pattern(&self) -> Option<Pattern> {
        self.state.lock().map(|a| a.pattern()).unwrap_or(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn latch_silence_new_event_sounds_again() {
        let mut s = AlarmState::default();
        assert!(!s.sounding());
        let a = s.raise(AlarmKind::DiskFailed, Some(3), Some("md0"), "bay 3", 1);
        assert!(a.is_some() && s.sounding());
        assert_eq!(
            s.raise(AlarmKind::DiskFailed, Some(3), Some("md0"), "bay 3", 2),
            None
        );
        assert_eq!(s.silence(None, "cli"), vec![1]);
        assert!(!s.sounding());
        s.raise(AlarmKind::DiskFailed, Some(4), Some("md0"), "bay 4", 3);
        s.raise(AlarmKind::ArrayCritical, None, Some("md0"), "md0", 3);
        assert!(s.sounding());
        assert_eq!(s.pattern(), Some(AlarmKind::ArrayCritical.pattern()));
        s.silence(Some(3), "button");
        assert_eq!(s.pattern(), Some(AlarmKind::DiskFailed.pattern()));
        assert_eq!(s.clear_array("md0").len(), 3);
        assert!(!s.sounding() && s.events.is_empty());
    }

    #[test]
    fn patterns_differ() {
        let kinds = [
            AlarmKind::DiskFailed,
            AlarmKind::ArrayCritical,
            AlarmKind::ArrayFailed,
            AlarmKind::MediumNeeded,
            AlarmKind::DiskFailing,
            AlarmKind::ObjectDamaged,
        ];
        for (i, a) in kinds.iter().enumerate() {
            for b in &kinds[i + 1..] {
                assert_ne!(a.pattern(), b.pattern());
            }
        }
    }

    #[test]
    fn damaged_study_latches_once_per_study_and_clears_with_its_repair() {
        let mut s = AlarmState::default();
        let a = s.raise_for_study(AlarmKind::ObjectDamaged, "1.2.3", "study 1.2.3", 1);
        assert!(a.is_some() && s.sounding());
        assert_eq!(
            s.raise_for_study(AlarmKind::ObjectDamaged, "1.2.3", "again", 2),
            None
        );
        let b = s.raise_for_study(AlarmKind::ObjectDamaged, "1.2.4", "study 1.2.4", 3);
        assert!(b.is_some());
        // a kind-wide clear (medium loaded) leaves study events alone
        assert!(s.clear_kind(AlarmKind::ObjectDamaged).is_empty());
        s.silence(a, "cli");
        assert!(s.sounding(), "the other study still sounds");
        assert_eq!(s.pattern(), Some(AlarmKind::ObjectDamaged.pattern()));
        let gone = s.clear_study("1.2.3");
        assert_eq!(gone.len(), 1);
        assert_eq!(s.events.len(), 1);
        assert_eq!(s.events[0].study.as_deref(), Some("1.2.4"));
        // the field round-trips, and an older state file without it still loads
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains("\"study\":\"1.2.4\""));
        let back: AlarmState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        let old = r#"{"next_id":1,"events":[{"id":1,"kind":"disk-failed","bay":3,
            "array":"md0","message":"m","raised_at_ms":1,"silenced":false,"silenced_by":null}]}"#;
        let old: AlarmState = serde_json::from_str(old).unwrap();
        assert_eq!(old.events[0].study, None);
    }

    #[test]
    fn shared_alarm_writes_only_a_change() {
        let t = tempfile::tempdir().unwrap();
        let file = AlarmFile::new(t.path().join("alarm.json"));
        let shared = SharedAlarm::load(file.clone()).unwrap();
        let (cleared, saved) = shared.change(|a| a.clear_array("md0"));
        assert!(cleared.is_empty() && saved.is_ok());
        assert!(!file.path().exists(), "nothing changed, nothing written");
        let (id, saved) =
            shared.change(|a| a.raise(AlarmKind::DiskFailed, Some(2), Some("md0"), "bay 2", 5));
        assert_eq!((id, saved.is_ok()), (Some(1), true));
        assert_eq!(file.load().unwrap(), shared.snapshot());
        assert_eq!(shared.pattern(), Some(AlarmKind::DiskFailed.pattern()));
        assert_eq!(SharedAlarm::load(file).unwrap().snapshot().events.len(), 1);
    }

    #[test]
    fn latch_survives_restart() {
        let t = tempfile::tempdir().unwrap();
        let f = AlarmFile::new(t.path().join("alarm.json"));
        assert_eq!(f.load().unwrap(), AlarmState::default());
        let mut s = AlarmState::default();
        s.raise(AlarmKind::DiskFailed, Some(1), Some("md0"), "x", 1);
        f.save(&s).unwrap();
        let back = f.load().unwrap();
        assert!(back.sounding());
        assert_eq!(back, s);
        std::fs::write(f.path(), "{").unwrap();
        assert!(matches!(f.load(), Err(AlarmError::Corrupt { .. })));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Raise(u8, Option<u32>, u8),
        SilenceAll,
        SilenceOne(usize),
        ClearArray(u8),
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4, proptest::option::of(1u32..7), 0u8..2).prop_map(|(k, b, a)| Op::Raise(k, b, a)),
            2 => Just(Op::SilenceAll),
            2 => (0usize..8).prop_map(Op::SilenceOne),
            1 => (0u8..2).prop_map(Op::ClearArray),
            1 => Just(Op::Restart),
        ]
    }

    fn kind(k: u8) -> AlarmKind {
        [
            AlarmKind::DiskFailed,
            AlarmKind::ArrayCritical,
            AlarmKind::ArrayFailed,
            AlarmKind::MediumNeeded,
        ][k as usize % 4]
    }

    proptest! {
        #[test]
        fn never_silent_with_an_unsilenced_failure_never_sounding_when_quiet(
            ops in proptest::collection::vec(op(), 0..60)
        ) {
            let mut s = AlarmState::default();
            for (t, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Raise(k, bay, a) => {
                        let array = format!("md{a}");
                        let new = s.raise(kind(k), bay, Some(&array), "e", t as u64);
                        // A new event always sounds, whatever was silenced before.
                        if new.is_some() {
                            prop_assert!(s.sounding());
                        }
                    }
                    Op::SilenceAll => {
                        s.silence(None, "test");
                        prop_assert!(!s.sounding());
                        prop_assert!(s.pattern().is_none());
                    }
                    Op::SilenceOne(i) => {
                        if let Some(id) = s.events.get(i).map(|e| e.id) {
                            s.silence(Some(id), "test");
                            prop_assert!(s.events[i].silenced);
                        }
                    }
                    Op::ClearArray(a) => {
                        s.clear_array(&format!("md{a}"));
                    }
                    Op::Restart => {
                        let text = serde_json::to_string(&s).unwrap();
                        let back: AlarmState = serde_json::from_str(&text).unwrap();
                        prop_assert_eq!(&back, &s);
                        s = back;
                    }
                }
                let unsilenced = s.events.iter().any(|e| !e.silenced);
                // Never silent while an unsilenced failure exists...
                prop_assert_eq!(s.sounding(), unsilenced);
                prop_assert_eq!(s.pattern().is_some(), unsilenced);
                // ...and never sounding when all is healthy (no event) or silenced.
                if s.events.is_empty() || s.events.iter().all(|e| e.silenced) {
                    prop_assert!(!s.sounding());
                }
            }
        }
    }
}
