//! `cairnctl lifecycle status` (the lifecycle at a glance, read-only from the index) and
//! `cairnctl demo clock` (the demo box's time travel: its lifecycle clock moved forward, so
//! that studies become archive, expire and are destroyed in minutes). The offset is a file in
//! the data directory that only a demo box may have: `cairnd run` refuses to start with one,
//! and the daemon puts each change in the audit trail (`demo-clock`).

use crate::user::who;
use anyhow::{bail, Result};
use cairn_lifecycle::clock::{self, Clock};
use cairn_lifecycle::status::{lifecycle_status, LifecycleStatus, MOVING_WITHIN_DAYS};
use cairn_store::DataDir;
use clap::{ArgGroup, Subcommand};
use std::path::Path;

/// `cairnctl lifecycle ...`.
#[derive(Subcommand)]
pub enum LifecycleCommand {
    /// Studies per tier, what moves to the archive tier soon, who is due for destruction or
    /// review, holds, volumes to recycle, and whether the clock is trusted.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `cairnctl demo clock ...`.
#[derive(Subcommand)]
pub enum DemoClockCommand {
    /// The demo box's lifecycle clock: move it forward (25y, 6m, 30d) or show it.
    #[command(group(ArgGroup::new("what").required(true).args(["advance", "show"])))]
    Clock {
        /// Move the clock forward by this period: a whole number and y, m or d.
        #[arg(long, allow_hyphen_values = true)]
        advance: Option<String>,
        /// Show the lifecycle date and the offset.
        #[arg(long)]
        show: bool,
    },
}

/// `cairnctl lifecycle status [--json]`.
pub fn lifecycle(data: &DataDir, explicit: Option<&Path>, cmd: LifecycleCommand) -> Result<i32> {
    let LifecycleCommand::Status { json } = cmd;
    let config = crate::config::load(data.root(), explicit).map_err(anyhow::Error::msg)?;
    let lifecycle = config
        .as_ref()
        .map(|c| c.lifecycle.clone())
        .unwrap_or_default();
    let archive_after = lifecycle
        .archive_after()
        .map_err(|e| anyhow::anyhow!("[lifecycle] archive_after: {e}"))?;
    // as the daemon decides: on the appliance (a board file in the config) the clock is
    // trusted only once synchronised, unless [lifecycle] require_clock_sync says otherwise
    let require_sync = config.is_some_and(|c| c.clock_sync_required());
    let status = cairn_lifecycle::open_read(data)
        .and_then(|conn| lifecycle_status(&conn, data.root(), archive_after, require_sync));
    let status = match status {
        Ok(s) => s,
        Err(e) if e.is_bad_input() => bail!("{e}"),
        Err(e) => {
            eprintln!("cairnctl: {e}");
            return Ok(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", words(&status));
    }
    Ok(0)
}

/// The status in plain words.
fn words(s: &LifecycleStatus) -> String {
    let mut lines = Vec::new();
    let today = s.clock.today.as_deref().unwrap_or("an unreadable date");
    lines.push(match s.clock.offset_days {
        Some(days) => {
            format!("Lifecycle on {today} (demo clock, {days} days ahead of the real date)")
        }
        None => format!("Lifecycle on {today}"),
    });
    lines.push(match (&s.clock_ok, &s.clock.problem) {
        (true, _) => "  clock: trusted".into(),
        (false, problem) => format!(
            "  clock: NOT TRUSTED: {}",
            problem.as_deref().unwrap_or("unknown reason")
        ),
    });
    lines.push(format!(
        "  studies: {} in storage, {} in the archive tier",
        s.tiers.storage, s.tiers.archive
    ));
    section(
        &mut lines,
        &format!("moving to the archive tier within {MOVING_WITHIN_DAYS} days"),
        ("study", "studies"),
        s.moving_to_archive
            .iter()
            .map(|m| format!("{}  study {} (patient {})", m.on, m.study_uid, m.patient_id)),
    );
    section(
        &mut lines,
        "due for destruction (past their expiry, not held)",
        ("patient", "patients"),
        s.due_for_destruction.iter().map(|d| {
            let who = patient(&d.patient_id, &d.issuer);
            format!("{who} expired on {}", d.expires_on)
        }),
    );
    section(
        &mut lines,
        "to review (expiry unknown)",
        ("patient", "patients"),
        s.review
            .iter()
            .map(|r| format!("{}: {}", patient(&r.patient_id, &r.issuer), r.reason)),
    );
    lines.push(format!(
        "  legal holds in place: {}",
        count(s.holds as usize, "hold", "holds")
    ));
    lines.push(if s.recyclable_volumes.is_empty() {
        "  volumes to recycle: none".into()
    } else {
        format!(
            "  volumes to recycle (every image on them removed): {}; load one and run \
             cairnctl archive recycle --volume NAME",
            s.recyclable_volumes.join(", ")
        )
    });
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// How many items of a list the words show (`--json` lists them all).
const SHOWN: usize = 20;

/// A heading with the count of `items` (named `one`/`many`), then the first [`SHOWN`] of them,
/// then how many more.
fn section(
    lines: &mut Vec<String>,
    heading: &str,
    (one, many): (&str, &str),
    items: impl ExactSizeIterator<Item = String>,
) {
    let n = items.len();
    lines.push(format!("  {heading}: {}", count(n, one, many)));
    lines.extend(items.take(SHOWN).map(|item| format!("    {item}")));
    if n > SHOWN {
        lines.push(format!(
            "    ... and {} more (--json lists them all)",
            n - SHOWN
        ));
    }
}

/// "1 study", "3 studies", "none".
fn count(n: usize, one: &str, many: &str) -> String {
    match n {
        0 => "none".into(),
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// "patient ID", with " (issuer X)" when there is one.
fn patient(id: &str, issuer: &str) -> String {
    if issuer.is_empty() {
        format!("patient {id}")
    } else {
        format!("patient {id} (issuer {issuer})")
    }
}

/// `cairnctl demo clock --advance P | --show`.
pub fn demo_clock(data: &Path, cmd: DemoClockCommand) -> Result<i32> {
    let DemoClockCommand::Clock { advance, show } = cmd;
    if !data.join("hw").is_dir() {
        bail!(
            "{} is not a demo box (it has no hw/ folder of emulated hardware): the demo clock \
             is only for boxes started with cairnd demo",
            data.display()
        );
    }
    if let Some(period) = advance {
        let offset = clock::advance(data, &period, &who())?;
        let today = Clock::read(data)?.today()?;
        println!(
            "the demo clock now reads {today} ({} days ahead of the real date, set by {}); \
             cairnd applies it within a second: watch cairnctl --data {} lifecycle status",
            offset.offset_days,
            offset.set_by,
            data.display()
        );
        return Ok(0);
    }
    debug_assert!(show);
    let today = Clock::read(data)?.today()?;
    match clock::read_offset(data)? {
        Some(o) => println!(
            "the demo clock reads {today}: {} days ahead of the real date (set by {} at {})",
            o.offset_days, o.set_by, o.set_at
        ),
        None => println!("the clock reads {today} (the real date: no demo offset)"),
    }
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cairn_lifecycle::clock::ClockCheck;
    use cairn_lifecycle::status::{DuePatient, TierCounts};

    #[test]
    fn the_status_reads_in_plain_words() {
        let s = LifecycleStatus {
            tiers: TierCounts {
                storage: 3,
                archive: 1,
            },
            moving_to_archive: vec![],
            due_for_destruction: vec![DuePatient {
                patient_id: "P1".into(),
                issuer: "".into(),
                expires_on: "2020-01-01".into(),
            }],
            review: vec![],
            holds: 2,
            recyclable_volumes: vec!["TAPE01".into()],
            clock_ok: false,
            clock: ClockCheck {
                ok: false,
                today: Some("2051-12-02".into()),
                offset_days: Some(9131),
                problem: Some("the clock is behind".into()),
            },
        };
        let w = words(&s);
        assert!(w.starts_with("Lifecycle on 2051-12-02 (demo clock, 9131 days ahead"));
        assert!(w.contains("clock: NOT TRUSTED: the clock is behind"));
        assert!(w.contains("3 in storage, 1 in the archive tier"));
        assert!(w.contains("within 90 days: none"));
        assert!(w.contains("not held): 1 patient\n    patient P1 expired on 2020-01-01"));
        assert!(w.contains("legal holds in place: 2 holds"));
        assert!(w.contains("TAPE01; load one"));
    }

    #[test]
    fn only_a_demo_box_gets_a_demo_clock() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = |advance: &str| DemoClockCommand::Clock {
            advance: Some(advance.into()),
            show: false,
        };
        let e = demo_clock(dir.path(), cmd("25y")).unwrap_err();
        assert!(e.to_string().contains("not a demo box"), "{e}");
        assert!(!dir.path().join(clock::OFFSET_FILE).exists());
        std::fs::create_dir(dir.path().join("hw")).unwrap();
        let e = demo_clock(dir.path(), cmd("-3y")).unwrap_err();
        assert!(e.to_string().contains("only moves forward"), "{e}");
        assert!(!dir.path().join(clock::OFFSET_FILE).exists());
        assert_eq!(demo_clock(dir.path(), cmd("6m")).unwrap(), 0);
        assert!(clock::read_offset(dir.path()).unwrap().unwrap().offset_days >= 181);
    }
}
