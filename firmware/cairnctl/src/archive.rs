//! `cairnctl archive ...`, `cairnctl restore` and the demo's tape and disc commands. Reads
//! come from the index (read-only) and `archive.json`; everything that moves a medium or
//! writes goes to the daemon's archive thread as a request file.

use crate::user::who;
use anyhow::{bail, Context, Result};
use cairn_archive::catalog::{self, ArchiveStatus, VolumeRow};
use cairn_archive::Request;
use cairn_store::DataDir;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `cairnctl archive ...`.
#[derive(Subcommand)]
pub enum ArchiveCommand {
    /// Drives, volumes, queues, the last verified bundle.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Close the open bundle(s) now and wait until they are verified.
    Flush {
        /// Only this cold target.
        #[arg(long)]
        target: Option<String>,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Flush, verify, unload the volume, and record where it goes.
    Eject {
        /// The cold target (default: the first with a volume loaded).
        #[arg(long)]
        target: Option<String>,
        /// Where the volume goes: onsite_shelf, offsite_vault, returned, retired.
        #[arg(long, default_value = "onsite_shelf")]
        location: String,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Take the medium now in the drive into use (a blank one is labelled).
    Load {
        /// Only this cold target.
        #[arg(long)]
        target: Option<String>,
        /// Label a tape although its beginning cannot be read (new or erased cartridges some
        /// drives cannot read): only when the first read fails with an I/O or medium error,
        /// never when a label or any data was read. Overwrites the tape; audited.
        #[arg(long)]
        label_unreadable: bool,
    },
    /// Every volume the catalog knows.
    Volumes {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Record where a volume that is not in a drive is now.
    SetLocation {
        /// The volume's name (as printed on it, e.g. DEMO01).
        volume: String,
        /// onsite_shelf, offsite_vault, returned or retired.
        location: String,
    },
    /// Erase a volume whose every image copy was removed (rejected or expired) so it takes
    /// new bundles: it must be loaded in its drive; keeps its name; audited.
    Recycle {
        /// The volume's name (as printed on it, e.g. TAPE01).
        #[arg(long)]
        volume: String,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Rebuild the catalog from the media in the drives alone (labels and bundles).
    Scan {
        /// Only this cold target.
        #[arg(long)]
        target: Option<String>,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
}

/// `cairnctl demo ...` for the emulated tape drive and disc tray.
#[derive(Subcommand)]
pub enum DemoMediaCommand {
    /// Put a new blank cartridge into the emulated tape drive (it must be empty).
    TapeInsert {
        /// The name printed on the cartridge (its barcode: 1 to 16 of A-Z 0-9); default
        /// TAPEnn. The box adopts it as the volume's name.
        #[arg(long)]
        id: Option<String>,
        /// Capacity in bytes.
        #[arg(long, default_value_t = 4 << 30)]
        capacity: u64,
        /// Early warning position in bytes (default: 64 MiB before the end).
        #[arg(long)]
        early_warning: Option<u64>,
    },
    /// Load a cartridge from the shelf into the empty emulated drive.
    TapeLoad {
        /// Cartridge id.
        id: String,
    },
    /// Set or clear a cartridge's write-protect tab.
    TapeProtect {
        /// Cartridge id.
        id: String,
        /// on or off.
        state: String,
    },
    /// The emulated cartridges.
    TapeList,
    /// Put a new blank disc into the emulated tray (it must be empty).
    DiscInsert {
        /// The name written on the disc (1 to 16 of A-Z 0-9); default DISCnn. The box adopts
        /// it as the volume's name.
        #[arg(long)]
        id: Option<String>,
        /// Capacity in bytes (default 700 MiB).
        #[arg(long, default_value_t = 734_003_200)]
        capacity: u64,
    },
}

fn ask(data: &DataDir, req: Request, timeout: u64) -> Result<i32> {
    let a = cairn_archive::requests::send(data.root(), &req, Duration::from_secs(timeout))
        .context("cairnd's archive thread did not take the request")?;
    println!("{}", a.message);
    Ok(if a.ok { 0 } else { 1 })
}

fn print_status(s: &ArchiveStatus) {
    if s.targets.is_empty() {
        println!("no cold targets configured ([[archive.targets]] in cairn.toml)");
    }
    for t in &s.targets {
        println!("{} ({}): drive {}", t.name, t.kind, t.drive);
        match &t.volume {
            Some(v) => println!(
                "  volume    {} ({}), {} bundle(s), {} verified image copies, {} written",
                v.name,
                v.state.as_str(),
                v.verified_bundles,
                v.verified_copies,
                crate::human(v.bytes_written)
            ),
            None => println!("  volume    none"),
        }
        println!(
            "  queue     {} image(s), {}{}",
            t.queue.instances,
            crate::human(t.queue.bytes),
            t.queue
                .oldest_queued_at
                .as_deref()
                .map(|o| format!(", oldest since {o}"))
                .unwrap_or_default()
        );
        match &t.last_verified {
            Some(b) => println!(
                "  last verified bundle {} ({} images, {}) at {}",
                b.name,
                b.members,
                crate::human(b.bytes),
                b.verified_at.as_deref().unwrap_or("?")
            ),
            None => println!("  last verified bundle: none yet"),
        }
        println!(
            "  activity  {}{}",
            t.activity,
            if t.updated_at.is_empty() {
                String::new()
            } else {
                format!(" (as of {})", t.updated_at)
            }
        );
        if !t.message.is_empty() {
            println!("  note      {}", t.message);
        }
        if let Some(e) = &t.last_error {
            println!("  last error {e}");
        }
        if t.medium_needed {
            println!("  MEDIUM NEEDED: images are waiting and no writable volume is loaded");
        }
    }
    println!(
        "{} of {} image(s) have a verified cold copy",
        s.instances_verified, s.instances_total
    );
}

fn print_volumes(v: &[VolumeRow]) {
    if v.is_empty() {
        println!("no volumes yet");
        return;
    }
    println!(
        "{:<16} {:<8} {:<9} {:<14} {:<8} {:>8} {:>8} {:>10}  UPDATED BY",
        "VOLUME", "KIND", "STATE", "LOCATION", "TARGET", "BUNDLES", "COPIES", "WRITTEN"
    );
    for r in v {
        println!(
            "{:<16} {:<8} {:<9} {:<14} {:<8} {:>8} {:>8} {:>10}  {} {}",
            r.name,
            r.kind,
            r.state.as_str(),
            r.location.as_str(),
            r.target.as_deref().unwrap_or("-"),
            r.verified_bundles,
            r.verified_copies,
            crate::human(r.bytes_written),
            r.updated_at,
            r.updated_by
        );
    }
    let recyclable: Vec<&str> = v
        .iter()
        .filter(|r| r.recyclable)
        .map(|r| r.name.as_str())
        .collect();
    if !recyclable.is_empty() {
        println!(
            "recyclable (every image copy on it removed): {}; load it and run cairnctl archive \
             recycle --volume NAME",
            recyclable.join(", ")
        );
    }
}

/// Run an archive subcommand.
pub fn archive(data: &DataDir, cmd: ArchiveCommand) -> Result<i32> {
    match cmd {
        ArchiveCommand::Status { json } => {
            let s = catalog::archive_status(data)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_status(&s);
            }
            Ok(0)
        }
        ArchiveCommand::Volumes { json } => {
            let v = catalog::list_volumes(data)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_volumes(&v);
            }
            Ok(0)
        }
        ArchiveCommand::Flush { target, timeout } => {
            ask(data, Request::Flush { target, by: who() }, timeout)
        }
        ArchiveCommand::Eject {
            target,
            location,
            timeout,
        } => {
            if catalog::Location::parse(&location).is_none() {
                bail!(
                    "unknown location {location:?}: use onsite_shelf, offsite_vault, returned or retired"
                );
            }
            ask(
                data,
                Request::Eject {
                    target,
                    location: Some(location),
                    by: who(),
                },
                timeout,
            )
        }
        ArchiveCommand::Load {
            target,
            label_unreadable: false,
        } => ask(data, Request::Load { target, by: who() }, 600),
        ArchiveCommand::Load {
            target,
            label_unreadable: true,
        } => ask(data, Request::LabelUnreadable { target, by: who() }, 600),
        ArchiveCommand::SetLocation { volume, location } => {
            if catalog::Location::parse(&location).is_none() {
                bail!(
                    "unknown location {location:?}: use onsite_shelf, offsite_vault, returned or retired"
                );
            }
            ask(
                data,
                Request::SetLocation {
                    volume,
                    location,
                    by: who(),
                },
                60,
            )
        }
        ArchiveCommand::Recycle { volume, timeout } => {
            ask(data, Request::Recycle { volume, by: who() }, timeout)
        }
        ArchiveCommand::Scan { target, timeout } => {
            ask(data, Request::Scan { target, by: who() }, timeout)
        }
    }
}

/// `cairnctl restore --study UID`.
pub fn restore(data: &DataDir, study: String, timeout: u64) -> Result<i32> {
    if study.is_empty()
        || study.len() > 64
        || !study.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        bail!("{study:?} is not a Study Instance UID (digits and dots, at most 64)");
    }
    ask(data, Request::Restore { study, by: who() }, timeout)
}

/// The emulator directories of the demo's targets (from `DIR/cairn.toml`, else `DIR/hw/..`).
fn emulator_dir(data: &Path, kind: cairn_config::ColdKind) -> PathBuf {
    let cfg = cairn_config::Config::load(&data.join("cairn.toml")).ok();
    cfg.and_then(|c| {
        c.archive
            .targets
            .iter()
            .find(|t| t.kind == kind && t.emulator.is_some())
            .and_then(|t| t.emulator.clone())
    })
    .unwrap_or_else(|| {
        data.join("hw").join(match kind {
            cairn_config::ColdKind::Tape => "tape",
            cairn_config::ColdKind::Optical => "optical",
        })
    })
}

/// A demo cartridge or disc carries the name the box adopts for it: refuse one it could not.
fn printed_name(id: &str) -> Result<()> {
    if !cairn_archive::label::valid_name(id) {
        bail!(
            "{id:?} cannot be a volume's name: use 1 to {} of A-Z 0-9 (as printed on a \
             cartridge's barcode label, e.g. TAPE03)",
            cairn_archive::label::NAME_MAX
        );
    }
    Ok(())
}

/// The short name in a cartridge's label (tape file 0), when it holds a cairn label.
fn label_name(dir: &Path, id: &str) -> Option<String> {
    let path = cairn_hal::tape::emulator::tape_file_path(dir, id, 0).ok()?;
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = vec![0u8; 64 * 1024];
    let n = std::io::Read::read(&mut f, &mut head).ok()?;
    let l = cairn_archive::label::Label::parse(&head[..n])?;
    Some(l.short_name().to_string())
}

/// Run a demo media command (the hands of a person at the drives).
pub fn demo(data: &Path, cmd: DemoMediaCommand) -> Result<i32> {
    use cairn_hal::optical::emulator as disc;
    use cairn_hal::tape::emulator as tape;
    match cmd {
        DemoMediaCommand::TapeInsert {
            id,
            capacity,
            early_warning,
        } => {
            let dir = emulator_dir(data, cairn_config::ColdKind::Tape);
            let n = tape::list_cartridges(&dir).map(|v| v.len()).unwrap_or(0);
            let id = id.unwrap_or_else(|| format!("TAPE{:02}", n + 1));
            printed_name(&id)?;
            let ew = early_warning.unwrap_or(capacity.saturating_sub(64 << 20).max(capacity / 2));
            tape::insert_blank(
                &dir,
                &tape::CartridgeSpec {
                    id: id.clone(),
                    capacity,
                    early_warning: ew,
                },
            )?;
            println!(
                "blank cartridge {id} is in the drive; cairnd labels it: cairnctl --data {} archive load",
                data.display()
            );
            Ok(0)
        }
        DemoMediaCommand::TapeLoad { id } => {
            let dir = emulator_dir(data, cairn_config::ColdKind::Tape);
            tape::load(&dir, &id)?;
            println!(
                "cartridge {id} is in the drive; take it into use: cairnctl --data {} archive load",
                data.display()
            );
            Ok(0)
        }
        DemoMediaCommand::TapeProtect { id, state } => {
            let on = match state.as_str() {
                "on" => true,
                "off" => false,
                _ => bail!("say on or off"),
            };
            let dir = emulator_dir(data, cairn_config::ColdKind::Tape);
            tape::set_write_protect(&dir, &id, on)?;
            println!("write protect {state} for {id}");
            Ok(0)
        }
        DemoMediaCommand::TapeList => {
            let dir = emulator_dir(data, cairn_config::ColdKind::Tape);
            for c in tape::list_cartridges(&dir)? {
                let labelled = label_name(&dir, &c.id)
                    .filter(|n| *n != c.id)
                    .map(|n| format!(", labelled {n}"))
                    .unwrap_or_default();
                println!(
                    "{:<10} {:>10} used of {:>10}{labelled}{}{}",
                    c.id,
                    cairn_core::human_bytes(c.bytes_used),
                    cairn_core::human_bytes(c.capacity),
                    if c.loaded { ", in the drive" } else { "" },
                    if c.write_protected {
                        ", write-protected"
                    } else {
                        ""
                    }
                );
                println!("           tape files: {}/file-NNNN", c.dir.display());
            }
            Ok(0)
        }
        DemoMediaCommand::DiscInsert { id, capacity } => {
            let dir = emulator_dir(data, cairn_config::ColdKind::Optical);
            let n = disc::list_discs(&dir).map(|v| v.len()).unwrap_or(0);
            let id = id.unwrap_or_else(|| format!("DISC{:02}", n + 1));
            printed_name(&id)?;
            disc::insert_blank(&dir, &id, capacity)?;
            println!(
                "blank disc {id} is in the tray; cairnd labels it: cairnctl --data {} archive load",
                data.display()
            );
            Ok(0)
        }
    }
}
