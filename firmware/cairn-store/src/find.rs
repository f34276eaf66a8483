//! Query matching for C-FIND, C-MOVE and C-GET (PS3.4 annex C): keys in, rows out.
//!
//! Keys arrive decoded to UTF-8 by the DICOM layer. Matching is done in SQL with bound
//! parameters only; no received string is ever spliced into a statement.

use crate::index::open_ro;
use crate::layout::DataDir;
pub use crate::merge::normalize_name;
use crate::StoreError;
use rusqlite::types::Value;
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// Query/retrieve level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// PATIENT.
    Patient,
    /// STUDY.
    Study,
    /// SERIES.
    Series,
    /// IMAGE.
    Image,
}

impl Level {
    /// From the Query/Retrieve Level value (0008,0052).
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim() {
            "PATIENT" => Some(Level::Patient),
            "STUDY" => Some(Level::Study),
            "SERIES" => Some(Level::Series),
            "IMAGE" => Some(Level::Image),
            _ => None,
        }
    }

    /// The DICOM spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }
}

/// How one key matches (PS3.4 C.2.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Zero-length value: every row matches; the attribute is returned.
    Universal,
    /// Exact value.
    Single(String),
    /// `*` and `?` wildcards.
    Wildcard(String),
    /// Inclusive range; either end may be open (dates, times, date-times).
    Range(Option<String>, Option<String>),
    /// Any of these UIDs.
    List(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Name,
    Date,
    Time,
    Uid,
    /// Computed: matching not supported beyond universal (except ModalitiesInStudy).
    Count,
}

struct Attr {
    tag: u32,
    level: Level,
    /// SQL expression for the value, over the aliases p, st, se, i.
    expr: &'static str,
    /// SQL expression used for matching names (normalised) when different.
    match_expr: Option<&'static str>,
    kind: Kind,
}

