//! How one received instance's patient, study and series values meet what the index holds.
//!
//! The rules, so that a stored value is never blanked or silently replaced and nothing received
//! is dropped unseen:
//! - a date (DA) is eight ASCII digits and a time (TM) ASCII digits with `.` or `:`; any other
//!   received value is indexed as empty and recorded as `invalid` (the object file keeps it
//!   exactly as received);
//! - an empty received value never replaces a value;
//! - a received value fills an empty field;
//! - a different non-empty value keeps the first one and is recorded as `differs`;
//! - identity fields (Patient ID and its issuer) are never filled in or changed: a study keeps
//!   the patient it was first stored under.
//!
//! Conflicts go into `field_conflicts` (one row per study, field and received value); the
//! writer appends one audit row for each new one. Values are never logged.

use crate::StoreError;
use rusqlite::{params, Connection};

/// Longest value, in characters, a conflict row keeps; longer ones are cut.
const MAX_RECORDED_CHARS: usize = 256;

/// Which entity a field belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Patient,
    Study,
    Series,
}

impl Level {
    /// The index table that holds this level's rows (a fixed name, never received text).
    fn table(self) -> &'static str {
        match self {
            Level::Patient => "patients",
            Level::Study => "studies",
            Level::Series => "series",
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "patient",
            Level::Study => "study",
            Level::Series => "series",
        }
    }
}

/// Why a received value was not indexed as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The index holds another non-empty value, which it keeps.
    Differs,
    /// Not a valid value for its VR: indexed as empty.
    Invalid,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Differs => "differs",
            Reason::Invalid => "invalid",
        }
    }
}

/// One received value the index did not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    pub level: Level,
    /// DICOM keyword of the attribute, e.g. `StudyDate`.
    pub field: &'static str,
    /// What the index holds (and keeps).
    pub kept: String,
    /// What the instance carried.
    pub received: String,
    pub reason: Reason,
}

/// How a field's values are compared and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Compared as received.
    Text,
    /// A person name: compared normalised; its normalised form lives in `norm_column`.
    PersonName { norm_column: &'static str },
    /// A date (DA).
    Date,
    /// A time (TM).
    Time,
    /// Identifies the entity: never filled in or changed, a different value is a conflict.
    Identity,
}

/// A column of an index table and the value an instance carries for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub column: &'static str,
    pub keyword: &'static str,
    pub value: &'a str,
    pub kind: Kind,
}

/// True for an empty value or a DICOM date `YYYYMMDD` (eight ASCII digits).
pub fn is_valid_date(v: &str) -> bool {
    v.is_empty() || (v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit()))
}

/// True for an empty value or a DICOM time: two to sixteen ASCII characters, digits with `.`
/// or (the older form) `:`, starting with two digits.
pub fn is_valid_time(v: &str) -> bool {
    v.is_empty()
        || ((2..=16).contains(&v.len())
            && v.bytes().take(2).all(|b| b.is_ascii_digit())
            && v.bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b':'))
}

/// Normalise a person name for case-insensitive, per-component matching: upper case, empty
/// trailing components and padding removed in each component group. This is the form the
/// index keeps in a name's `norm_column` and the form a query key is compared in.
pub fn normalize_name(s: &str) -> String {
    s.split('=')
        .map(|group| {
            let comps: Vec<String> = group.split('^').map(|c| c.trim().to_uppercase()).collect();
            let mut end = comps.len();
            while end > 0 && comps[end - 1].is_empty() {
                end -= 1;
            }
            comps[..end].join("^")
        })
        .collect::<Vec<_>>()
        .join("=")
        .trim_end_matches('=')
        .to_string()
}

/// The value an index column gets for a received value: dates and times are checked (an
/// invalid one is recorded in `out` and becomes empty); padding spaces are dropped.
pub(crate) fn indexable<'a>(f: &Field<'a>, kept: &str, out: &mut Vec<Conflict>) -> &'a str {
    let v = f.value.trim_matches(' ');
    let valid = match f.kind {
        Kind::Date => is_valid_date(v),
        Kind::Time => is_valid_time(v),
        _ => return f.value,
    };
    if valid {
        v
    } else {
        out.push(conflict(f, kept, Reason::Invalid));
        ""
    }
}

fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_RECORDED_CHARS {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_RECORDED_CHARS - 1).collect();
        t.push('…');
        t
    }
}

fn conflict(f: &Field<'_>, kept: &str, reason: Reason) -> Conflict {
    Conflict {
        level: Level::Patient,
        field: f.keyword,
        kept: cut(kept),
        received: cut(f.value),
        reason,
    }
}

