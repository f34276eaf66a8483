//! The lifecycle clock, and when it may be trusted.
//!
//! Every lifecycle decision that depends on the date (a study old enough for the archive tier,
//! a patient past its expiry) is taken on the lifecycle clock: the system's time plus a demo
//! offset. The offset exists only on a demo box: `cairnctl demo clock --advance 25y` writes it
//! in `DIR/demo-clock.json` so that a newcomer can watch studies become archive, expire and be
//! destroyed in minutes; `cairnd run` refuses a data directory that has one. The offset only
//! moves forward.
//!
//! The clock is trusted ([`check`]) only when it is not earlier than the newest audit row
//! (a clock set back would make old studies young again and new rows older than old ones) and,
//! on the appliance, when the kernel says it is synchronised. The audit rows are stamped with
//! the real time by the store's writer: a demo clock ahead of them is fine, behind is refused.

use cairn_retention::Period;
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The demo offset's file, relative to the data directory.
pub const OFFSET_FILE: &str = "demo-clock.json";

/// The demo offset as stored in [`OFFSET_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoOffset {
    /// Whole days added to the system's date (never negative).
    pub offset_days: i64,
    /// Who set it last (`user:<login name>`).
    pub set_by: String,
    /// When, in real time (RFC 3339, UTC).
    pub set_at: String,
}

/// Why the demo clock cannot be read or moved.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    /// The offset file exists but cannot be read or understood.
    #[error("{path}: {reason} (remove it to stop the demo clock)")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The advance asked for is not a forward period.
    #[error("{0:?} is not an advance: give a whole number and y, m or d, like 25y, 6m or 30d (the demo clock only moves forward)")]
    BadAdvance(String),
    /// The clock would leave the calendar (after the year 9999).
    #[error("the demo clock cannot go past the year 9999")]
    OutOfRange,
    /// Writing the offset file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// The offset file of the data directory `data_root`.
pub fn offset_path(data_root: &Path) -> PathBuf {
    data_root.join(OFFSET_FILE)
}

/// The demo offset of `data_root`, `None` when it has none (a real box).
pub fn read_offset(data_root: &Path) -> Result<Option<DemoOffset>, ClockError> {
    let path = offset_path(data_root);
    let unreadable = |reason: String| ClockError::Unreadable {
        path: path.clone(),
        reason,
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e.to_string())),
    };
    let offset: DemoOffset =
        serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
    if offset.offset_days < 0 {
        return Err(unreadable("a negative offset".into()));
    }
    Ok(Some(offset))
}

/// The lifecycle clock: the system's time plus the demo offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    offset_days: i64,
}

impl Clock {
    /// The system's clock, without an offset.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// The clock of the data directory `data_root` (with its demo offset, if any).
    pub fn read(data_root: &Path) -> Result<Clock, ClockError> {
        Ok(Clock {
            offset_days: read_offset(data_root)?.map_or(0, |o| o.offset_days),
        })
    }

    /// The demo offset in days (0 on a real box).
    pub fn offset_days(self) -> i64 {
        self.offset_days
    }

    /// The lifecycle time now.
    pub fn now(self) -> Result<Timestamp, ClockError> {
        let shift = SignedDuration::from_hours(self.offset_days.saturating_mul(24));
        Timestamp::now()
            .checked_add(shift)
            .map_err(|_| ClockError::OutOfRange)
    }

    /// The lifecycle date today (UTC).
    pub fn today(self) -> Result<Date, ClockError> {
        Ok(utc_date(self.now()?))
    }
}

/// The UTC date of `at`.
fn utc_date(at: Timestamp) -> Date {
    jiff::tz::Offset::UTC.to_datetime(at).date()
}

/// The lifecycle date today in the data directory `data_root` (the system's UTC date plus its
/// demo offset).
pub fn today(data_root: &Path) -> Result<Date, ClockError> {
    Clock::read(data_root)?.today()
}