const ATTRS: &[Attr] = &[
    Attr { tag: 0x0010_0010, level: Level::Patient, expr: "p.name", match_expr: Some("p.name_norm"), kind: Kind::Name },
    Attr { tag: 0x0010_0020, level: Level::Patient, expr: "p.patient_id", match_expr: None, kind: Kind::Text },
    Attr { tag: 0x0010_0021, level: Level::Patient, expr: "p.issuer", match_expr: None, kind: Kind::Text },
    Attr { tag: 0x0010_0030, level: Level::Patient, expr: "p.birth_date", match_expr: None, kind: Kind::Date },
    Attr { tag: 0x0010_0040, level: Level::Patient, expr: "p.sex", match_expr: None, kind: Kind::Text },
    Attr { tag: 0x0020_1200, level: Level::Patient, expr: "(SELECT count(*) FROM studies x WHERE x.patient_ref = p.id)", match_expr: None, kind: Kind::Count },
    Attr { tag: 0x0020_1202, level: Level::Patient, expr: "(SELECT count(*) FROM series x JOIN studies y ON x.study_ref = y.id WHERE y.patient_ref = p.id)", match_expr: None, kind: Kind::Count },
    Attr { tag: 0x0020_1204, level: Level::Patient, expr: "(SELECT count(*) FROM instances x JOIN series y ON x.series_ref = y.id JOIN studies z ON y.study_ref = z.id WHERE z.patient_ref = p.id AND x.current = 1)", match_expr: None, kind: Kind::Count },
    Attr { tag: 0x0020_000D, level: Level::Study, expr: "st.study_uid", match_expr: None, kind: Kind::Uid },
    Attr { tag: 0x0008_0020, level: Level::Study, expr: "st.study_date", match_expr: None, kind: Kind::Date },
    Attr { tag: 0x0008_0030, level: Level::Study, expr: "st.study_time", match_expr: None, kind: Kind::Time },
    Attr { tag: 0x0008_0050, level: Level::Study, expr: "st.accession", match_expr: None, kind: Kind::Text },
    Attr { tag: 0x0008_0090, level: Level::Study, expr: "st.referring_physician", match_expr: Some("st.referring_norm"), kind: Kind::Name },
    Attr { tag: 0x0008_1030, level: Level::Study, expr: "st.description", match_expr: None, kind: Kind::Text },
    Attr { tag: 0x0020_0010, level: Level::Study, expr: "st.study_id", match_expr: None, kind: Kind::Text },
    Attr { tag: 0x0008_0061, level: Level::Study, expr: "(SELECT group_concat(m, '\\') FROM (SELECT DISTINCT modality AS m FROM series x WHERE x.study_ref = st.id AND x.modality != '' ORDER BY 1))", match_expr: None, kind: Kind::Count },
    Attr { tag: 0x0008_0062, level: Level::Study, expr: "(SELECT group_concat(c, '\\') FROM (SELECT DISTINCT x.sop_class_uid AS c FROM instances x JOIN series y ON x.series_ref = y.id WHERE y.study_ref = st.id AND x.current = 1 ORDER BY 1))", match_expr: None, kind: Kind::Count },
    Attr { tag: 0x0020_1206, level: Level::Study, expr: "(SELECT count(*) FROM series x WHERE x.study_ref = st.id)", match_expr: None, kind: Kind::Count },
    Attr { tag: 0x0020_1208, level: Level::Study, expr: "(SELECT count(*) FROM instances x JOIN series y ON x.series_ref = y.id WHERE y.study_ref = st.id AND x.current = 1)", match_expr: None, kind: Kind::Count },
    Attr { tag: 0x0020_000E, level: Level::Series, expr: "se.series_uid", match_expr: None, kind: Kind::Uid },
    Attr { tag: 0x0008_0060, level: Level::Series, expr: "se.modality", match_expr: None, kind: Kind::Text },
    Attr { tag: 0x0020_0011, level: Level::Series, expr: "se.series_number", match_expr: None, kind: Kind::Text },
    Attr { tag: 0x0008_103E, level: Level::Series, expr: "se.description", match_expr: None, kind: Kind::Text },
    Attr { tag: 0x0018_0015, level: Level::Series, expr: "se.body_part", match_expr: None, kind: Kind::Text },
    Attr { tag: 0x0020_1209, level: Level::Series, expr: "(SELECT count(*) FROM instances x WHERE x.series_ref = se.id AND x.current = 1)", match_expr: None, kind: Kind::Count },
    Attr { tag: 0x0008_0018, level: Level::Image, expr: "i.sop_instance_uid", match_expr: None, kind: Kind::Uid },
    Attr { tag: 0x0008_0016, level: Level::Image, expr: "i.sop_class_uid", match_expr: None, kind: Kind::Uid },
    Attr { tag: 0x0020_0013, level: Level::Image, expr: "i.instance_number", match_expr: None, kind: Kind::Text },
];

fn attr(tag: u32) -> Option<&'static Attr> {
    ATTRS.iter().find(|a| a.tag == tag)
}

/// True when cairn can match or return this attribute.
pub fn is_known_attribute(tag: u32) -> bool {
    attr(tag).is_some()
}

/// A C-FIND (or retrieve) request, already decoded.
#[derive(Debug, Clone)]
pub struct Query {
    /// The level asked for.
    pub level: Level,
    /// True for the Study Root model (no PATIENT level; patient keys allowed at STUDY).
    pub study_root: bool,
    /// Keys: attribute tag and how it matches. Unknown tags are answered empty.
    pub keys: Vec<(u32, Matcher)>,
    /// At most this many answers (more: `FindEnd::LimitReached`).
    pub limit: usize,
}

