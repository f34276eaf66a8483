//! `cairnctl destruction ...` and `cairnctl reject ...`: the patients due for destruction, their
//! approval, destruction certificates and their CSV export, and the rejection of a study or a
//! series. Reads go straight to the index, read-only; changes go to the daemon's lifecycle
//! thread through its mailbox, which re-checks everything in the transaction that removes.

use crate::user::who;
use cairn_lifecycle::certificate::{
    certificate, destruction_record, destruction_records, records_csv,
};
use cairn_lifecycle::destroy::{due, DueRow};
use cairn_lifecycle::requests::{self, Request};
use cairn_lifecycle::LifecycleError;
use cairn_store::DataDir;
use clap::{ArgGroup, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Exit status for bad input or a refusal.
const REFUSED: i32 = 2;
/// Exit status for a failure of the box (or no answer from it).
const FAILED: i32 = 1;

/// `cairnctl destruction ...`.
pub fn destruction(data: &DataDir, config: Option<&Path>, cmd: DestructionCommand) -> i32 {
    match cmd {
        DestructionCommand::List { json } => list(data, config, json),
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
            let box_id = match load_config(data.root(), config) {
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
fn list(data: &DataDir, config: Option<&Path>, json: bool) -> i32 {
    let rules = match load_config(data.root(), config) {
        Ok(Some(c)) => c.lifecycle.rule_set(&config_dir(data.root(), config)),
        Ok(None) => cairn_config::LifecycleConfig::default().rule_set(Path::new(".")),
        Err(e) => return refused(&e),
    };
    let rules = match rules {
        Ok(rules) => rules,
        Err(e) => return refused(&e.to_string()),
    };
    let today =
        cairn_lifecycle::clock::today(data.root()).unwrap_or_else(|_| cairn_lifecycle::today());
    let rows = match cairn_lifecycle::open_read(data).and_then(|c| due(&c, today, Some(&rules))) {
        Ok(rows) => rows,
        Err(e) => return failed(&e),
    };
    if !json {
        print_due(&rows);
        return 0;
    }
    match serde_json::to_string_pretty(&rows) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("cairnctl: {e}");
            FAILED
        }
    }
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

/// Say what went wrong; 2 when the caller asked for something impossible, 1 otherwise.
fn failed(e: &LifecycleError) -> i32 {
    eprintln!("cairnctl: {e}");
    if e.is_bad_input() {
        REFUSED
    } else {
        FAILED
    }
}

/// Hand a change to the daemon's lifecycle thread and say what it answered.
fn ask(data: &DataDir, req: &Request, timeout: u64) -> i32 {
    match requests::send(data.root(), req, Duration::from_secs(timeout)) {
        Ok(a) if a.ok => {
            println!("{}", a.message);
            0
        }
        Ok(a) => refused(&a.message),
        Err(e) => {
            eprintln!("cairnctl: nothing was changed: {e}");
            FAILED
        }
    }
}

/// Say why the request was refused; the exit status for it.
fn refused(message: &str) -> i32 {
    eprintln!("cairnctl: {message}");
    REFUSED
}

/// The configuration file in use: `--config`, else `DIR/cairn.toml`, else the appliance's
/// `/etc/cairn/cairn.toml`; `None`: the built-in defaults.
fn config_file(data: &Path, explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(path) => Some(path.to_path_buf()),
        None => [
            data.join("cairn.toml"),
            PathBuf::from("/etc/cairn/cairn.toml"),
        ]
        .into_iter()
        .find(|p| p.is_file()),
    }
}

/// The directory relative rule-set paths are read from.
fn config_dir(data: &Path, explicit: Option<&Path>) -> PathBuf {
    config_file(data, explicit)
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The configuration in use; `None`: no file, the built-in defaults.
fn load_config(
    data: &Path,
    explicit: Option<&Path>,
) -> Result<Option<cairn_config::Config>, String> {
    config_file(data, explicit)
        .map(|file| cairn_config::Config::load(&file).map_err(|e| e.to_string()))
        .transpose()
}