fn same(kind: Kind, a: &str, b: &str) -> bool {
    match kind {
        Kind::PersonName { .. } => a == b || normalize_name(a) == normalize_name(b),
        _ => a == b,
    }
}

/// Merge an instance's values into row `id` of `level`'s table by the rules above, appending
/// the conflicts to `out`. The table and the columns are fixed names from this crate, never
/// received text.
pub(crate) fn merge(
    conn: &Connection,
    id: i64,
    level: Level,
    fields: &[Field<'_>],
    now: &str,
    out: &mut Vec<Conflict>,
) -> Result<(), StoreError> {
    let table = level.table();
    let cols: Vec<&str> = fields.iter().map(|f| f.column).collect();
    let current: Vec<String> = conn
        .prepare_cached(&format!(
            "SELECT {} FROM {table} WHERE id = ?1",
            cols.join(", ")
        ))?
        .query_row(params![id], |r| {
            (0..fields.len()).map(|i| r.get::<_, String>(i)).collect()
        })?;
    let first_new = out.len();
    let mut sets: Vec<(&'static str, String)> = Vec::new();
    for (f, kept) in fields.iter().zip(&current) {
        let v = indexable(f, kept, out);
        if v.is_empty() {
            continue;
        }
        if kept.is_empty() && f.kind != Kind::Identity {
            sets.push((f.column, v.to_string()));
            if let Kind::PersonName { norm_column } = f.kind {
                sets.push((norm_column, normalize_name(v)));
            }
        } else if !same(f.kind, v, kept) {
            out.push(conflict(f, kept, Reason::Differs));
        }
    }
    for c in &mut out[first_new..] {
        c.level = level;
    }
    if !sets.is_empty() {
        let assignments: Vec<String> = sets.iter().map(|(c, _)| format!("{c} = ?")).collect();
        let sql = format!(
            "UPDATE {table} SET {}, updated_at = ? WHERE id = ?",
            assignments.join(", ")
        );
        let mut args: Vec<rusqlite::types::Value> = sets
            .into_iter()
            .map(|(_, v)| rusqlite::types::Value::Text(v))
            .collect();
        args.push(rusqlite::types::Value::Text(now.to_string()));
        args.push(rusqlite::types::Value::Integer(id));
        conn.prepare_cached(&sql)?
            .execute(rusqlite::params_from_iter(args))?;
    }
    Ok(())
}

/// Where a conflict was met.
pub(crate) struct Origin<'a> {
    pub study_ref: i64,
    pub sop_instance_uid: &'a str,
    pub source_ae: &'a str,
    pub now: &'a str,
}

/// Record conflicts; returns the ones not recorded before (same study, field and received
/// value), which the writer audits.
pub(crate) fn record(
    conn: &Connection,
    at: &Origin<'_>,
    conflicts: Vec<Conflict>,
) -> Result<Vec<Conflict>, StoreError> {
    let mut new = Vec::new();
    for c in conflicts {
        let n = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO field_conflicts (study_ref, level, field, kept, received,
                   reason, sop_instance_uid, source_ae, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                at.study_ref,
                c.level.as_str(),
                c.field,
                c.kept,
                c.received,
                c.reason.as_str(),
                at.sop_instance_uid,
                at.source_ae,
                at.now
            ])?;
        if n == 1 {
            new.push(c);
        }
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times() {
        assert!(is_valid_date(""));
        assert!(is_valid_date("20240131"));
        assert!(!is_valid_date("123é567"));
        assert!(!is_valid_date("2024013"));
        assert!(!is_valid_date("2024.01.31"));
        assert!(!is_valid_date("20240131\\20240201"));
        assert!(is_valid_time("07"));
        assert!(is_valid_time("072730.123456"));
        assert!(is_valid_time("07:27:30"));
        assert!(!is_valid_time("12é3000"));
        assert!(!is_valid_time("1"));
        assert!(!is_valid_time("ab1234"));
        assert!(!is_valid_time("07273012345678901"));
    }

    #[test]
    fn names_normalise() {
        assert_eq!(normalize_name("Doe^John^^^"), "DOE^JOHN");
        assert_eq!(normalize_name("müller^hans "), "MÜLLER^HANS");
        assert_eq!(
            normalize_name("Yamada^Tarou=山田^太郎"),
            "YAMADA^TAROU=山田^太郎"
        );
    }

    #[test]
    fn long_values_are_cut_on_a_character() {
        let long = "é".repeat(300);
        let c = cut(&long);
        assert_eq!(c.chars().count(), MAX_RECORDED_CHARS);
        assert!(c.ends_with('…'));
    }
}