/// Why a query cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// PATIENT level in the Study Root model, or similar.
    BadLevel(String),
    /// A key that cannot be matched as given.
    BadKey(String),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::BadLevel(m) | QueryError::BadKey(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for QueryError {}

/// At most this many values in one key (a list of UIDs, of modalities).
pub const MAX_KEY_VALUES: usize = 4096;
/// Longest wildcard pattern matched (the VR limits are far below it).
const MAX_PATTERN_CHARS: usize = 1024;

/// The most characters one value of this VR may hold (PS3.5 table 6.2-1; PN: per component
/// group), or None when unbounded or not text.
fn vr_max_chars(vr: &str) -> Option<usize> {
    Some(match vr {
        "AE" | "CS" | "DS" | "SH" | "TM" => 16,
        "AS" => 4,
        "DA" => 8,
        "DT" => 26,
        "IS" => 12,
        "LO" | "PN" | "UI" => 64,
        "ST" => 1024,
        "LT" => 10240,
        _ => return None,
    })
}

/// Refuse a key value longer than its VR allows (`vr` as the dictionary gives it, e.g. "PN"),
/// or with more than `MAX_KEY_VALUES` values: such a key is the client's error, not ours.
/// Ranges (`a-b`) of DA, DT and TM are checked per end.
pub fn check_key(tag: u32, vr: &str, value: &str) -> Result<(), QueryError> {
    let Some(max) = vr_max_chars(vr) else {
        return Ok(());
    };
    let name = || format!("({:04X},{:04X})", tag >> 16, tag & 0xFFFF);
    let value = value.trim_end_matches(['\0', ' ']);
    let single_valued = matches!(vr, "LT" | "ST");
    let values: Vec<&str> = if single_valued {
        vec![value]
    } else {
        value.split('\\').collect()
    };
    if values.len() > MAX_KEY_VALUES {
        return Err(QueryError::BadKey(format!(
            "{} has {} values (at most {MAX_KEY_VALUES})",
            name(),
            values.len()
        )));
    }
    for v in values {
        let parts: Vec<&str> = match vr {
            "DA" | "DT" | "TM" => v.splitn(2, '-').collect(),
            "PN" => v.split('=').collect(),
            _ => vec![v],
        };
        if vr == "PN" && parts.len() > 3 {
            return Err(QueryError::BadKey(format!(
                "{} has more than 3 component groups (PN)",
                name()
            )));
        }
        if let Some(long) = parts.iter().find(|p| p.trim().chars().count() > max) {
            return Err(QueryError::BadKey(format!(
                "{} value of {} characters is longer than {vr} allows ({max})",
                name(),
                long.trim().chars().count()
            )));
        }
    }
    Ok(())
}

/// How a find ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindEnd {
    /// Every match was delivered.
    Complete,
    /// The callback asked to stop (cancel).
    Stopped,
    /// More than `limit` matches.
    LimitReached,
}

/// Decide how a raw key value (padding trimmed) matches, given its kind.
fn matcher_for(kind: Kind, value: &str) -> Matcher {
    let v = value.trim_end_matches(['\0', ' ']).trim_start_matches(' ');
    if v.is_empty() || v == "*" {
        return Matcher::Universal;
    }
    match kind {
        Kind::Uid if v.contains('\\') => Matcher::List(
            v.split('\\')
                .map(|u| u.trim_end_matches(['\0', ' ']).to_string())
                .collect(),
        ),
        Kind::Date | Kind::Time if v.contains('-') => {
            let (a, b) = v.split_once('-').unwrap_or((v, ""));
            let norm = |x: &str| (!x.trim().is_empty()).then(|| x.trim().to_string());
            Matcher::Range(norm(a), norm(b))
        }
        Kind::Uid | Kind::Date | Kind::Time => Matcher::Single(v.to_string()),
        _ if v.contains('*') || v.contains('?') => Matcher::Wildcard(v.to_string()),
        _ => Matcher::Single(v.to_string()),
    }
}

/// Build a query's key list from decoded (tag, text) pairs.
pub fn keys_from(pairs: &[(u32, String)]) -> Vec<(u32, Matcher)> {
    pairs
        .iter()
        .map(|(tag, v)| {
            let kind = attr(*tag).map(|a| a.kind).unwrap_or(Kind::Text);
            (*tag, matcher_for(kind, v))
        })
        .collect()
}

fn glob_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