/// Move the demo clock of `data_root` forward by `advance` (`25y`, `6m`, `30d`: a calendar
/// period from the current lifecycle date), recorded as set by `by`. The file is written
/// durably before this returns. Returns the new offset.
pub fn advance(data_root: &Path, advance: &str, by: &str) -> Result<DemoOffset, ClockError> {
    let period: Period = advance
        .parse()
        .map_err(|_| ClockError::BadAdvance(advance.to_owned()))?;
    let clock = Clock::read(data_root)?;
    let from = clock.today()?;
    let to = period.after(from).ok_or(ClockError::OutOfRange)?;
    let days = from
        .until(to)
        .map_err(|_| ClockError::OutOfRange)?
        .get_days();
    let offset = DemoOffset {
        offset_days: clock.offset_days + i64::from(days),
        set_by: by.to_owned(),
        set_at: cairn_store::now_rfc3339(),
    };
    // a whole offset is always a valid date: the clock then reads in range
    Clock {
        offset_days: offset.offset_days,
    }
    .today()?;
    let path = offset_path(data_root);
    let mut text = serde_json::to_vec_pretty(&offset).map_err(|e| ClockError::Write {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    cairn_files::atomic_write(&path, &text, cairn_files::Durability::Synced)
        .map_err(|source| ClockError::Write { path, source })?;
    Ok(offset)
}

/// Whether the lifecycle clock may be trusted now, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClockCheck {
    /// Tier and expiry passes may run.
    pub ok: bool,
    /// The lifecycle date (`YYYY-MM-DD`), when it can be read.
    pub today: Option<String>,
    /// The demo offset in days, when one is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset_days: Option<i64>,
    /// Why the clock is not trusted, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl ClockCheck {
    /// The lifecycle date, when the clock is trusted.
    pub fn trusted_today(&self) -> Option<Date> {
        if !self.ok {
            return None;
        }
        self.today.as_deref().and_then(|d| d.parse().ok())
    }
}

/// The `at` of the newest audit row, `None` when there is none.
pub fn newest_audit_at(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT at FROM audit ORDER BY seq DESC LIMIT 1", [], |r| {
        r.get(0)
    })
    .optional()
}

/// `None` when `now` is not earlier than the newest audit row, else why the clock is behind.
pub fn behind_audit(conn: &Connection, now: Timestamp) -> rusqlite::Result<Option<String>> {
    let Some(at) = newest_audit_at(conn)? else {
        return Ok(None);
    };
    Ok(match at.parse::<Timestamp>() {
        Ok(newest) if now >= newest => None,
        Ok(_) => Some(format!(
            "the clock ({}) is earlier than the newest audit row ({at}): it was set back; \
             tier and expiry passes wait until it is right again",
            now.strftime("%Y-%m-%dT%H:%M:%SZ")
        )),
        Err(_) => Some(format!(
            "the newest audit row's time {at:?} cannot be read: tier and expiry passes wait"
        )),
    })
}

/// Whether the lifecycle clock at `now` may be trusted: not earlier than the newest audit row.
pub fn clock_ok(conn: &Connection, now: Timestamp) -> rusqlite::Result<bool> {
    Ok(behind_audit(conn, now)?.is_none())
}

/// Check the lifecycle clock of `data_root` on `conn` (the index). With `require_sync` (the
/// appliance) the kernel must also say its clock is synchronised; the demo and tests do not
/// ask for it. The audit row is read before the clock, so a row committed meanwhile is never
/// mistaken for a clock set back.
pub fn check(
    conn: &Connection,
    data_root: &Path,
    require_sync: bool,
) -> rusqlite::Result<ClockCheck> {
    let newest = newest_audit_at(conn)?;
    let clock = match Clock::read(data_root) {
        Ok(c) => c,
        Err(e) => return Ok(not_ok(None, None, e.to_string())),
    };
    let offset_days = (clock.offset_days > 0).then_some(clock.offset_days);
    let now = match clock.now() {
        Ok(n) => n,
        Err(e) => return Ok(not_ok(None, offset_days, e.to_string())),
    };
    let today = Some(utc_date(now).to_string());
    let behind = match newest {
        Some(_) => behind_audit(conn, now)?,
        None => None,
    };
    if let Some(problem) = behind {
        return Ok(not_ok(today, offset_days, problem));
    }
    if require_sync {
        let problem = match crate::timesync::kernel_clock_synchronised() {
            Ok(true) => None,
            Ok(false) => Some(
                "the system clock is not synchronised (no time server reached yet): tier and \
                 expiry passes wait"
                    .to_owned(),
            ),
            Err(e) => Some(format!(
                "cannot ask the kernel whether the clock is synchronised ({e}): tier and \
                 expiry passes wait"
            )),
        };
        if let Some(problem) = problem {
            return Ok(not_ok(today, offset_days, problem));
        }
    }
    Ok(ClockCheck {
        ok: true,
        today,
        offset_days,
        problem: None,
    })
}

