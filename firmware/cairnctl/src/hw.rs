//! `raid`, `alarm`, `disk` and `demo` subcommands: read the status the daemon's RAID monitor
//! publishes (`raid.json`, `alarm.json`) and hand requests to it (`requests/`). The daemon
//! carries them out and audits them; this tool never touches md or the store itself.

use crate::user::who;
use anyhow::{Context, Result};
use cairn_alarm::AlarmFile;
use cairn_raid::requests::{Answer, Request, ALARM_FILE, STATUS_FILE};
use clap::Subcommand;
use serde_json::Value;
use std::path::Path;

/// `cairnctl raid ...`
#[derive(Subcommand)]
pub enum RaidCommand {
    /// Arrays, bays, health, rebuild progress.
    Status {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Start a scrub (md `check`) of an array now.
    Scrub {
        /// The array, e.g. md0.
        array: String,
    },
}

/// `cairnctl alarm ...`
#[derive(Subcommand)]
pub enum AlarmCommand {
    /// Whether the box is sounding, and why.
    Status {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Silence the alarm (every sounding event, or one). A new failure sounds again.
    Silence {
        /// Only this event id (see `alarm status`).
        #[arg(long)]
        event: Option<u64>,
    },
}

/// `cairnctl disk ...`: the disk swap, step by step.
#[derive(Subcommand)]
pub enum DiskCommand {
    /// What to do next, bay by bay.
    Status,
    /// Light (or switch off) a bay's locate LED.
    Locate {
        /// Bay number.
        bay: u32,
        /// Switch it off.
        #[arg(long)]
        off: bool,
    },
    /// Take the disk in a bay out of its array safely (faulty, then remove).
    Remove {
        /// Bay number.
        bay: u32,
    },
    /// Allow the disk in a bay, which is not blank, to be wiped and added.
    Confirm {
        /// Bay number.
        bay: u32,
    },
}

/// `cairnctl demo ...`: the demo box's hands.
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand)]
pub enum DemoCommand {
    /// The disk in a bay dies.
    FailDisk {
        /// Bay number.
        bay: u32,
    },
    /// Pull the disk out of a bay.
    PullDisk {
        /// Bay number.
        bay: u32,
    },
    /// Slide a new disk into a bay (the old one is pulled first).
    InsertDisk {
        /// Bay number.
        bay: u32,
        /// blank (default), used (holds another array's superblock) or small.
        #[arg(long, default_value = "blank")]
        kind: String,
    },
}

/// Hand a request to the running daemon and wait for its answer.
fn request(data: &Path, req: &Request) -> Result<Answer> {
    use cairn_raid::requests::{send, SendErrorKind, ANSWER_WAIT};
    send(data, req, ANSWER_WAIT).map_err(|e| match e.kind() {
        SendErrorKind::NoMonitor => anyhow::anyhow!(
            "no RAID monitor has run in {} (start cairnd with a [hardware] board, or cairnd demo)",
            data.display()
        ),
        SendErrorKind::NoAnswer => anyhow::anyhow!(
            "cairnd did not answer within {} s (is it running on this data directory?)",
            ANSWER_WAIT.as_secs()
        ),
        SendErrorKind::Io => anyhow::Error::from(e),
    })
}

fn answer(a: Answer) -> Result<i32> {
    println!("{}", a.message);
    Ok(if a.ok { 0 } else { 1 })
}

fn load_status(data: &Path) -> Result<Value> {
    let path = data.join(STATUS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no RAID status at {} (cairnd's RAID monitor has not run here)",
            path.display()
        )
    })?;
    Ok(serde_json::from_str(&text)?)
}