fn from_clause(level: Level) -> &'static str {
    match level {
        Level::Patient => "FROM patients p",
        Level::Study => "FROM studies st JOIN patients p ON st.patient_ref = p.id",
        Level::Series => {
            "FROM series se JOIN studies st ON se.study_ref = st.id JOIN patients p ON st.patient_ref = p.id"
        }
        Level::Image => {
            "FROM instances i JOIN series se ON i.series_ref = se.id JOIN studies st ON se.study_ref = st.id \
             JOIN patients p ON st.patient_ref = p.id"
        }
    }
}

fn where_clause(q: &Query, level: Level) -> Result<(String, Vec<Value>), QueryError> {
    let mut sql = String::from(" WHERE 1 = 1");
    if level == Level::Image {
        sql.push_str(" AND i.current = 1");
    }
    if level == Level::Patient {
        // a patient row kept without studies (its legal hold history outlived a removal) holds
        // no images: it is not an answer
        sql.push_str(" AND EXISTS (SELECT 1 FROM studies x WHERE x.patient_ref = p.id)");
    }
    let mut args = Vec::new();
    for (tag, m) in &q.keys {
        let Some(a) = attr(*tag) else { continue };
        let too_big = match m {
            Matcher::Wildcard(p) => p.chars().count() > MAX_PATTERN_CHARS,
            Matcher::List(l) => l.len() > MAX_KEY_VALUES,
            Matcher::Single(v) => v.split('\\').count() > MAX_KEY_VALUES,
            _ => false,
        };
        if too_big {
            return Err(QueryError::BadKey(format!(
                "({:04X},{:04X}) is too long or has too many values to match",
                tag >> 16,
                tag & 0xFFFF
            )));
        }
        if a.level > level {
            continue;
        }
        let col = a.match_expr.unwrap_or(a.expr);
        match (m, a.kind) {
            (Matcher::Universal, _) => {}
            (_, Kind::Count) if *tag == 0x0008_0061 => {
                let wanted: Vec<String> = match m {
                    Matcher::Single(s) | Matcher::Wildcard(s) => {
                        s.split('\\').map(|x| x.trim().to_string()).collect()
                    }
                    Matcher::List(l) => l.clone(),
                    _ => Vec::new(),
                };
                sql.push_str(" AND EXISTS (SELECT 1 FROM series x WHERE x.study_ref = st.id AND x.modality IN (");
                sql.push_str(&vec!["?"; wanted.len().max(1)].join(","));
                sql.push_str("))");
                if wanted.is_empty() {
                    args.push(Value::Text(String::new()));
                }
                args.extend(wanted.into_iter().map(Value::Text));
            }
            (_, Kind::Count) => {
                return Err(QueryError::BadKey(format!(
                    "({:04X},{:04X}) can only be returned, not matched",
                    tag >> 16,
                    tag & 0xFFFF
                )))
            }
            (Matcher::Single(s), Kind::Name) => {
                sql.push_str(&format!(" AND {col} = ?"));
                args.push(Value::Text(normalize_name(s)));
            }
            (Matcher::Wildcard(s), Kind::Name) => {
                // Both sides are upper-cased already, so a case-sensitive GLOB matches the same
                // names as a case-insensitive LIKE, and unlike LIKE it can use the index.
                let mut n = normalize_name(s);
                if s.trim_end().ends_with('^') && !n.ends_with('*') {
                    n.push('^');
                }
                sql.push_str(&format!(" AND {col} GLOB ?"));
                args.push(Value::Text(glob_escape(&n)));
            }
            (Matcher::Single(s), _) => {
                sql.push_str(&format!(" AND {col} = ?"));
                args.push(Value::Text(s.clone()));
            }
            (Matcher::Wildcard(s), _) => {
                sql.push_str(&format!(" AND {col} GLOB ?"));
                args.push(Value::Text(glob_escape(s)));
            }
            (Matcher::Range(from, to), _) => {
                if let Some(f) = from {
                    sql.push_str(&format!(" AND {col} >= ?"));
                    args.push(Value::Text(f.clone()));
                }
                if let Some(t) = to {
                    // "to" includes everything it is a prefix of (a whole day, a whole hour):
                    // '~' sorts after every character a date or time holds. A plain comparison
                    // keeps the index usable.
                    sql.push_str(&format!(" AND {col} <= ? AND {col} != ''"));
                    args.push(Value::Text(format!("{t}~")));
                }
            }
            (Matcher::List(l), _) => {
                sql.push_str(&format!(" AND {col} IN ("));
                sql.push_str(&vec!["?"; l.len().max(1)].join(","));
                sql.push(')');
                if l.is_empty() {
                    args.push(Value::Text(String::new()));
                }
                args.extend(l.iter().cloned().map(Value::Text));
            }
        }
    }
    Ok((sql, args))
}

