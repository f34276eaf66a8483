//! The audit view: a filter in the panel's words, the trail's rows under it (from
//! `cairn-audit`'s read-only queries) and their CSV download.

use crate::WebError;
use cairn_audit::query::{self, Selection};
use cairn_audit::AuditError;
use cairn_store::{find, DataDir};
use serde::{Deserialize, Serialize};

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

/// A failed audit query, as the pages have always reported the database's failures.
fn audit_error(e: AuditError) -> WebError {
    match e {
        AuditError::Db(e) => e.into(),
        e => WebError::Internal(e.to_string()),
    }
}

/// The trail's rows a filter selects: its days turned into times (in the filter's time zone).
fn selection(f: &AuditFilter) -> Result<Selection, WebError> {
    let filled = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
    let tz = f.days_in.as_deref().map(crate::words::time_zone);
    let not_a_day = |d: &str| WebError::BadRequest(format!("'{d}' is not a day like 2024-01-31"));
    let at_or_after = match day(&f.from)? {
        Some(d) => Some(match &tz {
            Some(tz) => crate::words::utc_start_of_day(&d, tz, 0).ok_or_else(|| not_a_day(&d))?,
            None => d,
        }),
        None => None,
    };
    let before = match day(&f.to)? {
        Some(d) => Some(match &tz {
            Some(tz) => crate::words::utc_start_of_day(&d, tz, 1).ok_or_else(|| not_a_day(&d))?,
            None => format!("{d}T99"),
        }),
        None => None,
    };
    Ok(Selection {
        actor_contains: filled(&f.actor),
        action: filled(&f.action),
        at_or_after,
        before,
    })
}

/// How many audit rows match the filter (paging ignored).
pub fn audit_count(data: &DataDir, f: &AuditFilter) -> Result<i64, WebError> {
    let conn = find::query_connection(data)?;
    query::count(&conn, &selection(f)?).map_err(audit_error)
}

/// The rows a page holds under a filter (`limit`, default 200; CSV: all).
pub fn audit_page_size(f: &AuditFilter) -> usize {
    match (f.format.as_str(), f.limit) {
        (_, Some(l)) => l.clamp(1, 1_000_000),
        ("csv", None) => 1_000_000,
        _ => 200,
    }
}

impl From<query::Row> for AuditRow {
    fn from(r: query::Row) -> Self {
        AuditRow {
            seq: r.seq,
            at: r.at,
            actor: r.event.actor,
            action: r.event.action,
            object: r.event.object,
            detail: r.event.detail,
        }
    }
}

/// Audit rows matching the filter, newest first, the filter's page of them.
pub fn audit_rows(data: &DataDir, f: &AuditFilter) -> Result<Vec<AuditRow>, WebError> {
    let conn = find::query_connection(data)?;
    let selected = selection(f)?;
    let limit = audit_page_size(f);
    let page = f.page.unwrap_or(1);
    if page == 0 || page > 1_000_000 {
        return Err(WebError::BadRequest("page: 1 or more".into()));
    }
    let offset = (page - 1).saturating_mul(limit);
    let rows = query::rows(&conn, &selected, limit, offset).map_err(audit_error)?;
    Ok(rows.into_iter().map(AuditRow::from).collect())
}

/// The distinct audit actions, for the filter's choices.
pub fn audit_actions(data: &DataDir) -> Result<Vec<String>, WebError> {
    let conn = find::query_connection(data)?;
    query::actions(&conn).map_err(audit_error)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