fn bay(v: &Value) -> String {
    v.as_u64()
        .map_or("bay ?".to_string(), |b| format!("bay {b}"))
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// Run a `raid` subcommand.
pub fn raid(data: &Path, cmd: RaidCommand) -> Result<i32> {
    match cmd {
        RaidCommand::Status { json } => {
            let s = load_status(data)?;
            if json {
                let out = serde_json::json!({
                    "updated_at_ms": s["updated_at_ms"],
                    "arrays": s["arrays"],
                    "bays": s["bays"],
                    "blocked": s["blocked"],
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(0);
            }
            print_raid(&s);
            Ok(0)
        }
        RaidCommand::Scrub { array } => answer(request(data, &Request::Scrub { array })?),
    }
}

fn print_raid(s: &Value) {
    let empty = Vec::new();
    let arrays = s["arrays"].as_array().unwrap_or(&empty);
    if arrays.is_empty() {
        println!("no md arrays");
    }
    for a in arrays {
        let health = a["health"].as_str().unwrap_or("?");
        println!(
            "{}  {}  {}{}",
            a["name"].as_str().unwrap_or("?"),
            a["level"].as_str().unwrap_or("?"),
            health.to_uppercase(),
            match health {
                "ok" => String::new(),
                "degraded" => "  (redundancy reduced: replace the failed disk)".into(),
                "critical" => "  (NO redundancy left: one more failure loses data)".into(),
                _ => "  (array failed or stopped)".into(),
            }
        );
        if let Some(p) = a["progress"].as_object() {
            let speed = p["speed_kib"]
                .as_u64()
                .map_or(String::new(), |k| format!(" at {} MiB/s", k / 1024));
            let eta = p["eta_secs"]
                .as_u64()
                .map_or(String::new(), |e| format!(", about {} left", duration(e)));
            let what = match p["action"].as_str().unwrap_or("") {
                "check" | "repair" => "scrub",
                "resync" => "resync",
                _ => "rebuild",
            };
            println!(
                "  {what} {:.1} %{speed}{eta}",
                p["percent"].as_f64().unwrap_or(0.0)
            );
        }
        if a["mismatch_cnt"].as_u64().unwrap_or(0) > 0 {
            println!(
                "  last scrub counted {} mismatched sectors",
                a["mismatch_cnt"]
            );
        }
        for m in a["members"].as_array().unwrap_or(&empty) {
            let smart = &m["smart"];
            let failed = matches!(m["state"].as_str(), Some("faulty" | "missing"));
            let verdict = match smart["verdict"].as_str() {
                // md has failed it: whatever SMART last said, it is not ok
                _ if failed => "FAILED: replace this disk".to_string(),
                Some("ok") => "SMART ok".to_string(),
                Some("warning") => "SMART WARNING".to_string(),
                Some("failing") => "SMART FAILING: replace this disk".to_string(),
                Some("unavailable") => "SMART unavailable".to_string(),
                _ => String::new(),
            };
            let temp = smart["temperature_c"]
                .as_i64()
                .map_or(String::new(), |t| format!(", {t} °C"));
            println!(
                "  {:<7} {:<6} {:<10} {verdict}{temp}",
                bay(&m["bay"]),
                m["device"].as_str().unwrap_or(""),
                m["state"].as_str().unwrap_or("")
            );
            for w in smart["warnings"].as_array().unwrap_or(&empty) {
                println!("          SMART: {}", w.as_str().unwrap_or(""));
            }
        }
    }
    for b in s["blocked"].as_array().unwrap_or(&empty) {
        match b["reason"].as_str() {
            Some("needs-confirmation") => println!(
                "{}: the new disk is not blank ({}); run `cairnctl disk confirm {}` to wipe and add it",
                bay(&b["bay"]),
                b["contents"].as_str().unwrap_or("?"),
                b["bay"]
            ),
            Some("too-small") => println!(
                "{}: the new disk is too small ({} bytes, the array needs {}): use a larger disk",
                bay(&b["bay"]),
                b["size_bytes"],
                b["needed_bytes"]
            ),
            _ => {}
        }
    }
}

/// Run an `alarm` subcommand.
pub fn alarm(data: &Path, cmd: AlarmCommand) -> Result<i32> {
    match cmd {
        AlarmCommand::Status { json } => {
            let state = AlarmFile::new(data.join(ALARM_FILE)).load()?;
            if json {
                let out = serde_json::json!({
                    "sounding": state.sounding(),
                    "events": state.events,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(0);
            }
            println!(
                "alarm: {}",
                if state.sounding() {
                    "SOUNDING"
                } else {
                    "quiet"
                }
            );
            for e in &state.events {
                println!(
                    "  #{} {:<15} {}{}",
                    e.id,
                    serde_json::to_value(e.kind)?.as_str().unwrap_or(""),
                    e.message,
                    if e.silenced {
                        format!(" (silenced by {})", e.silenced_by.as_deref().unwrap_or("?"))
                    } else {
                        String::new()
                    }
                );
            }
            Ok(0)
        }
        AlarmCommand::Silence { event } => answer(request(
            data,
            &Request::AlarmSilence {
                id: event,
                by: who(),
            },
        )?),
    }
}

/// Run a `disk` subcommand.
pub fn disk(data: &Path, cmd: DiskCommand) -> Result<i32> {
    match cmd {
        DiskCommand::Status => {
            let s = load_status(data)?;
            print_raid(&s);
            let empty = Vec::new();
            let mut todo = false;
            for a in s["arrays"].as_array().unwrap_or(&empty) {
                for m in a["members"].as_array().unwrap_or(&empty) {
                    if m["state"] == "faulty" {
                        todo = true;
                        println!(
                            "next: pull the disk in {b} (its fault LED is lit) and slide in a new one \
                             at least as large; a blank disk is added by itself. \
                             (`cairnctl disk remove {n}` first takes it out of {a} and lights the locate LED.)",
                            b = bay(&m["bay"]),
                            n = m["bay"],
                            a = a["name"].as_str().unwrap_or("the array")
                        );
                    }
                }
                if a["rebuild_percent"].is_number() {
                    todo = true;
                    println!("rebuild under way: leave every disk in place until it reaches 100 %");
                }
            }
            if !todo {
                println!("nothing to do");
            }
            Ok(0)
        }
        DiskCommand::Locate { bay, off } => {
            answer(request(data, &Request::DiskLocate { bay, on: !off })?)
        }
        DiskCommand::Remove { bay } => {
            answer(request(data, &Request::DiskRemove { bay, by: who() })?)
        }
        DiskCommand::Confirm { bay } => {
            answer(request(data, &Request::DiskConfirm { bay, by: who() })?)
        }
    }
}

/// Run a `demo` subcommand.
pub fn demo(data: &Path, cmd: DemoCommand) -> Result<i32> {
    let req = match cmd {
        DemoCommand::FailDisk { bay } => Request::DemoFailDisk { bay },
        DemoCommand::PullDisk { bay } => Request::DemoPullDisk { bay },
        DemoCommand::InsertDisk { bay, kind } => Request::DemoInsertDisk { bay, kind },
    };
    answer(request(data, &req)?)
}
