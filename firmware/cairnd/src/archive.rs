//! Wiring of the archive writer: one thread that writes queued images to every
//! configured cold target, reads them back, answers `requests/archive/*.json` and publishes
//! `archive.json`. The policy lives in `cairn-archive`; the drives in `cairn-hal`.

use anyhow::{Context, Result};
use cairn_archive::engine::{Archiver, Drive, Policy, TargetSpec};
use cairn_config::{ColdKind, ColdTarget, Config};
use cairn_hal::optical::XorrisoDrive;
use cairn_hal::tape::{EmulatedTape, LinuxTape};
use cairn_store::Store;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Whether the archive needs a writable medium, as the archive thread last said: shared in
/// process with the RAID monitor, which owns the alarm and raises or clears `medium-needed`
/// from it (no file is re-read). Unknown until the thread's first pass over its targets, so a
/// latched alarm is neither cleared nor raised again on a restart before the archive has looked.
#[derive(Clone, Default)]
pub struct MediumSignal(Arc<AtomicU8>);

impl MediumSignal {
    // 0 (the default): not known yet.
    const NOT_NEEDED: u8 = 1;
    const NEEDED: u8 = 2;

    /// `Some(true)` while images wait and no writable medium is loaded in some target,
    /// `Some(false)` when every target can write (or has nothing queued), `None` not yet known.
    pub fn needed(&self) -> Option<bool> {
        match self.0.load(Ordering::SeqCst) {
            Self::NEEDED => Some(true),
            Self::NOT_NEEDED => Some(false),
            _ => None,
        }
    }

    /// Record the archive's answer; returns what it was before.
    fn set(&self, needed: bool) -> Option<bool> {
        let v = if needed {
            Self::NEEDED
        } else {
            Self::NOT_NEEDED
        };
        match self.0.swap(v, Ordering::SeqCst) {
            Self::NEEDED => Some(true),
            Self::NOT_NEEDED => Some(false),
            _ => None,
        }
    }
}

/// The running archive thread.
pub struct ArchiveHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    medium: MediumSignal,
    /// Human lines for the demo banner.
    pub summary: Vec<String>,
}

impl ArchiveHandle {
    /// The shared "medium needed" state, for the RAID monitor's alarm.
    pub fn medium(&self) -> MediumSignal {
        self.medium.clone()
    }

    /// Stop after the bundle in progress (if any) is finished and verified.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.thread.join().is_err() {
            tracing::error!("the archive thread panicked");
        }
    }
}

/// Demo only: an emulated tape drive with a blank cartridge and a disc tray with a blank disc
/// for the targets that use emulators, unless they already hold media.
pub fn demo_setup(config: &Config) -> Result<()> {
    for t in &config.archive.targets {
        let Some(dir) = &t.emulator else { continue };
        match t.kind {
            ColdKind::Tape => {
                cairn_hal::tape::emulator::init_drive(dir)?;
                if cairn_hal::tape::emulator::list_cartridges(dir)?.is_empty() {
                    cairn_hal::tape::emulator::insert_blank(
                        dir,
                        &cairn_hal::tape::emulator::CartridgeSpec {
                            id: "DEMO01".into(),
                            capacity: 4 << 30,
                            early_warning: (4 << 30) - (64 << 20),
                        },
                    )?;
                }
            }
            ColdKind::Optical => {
                cairn_hal::optical::emulator::init_tray(dir)?;
                if cairn_hal::optical::emulator::list_discs(dir)?.is_empty() {
                    cairn_hal::optical::emulator::insert_blank(
                        dir,
                        "DISC01",
                        t.capacity_bytes.unwrap_or(734_003_200),
                    )?;
                }
            }
        }
    }
    Ok(())
}

fn opener(t: &ColdTarget) -> cairn_archive::engine::Opener {
    let kind = t.kind;
    let device = t.device.clone();
    let emulator = t.emulator.clone();
    Box::new(move || {
        Ok(match (kind, &device, &emulator) {
            (ColdKind::Tape, Some(dev), _) => Drive::Tape(Box::new(LinuxTape::open(dev)?)),
            (ColdKind::Tape, None, Some(dir)) => Drive::Tape(Box::new(EmulatedTape::open(dir)?)),
            (ColdKind::Optical, Some(dev), _) => {
                Drive::Optical(Box::new(XorrisoDrive::device(dev)))
            }
            (ColdKind::Optical, None, Some(dir)) => {
                Drive::Optical(Box::new(XorrisoDrive::emulated(dir)))
            }
            _ => {
                return Err(cairn_archive::ArchiveError::Refused(
                    "target has neither device nor emulator".into(),
                ))
            }
        })
    })
}

/// Catalog the configured targets (so every image stored from now on is queued for each),
/// then start the archive thread. None when no target is configured.
pub fn start(config: &Config, store: Store) -> Result<Option<ArchiveHandle>> {
    let a = &config.archive;
    if a.targets.is_empty() {
        tracing::info!("no [[archive.targets]] in the config: no cold copies are written");
        return Ok(None);
    }
    let specs = a
        .targets
        .iter()
        .map(|t| TargetSpec {
            name: t.name.clone(),
            kind: t.kind.as_str().into(),
            open: opener(t),
        })
        .collect();
    let archiver = Archiver::new(
        store,
        Policy {
            box_id: a.box_id.clone(),
            bundle_max_bytes: a.bundle_max_bytes,
            bundle_max_age: Duration::from_secs(a.bundle_max_age_secs),
            bundle_max_members: a.bundle_max_members,
            volume_name_prefix: a.volume_name_prefix.clone(),
        },
        specs,
    )
    .context("cannot set up the archive catalog")?;
    archiver.publish();
    let summary = a
        .targets
        .iter()
        .map(|t| {
            format!(
                "{} ({}) on {}",
                t.name,
                t.kind.as_str(),
                t.device
                    .as_ref()
                    .or(t.emulator.as_ref())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        })
        .collect();
    let stop = archiver.stop_flag();
    let medium = MediumSignal::default();
    let signal = medium.clone();
    let thread = std::thread::Builder::new()
        .name("archive".into())
        .spawn(move || {
            archiver.run(&|needed| {
                let before = signal.set(needed);
                if needed {
                    tracing::warn!(
                        "medium needed: images are waiting for a cold copy and no writable \
                         tape or disc is loaded (cairnctl archive status)"
                    );
                } else if before == Some(true) {
                    tracing::info!("a writable medium is available again");
                }
            })
        })
        .context("cannot start the archive thread")?;
    Ok(Some(ArchiveHandle {
        stop,
        thread,
        medium,
        summary,
    }))
}
