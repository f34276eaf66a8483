//! `cairnctl`: the on-box admin CLI. Each subcommand is a thin call into a library crate;
//! output is meant for a person at a terminal, exit codes for scripts.

use anyhow::{bail, Result};
use cairn_store::{DataDir, DateRange, FsckOptions, StudyFilter};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod archive;
mod config;
mod hw;
mod lifecycle;
mod lifecycle_status;
mod outcome;
mod removal;
mod user;

#[derive(Parser)]
#[command(name = "cairnctl", version, about = "cairn admin tool")]
struct Cli {
    /// The box's data directory (holds cairn.db and objects/).
    #[arg(long, global = true, default_value = "/var/lib/cairn")]
    data: PathBuf,
    /// The configuration file, for the retention rules (default: DIR/cairn.toml, else
    /// /etc/cairn/cairn.toml, else the built-in defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prove the store: every indexed file present with its hash, no orphans, no temp files.
    Fsck {
        /// Check sizes only, do not re-hash file contents.
        #[arg(long)]
        quick: bool,
    },
    /// List studies.
    Studies {
        /// Patient name, case-insensitive, as in the panel's search: part of the name
        /// ("dupont", "dupont jean"), or a pattern with `*` and `?` for the whole name ("DOE^*").
        #[arg(long)]
        patient: Option<String>,
        /// Patient ID, exact or with `*` and `?`.
        #[arg(long)]
        patient_id: Option<String>,
        /// Accession number, exact or with `*` and `?`.
        #[arg(long)]
        accession: Option<String>,
        /// Modality, e.g. CT.
        #[arg(long)]
        modality: Option<String>,
        /// Study date or range: 20240131, 20240101-20240131, -20240131, 20240101-.
        #[arg(long, allow_hyphen_values = true)]
        date: Option<DateRange>,
        /// At most this many rows.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Counts of what the store holds.
    Stats,
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// RAID arrays, bays and health.
    Raid {
        #[command(subcommand)]
        command: hw::RaidCommand,
    },
    /// The audible alarm.
    Alarm {
        #[command(subcommand)]
        command: hw::AlarmCommand,
    },
    /// Replace a disk, step by step.
    Disk {
        #[command(subcommand)]
        command: hw::DiskCommand,
    },
    /// The demo box's emulated disks, tape drive and disc tray (only with `cairnd demo`).
    Demo {
        #[command(subcommand)]
        command: DemoAll,
    },
    /// The air-gapped copy: drives, volumes, queue, bundles.
    Archive {
        #[command(subcommand)]
        command: archive::ArchiveCommand,
    },
    /// Bring a study back from a cold copy into the store (hash-checked).
    Restore {
        /// Study Instance UID.
        #[arg(long)]
        study: String,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// How long a patient's images are kept.
    Retention {
        #[command(subcommand)]
        command: lifecycle::RetentionCommand,
    },
    /// A patient's date of death.
    Patient {
        #[command(subcommand)]
        command: lifecycle::PatientCommand,
    },
    /// Legal holds: nothing of a held patient or study expires.
    Hold {
        #[command(subcommand)]
        command: lifecycle::HoldCommand,
    },
    /// The lifecycle at a glance: tiers, what is due, holds, volumes to recycle, the clock.
    Lifecycle {
        #[command(subcommand)]
        command: lifecycle_status::LifecycleCommand,
    },
    /// Destruction at the end of retention: the patients due, approval, certificates.
    Destruction {
        #[command(subcommand)]
        command: removal::DestructionCommand,
    },
    /// Reject a study or a series in storage (wrong patient, test images): it leaves the box.
    Reject(removal::RejectArgs),
}

/// Every `cairnctl demo` command: disks (RAID) and media (archive).
#[derive(Subcommand)]
enum DemoAll {
    #[command(flatten)]
    Disks(hw::DemoCommand),
    #[command(flatten)]
    Media(archive::DemoMediaCommand),
    #[command(flatten)]
    Clock(lifecycle_status::DemoClockCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check that no audit row was edited, deleted, reordered or cut off.
    Verify,
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("cairnctl: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Raid { command } => return hw::raid(&cli.data, command),
        Command::Alarm { command } => return hw::alarm(&cli.data, command),
        Command::Disk { command } => return hw::disk(&cli.data, command),
        Command::Demo {
            command: DemoAll::Disks(command),
        } => return hw::demo(&cli.data, command),
        Command::Demo {
            command: DemoAll::Media(command),
        } => return archive::demo(&cli.data, command),
        Command::Demo {
            command: DemoAll::Clock(command),
        } => return lifecycle_status::demo_clock(&cli.data, command),
        _ => {}
    }
    let data = DataDir::new(&cli.data);
    if !data.db().exists() {
        bail!(
            "no cairn store at {} (no cairn.db there); pass --data DIR",
            cli.data.display()
        );
    }
    match cli.command {
        Command::Archive { command } => archive::archive(&data, command),
        Command::Restore { study, timeout } => archive::restore(&data, study, timeout),
        Command::Retention { command } => {
            Ok(lifecycle::retention(&data, cli.config.as_deref(), command))
        }
        Command::Patient { command } => Ok(lifecycle::patient(&data, command)),
        Command::Hold { command } => Ok(lifecycle::hold(&data, command)),
        Command::Lifecycle { command } => {
            lifecycle_status::lifecycle(&data, cli.config.as_deref(), command)
        }
        Command::Destruction { command } => {
            Ok(removal::destruction(&data, cli.config.as_deref(), command))
        }
        Command::Reject(args) => Ok(removal::reject(&data, args)),
        Command::Fsck { quick } => {
            let r = cairn_store::fsck(&data, FsckOptions { quick })?;
            if r.problems.is_empty() {
                println!(
                    "store is consistent: {} index rows, {} files, {} bytes hashed",
                    r.rows, r.files, r.bytes_hashed
                );
                Ok(0)
            } else {
                println!("store has {} problem(s):", r.problems.len());
                for p in &r.problems {
                    println!("  - {p}");
                }
                Ok(1)
            }
        }
        Command::Studies {
            patient,
            patient_id,
            accession,
            modality,
            date,
            limit,
        } => {
            let rows = cairn_store::list_studies(
                &data,
                &StudyFilter {
                    patient,
                    patient_id,
                    accession,
                    modality,
                    date,
                    limit: Some(limit),
                },
            )?;
            print_studies(&rows);
            Ok(0)
        }
        Command::Stats => {
            let s = cairn_store::stats(&data)?;
            println!("patients        {}", s.patients);
            println!("studies         {}", s.studies);
            println!("series          {}", s.series);
            println!("instances       {}", s.instances);
            println!("older versions  {}", s.older_versions);
            println!("bytes           {} ({})", s.bytes, human(s.bytes));
            println!("audit rows      {}", s.audit_rows);
            println!("quarantined     {}", s.quarantined);
            Ok(0)
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let r = cairn_store::verify_audit(&data)?;
            if r.findings.is_empty() {
                println!("audit trail intact: {} rows", r.rows);
                Ok(0)
            } else {
                println!("audit trail BROKEN ({} rows read):", r.rows);
                for f in &r.findings {
                    println!("  - {f}");
                }
                Ok(1)
            }
        }
        Command::Raid { .. }
        | Command::Alarm { .. }
        | Command::Disk { .. }
        | Command::Demo { .. } => {
            unreachable!("handled above")
        }
    }
}

/// A size for people, in the panel's wording (a negative count reads as 0 bytes).
fn human(b: i64) -> String {
    cairn_core::human_bytes(u64::try_from(b).unwrap_or(0))
}

/// Cut to `w` characters, never splitting a character.
fn cell(s: &str, w: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() <= w {
        clean
    } else {
        let mut t: String = clean.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A DICOM date `YYYYMMDD` as `YYYY-MM-DD`; anything else shown as it is, cut to the column.
fn day(d: &str) -> String {
    match (d.get(0..4), d.get(4..6), d.get(6..8)) {
        (Some(y), Some(m), Some(dd)) if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{y}-{m}-{dd}")
        }
        _ => cell(d, 10),
    }
}

fn print_studies(rows: &[cairn_store::StudyRow]) {
    if rows.is_empty() {
        println!("no studies match");
        return;
    }
    println!(
        "{:<12} {:<24} {:<12} {:<8} {:<24} {:>6} {:>7} {:>10}  STUDY UID",
        "DATE", "PATIENT", "PATIENT ID", "MODAL.", "DESCRIPTION", "SERIES", "IMAGES", "SIZE"
    );
    for r in rows {
        let date = if r.date_invalid {
            "invalid date".to_string()
        } else {
            day(&r.study_date)
        };
        println!(
            "{:<12} {:<24} {:<12} {:<8} {:<24} {:>6} {:>7} {:>10}  {}",
            date,
            cell(&r.patient_name, 24),
            cell(&r.patient_id, 12),
            cell(&r.modalities, 8),
            cell(&r.description, 24),
            r.series,
            r.instances,
            human(r.bytes),
            r.study_uid
        );
    }
    println!(
        "{} stud{}",
        rows.len(),
        if rows.len() == 1 { "y" } else { "ies" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_shown_without_splitting_a_character() {
        assert_eq!(day("20240131"), "2024-01-31");
        assert_eq!(day("123é567"), "123é567");
        assert_eq!(day("éééé"), "éééé");
        assert_eq!(day(""), "");
    }

    #[test]
    fn sizes_read_as_on_the_panel() {
        assert_eq!(human(1_500), "1.5 kB");
        assert_eq!(human(1_500_000_000), cairn_core::human_bytes(1_500_000_000));
        assert_eq!(human(-1), "0 bytes");
    }
}