fn not_ok(today: Option<String>, offset_days: Option<i64>, problem: String) -> ClockCheck {
    ClockCheck {
        ok: false,
        today,
        offset_days,
        problem: Some(problem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit_db(at: &str) -> Connection {
        let c = Connection::open_in_memory().expect("in memory");
        c.execute_batch("CREATE TABLE audit (seq INTEGER PRIMARY KEY, at TEXT NOT NULL)")
            .expect("table");
        c.execute(
            "INSERT INTO audit (at) VALUES ('2020-01-01T00:00:00.000000Z')",
            [],
        )
        .expect("row");
        c.execute("INSERT INTO audit (at) VALUES (?1)", [at])
            .expect("row");
        c
    }

    #[test]
    fn advance_moves_forward_only_and_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_offset(dir.path()).expect("none"), None);
        let real = Clock::system().today().expect("today");
        let o = advance(dir.path(), "30d", "user:demo").expect("advance");
        assert_eq!(o.offset_days, 30);
        assert_eq!(o.set_by, "user:demo");
        let o = advance(dir.path(), "1y", "user:demo").expect("advance");
        let expected = Period::years(1)
            .and_then(|p| p.after(real.checked_add(jiff::Span::new().days(30)).expect("d")))
            .expect("date");
        assert_eq!(today(dir.path()).expect("today"), expected);
        assert_eq!(read_offset(dir.path()).expect("read"), Some(o));
        for bad in ["-5y", "0d", "25", "y", "25w", "", "1.5y", "99999y"] {
            let e = advance(dir.path(), bad, "user:demo").expect_err(bad);
            assert!(matches!(e, ClockError::BadAdvance(_)), "{bad}: {e}");
        }
        let e = advance(dir.path(), "9000y", "user:demo").expect_err("past 9999");
        assert!(matches!(e, ClockError::OutOfRange), "{e}");
    }

    #[test]
    fn a_garbled_or_negative_offset_file_is_not_a_clock() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(offset_path(dir.path()), "offset = 3").expect("write");
        let e = Clock::read(dir.path()).expect_err("garbled");
        assert!(e.to_string().contains("remove it"), "{e}");
        std::fs::write(
            offset_path(dir.path()),
            r#"{"offset_days": -3, "set_by": "x", "set_at": "y"}"#,
        )
        .expect("write");
        assert!(Clock::read(dir.path()).is_err());
        let c = audit_db("2020-01-02T00:00:00Z");
        let check = check(&c, dir.path(), false).expect("check");
        assert!(!check.ok);
        assert!(check.problem.expect("why").contains("negative"));
    }

    #[test]
    fn a_clock_behind_the_newest_audit_row_is_not_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = audit_db("2999-01-01T00:00:00.000000Z");
        assert!(!clock_ok(&c, Timestamp::now()).expect("check"));
        let check = check(&c, dir.path(), false).expect("check");
        assert!(!check.ok);
        assert_eq!(check.trusted_today(), None);
        assert!(check
            .problem
            .expect("why")
            .contains("earlier than the newest audit row"));
        let c = audit_db(&cairn_store::now_rfc3339());
        let check = super::check(&c, dir.path(), false).expect("check");
        assert!(check.ok, "{check:?}");
        assert_eq!(
            check.trusted_today(),
            Some(Clock::system().today().expect("d"))
        );
        assert_eq!(check.offset_days, None);
        // a demo clock ahead of the audit trail is fine
        advance(dir.path(), "25y", "user:demo").expect("advance");
        let check = super::check(&c, dir.path(), false).expect("check");
        assert!(check.ok);
        assert!(check.offset_days.expect("offset") > 9000);
        assert!(clock_ok(&audit_db("2020-01-01T00:00:00Z"), Timestamp::now()).expect("ok"));
    }
}
