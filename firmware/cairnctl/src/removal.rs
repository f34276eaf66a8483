//! `cairnctl destruction ...` and `cairnctl reject ...`: the patients due for destruction, their
//! approval, destruction certificates and their CSV export, and the rejection of a study or a
//! series. Reads go straight to the index, read-only; changes go to the daemon's lifecycle
//! thread through its mailbox, which re-checks everything in the transaction that removes.

use crate::config;
use crate::outcome::{ask, failed, print_json, refused};
use crate::user::who;
use cairn_lifecycle::certificate::{
    certificate, destruction_record, destruction_records, records_csv,
};
use cairn_lifecycle::destroy::{due, DueRow};
use cairn_lifecycle::requests::Request;
use cairn_store::DataDir;
use clap::{ArgGroup, Subcommand};
use std::path::Path;

/// `cairnctl destruction ...`.
#[derive(Subcommand)]
pub enum DestructionCommand {
    /// The patients due for destruction: past their last day kept and not held.
    List {
        /// Machine-readable output (a list of patient_id, issuer, expires_on, reason,
        /// studies, instances, bytes).
        #[arg(long)]
        json: bool,
    },
    /// Approve the destruction of one patient due, or of every patient due (audited; the
    /// daemon checks again that each is due and not held, and destroys nothing otherwise).
    #[command(group(ArgGroup::new("whom").required(true).args(["all", "patient"])))]
    Approve {
        /// Every patient due now.
        #[arg(long)]
        all: bool,
        /// One patient, by Patient ID.
        #[arg(long)]
        patient: Option<String>,
        /// Issuer of Patient ID, when the same ID is used by several issuers.
        #[arg(long, requires = "patient")]
        issuer: Option<String>,
        /// Why (kept on the destruction record and in the audit trail).
        #[arg(long)]
        reason: String,
        /// Give up waiting for cairnd after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Print the certificate of destruction of one record, as plain text.
    Certificate {
        /// The destruction record's number (printed when the destruction was approved).
        #[arg(long)]
        id: i64,
    },
    /// Export every destruction record.
    Export {
        /// As CSV on standard output (the only format).
        #[arg(long, required = true)]
        csv: bool,
    },
}

/// `cairnctl reject ...`: what to reject.
#[derive(clap::Args)]
#[command(group(ArgGroup::new("what").required(true).args(["study", "series"])))]
pub struct RejectArgs {
    /// A whole study, by Study Instance UID.
    #[arg(long)]
    study: Option<String>,
    /// One series, by Series Instance UID.
    #[arg(long)]
    series: Option<String>,
    /// Why, e.g. wrong patient or test images (kept on the tombstone and in the audit trail).
    #[arg(long)]
    reason: String,
    /// Give up waiting for cairnd after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

/// `cairnctl destruction ...`.
pub fn destruction(data: &DataDir, explicit: Option<&Path>, cmd: DestructionCommand) -> i32 {
    match cmd {
        DestructionCommand::List { json } => list(data, explicit, json),
        DestructionCommand::Approve {
            all,
            patient,
            issuer,
            reason,
            timeout,
        } => {
            if let Some(p) = &patient {
                if p.trim().is_empty() {
                    return refused("--patient is empty");
                }
            }
            if reason.trim().is_empty() {
                return refused(
                    "--reason is empty: say why (it is kept on the destruction record)",
                );
            }
            let req = Request::ApproveDestruction {
                patient_id: patient,
                issuer,
                all,
                reason,
                by: who(),
            };
            ask(data, &req, timeout)
        }
        DestructionCommand::Certificate { id } => {
            let box_id = match config::load(data.root(), explicit) {
                Ok(Some(c)) => c.archive.box_id,
                Ok(None) => cairn_config::ArchiveConfig::default().box_id,
                Err(e) => return refused(&e),
            };
            let conn = match cairn_lifecycle::open_read(data) {
                Ok(conn) => conn,
                Err(e) => return failed(&e),
            };
            match destruction_record(&conn, id) {
                Ok(rec) => {
                    print!("{}", certificate(&rec, &box_id));
                    0
                }
                Err(e) => failed(&e),
            }
        }
        DestructionCommand::Export { csv: _ } => {
            let records = cairn_lifecycle::open_read(data).and_then(|c| destruction_records(&c));
            match records {
                Ok(records) => {
                    print!("{}", records_csv(&records));
                    0
                }
                Err(e) => failed(&e),
            }
        }
    }
}

/// `cairnctl reject ...`.
pub fn reject(data: &DataDir, args: RejectArgs) -> i32 {
    let RejectArgs {
        study,
        series,
        reason,
        timeout,
    } = args;
    if study
        .iter()
        .chain(series.iter())
        .any(|u| u.trim().is_empty())
    {
        return refused("the UID is empty");
    }
    if reason.trim().is_empty() {
        return refused("--reason is empty: say why (it is kept on the tombstone)");
    }
    let req = Request::Reject {
        study_uid: study,
        series_uid: series,
        reason,
        by: who(),
    };
    ask(data, &req, timeout)
}

/// The patients due now, computed with the configured rules where an expiry waits to be
/// recomputed.
fn list(data: &DataDir, explicit: Option<&Path>, json: bool) -> i32 {
    let rules = match config::rule_set(data.root(), explicit) {
        Ok(rules) => rules,
        Err(e) => return refused(&e),
    };
    let today =
        cairn_lifecycle::clock::today(data.root()).unwrap_or_else(|_| cairn_lifecycle::today());
    let rows = match cairn_lifecycle::open_read(data).and_then(|c| due(&c, today, Some(&rules))) {
        Ok(rows) => rows,
        Err(e) => return failed(&e),
    };
    if json {
        return print_json(&rows);
    }
    print_due(&rows);
    0
}

fn print_due(rows: &[DueRow]) {
    if rows.is_empty() {
        println!("no patient is due for destruction");
        return;
    }
    println!(
        "{:<20} {:<12} {:<10} {:>7} {:>9} {:>10}  why",
        "patient", "issuer", "kept until", "studies", "instances", "size"
    );
    for r in rows {
        println!(
            "{:<20} {:<12} {:<10} {:>7} {:>9} {:>10}  {}",
            r.patient_id,
            r.issuer,
            r.expires_on,
            r.studies,
            r.instances,
            cairn_core::human_bytes(r.bytes),
            r.reason
        );
    }
    println!(
        "{} patient(s) due: approve with `cairnctl destruction approve --patient ID --reason TEXT` or `--all`",
        rows.len()
    );
}