/// The WHERE clause (from ` WHERE`) and its arguments that `keys` select at STUDY level, over
/// the aliases `st` (studies) and `p` (patients): the CLI's study listing matches exactly as
/// C-FIND and the panel do.
pub(crate) fn study_where(keys: &[(u32, Matcher)]) -> Result<(String, Vec<Value>), QueryError> {
    let q = Query {
        level: Level::Study,
        study_root: true,
        keys: keys.to_vec(),
        limit: 0,
    };
    where_clause(&q, Level::Study)
}

fn check_level(q: &Query) -> Result<(), QueryError> {
    if q.study_root && q.level == Level::Patient {
        return Err(QueryError::BadLevel(
            "PATIENT level does not exist in the Study Root model".into(),
        ));
    }
    Ok(())
}

/// Run a C-FIND: each match is handed to `on_row` as tag -> UTF-8 value for every requested key
/// cairn knows (unknown keys are left out: the caller answers them empty).
pub fn find(
    conn: &Connection,
    q: &Query,
    mut on_row: impl FnMut(BTreeMap<u32, String>) -> ControlFlow<()>,
) -> Result<Result<(FindEnd, usize), QueryError>, StoreError> {
    if let Err(e) = check_level(q) {
        return Ok(Err(e));
    }
    let (where_sql, args) = match where_clause(q, q.level) {
        Ok(w) => w,
        Err(e) => return Ok(Err(e)),
    };
    let returned: Vec<&Attr> = q
        .keys
        .iter()
        .filter_map(|(t, _)| attr(*t))
        .filter(|a| a.level <= q.level)
        .collect();
    let select = if returned.is_empty() {
        "1".to_string()
    } else {
        returned
            .iter()
            .map(|a| a.expr)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let group = match q.level {
        // patients have no unique key of their own beyond (id, issuer)
        Level::Patient => "",
        _ => "",
    };
    let sql = format!(
        "SELECT {select} {} {where_sql}{group} LIMIT {}",
        from_clause(q.level),
        q.limit.saturating_add(1)
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    let mut n = 0usize;
    while let Some(r) = rows.next()? {
        if n == q.limit {
            return Ok(Ok((FindEnd::LimitReached, n)));
        }
        let mut out = BTreeMap::new();
        for (k, a) in returned.iter().enumerate() {
            let v: Value = r.get(k)?;
            let text = match v {
                Value::Null => String::new(),
                Value::Integer(i) => i.to_string(),
                Value::Real(f) => f.to_string(),
                Value::Text(t) => t,
                Value::Blob(_) => String::new(),
            };
            out.insert(a.tag, text);
        }
        n += 1;
        if on_row(out).is_break() {
            return Ok(Ok((FindEnd::Stopped, n)));
        }
    }
    Ok(Ok((FindEnd::Complete, n)))
}

/// One stored instance to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRef {
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// Stored transfer syntax.
    pub transfer_syntax: String,
    /// SHA-256 (names the file).
    pub sha256: String,
}

/// Every current instance under the entities a retrieve identifier selects.
pub fn resolve(
    conn: &Connection,
    q: &Query,
) -> Result<Result<Vec<InstanceRef>, QueryError>, StoreError> {
    if let Err(e) = check_level(q) {
        return Ok(Err(e));
    }
    let (where_sql, args) = match where_clause(q, q.level) {
        Ok(w) => w,
        Err(e) => return Ok(Err(e)),
    };
    // Keys select at the asked level; every instance below is sent.
    let where_sql = if q.level == Level::Image {
        where_sql
    } else {
        format!("{where_sql} AND i.current = 1")
    };
    let sql = format!(
        "SELECT i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax, i.sha256 {} {where_sql} \
         ORDER BY st.id, se.id, i.id LIMIT {}",
        from_clause(Level::Image),
        q.limit.saturating_add(1)
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(InstanceRef {
            sop_instance_uid: r.get(0)?,
            sop_class_uid: r.get(1)?,
            transfer_syntax: r.get(2)?,
            sha256: r.get(3)?,
        })
    })?;
    Ok(Ok(rows.collect::<Result<_, _>>()?))
}

/// A read-only connection for queries (one per association).
pub fn query_connection(data: &DataDir) -> Result<Connection, StoreError> {
    open_ro(&data.db())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers() {
        assert_eq!(matcher_for(Kind::Text, ""), Matcher::Universal);
        assert_eq!(matcher_for(Kind::Text, "*"), Matcher::Universal);
        assert_eq!(
            matcher_for(Kind::Name, "DOE*"),
            Matcher::Wildcard("DOE*".into())
        );
        assert_eq!(
            matcher_for(Kind::Date, "20200101-"),
            Matcher::Range(Some("20200101".into()), None)
        );
        assert_eq!(
            matcher_for(Kind::Uid, "1.2\\1.3"),
            Matcher::List(vec!["1.2".into(), "1.3".into()])
        );
        assert_eq!(
            matcher_for(Kind::Uid, "1.2\0"),
            Matcher::Single("1.2".into())
        );
    }

    #[test]
    fn keys_longer_than_their_vr_are_refused() {
        let pn = 0x0010_0010;
        assert!(check_key(pn, "PN", &"*".repeat(65534)).is_err());
        assert!(check_key(pn, "PN", &"A".repeat(64)).is_ok());
        assert!(check_key(pn, "PN", &format!("{}={}", "A".repeat(64), "B".repeat(64))).is_ok());
        assert!(check_key(pn, "PN", "a=b=c=d").is_err());
        assert!(check_key(0x0010_0020, "LO", &"X".repeat(65)).is_err());
        assert!(check_key(0x0010_0020, "LO", &format!("{}  ", "X".repeat(64))).is_ok());
        assert!(check_key(0x0008_0060, "CS", &"M".repeat(17)).is_err());
        assert!(check_key(0x0008_0020, "DA", "20200101-20201231").is_ok());
        assert!(check_key(0x0008_0020, "DA", "202001011-").is_err());
        let uids = vec!["1.2.3"; MAX_KEY_VALUES + 1].join("\\");
        assert!(check_key(0x0020_000D, "UI", &uids).is_err());
        assert!(check_key(0x0020_000D, "UI", &uids[6..]).is_ok());
        assert!(check_key(0x0009_0010, "UN", &"x".repeat(100_000)).is_ok());
        let e = check_key(pn, "PN", &"*".repeat(100))
            .unwrap_err()
            .to_string();
        assert!(e.contains("(0010,0010)") && e.contains("PN"), "{e}");
    }

    #[test]
    fn over_long_patterns_and_lists_are_refused_before_sqlite() {
        let q = |m: Matcher, tag: u32| Query {
            level: Level::Study,
            study_root: true,
            keys: vec![(tag, m)],
            limit: 10,
        };
        let long = Matcher::Wildcard("*".repeat(65534));
        assert!(matches!(
            where_clause(&q(long, 0x0010_0010), Level::Study),
            Err(QueryError::BadKey(_))
        ));
        let many = Matcher::List(vec!["1".into(); MAX_KEY_VALUES + 1]);
        assert!(where_clause(&q(many, 0x0020_000D), Level::Study).is_err());
        let fine = Matcher::Wildcard("DOE*".into());
        assert!(where_clause(&q(fine, 0x0010_0010), Level::Study).is_ok());
    }

    #[test]
    fn escapes() {
        assert_eq!(glob_escape("A[1]*"), "A[[]1]*");
    }
}
